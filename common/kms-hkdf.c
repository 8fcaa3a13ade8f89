/* HKDF-SHA256 on EVP_KDF; see kms-hkdf.h. */
#include "kms-hkdf.h"

#include <errno.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

int kms_hkdf_sha256(const uint8_t *ikm, size_t ikm_len, const uint8_t *salt, size_t salt_len, const uint8_t *info,
                    size_t info_len, uint8_t *out, size_t out_len)
{
        OSSL_PARAM params[5], *p = params;
        EVP_KDF *kdf = NULL;
        EVP_KDF_CTX *ctx = NULL;
        int r = -ENOMEM;

        if (!out || out_len == 0 || out_len > KMS_HKDF_SHA256_MAX_OUTPUT)
                return -EINVAL;
        if (!ikm || ikm_len == 0 || (!salt && salt_len > 0) || (!info && info_len > 0) ||
            info_len > KMS_HKDF_MAX_INFO) {
                OPENSSL_cleanse(out, out_len);
                return -EINVAL;
        }

        /* The params point at the caller's buffers; OpenSSL copies them
         * into its context (and wipes them when the context is freed). */
        *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
        *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, ikm_len);
        if (salt_len > 0)
                *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, salt_len);
        if (info_len > 0)
                *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, info_len);
        *p = OSSL_PARAM_construct_end();

        kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
        if (!kdf)
                goto out;
        ctx = EVP_KDF_CTX_new(kdf);
        if (!ctx)
                goto out;
        if (EVP_KDF_derive(ctx, out, out_len, params) != 1)
                goto out;
        r = 0;
out:
        if (r < 0)
                OPENSSL_cleanse(out, out_len);
        EVP_KDF_CTX_free(ctx);
        EVP_KDF_free(kdf);
        return r;
}
