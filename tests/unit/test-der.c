/* Unit tests for the ECDSA signature encodings (raw r||s as PKCS#11
 * returns it, DER as OpenSSL wants it) and for kms_signature_verify().
 * OpenSSL is the referee: signatures it makes must survive der→raw→der
 * unchanged, and what we convert must verify with OpenSSL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "kms-key.h"
#include "kms-util.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(EVP_PKEY *, EVP_PKEY_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(EVP_MD_CTX *, EVP_MD_CTX_free)

/* What an output pointer holds before a call that must fail. */
static uint8_t sentinel_byte;
#define SENTINEL_PTR (&sentinel_byte)
#define SENTINEL_LEN ((size_t)0x5a5a)

static void expect_raw_to_der_fails(const uint8_t *raw, size_t raw_len)
{
        uint8_t *der = SENTINEL_PTR;
        size_t der_len = SENTINEL_LEN;

        assert_int_equal(kms_ecdsa_raw_to_der(raw, raw_len, &der, &der_len), -EINVAL);
        assert_ptr_equal(der, SENTINEL_PTR);
        assert_int_equal(der_len, SENTINEL_LEN);
}

static void expect_der_to_raw_fails(const uint8_t *der, size_t der_len, size_t coord_len)
{
        uint8_t *raw = SENTINEL_PTR;
        size_t raw_len = SENTINEL_LEN;
        int r = kms_ecdsa_der_to_raw(der, der_len, coord_len, &raw, &raw_len);

        if (r != -EINVAL) {
                if (r == 0 && raw != SENTINEL_PTR)
                        free(raw);
                fail_msg("der_to_raw of %zu bytes (coord %zu) returned %d, expected -EINVAL", der_len, coord_len,
                         r);
        }
        assert_ptr_equal(raw, SENTINEL_PTR);
        assert_int_equal(raw_len, SENTINEL_LEN);
}

/* raw → der → raw must give back the same bytes; returns the DER. */
static uint8_t *round_trip(const uint8_t *raw, size_t raw_len, size_t *ret_der_len)
{
        uint8_t *der = NULL, *back = NULL;
        size_t der_len = 0, back_len = 0;

        assert_int_equal(kms_ecdsa_raw_to_der(raw, raw_len, &der, &der_len), 0);
        assert_non_null(der);
        assert_true(der_len > 6);
        assert_int_equal(der[0], 0x30);
        assert_int_equal(kms_ecdsa_der_to_raw(der, der_len, raw_len / 2, &back, &back_len), 0);
        assert_int_equal(back_len, raw_len);
        assert_memory_equal(back, raw, raw_len);
        free(back);
        *ret_der_len = der_len;
        return der;
}

static void fill(uint8_t *p, size_t n, uint8_t v)
{
        memset(p, v, n);
}

