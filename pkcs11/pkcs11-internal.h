/* Internals of the PKCS#11 backend shared by its files. */
#pragma once

#include <pthread.h>
#include <stdbool.h>

#include <p11-kit/pkcs11.h>

#include "kms-backend.h"
#include "kms-pkcs11.h"

/* Caps on what the backend holds for callers. */
#define KMS_PKCS11_MAX_CACHED_HANDLES 65536u
#define KMS_PKCS11_CACHE_BUCKETS 1024u
#define KMS_PKCS11_MAX_PIN 256u

struct kms_pkcs11_handle_entry {
        uint8_t id[KMS_KEY_ID_BYTES];
        CK_OBJECT_HANDLE handle;
        struct kms_pkcs11_handle_entry *next;
};

/* Object handles of private keys by CKA_ID. PKCS#11 lets every session of
 * the application use the handle one session found, so one cache serves
 * all workers; entries go when a key is destroyed or a handle turns out
 * stale. */
struct kms_pkcs11_handle_cache {
        pthread_mutex_t lock;
        struct kms_pkcs11_handle_entry *buckets[KMS_PKCS11_CACHE_BUCKETS];
        size_t n;
};

struct kms_pkcs11 {
        struct kms_backend base;
        CK_FUNCTION_LIST *f;
        CK_SLOT_ID slot;
        CK_SESSION_HANDLE login_session; /* kept open so the login lasts */
        bool initialized;
        struct kms_pkcs11_handle_cache cache;
        struct kms_backend_info info;
};

/* What the core knows as struct kms_backend_worker. */
struct kms_pkcs11_worker {
        struct kms_pkcs11 *p;
        CK_SESSION_HANDLE session;
};

/* CK_RV → negative errno; logs the CK_RV at debug level with what. */
int kms_pkcs11_rv_to_errno(CK_RV rv, const char *what);

void kms_pkcs11_cache_init(struct kms_pkcs11_handle_cache *c);
void kms_pkcs11_cache_clear(struct kms_pkcs11_handle_cache *c);
bool kms_pkcs11_cache_get(struct kms_pkcs11_handle_cache *c, const uint8_t id[KMS_KEY_ID_BYTES],
                          CK_OBJECT_HANDLE *ret);
void kms_pkcs11_cache_put(struct kms_pkcs11_handle_cache *c, const uint8_t id[KMS_KEY_ID_BYTES],
                          CK_OBJECT_HANDLE h);
void kms_pkcs11_cache_drop(struct kms_pkcs11_handle_cache *c, const uint8_t id[KMS_KEY_ID_BYTES]);

/* Key operations (keys.c), as in struct kms_backend_ops. */
int kms_pkcs11_generate(struct kms_backend_worker *w, enum kms_algorithm alg, unsigned usages, const char *label,
                        uint8_t ret_id[KMS_KEY_ID_BYTES], uint8_t **ret_spki, size_t *ret_spki_len);
int kms_pkcs11_sign(struct kms_backend_worker *w, const uint8_t id[KMS_KEY_ID_BYTES], enum kms_algorithm alg,
                    enum kms_hash h, enum kms_padding pad, const uint8_t *digest, size_t digest_len,
                    uint8_t sig[KMS_MAX_SIGNATURE_BYTES], size_t *ret_sig_len);
int kms_pkcs11_destroy(struct kms_backend_worker *w, const uint8_t id[KMS_KEY_ID_BYTES]);
int kms_pkcs11_exists(struct kms_backend_worker *w, const uint8_t id[KMS_KEY_ID_BYTES]);
int kms_pkcs11_enumerate(struct kms_backend_worker *w, const char *prefix,
                         void (*cb)(const uint8_t id[KMS_KEY_ID_BYTES], const char *label, void *userdata),
                         void *userdata);

extern const struct kms_backend_ops kms_pkcs11_ops;
