/* Key names, algorithms, usages, digests and signature encodings; see
 * kms-key.h. Pure functions over OpenSSL, no logging. */
#include "kms-key.h"

#include <errno.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "kms-util.h"

int kms_key_name_check(const char *name, const char **ret_why)
{
        const char *why = NULL;
        size_t n, comp = 0;

        if (!name || !*name) {
                why = "the name is empty";
                goto bad;
        }
        n = strlen(name);
        if (n > KMS_MAX_KEY_NAME) {
                why = "the name is longer than 128 characters";
                goto bad;
        }
        if (name[0] == '/') {
                why = "the name starts with '/'";
                goto bad;
        }
        for (size_t i = 0; i <= n; i++) {
                char c = name[i];

                if (c == '/' || c == '\0') {
                        /* A component just ended at i, length comp. */
                        if (comp == 0) {
                                why = c == '\0' ? "the name ends with '/'" : "the name contains '//'";
                                goto bad;
                        }
                        if ((comp == 1 && name[i - 1] == '.') ||
                            (comp == 2 && name[i - 1] == '.' && name[i - 2] == '.')) {
                                why = "the name has a '.' or '..' component";
                                goto bad;
                        }
                        comp = 0;
                        continue;
                }
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                      c == '_' || c == '-')) {
                        why = "the name contains a character outside [A-Za-z0-9._/-]";
                        goto bad;
                }
                comp++;
        }
        if (strstr(name, "..")) {
                why = "the name contains '..'";
                goto bad;
        }
        return 0;
bad:
        if (ret_why)
                *ret_why = why;
        return -EINVAL;
}

static const char *const algorithm_names[_KMS_ALG_MAX] = {
        [KMS_ALG_EC_P256] = "ec-p256",   [KMS_ALG_EC_P384] = "ec-p384",   [KMS_ALG_RSA_2048] = "rsa-2048",
        [KMS_ALG_RSA_3072] = "rsa-3072", [KMS_ALG_RSA_4096] = "rsa-4096",
};

enum kms_algorithm kms_algorithm_from_string(const char *s)
{
        for (int i = 0; s && i < _KMS_ALG_MAX; i++)
                if (strcmp(s, algorithm_names[i]) == 0)
                        return (enum kms_algorithm)i;
        return KMS_ALG_INVALID;
}

const char *kms_algorithm_to_string(enum kms_algorithm a)
{
        return a >= 0 && a < _KMS_ALG_MAX ? algorithm_names[a] : NULL;
}

const char *kms_algorithm_list(void)
{
        return "ec-p256, ec-p384, rsa-2048, rsa-3072, rsa-4096";
}

bool kms_algorithm_is_ec(enum kms_algorithm a)
{
        return a == KMS_ALG_EC_P256 || a == KMS_ALG_EC_P384;
}

bool kms_algorithm_is_rsa(enum kms_algorithm a)
{
        return a == KMS_ALG_RSA_2048 || a == KMS_ALG_RSA_3072 || a == KMS_ALG_RSA_4096;
}

unsigned kms_algorithm_rsa_bits(enum kms_algorithm a)
{
        switch (a) {
        case KMS_ALG_RSA_2048: return 2048;
        case KMS_ALG_RSA_3072: return 3072;
        case KMS_ALG_RSA_4096: return 4096;
        default: return 0;
        }
}

size_t kms_algorithm_size(enum kms_algorithm a)
{
        switch (a) {
        case KMS_ALG_EC_P256: return 32;
        case KMS_ALG_EC_P384: return 48;
        default: return kms_algorithm_rsa_bits(a) / 8;
        }
}

enum kms_hash kms_algorithm_default_hash(enum kms_algorithm a)
{
        return a == KMS_ALG_EC_P384 ? KMS_HASH_SHA384 : KMS_HASH_SHA256;
}

unsigned kms_algorithm_usages(enum kms_algorithm a)
{
        if (kms_algorithm_is_ec(a))
                return KMS_USAGE_SIGN | KMS_USAGE_DERIVE;
        if (kms_algorithm_is_rsa(a))
                return KMS_USAGE_SIGN | KMS_USAGE_DECRYPT;
        return 0;
}

static const struct {
        const char *name;
        size_t len;
} hashes[_KMS_HASH_MAX] = {
        [KMS_HASH_SHA256] = { "sha256", 32 },
        [KMS_HASH_SHA384] = { "sha384", 48 },
        [KMS_HASH_SHA512] = { "sha512", 64 },
};

enum kms_hash kms_hash_from_string(const char *s)
{
        for (int i = 0; s && i < _KMS_HASH_MAX; i++)
                if (strcmp(s, hashes[i].name) == 0)
                        return (enum kms_hash)i;
        return KMS_HASH_INVALID;
}

const char *kms_hash_to_string(enum kms_hash h)
{
        return h >= 0 && h < _KMS_HASH_MAX ? hashes[h].name : NULL;
}

