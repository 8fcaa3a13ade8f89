/* Key operations of the TPM backend: create a child key of the SRK and
 * keep its blobs, its public half as SubjectPublicKeyInfo, sign a digest,
 * ECDH (TPM2_ECDH_ZGen), RSA-OAEP decryption, destroy. Every TPM call
 * holds t->lock; a call that finds the TPM gone or reset reconnects
 * (which recreates the SRK and reloads nothing) and is tried once more. */
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "kms-error.h"
#include "kms-log.h"
#include "kms-util.h"
#include "tpm-internal.h"

#define T(bw) (((struct kms_tpm_worker *)(bw))->t)

enum kms_algorithm kms_tpm_public_algorithm(const TPMT_PUBLIC *p)
{
        if (p->type == TPM2_ALG_ECC) {
                switch (p->parameters.eccDetail.curveID) {
                case TPM2_ECC_NIST_P256: return KMS_ALG_EC_P256;
                case TPM2_ECC_NIST_P384: return KMS_ALG_EC_P384;
                default: return KMS_ALG_INVALID;
                }
        }
        if (p->type == TPM2_ALG_RSA &&
            (p->parameters.rsaDetail.exponent == 0 || p->parameters.rsaDetail.exponent == 65537)) {
                switch (p->parameters.rsaDetail.keyBits) {
                case 2048: return KMS_ALG_RSA_2048;
                case 3072: return KMS_ALG_RSA_3072;
                case 4096: return KMS_ALG_RSA_4096;
                default: return KMS_ALG_INVALID;
                }
        }
        return KMS_ALG_INVALID;
}

static TPMI_ALG_HASH tpm_hash(enum kms_hash h)
{
        switch (h) {
        case KMS_HASH_SHA256: return TPM2_ALG_SHA256;
        case KMS_HASH_SHA384: return TPM2_ALG_SHA384;
        case KMS_HASH_SHA512: return TPM2_ALG_SHA512;
        default: return TPM2_ALG_ERROR;
        }
}

/* The public template of a child key: bound to this TPM and this parent,
 * generated inside, used with its (empty) auth value; sign only for the
 * sign usage, decrypt only for derive (ECDH_ZGen wants an unrestricted EC
 * key with decrypt) or decrypt (RSA). Scheme NULL, so each call names its
 * own: ECDSA, RSASSA or RSAPSS with the caller's digest, OAEP-SHA-256. */
static void key_template(enum kms_algorithm alg, unsigned usages, TPM2B_PUBLIC *ret)
{
        TPMT_PUBLIC *p = &ret->publicArea;

        memset(ret, 0, sizeof(*ret));
        p->nameAlg = TPM2_ALG_SHA256;
        p->objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
                              TPMA_OBJECT_USERWITHAUTH;
        if (usages & KMS_USAGE_SIGN)
                p->objectAttributes |= TPMA_OBJECT_SIGN_ENCRYPT;
        if (usages & (KMS_USAGE_DERIVE | KMS_USAGE_DECRYPT))
                p->objectAttributes |= TPMA_OBJECT_DECRYPT;
        if (kms_algorithm_is_ec(alg)) {
                p->type = TPM2_ALG_ECC;
                p->parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
                p->parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
                p->parameters.eccDetail.curveID = alg == KMS_ALG_EC_P256 ? TPM2_ECC_NIST_P256 : TPM2_ECC_NIST_P384;
                p->parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
        } else {
                p->type = TPM2_ALG_RSA;
                p->parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_NULL;
                p->parameters.rsaDetail.scheme.scheme = TPM2_ALG_NULL;
                p->parameters.rsaDetail.keyBits = (TPMI_RSA_KEY_BITS)kms_algorithm_rsa_bits(alg);
                p->parameters.rsaDetail.exponent = 0; /* 65537 */
        }
}

/* ---------------------------------------------------------------- SPKI */

/* Copy a big-endian number of at most len bytes into out, left-padded with
 * zeros to exactly len bytes. -1 if it is longer. */
