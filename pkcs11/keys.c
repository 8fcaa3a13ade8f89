/* Key operations of the PKCS#11 backend: generate a non-extractable pair,
 * read its public half as SubjectPublicKeyInfo, sign a digest, ECDH
 * derivation, RSA-OAEP decryption, destroy. Objects are found by CKA_ID
 * with a search template, never by walking the token. */
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
#include "pkcs11-internal.h"

#define W(bw) ((struct kms_pkcs11_worker *)(bw))

/* DER of the curve OIDs, as CKA_EC_PARAMS wants them. */
static const uint8_t oid_p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
static const uint8_t oid_p384[] = { 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22 };

/* DigestInfo prefixes for RSASSA-PKCS1-v1_5 over CKM_RSA_PKCS. */
static const uint8_t di_sha256[] = { 0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                     0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20 };
static const uint8_t di_sha384[] = { 0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                     0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30 };
static const uint8_t di_sha512[] = { 0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                     0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40 };

/* Find the one object of class cls with CKA_ID id. -ENOENT if none. */
static int find_object(struct kms_pkcs11_worker *w, CK_OBJECT_CLASS cls, const uint8_t id[KMS_KEY_ID_BYTES],
                       CK_OBJECT_HANDLE *ret)
{
        CK_FUNCTION_LIST *f = w->p->f;
        CK_ATTRIBUTE tmpl[] = {
                { CKA_CLASS, &cls, sizeof(cls) },
                { CKA_ID, (void *)id, KMS_KEY_ID_BYTES },
        };
        CK_OBJECT_HANDLE h[2];
        CK_ULONG n = 0;
        CK_RV rv;

        rv = f->C_FindObjectsInit(w->session, tmpl, ELEMENTSOF(tmpl));
        if (rv != CKR_OK)
                return kms_pkcs11_rv_to_errno(rv, "C_FindObjectsInit");
        rv = f->C_FindObjects(w->session, h, ELEMENTSOF(h), &n);
        f->C_FindObjectsFinal(w->session);
        if (rv != CKR_OK)
                return kms_pkcs11_rv_to_errno(rv, "C_FindObjects");
        if (n == 0)
                return -ENOENT;
        if (n > 1) {
                log_debug("pkcs11: %lu objects share one CKA_ID", (unsigned long)n);
                return KMS_E_BACKEND;
        }
        *ret = h[0];
        return 0;
}

/* Read one attribute of variable length into a new buffer. */
static int get_attr(struct kms_pkcs11_worker *w, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type, uint8_t **ret,
                    size_t *ret_len)
{
        CK_ATTRIBUTE a = { type, NULL, 0 };
        uint8_t *buf;
        CK_RV rv;

        rv = w->p->f->C_GetAttributeValue(w->session, obj, &a, 1);
        if (rv != CKR_OK)
                return kms_pkcs11_rv_to_errno(rv, "C_GetAttributeValue");
        if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION || a.ulValueLen == 0 || a.ulValueLen > 8192)
                return KMS_E_BACKEND;
        buf = malloc(a.ulValueLen);
        if (!buf)
                return -ENOMEM;
        a.pValue = buf;
        rv = w->p->f->C_GetAttributeValue(w->session, obj, &a, 1);
        if (rv != CKR_OK) {
                free(buf);
                return kms_pkcs11_rv_to_errno(rv, "C_GetAttributeValue");
        }
        *ret = buf;
        *ret_len = a.ulValueLen;
        return 0;
}

/* CKA_EC_POINT is a DER OCTET STRING around the uncompressed point;
 * some modules return the bare point. Accept exactly those two. */
static int ec_point_unwrap(const uint8_t *v, size_t len, size_t coord, const uint8_t **ret, size_t *ret_len)
{
        size_t plen = 2 * coord + 1;

        if (len == plen && v[0] == 0x04) {
                *ret = v;
                *ret_len = len;
                return 0;
        }
        if (plen < 128 && len == plen + 2 && v[0] == 0x04 && v[1] == plen && v[2] == 0x04) {
                *ret = v + 2;
                *ret_len = plen;
                return 0;
        }
        if (plen >= 128 && plen < 256 && len == plen + 3 && v[0] == 0x04 && v[1] == 0x81 && v[2] == plen &&
            v[3] == 0x04) {
                *ret = v + 3;
                *ret_len = plen;
                return 0;
        }
        return KMS_E_BACKEND;
}

