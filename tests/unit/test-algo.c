/* Unit tests for the string tables of kms-key.h: algorithms, digests,
 * paddings, usages and key states, both ways, and what each refuses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "kms-key.h"
#include "kms-util.h"

static void test_algorithm_round_trip(void **state)
{
        static const struct {
                const char *name;
                enum kms_algorithm alg;
                bool ec;
                size_t size;
                unsigned rsa_bits;
        } algs[] = {
                { "ec-p256", KMS_ALG_EC_P256, true, 32, 0 },
                { "ec-p384", KMS_ALG_EC_P384, true, 48, 0 },
                { "rsa-2048", KMS_ALG_RSA_2048, false, 256, 2048 },
                { "rsa-3072", KMS_ALG_RSA_3072, false, 384, 3072 },
                { "rsa-4096", KMS_ALG_RSA_4096, false, 512, 4096 },
        };

        assert_int_equal(ELEMENTSOF(algs), _KMS_ALG_MAX);
        for (size_t i = 0; i < ELEMENTSOF(algs); i++) {
                assert_int_equal(kms_algorithm_from_string(algs[i].name), algs[i].alg);
                assert_string_equal(kms_algorithm_to_string(algs[i].alg), algs[i].name);
                assert_int_equal(kms_algorithm_is_ec(algs[i].alg), algs[i].ec);
                assert_int_equal(kms_algorithm_is_rsa(algs[i].alg), !algs[i].ec);
                assert_int_equal(kms_algorithm_size(algs[i].alg), algs[i].size);
                assert_int_equal(kms_algorithm_rsa_bits(algs[i].alg), algs[i].rsa_bits);
                /* Every algorithm appears in the list used in messages. */
                assert_non_null(strstr(kms_algorithm_list(), algs[i].name));
        }
}

