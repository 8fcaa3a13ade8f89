/* kmsd's core: the daemon state shared by the bus thread and the workers,
 * the request that travels from one to the other, and the functions of
 * the core's files (bus thread, worker pool, scheduler, access decision,
 * caller identity, use counts, backends, signals). The API files
 * (api/) use all of this; nothing here calls into api/. The method table
 * is in registry.h, the audit writer in audit.h. */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <dbus/dbus.h>

#include "config.h"
#include "kms-backend.h"
#include "kms-key.h"
#include "key-cache.h"
#include "kms-policy.h"
#include "audit.h"
#include "session.h"
#include "store.h"
#include "registry.h"

/* Caps on what callers can make kmsd hold (ssh-agent's AGENT_MAX_*). */
#define KMS_MAX_CALLERS 4096u                        /* cached bus peers */
#define KMS_MAX_PENDING_BYTES (256u * 1024u * 1024u) /* payload bytes queued for workers */
#define KMS_MAX_OPTIONS 16u                          /* entries in one a{sv} */
#define KMS_MAX_KEYS_PER_OWNER 1000u                 /* live keys of one non-root owner */
#define KMS_MAX_KEY_NAMES_PER_OWNER 10000u           /* keys including tombstones, per owner */
#define KMS_PENDING_SHARE_PER_CALLER 4u              /* one non-root uid may fill 1/4 of max_pending */
#define KMS_MAX_PENDING_BYTES_PER_UID (32u * 1024u * 1024u) /* payload bytes queued for one non-root uid */
#define KMS_LIST_MAX_LIMIT 5000u                     /* ListKeys, ListRevoked: most entries in one reply */
#define KMS_LIST_DEFAULT_LIMIT 1000u                 /* ... when the option limit is not given */
#define KMS_ERRMSG_MAX 512u

struct kms_daemon;
struct kms_worker;
struct kms_method;
struct kms_refusals;
struct kms_bus_timers;

/* Per-key locks (keylock.c). */
#define KMS_KEY_LOCK_STRIPES 256u
struct kms_key_locks {
        pthread_rwlock_t stripes[KMS_KEY_LOCK_STRIPES];
};

/* One parsed, validated request: built on the bus thread, run and freed
 * by a worker. Byte arrays point into msg, which the request holds a
 * reference to, so they stay valid until the request is freed. */
struct kms_request {
        struct kms_request *next; /* queue link */
        DBusMessage *msg;
        const struct kms_method *method;
        struct kms_caller caller;
        size_t payload_bytes;

        char name[KMS_MAX_KEY_NAME + 1];
        enum kms_algorithm algorithm;
        unsigned usages;
        uid_t owner;
        bool owner_set;
        uint32_t version;
        bool include_destroyed;
        enum kms_hash hash;
        bool hash_set;
        enum kms_padding padding;
        bool padding_set;
        const uint8_t *data;
        size_t data_len;
        const uint8_t *sig;
        size_t sig_len;

        /* lifecycle options */
        uint64_t rotate_every, rotate_after_uses;
        uint32_t keep_versions;
        bool rotate_every_set, rotate_after_uses_set, keep_versions_set;
        uint64_t after; /* DestroyKey: seconds until destruction, 0 = now */
        enum kms_revoke_reason reason;
        char note[KMS_MAX_REVOKE_NOTE + 1];
        bool no_replace;
        uint32_t expected_primary; /* internal rotation requests */
        int backend; /* CreateKey: index in daemon->backends (option "backend") */
        /* The key lock this request holds (a stripe, if key_locked),
         * released once its reply is queued (keylock.c). */
        bool key_locked, key_lock_exclusive;
        unsigned key_lock;
        /* Its records went into the store with its change (audit_pending):
         * the pool only releases the reply (kms_audit_release). */
        bool audit_committed;
        /* For the audit record: set by the worker where it knows better
         * than the defaults (kind "request", version 0, no details). */
        const char *audit_kind;
        uint32_t audit_version;
        char audit_details[160];
        /* A denial's log line (access.c); the bus thread writes it unless
         * the caller's refusals are being rate-limited (refusal.c). */
        char refusal_log[KMS_ERRMSG_MAX];
        char backend_name[16];

