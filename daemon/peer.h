/* A peer's public key, as a caller hands it to Derive and OpenSession:
 * checked with OpenSSL before anything reaches the token. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "kms-key.h"

/* The largest uncompressed point (P-384: 1 + 2 * 48). */
#define KMS_MAX_EC_POINT_BYTES 133u

/* Check that spki (DER SubjectPublicKeyInfo, exactly len bytes) is an EC
 * public key on the curve of alg, a valid point (on the curve, not the
 * identity). Writes its uncompressed point (0x04||X||Y) to point and, if
 * ret_spki is not NULL, its canonical DER (named curve, uncompressed
 * point: what `openssl pkey -pubout` writes) to a new buffer the caller
 * frees with OPENSSL_free(). On failure returns -EINVAL and a sentence in *ret_why. */
int kms_peer_key_check(const uint8_t *spki, size_t len, enum kms_algorithm alg, uint8_t point[KMS_MAX_EC_POINT_BYTES],
                       size_t *ret_point_len, uint8_t **ret_spki, size_t *ret_spki_len, const char **ret_why);
