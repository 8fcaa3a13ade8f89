/* The worker pool: the bus thread queues validated requests; each worker
 * owns one backend session and one store connection, runs requests and
 * sends the replies itself, so a slow token call never stalls the bus. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "daemon.h"
#include "kms-bus.h"
#include "kms-error.h"
#include "kms-log.h"

void kms_request_free(struct kms_request *req)
{
        if (!req)
                return;
        if (req->key_locked)
                log_error("request %s freed with its key lock held", req->method ? req->method->member : "?");
        if (req->msg)
                dbus_message_unref(req->msg);
        kms_policy_unref(req->policy);
        free(req);
}

/* The event kind of a finished request (docs/audit.md). */
static const char *audit_kind(const struct kms_request *req, int r)
{
        if (req->audit_kind)
                return req->audit_kind;
        if (!req->msg)
                return "scheduled";
        switch (r) {
        case KMS_E_INTEGRITY: return "integrity";
        case KMS_E_REPLAY:
        case KMS_E_REORDERED: return "replay";
        case KMS_E_STALE: return "stale";
        case KMS_E_EXPIRED: return "session_expired";
        default: return "request";
        }
}

void kms_request_audit_event(const struct kms_request *req, int r, const char *errmsg, struct kms_audit_event *ret,
                             char *details, size_t len)
{
        /* Session calls name their session (an id is not a secret). */
        if (req->session_id[0])
                snprintf(details, len, "session=%s%s%s", req->session_id, r < 0 || req->audit_details[0] ? "; " : "",
                         r < 0 ? errmsg : req->audit_details);
        else
                snprintf(details, len, "%s", r < 0 ? errmsg : req->audit_details);
        *ret = (struct kms_audit_event){
                .kind = audit_kind(req, r),
                .uid = req->caller.uid,
                .pid = req->caller.pid,
                .exe = req->msg ? req->caller.exe : "kmsd",
                .operation = req->method->member,
                .key = req->name,
                .version = req->audit_version,
                .result = kms_audit_result_name(r),
                .details = details,
        };
}

/* The record of a finished request; the audit writer sends the reply
 * once the record is written (with failure = closed, AuditFailure if it
 * cannot be). Internal requests have no reply. A request whose records
 * were committed with its change has its reply released instead. */
static void audit_and_reply(struct kms_daemon *d, const struct kms_request *req, DBusMessage *reply, int r,
                            const char *errmsg)
{
        char details[KMS_ERRMSG_MAX + 64];
        struct kms_audit_event ev;

        kms_request_audit_event(req, r, errmsg, &ev, details, sizeof(details));
        if (!req->msg) {
                if (reply)
                        dbus_message_unref(reply);
                if (req->audit_committed)
                        kms_audit_release(d, NULL, NULL);
                else
                        (void)kms_audit_log(d, &ev, false);
                return;
        }
        if (dbus_message_get_no_reply(req->msg)) {
                if (reply)
                        dbus_message_unref(reply);
                reply = NULL;
        } else if (!reply) {
                char msg[KMS_ERRMSG_MAX];

                snprintf(msg, sizeof(msg), "%s", errmsg && *errmsg ? errmsg : "request failed");
                kms_utf8_sanitize(msg);
                reply = dbus_message_new_error(req->msg, kms_error_to_bus_name(r < 0 ? r : -EIO), msg);
                if (!reply)
                        log_error("out of memory building an error reply");
        }
        if (req->audit_committed)
                kms_audit_release(d, req->msg, reply);
        else
                kms_audit_log_reply(d, &ev, req->msg, reply);
}

static void run_request(struct kms_worker *w, struct kms_request *req)
{
        DBusMessage *reply = NULL;
        char errmsg[KMS_ERRMSG_MAX] = "";
        int r;

        uint64_t gen = kms_store_generation();

        r = req->method->run(w, req, &reply, errmsg, sizeof(errmsg));
        /* A committed change may move the next scheduled event. */
        if (kms_store_generation() != gen && w->daemon->pool.on_change)
                w->daemon->pool.on_change(w->daemon);
        if (r < 0) {
                if (reply) {
                        dbus_message_unref(reply);
                        reply = NULL;
                }
                /* One line per failed request, at the boundary. */
                if (r == -EACCES || r == -EPERM)
                        log_notice("denied %s from uid %u pid %d on '%s': %s", req->method->member,
                                   (unsigned)req->caller.uid, (int)req->caller.pid, req->name, errmsg);
                else
                        log_info("%s from uid %u pid %d on '%s' failed: %s", req->method->member,
                                 (unsigned)req->caller.uid, (int)req->caller.pid, req->name, errmsg);
        } else
                log_debug("%s from uid %u pid %d on '%s' ok", req->method->member, (unsigned)req->caller.uid,
                          (int)req->caller.pid, req->name);
        audit_and_reply(w->daemon, req, reply, r, errmsg);
        /* Only now that its reply is queued behind every earlier one. */
        kms_key_unlock(w->daemon, req);
}