static void test_round_trip_fixed(void **state)
{
        static const size_t coords[] = { 32, 48 };

        for (size_t c = 0; c < ELEMENTSOF(coords); c++) {
                size_t n = coords[c], der_len;
                uint8_t raw[96];
                _cleanup_(freep) uint8_t *d1 = NULL, *d2 = NULL, *d3 = NULL, *d4 = NULL, *d5 = NULL;

                /* Both high bits set: each INTEGER needs a 0x00 pad. */
                fill(raw, 2 * n, 0xff);
                raw[0] = 0x80;
                raw[n] = 0x9c;
                d1 = round_trip(raw, 2 * n, &der_len);
                /* 30 L 02 n+1 00 r... 02 n+1 00 s... */
                /* Even P-384's largest (102 bytes of content) keeps a
                 * short-form SEQUENCE length. */
                assert_int_equal(der_len, 2 + 2 * (2 + n + 1));
                assert_int_equal(d1[1], 2 * (2 + n + 1));
                assert_int_equal(d1[2], 0x02);
                assert_int_equal(d1[3], n + 1);
                assert_int_equal(d1[4], 0x00);
                assert_int_equal(d1[5], 0x80);
                assert_int_equal(d1[2 + 2 + n + 1], 0x02);
                assert_int_equal(d1[2 + 2 + n + 1 + 1], n + 1);
                assert_int_equal(d1[2 + 2 + n + 1 + 2], 0x00);
                assert_int_equal(d1[2 + 2 + n + 1 + 3], 0x9c);

                /* No high bit: no pad. */
                fill(raw, 2 * n, 0x7f);
                d2 = round_trip(raw, 2 * n, &der_len);
                assert_int_equal(der_len, 2 + 2 * (2 + n));

                /* Leading zero bytes in r and s: DER drops them, raw
                 * must restore them to full width. */
                fill(raw, 2 * n, 0x11);
                raw[0] = raw[1] = raw[2] = 0x00;
                raw[n] = 0x00;
                raw[n + 1] = 0x80; /* after stripping the 0x00, high bit set again */
                d3 = round_trip(raw, 2 * n, &der_len);

                /* The smallest values. */
                memset(raw, 0, 2 * n);
                raw[n - 1] = 1;
                raw[2 * n - 1] = 1;
                d4 = round_trip(raw, 2 * n, &der_len);
                assert_int_equal(der_len, 8);
                {
                        static const uint8_t one_one[] = { 0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01 };
                        assert_memory_equal(d4, one_one, sizeof(one_one));
                }

                /* Random values, many times. */
                for (int i = 0; i < 200; i++) {
                        assert_int_equal(RAND_bytes(raw, (int)(2 * n)), 1);
                        if (i % 3 == 0)
                                raw[0] = 0;
                        if (i % 5 == 0)
                                raw[n] |= 0x80;
                        free(d5);
                        d5 = round_trip(raw, 2 * n, &der_len);
                }
        }
}

static void test_raw_to_der_rejects(void **state)
{
        uint8_t raw[200];

        fill(raw, sizeof(raw), 0x42);
        expect_raw_to_der_fails(NULL, 64);
        expect_raw_to_der_fails(raw, 0);
        expect_raw_to_der_fails(raw, 63);
        expect_raw_to_der_fails(raw, 1);
        expect_raw_to_der_fails(raw, 65);
        expect_raw_to_der_fails(raw, 134); /* larger than any curve here (P-521: 2*66) */

        /* r = 0 */
        memset(raw, 0, 32);
        expect_raw_to_der_fails(raw, 64);
        /* s = 0 */
        fill(raw, 64, 0x42);
        memset(raw + 32, 0, 32);
        expect_raw_to_der_fails(raw, 64);
        /* both zero */
        memset(raw, 0, 96);
        expect_raw_to_der_fails(raw, 96);
}

