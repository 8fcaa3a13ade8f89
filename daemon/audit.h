/* The audit log (docs/audit.md): one record per request and per action of
 * kmsd's own, in a hash chain with signed checkpoints, written by one
 * thread in batches (group commit) to the audit table. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <dbus/dbus.h>

#include "kms-backend.h"

struct kms_daemon;
struct kms_store;
struct kms_audit_row;

/* What happened; the writer adds seq, time, prev and hash. Strings are
 * copied (and cut to their column's size); NULL means empty. */
struct kms_audit_event {
        const char *kind; /* "request", or an event kind of docs/audit.md */
        uid_t uid;
        pid_t pid;
        const char *exe;
        const char *operation;
        const char *key;
        uint32_t version;
        const char *result; /* "ok", "denied", or an error name */
        const char *details;
};

struct audit_entry;

/* Sends a reply the writer releases (registered by the bus layer). */
typedef void (*kms_audit_send_fn)(void *userdata, DBusMessage *m);

struct kms_audit {
        pthread_mutex_t lock;
        pthread_cond_t work, done;
        pthread_t thread;
        bool started, stopping;
        struct audit_entry *head, *tail; /* queued, under lock */
        size_t queued;
        bool failing;      /* the last batch could not be written */
        int last_error;    /* its code */
        bool failure_open; /* [audit] failure = open */
        kms_audit_send_fn send; /* under lock: how answers leave; NULL: dropped */
        void *send_data;
        bool syslog;       /* [audit] syslog */
        unsigned checkpoint_records, checkpoint_seconds;

        /* writer thread only */
        struct kms_store *store;
        uint64_t seq;     /* the newest record written */
        uint8_t hash[32]; /* its hash */
        uint64_t since_checkpoint;
        uint64_t last_checkpoint_ms;

        /* the audit key (set once at start, then read-only) */
        const struct kms_backend_ops *ops;
        struct kms_backend_worker *bw;
        uint8_t key_id[KMS_KEY_ID_BYTES];
        char key_fingerprint[65];
        bool have_key;
};

/* Open the writer's store connection, read the chain head and start the
 * writer. Records may be logged from then on; checkpoints are signed once
 * kms_audit_set_key() has run. */
int kms_audit_start(struct kms_daemon *d, char *errbuf, size_t errlen);
/* Find (or, at first start or when the token lost it, generate) the audit
 * key in backends[0] and give the writer a session to sign with. */
int kms_audit_set_key(struct kms_daemon *d, char *errbuf, size_t errlen);
/* How the writer sends the replies it releases (kms_audit_log_reply).
 * The bus layer registers itself once its connection is open; before
 * that, and after fn = NULL, replies are dropped. */
void kms_audit_set_sender(struct kms_audit *a, kms_audit_send_fn fn, void *userdata);
/* Write a last checkpoint and stop the writer. */
void kms_audit_stop(struct kms_daemon *d);

/* Queue ev. With wait, block until it is written: returns 0, or
 * KMS_E_AUDIT when it could not be (and failure = closed). */
int kms_audit_log(struct kms_daemon *d, const struct kms_audit_event *ev, bool wait);
/* Queue ev for the finished request, and send reply (which it takes; NULL
 * if none is wanted) once the record is written — or AuditFailure instead
 * when it cannot be (failure = closed). The worker does not wait: the
 * writer answers. */
void kms_audit_log_reply(struct kms_daemon *d, const struct kms_audit_event *ev, DBusMessage *request,
                         DBusMessage *reply);
/* For a request whose records were committed with its change (in
 * audit_pending, kms_store_audit_pending_add()): the writer chains them
 * with its next batch and then sends reply (taken; NULL if none), in
 * order with the other replies. request NULL: only wake the writer. */
void kms_audit_release(struct kms_daemon *d, DBusMessage *request, DBusMessage *reply);
/* The row of ev as the writer would store it, before seq, prev and hash
 * (time now; strings cut to their columns and made valid UTF-8). */
void kms_audit_row_from_event(const struct kms_audit_event *ev, struct kms_audit_row *row);
/* Write a signed checkpoint now; its seq in *ret_seq. */
int kms_audit_checkpoint(struct kms_daemon *d, uint64_t *ret_seq);
/* True while records cannot be written and failure = closed: new requests
 * are refused (each refusal is itself logged, which retries the write). */
bool kms_audit_refusing(struct kms_daemon *d);

/* The canonical form (docs/audit.md) of row into buf; its length, or
 * -ENOBUFS. Also used by the unit tests. */
int kms_audit_canonical(const struct kms_audit_row *row, char *buf, size_t len);
/* body = SHA-256 of the canonical form; a record's hash is
 * SHA-256(prev || body) (docs/audit.md). */
int kms_audit_body_hash(const struct kms_audit_row *row, uint8_t ret[32]);
void kms_audit_link_hash(const uint8_t prev[32], const uint8_t body[32], uint8_t ret[32]);
/* "2026-11-26T01:02:03.456Z" for Unix milliseconds. */
void kms_audit_format_time(int64_t ms, char *buf, size_t len);
/* The short name of a bus error ("NotFound" for ...Error.NotFound). */
const char *kms_audit_result_name(int r);