static int spki_from_pkey_params(const char *type, OSSL_PARAM *params, uint8_t **ret, size_t *ret_len)
{
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
        EVP_PKEY *pkey = NULL;
        unsigned char *der = NULL;
        int len, r = KMS_E_BACKEND;

        if (!ctx)
                return -ENOMEM;
        if (EVP_PKEY_fromdata_init(ctx) != 1 || EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
                goto out;
        len = i2d_PUBKEY(pkey, &der);
        if (len <= 0)
                goto out;
        *ret = malloc((size_t)len);
        if (!*ret) {
                r = -ENOMEM;
                goto out;
        }
        memcpy(*ret, der, (size_t)len);
        *ret_len = (size_t)len;
        r = 0;
out:
        ERR_clear_error();
        OPENSSL_free(der);
        EVP_PKEY_free(pkey);
        EVP_PKEY_CTX_free(ctx);
        return r;
}

static int public_key_spki(struct kms_pkcs11_worker *w, CK_OBJECT_HANDLE pub, enum kms_algorithm alg,
                           uint8_t **ret, size_t *ret_len)
{
        _cleanup_(freep) uint8_t *a = NULL, *b = NULL;
        size_t alen = 0, blen = 0;
        OSSL_PARAM_BLD *bld = NULL;
        OSSL_PARAM *params = NULL;
        BIGNUM *n = NULL, *e = NULL;
        int r;

        if (kms_algorithm_is_ec(alg)) {
                const uint8_t *point;
                size_t point_len;

                r = get_attr(w, pub, CKA_EC_POINT, &a, &alen);
                if (r < 0)
                        return r;
                r = ec_point_unwrap(a, alen, kms_algorithm_size(alg), &point, &point_len);
                if (r < 0)
                        return r;
                OSSL_PARAM p[] = {
                        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
                                               (char *)(alg == KMS_ALG_EC_P256 ? "P-256" : "P-384"), 0),
                        OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)point, point_len),
                        OSSL_PARAM_END,
                };
                return spki_from_pkey_params("EC", p, ret, ret_len);
        }

        r = get_attr(w, pub, CKA_MODULUS, &a, &alen);
        if (r < 0)
                return r;
        r = get_attr(w, pub, CKA_PUBLIC_EXPONENT, &b, &blen);
        if (r < 0)
                return r;
        r = -ENOMEM;
        n = BN_bin2bn(a, (int)alen, NULL);
        e = BN_bin2bn(b, (int)blen, NULL);
        bld = OSSL_PARAM_BLD_new();
        if (!n || !e || !bld || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
            !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
                goto out;
        params = OSSL_PARAM_BLD_to_param(bld);
        if (!params)
                goto out;
        if ((size_t)BN_num_bits(n) != kms_algorithm_rsa_bits(alg)) {
                r = KMS_E_BACKEND;
                goto out;
        }
        r = spki_from_pkey_params("RSA", params, ret, ret_len);
out:
        OSSL_PARAM_free(params);
        OSSL_PARAM_BLD_free(bld);
        BN_free(n);
        BN_free(e);
        return r;
}

static int destroy_by_id(struct kms_pkcs11_worker *w, const uint8_t id[KMS_KEY_ID_BYTES])
{
        CK_FUNCTION_LIST *f = w->p->f;
        CK_ATTRIBUTE tmpl[] = { { CKA_ID, (void *)id, KMS_KEY_ID_BYTES } };
        CK_OBJECT_HANDLE h[8];
        CK_ULONG n = 0;
        CK_RV rv;
        int r = 0;

        kms_pkcs11_cache_drop(&w->p->cache, id);
        rv = f->C_FindObjectsInit(w->session, tmpl, ELEMENTSOF(tmpl));
        if (rv != CKR_OK)
                return kms_pkcs11_rv_to_errno(rv, "C_FindObjectsInit");
        rv = f->C_FindObjects(w->session, h, ELEMENTSOF(h), &n);
        f->C_FindObjectsFinal(w->session);
        if (rv != CKR_OK)
                return kms_pkcs11_rv_to_errno(rv, "C_FindObjects");
        for (CK_ULONG i = 0; i < n; i++) {
                rv = f->C_DestroyObject(w->session, h[i]);
                if (rv != CKR_OK && rv != CKR_OBJECT_HANDLE_INVALID)
                        r = kms_pkcs11_rv_to_errno(rv, "C_DestroyObject");
        }
        /* Again: a signer that looked the handle up meanwhile may have
         * cached it. (The metadata already forbids the key, so no request
         * reaches this id any more.) */
        kms_pkcs11_cache_drop(&w->p->cache, id);
        return r;
}