static void test_algorithm_rejects(void **state)
{
        static const char *const bad[] = {
                "EC-P256", "ec-p256 ", " ec-p256", "ec-p521", "ecp256", "rsa", "rsa-1024", "", "ed25519x",
                "ec-p2566", "ec-p25",
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                if (kms_algorithm_from_string(bad[i]) != KMS_ALG_INVALID)
                        fail_msg("algorithm \"%s\" accepted", bad[i]);
        assert_int_equal(kms_algorithm_from_string(NULL), KMS_ALG_INVALID);
        assert_null(kms_algorithm_to_string(KMS_ALG_INVALID));
        assert_null(kms_algorithm_to_string(_KMS_ALG_MAX));
        assert_false(kms_algorithm_is_ec(KMS_ALG_INVALID));
        assert_false(kms_algorithm_is_rsa(KMS_ALG_INVALID));
        assert_int_equal(kms_algorithm_rsa_bits(KMS_ALG_INVALID), 0);
        assert_int_equal(kms_algorithm_size(KMS_ALG_INVALID), 0);
        assert_int_equal(kms_algorithm_usages(KMS_ALG_INVALID), 0);
        assert_int_equal(kms_algorithm_usages(_KMS_ALG_MAX), 0);
}

static void test_algorithm_defaults(void **state)
{
        assert_int_equal(kms_algorithm_default_hash(KMS_ALG_EC_P256), KMS_HASH_SHA256);
        assert_int_equal(kms_algorithm_default_hash(KMS_ALG_EC_P384), KMS_HASH_SHA384);
        assert_int_equal(kms_algorithm_default_hash(KMS_ALG_RSA_2048), KMS_HASH_SHA256);
        assert_int_equal(kms_algorithm_default_hash(KMS_ALG_RSA_3072), KMS_HASH_SHA256);
        assert_int_equal(kms_algorithm_default_hash(KMS_ALG_RSA_4096), KMS_HASH_SHA256);

        assert_int_equal(kms_algorithm_usages(KMS_ALG_EC_P256), KMS_USAGE_SIGN | KMS_USAGE_DERIVE);
        assert_int_equal(kms_algorithm_usages(KMS_ALG_EC_P384), KMS_USAGE_SIGN | KMS_USAGE_DERIVE);
        assert_int_equal(kms_algorithm_usages(KMS_ALG_RSA_2048), KMS_USAGE_SIGN | KMS_USAGE_DECRYPT);
        assert_int_equal(kms_algorithm_usages(KMS_ALG_RSA_3072), KMS_USAGE_SIGN | KMS_USAGE_DECRYPT);
        assert_int_equal(kms_algorithm_usages(KMS_ALG_RSA_4096), KMS_USAGE_SIGN | KMS_USAGE_DECRYPT);
}

static void test_hash(void **state)
{
        static const struct {
                const char *name;
                enum kms_hash h;
                size_t len;
        } hashes[] = {
                { "sha256", KMS_HASH_SHA256, 32 },
                { "sha384", KMS_HASH_SHA384, 48 },
                { "sha512", KMS_HASH_SHA512, 64 },
        };
        /* SHA-256("abc"), FIPS 180-2 appendix B.1. */
        static const uint8_t abc256[32] = {
                0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
                0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad,
        };
        uint8_t out[64];

        assert_int_equal(ELEMENTSOF(hashes), _KMS_HASH_MAX);
        for (size_t i = 0; i < ELEMENTSOF(hashes); i++) {
                assert_int_equal(kms_hash_from_string(hashes[i].name), hashes[i].h);
                assert_string_equal(kms_hash_to_string(hashes[i].h), hashes[i].name);
                assert_int_equal(kms_hash_length(hashes[i].h), hashes[i].len);
                assert_int_equal(kms_hash_compute(hashes[i].h, "abc", 3, out), 0);
        }
        assert_int_equal(kms_hash_compute(KMS_HASH_SHA256, "abc", 3, out), 0);
        assert_memory_equal(out, abc256, sizeof(abc256));

        assert_int_equal(kms_hash_from_string("SHA256"), KMS_HASH_INVALID);
        assert_int_equal(kms_hash_from_string("sha-256"), KMS_HASH_INVALID);
        assert_int_equal(kms_hash_from_string("sha1"), KMS_HASH_INVALID);
        assert_int_equal(kms_hash_from_string("md5"), KMS_HASH_INVALID);
        assert_int_equal(kms_hash_from_string(""), KMS_HASH_INVALID);
        assert_int_equal(kms_hash_from_string(NULL), KMS_HASH_INVALID);
        assert_null(kms_hash_to_string(KMS_HASH_INVALID));
        assert_null(kms_hash_to_string(_KMS_HASH_MAX));
        assert_int_equal(kms_hash_length(KMS_HASH_INVALID), 0);
        assert_int_equal(kms_hash_length(_KMS_HASH_MAX), 0);

        memset(out, 0xaa, sizeof(out));
        assert_int_equal(kms_hash_compute(KMS_HASH_INVALID, "abc", 3, out), -EINVAL);
        assert_int_equal(out[0], 0xaa); /* untouched on failure */
}

static void test_padding(void **state)
{
        assert_int_equal(kms_padding_from_string("none"), KMS_PAD_NONE);
        assert_int_equal(kms_padding_from_string("pkcs1"), KMS_PAD_PKCS1);
        assert_int_equal(kms_padding_from_string("pss"), KMS_PAD_PSS);
        for (int p = 0; p < _KMS_PAD_MAX; p++)
                assert_int_equal(kms_padding_from_string(kms_padding_to_string((enum kms_padding)p)), p);
        assert_int_equal(kms_padding_from_string("PSS"), KMS_PAD_INVALID);
        assert_int_equal(kms_padding_from_string("oaep"), KMS_PAD_INVALID);
        assert_int_equal(kms_padding_from_string(""), KMS_PAD_INVALID);
        assert_int_equal(kms_padding_from_string(NULL), KMS_PAD_INVALID);
        assert_null(kms_padding_to_string(KMS_PAD_INVALID));
        assert_null(kms_padding_to_string(_KMS_PAD_MAX));
}

static void test_usage_single(void **state)
{
        static const enum kms_usage all[] = { KMS_USAGE_SIGN, KMS_USAGE_DERIVE, KMS_USAGE_DECRYPT };

        for (size_t i = 0; i < ELEMENTSOF(all); i++)
                assert_int_equal(kms_usage_from_string(kms_usage_to_string(all[i])), all[i]);
        assert_string_equal(kms_usage_to_string(KMS_USAGE_SIGN), "sign");
        assert_string_equal(kms_usage_to_string(KMS_USAGE_DERIVE), "derive");
        assert_string_equal(kms_usage_to_string(KMS_USAGE_DECRYPT), "decrypt");
        assert_int_equal(kms_usage_from_string("Sign"), 0);
        assert_int_equal(kms_usage_from_string("encrypt"), 0);
        assert_int_equal(kms_usage_from_string(""), 0);
        assert_int_equal(kms_usage_from_string(NULL), 0);
        /* A mask of several is not one usage. */
        assert_null(kms_usage_to_string(KMS_USAGE_SIGN | KMS_USAGE_DERIVE));
        assert_null(kms_usage_to_string(0));
}

static void test_usages_list(void **state)
{
        static const char *const bad[] = {
                "sign,,derive", "", "sign,", ",sign", ",", "bogus", "sign,bogus", "sign derive", " sign",
                "sign ", "SIGN", "sign;derive", "signsignsignsignsign", "verylongusagewordthatoverflows",
        };
        unsigned mask;

        mask = 0;
        assert_int_equal(kms_usages_from_string("sign,derive", &mask), 0);
        assert_int_equal(mask, KMS_USAGE_SIGN | KMS_USAGE_DERIVE);
        assert_int_equal(kms_usages_from_string("sign", &mask), 0);
        assert_int_equal(mask, KMS_USAGE_SIGN);
        assert_int_equal(kms_usages_from_string("decrypt,sign", &mask), 0);
        assert_int_equal(mask, KMS_USAGE_SIGN | KMS_USAGE_DECRYPT);
        assert_int_equal(kms_usages_from_string("sign,derive,decrypt", &mask), 0);
        assert_int_equal(mask, KMS_USAGE_ALL);
        /* A repeated word is harmless. */
        assert_int_equal(kms_usages_from_string("sign,sign", &mask), 0);
        assert_int_equal(mask, KMS_USAGE_SIGN);

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                mask = 0x5a5a;
                if (kms_usages_from_string(bad[i], &mask) != -EINVAL)
                        fail_msg("usages \"%s\" accepted", bad[i]);
                if (mask != 0x5a5a)
                        fail_msg("usages \"%s\": output changed on failure", bad[i]);
        }
        mask = 0x5a5a;
        assert_int_equal(kms_usages_from_string(NULL, &mask), -EINVAL);
        assert_int_equal(mask, 0x5a5a);
}