int kms_tpm_pad_left(const uint8_t *in, size_t in_len, uint8_t *out, size_t len)
{
        if (in_len > len)
                return -1;
        memset(out, 0, len - in_len);
        memcpy(out + (len - in_len), in, in_len);
        return 0;
}

/* The SubjectPublicKeyInfo DER of a TPM public area, as the PKCS#11
 * backend writes it: named curve and uncompressed point, or RSA n and e.
 * *ret is the caller's (free). */
int kms_tpm_spki_from_public(const TPMT_PUBLIC *p, enum kms_algorithm alg, uint8_t **ret, size_t *ret_len)
{
        bool ec = kms_algorithm_is_ec(alg);
        size_t coord = kms_algorithm_size(alg);
        uint8_t point[1 + 2 * 48];
        OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
        OSSL_PARAM *params = NULL;
        EVP_PKEY_CTX *ctx = NULL;
        EVP_PKEY *pkey = NULL;
        BIGNUM *n = NULL, *e = NULL;
        unsigned char *der = NULL;
        int len, r = -ENOMEM;

        if (!bld)
                return -ENOMEM;
        if (kms_tpm_public_algorithm(p) != alg) {
                r = KMS_E_BACKEND;
                goto out;
        }
        if (ec) {
                point[0] = 0x04;
                if (kms_tpm_pad_left(p->unique.ecc.x.buffer, p->unique.ecc.x.size, point + 1, coord) < 0 ||
                    kms_tpm_pad_left(p->unique.ecc.y.buffer, p->unique.ecc.y.size, point + 1 + coord, coord) < 0) {
                        r = KMS_E_BACKEND;
                        goto out;
                }
                if (!OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                                     alg == KMS_ALG_EC_P256 ? "P-256" : "P-384", 0) ||
                    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, 1 + 2 * coord))
                        goto out;
        } else {
                n = BN_bin2bn(p->unique.rsa.buffer, p->unique.rsa.size, NULL);
                e = BN_new();
                if (!n || !e ||
                    !BN_set_word(e, p->parameters.rsaDetail.exponent ? p->parameters.rsaDetail.exponent : 65537) ||
                    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
                    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
                        goto out;
                if ((size_t)BN_num_bits(n) != kms_algorithm_rsa_bits(alg)) {
                        r = KMS_E_BACKEND;
                        goto out;
                }
        }
        params = OSSL_PARAM_BLD_to_param(bld);
        ctx = EVP_PKEY_CTX_new_from_name(NULL, ec ? "EC" : "RSA", NULL);
        if (!params || !ctx)
                goto out;
        r = KMS_E_BACKEND;
        if (EVP_PKEY_fromdata_init(ctx) != 1 || EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1 ||
            (len = i2d_PUBKEY(pkey, &der)) <= 0)
                goto out;
        r = -ENOMEM;
        *ret = malloc((size_t)len);
        if (*ret) {
                memcpy(*ret, der, (size_t)len);
                *ret_len = (size_t)len;
                r = 0;
        }
out:
        ERR_clear_error();
        OPENSSL_free(der);
        EVP_PKEY_free(pkey);
        EVP_PKEY_CTX_free(ctx);
        OSSL_PARAM_free(params);
        OSSL_PARAM_BLD_free(bld);
        BN_free(n);
        BN_free(e);
        return r;
}

/* ---------------------------------------------------------------- loading */

/* After rc from a call that needs a free object slot (TPM2_Load, and
 * TPM2_Create for its scratch copy): if the TPM ran out of object memory
 * and a key of ours is loaded, flush the least recently used one and say
 * the call may be tried again. */
bool kms_tpm_made_room(struct kms_tpm *t, TSS2_RC rc)
{
        if (kms_tpm_rc_base(rc) != TPM2_RC_OBJECT_MEMORY || t->lru.n == 0)
                return false;
        log_debug("tpm: the TPM is out of object memory with %zu keys loaded; flushing one", t->lru.n);
        return kms_tpm_lru_evict_tail(t) && !t->broken;
}

