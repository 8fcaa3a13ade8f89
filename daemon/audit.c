/* The audit writer; see audit.h and docs/audit.md. */
#include "audit.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "daemon.h"
#include "kms-bus.h"
#include "kms-error.h"
#include "kms-log.h"
#include "kms-util.h"

#define AUDIT_CANONICAL_MAX 4096
#define AUDIT_MAX_QUEUED 16384u /* about 21 MiB of rows at most */
#define AUDIT_LABEL "kmsd-audit#"
#define AUDIT_PENDING_BATCH 256u /* records of changes chained per batch */

struct audit_waiter {
        bool done;
        int result;
        uint64_t seq; /* checkpoints: the seq written */
};

struct audit_entry {
        struct audit_entry *next;
        bool checkpoint; /* a checkpoint requested by a caller */
        bool release;    /* no row: its records are in audit_pending already */
        struct kms_audit_row row;
        struct audit_waiter *waiter; /* NULL: nobody waits */
        DBusMessage *request;        /* a bus request answered once its record is written ... */
        DBusMessage *reply;          /* ... with this (NULL: no reply wanted) */
};

/* Answer an entry's request: its reply if the record was written (or
 * failure = open), AuditFailure otherwise. */
static void answer(struct kms_daemon *d, struct audit_entry *e, bool written)
{
        DBusMessage *out = e->reply;

        e->reply = NULL;
        /* A change's records were committed with it: its reply stands. */
        if (!written && !d->audit.failure_open && !e->release) {
                if (out)
                        dbus_message_unref(out);
                out = dbus_message_get_no_reply(e->request)
                              ? NULL
                              : dbus_message_new_error(e->request, KMS_ERROR_AUDIT_FAILURE,
                                                       "the audit log cannot be written, so kmsd refuses to answer "
                                                       "(failure = closed); see kmsd's log");
        }
        if (out) {
                kms_audit_send_fn send;
                void *data;

                pthread_mutex_lock(&d->audit.lock);
                send = d->audit.send;
                data = d->audit.send_data;
                pthread_mutex_unlock(&d->audit.lock);
                if (send)
                        send(data, out);
                dbus_message_unref(out);
        }
        dbus_message_unref(e->request);
        e->request = NULL;
}

/* ---- canonical form ----------------------------------------------------- */

static int put(char *buf, size_t len, size_t *off, const char *s, size_t n)
{
        if (*off + n >= len)
                return -ENOBUFS;
        memcpy(buf + *off, s, n);
        *off += n;
        buf[*off] = '\0';
        return 0;
}

/* A text field with docs/audit.md's escaping. */
static int put_text(char *buf, size_t len, size_t *off, const char *s)
{
        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
                char esc[8];
                int r;

                switch (*p) {
                case '\\': r = put(buf, len, off, "\\\\", 2); break;
                case '\t': r = put(buf, len, off, "\\t", 2); break;
                case '\n': r = put(buf, len, off, "\\n", 2); break;
                case '\r': r = put(buf, len, off, "\\r", 2); break;
                default:
                        if (*p < 0x20 || *p == 0x7f) {
                                snprintf(esc, sizeof(esc), "\\x%02x", *p);
                                r = put(buf, len, off, esc, 4);
                        } else
                                r = put(buf, len, off, (const char *)p, 1);
                }
                if (r < 0)
                        return r;
        }
        return 0;
}

void kms_audit_format_time(int64_t ms, char *buf, size_t len)
{
        time_t t = (time_t)(ms / 1000);
        struct tm tm;

        if (!gmtime_r(&t, &tm))
                memset(&tm, 0, sizeof(tm));
        if (strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm) == 0 || strlen(buf) + 6 > len)
                snprintf(buf, len, "1970-01-01T00:00:00");
        snprintf(buf + strlen(buf), len - strlen(buf), ".%03uZ", (unsigned)(ms % 1000) % 1000u);
}