static void test_der_to_raw_rejects(void **state)
{
        /* r = 1, s = 1, canonical. */
        static const uint8_t good[] = { 0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01 };
        static const uint8_t trailing[] = { 0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x00 };
        /* r = 1 written with a needless 0x00 (non-minimal INTEGER). */
        static const uint8_t extra_zero[] = { 0x30, 0x07, 0x02, 0x02, 0x00, 0x01, 0x02, 0x01, 0x01 };
        /* SEQUENCE length in long form where short form fits. */
        static const uint8_t long_len[] = { 0x30, 0x81, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01 };
        /* Indefinite length (BER, not DER). */
        static const uint8_t indefinite[] = { 0x30, 0x80, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x00, 0x00 };
        /* SEQUENCE length says more than there is. */
        static const uint8_t short_seq[] = { 0x30, 0x07, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01 };
        /* Only one INTEGER. */
        static const uint8_t one_int[] = { 0x30, 0x03, 0x02, 0x01, 0x01 };
        /* Three INTEGERs. */
        static const uint8_t three_int[] = { 0x30, 0x09, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01 };
        /* OCTET STRING instead of INTEGER. */
        static const uint8_t octets[] = { 0x30, 0x06, 0x04, 0x01, 0x01, 0x02, 0x01, 0x01 };
        /* SET instead of SEQUENCE. */
        static const uint8_t set[] = { 0x31, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01 };
        /* Negative r (-1). */
        static const uint8_t negative[] = { 0x30, 0x06, 0x02, 0x01, 0xff, 0x02, 0x01, 0x01 };
        static const uint8_t garbage[] = "this is not DER at all";
        /* r of 33 bytes (no sign pad) does not fit a 32-byte coordinate. */
        uint8_t big[2 + 2 + 33 + 3];
        uint8_t *raw = NULL;
        size_t raw_len = 0;

        assert_int_equal(kms_ecdsa_der_to_raw(good, sizeof(good), 32, &raw, &raw_len), 0);
        assert_int_equal(raw_len, 64);
        assert_int_equal(raw[31], 1);
        assert_int_equal(raw[63], 1);
        for (size_t i = 0; i < 64; i++)
                if (i != 31 && i != 63)
                        assert_int_equal(raw[i], 0);
        free(raw);

        expect_der_to_raw_fails(NULL, sizeof(good), 32);
        expect_der_to_raw_fails(good, 0, 32);
        expect_der_to_raw_fails(good, sizeof(good) - 1, 32);
        expect_der_to_raw_fails(good, 1, 32);
        expect_der_to_raw_fails(good, sizeof(good), 0);
        expect_der_to_raw_fails(trailing, sizeof(trailing), 32);
        expect_der_to_raw_fails(extra_zero, sizeof(extra_zero), 32);
        expect_der_to_raw_fails(long_len, sizeof(long_len), 32);
        expect_der_to_raw_fails(indefinite, sizeof(indefinite), 32);
        expect_der_to_raw_fails(short_seq, sizeof(short_seq), 32);
        expect_der_to_raw_fails(one_int, sizeof(one_int), 32);
        expect_der_to_raw_fails(three_int, sizeof(three_int), 32);
        expect_der_to_raw_fails(octets, sizeof(octets), 32);
        expect_der_to_raw_fails(set, sizeof(set), 32);
        expect_der_to_raw_fails(negative, sizeof(negative), 32);
        expect_der_to_raw_fails(garbage, sizeof(garbage) - 1, 32);

        big[0] = 0x30;
        big[1] = sizeof(big) - 2;
        big[2] = 0x02;
        big[3] = 33;
        memset(big + 4, 0x7f, 33);
        big[37] = 0x02;
        big[38] = 0x01;
        big[39] = 0x01;
        expect_der_to_raw_fails(big, sizeof(big), 32);
        /* ... but fits a 48-byte one. */
        assert_int_equal(kms_ecdsa_der_to_raw(big, sizeof(big), 48, &raw, &raw_len), 0);
        assert_int_equal(raw_len, 96);
        free(raw);
}

/* r = 0 or s = 0 is never a valid ECDSA signature; raw_to_der refuses
 * such values, so der_to_raw must too (the two are each other's
 * inverse, and a backend must never be handed such a value). */
static void test_der_to_raw_rejects_zero(void **state)
{
        static const uint8_t zero_r[] = { 0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x01 };
        static const uint8_t zero_s[] = { 0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x00 };

        expect_der_to_raw_fails(zero_r, sizeof(zero_r), 32);
        expect_der_to_raw_fails(zero_s, sizeof(zero_s), 32);
}

static EVP_PKEY *keygen(const char *type, const char *param)
{
        EVP_PKEY *k;

        if (strcmp(type, "RSA") == 0)
                k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
        else
                k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", param);
        assert_non_null(k);
        return k;
}

static uint8_t *spki_of(EVP_PKEY *k, size_t *ret_len)
{
        uint8_t *spki = NULL;
        int n = i2d_PUBKEY(k, &spki);

        assert_true(n > 0);
        *ret_len = (size_t)n;
        return spki;
}