/* The loaded key of id, loaded from its blobs if it is not: with t->lock
 * held and the TPM connected. The least recently used key makes room; if
 * the TPM still runs out of object memory (someone else holds objects),
 * another goes and the list is kept shorter from then on. -ENOENT if the
 * backend has no blobs for id. */
int kms_tpm_load_key(struct kms_tpm *t, const uint8_t id[KMS_KEY_ID_BYTES], struct kms_tpm_key **ret)
{
        struct kms_tpm_key *k = kms_tpm_lru_find(t, id);
        TPM2B_PUBLIC pub;
        TPM2B_PRIVATE priv;
        int r;

        if (k) {
                *ret = k;
                return 0;
        }
        r = kms_tpm_store_get(t, id, &pub, &priv);
        if (r < 0)
                return r;
        return kms_tpm_load_blobs(t, id, &pub, &priv, ret);
}

int kms_tpm_load_blobs(struct kms_tpm *t, const uint8_t id[KMS_KEY_ID_BYTES], const TPM2B_PUBLIC *pubp,
                       const TPM2B_PRIVATE *privp, struct kms_tpm_key **ret)
{
        struct kms_tpm_key *k = kms_tpm_lru_find(t, id);
        TPM2B_PUBLIC pub = *pubp;
        TPM2B_PRIVATE priv = *privp;
        enum kms_algorithm alg;
        TSS2_RC rc;

        if (k) {
                *ret = k;
                return 0;
        }
        alg = kms_tpm_public_algorithm(&pub.publicArea);
        if (alg == KMS_ALG_INVALID) {
                log_debug("tpm: the stored public area is not a key kmsd makes");
                return KMS_E_BACKEND;
        }
        while (t->lru.n >= t->lru.cap && kms_tpm_lru_evict_tail(t))
                ;
        if (t->broken)
                return KMS_E_BACKEND;
        k = calloc(1, sizeof(*k));
        if (!k)
                return -ENOMEM;
        for (;;) {
                size_t loaded = t->lru.n;

                rc = Esys_Load(t->esys, t->srk, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &priv, &pub, &k->handle);
                if (!kms_tpm_made_room(t, rc))
                        break;
                /* No more than the keys loaded then fit (the TPM said
                 * more, or someone else holds objects): keep that many. */
                t->lru.cap = loaded;
        }
        if (rc != TSS2_RC_SUCCESS) {
                free(k);
                return kms_tpm_rc_to_errno(t, rc, "Esys_Load");
        }
        memcpy(k->id, id, KMS_KEY_ID_BYTES);
        k->alg = alg;
        k->attributes = pub.publicArea.objectAttributes;
        kms_tpm_lru_push(t, k);
        *ret = k;
        return 0;
}

typedef int (*key_op_fn)(struct kms_tpm *t, struct kms_tpm_key *k, void *userdata);

/* Run op on the loaded key of id, holding the TPM. If the TPM went away
 * or was reset meanwhile (t->broken), reconnect and try once more. */
static int with_key(struct kms_tpm *t, const uint8_t id[KMS_KEY_ID_BYTES], key_op_fn op, void *userdata)
{
        struct kms_tpm_key *k;
        int r;

        pthread_mutex_lock(&t->lock);
        for (int attempt = 0;; attempt++) {
                r = kms_tpm_ensure_connected(t);
                if (r < 0)
                        break;
                r = kms_tpm_load_key(t, id, &k);
                if (r == 0)
                        r = op(t, k, userdata);
                if (r < 0 && t->broken && attempt == 0) {
                        log_debug("tpm: lost the TPM or its objects; reconnecting");
                        continue;
                }
                break;
        }
        pthread_mutex_unlock(&t->lock);
        return r;
}

/* ---------------------------------------------------------------- generate */

/* TPM2_TestParms for the key's parameters: -EOPNOTSUPP if the TPM has no
 * such curve or key size. */