int kms_audit_canonical(const struct kms_audit_row *a, char *buf, size_t len)
{
        char num[64], when[40];
        size_t off = 0;
        int r;

        if (len == 0)
                return -ENOBUFS;
        buf[0] = '\0';
        kms_audit_format_time(a->time_ms, when, sizeof(when));
        snprintf(num, sizeof(num), "kmsd-audit-v1\t%llu\t", (unsigned long long)a->seq);
        r = put(buf, len, &off, num, strlen(num));
        if (r >= 0)
                r = put(buf, len, &off, when, strlen(when));
        if (r >= 0)
                r = put(buf, len, &off, "\t", 1);
        if (r >= 0)
                r = put_text(buf, len, &off, a->kind);
        snprintf(num, sizeof(num), "\t%u\t%d\t", a->uid, (int)a->pid);
        if (r >= 0)
                r = put(buf, len, &off, num, strlen(num));
        if (r >= 0)
                r = put_text(buf, len, &off, a->exe);
        if (r >= 0)
                r = put(buf, len, &off, "\t", 1);
        if (r >= 0)
                r = put_text(buf, len, &off, a->operation);
        if (r >= 0)
                r = put(buf, len, &off, "\t", 1);
        if (r >= 0)
                r = put_text(buf, len, &off, a->key);
        snprintf(num, sizeof(num), "\t%u\t", a->version);
        if (r >= 0)
                r = put(buf, len, &off, num, strlen(num));
        if (r >= 0)
                r = put_text(buf, len, &off, a->result);
        if (r >= 0)
                r = put(buf, len, &off, "\t", 1);
        if (r >= 0)
                r = put_text(buf, len, &off, a->details);
        return r < 0 ? r : (int)off;
}

const char *kms_audit_result_name(int r)
{
        const char *name;

        if (r >= 0)
                return "ok";
        if (r == -EACCES || r == -EPERM)
                return "denied";
        name = kms_error_to_bus_name(r);
        return strncmp(name, KMS_ERROR_PREFIX, strlen(KMS_ERROR_PREFIX)) == 0 ? name + strlen(KMS_ERROR_PREFIX) : name;
}

/* ---- the writer --------------------------------------------------------- */

int kms_audit_body_hash(const struct kms_audit_row *row, uint8_t ret[32])
{
        char canon[AUDIT_CANONICAL_MAX];
        unsigned int n = 0;
        int len = kms_audit_canonical(row, canon, sizeof(canon));

        if (len < 0)
                return len;
        return EVP_Digest(canon, (size_t)len, ret, &n, EVP_sha256(), NULL) ? 0 : -ENOMEM;
}

void kms_audit_link_hash(const uint8_t prev[32], const uint8_t body[32], uint8_t ret[32])
{
        uint8_t both[64];
        unsigned int n = 0;

        memcpy(both, prev, 32);
        memcpy(both + 32, body, 32);
        EVP_Digest(both, sizeof(both), ret, &n, EVP_sha256(), NULL);
}

/* Give row the next seq, link it to the head and make it the head. */
static void chain(struct kms_audit *a, struct kms_audit_row *row)
{
        uint8_t body[32];

        row->seq = a->seq + 1;
        memcpy(row->prev, a->hash, 32);
        if (kms_audit_body_hash(row, body) < 0) {
                /* Cannot happen with the column sizes; keep the chain whole. */
                row->details[0] = '\0';
                (void)kms_audit_body_hash(row, body);
        }
        kms_audit_link_hash(row->prev, body, row->hash);
        a->seq = row->seq;
        memcpy(a->hash, row->hash, 32);
}

/* Fill row as a checkpoint after the current head and sign it. */
/* Fill row as a checkpoint after the current head and sign it. -ENOKEY
 * (and nothing chained) while there is no audit key yet; another error
 * if the token could not sign: an unsigned checkpoint is not written,
 * the batch fails (docs/audit.md: checkpoints are signed). */