/* Sign data with OpenSSL; pss selects RSA-PSS with salt = digest length. */
static size_t ossl_sign(EVP_PKEY *k, const EVP_MD *md, bool pss, const uint8_t *data, size_t len, uint8_t *sig,
                        size_t sig_size)
{
        _cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        EVP_PKEY_CTX *pctx = NULL;
        size_t sig_len = sig_size;

        assert_non_null(ctx);
        assert_int_equal(EVP_DigestSignInit(ctx, &pctx, md, NULL, k), 1);
        if (pss) {
                assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 1);
                assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST), 1);
                assert_int_equal(EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md), 1);
        }
        assert_int_equal(EVP_DigestSign(ctx, sig, &sig_len, data, len), 1);
        return sig_len;
}

static bool ossl_verify(EVP_PKEY *k, const EVP_MD *md, const uint8_t *data, size_t len, const uint8_t *sig,
                        size_t sig_len)
{
        _cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *ctx = EVP_MD_CTX_new();

        assert_non_null(ctx);
        assert_int_equal(EVP_DigestVerifyInit(ctx, NULL, md, NULL, k), 1);
        return EVP_DigestVerify(ctx, sig, sig_len, data, len) == 1;
}

/* OpenSSL's own signatures: der→raw→der gives the same bytes, and a
 * signature rebuilt from raw verifies. Many iterations so that r and s
 * with the high bit set and with leading zero bytes both occur. */
static void openssl_cross_check(const char *curve, const EVP_MD *md, size_t coord)
{
        _cleanup_(EVP_PKEY_freep) EVP_PKEY *k = keygen("EC", curve);
        static const uint8_t msg[] = "kmsd signs this";
        unsigned high = 0, short_int = 0;

        for (int i = 0; i < 300; i++) {
                uint8_t sig[KMS_MAX_SIGNATURE_BYTES];
                size_t sig_len = ossl_sign(k, md, false, msg, sizeof(msg) - 1, sig, sizeof(sig));
                _cleanup_(freep) uint8_t *raw = NULL, *der = NULL;
                size_t raw_len = 0, der_len = 0;

                assert_int_equal(kms_ecdsa_der_to_raw(sig, sig_len, coord, &raw, &raw_len), 0);
                assert_int_equal(raw_len, 2 * coord);
                if (raw[0] & 0x80)
                        high++;
                if (raw[0] == 0 || raw[coord] == 0)
                        short_int++;
                assert_int_equal(kms_ecdsa_raw_to_der(raw, raw_len, &der, &der_len), 0);
                assert_int_equal(der_len, sig_len);
                assert_memory_equal(der, sig, sig_len);
                assert_true(ossl_verify(k, md, msg, sizeof(msg) - 1, der, der_len));

                /* A flipped bit in raw no longer verifies. */
                free(der);
                der = NULL;
                raw[coord + 5] ^= 0x01;
                assert_int_equal(kms_ecdsa_raw_to_der(raw, raw_len, &der, &der_len), 0);
                assert_false(ossl_verify(k, md, msg, sizeof(msg) - 1, der, der_len));
        }
        /* About half of all r have the high bit set. */
        assert_true(high > 50);
        (void)short_int; /* 1 in 128 per signature: seen most runs, not guaranteed */
}

static void test_openssl_p256(void **state)
{
        openssl_cross_check("P-256", EVP_sha256(), 32);
}

static void test_openssl_p384(void **state)
{
        openssl_cross_check("P-384", EVP_sha384(), 48);
}