static int test_parms(struct kms_tpm *t, const TPM2B_PUBLIC *tmpl, enum kms_algorithm alg)
{
        TPMT_PUBLIC_PARMS parms = {.type = tmpl->publicArea.type, .parameters = tmpl->publicArea.parameters};
        TSS2_RC rc = Esys_TestParms(t->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &parms);
        int r;

        if (rc == TSS2_RC_SUCCESS)
                return 0;
        r = kms_tpm_rc_to_errno(t, rc, "Esys_TestParms");
        if (t->broken || r == -EBUSY)
                return r;
        log_debug("tpm: this TPM cannot make %s keys", kms_algorithm_to_string(alg));
        return -EOPNOTSUPP;
}

int kms_tpm_generate(struct kms_backend_worker *bw, enum kms_algorithm alg, unsigned usages, const char *label,
                     uint8_t ret_id[KMS_KEY_ID_BYTES], uint8_t **ret_spki, size_t *ret_spki_len)
{
        struct kms_tpm *t = T(bw);
        TPM2B_SENSITIVE_CREATE sensitive = {0};
        TPM2B_DATA outside = {0};
        TPML_PCR_SELECTION pcrs = {0};
        TPM2B_PUBLIC tmpl, *pub = NULL;
        TPM2B_PRIVATE *priv = NULL;
        uint8_t id[KMS_KEY_ID_BYTES];
        uint8_t *spki = NULL;
        size_t spki_len = 0;
        TSS2_RC rc;
        int r;

        if (!kms_algorithm_to_string(alg) || (usages & ~kms_algorithm_usages(alg)) || usages == 0 || !label ||
            !ret_id || !ret_spki || !ret_spki_len)
                return -EINVAL;
        if (CRYPTO_memcmp(ret_id, (const uint8_t[KMS_KEY_ID_BYTES]){ 0 }, KMS_KEY_ID_BYTES) != 0)
                memcpy(id, ret_id, sizeof(id));
        else if (RAND_bytes(id, sizeof(id)) != 1)
                return -ENOMEM;
        key_template(alg, usages, &tmpl);

        pthread_mutex_lock(&t->lock);
        for (int attempt = 0;; attempt++) {
                r = kms_tpm_ensure_connected(t);
                if (r == 0)
                        r = test_parms(t, &tmpl, alg);
                if (r == 0) {
                        /* TPM2_Create needs a free slot for the new key
                         * while it makes it. */
                        do
                                rc = Esys_Create(t->esys, t->srk, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                                                 &sensitive, &tmpl, &outside, &pcrs, &priv, &pub, NULL, NULL, NULL);
                        while (kms_tpm_made_room(t, rc));
                        r = kms_tpm_rc_to_errno(t, rc, "Esys_Create");
                }
                if (r < 0 && t->broken && attempt == 0)
                        continue;
                break;
        }
        pthread_mutex_unlock(&t->lock);
        if (r < 0)
                return r;

        /* Nothing is loaded in the TPM: the key exists only as blobs, so a
         * failure from here on leaves nothing behind. */
        r = kms_tpm_spki_from_public(&pub->publicArea, alg, &spki, &spki_len);
        if (r == 0 && pub->publicArea.objectAttributes != tmpl.publicArea.objectAttributes)
                r = KMS_E_BACKEND;
        if (r == 0)
                r = kms_tpm_store_put(t, id, label, pub, priv);
        Esys_Free(pub);
        Esys_Free(priv);
        if (r < 0) {
                free(spki);
                return r;
        }
        memcpy(ret_id, id, sizeof(id));
        *ret_spki = spki;
        *ret_spki_len = spki_len;
        return 0;
}

/* ---------------------------------------------------------------- sign */

struct sign_call {
        enum kms_algorithm alg;
        TPMT_SIG_SCHEME scheme;
        TPM2B_DIGEST digest;
        uint8_t *sig;
        size_t sig_len;
};