static int make_checkpoint(struct kms_audit *a, struct kms_audit_row *row)
{
        bool have_key;
        int r;

        pthread_mutex_lock(&a->lock);
        have_key = a->have_key;
        pthread_mutex_unlock(&a->lock);
        if (!have_key)
                return -ENOKEY;
        memset(row, 0, sizeof(*row));
        row->time_ms = (int64_t)kms_now_unix_ms();
        snprintf(row->kind, sizeof(row->kind), "checkpoint");
        snprintf(row->operation, sizeof(row->operation), "Checkpoint");
        row->uid = (uint32_t)getuid();
        row->pid = (int32_t)getpid();
        snprintf(row->result, sizeof(row->result), "ok");
        snprintf(row->details, sizeof(row->details), "records=%llu key=%s", (unsigned long long)(a->seq + 1),
                 a->key_fingerprint);
        chain(a, row);
        /* The record's hash is SHA-256(prev || body): an ECDSA-SHA256
         * signature of that 64-byte message. */
        r = a->ops->sign(a->bw, a->key_id, KMS_ALG_EC_P256, KMS_HASH_SHA256, KMS_PAD_NONE, row->hash,
                         sizeof(row->hash), row->sig, &row->sig_len);
        if (r < 0) {
                log_error("AUDIT FAILURE: checkpoint seq %llu could not be signed in the token: %s",
                          (unsigned long long)row->seq, strerror(-r));
                return r;
        }
        a->since_checkpoint = 0;
        a->last_checkpoint_ms = (uint64_t)row->time_ms;
        return 0;
}

static void to_syslog(const struct kms_audit_row *r)
{
        char exe[sizeof(r->exe) * 4], key[sizeof(r->key) * 4], details[sizeof(r->details) * 4];
        size_t off;

        exe[0] = key[0] = details[0] = '\0';
        /* Escaped as in the canonical form: no caller-chosen newline or
         * quote can make a line that looks like another record. */
        off = 0;
        (void)put_text(exe, sizeof(exe), &off, r->exe);
        off = 0;
        (void)put_text(key, sizeof(key), &off, r->key);
        off = 0;
        (void)put_text(details, sizeof(details), &off, r->details);
        syslog(LOG_AUTHPRIV | LOG_INFO,
               "kmsd-audit: seq=%llu kind=%s uid=%u pid=%d exe=\"%s\" op=%s key=\"%s\" version=%u result=%s "
               "details=\"%s\"",
               (unsigned long long)r->seq, r->kind, r->uid, (int)r->pid, exe, r->operation, key, r->version, r->result,
               details);
}

