/* What a key is, independent of where it lives: the name rules, the
 * algorithms, usages and digests kmsd knows, and the ECDSA signature
 * encodings. Shared by kmsd, kmsctl, the backends and the tests. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Caps on what a caller can make kmsd hold (ssh-agent's AGENT_MAX_*). */
#define KMS_MAX_KEY_NAME 128u
#define KMS_MAX_KEYS 100000u
#define KMS_MAX_VERSIONS 10000u
/* Largest signature any algorithm here produces (RSA-4096). */
#define KMS_MAX_SIGNATURE_BYTES 512u
/* Backend reference (PKCS#11 CKA_ID) length. */
#define KMS_KEY_ID_BYTES 16u

enum kms_algorithm {
        KMS_ALG_EC_P256,
        KMS_ALG_EC_P384,
        KMS_ALG_RSA_2048,
        KMS_ALG_RSA_3072,
        KMS_ALG_RSA_4096,
        _KMS_ALG_MAX,
        KMS_ALG_INVALID = -1,
};

enum kms_hash {
        KMS_HASH_SHA256,
        KMS_HASH_SHA384,
        KMS_HASH_SHA512,
        _KMS_HASH_MAX,
        KMS_HASH_INVALID = -1,
};

enum kms_padding {
        KMS_PAD_NONE,  /* ECDSA */
        KMS_PAD_PKCS1, /* RSASSA-PKCS1-v1_5 */
        KMS_PAD_PSS,   /* RSASSA-PSS, MGF1 with the same digest, salt = digest length */
        _KMS_PAD_MAX,
        KMS_PAD_INVALID = -1,
};

enum kms_usage {
        KMS_USAGE_SIGN = 1u << 0,
        KMS_USAGE_DERIVE = 1u << 1,
        KMS_USAGE_DECRYPT = 1u << 2,
        KMS_USAGE_ALL = KMS_USAGE_SIGN | KMS_USAGE_DERIVE | KMS_USAGE_DECRYPT,
};

/* Returns 0 if name is a valid key name: 1..KMS_MAX_KEY_NAME characters
 * from [A-Za-z0-9._/-], no leading or trailing '/', no empty, "." or ".."
 * component. Otherwise -EINVAL and, if ret_why is not NULL, a static
 * sentence saying what is wrong. */
int kms_key_name_check(const char *name, const char **ret_why);

enum kms_algorithm kms_algorithm_from_string(const char *s);
const char *kms_algorithm_to_string(enum kms_algorithm a);
bool kms_algorithm_is_ec(enum kms_algorithm a);
bool kms_algorithm_is_rsa(enum kms_algorithm a);
unsigned kms_algorithm_rsa_bits(enum kms_algorithm a);
/* Size in bytes of one coordinate (EC) or of the modulus (RSA). */
size_t kms_algorithm_size(enum kms_algorithm a);
enum kms_hash kms_algorithm_default_hash(enum kms_algorithm a);
/* Usages the algorithm can have at all. */
unsigned kms_algorithm_usages(enum kms_algorithm a);
/* "ec-p256, ec-p384, ..." for messages. */
const char *kms_algorithm_list(void);

enum kms_hash kms_hash_from_string(const char *s);
const char *kms_hash_to_string(enum kms_hash h);
size_t kms_hash_length(enum kms_hash h);
/* One-shot digest of data with OpenSSL; out must hold kms_hash_length(h). */
int kms_hash_compute(enum kms_hash h, const void *data, size_t len, uint8_t *out);

enum kms_padding kms_padding_from_string(const char *s);
const char *kms_padding_to_string(enum kms_padding p);

/* Parse "sign,derive" into a mask; -EINVAL names the bad word in
 * *ret_bad (points into s, length *ret_bad_len). */
int kms_usages_from_string(const char *s, unsigned *ret);
enum kms_usage kms_usage_from_string(const char *s);
const char *kms_usage_to_string(enum kms_usage u);

/* ECDSA signature encodings. raw is r||s, each exactly coord_len bytes
 * (PKCS#11's form); der is X9.62 ECDSA-Sig-Value (OpenSSL's form). Both
 * return 0, -EINVAL on malformed input or -ENOMEM; outputs are written
 * only on success and the caller frees *ret. */
int kms_ecdsa_raw_to_der(const uint8_t *raw, size_t raw_len, uint8_t **ret, size_t *ret_len);
int kms_ecdsa_der_to_raw(const uint8_t *der, size_t der_len, size_t coord_len, uint8_t **ret, size_t *ret_len);

/* SHA-256 fingerprint of a SubjectPublicKeyInfo, as lower-case hex
 * (newly allocated), or NULL. */
char *kms_spki_fingerprint(const uint8_t *spki, size_t len);

/* Verify sig over data with the public key spki. Returns 1 if the
 * signature verifies, 0 if it does not (including a malformed signature),
 * or a negative errno for bad arguments (-EINVAL: unusable key, wrong
 * padding for the algorithm). */
int kms_signature_verify(const uint8_t *spki, size_t spki_len, enum kms_algorithm alg, enum kms_hash h,
                         enum kms_padding pad, const uint8_t *data, size_t data_len, const uint8_t *sig,
                         size_t sig_len);

/* Key and version states (docs/lifecycle.md). Keys: active, disabled,
 * revoked, destroyed. Versions: active, revoked, destroyed, lost. */
enum kms_key_state {
        KMS_KEY_ACTIVE,
        KMS_KEY_DESTROYED,
        KMS_KEY_DISABLED,
        KMS_KEY_REVOKED,
        KMS_KEY_LOST,
        _KMS_KEY_STATE_MAX,
        KMS_KEY_STATE_INVALID = -1,
};

enum kms_revoke_reason {
        KMS_REVOKE_COMPROMISED,
        KMS_REVOKE_SUPERSEDED,
        KMS_REVOKE_RETIRED,
        _KMS_REVOKE_MAX,
        KMS_REVOKE_INVALID = -1,
};

enum kms_revoke_reason kms_revoke_reason_from_string(const char *s);
const char *kms_revoke_reason_to_string(enum kms_revoke_reason r);

#define KMS_MAX_REVOKE_NOTE 256u

enum kms_key_state kms_key_state_from_string(const char *s);
const char *kms_key_state_to_string(enum kms_key_state s);