size_t kms_hash_length(enum kms_hash h)
{
        return h >= 0 && h < _KMS_HASH_MAX ? hashes[h].len : 0;
}

static const EVP_MD *hash_md(enum kms_hash h)
{
        switch (h) {
        case KMS_HASH_SHA256: return EVP_sha256();
        case KMS_HASH_SHA384: return EVP_sha384();
        case KMS_HASH_SHA512: return EVP_sha512();
        default: return NULL;
        }
}

int kms_hash_compute(enum kms_hash h, const void *data, size_t len, uint8_t *out)
{
        const EVP_MD *md = hash_md(h);
        unsigned int outlen = 0;

        if (!md)
                return -EINVAL;
        if (EVP_Digest(data, len, out, &outlen, md, NULL) != 1)
                return -ENOMEM;
        return 0;
}

static const char *const padding_names[_KMS_PAD_MAX] = {
        [KMS_PAD_NONE] = "none",
        [KMS_PAD_PKCS1] = "pkcs1",
        [KMS_PAD_PSS] = "pss",
};

enum kms_padding kms_padding_from_string(const char *s)
{
        for (int i = 0; s && i < _KMS_PAD_MAX; i++)
                if (strcmp(s, padding_names[i]) == 0)
                        return (enum kms_padding)i;
        return KMS_PAD_INVALID;
}

const char *kms_padding_to_string(enum kms_padding p)
{
        return p >= 0 && p < _KMS_PAD_MAX ? padding_names[p] : NULL;
}

enum kms_usage kms_usage_from_string(const char *s)
{
        if (!s)
                return 0;
        if (strcmp(s, "sign") == 0)
                return KMS_USAGE_SIGN;
        if (strcmp(s, "derive") == 0)
                return KMS_USAGE_DERIVE;
        if (strcmp(s, "decrypt") == 0)
                return KMS_USAGE_DECRYPT;
        return 0;
}

const char *kms_usage_to_string(enum kms_usage u)
{
        switch (u) {
        case KMS_USAGE_SIGN: return "sign";
        case KMS_USAGE_DERIVE: return "derive";
        case KMS_USAGE_DECRYPT: return "decrypt";
        default: return NULL;
        }
}

int kms_usages_from_string(const char *s, unsigned *ret)
{
        unsigned mask = 0;
        char word[16];

        if (!s || !*s)
                return -EINVAL;
        for (const char *p = s;;) {
                size_t n = strcspn(p, ",");
                enum kms_usage u;

                if (n == 0 || n >= sizeof(word))
                        return -EINVAL;
                memcpy(word, p, n);
                word[n] = '\0';
                u = kms_usage_from_string(word);
                if (u == 0)
                        return -EINVAL;
                mask |= u;
                if (p[n] == '\0')
                        break;
                p += n + 1;
        }
        *ret = mask;
        return 0;
}

int kms_ecdsa_raw_to_der(const uint8_t *raw, size_t raw_len, uint8_t **ret, size_t *ret_len)
{
        ECDSA_SIG *sig = NULL;
        BIGNUM *r = NULL, *s = NULL;
        unsigned char *der = NULL;
        int len, rc = -EINVAL;

        if (!raw || raw_len == 0 || raw_len % 2 != 0 || raw_len > 2 * 66)
                return -EINVAL;
        r = BN_bin2bn(raw, (int)(raw_len / 2), NULL);
        s = BN_bin2bn(raw + raw_len / 2, (int)(raw_len / 2), NULL);
        sig = ECDSA_SIG_new();
        if (!r || !s || !sig) {
                rc = -ENOMEM;
                goto out;
        }
        if (BN_is_zero(r) || BN_is_zero(s))
                goto out;
        if (ECDSA_SIG_set0(sig, r, s) != 1) {
                rc = -ENOMEM;
                goto out;
        }
        r = s = NULL; /* owned by sig now */
        len = i2d_ECDSA_SIG(sig, &der);
        if (len <= 0) {
                rc = -ENOMEM;
                goto out;
        }
        /* Hand out malloc() memory, as every other kms_* allocator does. */
        *ret = malloc((size_t)len);
        if (!*ret) {
                rc = -ENOMEM;
                goto out;
        }
        memcpy(*ret, der, (size_t)len);
        *ret_len = (size_t)len;
        rc = 0;
out:
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(sig);
        OPENSSL_free(der);
        return rc;
}

