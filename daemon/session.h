/* kmsd's sessions: an in-memory table of AES-256-GCM sessions keyed by a
 * random id, each owned by the uid that opened it. The keys live in the
 * OpenSSL secure heap (kms-session-crypto.h) and nowhere else: never on
 * disk, never in a log. Sessions end when closed, when they expire (kept a
 * while longer so that late use is told "expired", not "unknown"), or
 * when kmsd stops. docs/sessions.md is the reference. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "kms-key.h"
#include "kms-session-crypto.h"
#include "kms-session-id.h"

#define KMS_SESSION_BUCKETS 1024u
#define KMS_MAX_SESSIONS 16384u         /* in all */
#define KMS_MAX_SESSIONS_PER_UID 1024u  /* one user cannot use up the table */
#define KMS_SESSION_GRACE_MS (3600000u) /* expired sessions answer "expired" this long */
#define KMS_SESSION_SWEEP_S 5u          /* the scheduler sweeps this often */
/* Secure heap for the keys of KMS_MAX_SESSIONS sessions, a power of two. */
#define KMS_SESSION_SECURE_HEAP_BYTES (2u * 1024u * 1024u)

struct kms_session {
        char id[KMS_SESSION_ID_STRING_SIZE];
        uid_t uid;
        char key_name[KMS_MAX_KEY_NAME + 1];
        uint32_t key_version;
        char peer_fingerprint[96];
        struct kms_session_crypto *crypto; /* under lock; NULL once expired (wiped) */
        uint64_t expired_ms;               /* under lock: when the sweep wiped it */
        bool ended;                        /* under lock: closed; calls that lock it later find no session */
        pthread_mutex_t lock;
        unsigned refs; /* under the table's lock */
        bool closed;   /* under the table's lock: out of the table */
        struct kms_session *next;
};

struct kms_sessions {
        pthread_mutex_t lock;
        struct kms_session *buckets[KMS_SESSION_BUCKETS];
        size_t n;
};

void kms_sessions_init(struct kms_sessions *t);
/* Wipe and free every session (kmsd stopping). */
void kms_sessions_free(struct kms_sessions *t);

/* Add a session (which takes crypto) for uid; writes its id. -EDQUOT when
 * the table or the uid's share is full (expired sessions are swept
 * first); crypto is freed on failure too. */
int kms_sessions_add(struct kms_sessions *t, uid_t uid, const char *key_name, uint32_t key_version,
                     const char *peer_fingerprint, struct kms_session_crypto *crypto, uint64_t now_ms,
                     char ret_id[KMS_SESSION_ID_STRING_SIZE]);

/* Wipe the keys of sessions past their expiry, and drop the entries of
 * sessions expired longer than the grace period. */
void kms_sessions_sweep(struct kms_sessions *t, uint64_t now_ms);

/* Find the session id of uid, locked and referenced; release it with
 * kms_sessions_put(). s->crypto is NULL if it expired. -ENOENT for an
 * unknown id, and for a session that CloseSession closed while this call
 * waited for its lock (nothing is sealed or opened with a closed
 * session's keys); -EPERM for another uid's session. */
int kms_sessions_get(struct kms_sessions *t, const char *id, uid_t uid, struct kms_session **ret);
void kms_sessions_put(struct kms_sessions *t, struct kms_session *s);

/* The name of the key of uid's session id (without waiting for a call
 * on the session to finish). -ENOENT, -EPERM as for get. */
int kms_sessions_key_name(struct kms_sessions *t, const char *id, uid_t uid, char *buf, size_t len);

/* Close the session id of uid: out of the table at once, then its keys
 * are wiped as soon as the call in progress on it (if any) finishes;
 * returns after the wipe, so once it has returned no call seals or opens
 * with the session. -ENOENT, -EPERM as for get. */
int kms_sessions_close(struct kms_sessions *t, const char *id, uid_t uid);

/* Call cb for each session of uid (at most twice the per-user cap, the
 * expired ones kept for their grace period included). cb must not call
 * back into the table. */
void kms_sessions_foreach(struct kms_sessions *t, uid_t uid,
                          void (*cb)(const struct kms_session *s, const struct kms_session_crypto_info *info,
                                     void *userdata),
                          void *userdata);