int kms_pkcs11_destroy(struct kms_backend_worker *bw, const uint8_t id[KMS_KEY_ID_BYTES])
{
        return destroy_by_id(W(bw), id);
}

int kms_pkcs11_generate(struct kms_backend_worker *bw, enum kms_algorithm alg, unsigned usages, const char *label,
                        uint8_t ret_id[KMS_KEY_ID_BYTES], uint8_t **ret_spki, size_t *ret_spki_len)
{
        struct kms_pkcs11_worker *w = W(bw);
        CK_FUNCTION_LIST *f = w->p->f;
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        CK_BBOOL sign = (usages & KMS_USAGE_SIGN) ? CK_TRUE : CK_FALSE;
        CK_BBOOL derive = (usages & KMS_USAGE_DERIVE) ? CK_TRUE : CK_FALSE;
        CK_BBOOL decrypt = (usages & KMS_USAGE_DECRYPT) ? CK_TRUE : CK_FALSE;
        CK_ULONG bits = kms_algorithm_rsa_bits(alg);
        static const uint8_t f4[] = { 0x01, 0x00, 0x01 };
        uint8_t id[KMS_KEY_ID_BYTES];
        CK_MECHANISM mech = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
        CK_OBJECT_HANDLE pub = CK_INVALID_HANDLE, priv = CK_INVALID_HANDLE;
        size_t label_len = strlen(label);
        CK_RV rv;
        int r;

        if (!kms_algorithm_to_string(alg) || (usages & ~kms_algorithm_usages(alg)) || usages == 0)
                return -EINVAL;
        if (CRYPTO_memcmp(ret_id, (const uint8_t[KMS_KEY_ID_BYTES]){ 0 }, KMS_KEY_ID_BYTES) != 0)
                memcpy(id, ret_id, sizeof(id));
        else if (RAND_bytes(id, sizeof(id)) != 1)
                return -ENOMEM;

        /* Public half: a token object too, so the token describes itself
         * (reconciliation, pkcs11-tool). Private half: sensitive, never
         * extractable, capable of exactly the requested usages. */
        CK_ATTRIBUTE pub_tmpl[11] = {
                { CKA_TOKEN, &yes, sizeof(yes) },
                { CKA_PRIVATE, &no, sizeof(no) },
                { CKA_ID, id, sizeof(id) },
                { CKA_LABEL, (void *)label, label_len },
                { CKA_VERIFY, &sign, sizeof(sign) },
                { CKA_ENCRYPT, &decrypt, sizeof(decrypt) },
                { CKA_WRAP, &no, sizeof(no) },
                { CKA_VERIFY_RECOVER, &no, sizeof(no) },
                { CKA_DERIVE, &no, sizeof(no) },
        };
        CK_ULONG n_pub = 9;
        CK_ATTRIBUTE priv_tmpl[] = {
                { CKA_TOKEN, &yes, sizeof(yes) },
                { CKA_PRIVATE, &yes, sizeof(yes) },
                { CKA_SENSITIVE, &yes, sizeof(yes) },
                { CKA_EXTRACTABLE, &no, sizeof(no) },
                { CKA_ID, id, sizeof(id) },
                { CKA_LABEL, (void *)label, label_len },
                { CKA_SIGN, &sign, sizeof(sign) },
                { CKA_DERIVE, &derive, sizeof(derive) },
                { CKA_DECRYPT, &decrypt, sizeof(decrypt) },
                { CKA_UNWRAP, &no, sizeof(no) },
                { CKA_SIGN_RECOVER, &no, sizeof(no) },
        };

        if (kms_algorithm_is_ec(alg)) {
                pub_tmpl[n_pub++] = (CK_ATTRIBUTE){ CKA_EC_PARAMS,
                                                    (void *)(alg == KMS_ALG_EC_P256 ? oid_p256 : oid_p384),
                                                    alg == KMS_ALG_EC_P256 ? sizeof(oid_p256) : sizeof(oid_p384) };
        } else {
                mech.mechanism = CKM_RSA_PKCS_KEY_PAIR_GEN;
                pub_tmpl[n_pub++] = (CK_ATTRIBUTE){ CKA_MODULUS_BITS, &bits, sizeof(bits) };
                pub_tmpl[n_pub++] = (CK_ATTRIBUTE){ CKA_PUBLIC_EXPONENT, (void *)f4, sizeof(f4) };
        }

        rv = f->C_GenerateKeyPair(w->session, &mech, pub_tmpl, n_pub, priv_tmpl, ELEMENTSOF(priv_tmpl), &pub,
                                  &priv);
        if (rv != CKR_OK)
                return kms_pkcs11_rv_to_errno(rv, "C_GenerateKeyPair");

        r = public_key_spki(w, pub, alg, ret_spki, ret_spki_len);
        if (r < 0) {
                /* Leave nothing behind. */
                (void)destroy_by_id(w, id);
                return r;
        }
        kms_pkcs11_cache_put(&w->p->cache, id, priv);
        memcpy(ret_id, id, sizeof(id));
        return 0;
}

