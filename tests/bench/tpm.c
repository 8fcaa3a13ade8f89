/* kmsd-bench's TPM cases: the two direct signers that kmsd's TPM signing
 * is measured against (kmsd-bench.c runs them; run-bench.sh --tpm sets
 * up swtpm and keeps kmsd away from it meanwhile, since swtpm serves one
 * connection at a time).
 *
 *   direct esapi    a bare Esys_Sign loop: this process's own TCTI and
 *                   ESAPI context, a P-256 signing key of its own
 *                   (a primary under the owner hierarchy), a SHA-256
 *                   digest per call, ECDSA chosen per call as the backend
 *                   does, r||s made DER here. What the TPM can do.
 *   direct kms-tpm  the project's TPM backend in-process (kms_tpm_open on
 *                   kmsd's database, the key kmsd signs with): the same
 *                   signing as kmsd's, without D-Bus and the daemon.
 *
 * Both answer over the same TCTI string as kmsd, so the same swtpm and
 * the same loopback socket. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tss2/tss2_esys.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

#include "kms-key.h"
#include "kms-tpm.h"
#include "tpm.h"

#define BENCH_P256_BYTES 32u

struct bench_tpm_esapi {
        TSS2_TCTI_CONTEXT *tcti;
        ESYS_CONTEXT *esys;
        ESYS_TR key;
};

int bench_tpm_backend_open(const char *tcti, const char *db_path, struct kms_backend **ret)
{
        struct kms_tpm_config cfg = {
                .tcti = tcti,
                .db_path = db_path,
        };
        char err[512] = "";
        int r;

        r = kms_tpm_open(&cfg, ret, err, sizeof(err));
        if (r < 0)
                fprintf(stderr, "kmsd-bench: TPM backend on %s: %s\n", tcti, err[0] ? err : strerror(-r));
        return r;
}

/* Copy a big-endian number of n bytes right-aligned into out[size]. */
static int pad_left(const uint8_t *in, size_t n, uint8_t *out, size_t size)
{
        while (n > size && *in == 0) {
                in++;
                n--;
        }
        if (n > size)
                return -EINVAL;
        memset(out, 0, size - n);
        memcpy(out + size - n, in, n);
        return 0;
}

/* SubjectPublicKeyInfo DER of a P-256 point from a TPM public area: the
 * fixed header (id-ecPublicKey, prime256v1, a 66-byte BIT STRING) and
 * 0x04 || X || Y. run-bench.sh has openssl check the result. */
static int spki_p256(const TPMT_PUBLIC *p, uint8_t **ret, size_t *ret_len)
{
        static const uint8_t header[] = {0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48,
                                         0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
                                         0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04};
        const size_t len = sizeof(header) + 2 * BENCH_P256_BYTES;
        uint8_t *spki;

        if (p->type != TPM2_ALG_ECC || p->parameters.eccDetail.curveID != TPM2_ECC_NIST_P256)
                return -EINVAL;
        spki = malloc(len);
        if (!spki)
                return -ENOMEM;
        memcpy(spki, header, sizeof(header));
        if (pad_left(p->unique.ecc.x.buffer, p->unique.ecc.x.size, spki + sizeof(header), BENCH_P256_BYTES) < 0 ||
            pad_left(p->unique.ecc.y.buffer, p->unique.ecc.y.size, spki + sizeof(header) + BENCH_P256_BYTES,
                     BENCH_P256_BYTES) < 0) {
                free(spki);
                return -EINVAL;
        }
        *ret = spki;
        *ret_len = len;
        return 0;
}