static int call_sign(struct kms_tpm *t, struct kms_tpm_key *k, void *userdata)
{
        struct sign_call *c = userdata;
        TPMT_TK_HASHCHECK validation = {.tag = TPM2_ST_HASHCHECK, .hierarchy = TPM2_RH_NULL};
        TPMT_SIGNATURE *s = NULL;
        size_t len = kms_algorithm_size(c->alg);
        TSS2_RC rc;
        int r = 0;

        if (k->alg != c->alg)
                return -EINVAL;
        if (!(k->attributes & TPMA_OBJECT_SIGN_ENCRYPT))
                return -EPERM;
        rc = Esys_Sign(t->esys, k->handle, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &c->digest, &c->scheme,
                       &validation, &s);
        if (rc != TSS2_RC_SUCCESS)
                return kms_tpm_rc_to_errno(t, rc, "Esys_Sign");
        if (s->sigAlg != c->scheme.scheme) {
                r = KMS_E_BACKEND;
        } else if (c->scheme.scheme == TPM2_ALG_ECDSA) {
                uint8_t raw[2 * 48];
                _cleanup_(freep) uint8_t *der = NULL;
                size_t der_len = 0;

                if (kms_tpm_pad_left(s->signature.ecdsa.signatureR.buffer, s->signature.ecdsa.signatureR.size, raw,
                                     len) < 0 ||
                    kms_tpm_pad_left(s->signature.ecdsa.signatureS.buffer, s->signature.ecdsa.signatureS.size,
                                     raw + len, len) < 0)
                        r = KMS_E_BACKEND;
                else
                        r = kms_ecdsa_raw_to_der(raw, 2 * len, &der, &der_len);
                if (r == -EINVAL || (r == 0 && der_len > KMS_MAX_SIGNATURE_BYTES))
                        r = KMS_E_BACKEND;
                if (r == 0) {
                        memcpy(c->sig, der, der_len);
                        c->sig_len = der_len;
                }
        } else {
                /* RSASSA and RSAPSS share TPMS_SIGNATURE_RSA. */
                const TPM2B_PUBLIC_KEY_RSA *rs = &s->signature.rsassa.sig;

                if (kms_tpm_pad_left(rs->buffer, rs->size, c->sig, len) < 0)
                        r = KMS_E_BACKEND;
                else
                        c->sig_len = len;
        }
        Esys_Free(s);
        return r;
}

int kms_tpm_sign(struct kms_backend_worker *bw, const uint8_t id[KMS_KEY_ID_BYTES], enum kms_algorithm alg,
                 enum kms_hash h, enum kms_padding pad, const uint8_t *digest, size_t digest_len,
                 uint8_t sig[KMS_MAX_SIGNATURE_BYTES], size_t *ret_sig_len)
{
        struct sign_call c = {.alg = alg, .sig = sig};
        TPMI_ALG_HASH th = tpm_hash(h);
        int r;

        if (!digest || !sig || !ret_sig_len || th == TPM2_ALG_ERROR || digest_len != kms_hash_length(h) ||
            digest_len == 0 || digest_len > sizeof(c.digest.buffer))
                return -EINVAL;
        if (kms_algorithm_is_ec(alg) && pad == KMS_PAD_NONE)
                c.scheme = (TPMT_SIG_SCHEME){.scheme = TPM2_ALG_ECDSA, .details.ecdsa.hashAlg = th};
        else if (kms_algorithm_is_rsa(alg) && pad == KMS_PAD_PKCS1)
                c.scheme = (TPMT_SIG_SCHEME){.scheme = TPM2_ALG_RSASSA, .details.rsassa.hashAlg = th};
        else if (kms_algorithm_is_rsa(alg) && pad == KMS_PAD_PSS)
                c.scheme = (TPMT_SIG_SCHEME){.scheme = TPM2_ALG_RSAPSS, .details.rsapss.hashAlg = th};
        else
                return -EINVAL;
        c.digest.size = (UINT16)digest_len;
        memcpy(c.digest.buffer, digest, digest_len);

        r = with_key(T(bw), id, call_sign, &c);
        if (r < 0)
                return r;
        *ret_sig_len = c.sig_len;
        return 0;
}

