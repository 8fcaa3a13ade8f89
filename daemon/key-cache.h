/* An in-memory cache of what the signing path needs to know about a key
 * (the key record and its primary version), so a signature costs no
 * SQLite transaction. Entries are valid only while the store generation
 * they were read under is current (store.h), so any committed change to
 * a key, by any worker, invalidates them. */
#pragma once

#include <pthread.h>

#include "store.h"

#define KMS_KEY_CACHE_MAX 4096u
#define KMS_KEY_CACHE_BUCKETS 1024u

struct kms_key_cache_entry;

struct kms_key_cache {
        pthread_mutex_t lock;
        struct kms_key_cache_entry *buckets[KMS_KEY_CACHE_BUCKETS];
        size_t n;
};

void kms_key_cache_init(struct kms_key_cache *c);
void kms_key_cache_free(struct kms_key_cache *c);

/* The key named name and its primary version (without the SPKI), from
 * the cache or from store s. Same returns as kms_store_key_get_version(). */
int kms_key_cache_get_primary(struct kms_key_cache *c, struct kms_store *s, const char *name,
                              struct kms_key_record *ret_key, struct kms_key_version_record *ret_version);
