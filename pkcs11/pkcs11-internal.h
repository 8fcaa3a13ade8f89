/* Internals of the PKCS#11 backend shared by its files. */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
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

/* How the token takes the peer's point in CK_ECDH1_DERIVE_PARAMS
 * (pPublicData): PKCS#11 asks for the raw point, some modules want it
 * wrapped in a DER OCTET STRING. Learnt on the first derivation. */
enum kms_pkcs11_point_form {
        KMS_PKCS11_POINT_UNKNOWN,
        KMS_PKCS11_POINT_RAW,
        KMS_PKCS11_POINT_DER,
};

/* Where RSA-OAEP-SHA-256 is decoded: in the token (CKM_RSA_PKCS_OAEP), or,
 * for tokens that refuse SHA-256 in CK_RSA_PKCS_OAEP_PARAMS (SoftHSMv2 2.6
 * takes only SHA-1), raw RSA in the token (CKM_RSA_X_509) and OpenSSL's
 * constant-time EME-OAEP decoding on the host (oaep.c). Learnt on the
 * first decryption. */
enum kms_pkcs11_oaep_mode {
        KMS_PKCS11_OAEP_UNKNOWN,
        KMS_PKCS11_OAEP_TOKEN,
        KMS_PKCS11_OAEP_HOST,
};

struct kms_pkcs11 {
        struct kms_backend base;
        CK_FUNCTION_LIST *f;
        CK_SLOT_ID slot;
        CK_SESSION_HANDLE login_session; /* kept open so the login lasts */
        bool initialized;
        struct kms_pkcs11_handle_cache cache;
        struct kms_backend_info info;
        atomic_int point_form; /* enum kms_pkcs11_point_form */
        atomic_int oaep_mode;  /* enum kms_pkcs11_oaep_mode */
};

/* What the core knows as struct kms_backend_worker. */
struct kms_pkcs11_worker {
        struct kms_pkcs11 *p;
        CK_SESSION_HANDLE session;
};

/* CK_RV → negative errno; logs the CK_RV at debug level with what. */
int kms_pkcs11_rv_to_errno(CK_RV rv, const char *what);

/* Replace the worker's session with a new one (same slot; the login is
 * the token's, so it stays). Closing the old session ends any operation
 * left active in it and destroys its session objects. On failure the old
 * session is kept and a negative errno returned. */
int kms_pkcs11_worker_reset(struct kms_pkcs11_worker *w);

/* EME-OAEP decoding (SHA-256, MGF1-SHA-256, empty label) of em, the
 * output of the raw RSA private-key operation, for a modulus of k bytes
 * (em may be shorter if the token dropped leading zeros). On success
 * writes the message to out (which holds k bytes) and its length to
 * *ret_len; otherwise -EBADMSG for every decoding failure alike (-EINVAL
 * for unusable arguments), and out is untouched. Constant time in the
 * content of em. (oaep.c) */
int kms_pkcs11_oaep_decode(const uint8_t *em, size_t em_len, size_t k, uint8_t *out, size_t *ret_len);

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
int kms_pkcs11_derive(struct kms_backend_worker *w, const uint8_t id[KMS_KEY_ID_BYTES], enum kms_algorithm alg,
                      const uint8_t *peer_point, size_t peer_point_len, uint8_t *ret_secret, size_t *ret_secret_len);
int kms_pkcs11_decrypt(struct kms_backend_worker *w, const uint8_t id[KMS_KEY_ID_BYTES], enum kms_algorithm alg,
                       const uint8_t *in, size_t in_len, uint8_t *out, size_t *out_len);
int kms_pkcs11_destroy(struct kms_backend_worker *w, const uint8_t id[KMS_KEY_ID_BYTES]);
int kms_pkcs11_exists(struct kms_backend_worker *w, const uint8_t id[KMS_KEY_ID_BYTES]);
int kms_pkcs11_enumerate(struct kms_backend_worker *w, const char *prefix,
                         void (*cb)(const uint8_t id[KMS_KEY_ID_BYTES], const char *label, void *userdata),
                         void *userdata);

extern const struct kms_backend_ops kms_pkcs11_ops;
