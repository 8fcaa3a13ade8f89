/* Key attestation for the TPM backend: TPM2_Certify of a child key by
 * kmsd's attestation key (AK), a restricted ECC P-256 signing key
 * (ECDSA-SHA-256) under the SRK. The AK is made on the first attestation
 * and kept like a child key, as TPM2B_PUBLIC/TPM2B_PRIVATE blobs, in the
 * one-row table tpm_attestation_key; it is loaded through the same LRU as
 * the child keys under a reserved id, and is used for nothing but
 * TPM2_Certify (a restricted key signs only what the TPM itself
 * generated). Nothing here proves the AK is in a genuine TPM: that needs
 * an EK credential activation, which kmsd does not do (docs/tpm.md). */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <tss2/tss2_mu.h>

#include "kms-error.h"
#include "kms-log.h"
#include "kms-util.h"
#include "tpm-internal.h"

#define T(bw) (((struct kms_tpm_worker *)(bw))->t)

/* The AK's id in the LRU. Child key ids are 16 random bytes, so one of
 * them equals this with probability 2^-128. */
static const uint8_t ak_id[KMS_KEY_ID_BYTES] = "kmsd/attest-key";

/* A TPM name: nameAlg (2 bytes) and a SHA-256 digest. */
#define NAME_BYTES (2u + 32u)

/* The AK's template: restricted signing, ECDSA-SHA-256 on P-256, bound
 * to this TPM and the SRK, generated inside, empty auth value. */
static void ak_template(TPM2B_PUBLIC *ret)
{
        TPMT_PUBLIC *p = &ret->publicArea;

        memset(ret, 0, sizeof(*ret));
        p->type = TPM2_ALG_ECC;
        p->nameAlg = TPM2_ALG_SHA256;
        p->objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
                              TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN_ENCRYPT;
        p->parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
        p->parameters.eccDetail.scheme.scheme = TPM2_ALG_ECDSA;
        p->parameters.eccDetail.scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
        p->parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
        p->parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
}

/* The AK's blobs: from the table, or made now (TPM2_Create under the SRK)
 * and stored. With t->lock held and the TPM connected. */
static int ak_blobs(struct kms_tpm *t, TPM2B_PUBLIC *ret_pub, TPM2B_PRIVATE *ret_priv)
{
        TPM2B_SENSITIVE_CREATE sensitive = {0};
        TPM2B_DATA outside = {0};
        TPML_PCR_SELECTION pcrs = {0};
        TPM2B_PUBLIC tmpl, *pub = NULL;
        TPM2B_PRIVATE *priv = NULL;
        TSS2_RC rc;
        int r;

        r = kms_tpm_store_ak_get(t, ret_pub, ret_priv);
        if (r != -ENOENT)
                return r;
        ak_template(&tmpl);
        do
                rc = Esys_Create(t->esys, t->srk, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &sensitive, &tmpl,
                                 &outside, &pcrs, &priv, &pub, NULL, NULL, NULL);
        while (kms_tpm_made_room(t, rc));
        r = kms_tpm_rc_to_errno(t, rc, "Esys_Create (attestation key)");
        if (r < 0)
                return r;
        r = kms_tpm_store_ak_put(t, pub, priv);
        Esys_Free(pub);
        Esys_Free(priv);
        if (r < 0)
                return r;
        log_debug("tpm: made the attestation key");
        /* Read back: the row that is in the table is the AK. */
        return kms_tpm_store_ak_get(t, ret_pub, ret_priv);
}

/* The name of a public area with nameAlg SHA-256: 0x000b || SHA-256 of
 * the marshalled TPMT_PUBLIC, which is also returned in pub_buf. */
static int public_name(const TPMT_PUBLIC *p, uint8_t name[NAME_BYTES], uint8_t *pub_buf, size_t pub_size,
                       size_t *ret_pub_len)
{
        size_t len = 0;
        unsigned dlen = 0;

        if (p->nameAlg != TPM2_ALG_SHA256 || Tss2_MU_TPMT_PUBLIC_Marshal(p, pub_buf, pub_size, &len) != TSS2_RC_SUCCESS)
                return KMS_E_BACKEND;
        name[0] = TPM2_ALG_SHA256 >> 8;
        name[1] = TPM2_ALG_SHA256 & 0xff;
        if (EVP_Digest(pub_buf, len, name + 2, &dlen, EVP_sha256(), NULL) != 1 || dlen != 32)
                return -ENOMEM;
        *ret_pub_len = len;
        return 0;
}