/* The queue of req's caller; created (zeroed, linked into its bucket)
 * with create. Under p->lock. */
static struct kms_pool_queue *queue_of(struct kms_pool *p, const struct kms_request *req, bool create)
{
        bool internal = !req->msg;
        uid_t uid = req->caller.uid;
        unsigned b = internal ? 0 : (unsigned)(uid % KMS_POOL_BUCKETS);
        struct kms_pool_queue *q;

        for (q = p->buckets[b]; q; q = q->hash_next)
                if (q->internal == internal && q->uid == uid)
                        return q;
        if (!create || !(q = calloc(1, sizeof(*q))))
                return NULL;
        q->uid = uid;
        q->internal = internal;
        q->hash_next = p->buckets[b];
        p->buckets[b] = q;
        return q;
}

static void queue_drop(struct kms_pool *p, struct kms_pool_queue *q)
{
        unsigned b = q->internal ? 0 : (unsigned)(q->uid % KMS_POOL_BUCKETS);

        for (struct kms_pool_queue **pp = &p->buckets[b]; *pp; pp = &(*pp)->hash_next)
                if (*pp == q) {
                        *pp = q->hash_next;
                        break;
                }
        free(q);
}

/* The next request, round-robin over the callers that have some. Under
 * p->lock; NULL if none. */
static struct kms_request *next_request(struct kms_pool *p)
{
        struct kms_pool_queue *q = p->ring_head;
        struct kms_request *req;

        if (!q)
                return NULL;
        req = q->head;
        q->head = req->next;
        if (!q->head)
                q->tail = NULL;
        q->queued--;
        q->bytes -= req->payload_bytes;
        p->queued--;
        p->queued_bytes -= req->payload_bytes;
        /* This caller goes to the back of the ring, or leaves it. */
        p->ring_head = q->ring_next;
        if (!p->ring_head)
                p->ring_tail = NULL;
        q->ring_next = NULL;
        if (q->head) {
                if (p->ring_tail)
                        p->ring_tail->ring_next = q;
                else
                        p->ring_head = q;
                p->ring_tail = q;
        } else
                queue_drop(p, q);
        req->next = NULL;
        return req;
}

static void *worker_main(void *arg)
{
        struct kms_worker *w = arg;
        struct kms_pool *p = &w->daemon->pool;

        for (;;) {
                struct kms_request *req;

                pthread_mutex_lock(&p->lock);
                while (!p->ring_head && !p->stopping) {
                        /* Wake once a second while idle, so use counts reach
                         * the store within a flush interval even when no
                         * request follows. */
                        struct timespec until;

                        clock_gettime(CLOCK_REALTIME, &until);
                        until.tv_sec += 1;
                        if (pthread_cond_timedwait(&p->cond, &p->lock, &until) == ETIMEDOUT) {
                                pthread_mutex_unlock(&p->lock);
                                kms_usage_maybe_flush(&w->daemon->usage, w->store, false);
                                pthread_mutex_lock(&p->lock);
                        }
                }
                req = next_request(p);
                pthread_mutex_unlock(&p->lock);
                if (!req)
                        break; /* stopping and drained */

                run_request(w, req);
                kms_request_free(req);
                kms_usage_maybe_flush(&w->daemon->usage, w->store, false);
        }
        return NULL;
}

static void worker_close_backends(struct kms_daemon *d, struct kms_worker *w)
{
        for (unsigned b = 0; b < d->n_backends; b++)
                if (w->backends[b]) {
                        d->backends[b]->ops->worker_close(w->backends[b]);
                        w->backends[b] = NULL;
                }
}

