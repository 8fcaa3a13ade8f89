/* EME-OAEP decoding on the host, for tokens whose CKM_RSA_PKCS_OAEP
 * refuses SHA-256 (SoftHSMv2 2.6 answers CKR_ARGUMENTS_BAD to anything but
 * SHA-1): the private-key operation stays in the token (CKM_RSA_X_509) and
 * only the padding is checked here, by OpenSSL's constant-time decoder.
 * Every failure is the same -EBADMSG, so callers cannot be turned into a
 * padding oracle (Manger's attack) by distinct errors. */

/* RSA_padding_check_PKCS1_OAEP_mgf1() is deprecated in OpenSSL 3, and
 * OpenSSL 3 has no other public interface that decodes OAEP without the
 * private key. Its hardened implementation is better than a new one. */
#define OPENSSL_SUPPRESS_DEPRECATED

#include <errno.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "pkcs11-internal.h"

int kms_pkcs11_oaep_decode(const uint8_t *em, size_t em_len, size_t k, uint8_t *out, size_t *ret_len)
{
        uint8_t msg[KMS_MAX_RSA_BYTES];
        int n;

        if (!em || !out || !ret_len || k == 0 || k > sizeof(msg) || em_len == 0 || em_len > k)
                return -EINVAL;
        /* OpenSSL left-pads em (flen) to the modulus size (num) itself,
         * and decides good or bad without branching on em's content. */
        n = RSA_padding_check_PKCS1_OAEP_mgf1(msg, (int)k, em, (int)em_len, (int)k, NULL, 0, EVP_sha256(),
                                              EVP_sha256());
        ERR_clear_error();
        if (n < 0 || (size_t)n > k) {
                OPENSSL_cleanse(msg, sizeof(msg));
                return -EBADMSG;
        }
        memcpy(out, msg, (size_t)n);
        OPENSSL_cleanse(msg, sizeof(msg));
        *ret_len = (size_t)n;
        return 0;
}