static int private_handle(struct kms_pkcs11_worker *w, const uint8_t id[KMS_KEY_ID_BYTES], bool fresh,
                          CK_OBJECT_HANDLE *ret)
{
        int r;

        if (!fresh && kms_pkcs11_cache_get(&w->p->cache, id, ret))
                return 0;
        r = find_object(w, CKO_PRIVATE_KEY, id, ret);
        if (r < 0)
                return r;
        kms_pkcs11_cache_put(&w->p->cache, id, *ret);
        return 0;
}

/* A call that starts an operation on a private key (C_SignInit,
 * C_DecryptInit, C_DeriveKey), given its handle. */
typedef CK_RV (*key_call_fn)(struct kms_pkcs11_worker *w, CK_OBJECT_HANDLE key, void *userdata);

/* Run call on the private key of id, its handle taken from the cache or
 * found by CKA_ID. A stale cached handle is dropped and the key looked up
 * once more; an operation left active in the session (a module that did
 * not end one on error) is ended by replacing the session, once. Returns
 * a negative errno if the key is not in the token (-ENOENT) or cannot be
 * looked up; otherwise 0 and the call's own CK_RV in *ret_rv, for the
 * caller to translate. */
static int with_private_key(struct kms_pkcs11_worker *w, const uint8_t id[KMS_KEY_ID_BYTES], key_call_fn call,
                            void *userdata, CK_RV *ret_rv)
{
        bool fresh = false, reset = false;
        CK_OBJECT_HANDLE key;
        CK_RV rv;
        int r;

        for (;;) {
                r = private_handle(w, id, fresh, &key);
                if (r < 0)
                        return r;
                rv = call(w, key, userdata);
                if ((rv == CKR_KEY_HANDLE_INVALID || rv == CKR_OBJECT_HANDLE_INVALID) && !fresh) {
                        /* A stale cached handle: look the key up again. */
                        kms_pkcs11_cache_drop(&w->p->cache, id);
                        fresh = true;
                        continue;
                }
                if (rv == CKR_OPERATION_ACTIVE && !reset) {
                        log_debug("pkcs11: an operation was left active in the session; replacing the session");
                        r = kms_pkcs11_worker_reset(w);
                        if (r < 0)
                                return r;
                        reset = true;
                        continue;
                }
                *ret_rv = rv;
                return 0;
        }
}

/* CK_RV of derive and decrypt → errno: what the key may not do is -EPERM,
 * a ciphertext that does not decrypt -EBADMSG, parameters the token
 * rejects (the peer's point) -EINVAL; the rest as everywhere else. */
static int key_op_rv_to_errno(CK_RV rv, const char *what)
{
        int r = kms_pkcs11_rv_to_errno(rv, what); /* logs rv at debug level */

        switch (rv) {
        case CKR_KEY_FUNCTION_NOT_PERMITTED:
        case CKR_KEY_TYPE_INCONSISTENT: return -EPERM;
        case CKR_ENCRYPTED_DATA_INVALID:
        case CKR_ENCRYPTED_DATA_LEN_RANGE: return -EBADMSG;
        case CKR_ARGUMENTS_BAD:
        case CKR_DOMAIN_PARAMS_INVALID:
        case CKR_MECHANISM_PARAM_INVALID: return -EINVAL;
        default: return r;
        }
}

static CK_RV call_sign_init(struct kms_pkcs11_worker *w, CK_OBJECT_HANDLE key, void *mech)
{
        return w->p->f->C_SignInit(w->session, mech, key);
}