int bench_tpm_esapi_open(const char *tcti, struct bench_tpm_esapi **ret, uint8_t **ret_spki, size_t *ret_spki_len)
{
        TPM2B_SENSITIVE_CREATE sensitive = {0};
        TPM2B_DATA outside = {0};
        TPML_PCR_SELECTION pcrs = {0};
        TPM2B_PUBLIC tmpl = {0}, *pub = NULL;
        struct bench_tpm_esapi *e;
        const char *what;
        TSS2_RC rc;
        int r;

        e = calloc(1, sizeof(*e));
        if (!e)
                return -ENOMEM;
        e->key = ESYS_TR_NONE;
        what = "Tss2_TctiLdr_Initialize";
        rc = Tss2_TctiLdr_Initialize(tcti, &e->tcti);
        if (rc == TSS2_RC_SUCCESS) {
                what = "Esys_Initialize";
                rc = Esys_Initialize(&e->esys, e->tcti, NULL);
        }
        if (rc == TSS2_RC_SUCCESS) {
                /* swtpm --flags startup-clear has started it already. */
                what = "Esys_Startup";
                rc = Esys_Startup(e->esys, TPM2_SU_CLEAR);
                if (rc == TPM2_RC_INITIALIZE)
                        rc = TSS2_RC_SUCCESS;
        }
        if (rc == TSS2_RC_SUCCESS) {
                /* Signing only; the scheme comes with each call, as the
                 * backend's keys have it (scheme NULL). */
                tmpl.publicArea.type = TPM2_ALG_ECC;
                tmpl.publicArea.nameAlg = TPM2_ALG_SHA256;
                tmpl.publicArea.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                                                   TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
                                                   TPMA_OBJECT_SIGN_ENCRYPT;
                tmpl.publicArea.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
                tmpl.publicArea.parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
                tmpl.publicArea.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
                tmpl.publicArea.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
                what = "Esys_CreatePrimary (P-256 signing key)";
                rc = Esys_CreatePrimary(e->esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                                        &sensitive, &tmpl, &outside, &pcrs, &e->key, &pub, NULL, NULL, NULL);
        }
        if (rc != TSS2_RC_SUCCESS) {
                fprintf(stderr, "kmsd-bench: ESAPI on %s: %s: %s\n", tcti, what, Tss2_RC_Decode(rc));
                bench_tpm_esapi_close(e);
                return -EIO;
        }
        r = spki_p256(&pub->publicArea, ret_spki, ret_spki_len);
        Esys_Free(pub);
        if (r < 0) {
                fprintf(stderr, "kmsd-bench: ESAPI: the TPM's public key is not a P-256 point\n");
                bench_tpm_esapi_close(e);
                return r;
        }
        *ret = e;
        return 0;
}

int bench_tpm_esapi_sign(struct bench_tpm_esapi *e, const uint8_t digest[32], uint8_t *sig, size_t *ret_sig_len,
                         const char **ret_why)
{
        TPM2B_DIGEST d = {.size = 32};
        TPMT_SIG_SCHEME scheme = {.scheme = TPM2_ALG_ECDSA, .details.ecdsa.hashAlg = TPM2_ALG_SHA256};
        TPMT_TK_HASHCHECK ticket = {.tag = TPM2_ST_HASHCHECK, .hierarchy = TPM2_RH_NULL};
        TPMT_SIGNATURE *s = NULL;
        uint8_t raw[2 * BENCH_P256_BYTES];
        uint8_t *der = NULL;
        size_t der_len = 0;
        TSS2_RC rc;
        int r;

        memcpy(d.buffer, digest, 32);
        rc = Esys_Sign(e->esys, e->key, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &d, &scheme, &ticket, &s);
        if (rc != TSS2_RC_SUCCESS) {
                *ret_why = Tss2_RC_Decode(rc);
                return -EIO;
        }
        r = -EBADMSG;
        if (s->sigAlg == TPM2_ALG_ECDSA &&
            pad_left(s->signature.ecdsa.signatureR.buffer, s->signature.ecdsa.signatureR.size, raw, BENCH_P256_BYTES) ==
                    0 &&
            pad_left(s->signature.ecdsa.signatureS.buffer, s->signature.ecdsa.signatureS.size, raw + BENCH_P256_BYTES,
                     BENCH_P256_BYTES) == 0)
                r = kms_ecdsa_raw_to_der(raw, sizeof(raw), &der, &der_len);
        Esys_Free(s);
        if (r == 0 && der_len > KMS_MAX_SIGNATURE_BYTES)
                r = -EBADMSG;
        if (r < 0) {
                *ret_why = "the TPM's ECDSA signature does not convert to DER";
                free(der);
                return r;
        }
        memcpy(sig, der, der_len);
        *ret_sig_len = der_len;
        free(der);
        return 0;
}

void bench_tpm_esapi_close(struct bench_tpm_esapi *e)
{
        if (!e)
                return;
        if (e->esys && e->key != ESYS_TR_NONE)
                (void)Esys_FlushContext(e->esys, e->key);
        if (e->esys)
                Esys_Finalize(&e->esys);
        if (e->tcti)
                Tss2_TctiLdr_Finalize(&e->tcti);
        free(e);
}
