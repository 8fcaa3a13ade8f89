/* The scheduler: one thread that sleeps until the next rotation period
 * or scheduled destruction falls due (no polling), then queues the work
 * for the worker pool. It reads the store over its own connection and
 * never touches the token. Workers poke it after every committed change,
 * so a new schedule is seen at once; due times that passed while kmsd was
 * stopped are due at start-up. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon.h"
#include "kms-log.h"

/* Scheduled work bounds ([limits] in docs/configuration.md): at most
 * max_running requests of the scheduler are queued or running at once
 * (each rotation holds a key generation slot while it runs, and callers
 * need the others: CreateKey, RotateKey), at most half the workers less
 * one, KMS_SCHEDULER_MAX_RUNNING at most; a request that failed is not
 * queued again for KMS_SCHEDULER_BACKOFF_S. The table of both holds
 * KMS_SCHEDULER_MAX_TRACKED keys; while it is full nothing more is
 * queued. */
#define KMS_SCHEDULER_MAX_RUNNING 8u
#define KMS_SCHEDULER_MAX_TRACKED 64u
#define KMS_SCHEDULER_BACKOFF_S 30
/* At most one scan of the keys per this many ms: every commit pokes the
 * scheduler, and due times are whole seconds anyway. */
#define KMS_SCHEDULER_SCAN_MS 200

struct kms_scheduled {
        char name[KMS_MAX_KEY_NAME + 1];
        int64_t retry_at; /* 0: queued or running; else failed, not again before this time */
};

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

/* Under s->lock: the entry of name, or NULL. */
static struct kms_scheduled *tracked_find(struct kms_scheduler *s, const char *name)
{
        for (unsigned i = 0; i < s->n_tracked; i++)
                if (strcmp(s->tracked[i].name, name) == 0)
                        return &s->tracked[i];
        return NULL;
}

static void tracked_remove(struct kms_scheduler *s, struct kms_scheduled *e)
{
        *e = s->tracked[--s->n_tracked];
}

void kms_scheduler_done(struct kms_daemon *d, const char *name, bool ok)
{
        struct kms_scheduler *s = &d->scheduler;
        struct kms_scheduled *e;

        /* Workers outlive the scheduler at shutdown: its table goes
         * under the lock (which stays). */
        pthread_mutex_lock(&s->lock);
        if (!s->started || !s->tracked) {
                pthread_mutex_unlock(&s->lock);
                return;
        }
        e = tracked_find(s, name);
        /* Another's request (the use counter's) finds no entry, or one
         * that waits for its retry. */
        if (e && e->retry_at == 0) {
                if (ok)
                        tracked_remove(s, e);
                else
                        e->retry_at = kms_now_unix() + KMS_SCHEDULER_BACKOFF_S;
                s->poked = true;
                pthread_cond_signal(&s->cond);
        }
        pthread_mutex_unlock(&s->lock);
}

/* Queue member for key name unless it is queued already, waits for its
 * retry, or max_running requests are out. Returns 1 if queued, 0 if not
 * (*ret_retry_at: when it may be, if it waits for a retry). */
static int submit(struct kms_daemon *d, const char *member, const char *name, uint32_t expected_primary, int64_t now,
                  int64_t *ret_retry_at)
{
        struct kms_scheduler *s = &d->scheduler;
        struct kms_scheduled *e;
        unsigned running = 0;

        *ret_retry_at = 0;
        pthread_mutex_lock(&s->lock);
        e = tracked_find(s, name);
        if (e && e->retry_at != 0 && e->retry_at <= now) {
                tracked_remove(s, e);
                e = NULL;
        }
        if (e) {
                *ret_retry_at = e->retry_at;
                goto out;
        }
        for (unsigned i = 0; i < s->n_tracked; i++)
                running += s->tracked[i].retry_at == 0;
        if (running >= s->max_running || s->n_tracked >= KMS_SCHEDULER_MAX_TRACKED)
                goto out;
        e = &s->tracked[s->n_tracked++];
        snprintf(e->name, sizeof(e->name), "%s", name);
        e->retry_at = 0;
        pthread_mutex_unlock(&s->lock);

        /* Not under s->lock: the pool takes its own. */
        if (kms_pool_submit_internal(d, member, name, expected_primary) >= 0)
                return 1;
        log_warning("scheduler: cannot queue %s of key '%s' (the queue is full); retrying in %d s", member, name,
                    KMS_SCHEDULER_BACKOFF_S);
        pthread_mutex_lock(&s->lock);
        e = tracked_find(s, name);
        if (e) {
                e->retry_at = now + KMS_SCHEDULER_BACKOFF_S;
                *ret_retry_at = e->retry_at;
        }
out:
        pthread_mutex_unlock(&s->lock);
        return 0;
}

/* The earliest time a failed request may be queued again (INT64_MAX:
 * none waits). */
static int64_t next_retry(struct kms_scheduler *s)
{
        int64_t next = INT64_MAX;

        pthread_mutex_lock(&s->lock);
        for (unsigned i = 0; i < s->n_tracked; i++)
                if (s->tracked[i].retry_at != 0 && s->tracked[i].retry_at < next)
                        next = s->tracked[i].retry_at;
        pthread_mutex_unlock(&s->lock);
        return next;
}