int kms_ecdsa_der_to_raw(const uint8_t *der, size_t der_len, size_t coord_len, uint8_t **ret, size_t *ret_len)
{
        const unsigned char *p = der;
        ECDSA_SIG *sig = NULL;
        unsigned char *check = NULL;
        uint8_t *raw = NULL;
        int rc = -EINVAL, n;

        if (!der || der_len == 0 || der_len > 1024 || coord_len == 0 || coord_len > 66)
                return -EINVAL;
        sig = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
        if (!sig || p != der + der_len)
                goto out; /* malformed or trailing bytes */
        if (BN_is_zero(ECDSA_SIG_get0_r(sig)) || BN_is_zero(ECDSA_SIG_get0_s(sig)) ||
            BN_is_negative(ECDSA_SIG_get0_r(sig)) || BN_is_negative(ECDSA_SIG_get0_s(sig)))
                goto out; /* never a valid signature */
        /* Refuse non-canonical encodings: re-encode and compare. */
        n = i2d_ECDSA_SIG(sig, &check);
        if (n <= 0 || (size_t)n != der_len || memcmp(check, der, der_len) != 0)
                goto out;
        raw = malloc(2 * coord_len);
        if (!raw) {
                rc = -ENOMEM;
                goto out;
        }
        if (BN_bn2binpad(ECDSA_SIG_get0_r(sig), raw, (int)coord_len) < 0 ||
            BN_bn2binpad(ECDSA_SIG_get0_s(sig), raw + coord_len, (int)coord_len) < 0)
                goto out;
        *ret = raw;
        *ret_len = 2 * coord_len;
        raw = NULL;
        rc = 0;
out:
        free(raw);
        OPENSSL_free(check);
        ECDSA_SIG_free(sig);
        return rc;
}

char *kms_spki_fingerprint(const uint8_t *spki, size_t len)
{
        uint8_t md[32];

        if (kms_hash_compute(KMS_HASH_SHA256, spki, len, md) < 0)
                return NULL;
        return kms_hex_encode(md, sizeof(md));
}

int kms_signature_verify(const uint8_t *spki, size_t spki_len, enum kms_algorithm alg, enum kms_hash h,
                         enum kms_padding pad, const uint8_t *data, size_t data_len, const uint8_t *sig,
                         size_t sig_len)
{
        const unsigned char *p = spki;
        EVP_PKEY *pkey = NULL;
        EVP_MD_CTX *ctx = NULL;
        EVP_PKEY_CTX *pctx = NULL;
        const EVP_MD *md = hash_md(h);
        int rc = -EINVAL, r;

        if (!md || !spki || !sig)
                return -EINVAL;
        if (kms_algorithm_is_ec(alg) ? pad != KMS_PAD_NONE : (pad != KMS_PAD_PKCS1 && pad != KMS_PAD_PSS))
                return -EINVAL;
        pkey = d2i_PUBKEY(NULL, &p, (long)spki_len);
        if (!pkey || p != spki + spki_len)
                goto out;
        ctx = EVP_MD_CTX_new();
        if (!ctx) {
                rc = -ENOMEM;
                goto out;
        }
        if (EVP_DigestVerifyInit(ctx, &pctx, md, NULL, pkey) != 1)
                goto out;
        if (pad == KMS_PAD_PSS &&
            (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
             EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1 ||
             EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) != 1))
                goto out;
        r = EVP_DigestVerify(ctx, sig, sig_len, data, data_len);
        rc = r == 1 ? 1 : 0;
out:
        ERR_clear_error(); /* a failed verify leaves entries; keep the thread's queue clean */
        EVP_MD_CTX_free(ctx);
        EVP_PKEY_free(pkey);
        return rc;
}

static const char *const key_state_names[_KMS_KEY_STATE_MAX] = {
        [KMS_KEY_ACTIVE] = "active",
        [KMS_KEY_DESTROYED] = "destroyed",
        [KMS_KEY_DISABLED] = "disabled",
        [KMS_KEY_REVOKED] = "revoked",
        [KMS_KEY_LOST] = "lost",
};

static const char *const revoke_reason_names[_KMS_REVOKE_MAX] = {
        [KMS_REVOKE_COMPROMISED] = "compromised",
        [KMS_REVOKE_SUPERSEDED] = "superseded",
        [KMS_REVOKE_RETIRED] = "retired",
};

enum kms_revoke_reason kms_revoke_reason_from_string(const char *s)
{
        for (int i = 0; s && i < _KMS_REVOKE_MAX; i++)
                if (strcmp(s, revoke_reason_names[i]) == 0)
                        return (enum kms_revoke_reason)i;
        return KMS_REVOKE_INVALID;
}

const char *kms_revoke_reason_to_string(enum kms_revoke_reason r)
{
        return r >= 0 && r < _KMS_REVOKE_MAX ? revoke_reason_names[r] : NULL;
}

enum kms_key_state kms_key_state_from_string(const char *s)
{
        for (int i = 0; s && i < _KMS_KEY_STATE_MAX; i++)
                if (strcmp(s, key_state_names[i]) == 0)
                        return (enum kms_key_state)i;
        return KMS_KEY_STATE_INVALID;
}

const char *kms_key_state_to_string(enum kms_key_state s)
{
        return s >= 0 && s < _KMS_KEY_STATE_MAX ? key_state_names[s] : NULL;
}
