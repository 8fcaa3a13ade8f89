/* Use counters: incremented in memory on every signature, written to the
 * store in one transaction about once a second and at
 * shutdown, so counting never slows signing. A crash loses at most one
 * second of counts (docs/ says so). */
#include <string.h>

#include "daemon.h"
#include "kms-log.h"

#define KMS_USAGE_FLUSH_MS 1000u

void kms_usage_init(struct kms_usage_counter *u)
{
        memset(u, 0, sizeof(*u));
        pthread_mutex_init(&u->lock, NULL);
        u->last_flush_ms = kms_now_mono_ms();
}

void kms_usage_add(struct kms_usage_counter *u, int64_t key_id, uint32_t version)
{
        pthread_mutex_lock(&u->lock);
        for (size_t i = 0; i < u->n; i++)
                if (u->entries[i].key_id == key_id && u->entries[i].version == version) {
                        u->entries[i].count++;
                        goto out;
                }
        if (u->n == u->cap) {
                size_t cap = u->cap ? u->cap * 2 : 16;
                struct kms_usage_entry *e = realloc(u->entries, cap * sizeof(*e));
                if (!e)
                        goto out; /* a lost count, not a failed signature */
                u->entries = e;
                u->cap = cap;
        }
        u->entries[u->n++] = (struct kms_usage_entry){ key_id, version, 1 };
out:
        pthread_mutex_unlock(&u->lock);
}

void kms_usage_maybe_flush(struct kms_usage_counter *u, struct kms_store *store, bool force)
{
        struct kms_usage_entry *batch;
        size_t n;
        uint64_t now = kms_now_mono_ms();

        pthread_mutex_lock(&u->lock);
        if (u->n == 0 || (!force && now - u->last_flush_ms < KMS_USAGE_FLUSH_MS)) {
                pthread_mutex_unlock(&u->lock);
                return;
        }
        batch = u->entries;
        n = u->n;
        u->entries = NULL;
        u->n = u->cap = 0;
        u->last_flush_ms = now;
        pthread_mutex_unlock(&u->lock);

        if (kms_store_begin(store) < 0)
                log_warning("cannot start a transaction for use counts");
        for (size_t i = 0; i < n; i++) {
                int r = kms_store_version_add_uses(store, batch[i].key_id, batch[i].version, batch[i].count);
                if (r < 0 && r != -ENOENT)
                        log_warning("cannot record %llu uses of key %lld version %u: %s",
                                    (unsigned long long)batch[i].count, (long long)batch[i].key_id,
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