int kms_pkcs11_sign(struct kms_backend_worker *bw, const uint8_t id[KMS_KEY_ID_BYTES], enum kms_algorithm alg,
                    enum kms_hash h, enum kms_padding pad, const uint8_t *digest, size_t digest_len,
                    uint8_t sig[KMS_MAX_SIGNATURE_BYTES], size_t *ret_sig_len)
{
        struct kms_pkcs11_worker *w = W(bw);
        CK_FUNCTION_LIST *f = w->p->f;
        uint8_t input[19 + 64];
        size_t input_len;
        uint8_t raw[KMS_MAX_SIGNATURE_BYTES];
        CK_ULONG raw_len = sizeof(raw);
        CK_RSA_PKCS_PSS_PARAMS pss;
        CK_MECHANISM mech = { 0, NULL, 0 };
        CK_RV rv;
        int r;

        if (digest_len != kms_hash_length(h) || digest_len == 0)
                return -EINVAL;

        if (kms_algorithm_is_ec(alg)) {
                if (pad != KMS_PAD_NONE)
                        return -EINVAL;
                mech.mechanism = CKM_ECDSA;
                memcpy(input, digest, digest_len);
                input_len = digest_len;
        } else if (kms_algorithm_is_rsa(alg) && pad == KMS_PAD_PKCS1) {
                const uint8_t *prefix = h == KMS_HASH_SHA256 ? di_sha256 : h == KMS_HASH_SHA384 ? di_sha384 : di_sha512;

                mech.mechanism = CKM_RSA_PKCS;
                memcpy(input, prefix, sizeof(di_sha256));
                memcpy(input + sizeof(di_sha256), digest, digest_len);
                input_len = sizeof(di_sha256) + digest_len;
        } else if (kms_algorithm_is_rsa(alg) && pad == KMS_PAD_PSS) {
                pss.hashAlg = h == KMS_HASH_SHA256 ? CKM_SHA256 : h == KMS_HASH_SHA384 ? CKM_SHA384 : CKM_SHA512;
                pss.mgf = h == KMS_HASH_SHA256   ? CKG_MGF1_SHA256
                          : h == KMS_HASH_SHA384 ? CKG_MGF1_SHA384
                                                 : CKG_MGF1_SHA512;
                pss.sLen = digest_len;
                mech = (CK_MECHANISM){ CKM_RSA_PKCS_PSS, &pss, sizeof(pss) };
                memcpy(input, digest, digest_len);
                input_len = digest_len;
        } else
                return -EINVAL;

        r = with_private_key(w, id, call_sign_init, &mech, &rv);
        if (r < 0)
                return r;
        if (rv != CKR_OK)
                return kms_pkcs11_rv_to_errno(rv, "C_SignInit");
        rv = f->C_Sign(w->session, input, input_len, raw, &raw_len);
        if (rv != CKR_OK)
                return kms_pkcs11_rv_to_errno(rv, "C_Sign");

        if (kms_algorithm_is_ec(alg)) {
                _cleanup_(freep) uint8_t *der = NULL;
                size_t der_len = 0;

                if (raw_len != 2 * kms_algorithm_size(alg))
                        return KMS_E_BACKEND;
                r = kms_ecdsa_raw_to_der(raw, raw_len, &der, &der_len);
                if (r < 0)
                        return r == -EINVAL ? KMS_E_BACKEND : r;
                if (der_len > KMS_MAX_SIGNATURE_BYTES)
                        return KMS_E_BACKEND;
                memcpy(sig, der, der_len);
                *ret_sig_len = der_len;
                return 0;
        }
        if (raw_len != kms_algorithm_size(alg))
                return KMS_E_BACKEND;
        memcpy(sig, raw, raw_len);
        *ret_sig_len = raw_len;
        return 0;
}

/* ---------------------------------------------------------------- ECDH */

struct derive_call {
        CK_MECHANISM mech;
        CK_ATTRIBUTE *tmpl;
        CK_ULONG n_tmpl;
        CK_OBJECT_HANDLE secret;
};

static CK_RV call_derive(struct kms_pkcs11_worker *w, CK_OBJECT_HANDLE key, void *userdata)
{
        struct derive_call *c = userdata;

        return w->p->f->C_DeriveKey(w->session, &c->mech, key, c->tmpl, c->n_tmpl, &c->secret);
}

/* Did the token reject how the point was passed (or the point itself)? */
static bool point_rejected(CK_RV rv)
{
        return rv == CKR_ARGUMENTS_BAD || rv == CKR_DOMAIN_PARAMS_INVALID || rv == CKR_MECHANISM_PARAM_INVALID;
}

/* Wrap point (shorter than 256 bytes) in a DER OCTET STRING; der must
 * hold point_len + 3 bytes. Returns the length written. */
static size_t der_octet_string(const uint8_t *point, size_t point_len, uint8_t *der)
{
        size_t h = 0;

        der[h++] = 0x04;
        if (point_len >= 128)
                der[h++] = 0x81;
        der[h++] = (uint8_t)point_len;
        memcpy(der + h, point, point_len);
        return h + point_len;
}

