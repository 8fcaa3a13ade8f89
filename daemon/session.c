/* The session table; see session.h. Lock order: the table's lock, then a
 * session's lock; nobody takes the table's lock while holding a
 * session's. */
#include "session.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned bucket_of(const char *id)
{
        unsigned h = 2166136261u;

        for (; *id; id++)
                h = (h ^ (unsigned char)*id) * 16777619u;
        return h % KMS_SESSION_BUCKETS;
}

void kms_sessions_init(struct kms_sessions *t)
{
        memset(t, 0, sizeof(*t));
        pthread_mutex_init(&t->lock, NULL);
}

static void session_free(struct kms_session *s)
{
        kms_session_crypto_free(s->crypto); /* wipes the keys */
        pthread_mutex_destroy(&s->lock);
        free(s);
}

/* Unlink s (table locked); freed now if no call holds it. */
static void unlink_session(struct kms_sessions *t, struct kms_session **link)
{
        struct kms_session *s = *link;

        *link = s->next;
        s->closed = true;
        t->n--;
        if (s->refs == 0)
                session_free(s);
}

void kms_sessions_free(struct kms_sessions *t)
{
        pthread_mutex_lock(&t->lock);
        for (unsigned b = 0; b < KMS_SESSION_BUCKETS; b++)
                while (t->buckets[b])
                        unlink_session(t, &t->buckets[b]);
        pthread_mutex_unlock(&t->lock);
        pthread_mutex_destroy(&t->lock);
}

/* At expiry a session's keys are wiped; its entry stays for the grace
 * period so that late use hears "expired", then goes (table locked).
 * Sessions in use are left for the next sweep. */
static void sweep(struct kms_sessions *t, uint64_t now_ms)
{
        for (unsigned b = 0; b < KMS_SESSION_BUCKETS; b++)
                for (struct kms_session **link = &t->buckets[b]; *link;) {
                        struct kms_session *s = *link;
                        bool drop = false;

                        if (s->refs == 0 && pthread_mutex_trylock(&s->lock) == 0) {
                                if (s->crypto && kms_session_crypto_expired(s->crypto, now_ms)) {
                                        kms_session_crypto_free(s->crypto); /* wipes the keys */
                                        s->crypto = NULL;
                                        s->expired_ms = now_ms;
                                }
                                drop = !s->crypto && now_ms >= s->expired_ms + KMS_SESSION_GRACE_MS;
                                pthread_mutex_unlock(&s->lock);
                        }
                        if (drop)
                                unlink_session(t, link);
                        else
                                link = &s->next;
                }
}

void kms_sessions_sweep(struct kms_sessions *t, uint64_t now_ms)
{
        pthread_mutex_lock(&t->lock);
        sweep(t, now_ms);
        pthread_mutex_unlock(&t->lock);
}

/* The live sessions of uid (table locked; the sweep changes crypto only
 * with the table's lock held). Expired entries kept for the grace period
 * do not count. */
static size_t count_uid(struct kms_sessions *t, uid_t uid)
{
        size_t n = 0;

        for (unsigned b = 0; b < KMS_SESSION_BUCKETS; b++)
                for (struct kms_session *s = t->buckets[b]; s; s = s->next)
                        n += s->uid == uid && s->crypto;
        return n;
}

/* Make room: drop the entries of expired sessions before their grace
 * period ends (table locked). */
static void drop_expired(struct kms_sessions *t)
{
        for (unsigned b = 0; b < KMS_SESSION_BUCKETS; b++)
                for (struct kms_session **link = &t->buckets[b]; *link;) {
                        struct kms_session *s = *link;

                        if (!s->crypto && s->refs == 0)
                                unlink_session(t, link);
                        else
                                link = &s->next;
                }
}

static struct kms_session **find(struct kms_sessions *t, const char *id)
{
        struct kms_session **link = &t->buckets[bucket_of(id)];

        for (; *link; link = &(*link)->next)
                if (strcmp((*link)->id, id) == 0)
                        return link;
        return NULL;
}

int kms_sessions_add(struct kms_sessions *t, uid_t uid, const char *key_name, uint32_t key_version,
                     const char *peer_fingerprint, struct kms_session_crypto *crypto, uint64_t now_ms,
                     char ret_id[KMS_SESSION_ID_STRING_SIZE])
{
        struct kms_session *s = calloc(1, sizeof(*s));
        int r;

        if (!s) {
                kms_session_crypto_free(crypto);
                return -ENOMEM;
        }
        s->uid = uid;
        snprintf(s->key_name, sizeof(s->key_name), "%s", key_name);
        s->key_version = key_version;
        snprintf(s->peer_fingerprint, sizeof(s->peer_fingerprint), "%s", peer_fingerprint);
        s->crypto = crypto;
        pthread_mutex_init(&s->lock, NULL);

        pthread_mutex_lock(&t->lock);
        if (t->n >= KMS_MAX_SESSIONS || count_uid(t, uid) >= KMS_MAX_SESSIONS_PER_UID)
                sweep(t, now_ms);
        if (t->n >= KMS_MAX_SESSIONS)
                drop_expired(t);
        if (t->n >= KMS_MAX_SESSIONS)
                r = -EDQUOT;
        else if (count_uid(t, uid) >= KMS_MAX_SESSIONS_PER_UID)
                r = -EDQUOT;
        else {
                /* 122 random bits: a collision is not going to happen, but
                 * an id must never name two sessions. */
                do
                        r = kms_session_id_new(s->id);
                while (r >= 0 && find(t, s->id));
        }
        if (r >= 0) {
                unsigned b = bucket_of(s->id);

                s->next = t->buckets[b];
                t->buckets[b] = s;
                t->n++;
                memcpy(ret_id, s->id, KMS_SESSION_ID_STRING_SIZE);
        }
        pthread_mutex_unlock(&t->lock);
        if (r < 0)
                session_free(s);
        return r < 0 ? r : 0;
}

