/* See peer.h. */
#include "peer.h"

#include <errno.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include "kms-session-crypto.h"

/* The sentences below name the cap; keep them in step with it. */
_Static_assert(KMS_SESSION_MAX_SPKI_BYTES == 2048u, "the peer key sentences say 2048 bytes");

struct curve {
        int nid;
        const char *name;   /* for sentences */
        size_t field_bytes; /* one coordinate */
};

static bool curve_of(enum kms_algorithm alg, struct curve *ret)
{
        switch (alg) {
        case KMS_ALG_EC_P256: *ret = (struct curve){NID_X9_62_prime256v1, "P-256", 32}; return true;
        case KMS_ALG_EC_P384: *ret = (struct curve){NID_secp384r1, "P-384", 48}; return true;
        default: return false;
        }
}

/* The point's encoding (X9.62): its first byte and length fit the curve.
 * The point at infinity (one zero byte) is told apart by the caller. */
static bool point_form_ok(const unsigned char *pt, int len, size_t n)
{
        if (!pt || len < 1)
                return false;
        switch (pt[0]) {
        case 0x02:
        case 0x03: return (size_t)len == 1 + n; /* compressed */
        case 0x04:                              /* uncompressed */
        case 0x06:                              /* hybrid, as OpenSSL reads them */
        case 0x07: return (size_t)len == 1 + 2 * n;
        default: return false;
        }
}

/* The checks run in the order of docs/dbus-api.md ("Peer keys"); the
 * first that fails names itself. The SubjectPublicKeyInfo is parsed
 * structurally first (d2i_X509_PUBKEY keeps a key it cannot decode as
 * "no key"), so that its algorithm and parameters can be judged before
 * OpenSSL is asked to make a key of it: explicit curve parameters are
 * refused there, whatever curve they describe, and a point that does not
 * decode is reported as off the curve, not as bad DER. */
int kms_peer_key_check(const uint8_t *spki, size_t len, enum kms_algorithm alg, uint8_t point[KMS_MAX_EC_POINT_BYTES],
                       size_t *ret_point_len, uint8_t **ret_spki, size_t *ret_spki_len, const char **ret_why)
{
        const unsigned char *p = spki, *pt = NULL;
        const ASN1_OBJECT *alg_oid = NULL;
        const X509_ALGOR *algor = NULL;
        const void *pval = NULL;
        X509_PUBKEY *xpk = NULL;
        EVP_PKEY *pk = NULL; /* owned by xpk */
        EVP_PKEY_CTX *ctx = NULL;
        struct curve c;
        const char *why = NULL;
        size_t plen = 0;
        int ptlen = 0, ptype = V_ASN1_UNDEF, r = -EINVAL;
        bool p256;

        if (!curve_of(alg, &c)) {
                why = "the key is not an EC key";
                goto out;
        }
        p256 = c.nid == NID_X9_62_prime256v1;
        if (len == 0 || len > KMS_SESSION_MAX_SPKI_BYTES) {
                why = len == 0 ? "the peer key is empty (give a PEM or DER public key)"
                               : "the peer key is larger than 2048 bytes, so not a P-256 or P-384 public key";
                goto out;
        }
        xpk = d2i_X509_PUBKEY(NULL, &p, (long)len);
        if (!xpk || p != spki + len) {
                why = "the peer key is not one DER SubjectPublicKeyInfo (give a PEM or DER public key)";
                goto out;
        }
        if (!X509_PUBKEY_get0_param((ASN1_OBJECT **)&alg_oid, &pt, &ptlen, (X509_ALGOR **)&algor, xpk) ||
            OBJ_obj2nid(alg_oid) != NID_X9_62_id_ecPublicKey) {
                why = "the peer key is not an EC key";
                goto out;
        }
        X509_ALGOR_get0(NULL, &ptype, &pval, algor);
        if (ptype == V_ASN1_SEQUENCE) {
                why = p256 ? "the peer key has explicit curve parameters; only the named curve P-256 (by its OID) is "
                             "accepted"
                           : "the peer key has explicit curve parameters; only the named curve P-384 (by its OID) is "
                             "accepted";
                goto out;
        }
        if (ptype != V_ASN1_OBJECT) {
                why = "the peer key names no curve (its parameters are not a named curve's OID)";
                goto out;
        }
        if (OBJ_obj2nid(pval) != c.nid) {
                why = p256 ? "the peer key is not on P-256, the key's curve"
                           : "the peer key is not on P-384, the key's curve";
                goto out;
        }
        if (ptlen == 1 && pt[0] == 0x00) {
                why = "the peer key is the point at infinity, not a public key";
                goto out;
        }
        if (!point_form_ok(pt, ptlen, c.field_bytes)) {
                why = p256 ? "the peer key's point is not an encoded point of P-256 (wrong length or first byte)"
                           : "the peer key's point is not an encoded point of P-384 (wrong length or first byte)";
                goto out;
        }
        /* The encoding is right, so a point that does not decode is one
         * whose coordinates do not satisfy the curve's equation. */
        pk = X509_PUBKEY_get0(xpk);
        if (!pk || EVP_PKEY_get_base_id(pk) != EVP_PKEY_EC) {
                why = p256 ? "the peer key's point is not on the curve P-256"
                           : "the peer key's point is not on the curve P-384";
                goto out;
        }
        if (!(ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL)) || EVP_PKEY_public_check(ctx) != 1) {
                why = "the peer key's point is not a valid point of its curve";
                goto out;
        }
        if (!EVP_PKEY_set_utf8_string_param(pk, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT,
                                            OSSL_PKEY_EC_POINT_CONVERSION_FORMAT_UNCOMPRESSED) ||
            !EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, point, KMS_MAX_EC_POINT_BYTES,
                                             &plen) ||
            plen != 1 + 2 * c.field_bytes || point[0] != 0x04) {
                why = "the peer key's point cannot be encoded";
                goto out;
        }
        if (ret_spki) {
                unsigned char *der = NULL;
                int n = i2d_PUBKEY(pk, &der);

                if (n <= 0) {
                        r = -ENOMEM;
                        why = "out of memory";
                        goto out;
                }
                *ret_spki = der;
                *ret_spki_len = (size_t)n;
        }
        *ret_point_len = plen;
        r = 0;
out:
        EVP_PKEY_CTX_free(ctx);
        X509_PUBKEY_free(xpk);
        /* What OpenSSL queued about a refused key is not kmsd's error. */
        ERR_clear_error();
        if (r < 0 && ret_why)
                *ret_why = why;
        return r;
}