/* ---------------------------------------------------------------- ECDH */

struct derive_call {
        enum kms_algorithm alg;
        TPM2B_ECC_POINT point;
        uint8_t *secret;
};

static int call_derive(struct kms_tpm *t, struct kms_tpm_key *k, void *userdata)
{
        struct derive_call *c = userdata;
        size_t coord = kms_algorithm_size(c->alg);
        TPM2B_ECC_POINT *z = NULL;
        TSS2_RC rc;
        int r = 0;

        if (k->alg != c->alg)
                return -EINVAL;
        if (!(k->attributes & TPMA_OBJECT_DECRYPT) || (k->attributes & TPMA_OBJECT_RESTRICTED))
                return -EPERM;
        rc = Esys_ECDH_ZGen(t->esys, k->handle, kms_tpm_secret_session(t), ESYS_TR_NONE, ESYS_TR_NONE, &c->point, &z);
        if (rc != TSS2_RC_SUCCESS)
                return kms_tpm_rc_to_errno(t, rc, "Esys_ECDH_ZGen");
        if (kms_tpm_pad_left(z->point.x.buffer, z->point.x.size, c->secret, coord) < 0)
                r = KMS_E_BACKEND;
        OPENSSL_cleanse(z, sizeof(*z));
        Esys_Free(z);
        return r;
}

int kms_tpm_derive(struct kms_backend_worker *bw, const uint8_t id[KMS_KEY_ID_BYTES], enum kms_algorithm alg,
                   const uint8_t *peer_point, size_t peer_point_len, uint8_t *ret_secret, size_t *ret_secret_len)
{
        uint8_t secret[KMS_MAX_ECDH_SECRET_BYTES];
        struct derive_call c = {.alg = alg, .secret = secret};
        size_t coord = kms_algorithm_size(alg);
        int r;

        if (!kms_algorithm_is_ec(alg) || coord == 0 || coord > sizeof(c.point.point.x.buffer) || !peer_point ||
            !ret_secret || !ret_secret_len)
                return -EINVAL;
        if (peer_point_len != 2 * coord + 1 || peer_point[0] != 0x04)
                return -EINVAL;
        c.point.point.x.size = (UINT16)coord;
        memcpy(c.point.point.x.buffer, peer_point + 1, coord);
        c.point.point.y.size = (UINT16)coord;
        memcpy(c.point.point.y.buffer, peer_point + 1 + coord, coord);

        r = with_key(T(bw), id, call_derive, &c);
        if (r == 0) {
                memcpy(ret_secret, secret, coord);
                *ret_secret_len = coord;
        }
        OPENSSL_cleanse(secret, sizeof(secret));
        return r;
}

/* ---------------------------------------------------------------- RSA-OAEP */

struct decrypt_call {
        enum kms_algorithm alg;
        TPM2B_PUBLIC_KEY_RSA in;
        uint8_t *out;
        size_t out_len;
};

/* Is the TPM working (not in failure mode)? TPM2_GetTestResult is one of
 * the two commands a TPM in failure mode still answers. */
static bool tpm_healthy(struct kms_tpm *t)
{
        TPM2B_MAX_BUFFER *out = NULL;
        TPM2_RC result = TPM2_RC_FAILURE;
        TSS2_RC rc = Esys_GetTestResult(t->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &out, &result);

        Esys_Free(out);
        if (rc != TSS2_RC_SUCCESS) {
                (void)kms_tpm_rc_to_errno(t, rc, "Esys_GetTestResult");
                return false;
        }
        return result == TPM2_RC_SUCCESS;
}