        /* The policy the bus thread decided under (a reference); workers
         * use it to filter lists and to answer CheckPolicy. */
        struct kms_policy *policy;
        /* Derive, Decrypt and sessions; byte arrays point into msg. */
        const uint8_t *peer, *salt, *info, *context, *aad;
        size_t peer_len, salt_len, info_len, context_len, aad_len;
        uint32_t length;
        int role; /* enum kms_session_role */
        uint64_t ttl, max_messages;
        char session_id[40];

        /* ExportAudit; limit also for ListKeys, ListRevoked */
        uint64_t from_seq, to_seq;
        int64_t since_ms, until_ms;
        uint32_t last, limit;
        /* ListKeys, ListRevoked: only names after this one ("" none) */
        char list_after[KMS_MAX_KEY_NAME + 1];

        /* CheckPolicy */
        char check_user[64];
        uid_t check_uid;
        bool check_uid_set;
        enum kms_operation check_op;
};

#define KMS_MAX_BACKENDS 2

/* Per-worker context: one backend session and one store connection. */
struct kms_worker {
        struct kms_daemon *daemon;
        /* One context per backend, index as in daemon->backends. */
        struct kms_backend_worker *backends[KMS_MAX_BACKENDS];
        struct kms_store *store;
        pthread_t thread;
        unsigned index;
};

/* The queued requests of one caller (one uid; kmsd's own internal
 * requests are a caller of their own). */
struct kms_pool_queue {
        uid_t uid;
        bool internal;
        struct kms_request *head, *tail;
        unsigned queued;
        size_t bytes;
        struct kms_pool_queue *hash_next; /* bucket chain */
        struct kms_pool_queue *ring_next; /* callers with requests, served in turn */
};

#define KMS_POOL_BUCKETS 64u

struct kms_pool {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        /* Fair queueing: one queue per caller, and a ring of the callers
         * that have requests; a worker takes the next request of the
         * caller at the ring's head and moves that caller to the back. */
        struct kms_pool_queue *buckets[KMS_POOL_BUCKETS];
        struct kms_pool_queue *ring_head, *ring_tail;
        unsigned queued;
        size_t queued_bytes;
        bool stopping;
        struct kms_worker *workers;
        unsigned n_workers;
        void (*on_change)(struct kms_daemon *d); /* set at start, read-only after */
};

/* Use counters kept in memory and flushed to the store about once a
 * second by whichever worker notices, and at shutdown. */
struct kms_usage_entry {
        int64_t key_id;
        uint32_t version;
        uint64_t total;     /* uses known so far, stored and not */
        uint64_t unflushed; /* of which not yet in the store */
        bool limit_reported;
};

struct kms_usage_counter {
        pthread_mutex_t lock;
        struct kms_usage_entry *entries;
        size_t n, cap;
        uint64_t last_flush_ms;
};

/* The scheduler thread: sleeps until the next rotation period or
 * scheduled destruction falls due, then queues the work for the pool. */
struct kms_scheduler {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        pthread_t thread;
        bool started, stopping, poked;
        /* The work it queued that has not finished, and the failed work
         * waiting for its retry (scheduler.c); under lock. */
        struct kms_scheduled *tracked;
        unsigned n_tracked, max_running;
};

struct kms_daemon {
        struct kms_config cfg;
        char *db_path;
        /* The backends in use: [0] is the PKCS#11 token (the default for
         * new keys), then the TPM when [tpm] enable = yes. A key names its
         * backend (key.backend); kms_backend_index() finds it here. */
        struct kms_backend *backends[KMS_MAX_BACKENDS];
        unsigned n_backends;
        DBusConnection *conn;
        int wake_fd;
        int signal_fd;
        pthread_mutex_t watch_lock;
        DBusWatch *watches[8];
        unsigned n_watches;
        struct kms_bus_timers *timers; /* libdbus's timeouts (bus.c), under watch_lock */
        struct kms_pool pool;
        struct kms_usage_counter usage;
        struct kms_key_cache key_cache;
        struct kms_scheduler scheduler;
        uint64_t started_ms;
        atomic_bool stopping;
        atomic_uint generating; /* key generations running now */
        void *callers; /* bus thread only: struct kms_caller_cache */
        /* Bumped by every policy reload (any thread); the bus thread drops
         * its caller cache when it sees a new value. */
        atomic_uint caller_generation;
        struct kms_refusals *refusals; /* bus thread only: refusal.c */
        struct kms_store *bus_store; /* bus thread only: key owners */
        pthread_mutex_t policy_lock; /* guards the pointer policy */
        struct kms_policy *policy;
        struct kms_sessions sessions;
        struct kms_audit audit;
        struct kms_registry registry; /* filled before the bus opens, read-only after */
        struct kms_key_locks key_locks;
};