static void *writer_main(void *arg)
{
        struct kms_daemon *d = arg;
        struct kms_audit *a = &d->audit;
        struct kms_audit_row *rows = NULL, *pending = calloc(AUDIT_PENDING_BATCH, sizeof(*pending));
        size_t cap = 0, n_pending = 0;
        int64_t pending_upto = 0;
        bool more_pending = true; /* records a crash left in audit_pending */

        pthread_mutex_lock(&a->lock);
        for (;;) {
                struct audit_entry *batch;
                size_t n = 0, want;
                uint64_t now, seq0, since0, last_cp0;
                uint8_t hash0[32];
                bool timed, stopping;
                int r;

                while (!a->head && !a->stopping && !more_pending) {
                        struct timespec until;

                        /* Wake up for the time-based checkpoint. */
                        clock_gettime(CLOCK_REALTIME, &until);
                        until.tv_sec += 1;
                        pthread_cond_timedwait(&a->work, &a->lock, &until);
                        if (a->since_checkpoint > 0 && a->checkpoint_seconds &&
                            kms_now_unix_ms() - a->last_checkpoint_ms >= a->checkpoint_seconds * 1000ull)
                                break;
                }
                stopping = a->stopping;
                batch = a->head;
                a->head = a->tail = NULL;
                a->queued = 0;
                pthread_mutex_unlock(&a->lock);

                /* The records committed with changes come first. */
                n_pending = 0;
                pending_upto = 0;
                if (!pending ||
                    kms_store_audit_pending_read(a->store, pending, AUDIT_PENDING_BATCH, &n_pending, &pending_upto) < 0) {
                        n_pending = 0;
                        pending_upto = 0;
                        log_warning("audit: cannot read the records committed with changes; next batch retries");
                }
                want = 1 + n_pending; /* a checkpoint may be added */
                for (struct audit_entry *e = batch; e; e = e->next)
                        want += !e->release + e->checkpoint;
                if (want > cap) {
                        struct kms_audit_row *grown = realloc(rows, want * sizeof(*rows));
                        if (grown) {
                                rows = grown;
                                cap = want;
                        }
                }
                seq0 = a->seq;
                memcpy(hash0, a->hash, 32);
                since0 = a->since_checkpoint;
                last_cp0 = a->last_checkpoint_ms;
                r = want <= cap ? 0 : -ENOMEM;
                for (size_t i = 0; i < n_pending && r >= 0; i++) {
                        rows[n] = pending[i];
                        chain(a, &rows[n]);
                        a->since_checkpoint++;
                        n++;
                }
                for (struct audit_entry *e = batch; e && r >= 0; e = e->next) {
                        if (e->release)
                                continue;
                        if (e->checkpoint) {
                                /* Asked for: without a signature it failed. */
                                r = make_checkpoint(a, &rows[n]);
                                if (r < 0) {
                                        r = r == -ENOKEY ? KMS_E_AUDIT : r;
                                        break;
                                }
                                if (e->waiter)
                                        e->waiter->seq = rows[n].seq;
                        } else {
                                rows[n] = e->row;
                                chain(a, &rows[n]);
                                a->since_checkpoint++;
                        }
                        n++;
                }
                now = kms_now_unix_ms();
                timed = a->checkpoint_seconds && now - a->last_checkpoint_ms >= a->checkpoint_seconds * 1000ull;
                if (r >= 0 && a->since_checkpoint > 0 &&
                    (a->since_checkpoint >= a->checkpoint_records || timed || stopping)) {
                        int rc = make_checkpoint(a, &rows[n]);

                        if (rc >= 0)
                                n++;
                        else if (rc != -ENOKEY) /* no key yet: the next batch signs */
                                r = rc;
                }
                if (r >= 0 && n > 0)
                        r = kms_store_audit_append(a->store, rows, n, pending_upto);
                /* A full batch of them: there may be more (after a crash). */
                more_pending = r >= 0 && n_pending == AUDIT_PENDING_BATCH;
                if (r < 0) {
                        /* Nothing of the batch is written: the chain goes on
                         * from where it was. */
                        a->seq = seq0;
                        memcpy(a->hash, hash0, 32);
                        a->since_checkpoint = since0;
                        a->last_checkpoint_ms = last_cp0;
                        if (!a->failing || a->last_error != r)
                                log_error("AUDIT FAILURE: %zu record(s) could not be written: %s; %s", n, kms_store_strerror(r),
                                          a->failure_open ? "going on without them (failure = open)"
                                                          : "refusing requests until records can be written "
                                                            "(failure = closed)");
                } else if (a->failing)
                        log_notice("audit: records are written again (seq %llu)", (unsigned long long)a->seq);
                if (r >= 0 && a->syslog)
                        for (size_t i = 0; i < n; i++)
                                to_syslog(&rows[i]);

                /* Replies go out only now that their records are written. */
                for (struct audit_entry *e = batch; e; e = e->next)
                        if (e->request)
                                answer(d, e, r >= 0);

                pthread_mutex_lock(&a->lock);
                a->failing = r < 0;
                a->last_error = r;
                while (batch) {
                        struct audit_entry *next = batch->next;

                        if (batch->waiter) {
                                batch->waiter->done = true;
                                batch->waiter->result = r < 0 ? r : 0;
                        }
                        free(batch);
                        batch = next;
                }
                pthread_cond_broadcast(&a->done);
                if (stopping && !a->head && !more_pending)
                        break;
        }
        pthread_mutex_unlock(&a->lock);
        free(rows);
        free(pending);
        return NULL;
}