struct certify_result {
        TPM2B_ATTEST *info;
        TPMT_SIGNATURE *sig;
        TPM2B_PUBLIC ak_pub;
};

/* Load the key (its blobs given) and the AK, and certify. With t->lock
 * held and the TPM connected. */
static int certify(struct kms_tpm *t, const uint8_t id[KMS_KEY_ID_BYTES], const TPM2B_PUBLIC *pub,
                   const TPM2B_PRIVATE *priv, const TPM2B_DATA *nonce, struct certify_result *res)
{
        TPMT_SIG_SCHEME scheme = {.scheme = TPM2_ALG_ECDSA, .details.ecdsa.hashAlg = TPM2_ALG_SHA256};
        TPM2B_PRIVATE ak_priv;
        struct kms_tpm_key *k, *ak;
        TSS2_RC rc;
        int r;

        r = ak_blobs(t, &res->ak_pub, &ak_priv);
        if (r == 0)
                r = kms_tpm_load_blobs(t, id, pub, priv, &k);
        if (r == 0)
                r = kms_tpm_load_blobs(t, ak_id, &res->ak_pub, &ak_priv, &ak);
        OPENSSL_cleanse(&ak_priv, sizeof(ak_priv));
        if (r < 0)
                return r;
        /* Both must be loaded at once: loading the AK may have flushed the
         * key where the TPM holds only one of ours. */
        if (kms_tpm_lru_find(t, id) != k) {
                log_debug("tpm: the TPM cannot hold a key and the attestation key at once");
                return -EBUSY;
        }
        rc = Esys_Certify(t->esys, k->handle, ak->handle, ESYS_TR_PASSWORD, ESYS_TR_PASSWORD, ESYS_TR_NONE, nonce,
                          &scheme, &res->info, &res->sig);
        return kms_tpm_rc_to_errno(t, rc, "Esys_Certify");
}

/* Check what the TPM signed (the TPMS_ATTEST) against what was asked:
 * a certification generated by the TPM, of name, with the nonce. */
static int check_attest(const TPM2B_ATTEST *info, const uint8_t name[NAME_BYTES], const TPM2B_DATA *nonce)
{
        TPMS_ATTEST a;
        size_t off = 0;

        memset(&a, 0, sizeof(a));
        if (Tss2_MU_TPMS_ATTEST_Unmarshal(info->attestationData, info->size, &off, &a) != TSS2_RC_SUCCESS ||
            off != info->size || a.magic != TPM2_GENERATED_VALUE || a.type != TPM2_ST_ATTEST_CERTIFY ||
            a.extraData.size != nonce->size || memcmp(a.extraData.buffer, nonce->buffer, nonce->size) != 0 ||
            a.attested.certify.name.size != NAME_BYTES || memcmp(a.attested.certify.name.name, name, NAME_BYTES) != 0) {
                log_debug("tpm: TPM2_Certify answered an attestation that is not of the key with the nonce");
                return KMS_E_BACKEND;
        }
        return 0;
}

/* The AK's ECDSA signature as DER. */
static int sig_to_der(const TPMT_SIGNATURE *s, uint8_t **ret, size_t *ret_len)
{
        uint8_t raw[64];
        int r;

        if (s->sigAlg != TPM2_ALG_ECDSA || s->signature.ecdsa.hash != TPM2_ALG_SHA256 ||
            kms_tpm_pad_left(s->signature.ecdsa.signatureR.buffer, s->signature.ecdsa.signatureR.size, raw, 32) < 0 ||
            kms_tpm_pad_left(s->signature.ecdsa.signatureS.buffer, s->signature.ecdsa.signatureS.size, raw + 32, 32) <
                    0)
                return KMS_E_BACKEND;
        r = kms_ecdsa_raw_to_der(raw, sizeof(raw), ret, ret_len);
        return r == -EINVAL ? KMS_E_BACKEND : r;
}