static void test_verify_ec(void **state)
{
        _cleanup_(EVP_PKEY_freep) EVP_PKEY *k = keygen("EC", "P-256");
        _cleanup_(EVP_PKEY_freep) EVP_PKEY *other = keygen("EC", "P-256");
        _cleanup_(freep) uint8_t *spki = NULL, *other_spki = NULL;
        static const uint8_t msg[] = "hello";
        uint8_t sig[KMS_MAX_SIGNATURE_BYTES];
        size_t spki_len, other_len, sig_len;

        spki = spki_of(k, &spki_len);
        other_spki = spki_of(other, &other_len);
        sig_len = ossl_sign(k, EVP_sha256(), false, msg, 5, sig, sizeof(sig));

        assert_int_equal(kms_signature_verify(spki, spki_len, KMS_ALG_EC_P256, KMS_HASH_SHA256, KMS_PAD_NONE, msg,
                                              5, sig, sig_len),
                         1);
        /* Other data, other hash, other key: 0. */
        assert_int_equal(kms_signature_verify(spki, spki_len, KMS_ALG_EC_P256, KMS_HASH_SHA256, KMS_PAD_NONE,
                                              (const uint8_t *)"hellO", 5, sig, sig_len),
                         0);
        assert_int_equal(kms_signature_verify(spki, spki_len, KMS_ALG_EC_P256, KMS_HASH_SHA384, KMS_PAD_NONE, msg,
                                              5, sig, sig_len),
                         0);
        assert_int_equal(kms_signature_verify(other_spki, other_len, KMS_ALG_EC_P256, KMS_HASH_SHA256,
                                              KMS_PAD_NONE, msg, 5, sig, sig_len),
                         0);
        /* Malformed signatures are "does not verify", not errors. */
        assert_int_equal(kms_signature_verify(spki, spki_len, KMS_ALG_EC_P256, KMS_HASH_SHA256, KMS_PAD_NONE, msg,
                                              5, sig, sig_len - 1),
                         0);
        assert_int_equal(kms_signature_verify(spki, spki_len, KMS_ALG_EC_P256, KMS_HASH_SHA256, KMS_PAD_NONE, msg,
                                              5, (const uint8_t *)"junk", 4),
                         0);
        assert_int_equal(kms_signature_verify(spki, spki_len, KMS_ALG_EC_P256, KMS_HASH_SHA256, KMS_PAD_NONE, msg,
                                              5, sig, 0),
                         0);
        sig[sig_len - 1] ^= 0x01;
        assert_int_equal(kms_signature_verify(spki, spki_len, KMS_ALG_EC_P256, KMS_HASH_SHA256, KMS_PAD_NONE, msg,
                                              5, sig, sig_len),
                         0);
        sig[sig_len - 1] ^= 0x01;

        /* Padding that does not fit an EC key. */
        assert_int_equal(kms_signature_verify(spki, spki_len, KMS_ALG_EC_P256, KMS_HASH_SHA256, KMS_PAD_PKCS1, msg,
                                              5, sig, sig_len),
                         -EINVAL);
        assert_int_equal(kms_signature_verify(spki, spki_len, KMS_ALG_EC_P256, KMS_HASH_SHA256, KMS_PAD_PSS, msg,
                                              5, sig, sig_len),
                         -EINVAL);
        /* Bad arguments. */
        assert_int_equal(kms_signature_verify(spki, spki_len, KMS_ALG_EC_P256, KMS_HASH_INVALID, KMS_PAD_NONE, msg,
                                              5, sig, sig_len),
                         -EINVAL);
        assert_int_equal(kms_signature_verify(NULL, 0, KMS_ALG_EC_P256, KMS_HASH_SHA256, KMS_PAD_NONE, msg, 5, sig,
                                              sig_len),
                         -EINVAL);
        assert_int_equal(kms_signature_verify(spki, spki_len, KMS_ALG_EC_P256, KMS_HASH_SHA256, KMS_PAD_NONE, msg,
                                              5, NULL, 0),
                         -EINVAL);
        assert_int_equal(kms_signature_verify((const uint8_t *)"garbage", 7, KMS_ALG_EC_P256, KMS_HASH_SHA256,
                                              KMS_PAD_NONE, msg, 5, sig, sig_len),
                         -EINVAL);
        /* A truncated SPKI, or one with trailing bytes, is unusable. */
        assert_int_equal(kms_signature_verify(spki, spki_len - 1, KMS_ALG_EC_P256, KMS_HASH_SHA256, KMS_PAD_NONE,
                                              msg, 5, sig, sig_len),
                         -EINVAL);
        {
                _cleanup_(freep) uint8_t *longer = malloc(spki_len + 1);
                assert_non_null(longer);
                memcpy(longer, spki, spki_len);
                longer[spki_len] = 0;
                assert_int_equal(kms_signature_verify(longer, spki_len + 1, KMS_ALG_EC_P256, KMS_HASH_SHA256,
                                                      KMS_PAD_NONE, msg, 5, sig, sig_len),
                                 -EINVAL);
        }
}