int kms_audit_start(struct kms_daemon *d, char *errbuf, size_t errlen)
{
        struct kms_audit *a = &d->audit;
        int r;

        pthread_mutex_init(&a->lock, NULL);
        pthread_cond_init(&a->work, NULL);
        pthread_cond_init(&a->done, NULL);
        a->failure_open = d->cfg.audit_failure_open;
        a->syslog = d->cfg.audit_syslog;
        /* Without a syslog socket every syslog() call would try to connect
         * again, for nothing. */
        if (a->syslog && access("/dev/log", W_OK) != 0) {
                log_notice("audit: no syslog socket (/dev/log): records go to the database only");
                a->syslog = false;
        }
        a->checkpoint_records = d->cfg.audit_checkpoint_records;
        a->checkpoint_seconds = d->cfg.audit_checkpoint_seconds;
        /* synchronous = FULL like every connection: a request is answered
         * only after its record is on disk (group commit shares the fsync). */
        r = kms_store_open(d->db_path, &a->store);
        if (r >= 0)
                r = kms_store_audit_head(a->store, &a->seq, a->hash);
        if (r < 0) {
                kms_store_close(a->store);
                a->store = NULL;
                snprintf(errbuf, errlen, "cannot open the audit log in %s: %s", d->db_path, kms_store_strerror(r));
                return r;
        }
        a->last_checkpoint_ms = kms_now_unix_ms();
        r = -pthread_create(&a->thread, NULL, writer_main, d);
        if (r < 0) {
                snprintf(errbuf, errlen, "cannot start the audit writer: %s", strerror(-r));
                return r;
        }
        a->started = true;
        return 0;
}

static void fingerprint(const uint8_t *spki, size_t len, char out[65])
{
        uint8_t h[32];
        unsigned int n = 0;

        EVP_Digest(spki, len, h, &n, EVP_sha256(), NULL);
        for (int i = 0; i < 32; i++)
                snprintf(out + 2 * i, 3, "%02x", h[i]);
}

int kms_audit_set_key(struct kms_daemon *d, char *errbuf, size_t errlen)
{
        struct kms_audit *a = &d->audit;
        const struct kms_backend_ops *ops = d->backends[0]->ops;
        struct kms_audit_key *keys = NULL, nk = {0};
        struct kms_backend_worker *bw = NULL;
        uint8_t *spki = NULL;
        size_t n = 0, spki_len = 0;
        char label[48];
        int r;

        r = ops->worker_open(d->backends[0], &bw);
        if (r < 0) {
                snprintf(errbuf, errlen, "cannot open a token session for the audit key: %s", strerror(-r));
                return r;
        }
        /* The writer's connection is its own; this one reads once. */
        {
                struct kms_store *s = NULL;

                r = kms_store_open(d->db_path, &s);
                if (r >= 0)
                        r = kms_store_audit_keys(s, &keys, &n);
                int have = r >= 0 && n > 0 ? ops->exists(bw, keys[n - 1].id) : 0;

                /* Only a token that says "not there" gets a new audit
                 * key; an error is not an answer. */
                if (have < 0)
                        r = have;
                if (r >= 0 && have == 1) {
                        memcpy(a->key_id, keys[n - 1].id, KMS_KEY_ID_BYTES);
                        fingerprint(keys[n - 1].spki, keys[n - 1].spki_len, a->key_fingerprint);
                } else if (r >= 0) {
                        if (n > 0)
                                log_error("audit: the audit key #%u is gone from the token; generating #%u (older "
                                          "checkpoints verify with the older public key)",
                                          keys[n - 1].no, keys[n - 1].no + 1);
                        nk.no = n > 0 ? keys[n - 1].no + 1 : 1;
                        snprintf(label, sizeof(label), AUDIT_LABEL "%u", nk.no);
                        r = ops->generate(bw, KMS_ALG_EC_P256, KMS_USAGE_SIGN, label, nk.id, &spki, &spki_len);
                        if (r >= 0 && spki_len > sizeof(nk.spki))
                                r = -EOVERFLOW;
                        if (r >= 0) {
                                memcpy(nk.spki, spki, spki_len);
                                nk.spki_len = spki_len;
                                r = kms_store_audit_key_add(s, &nk);
                                if (r < 0)
                                        (void)ops->destroy(bw, nk.id);
                        }
                        if (r >= 0) {
                                memcpy(a->key_id, nk.id, KMS_KEY_ID_BYTES);
                                fingerprint(nk.spki, nk.spki_len, a->key_fingerprint);
                                log_notice("audit: generated audit key #%u in the token (fingerprint %s)", nk.no,
                                           a->key_fingerprint);
                        }
                }
                kms_store_close(s);
        }
        free(keys);
        free(spki);
        if (r < 0) {
                ops->worker_close(bw);
                snprintf(errbuf, errlen, "cannot set up the audit key: %s", strerror(-r));
                return r;
        }
        pthread_mutex_lock(&a->lock);
        a->ops = ops;
        a->bw = bw;
        a->have_key = true;
        pthread_mutex_unlock(&a->lock);
        return 0;
}