/* The index in d->backends of the backend named name ("pkcs11", "tpm"),
 * or -1 if kmsd has no such backend configured. */
int kms_backend_index(const struct kms_daemon *d, const char *name);
/* "token" or "TPM", for messages. */
const char *kms_backend_noun(const char *name);
/* Why an operation of the backend failed with r, for a person: the key
 * missing from the device, not supported, or the device unreachable (and
 * why) — or strerror. Written to buf, which is returned. */
const char *kms_backend_explain(struct kms_daemon *d, const char *name, int r, char *buf, size_t len);

/* access.c: the policy in force, and the decision on the bus thread. */
int kms_access_init(struct kms_daemon *d, char *errbuf, size_t errlen);
void kms_access_free(struct kms_daemon *d);
/* A new reference to the policy in force. */
struct kms_policy *kms_access_policy(struct kms_daemon *d);
/* Re-read the policy files; on error the old policy stays and errbuf
 * says why (file:line). Returns the number of rules or a negative code
 * (KMS_E_POLICY for a broken file). */
int kms_access_reload(struct kms_daemon *d, char *errbuf, size_t errlen);
/* Decide req (its method's op and scope) for req->caller, before any
 * backend work; takes a policy reference into req->policy. -EACCES with
 * errmsg on denial (logged). */
int kms_access_check(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen);

/* pool.c */
/* Called by a worker after a request that committed a change to the
 * store (main.c wires the scheduler's poke here). */
typedef void (*kms_pool_change_fn)(struct kms_daemon *d);
int kms_pool_start(struct kms_daemon *d, unsigned n_workers, kms_pool_change_fn on_change);
/* Queue req; -EBUSY when full, -ESHUTDOWN when stopping. On success the
 * pool owns req. */
int kms_pool_submit(struct kms_pool *p, struct kms_request *req, unsigned max_pending);
/* Finish every queued request, then stop and join the workers. */
void kms_pool_stop(struct kms_pool *p);
unsigned kms_pool_pending(struct kms_pool *p);
/* Queue the internal request member (a KMS_SCOPE_NONE method of the
 * registry: ScheduledRotate, UsageRotate, ScheduledDestroy) on key name,
 * run as kmsd itself. -EINVAL for an unknown member, else as
 * kms_pool_submit(). */
int kms_pool_submit_internal(struct kms_daemon *d, const char *member, const char *name, uint32_t expected_primary);
void kms_request_free(struct kms_request *req);

/* keylock.c: a request takes its key's lock, shared to use a version or
 * exclusive to change the key; the pool releases it after the reply is
 * queued. -EDEADLK if req holds another stripe already. */
void kms_key_locks_init(struct kms_key_locks *l);
void kms_key_locks_free(struct kms_key_locks *l);
int kms_key_lock(struct kms_daemon *d, struct kms_request *req, const char *name, bool exclusive);
void kms_key_unlock(struct kms_daemon *d, struct kms_request *req);

/* The audit event of req finished with r (errmsg its sentence): kind,
 * caller, operation, key, version and details as the record shows them;
 * details is the buffer the event points into. */
void kms_request_audit_event(const struct kms_request *req, int r, const char *errmsg, struct kms_audit_event *ret,
                             char *details, size_t len);

/* usage.c */
void kms_usage_init(struct kms_usage_counter *u);
/* Count one use of a version; a new entry starts from the count store
 * has now. Returns the total. *ret_first_over is true exactly once per
 * version (until kms_usage_limit_retry), when the total first reaches
 * limit (0: no limit). */
