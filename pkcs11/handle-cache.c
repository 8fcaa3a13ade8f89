/* The CKA_ID → private key handle cache of the PKCS#11 backend, so the
 * signing path does not run C_FindObjects on every request. */
#include <stdlib.h>
#include <string.h>

#include "pkcs11-internal.h"

static size_t bucket_of(const uint8_t id[KMS_KEY_ID_BYTES])
{
        /* CKA_IDs are random, so their first bytes are a fine hash. */
        return ((size_t)id[0] << 8 | id[1]) % KMS_PKCS11_CACHE_BUCKETS;
}

void kms_pkcs11_cache_init(struct kms_pkcs11_handle_cache *c)
{
        memset(c, 0, sizeof(*c));
        pthread_mutex_init(&c->lock, NULL);
}

static void clear_locked(struct kms_pkcs11_handle_cache *c)
{
        for (size_t i = 0; i < KMS_PKCS11_CACHE_BUCKETS; i++) {
                struct kms_pkcs11_handle_entry *e = c->buckets[i];
                while (e) {
                        struct kms_pkcs11_handle_entry *next = e->next;
                        free(e);
                        e = next;
                }
                c->buckets[i] = NULL;
        }
        c->n = 0;
}

void kms_pkcs11_cache_clear(struct kms_pkcs11_handle_cache *c)
{
        pthread_mutex_lock(&c->lock);
        clear_locked(c);
        pthread_mutex_unlock(&c->lock);
}

bool kms_pkcs11_cache_get(struct kms_pkcs11_handle_cache *c, const uint8_t id[KMS_KEY_ID_BYTES],
                          CK_OBJECT_HANDLE *ret)
{
        bool found = false;

        pthread_mutex_lock(&c->lock);
        for (struct kms_pkcs11_handle_entry *e = c->buckets[bucket_of(id)]; e; e = e->next)
                if (memcmp(e->id, id, KMS_KEY_ID_BYTES) == 0) {
                        *ret = e->handle;
                        found = true;
                        break;
                }
        pthread_mutex_unlock(&c->lock);
        return found;
}

void kms_pkcs11_cache_put(struct kms_pkcs11_handle_cache *c, const uint8_t id[KMS_KEY_ID_BYTES],
                          CK_OBJECT_HANDLE h)
{
        struct kms_pkcs11_handle_entry *e;
        size_t b = bucket_of(id);

        pthread_mutex_lock(&c->lock);
        for (e = c->buckets[b]; e; e = e->next)
                if (memcmp(e->id, id, KMS_KEY_ID_BYTES) == 0) {
                        e->handle = h;
                        goto out;
                }
        if (c->n >= KMS_PKCS11_MAX_CACHED_HANDLES)
                clear_locked(c); /* rare; lookups refill it */
        e = malloc(sizeof(*e));
        if (!e)
                goto out; /* a cache miss later is harmless */
        memcpy(e->id, id, KMS_KEY_ID_BYTES);
        e->handle = h;
        e->next = c->buckets[b];
        c->buckets[b] = e;
        c->n++;
out:
        pthread_mutex_unlock(&c->lock);
}

void kms_pkcs11_cache_drop(struct kms_pkcs11_handle_cache *c, const uint8_t id[KMS_KEY_ID_BYTES])
{
        pthread_mutex_lock(&c->lock);
        for (struct kms_pkcs11_handle_entry **pe = &c->buckets[bucket_of(id)]; *pe; pe = &(*pe)->next)
                if (memcmp((*pe)->id, id, KMS_KEY_ID_BYTES) == 0) {
                        struct kms_pkcs11_handle_entry *e = *pe;
                        *pe = e->next;
                        free(e);
                        c->n--;
                        break;
                }
        pthread_mutex_unlock(&c->lock);
}