static int enqueue(struct kms_daemon *d, struct audit_entry *e, bool wait)
{
        struct kms_audit *a = &d->audit;
        struct audit_waiter w = {0};
        int r = 0;

        pthread_mutex_lock(&a->lock);
        /* Releases carry no row and keep their place in the reply order, so
         * the cap does not apply to them (one per change at most). */
        if (!a->started || a->stopping || (a->queued >= AUDIT_MAX_QUEUED && !e->release)) {
                bool full = a->started && a->queued >= AUDIT_MAX_QUEUED;

                pthread_mutex_unlock(&a->lock);
                if (full)
                        log_error("AUDIT FAILURE: %u records queued; the writer cannot keep up", AUDIT_MAX_QUEUED);
                if (e->request)
                        answer(d, e, false);
                free(e);
                return a->failure_open ? 0 : KMS_E_AUDIT;
        }
        if (wait)
                e->waiter = &w;
        if (a->tail)
                a->tail->next = e;
        else
                a->head = e;
        a->tail = e;
        a->queued++;
        pthread_cond_signal(&a->work);
        if (wait) {
                while (!w.done)
                        pthread_cond_wait(&a->done, &a->lock);
                r = w.result;
        }
        pthread_mutex_unlock(&a->lock);
        if (r < 0 && a->failure_open)
                return 0;
        return r < 0 ? KMS_E_AUDIT : 0;
}

void kms_audit_row_from_event(const struct kms_audit_event *ev, struct kms_audit_row *row)
{
        memset(row, 0, sizeof(*row));
        row->time_ms = (int64_t)kms_now_unix_ms();
        snprintf(row->kind, sizeof(row->kind), "%s", ev->kind ? ev->kind : "request");
        row->uid = (uint32_t)ev->uid;
        row->pid = (int32_t)ev->pid;
        snprintf(row->exe, sizeof(row->exe), "%s", ev->exe ? ev->exe : "");
        snprintf(row->operation, sizeof(row->operation), "%s", ev->operation ? ev->operation : "");
        snprintf(row->key, sizeof(row->key), "%s", ev->key ? ev->key : "");
        row->version = ev->version;
        snprintf(row->result, sizeof(row->result), "%s", ev->result ? ev->result : "ok");
        snprintf(row->details, sizeof(row->details), "%s", ev->details ? ev->details : "");
        /* Exported later in D-Bus strings: valid UTF-8 only, whatever a
         * caller's argv[0] or a cut message held. */
        kms_utf8_sanitize(row->kind);
        kms_utf8_sanitize(row->exe);
        kms_utf8_sanitize(row->operation);
        kms_utf8_sanitize(row->key);
        kms_utf8_sanitize(row->result);
        kms_utf8_sanitize(row->details);
}

static struct audit_entry *new_entry(const struct kms_audit_event *ev)
{
        struct audit_entry *e = calloc(1, sizeof(*e));

