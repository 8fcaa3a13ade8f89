/* The signing path's key cache; see key-cache.h. */
#include "key-cache.h"

#include <stdlib.h>
#include <string.h>

struct kms_key_cache_entry {
        struct kms_key_cache_entry *next;
        uint64_t generation;
        struct kms_key_record key; /* versions == NULL */
        struct kms_key_version_record primary; /* spki == NULL */
};

static unsigned bucket_of(const char *name)
{
        unsigned h = 2166136261u;

        while (*name)
                h = (h ^ (unsigned char)*name++) * 16777619u;
        return h % KMS_KEY_CACHE_BUCKETS;
}

void kms_key_cache_init(struct kms_key_cache *c)
{
        memset(c, 0, sizeof(*c));
        pthread_mutex_init(&c->lock, NULL);
}

static void clear_locked(struct kms_key_cache *c)
{
        for (unsigned i = 0; i < KMS_KEY_CACHE_BUCKETS; i++) {
                struct kms_key_cache_entry *e = c->buckets[i];
                while (e) {
                        struct kms_key_cache_entry *next = e->next;
                        free(e);
                        e = next;
                }
                c->buckets[i] = NULL;
        }
        c->n = 0;
}

void kms_key_cache_free(struct kms_key_cache *c)
{
        clear_locked(c);
        pthread_mutex_destroy(&c->lock);
}

int kms_key_cache_get_primary(struct kms_key_cache *c, struct kms_store *s, const char *name,
                              struct kms_key_record *ret_key, struct kms_key_version_record *ret_version)
{
        /* Read the generation before the store, so a change committed
         * while we read leaves this entry already stale. */
        uint64_t gen = kms_store_generation();
        unsigned b = bucket_of(name);
        struct kms_key_cache_entry *e;
        struct kms_key_record key;
        struct kms_key_version_record v;
        int r;

        pthread_mutex_lock(&c->lock);
        for (e = c->buckets[b]; e; e = e->next)
                if (strcmp(e->key.name, name) == 0)
                        break;
        if (e && e->generation == gen) {
                *ret_key = e->key;
                *ret_version = e->primary;
                pthread_mutex_unlock(&c->lock);
                return 0;
        }
        pthread_mutex_unlock(&c->lock);

        r = kms_store_key_get_version(s, name, 0, false, &key, &v);
        if (r < 0)
                return r;

        pthread_mutex_lock(&c->lock);
        for (e = c->buckets[b]; e; e = e->next)
                if (strcmp(e->key.name, name) == 0)
                        break;
        if (!e) {
                if (c->n >= KMS_KEY_CACHE_MAX)
                        clear_locked(c); /* rare; it refills on demand */
                e = calloc(1, sizeof(*e));
                if (e) {
                        e->next = c->buckets[b];
                        c->buckets[b] = e;
                        c->n++;
                }
        }
        if (e && gen >= e->generation) {
                e->generation = gen;
                e->key = key;
                e->primary = v;
        }
        pthread_mutex_unlock(&c->lock);
        *ret_key = key;
        *ret_version = v;
        return 0;
}
