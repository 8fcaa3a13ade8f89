/* Use counters: incremented in memory on every signature, written to the
 * store in one transaction about once a second and at
 * shutdown, so counting never slows signing. A crash loses at most one
 * second of counts (docs/ says so). */
#include <string.h>

#include "daemon.h"
#include "kms-log.h"

#define KMS_USAGE_FLUSH_MS 1000u
#define KMS_USAGE_MAX_ENTRIES 65536u

void kms_usage_init(struct kms_usage_counter *u)
{
        memset(u, 0, sizeof(*u));
        pthread_mutex_init(&u->lock, NULL);
        u->last_flush_ms = kms_now_mono_ms();
}

static struct kms_usage_entry *find(struct kms_usage_counter *u, int64_t key_id, uint32_t version)
{
        for (size_t i = 0; i < u->n; i++)
                if (u->entries[i].key_id == key_id && u->entries[i].version == version)
                        return &u->entries[i];
        return NULL;
}

uint64_t kms_usage_add(struct kms_usage_counter *u, struct kms_store *store, int64_t key_id, uint32_t version,
                       bool *ret_first_over, uint64_t limit)
{
        struct kms_usage_entry *e = NULL;
        uint64_t total = 0, stored = 0;

        if (ret_first_over)
                *ret_first_over = false;
        pthread_mutex_lock(&u->lock);
        e = find(u, key_id, version);
        if (!e) {
                /* A new entry starts from the store's count as it is now
                 * (read outside the lock), never from a cached record:
                 * counts flushed since the cache was filled would be lost,
                 * and the limit would hold later than it should. */
                pthread_mutex_unlock(&u->lock);
                if (kms_store_version_uses(store, key_id, version, &stored) < 0)
                        stored = 0;
                pthread_mutex_lock(&u->lock);
                e = find(u, key_id, version); /* another worker may have made it */
        }
        if (!e) {
                if (u->n == u->cap) {
                        /* Drop entries with nothing to flush before growing. */
                        size_t keep = 0;
                        for (size_t i = 0; i < u->n; i++)
                                if (u->entries[i].unflushed)
                                        u->entries[keep++] = u->entries[i];
                        u->n = keep;
                }
                if (u->n == u->cap) {
                        size_t cap = u->cap ? u->cap * 2 : 16;
                        struct kms_usage_entry *ne =
                                cap <= KMS_USAGE_MAX_ENTRIES ? realloc(u->entries, cap * sizeof(*ne)) : NULL;
                        if (!ne)
                                goto out; /* a lost count, not a failed signature */
                        u->entries = ne;
                        u->cap = cap;
                }
                e = &u->entries[u->n++];
                *e = (struct kms_usage_entry){ .key_id = key_id, .version = version, .total = stored };
        }
        e->total++;
        e->unflushed++;
        total = e->total;
        if (ret_first_over) {
                *ret_first_over = limit && total >= limit && !e->limit_reported;
                if (*ret_first_over)
                        e->limit_reported = true;
        }
out:
        pthread_mutex_unlock(&u->lock);
        return total;
}

void kms_usage_limit_retry(struct kms_usage_counter *u, int64_t key_id, uint32_t version)
{
        struct kms_usage_entry *e;

        pthread_mutex_lock(&u->lock);
        e = find(u, key_id, version);
        if (e)
                e->limit_reported = false;
        pthread_mutex_unlock(&u->lock);
}

uint64_t kms_usage_unflushed(struct kms_usage_counter *u, int64_t key_id, uint32_t version)
{
        struct kms_usage_entry *e;
        uint64_t n = 0;

        pthread_mutex_lock(&u->lock);
        e = find(u, key_id, version);
        if (e)
                n = e->unflushed;
        pthread_mutex_unlock(&u->lock);
        return n;
}

void kms_usage_maybe_flush(struct kms_usage_counter *u, struct kms_store *store, bool force)
{
        struct kms_usage_entry *batch = NULL;
        size_t n = 0;
        uint64_t now = kms_now_mono_ms();

        pthread_mutex_lock(&u->lock);
        if (!force && now - u->last_flush_ms < KMS_USAGE_FLUSH_MS) {
                pthread_mutex_unlock(&u->lock);
                return;
        }
        u->last_flush_ms = now;
        for (size_t i = 0; i < u->n; i++)
                if (u->entries[i].unflushed)
                        n++;
        if (n)
                batch = malloc(n * sizeof(*batch));
        n = 0;
        for (size_t i = 0; batch && i < u->n; i++)
                if (u->entries[i].unflushed) {
                        batch[n++] = u->entries[i];
                        u->entries[i].unflushed = 0;
                }
        pthread_mutex_unlock(&u->lock);
        if (!n) {
                free(batch);
                return;
        }

        if (kms_store_begin(store) < 0) {
                /* Put the counts back; the next flush tries again. */
                log_warning("cannot start a transaction for use counts");
                pthread_mutex_lock(&u->lock);
                for (size_t i = 0; i < n; i++)
                        for (size_t j = 0; j < u->n; j++)
                                if (u->entries[j].key_id == batch[i].key_id && u->entries[j].version == batch[i].version)
                                        u->entries[j].unflushed += batch[i].unflushed;
                pthread_mutex_unlock(&u->lock);
                free(batch);
                return;
        }
        for (size_t i = 0; i < n; i++) {
                int r = kms_store_version_add_uses(store, batch[i].key_id, batch[i].version, batch[i].unflushed);
                if (r < 0 && r != -ENOENT)
                        log_warning("cannot record %llu uses of key %lld version %u: %s",
                                    (unsigned long long)batch[i].unflushed, (long long)batch[i].key_id,
                                    batch[i].version, strerror(-r));
        }
        if (kms_store_commit(store) < 0)
                log_warning("cannot commit use counts");
        free(batch);
}

void kms_usage_free(struct kms_usage_counter *u)
{
        free(u->entries);
        u->entries = NULL;
        u->n = u->cap = 0;
        pthread_mutex_destroy(&u->lock);
}