static int call_decrypt(struct kms_tpm *t, struct kms_tpm_key *k, void *userdata)
{
        struct decrypt_call *c = userdata;
        TPMT_RSA_DECRYPT scheme = {.scheme = TPM2_ALG_OAEP, .details.oaep.hashAlg = TPM2_ALG_SHA256};
        TPM2B_DATA label = {0};
        TPM2B_PUBLIC_KEY_RSA *m = NULL;
        TSS2_RC rc;
        int r = 0;

        if (k->alg != c->alg)
                return -EINVAL;
        if (!(k->attributes & TPMA_OBJECT_DECRYPT) || (k->attributes & TPMA_OBJECT_RESTRICTED))
                return -EPERM;
        rc = Esys_RSA_Decrypt(t->esys, k->handle, kms_tpm_secret_session(t), ESYS_TR_NONE, ESYS_TR_NONE, &c->in,
                              &scheme, &label, &m);
        if (rc != TSS2_RC_SUCCESS) {
                r = kms_tpm_rc_to_errno(t, rc, "Esys_RSA_Decrypt");
                /* TPM_RC_VALUE: a padding failure or a ciphertext not
                 * below the modulus; TPM_RC_SIZE: one of the wrong size.
                 * libtpms (swtpm) answers TPM_RC_FAILURE to a bad
                 * ciphertext without entering failure mode: ask the TPM
                 * which it is (one extra command on every failure, the
                 * same for every kind of bad ciphertext). */
                if (kms_tpm_rc_base(rc) == TPM2_RC_VALUE || kms_tpm_rc_base(rc) == TPM2_RC_SIZE ||
                    (kms_tpm_rc_base(rc) == TPM2_RC_FAILURE && tpm_healthy(t)))
                        r = -EBADMSG;
                return r;
        }
        if (m->size > kms_algorithm_size(c->alg))
                r = KMS_E_BACKEND;
        else {
                memcpy(c->out, m->buffer, m->size);
                c->out_len = m->size;
        }
        OPENSSL_cleanse(m, sizeof(*m));
        Esys_Free(m);
        return r;
}

int kms_tpm_decrypt(struct kms_backend_worker *bw, const uint8_t id[KMS_KEY_ID_BYTES], enum kms_algorithm alg,
                    const uint8_t *in, size_t in_len, uint8_t *out, size_t *out_len)
{
        struct decrypt_call c = {.alg = alg};
        uint8_t buf[KMS_MAX_RSA_BYTES];
        size_t k = kms_algorithm_size(alg);
        int r;

        if (!kms_algorithm_is_rsa(alg) || k == 0 || k > sizeof(buf) || k > sizeof(c.in.buffer) || !in || !out ||
            !out_len)
                return -EINVAL;
        if (in_len != k)
                return -EINVAL;
        c.in.size = (UINT16)in_len;
        memcpy(c.in.buffer, in, in_len);
        c.out = buf;

        r = with_key(T(bw), id, call_decrypt, &c);
        if (r == 0) {
                memcpy(out, buf, c.out_len);
                *out_len = c.out_len;
        }
        OPENSSL_cleanse(buf, sizeof(buf));
        return r;
}

/* ---------------------------------------------------------------- the rest */

int kms_tpm_destroy(struct kms_backend_worker *bw, const uint8_t id[KMS_KEY_ID_BYTES])
{
        struct kms_tpm *t = T(bw);
        int r;

        /* The blobs first: once they are gone no one can load the key
         * again; then the copy that may be loaded. A signer that loaded
         * it in between is done before this takes the lock. */
        r = kms_tpm_store_delete(t, id);
        pthread_mutex_lock(&t->lock);
        if (t->connected && !t->broken)
                kms_tpm_lru_drop(t, id);
        pthread_mutex_unlock(&t->lock);
        return r;
}

int kms_tpm_exists(struct kms_backend_worker *bw, const uint8_t id[KMS_KEY_ID_BYTES])
{
        return kms_tpm_store_exists(T(bw), id);
}

int kms_tpm_enumerate(struct kms_backend_worker *bw, const char *prefix,
                      void (*cb)(const uint8_t id[KMS_KEY_ID_BYTES], const char *label, void *userdata), void *userdata)
{
        if (!prefix || !cb)
                return -EINVAL;
        return kms_tpm_store_enumerate(T(bw), prefix, cb, userdata);
}