static uint8_t *memdup_or_null(const void *p, size_t len)
{
        uint8_t *q = malloc(len ? len : 1);

        if (q && len)
                memcpy(q, p, len);
        return q;
}

int kms_tpm_attest(struct kms_backend_worker *bw, const uint8_t id[KMS_KEY_ID_BYTES], const uint8_t *nonce,
                   size_t nonce_len, uint8_t **ret_attest, size_t *ret_attest_len, uint8_t **ret_sig,
                   size_t *ret_sig_len, uint8_t **ret_ak_spki, size_t *ret_ak_spki_len, uint8_t **ret_key_name,
                   size_t *ret_key_name_len, uint8_t **ret_key_public, size_t *ret_key_public_len)
{
        struct kms_tpm *t = T(bw);
        struct certify_result res = {0};
        TPM2B_PUBLIC pub;
        TPM2B_PRIVATE priv;
        TPM2B_DATA qd = {0};
        uint8_t name[NAME_BYTES], pub_buf[sizeof(TPMT_PUBLIC)];
        size_t pub_len = 0, sig_len = 0, ak_spki_len = 0;
        _cleanup_(freep) uint8_t *sig = NULL, *ak_spki = NULL;
        uint8_t *attest = NULL, *name_out = NULL, *pub_out = NULL;
        int r;

        if (!id || (nonce_len > 0 && !nonce) || nonce_len > KMS_MAX_ATTEST_NONCE_BYTES ||
            nonce_len > sizeof(qd.buffer) || !ret_attest || !ret_attest_len || !ret_sig || !ret_sig_len ||
            !ret_ak_spki || !ret_ak_spki_len || !ret_key_name || !ret_key_name_len || !ret_key_public ||
            !ret_key_public_len)
                return -EINVAL;
        qd.size = (UINT16)nonce_len;
        if (nonce_len > 0)
                memcpy(qd.buffer, nonce, nonce_len);

        /* The blobs are never changed once written: read them before
         * taking the TPM. */
        r = kms_tpm_store_get(t, id, &pub, &priv);
        if (r < 0)
                return r;
        r = public_name(&pub.publicArea, name, pub_buf, sizeof(pub_buf), &pub_len);
        if (r < 0)
                goto out;

        pthread_mutex_lock(&t->lock);
        for (int attempt = 0;; attempt++) {
                r = kms_tpm_ensure_connected(t);
                if (r == 0)
                        r = certify(t, id, &pub, &priv, &qd, &res);
                if (r < 0 && t->broken && attempt == 0) {
                        log_debug("tpm: lost the TPM or its objects; reconnecting");
                        Esys_Free(res.info);
                        Esys_Free(res.sig);
                        res.info = NULL;
                        res.sig = NULL;
                        continue;
                }
                break;
        }
        pthread_mutex_unlock(&t->lock);
        if (r < 0)
                goto out;

        r = check_attest(res.info, name, &qd);
        if (r == 0)
                r = sig_to_der(res.sig, &sig, &sig_len);
        if (r == 0)
                r = kms_tpm_spki_from_public(&res.ak_pub.publicArea, KMS_ALG_EC_P256, &ak_spki, &ak_spki_len);
        if (r < 0)
                goto out;
        attest = memdup_or_null(res.info->attestationData, res.info->size);
        name_out = memdup_or_null(name, sizeof(name));
        pub_out = memdup_or_null(pub_buf, pub_len);
        if (!attest || !name_out || !pub_out) {
                free(attest);
                free(name_out);
                free(pub_out);
                r = -ENOMEM;
                goto out;
        }
        *ret_attest = attest;
        *ret_attest_len = res.info->size;
        *ret_sig = TAKE_PTR(sig);
        *ret_sig_len = sig_len;
        *ret_ak_spki = TAKE_PTR(ak_spki);
        *ret_ak_spki_len = ak_spki_len;
        *ret_key_name = name_out;
        *ret_key_name_len = sizeof(name);
        *ret_key_public = pub_out;
        *ret_key_public_len = pub_len;
out:
        OPENSSL_cleanse(&priv, sizeof(priv));
        Esys_Free(res.info);
        Esys_Free(res.sig);
        return r;
}