/* Read CKA_VALUE of the derived secret into ret (len bytes exactly) and
 * destroy the object, whatever happened. ret is written only on success;
 * the temporary copy is wiped. */
static int take_secret(struct kms_pkcs11_worker *w, CK_OBJECT_HANDLE secret, size_t len, uint8_t *ret)
{
        CK_FUNCTION_LIST *f = w->p->f;
        uint8_t value[KMS_MAX_ECDH_SECRET_BYTES];
        CK_ATTRIBUTE a = { CKA_VALUE, value, sizeof(value) };
        CK_RV rv;
        int r = 0;

        rv = f->C_GetAttributeValue(w->session, secret, &a, 1);
        if (rv != CKR_OK)
                r = kms_pkcs11_rv_to_errno(rv, "C_GetAttributeValue(CKA_VALUE)");
        else if (a.ulValueLen != len) {
                log_debug("pkcs11: derived secret of %lu bytes, expected %zu", (unsigned long)a.ulValueLen, len);
                r = KMS_E_BACKEND;
        }

        rv = f->C_DestroyObject(w->session, secret);
        if (rv != CKR_OK) {
                (void)kms_pkcs11_rv_to_errno(rv, "C_DestroyObject(derived secret)");
                /* Closing the session destroys its session objects. */
                if (kms_pkcs11_worker_reset(w) < 0)
                        r = KMS_E_BACKEND;
        }
        if (r == 0)
                memcpy(ret, value, len);
        OPENSSL_cleanse(value, sizeof(value));
        return r;
}

int kms_pkcs11_derive(struct kms_backend_worker *bw, const uint8_t id[KMS_KEY_ID_BYTES], enum kms_algorithm alg,
                      const uint8_t *peer_point, size_t peer_point_len, uint8_t *ret_secret, size_t *ret_secret_len)
{
        struct kms_pkcs11_worker *w = W(bw);
        size_t coord = kms_algorithm_size(alg);
        uint8_t der[2 * KMS_MAX_ECDH_SECRET_BYTES + 1 + 3];
        size_t der_len;
        CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
        CK_KEY_TYPE type = CKK_GENERIC_SECRET;
        CK_ULONG value_len = coord;
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        /* A session object the worker reads once and destroys at once:
         * extractable and not sensitive, or CKA_VALUE could not be read. */
        CK_ATTRIBUTE tmpl[] = {
                { CKA_CLASS, &cls, sizeof(cls) },
                { CKA_KEY_TYPE, &type, sizeof(type) },
                { CKA_TOKEN, &no, sizeof(no) },
                { CKA_PRIVATE, &yes, sizeof(yes) },
                { CKA_SENSITIVE, &no, sizeof(no) },
                { CKA_EXTRACTABLE, &yes, sizeof(yes) },
                { CKA_VALUE_LEN, &value_len, sizeof(value_len) },
        };
        CK_ECDH1_DERIVE_PARAMS params = { .kdf = CKD_NULL };
        struct derive_call c = {
                .mech = { CKM_ECDH1_DERIVE, &params, sizeof(params) },
                .tmpl = tmpl,
                .n_tmpl = ELEMENTSOF(tmpl),
                .secret = CK_INVALID_HANDLE,
        };
        int form = atomic_load(&w->p->point_form);
        CK_RV rv;
        int r;

        if (!kms_algorithm_is_ec(alg) || coord == 0 || coord > KMS_MAX_ECDH_SECRET_BYTES || !peer_point ||
            !ret_secret || !ret_secret_len)
                return -EINVAL;
        if (peer_point_len != 2 * coord + 1 || peer_point[0] != 0x04)
                return -EINVAL;
        der_len = der_octet_string(peer_point, peer_point_len, der);

        for (;;) {
                bool raw = form != KMS_PKCS11_POINT_DER;

                params.pPublicData = raw ? (CK_BYTE_PTR)peer_point : der;
                params.ulPublicDataLen = raw ? peer_point_len : der_len;
                r = with_private_key(w, id, call_derive, &c, &rv);
                if (r < 0)
                        return r;
                if (rv != CKR_OK && point_rejected(rv) && form == KMS_PKCS11_POINT_UNKNOWN) {
                        /* PKCS#11 says raw; some modules want DER. The
                         * point may also just be bad: then DER fails too
                         * and nothing is learnt. */
                        (void)kms_pkcs11_rv_to_errno(rv, "C_DeriveKey(raw point)");
                        form = KMS_PKCS11_POINT_DER;
                        continue;
                }
                break;
        }
        if (rv != CKR_OK)
                return key_op_rv_to_errno(rv, "C_DeriveKey");
        if (atomic_load(&w->p->point_form) == KMS_PKCS11_POINT_UNKNOWN) {
                form = form == KMS_PKCS11_POINT_DER ? KMS_PKCS11_POINT_DER : KMS_PKCS11_POINT_RAW;
                log_debug("pkcs11: the token takes the ECDH peer point %s",
                          form == KMS_PKCS11_POINT_DER ? "DER-wrapped" : "raw");
                atomic_store(&w->p->point_form, form);
        }

        r = take_secret(w, c.secret, coord, ret_secret);
        if (r < 0)
                return r;
        *ret_secret_len = coord;
        return 0;
}