int kms_pool_start(struct kms_daemon *d, unsigned n_workers, kms_pool_change_fn on_change)
{
        struct kms_pool *p = &d->pool;
        int r;

        memset(p, 0, sizeof(*p));
        p->on_change = on_change;
        pthread_mutex_init(&p->lock, NULL);
        pthread_cond_init(&p->cond, NULL);
        p->workers = calloc(n_workers, sizeof(*p->workers));
        if (!p->workers)
                return -ENOMEM;
        /* Open every session and connection first, so a failure leaves no
         * thread running. */
        for (unsigned i = 0; i < n_workers; i++) {
                struct kms_worker *w = &p->workers[i];

                w->daemon = d;
                w->index = i;
                for (unsigned b = 0; b < d->n_backends; b++) {
                        r = d->backends[b]->ops->worker_open(d->backends[b], &w->backends[b]);
                        if (r < 0) {
                                log_error("cannot open a %s session for worker %u: %s", d->backends[b]->ops->name, i,
                                          strerror(-r));
                                goto fail;
                        }
                }
                r = kms_store_open(d->db_path, &w->store);
                if (r < 0) {
                        log_error("cannot open the database %s for worker %u: %s", d->db_path, i, kms_store_strerror(r));
                        goto fail;
                }
                p->n_workers++;
        }
        for (unsigned i = 0; i < p->n_workers; i++) {
                r = -pthread_create(&p->workers[i].thread, NULL, worker_main, &p->workers[i]);
                if (r < 0) {
                        log_error("cannot start worker %u: %s", i, strerror(-r));
                        /* Stop the ones that run, then close the sessions
                         * and connections of the ones that never started. */
                        unsigned opened = p->n_workers;

                        p->n_workers = i;
                        for (unsigned j = i; j < opened; j++) {
                                worker_close_backends(d, &p->workers[j]);
                                kms_store_close(p->workers[j].store);
                                p->workers[j].store = NULL;
                        }
                        kms_pool_stop(p);
                        return r;
                }
        }
        return 0;
fail:
        for (unsigned i = 0; i < n_workers; i++) {
                worker_close_backends(d, &p->workers[i]);
                kms_store_close(p->workers[i].store);
        }
        free(p->workers);
        p->workers = NULL;
        p->n_workers = 0;
        return r;
}

int kms_pool_submit(struct kms_pool *p, struct kms_request *req, unsigned max_pending)
{
        struct kms_pool_queue *q;
        int r = 0;

        pthread_mutex_lock(&p->lock);
        q = queue_of(p, req, false);
        if (p->stopping)
                r = -ESHUTDOWN;
        else if (p->queued >= max_pending || p->queued_bytes > KMS_MAX_PENDING_BYTES - req->payload_bytes)
                r = -EBUSY;
        else if (q && req->caller.uid != 0 && req->msg) {
                /* One caller may not crowd out the others, in requests or
                 * in bytes. */
                unsigned cap = max_pending / KMS_PENDING_SHARE_PER_CALLER;

                if (q->queued >= (cap ? cap : 1) || q->bytes > KMS_MAX_PENDING_BYTES_PER_UID - req->payload_bytes)
                        r = -EBUSY;
        }
        if (r >= 0 && !q && !(q = queue_of(p, req, true)))
                r = -ENOMEM;
        if (r >= 0) {
                req->next = NULL;
                if (q->tail)
                        q->tail->next = req;
                else {
                        q->head = req;
                        /* A caller with no request queued joins the ring. */
                        if (p->ring_tail)
                                p->ring_tail->ring_next = q;
                        else
                                p->ring_head = q;
                        p->ring_tail = q;
                }
                q->tail = req;
                q->queued++;
                q->bytes += req->payload_bytes;
                p->queued++;
                p->queued_bytes += req->payload_bytes;
                pthread_cond_signal(&p->cond);
        }
        pthread_mutex_unlock(&p->lock);
        return r;
}

int kms_pool_submit_internal(struct kms_daemon *d, const char *member, const char *name, uint32_t expected_primary)
{
        const struct kms_method *m = kms_registry_find_internal(&d->registry, member);
        struct kms_request *req;
        int r;

        if (!m)
                return -EINVAL;
        req = calloc(1, sizeof(*req));
        if (!req)
                return -ENOMEM;
        req->method = m;
        req->caller = (struct kms_caller){ .uid = getuid(), .pid = getpid() };
        snprintf(req->name, sizeof(req->name), "%s", name);
        req->expected_primary = expected_primary;
        r = kms_pool_submit(&d->pool, req, d->cfg.max_pending);
        if (r < 0)
                kms_request_free(req);
        return r;
}

unsigned kms_pool_pending(struct kms_pool *p)
{
        unsigned n;

        pthread_mutex_lock(&p->lock);
        n = p->queued;
        pthread_mutex_unlock(&p->lock);
        return n;
}

void kms_pool_stop(struct kms_pool *p)
{
        struct kms_daemon *d;

        if (!p->workers)
                return;
        d = p->workers[0].daemon;
        pthread_mutex_lock(&p->lock);
        p->stopping = true;
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
        for (unsigned i = 0; i < p->n_workers; i++)
                pthread_join(p->workers[i].thread, NULL);
        /* Last use counts go to the store before the connections close. */
        if (p->n_workers > 0)
                kms_usage_maybe_flush(&d->usage, p->workers[0].store, true);
        for (unsigned i = 0; i < p->n_workers; i++) {
                worker_close_backends(d, &p->workers[i]);
                kms_store_close(p->workers[i].store);
        }
        free(p->workers);
        p->workers = NULL;
        p->n_workers = 0;
}