int kms_sessions_get(struct kms_sessions *t, const char *id, uid_t uid, struct kms_session **ret)
{
        struct kms_session **link, *s = NULL;

        pthread_mutex_lock(&t->lock);
        link = find(t, id);
        if (link && (*link)->uid == uid) {
                s = *link;
                s->refs++;
        }
        pthread_mutex_unlock(&t->lock);
        if (!s)
                return link ? -EPERM : -ENOENT;
        pthread_mutex_lock(&s->lock);
        /* CloseSession may have taken it out of the table while this call
         * waited for the lock (behind another call on the session): the
         * caller has been told it is closed, so it is not found now. */
        if (s->ended) {
                kms_sessions_put(t, s);
                return -ENOENT;
        }
        *ret = s;
        return 0;
}

void kms_sessions_put(struct kms_sessions *t, struct kms_session *s)
{
        bool gone;

        if (!s)
                return;
        pthread_mutex_unlock(&s->lock);
        pthread_mutex_lock(&t->lock);
        gone = --s->refs == 0 && s->closed;
        pthread_mutex_unlock(&t->lock);
        if (gone)
                session_free(s);
}

int kms_sessions_key_name(struct kms_sessions *t, const char *id, uid_t uid, char *buf, size_t len)
{
        struct kms_session **link;
        int r = -ENOENT;

        pthread_mutex_lock(&t->lock);
        link = find(t, id);
        if (link && (*link)->uid == uid) {
                snprintf(buf, len, "%s", (*link)->key_name);
                r = 0;
        } else if (link)
                r = -EPERM;
        pthread_mutex_unlock(&t->lock);
        return r;
}

int kms_sessions_close(struct kms_sessions *t, const char *id, uid_t uid)
{
        struct kms_session **link, *s = NULL;
        int r = -ENOENT;

        pthread_mutex_lock(&t->lock);
        link = find(t, id);
        if (link && (*link)->uid == uid) {
                /* Out of the table at once (the id is unknown from now on),
                 * but kept alive by our reference for the wipe below. */
                s = *link;
                s->refs++;
                unlink_session(t, link);
                r = 0;
        } else if (link)
                r = -EPERM;
        pthread_mutex_unlock(&t->lock);
        if (!s)
                return r;
        /* Wait for the call in progress on the session, if any, and wipe
         * the keys before answering: calls that found the session before
         * it left the table and still wait for its lock see `ended` and
         * answer SessionNotFound, so nothing is sealed or opened with it
         * after CloseSession's reply. (Lock order: the table's lock is not
         * held here.) */
        pthread_mutex_lock(&s->lock);
        s->ended = true;
        kms_session_crypto_free(s->crypto); /* wipes the keys */
        s->crypto = NULL;
        kms_sessions_put(t, s);
        return 0;
}

void kms_sessions_foreach(struct kms_sessions *t, uid_t uid,
                          void (*cb)(const struct kms_session *s, const struct kms_session_crypto_info *info,
                                     void *userdata),
                          void *userdata)
{
        struct kms_session **mine = NULL;
        size_t n = 0;

        /* Take references under the table's lock, then read each session
         * under its own lock only: a long Seal on one session must not hold
         * up the table (and so the bus thread) meanwhile. */
        pthread_mutex_lock(&t->lock);
        mine = calloc(KMS_MAX_SESSIONS_PER_UID * 2 + 1, sizeof(*mine));
        for (unsigned b = 0; mine && b < KMS_SESSION_BUCKETS; b++)
                for (struct kms_session *s = t->buckets[b]; s && n < KMS_MAX_SESSIONS_PER_UID * 2; s = s->next)
                        if (s->uid == uid) {
                                s->refs++;
                                mine[n++] = s;
                        }
        pthread_mutex_unlock(&t->lock);

        for (size_t i = 0; i < n; i++) {
                struct kms_session *s = mine[i];
                struct kms_session_crypto_info info;
                bool live, gone;

                pthread_mutex_lock(&s->lock);
                live = s->crypto != NULL;
                if (live)
                        kms_session_crypto_get_info(s->crypto, &info);
                pthread_mutex_unlock(&s->lock);
                if (live)
                        cb(s, &info, userdata);
                pthread_mutex_lock(&t->lock);
                gone = --s->refs == 0 && s->closed;
                pthread_mutex_unlock(&t->lock);
                if (gone)
                        session_free(s);
        }
        free(mine);
}