/* ---------------------------------------------------------------- RSA-OAEP */

struct decrypt_call {
        CK_MECHANISM *mech;
        const uint8_t *in; /* the ciphertext, exactly the modulus size */
        size_t k;
};

/* C_DecryptInit, after checking that the ciphertext is below the modulus
 * (public values both): PKCS#11 wants CKR_ENCRYPTED_DATA_LEN_RANGE then,
 * but SoftHSMv2 answers CKR_GENERAL_ERROR from C_Decrypt. */
static CK_RV call_decrypt_init(struct kms_pkcs11_worker *w, CK_OBJECT_HANDLE key, void *userdata)
{
        struct decrypt_call *c = userdata;
        uint8_t n[KMS_MAX_RSA_BYTES];
        CK_ATTRIBUTE a = { CKA_MODULUS, n, sizeof(n) };
        CK_RV rv;

        rv = w->p->f->C_GetAttributeValue(w->session, key, &a, 1);
        if (rv != CKR_OK)
                return rv;
        if (a.ulValueLen != c->k || n[0] == 0)
                return CKR_KEY_SIZE_RANGE; /* not the key the metadata says */
        if (memcmp(c->in, n, c->k) >= 0)
                return CKR_ENCRYPTED_DATA_LEN_RANGE;
        return w->p->f->C_DecryptInit(w->session, c->mech, key);
}

/* C_DecryptInit on the key of id with OAEP-SHA-256 in the token, or raw
 * RSA for decoding on the host; which one the token can do is learnt on
 * the first call. Sets *ret_on_host. */
static int decrypt_init(struct kms_pkcs11_worker *w, const uint8_t id[KMS_KEY_ID_BYTES], const uint8_t *in, size_t k,
                        bool *ret_on_host)
{
        CK_RSA_PKCS_OAEP_PARAMS oaep = { CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, NULL, 0 };
        CK_MECHANISM mech_oaep = { CKM_RSA_PKCS_OAEP, &oaep, sizeof(oaep) };
        CK_MECHANISM mech_raw = { CKM_RSA_X_509, NULL, 0 };
        struct decrypt_call c = { .mech = &mech_oaep, .in = in, .k = k };
        int mode = atomic_load(&w->p->oaep_mode);
        CK_RV rv;
        int r;

        if (mode != KMS_PKCS11_OAEP_HOST) {
                r = with_private_key(w, id, call_decrypt_init, &c, &rv);
                if (r < 0)
                        return r;
                if (rv == CKR_OK) {
                        if (mode == KMS_PKCS11_OAEP_UNKNOWN)
                                atomic_store(&w->p->oaep_mode, KMS_PKCS11_OAEP_TOKEN);
                        *ret_on_host = false;
                        return 0;
                }
                if (mode == KMS_PKCS11_OAEP_TOKEN ||
                    (rv != CKR_ARGUMENTS_BAD && rv != CKR_MECHANISM_PARAM_INVALID && rv != CKR_MECHANISM_INVALID))
                        return key_op_rv_to_errno(rv, "C_DecryptInit(CKM_RSA_PKCS_OAEP)");
                (void)kms_pkcs11_rv_to_errno(rv, "C_DecryptInit(CKM_RSA_PKCS_OAEP, SHA-256)");
        }
        c.mech = &mech_raw;
        r = with_private_key(w, id, call_decrypt_init, &c, &rv);
        if (r < 0)
                return r;
        if (rv != CKR_OK)
                return key_op_rv_to_errno(rv, "C_DecryptInit(CKM_RSA_X_509)");
        if (mode == KMS_PKCS11_OAEP_UNKNOWN) {
                log_debug("pkcs11: the token has no RSA-OAEP with SHA-256; raw RSA in the token, OAEP decoding here");
                atomic_store(&w->p->oaep_mode, KMS_PKCS11_OAEP_HOST);
        }
        *ret_on_host = true;
        return 0;
}