static void test_verify_rsa(void **state)
{
        _cleanup_(EVP_PKEY_freep) EVP_PKEY *k = keygen("RSA", NULL);
        _cleanup_(freep) uint8_t *spki = NULL;
        static const uint8_t msg[] = "hello rsa";
        uint8_t pkcs1[KMS_MAX_SIGNATURE_BYTES], pss[KMS_MAX_SIGNATURE_BYTES];
        size_t spki_len, pkcs1_len, pss_len;
        const size_t n = sizeof(msg) - 1;

        spki = spki_of(k, &spki_len);
        pkcs1_len = ossl_sign(k, EVP_sha256(), false, msg, n, pkcs1, sizeof(pkcs1));
        pss_len = ossl_sign(k, EVP_sha256(), true, msg, n, pss, sizeof(pss));
        assert_int_equal(pkcs1_len, 256);
        assert_int_equal(pss_len, 256);

        assert_int_equal(kms_signature_verify(spki, spki_len, KMS_ALG_RSA_2048, KMS_HASH_SHA256, KMS_PAD_PKCS1, msg,
                                              n, pkcs1, pkcs1_len),
                         1);
        assert_int_equal(kms_signature_verify(spki, spki_len, KMS_ALG_RSA_2048, KMS_HASH_SHA256, KMS_PAD_PSS, msg, n,
                                              pss, pss_len),
                         1);
        /* PSS vs PKCS#1 mismatch: does not verify. */
        assert_int_equal(kms_signature_verify(spki, spki_len, KMS_ALG_RSA_2048, KMS_HASH_SHA256, KMS_PAD_PSS, msg, n,
                                              pkcs1, pkcs1_len),
                         0);
        assert_int_equal(kms_signature_verify(spki, spki_len, KMS_ALG_RSA_2048, KMS_HASH_SHA256, KMS_PAD_PKCS1, msg,
                                              n, pss, pss_len),
                         0);
        /* Tampered. */
        pkcs1[100] ^= 0x40;
        assert_int_equal(kms_signature_verify(spki, spki_len, KMS_ALG_RSA_2048, KMS_HASH_SHA256, KMS_PAD_PKCS1, msg,
                                              n, pkcs1, pkcs1_len),
                         0);
        /* Wrong hash. */
        assert_int_equal(kms_signature_verify(spki, spki_len, KMS_ALG_RSA_2048, KMS_HASH_SHA512, KMS_PAD_PSS, msg, n,
                                              pss, pss_len),
                         0);
        /* No padding does not fit RSA. */
        assert_int_equal(kms_signature_verify(spki, spki_len, KMS_ALG_RSA_2048, KMS_HASH_SHA256, KMS_PAD_NONE, msg,
                                              n, pss, pss_len),
                         -EINVAL);
        assert_int_equal(kms_signature_verify(spki, spki_len, KMS_ALG_RSA_2048, KMS_HASH_SHA256, KMS_PAD_INVALID,
                                              msg, n, pss, pss_len),
                         -EINVAL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_round_trip_fixed),   cmocka_unit_test(test_raw_to_der_rejects),
                cmocka_unit_test(test_der_to_raw_rejects), cmocka_unit_test(test_der_to_raw_rejects_zero),
                cmocka_unit_test(test_openssl_p256),
                cmocka_unit_test(test_openssl_p384),       cmocka_unit_test(test_verify_ec),
                cmocka_unit_test(test_verify_rsa),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
