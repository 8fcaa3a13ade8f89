/* The one table of operations a key backend implements. The daemon core
 * calls only this table and never includes a backend's own headers.
 *
 * A backend has one struct kms_backend (the module, the token, the login)
 * and one struct kms_backend_worker per worker thread (for PKCS#11, one
 * session). A worker context is used by one thread at a time. All
 * functions return 0 or a negative errno-style code (kms-error.h); foreign
 * codes (CK_RV, TSS2_RC) are translated inside the backend and logged
 * there at debug level only. Outputs are written only on success. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "kms-key.h"

struct kms_backend;
struct kms_backend_worker;

/* Strings describing the device, for status. */
struct kms_backend_info {
        char label[64];
        char serial[32];
        char manufacturer[64];
        char model[32];
};

struct kms_backend_ops {
        const char *name; /* "pkcs11", "tpm" */

        int (*worker_open)(struct kms_backend *b, struct kms_backend_worker **ret);
        void (*worker_close)(struct kms_backend_worker *w);

        /* Generate a non-extractable key pair labelled label. Writes the
         * backend reference (CKA_ID) to ret_id and returns the public key
         * as SubjectPublicKeyInfo DER in *ret_spki (caller frees). On
         * failure nothing is left in the device. */
        int (*generate)(struct kms_backend_worker *w, enum kms_algorithm alg, unsigned usages, const char *label,
                        uint8_t ret_id[KMS_KEY_ID_BYTES], uint8_t **ret_spki, size_t *ret_spki_len);

        /* Sign a digest computed by the caller. ECDSA results are DER
         * (X9.62); RSA results are the raw signature block. sig must hold
         * KMS_MAX_SIGNATURE_BYTES. -ENOENT if the key is not in the device. */
        int (*sign)(struct kms_backend_worker *w, const uint8_t id[KMS_KEY_ID_BYTES], enum kms_algorithm alg,
                    enum kms_hash h, enum kms_padding pad, const uint8_t *digest, size_t digest_len,
                    uint8_t sig[KMS_MAX_SIGNATURE_BYTES], size_t *ret_sig_len);

        /* Destroy the private and public objects of id. Destroying what is
         * already gone succeeds (idempotent, for crash recovery). */
        int (*destroy)(struct kms_backend_worker *w, const uint8_t id[KMS_KEY_ID_BYTES]);

        /* 1 if the private key of id is in the device, 0 if not. */
        int (*exists)(struct kms_backend_worker *w, const uint8_t id[KMS_KEY_ID_BYTES]);

        /* Call cb once for every object id in the device whose label
         * starts with prefix (reconciliation at start-up only: this walks
         * the device's objects). Ids may repeat (private and public). */
        int (*enumerate)(struct kms_backend_worker *w, const char *prefix,
                         void (*cb)(const uint8_t id[KMS_KEY_ID_BYTES], const char *label, void *userdata),
                         void *userdata);

        int (*info)(struct kms_backend *b, struct kms_backend_info *ret);
        void (*free)(struct kms_backend *b);
};

/* Every backend struct starts with this header. */
struct kms_backend {
        const struct kms_backend_ops *ops;
};