int kms_pkcs11_decrypt(struct kms_backend_worker *bw, const uint8_t id[KMS_KEY_ID_BYTES], enum kms_algorithm alg,
                       const uint8_t *in, size_t in_len, uint8_t *out, size_t *out_len)
{
        struct kms_pkcs11_worker *w = W(bw);
        size_t k = kms_algorithm_size(alg), len = 0;
        uint8_t buf[KMS_MAX_RSA_BYTES];
        CK_ULONG buf_len = sizeof(buf);
        bool on_host = false;
        CK_RV rv;
        int r;

        if (!kms_algorithm_is_rsa(alg) || k == 0 || k > sizeof(buf) || !in || !out || !out_len)
                return -EINVAL;
        if (in_len != k)
                return -EINVAL;

        r = decrypt_init(w, id, in, k, &on_host);
        if (r < 0)
                return r;
        /* buf holds any modulus, so the single-part call always has room;
         * it ends the operation on every other outcome. */
        rv = w->p->f->C_Decrypt(w->session, (CK_BYTE_PTR)in, in_len, buf, &buf_len);
        if (rv == CKR_BUFFER_TOO_SMALL) {
                /* Still active (PKCS#11 5.2): end it with the session. */
                (void)kms_pkcs11_rv_to_errno(rv, "C_Decrypt");
                (void)kms_pkcs11_worker_reset(w);
                r = KMS_E_BACKEND;
                goto out;
        }
        if (rv != CKR_OK) {
                r = key_op_rv_to_errno(rv, "C_Decrypt");
                goto out;
        }
        if (buf_len > k) {
                r = KMS_E_BACKEND;
                goto out;
        }
        if (on_host)
                r = kms_pkcs11_oaep_decode(buf, buf_len, k, out, &len);
        else {
                memcpy(out, buf, buf_len);
                len = buf_len;
        }
        if (r == 0)
                *out_len = len;
out:
        OPENSSL_cleanse(buf, sizeof(buf));
        return r;
}

int kms_pkcs11_exists(struct kms_backend_worker *bw, const uint8_t id[KMS_KEY_ID_BYTES])
{
        CK_OBJECT_HANDLE h;
        int r = find_object(W(bw), CKO_PRIVATE_KEY, id, &h);

        if (r == -ENOENT)
                return 0;
        return r < 0 ? r : 1;
}

int kms_pkcs11_enumerate(struct kms_backend_worker *bw, const char *prefix,
                         void (*cb)(const uint8_t id[KMS_KEY_ID_BYTES], const char *label, void *userdata),
                         void *userdata)
{
        struct kms_pkcs11_worker *w = W(bw);
        CK_FUNCTION_LIST *f = w->p->f;
        CK_OBJECT_HANDLE h[64];
        CK_ULONG n = 0;
        CK_RV rv;
        size_t plen = strlen(prefix);
        int r = 0;

        /* No template: labels cannot be matched by prefix in PKCS#11. */
        rv = f->C_FindObjectsInit(w->session, NULL, 0);
        if (rv != CKR_OK)
                return kms_pkcs11_rv_to_errno(rv, "C_FindObjectsInit");
        for (;;) {
                rv = f->C_FindObjects(w->session, h, ELEMENTSOF(h), &n);
                if (rv != CKR_OK) {
                        r = kms_pkcs11_rv_to_errno(rv, "C_FindObjects");
                        break;
                }
                if (n == 0)
                        break;
                for (CK_ULONG i = 0; i < n; i++) {
                        char label[KMS_MAX_KEY_NAME + 64];
                        uint8_t id[KMS_KEY_ID_BYTES];
                        CK_ATTRIBUTE a[] = {
                                { CKA_LABEL, label, sizeof(label) - 1 },
                                { CKA_ID, id, sizeof(id) },
                        };

                        if (f->C_GetAttributeValue(w->session, h[i], a, ELEMENTSOF(a)) != CKR_OK ||
                            a[0].ulValueLen == CK_UNAVAILABLE_INFORMATION || a[1].ulValueLen != sizeof(id))
                                continue; /* not one of ours: other label or id size */
                        label[a[0].ulValueLen] = '\0';
                        if (a[0].ulValueLen >= plen && memcmp(label, prefix, plen) == 0)
                                cb(id, label, userdata);
                }
        }
        f->C_FindObjectsFinal(w->session);
        return r;
}