static void test_key_state(void **state)
{
        assert_int_equal(kms_key_state_from_string("active"), KMS_KEY_ACTIVE);
        assert_int_equal(kms_key_state_from_string("destroyed"), KMS_KEY_DESTROYED);
        for (int s = 0; s < _KMS_KEY_STATE_MAX; s++)
                assert_int_equal(kms_key_state_from_string(kms_key_state_to_string((enum kms_key_state)s)), s);
        assert_int_equal(kms_key_state_from_string("Active"), KMS_KEY_STATE_INVALID);
        assert_int_equal(kms_key_state_from_string("revoked-ish"), KMS_KEY_STATE_INVALID);
        assert_int_equal(kms_key_state_from_string(""), KMS_KEY_STATE_INVALID);
        assert_int_equal(kms_key_state_from_string(NULL), KMS_KEY_STATE_INVALID);
        assert_null(kms_key_state_to_string(KMS_KEY_STATE_INVALID));
        assert_null(kms_key_state_to_string(_KMS_KEY_STATE_MAX));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_algorithm_round_trip),
                cmocka_unit_test(test_algorithm_rejects),
                cmocka_unit_test(test_algorithm_defaults),
                cmocka_unit_test(test_hash),
                cmocka_unit_test(test_padding),
                cmocka_unit_test(test_usage_single),
                cmocka_unit_test(test_usages_list),
                cmocka_unit_test(test_key_state),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