/* Queue what is due and may be queued now; return the next time
 * something falls due that is not queued (INT64_MAX: none). Work that
 * waits for a free slot needs no time: a finished request pokes. */
static int64_t scan(struct kms_daemon *d, struct kms_store *store)
{
        struct kms_key_record *keys = NULL;
        int64_t now = kms_now_unix(), next = INT64_MAX, retry;
        /* Keys stored with a shorter period (before the minimum was
         * raised) rotate at the minimum. */
        uint64_t min_period = d->cfg.min_rotate_every;
        size_t n = 0;
        int r;

        r = kms_store_key_list_scheduled(store, &keys, &n);
        if (r < 0) {
                log_warning("scheduler: cannot read the keys: %s", kms_store_strerror(r));
                return now + KMS_SCHEDULER_BACKOFF_S;
        }
        for (size_t i = 0; i < n; i++) {
                const struct kms_key_record *k = &keys[i];
                uint64_t period;
                int64_t due;

                if (k->destroy_at != 0) {
                        if (k->destroy_at <= now) {
                                if (submit(d, "ScheduledDestroy", k->name, 0, now, &retry) == 0 && retry &&
                                    retry < next)
                                        next = retry;
                        } else if (k->destroy_at < next)
                                next = k->destroy_at;
                        continue;
                }
                /* A use limit reached whose rotation was not queued (or
                 * failed): the scheduler queues it again. */
                if (k->rotate_after_uses && k->state == KMS_KEY_ACTIVE &&
                    k->primary_uses + kms_usage_unflushed(&d->usage, k->id, k->primary_version) >=
                            k->rotate_after_uses) {
                        if (submit(d, "UsageRotate", k->name, k->primary_version, now, &retry) == 0 && retry &&
                            retry < next)
                                next = retry;
                        continue;
                }
                if (k->rotate_every == 0 || k->state != KMS_KEY_ACTIVE || k->primary_created <= 0)
                        continue;
                period = k->rotate_every < min_period ? min_period : k->rotate_every;
                due = period > (uint64_t)(INT64_MAX - k->primary_created) ? INT64_MAX
                                                                          : k->primary_created + (int64_t)period;
                if (due <= now) {
                        if (submit(d, "ScheduledRotate", k->name, k->primary_version, now, &retry) == 0 && retry &&
                            retry < next)
                                next = retry;
                } else if (due < next)
                        next = due;
        }
        kms_key_records_free(keys, n);
        retry = next_retry(&d->scheduler);
        return retry < next ? retry : next;
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
                int64_t next, now, scanned_ms;
                struct timespec until = { 0 };

                s->poked = false;
                pthread_mutex_unlock(&s->lock);
                scanned_ms = kms_now_unix_ms();
                next = scan(d, store);
                now = kms_now_unix();
                /* Sessions expire on this timer too: keys wiped at expiry. */
                kms_sessions_sweep(&d->sessions, kms_now_unix_ms());
                if (next > now + KMS_SESSION_SWEEP_S)
                        next = now + KMS_SESSION_SWEEP_S;
                pthread_mutex_lock(&s->lock);
                /* Until the next due time, a commit, or a request of ours
                 * that finished (both poke). */
                until.tv_sec = (time_t)next;
                while (!s->stopping && !s->poked && pthread_cond_timedwait(&s->cond, &s->lock, &until) == 0)
                        ;
                /* Pokes that come faster gather until the next scan. */
                scanned_ms += KMS_SCHEDULER_SCAN_MS;
                until.tv_sec = (time_t)(scanned_ms / 1000);
                until.tv_nsec = (long)(scanned_ms % 1000) * 1000000L;
                while (!s->stopping && pthread_cond_timedwait(&s->cond, &s->lock, &until) == 0)
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

        s->max_running = d->cfg.workers > 2 ? (d->cfg.workers - 1) / 2 : 1;
        if (s->max_running > KMS_SCHEDULER_MAX_RUNNING)
                s->max_running = KMS_SCHEDULER_MAX_RUNNING;
        s->n_tracked = 0;
        s->tracked = calloc(KMS_SCHEDULER_MAX_TRACKED, sizeof(*s->tracked));
        if (!s->tracked)
                return -ENOMEM;
        pthread_mutex_init(&s->lock, NULL);
        /* Due times are wall-clock (Unix seconds in the store). */
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_REALTIME);
        pthread_cond_init(&s->cond, &attr);
        pthread_condattr_destroy(&attr);
        /* Started before the thread runs: a request it queues may finish
         * (kms_scheduler_done) before pthread_create returns. */
        s->started = true;
        r = -pthread_create(&s->thread, NULL, scheduler_main, d);
        if (r < 0) {
                s->started = false;
                free(s->tracked);
                s->tracked = NULL;
                return r;
        }
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
        pthread_mutex_lock(&s->lock);
        s->started = false;
        free(s->tracked);
        s->tracked = NULL;
        s->n_tracked = 0;
        pthread_mutex_unlock(&s->lock);
}
