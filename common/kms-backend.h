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

/* Largest ECDH shared secret (the field size; P-521 would need 66). */
#define KMS_MAX_ECDH_SECRET_BYTES 66u
/* Largest RSA modulus in bytes (RSA-4096): the most an RSA decryption
 * can return. */
#define KMS_MAX_RSA_BYTES 512u
/* Largest nonce (qualifyingData) an attestation takes: a SHA-512 digest. */
#define KMS_MAX_ATTEST_NONCE_BYTES 64u

struct kms_backend;
struct kms_backend_worker;

/* Strings describing the device, for status. */
struct kms_backend_info {
        char label[64];
        char serial[32];
        char manufacturer[64];
        char model[32];
        /* Added with the TPM backend; zero (and empty) for PKCS#11. */
        char firmware[32];         /* TPM_PT_FIRMWARE_VERSION_1/2 */
        unsigned transient_free;   /* transient object slots free now (TPM_PT_HR_TRANSIENT_AVAIL) */
        unsigned transient_max;    /* slots the TPM guarantees (TPM_PT_HR_TRANSIENT_MIN) */
        bool unavailable;          /* the device cannot be reached now; keys on it fail with KMS_E_BACKEND */
        char unavailable_why[128]; /* why, for status */
};

struct kms_backend_ops {
        const char *name; /* "pkcs11", "tpm" */

        int (*worker_open)(struct kms_backend *b, struct kms_backend_worker **ret);
        void (*worker_close)(struct kms_backend_worker *w);

        /* Generate a non-extractable key pair labelled label. id is in
         * and out: the backend reference (CKA_ID) to give the key, chosen
         * by the caller (so that it can record it before the key exists),
         * or all zero for a random one, which is written back. Returns the
         * public key as SubjectPublicKeyInfo DER in *ret_spki (caller
         * frees). On failure nothing is left in the device. */
        int (*generate)(struct kms_backend_worker *w, enum kms_algorithm alg, unsigned usages, const char *label,
                        uint8_t ret_id[KMS_KEY_ID_BYTES], uint8_t **ret_spki, size_t *ret_spki_len);

        /* Sign a digest computed by the caller. ECDSA results are DER
         * (X9.62); RSA results are the raw signature block. sig must hold
         * KMS_MAX_SIGNATURE_BYTES. -ENOENT if the key is not in the device. */
        int (*sign)(struct kms_backend_worker *w, const uint8_t id[KMS_KEY_ID_BYTES], enum kms_algorithm alg,
                    enum kms_hash h, enum kms_padding pad, const uint8_t *digest, size_t digest_len,
                    uint8_t sig[KMS_MAX_SIGNATURE_BYTES], size_t *ret_sig_len);

        /* ECDH inside the device between the private key of id (an EC key
         * with the derive usage) and peer_point, the peer's uncompressed
         * point 0x04||X||Y on the key's curve; the caller has validated it
         * (on the curve, not the identity). Writes the raw shared secret
         * (the X coordinate, field size bytes, no KDF) to ret_secret, which
         * must hold KMS_MAX_ECDH_SECRET_BYTES, and its length to
         * *ret_secret_len. Nothing derived is left in the device. The
         * caller wipes the secret. -ENOENT: the key is not in the device;
         * -EPERM: the key may not derive; -EINVAL: not an EC key, a point
         * of the wrong size or form, or one the device rejects as a
         * parameter (a point off the curve may also come back as
         * KMS_E_BACKEND: SoftHSMv2 says only CKR_GENERAL_ERROR). */
        int (*derive)(struct kms_backend_worker *w, const uint8_t id[KMS_KEY_ID_BYTES], enum kms_algorithm alg,
                      const uint8_t *peer_point, size_t peer_point_len, uint8_t *ret_secret, size_t *ret_secret_len);

        /* RSA-OAEP decryption (SHA-256, MGF1-SHA-256, empty label) with the
         * private key of id (an RSA key with the decrypt usage). in must be
         * exactly the modulus size; out must hold the modulus size
         * (KMS_MAX_RSA_BYTES always suffices); *out_len is written only on
         * success. The caller wipes the plaintext. -ENOENT: the key is not
         * in the device; -EPERM: the key may not decrypt; -EINVAL: not an
         * RSA key or in of the wrong length; -EBADMSG: the ciphertext does
         * not decrypt (one code for every padding failure, and for a
         * ciphertext not below the modulus). */
        int (*decrypt)(struct kms_backend_worker *w, const uint8_t id[KMS_KEY_ID_BYTES], enum kms_algorithm alg,
                       const uint8_t *in, size_t in_len, uint8_t *out, size_t *out_len);

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

        /* Optional (NULL where the device cannot attest: PKCS#11). Have
         * the device's attestation key (AK) certify the key of id
         * (TPM2_Certify, qualifyingData = nonce, at most
         * KMS_MAX_ATTEST_NONCE_BYTES). Returns, each newly allocated (the
         * caller frees): the signed TPMS_ATTEST bytes (the contents of the
         * TPM2B_ATTEST), the AK's ECDSA signature over them in DER (X9.62,
         * SHA-256), the AK's public key as SubjectPublicKeyInfo DER, the
         * key's name (nameAlg || digest of its public area) and that
         * public area (a marshalled TPMT_PUBLIC, the contents of its
         * TPM2B_PUBLIC), so a checker can recompute the name. Outputs are
         * written only on success. -ENOENT: the key is not in the device;
         * -EINVAL: bad arguments. */
        int (*attest)(struct kms_backend_worker *w, const uint8_t id[KMS_KEY_ID_BYTES], const uint8_t *nonce,
                      size_t nonce_len, uint8_t **ret_attest, size_t *ret_attest_len, uint8_t **ret_sig,
                      size_t *ret_sig_len, uint8_t **ret_ak_spki, size_t *ret_ak_spki_len, uint8_t **ret_key_name,
                      size_t *ret_key_name_len, uint8_t **ret_key_public, size_t *ret_key_public_len);

        int (*info)(struct kms_backend *b, struct kms_backend_info *ret);
        void (*free)(struct kms_backend *b);
};

/* Every backend struct starts with this header. */
struct kms_backend {
        const struct kms_backend_ops *ops;
};
