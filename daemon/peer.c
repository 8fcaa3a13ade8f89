/* See peer.h. */
#include "peer.h"

#include <errno.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

static const char *curve_of(enum kms_algorithm alg)
{
        switch (alg) {
        case KMS_ALG_EC_P256: return "prime256v1";
        case KMS_ALG_EC_P384: return "secp384r1";
        default: return NULL;
        }
}

int kms_peer_key_check(const uint8_t *spki, size_t len, enum kms_algorithm alg, uint8_t point[KMS_MAX_EC_POINT_BYTES],
                       size_t *ret_point_len, uint8_t **ret_spki, size_t *ret_spki_len, const char **ret_why)
{
        const char *want = curve_of(alg), *why = NULL;
        const unsigned char *p = spki;
        EVP_PKEY *pk = NULL;
        EVP_PKEY_CTX *ctx = NULL;
        char group[64] = "";
        size_t plen = 0;
        int r = -EINVAL;

        if (!want)
                why = "the key is not an EC key";
        else if (len == 0 || len > 4096 || !(pk = d2i_PUBKEY(NULL, &p, (long)len)) || p != spki + len)
                why = "the peer key is not one DER SubjectPublicKeyInfo (give a PEM or DER public key)";
        else if (EVP_PKEY_get_base_id(pk) != EVP_PKEY_EC)
                why = "the peer key is not an EC key";
        else if (!EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), NULL) ||
                 strcmp(group, want) != 0)
                why = alg == KMS_ALG_EC_P256 ? "the peer key is not on P-256, the key's curve"
                                             : "the peer key is not on P-384, the key's curve";
        else if (!(ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL)) || EVP_PKEY_public_check(ctx) != 1)
                why = "the peer key's point is not a valid point of its curve";
        else if (!EVP_PKEY_set_utf8_string_param(pk, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT,
                                                 OSSL_PKEY_EC_POINT_CONVERSION_FORMAT_UNCOMPRESSED) ||
                 !EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, point, KMS_MAX_EC_POINT_BYTES,
                                                  &plen) ||
                 plen < 3 || point[0] != 0x04)
                why = "the peer key's point cannot be encoded";
        else {
                r = 0;
                if (ret_spki) {
                        unsigned char *der = NULL;
                        int n = i2d_PUBKEY(pk, &der);

                        if (n <= 0) {
                                r = -ENOMEM;
                                why = "out of memory";
                        } else {
                                *ret_spki = der;
                                *ret_spki_len = (size_t)n;
                        }
                }
                if (r == 0)
                        *ret_point_len = plen;
        }
        EVP_PKEY_CTX_free(ctx);
        EVP_PKEY_free(pk);
        if (r < 0 && ret_why)
                *ret_why = why;
        return r;
}
