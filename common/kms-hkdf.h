/* HKDF-SHA256 (RFC 5869, extract then expand) on OpenSSL 3's EVP_KDF
 * "HKDF". Its output equals what
 *   openssl kdf -keylen N -kdfopt digest:SHA256 -kdfopt hexkey:IKM \
 *       -kdfopt hexsalt:SALT -kdfopt hexinfo:INFO HKDF
 * prints, which is how `kmsctl derive` and the session key schedule
 * (kms-session-crypto.h) can be checked from the shell. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* RFC 5869: at most 255 blocks of the hash length. */
#define KMS_HKDF_SHA256_MAX_OUTPUT (255u * 32u)
/* Cap on info: OpenSSL keeps info in a bounded buffer; this stays well
 * inside it on every OpenSSL 3 release. */
#define KMS_HKDF_MAX_INFO 1024u

/* Derive out_len bytes into out from ikm, salt and info.
 *
 * ikm must be 1 or more bytes (OpenSSL refuses an empty key). salt may be
 * NULL/0, which RFC 5869 defines as HashLen zero bytes; info may be
 * NULL/0. out_len is 1..KMS_HKDF_SHA256_MAX_OUTPUT.
 *
 * Returns 0, -EINVAL (NULL pointer with a non-zero length, a length out of
 * range) or -ENOMEM (libcrypto failed). On failure out is zeroed. Nothing
 * secret stays behind: OpenSSL wipes its PRK when its context is freed. */
int kms_hkdf_sha256(const uint8_t *ikm, size_t ikm_len, const uint8_t *salt, size_t salt_len, const uint8_t *info,
                    size_t info_len, uint8_t *out, size_t out_len);
