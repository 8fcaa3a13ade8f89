/* kmsd-bench's TPM cases; see tpm.c. Built only when the kms-tpm target
 * exists (KMS_BENCH_HAVE_TPM). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "kms-backend.h"

/* The project's own TPM backend (tpm/, kms_tpm_open) on tcti, with its
 * blobs in kmsd's database db_path, as kmsd opens it (empty owner auth).
 * Prints why on stderr on failure. 0 or a negative errno. */
int bench_tpm_backend_open(const char *tcti, const char *db_path, struct kms_backend **ret);

/* A bare ESAPI signer: its own TCTI and ESAPI context, a P-256 ECDSA
 * signing key created as a primary under the owner hierarchy (empty
 * auth), nothing of kmsd's. One thread at a time. */
struct bench_tpm_esapi;

/* Connect and create the key; *ret_spki (the caller frees) is its
 * SubjectPublicKeyInfo DER. Prints why on stderr on failure. */
int bench_tpm_esapi_open(const char *tcti, struct bench_tpm_esapi **ret, uint8_t **ret_spki, size_t *ret_spki_len);

/* One Esys_Sign of a SHA-256 digest (ECDSA); sig (DER, X9.62) must hold
 * KMS_MAX_SIGNATURE_BYTES. 0 or a negative errno; *ret_why is a static
 * string for the first error. */
int bench_tpm_esapi_sign(struct bench_tpm_esapi *e, const uint8_t digest[32], uint8_t *sig, size_t *ret_sig_len,
                         const char **ret_why);

/* Flush the key and close the context; NULL is fine. */
void bench_tpm_esapi_close(struct bench_tpm_esapi *e);