        if (e)
                kms_audit_row_from_event(ev, &e->row);
        return e;
}

void kms_audit_set_sender(struct kms_audit *a, kms_audit_send_fn fn, void *userdata)
{
        pthread_mutex_lock(&a->lock);
        a->send = fn;
        a->send_data = userdata;
        pthread_mutex_unlock(&a->lock);
}

int kms_audit_log(struct kms_daemon *d, const struct kms_audit_event *ev, bool wait)
{
        struct audit_entry *e = new_entry(ev);

        if (!e)
                return d->audit.failure_open ? 0 : KMS_E_AUDIT;
        return enqueue(d, e, wait);
}

void kms_audit_log_reply(struct kms_daemon *d, const struct kms_audit_event *ev, DBusMessage *request,
                         DBusMessage *reply)
{
        struct audit_entry *e = new_entry(ev);

        if (!e) {
                struct audit_entry tmp = {.request = dbus_message_ref(request), .reply = reply};

                log_error("AUDIT FAILURE: out of memory for a record");
                answer(d, &tmp, false);
                return;
        }
        e->request = dbus_message_ref(request);
        e->reply = reply;
        (void)enqueue(d, e, false);
}

void kms_audit_release(struct kms_daemon *d, DBusMessage *request, DBusMessage *reply)
{
        struct audit_entry *e = calloc(1, sizeof(*e));

        if (!e) {
                struct audit_entry tmp = { .release = true, .reply = reply };

                /* Out of memory: answer now (the records are safe in
                 * audit_pending and are chained with the next batch). */
                if (request) {
                        tmp.request = dbus_message_ref(request);
                        answer(d, &tmp, true);
                } else if (reply)
                        dbus_message_unref(reply);
                return;
        }
        e->release = true;
        e->request = request ? dbus_message_ref(request) : NULL;
        e->reply = request ? reply : NULL;
        if (!request && reply)
                dbus_message_unref(reply);
        (void)enqueue(d, e, false);
}

int kms_audit_checkpoint(struct kms_daemon *d, uint64_t *ret_seq)
{
        struct kms_audit *a = &d->audit;
        struct audit_entry *e = calloc(1, sizeof(*e));
        struct audit_waiter w = {0};
        int r;

        if (!e)
                return -ENOMEM;
        e->checkpoint = true;
        e->waiter = &w;
        pthread_mutex_lock(&a->lock);
        if (!a->started || a->stopping) {
                pthread_mutex_unlock(&a->lock);
                free(e);
                return KMS_E_AUDIT;
        }
        if (a->tail)
                a->tail->next = e;
        else
                a->head = e;
        a->tail = e;
        a->queued++;
        pthread_cond_signal(&a->work);
        while (!w.done)
                pthread_cond_wait(&a->done, &a->lock);
        r = w.result;
        pthread_mutex_unlock(&a->lock);
        if (r < 0)
                return KMS_E_AUDIT;
        *ret_seq = w.seq;
        return 0;
}

bool kms_audit_refusing(struct kms_daemon *d)
{
        struct kms_audit *a = &d->audit;
        bool r;

        pthread_mutex_lock(&a->lock);
        r = a->started && a->failing && !a->failure_open;
        pthread_mutex_unlock(&a->lock);
        return r;
}

void kms_audit_stop(struct kms_daemon *d)
{
        struct kms_audit *a = &d->audit;

        if (!a->started)
                return;
        pthread_mutex_lock(&a->lock);
        a->stopping = true; /* the writer adds a last checkpoint */
        pthread_cond_signal(&a->work);
        pthread_mutex_unlock(&a->lock);
        pthread_join(a->thread, NULL);
        a->started = false;
        if (a->bw)
                a->ops->worker_close(a->bw);
        a->bw = NULL;
        kms_store_close(a->store);
        a->store = NULL;
        pthread_cond_destroy(&a->work);
        pthread_cond_destroy(&a->done);
        pthread_mutex_destroy(&a->lock);
}
