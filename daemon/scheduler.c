/* The scheduler: one thread that sleeps until the next rotation period
 * or scheduled destruction falls due (no polling), then queues the work
 * for the worker pool. It reads the store over its own connection and
 * never touches the token. Workers poke it after every committed change,
 * so a new schedule is seen at once; due times that passed while kmsd was
 * stopped are due at start-up. */
#include <string.h>
#include <time.h>

#include "daemon.h"
#include "kms-log.h"

/* After queueing work that changed nothing (a rotation that keeps
 * failing), wait this long before trying again. */
#define KMS_SCHEDULER_BACKOFF_S 30

void kms_scheduler_poke(struct kms_daemon *d)
{
        struct kms_scheduler *s = &d->scheduler;

        if (!s->started)
                return;
        pthread_mutex_lock(&s->lock);
        s->poked = true;
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->lock);
}

/* Queue what is due; return the next due time (INT64_MAX: none) and
 * whether anything was queued. */
static int64_t scan(struct kms_daemon *d, struct kms_store *store, bool *ret_queued)
{
        struct kms_key_record *keys = NULL;
        int64_t now = kms_now_unix(), next = INT64_MAX;
        size_t n = 0;
        int r;

        *ret_queued = false;
        r = kms_store_key_list(store, false, &keys, &n);
        if (r < 0) {
                log_warning("scheduler: cannot read the keys: %s", kms_store_strerror(r));
                return now + KMS_SCHEDULER_BACKOFF_S;
        }
        for (size_t i = 0; i < n; i++) {
                const struct kms_key_record *k = &keys[i];
                int64_t due;

                if (k->destroy_at != 0) {
                        if (k->destroy_at <= now) {
                                if (kms_pool_submit_internal(d, "ScheduledDestroy", k->name, 0) >= 0)
                                        *ret_queued = true;
                        } else if (k->destroy_at < next)
                                next = k->destroy_at;
                        continue;
                }
                /* A use limit reached whose rotation was not queued (or
                 * failed): the scheduler queues it again. */
                if (k->rotate_after_uses && k->state == KMS_KEY_ACTIVE &&
                    k->primary_uses + kms_usage_unflushed(&d->usage, k->id, k->primary_version) >=
                            k->rotate_after_uses) {
                        if (kms_pool_submit_internal(d, "UsageRotate", k->name, k->primary_version) >= 0)
                                *ret_queued = true;
                        continue;
                }
                if (k->rotate_every == 0 || k->state != KMS_KEY_ACTIVE || k->primary_created <= 0)
                        continue;
                due = k->rotate_every > (uint64_t)(INT64_MAX - k->primary_created)
                              ? INT64_MAX
                              : k->primary_created + (int64_t)k->rotate_every;
                if (due <= now) {
                        if (kms_pool_submit_internal(d, "ScheduledRotate", k->name, k->primary_version) >= 0)
                                *ret_queued = true;
                } else if (due < next)
                        next = due;
        }
        kms_key_records_free(keys, n);
        return next;
}

static void *scheduler_main(void *arg)
{
        struct kms_daemon *d = arg;
        struct kms_scheduler *s = &d->scheduler;
        struct kms_store *store = NULL;
        int r;

        r = kms_store_open(d->db_path, &store);
        if (r < 0) {
                log_error("scheduler: cannot open the database: %s; no scheduled rotation or destruction",
                          strerror(-r));
                return NULL;
        }
        pthread_mutex_lock(&s->lock);
        while (!s->stopping) {
                uint64_t gen = kms_store_generation();
                bool queued;
                int64_t next, now;
                struct timespec until = { 0 };

                s->poked = false;
                pthread_mutex_unlock(&s->lock);
                next = scan(d, store, &queued);
                now = kms_now_unix();
                /* Sessions expire on this timer too: keys wiped at expiry. */
                kms_sessions_sweep(&d->sessions, kms_now_unix_ms());
                if (next > now + KMS_SESSION_SWEEP_S)
                        next = now + KMS_SESSION_SWEEP_S;
                pthread_mutex_lock(&s->lock);
                if (queued) {
                        /* Give the workers a second; if nothing changed by
                         * then, the work failed: back off. */
                        until.tv_sec = now + 1;
                        while (!s->stopping && !s->poked && pthread_cond_timedwait(&s->cond, &s->lock, &until) == 0)
                                ;
                        if (!s->stopping && kms_store_generation() == gen) {
                                until.tv_sec = now + KMS_SCHEDULER_BACKOFF_S;
                                while (!s->stopping && !s->poked &&
                                       pthread_cond_timedwait(&s->cond, &s->lock, &until) == 0)
                                        ;
                        }
                        continue;
                }
                if (next == INT64_MAX) {
                        while (!s->stopping && !s->poked)
                                pthread_cond_wait(&s->cond, &s->lock);
                        continue;
                }
                until.tv_sec = (time_t)next;
                while (!s->stopping && !s->poked && pthread_cond_timedwait(&s->cond, &s->lock, &until) == 0)
                        ;
        }
        pthread_mutex_unlock(&s->lock);
        kms_store_close(store);
        return NULL;
}

int kms_scheduler_start(struct kms_daemon *d)
{
        struct kms_scheduler *s = &d->scheduler;
        pthread_condattr_t attr;
        int r;

        pthread_mutex_init(&s->lock, NULL);
        /* Due times are wall-clock (Unix seconds in the store). */
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_REALTIME);
        pthread_cond_init(&s->cond, &attr);
        pthread_condattr_destroy(&attr);
        r = -pthread_create(&s->thread, NULL, scheduler_main, d);
        if (r < 0)
                return r;
        s->started = true;
        return 0;
}

void kms_scheduler_stop(struct kms_daemon *d)
{
        struct kms_scheduler *s = &d->scheduler;

        if (!s->started)
                return;
        pthread_mutex_lock(&s->lock);
        s->stopping = true;
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->thread, NULL);
        s->started = false;
}