uint64_t kms_usage_add(struct kms_usage_counter *u, struct kms_store *store, int64_t key_id, uint32_t version,
                       bool *ret_first_over, uint64_t limit);
/* The rotation for the limit could not be queued: report it again. */
void kms_usage_limit_retry(struct kms_usage_counter *u, int64_t key_id, uint32_t version);
/* Uses counted in memory and not yet in the store. */
uint64_t kms_usage_unflushed(struct kms_usage_counter *u, int64_t key_id, uint32_t version);
/* Write the counts to store if force or a second has passed. */
void kms_usage_maybe_flush(struct kms_usage_counter *u, struct kms_store *store, bool force);
void kms_usage_free(struct kms_usage_counter *u);

/* scheduler.c */
int kms_scheduler_start(struct kms_daemon *d);
/* Something changed (a commit): recompute the next due time. */
void kms_scheduler_poke(struct kms_daemon *d);
/* The internal request the scheduler may have queued for key name ran
 * (ok: it did not fail): its slot is free; a failure is retried later. */
void kms_scheduler_done(struct kms_daemon *d, const char *name, bool ok);
void kms_scheduler_stop(struct kms_daemon *d);

/* backend.c: the backends of d, key generation slots. */
/* Key generation can take seconds (RSA-4096); at most workers - 1 run at
 * once, so one worker always stays free for signing. -EBUSY otherwise. */
int kms_generation_begin(struct kms_daemon *d, char *errmsg, size_t errlen);
void kms_generation_end(struct kms_daemon *d);

/* caller.c: identity of a bus peer, from the bus daemon, asked without
 * waiting; bus thread only. */
/* A parked message's turn: caller is its sender (r 0), or NULL when it
 * could not be identified (r: -ETIMEDOUT, -ESRCH, -EPROTO) or kmsd stops
 * (the r given to kms_caller_drain). m is borrowed. */
typedef void (*kms_caller_ready_fn)(struct kms_daemon *d, DBusMessage *m, const struct kms_caller *caller, int r);
/* m's sender: 0 and *ret when it is known now and none of its messages
 * waits; 1 when m was parked (a reference kept; ready() runs for it later,
 * in the order the sender's messages came); -EBUSY over the caps of
 * waiting messages (bytes: m's size, as bus.c counts it), -ENOMEM,
 * -ENOTCONN, -EPROTO (no sender). */
int kms_caller_identify(struct kms_daemon *d, DBusMessage *m, size_t bytes, kms_caller_ready_fn ready,
                        struct kms_caller *ret);
/* The cached identity of sender, without asking: 0, or -ENOENT. */
int kms_caller_peek(struct kms_daemon *d, const char *sender, struct kms_caller *ret);
/* Every parked message gets ready(d, m, NULL, r); the questions are
 * cancelled (shutdown). */
void kms_caller_drain(struct kms_daemon *d, int r);
/* The name left the bus: its entry goes, its parked messages are dropped
 * unanswered. */
void kms_caller_forget(struct kms_daemon *d, const char *unique_name);
void kms_caller_cache_free(struct kms_daemon *d);
/* Make the bus thread fetch every caller's identity and groups again
 * before its next decision; safe from any thread (a policy reload). */
void kms_caller_invalidate(struct kms_daemon *d);

/* bus.c */
int kms_bus_open(struct kms_daemon *d, char *errbuf, size_t errlen);
int kms_bus_run(struct kms_daemon *d);
void kms_bus_close(struct kms_daemon *d);
/* Send m from any thread; wakes the bus thread if it must finish the write. */
void kms_bus_send(struct kms_daemon *d, DBusMessage *m);

/* signals.c: the one emitter of org.kmsd.KeyManager1's signals (their
 * arguments as in the introspection XML). */
void kms_signal_key_created(struct kms_daemon *d, const char *name, uint32_t version);
void kms_signal_key_rotated(struct kms_daemon *d, const char *name, uint32_t version);
void kms_signal_key_revoked(struct kms_daemon *d, const char *name, uint32_t version, const char *reason);
void kms_signal_key_destroyed(struct kms_daemon *d, const char *name);
