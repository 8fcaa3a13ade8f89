/* Unit tests for the session crypto core: HKDF-SHA256 (RFC 5869 vectors),
 * the key schedule, envelope format v1, seal/open and every rejection
 * rule, limits, expiry, the secure heap and session ids.
 *
 * The worked vector of docs/sessions.md is read from
 * tests/vectors/session-v1.txt (KMS_SESSION_VECTOR_FILE, or argv[1]);
 * tests/vectors/session-vector.sh recomputes the same file with openssl
 * and python3-cryptography alone. Time is injected (now_ms), never read. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/crypto.h>

#include "kms-error.h"
#include "kms-hkdf.h"
#include "kms-secure-heap.h"
#include "kms-session-crypto.h"
#include "kms-session-id.h"
#include "kms-util.h"

#ifndef KMS_SESSION_VECTOR_FILE
#define KMS_SESSION_VECTOR_FILE "tests/vectors/session-v1.txt"
#endif

static const char *vector_path = KMS_SESSION_VECTOR_FILE;

/* ------------------------------------------------------------ helpers */

/* Decode hex that the test itself supplies; fails the test on error. The
 * caller frees. A zero-length result is a valid 1-byte allocation. */
static uint8_t *unhex(const char *s, size_t *ret_len)
{
        uint8_t *b = NULL;
        size_t n = 0;

        if (kms_hex_decode(s, &b, &n) < 0)
                fail_msg("bad hex in the test: %s", s);
        *ret_len = n;
        return b;
}

static void assert_hex_equal(const uint8_t *got, size_t got_len, const char *want_hex)
{
        _cleanup_(freep) char *got_hex = kms_hex_encode(got, got_len);

        assert_non_null(got_hex);
        if (strcmp(got_hex, want_hex) != 0)
                fail_msg("bytes differ\n  got:  %s\n  want: %s", got_hex, want_hex);
}

static bool all_zero(const uint8_t *p, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (p[i])
                        return false;
        return true;
}

/* The key=value lines of the vector file. */
#define VECTOR_MAX 64
static struct {
        char key[32];
        char value[512];
} vector[VECTOR_MAX];
static size_t vector_n;

static int vector_load(void)
{
        char line[600];
        FILE *f = fopen(vector_path, "re");

        if (!f) {
                fprintf(stderr, "cannot open %s: %m\n", vector_path);
                return -1;
        }
        while (fgets(line, sizeof(line), f)) {
                char *eq;

                line[strcspn(line, "\n")] = '\0';
                if (line[0] == '\0' || line[0] == '#')
                        continue;
                eq = strchr(line, '=');
                if (!eq || vector_n == VECTOR_MAX || (size_t)(eq - line) >= sizeof(vector[0].key) ||
                    strlen(eq + 1) >= sizeof(vector[0].value)) {
                        fprintf(stderr, "%s: bad line: %s\n", vector_path, line);
                        fclose(f);
                        return -1;
                }
                *eq = '\0';
                strcpy(vector[vector_n].key, line);
                strcpy(vector[vector_n].value, eq + 1);
                vector_n++;
        }
        fclose(f);
        return 0;
}

static const char *vec(const char *key)
{
        for (size_t i = 0; i < vector_n; i++)
                if (strcmp(vector[i].key, key) == 0)
                        return vector[i].value;
        fail_msg("%s has no %s", vector_path, key);
        return NULL;
}

static uint8_t *vec_bytes(const char *key, size_t *ret_len)
{
        return unhex(vec(key), ret_len);
}

static uint64_t vec_u64(const char *key)
{
        uint64_t v = 0;

        if (kms_parse_u64(vec(key), 0, UINT64_MAX, &v) < 0)
                fail_msg("%s: %s is not a number", vector_path, key);
        return v;
}

/* Alice (initiator) and Bob (responder) over the vector's Z, SPKIs and
 * context, created at t0 with params p (NULL: defaults). */
struct pair {
        struct kms_session_crypto *alice, *bob;
        uint64_t t0;
};

static void pair_new(struct pair *pr, const struct kms_session_crypto_params *p, uint64_t t0)
{
        _cleanup_(freep) uint8_t *z = NULL, *spki_a = NULL, *spki_b = NULL, *ctx = NULL;
        size_t z_len, a_len, b_len, ctx_len;

        z = vec_bytes("z", &z_len);
        spki_a = vec_bytes("spki_initiator", &a_len);
        spki_b = vec_bytes("spki_responder", &b_len);
        ctx = vec_bytes("context", &ctx_len);
        pr->t0 = t0;
        assert_int_equal(kms_session_crypto_new(KMS_SESSION_INITIATOR, z, z_len, spki_a, a_len, spki_b, b_len, ctx,
                                                ctx_len, p, t0, &pr->alice),
                         0);
        assert_int_equal(kms_session_crypto_new(KMS_SESSION_RESPONDER, z, z_len, spki_b, b_len, spki_a, a_len, ctx,
                                                ctx_len, p, t0, &pr->bob),
                         0);
}

static void pair_free(struct pair *pr)
{
        kms_session_crypto_free(pr->alice);
        kms_session_crypto_free(pr->bob);
        pr->alice = pr->bob = NULL;
}

/* An envelope in a fixed buffer (tests keep plaintexts small). */
struct env {
        uint8_t b[256];
        size_t len;
};

static void seal_ok(struct kms_session_crypto *s, uint64_t now, const char *text, const char *aad, struct env *e)
{
        assert_int_equal(kms_session_crypto_seal(s, now, (const uint8_t *)text, strlen(text), (const uint8_t *)aad,
                                                 aad ? strlen(aad) : 0, e->b, sizeof(e->b), &e->len),
                         0);
        assert_int_equal(e->len, strlen(text) + KMS_ENVELOPE_OVERHEAD);
}

static void open_ok(struct kms_session_crypto *s, uint64_t now, const struct env *e, const char *aad, const char *want)
{
        uint8_t out[256];
        size_t n = 0;
        int r = kms_session_crypto_open(s, now, e->b, e->len, (const uint8_t *)aad, aad ? strlen(aad) : 0, out,
                                        sizeof(out), &n);

        if (r != 0)
                fail_msg("open: %d (%s), expected success", r, kms_session_crypto_strerror(r));
        assert_int_equal(n, strlen(want));
        assert_memory_equal(out, want, n);
}

/* Open must fail with err and change nothing: the counters and binding
 * are as before, the output buffer is zero and *ret_len untouched. */
static void open_fails(struct kms_session_crypto *s, uint64_t now, const uint8_t *env, size_t env_len, const char *aad,
                       int err)
{
        struct kms_session_crypto_info before, after;
        uint8_t out[256];
        size_t n = 0x5a5a;
        int r;

        memset(out, 0xa5, sizeof(out));
        kms_session_crypto_get_info(s, &before);
        r = kms_session_crypto_open(s, now, env, env_len, (const uint8_t *)aad, aad ? strlen(aad) : 0, out, sizeof(out),
                                    &n);
        if (r != err)
                fail_msg("open: %d (%s), expected %d (%s)", r, kms_session_crypto_strerror(r), err,
                         kms_session_crypto_strerror(err));
        assert_int_equal(n, 0x5a5a);
        /* What open may have decrypted before refusing is wiped. */
        if (env_len >= KMS_ENVELOPE_OVERHEAD && env_len - KMS_ENVELOPE_OVERHEAD <= sizeof(out) &&
            (err == KMS_E_SESSION_INTEGRITY || err == KMS_E_SESSION_REPLAY || err == KMS_E_SESSION_REORDERED ||
             err == KMS_E_SESSION_STALE))
                assert_true(all_zero(out, env_len - KMS_ENVELOPE_OVERHEAD));
        kms_session_crypto_get_info(s, &after);
        assert_memory_equal(&before, &after, sizeof(before));
}

static void open_env_fails(struct kms_session_crypto *s, uint64_t now, const struct env *e, const char *aad, int err)
{
        open_fails(s, now, e->b, e->len, aad, err);
}

static struct kms_session_crypto_params params_default(void)
{
        struct kms_session_crypto_params p;

        kms_session_crypto_params_init(&p);
        return p;
}

#define T0 UINT64_C(1767225600000) /* 2026-01-01T00:00:00Z */

/* ------------------------------------------------------------ HKDF */

struct hkdf_case {
        const char *ikm, *salt, *info, *okm;
};

/* RFC 5869, appendix A, test cases 1-3 (SHA-256). */
static const struct hkdf_case rfc5869[] = {
        {"0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "000102030405060708090a0b0c", "f0f1f2f3f4f5f6f7f8f9",
         "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"},
        {"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f30313233"
         "3435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f",
         "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f808182838485868788898a8b8c8d8e8f90919293"
         "9495969798999a9b9c9d9e9fa0a1a2a3a4a5a6a7a8a9aaabacadaeaf",
         "b0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3"
         "e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
         "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09da3275600c"
         "2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87"},
        {"0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "", "",
         "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"},
};

static void test_hkdf_rfc5869(void **state)
{
        for (size_t i = 0; i < ELEMENTSOF(rfc5869); i++) {
                _cleanup_(freep) uint8_t *ikm = NULL, *salt = NULL, *info = NULL, *okm = NULL;
                size_t ikm_len, salt_len, info_len, okm_len;
                uint8_t out[128];

                ikm = unhex(rfc5869[i].ikm, &ikm_len);
                salt = unhex(rfc5869[i].salt, &salt_len);
                info = unhex(rfc5869[i].info, &info_len);
                okm = unhex(rfc5869[i].okm, &okm_len);
                /* Test case 3's empty salt and info are passed as NULL/0. */
                assert_int_equal(kms_hkdf_sha256(ikm, ikm_len, salt_len ? salt : NULL, salt_len, info_len ? info : NULL,
                                                 info_len, out, okm_len),
                                 0);
                assert_memory_equal(out, okm, okm_len);
        }
}

static void expect_hkdf_fails(const uint8_t *ikm, size_t ikm_len, const uint8_t *salt, size_t salt_len,
                              const uint8_t *info, size_t info_len, size_t out_len)
{
        uint8_t out[KMS_HKDF_SHA256_MAX_OUTPUT + 1];

        memset(out, 0xa5, sizeof(out));
        assert_int_equal(kms_hkdf_sha256(ikm, ikm_len, salt, salt_len, info, info_len, out, out_len), -EINVAL);
        if (out_len <= KMS_HKDF_SHA256_MAX_OUTPUT && out_len > 0)
                assert_true(all_zero(out, out_len));
}

static void test_hkdf_rejects(void **state)
{
        static uint8_t big[KMS_HKDF_MAX_INFO + 1];
        uint8_t ikm[16] = {1}, out[32];

        expect_hkdf_fails(NULL, 16, NULL, 0, NULL, 0, 32);
        expect_hkdf_fails(ikm, 0, NULL, 0, NULL, 0, 32);
        expect_hkdf_fails(ikm, 16, NULL, 5, NULL, 0, 32);
        expect_hkdf_fails(ikm, 16, NULL, 0, NULL, 5, 32);
        expect_hkdf_fails(ikm, 16, NULL, 0, big, sizeof(big), 32);
        expect_hkdf_fails(ikm, 16, NULL, 0, NULL, 0, 0);
        expect_hkdf_fails(ikm, 16, NULL, 0, NULL, 0, KMS_HKDF_SHA256_MAX_OUTPUT + 1);
        assert_int_equal(kms_hkdf_sha256(ikm, 16, NULL, 0, NULL, 0, NULL, 32), -EINVAL);
        /* The edges are accepted. */
        assert_int_equal(kms_hkdf_sha256(ikm, 16, NULL, 0, big, KMS_HKDF_MAX_INFO, out, sizeof(out)), 0);
        {
                static uint8_t most[KMS_HKDF_SHA256_MAX_OUTPUT];
                assert_int_equal(kms_hkdf_sha256(ikm, 16, NULL, 0, NULL, 0, most, sizeof(most)), 0);
        }
}

/* ------------------------------------------------------------ the vector */

static void test_vector_key_schedule(void **state)
{
        _cleanup_(freep) uint8_t *z = NULL, *spki_a = NULL, *spki_b = NULL, *ctx = NULL;
        size_t z_len, a_len, b_len, ctx_len;
        struct kms_session_keys k;

        z = vec_bytes("z", &z_len);
        spki_a = vec_bytes("spki_initiator", &a_len);
        spki_b = vec_bytes("spki_responder", &b_len);
        ctx = vec_bytes("context", &ctx_len);
        assert_int_equal(kms_session_crypto_derive(z, z_len, spki_a, a_len, spki_b, b_len, ctx, ctx_len, &k), 0);
        assert_hex_equal(k.i2r, sizeof(k.i2r), vec("k_i2r"));
        assert_hex_equal(k.r2i, sizeof(k.r2i), vec("k_r2i"));
        assert_hex_equal(k.binding, sizeof(k.binding), vec("binding"));
        assert_hex_equal((const uint8_t *)&k, sizeof(k), vec("okm")); /* the struct is okm, in order */
        OPENSSL_cleanse(&k, sizeof(k));
}

/* Seal message m ("m1", "m2") on its sender's side and compare every
 * byte; then open it on the other side. */
static void check_vector_message(struct pair *pr, const char *m)
{
        char key[32];
        _cleanup_(freep) uint8_t *plain = NULL, *aad = NULL;
        size_t plain_len, aad_len, n = 0;
        uint8_t env[256], out[256], nonce[KMS_SESSION_NONCE_BYTES];
        uint64_t dir, seq, ts;
        struct kms_session_crypto *sender, *receiver;
        struct kms_envelope_header h;

#define M(field) (snprintf(key, sizeof(key), "%s_" field, m), key)
        dir = vec_u64(M("direction"));
        seq = vec_u64(M("seq"));
        ts = vec_u64(M("timestamp_ms"));
        plain = vec_bytes(M("plaintext"), &plain_len);
        aad = vec_bytes(M("aad"), &aad_len);
        sender = dir == KMS_SESSION_I2R ? pr->alice : pr->bob;
        receiver = dir == KMS_SESSION_I2R ? pr->bob : pr->alice;

        kms_session_crypto_nonce((enum kms_session_direction)dir, seq, nonce);
        assert_hex_equal(nonce, sizeof(nonce), vec(M("nonce")));

        assert_int_equal(seq, 1); /* the first message of its direction */
        assert_int_equal(kms_session_crypto_seal(sender, ts, plain, plain_len, aad_len ? aad : NULL, aad_len, env,
                                                 sizeof(env), &n),
                         0);
        assert_hex_equal(env, n, vec(M("envelope")));
        assert_hex_equal(env, KMS_ENVELOPE_HEADER_BYTES, vec(M("header")));
        assert_hex_equal(env + KMS_ENVELOPE_HEADER_BYTES, plain_len, vec(M("ciphertext")));
        assert_hex_equal(env + KMS_ENVELOPE_HEADER_BYTES + plain_len, KMS_ENVELOPE_TAG_BYTES, vec(M("tag")));

        assert_int_equal(kms_session_crypto_parse_header(env, n, &h), 0);
        assert_int_equal(h.version, 1);
        assert_int_equal(h.direction, dir);
        assert_int_equal(h.seq, seq);
        assert_int_equal(h.timestamp_ms, ts);

        n = 0;
        {
                _cleanup_(freep) uint8_t *want_env = NULL;
                size_t want_len;

                want_env = vec_bytes(M("envelope"), &want_len);
                assert_int_equal(kms_session_crypto_open(receiver, ts + 10, want_env, want_len, aad_len ? aad : NULL,
                                                         aad_len, out, sizeof(out), &n),
                                 0);
        }
        assert_int_equal(n, plain_len);
        assert_memory_equal(out, plain, plain_len);
#undef M
}

static void test_vector_envelopes(void **state)
{
        struct pair pr;

        pair_new(&pr, NULL, T0);
        check_vector_message(&pr, "m1");
        check_vector_message(&pr, "m2");
        pair_free(&pr);
}

/* ------------------------------------------------------------ key schedule */

static void test_key_schedule_symmetric(void **state)
{
        struct kms_session_crypto_info ia, ib;
        struct pair pr;
        struct env e;

        pair_new(&pr, NULL, T0);
        kms_session_crypto_get_info(pr.alice, &ia);
        kms_session_crypto_get_info(pr.bob, &ib);
        assert_memory_equal(ia.binding, ib.binding, sizeof(ia.binding));
        assert_hex_equal(ia.binding, sizeof(ia.binding), vec("binding"));
        assert_int_equal(ia.role, KMS_SESSION_INITIATOR);
        assert_int_equal(ib.role, KMS_SESSION_RESPONDER);

        seal_ok(pr.alice, T0, "to bob", NULL, &e);
        open_ok(pr.bob, T0, &e, NULL, "to bob");
        seal_ok(pr.bob, T0, "to alice", NULL, &e);
        open_ok(pr.alice, T0, &e, NULL, "to alice");
        pair_free(&pr);
}

/* Anything that changes an input changes every output. */
static void test_key_schedule_inputs(void **state)
{
        _cleanup_(freep) uint8_t *z = NULL, *spki_a = NULL, *spki_b = NULL;
        size_t z_len, a_len, b_len;
        struct kms_session_keys base, k;

        z = vec_bytes("z", &z_len);
        spki_a = vec_bytes("spki_initiator", &a_len);
        spki_b = vec_bytes("spki_responder", &b_len);
        assert_int_equal(kms_session_crypto_derive(z, z_len, spki_a, a_len, spki_b, b_len, NULL, 0, &base), 0);
        assert_memory_not_equal(base.i2r, base.r2i, KMS_SESSION_KEY_BYTES);

        /* The order of the public keys is part of the schedule. */
        assert_int_equal(kms_session_crypto_derive(z, z_len, spki_b, b_len, spki_a, a_len, NULL, 0, &k), 0);
        assert_memory_not_equal(k.i2r, base.i2r, KMS_SESSION_KEY_BYTES);
        assert_memory_not_equal(k.binding, base.binding, KMS_SESSION_BINDING_BYTES);
        /* So is the context; "" and "\0" differ too. */
        assert_int_equal(kms_session_crypto_derive(z, z_len, spki_a, a_len, spki_b, b_len, (const uint8_t *)"", 1, &k),
                         0);
        assert_memory_not_equal(k.i2r, base.i2r, KMS_SESSION_KEY_BYTES);
        assert_memory_not_equal(k.binding, base.binding, KMS_SESSION_BINDING_BYTES);
        /* And Z. */
        z[0] ^= 1;
        assert_int_equal(kms_session_crypto_derive(z, z_len, spki_a, a_len, spki_b, b_len, NULL, 0, &k), 0);
        assert_memory_not_equal(k.r2i, base.r2i, KMS_SESSION_KEY_BYTES);
        assert_memory_not_equal(k.binding, base.binding, KMS_SESSION_BINDING_BYTES);
        OPENSSL_cleanse(&k, sizeof(k));
        OPENSSL_cleanse(&base, sizeof(base));
}

static void test_key_schedule_rejects(void **state)
{
        _cleanup_(freep) uint8_t *z = NULL, *spki = NULL;
        size_t z_len, spki_len;
        uint8_t bad[128], ctx[KMS_SESSION_MAX_CONTEXT_BYTES + 1] = {0}, big_z[KMS_SESSION_MAX_SECRET_BYTES + 1];
        struct kms_session_keys k;

        z = vec_bytes("z", &z_len);
        spki = vec_bytes("spki_initiator", &spki_len);
        memset(&k, 0x5a, sizeof(k));
        memset(big_z, 1, sizeof(big_z));
        assert_true(spki_len + 1 <= sizeof(bad));

#define DERIVE_FAILS(...)                                                                                              \
        do {                                                                                                           \
                assert_int_equal(kms_session_crypto_derive(__VA_ARGS__), -EINVAL);                                     \
                for (size_t _i = 0; _i < sizeof(k); _i++)                                                              \
                        assert_int_equal(((uint8_t *)&k)[_i], 0x5a);                                                   \
        } while (0)

        DERIVE_FAILS(NULL, 32, spki, spki_len, spki, spki_len, NULL, 0, &k);
        DERIVE_FAILS(z, 0, spki, spki_len, spki, spki_len, NULL, 0, &k);
        DERIVE_FAILS(big_z, sizeof(big_z), spki, spki_len, spki, spki_len, NULL, 0, &k);
        DERIVE_FAILS(z, z_len, NULL, spki_len, spki, spki_len, NULL, 0, &k);
        DERIVE_FAILS(z, z_len, spki, spki_len, spki, 0, NULL, 0, &k);
        DERIVE_FAILS(z, z_len, spki, spki_len, spki, spki_len, NULL, 3, &k);
        DERIVE_FAILS(z, z_len, spki, spki_len, spki, spki_len, ctx, sizeof(ctx), &k);
        /* Not exactly one DER SEQUENCE: trailing byte, cut short, other tag,
         * long-form length with no length bytes. */
        memcpy(bad, spki, spki_len);
        bad[spki_len] = 0;
        DERIVE_FAILS(z, z_len, bad, spki_len + 1, spki, spki_len, NULL, 0, &k);
        DERIVE_FAILS(z, z_len, spki, spki_len - 1, spki, spki_len, NULL, 0, &k);
        bad[0] = 0x31;
        DERIVE_FAILS(z, z_len, spki, spki_len, bad, spki_len, NULL, 0, &k);
        DERIVE_FAILS(z, z_len, spki, spki_len, (const uint8_t *)"\x30\x80", 2, NULL, 0, &k);
        DERIVE_FAILS(z, z_len, spki, spki_len, (const uint8_t *)"\x30\x81", 2, NULL, 0, &k);
        assert_int_equal(kms_session_crypto_derive(z, z_len, spki, spki_len, spki, spki_len, NULL, 0, NULL), -EINVAL);
        /* The edges pass: a context of the maximum length, a minimal DER
         * SEQUENCE, and a long-form length. */
        assert_int_equal(kms_session_crypto_derive(z, z_len, spki, spki_len, (const uint8_t *)"\x30\x00", 2, ctx,
                                                   KMS_SESSION_MAX_CONTEXT_BYTES, &k),
                         0);
        assert_int_equal(kms_session_crypto_derive(z, z_len, spki, spki_len, (const uint8_t *)"\x30\x81\x01\x05", 4,
                                                   NULL, 0, &k),
                         0);
        OPENSSL_cleanse(&k, sizeof(k));
#undef DERIVE_FAILS
}

/* ------------------------------------------------------------ envelope */

static void test_nonce_and_header(void **state)
{
        uint8_t nonce[KMS_SESSION_NONCE_BYTES], env[KMS_ENVELOPE_OVERHEAD] = {0};
        static const uint8_t n1[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
        static const uint8_t n2[] = {0, 0, 0, 1, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08};
        struct kms_envelope_header h = {.version = 9};

        kms_session_crypto_nonce(KMS_SESSION_I2R, 1, nonce);
        assert_memory_equal(nonce, n1, sizeof(n1));
        kms_session_crypto_nonce(KMS_SESSION_R2I, UINT64_C(0x0102030405060708), nonce);
        assert_memory_equal(nonce, n2, sizeof(n2));

        /* Header: version, direction, seq BE, timestamp BE. */
        env[0] = 1;
        env[1] = 1;
        env[9] = 0x2a;
        env[10] = 0x80;
        env[17] = 0x01;
        assert_int_equal(kms_session_crypto_parse_header(env, sizeof(env), &h), 0);
        assert_int_equal(h.version, 1);
        assert_int_equal(h.direction, 1);
        assert_int_equal(h.seq, 42);
        assert_true(h.timestamp_ms == UINT64_C(0x8000000000000001));

        /* Structure only: short, version, direction, seq 0. */
        h.version = 9;
        assert_int_equal(kms_session_crypto_parse_header(env, sizeof(env) - 1, &h), KMS_E_SESSION_MALFORMED);
        env[0] = 2;
        assert_int_equal(kms_session_crypto_parse_header(env, sizeof(env), &h), KMS_E_SESSION_MALFORMED);
        env[0] = 1;
        env[1] = 2;
        assert_int_equal(kms_session_crypto_parse_header(env, sizeof(env), &h), KMS_E_SESSION_MALFORMED);
        env[1] = 0;
        env[9] = 0;
        assert_int_equal(kms_session_crypto_parse_header(env, sizeof(env), &h), KMS_E_SESSION_MALFORMED);
        assert_int_equal(h.version, 9);
        assert_int_equal(kms_session_crypto_parse_header(NULL, sizeof(env), &h), -EINVAL);
        assert_int_equal(kms_session_crypto_parse_header(env, sizeof(env), NULL), -EINVAL);

        assert_int_equal(kms_session_crypto_envelope_size(0), KMS_ENVELOPE_OVERHEAD);
        assert_int_equal(kms_session_crypto_envelope_size(100), 100 + KMS_ENVELOPE_OVERHEAD);
        assert_true(kms_session_crypto_envelope_size(SIZE_MAX - 1) == SIZE_MAX);
}

/* Sequence numbers count up from 1 per direction; every seal uses a new
 * nonce and the envelope says so. */
static void test_round_trip(void **state)
{
        struct kms_session_crypto_info info;
        struct kms_envelope_header h;
        struct pair pr;
        struct env e;
        char text[64];

        pair_new(&pr, NULL, T0);
        for (unsigned i = 1; i <= 20; i++) {
                snprintf(text, sizeof(text), "alice %u", i);
                seal_ok(pr.alice, T0 + i, text, i % 2 ? "aad" : NULL, &e);
                assert_int_equal(kms_session_crypto_parse_header(e.b, e.len, &h), 0);
                assert_int_equal(h.seq, i);
                assert_int_equal(h.direction, KMS_SESSION_I2R);
                assert_true(h.timestamp_ms == T0 + i);
                open_ok(pr.bob, T0 + i, &e, i % 2 ? "aad" : NULL, text);

                snprintf(text, sizeof(text), "bob %u", i);
                seal_ok(pr.bob, T0 + i, text, NULL, &e);
                assert_int_equal(kms_session_crypto_parse_header(e.b, e.len, &h), 0);
                assert_int_equal(h.seq, i);
                assert_int_equal(h.direction, KMS_SESSION_R2I);
                open_ok(pr.alice, T0 + i, &e, NULL, text);
        }
        /* An empty plaintext is a message too. */
        seal_ok(pr.alice, T0, "", "only aad", &e);
        open_ok(pr.bob, T0, &e, "only aad", "");
        kms_session_crypto_get_info(pr.bob, &info);
        assert_int_equal(info.sent, 20);
        assert_int_equal(info.received, 21);
        assert_int_equal(info.highest_received, 21);
        pair_free(&pr);
}

/* ------------------------------------------------------------ rejections */

static void test_replay(void **state)
{
        struct pair pr;
        struct env e1, e2;

        pair_new(&pr, NULL, T0);
        seal_ok(pr.alice, T0, "one", NULL, &e1);
        seal_ok(pr.alice, T0, "two", NULL, &e2);
        open_ok(pr.bob, T0, &e1, NULL, "one");
        open_env_fails(pr.bob, T0, &e1, NULL, KMS_E_SESSION_REPLAY);
        open_ok(pr.bob, T0, &e2, NULL, "two");
        open_env_fails(pr.bob, T0, &e2, NULL, KMS_E_SESSION_REPLAY);
        open_env_fails(pr.bob, T0, &e1, NULL, KMS_E_SESSION_REPLAY);
        pair_free(&pr);
}

/* Default policy: only a sequence number above the newest is accepted;
 * gaps (lost messages) are fine, an older unseen one is "reordered". */
static void test_reorder_and_gap(void **state)
{
        struct kms_session_crypto_info info;
        struct pair pr;
        struct env e[80];

        pair_new(&pr, NULL, T0);
        for (size_t i = 1; i < ELEMENTSOF(e); i++)
                seal_ok(pr.alice, T0, "m", NULL, &e[i]);
        open_ok(pr.bob, T0, &e[1], NULL, "m");
        open_ok(pr.bob, T0, &e[3], NULL, "m"); /* 2 lost: a gap */
        open_env_fails(pr.bob, T0, &e[2], NULL, KMS_E_SESSION_REORDERED);
        open_env_fails(pr.bob, T0, &e[3], NULL, KMS_E_SESSION_REPLAY);
        open_env_fails(pr.bob, T0, &e[1], NULL, KMS_E_SESSION_REPLAY);
        open_ok(pr.bob, T0, &e[4], NULL, "m");
        /* A jump of more than the 64 remembered numbers: still fine, and
         * everything behind it is reordered (its history is gone). */
        open_ok(pr.bob, T0, &e[79], NULL, "m");
        open_env_fails(pr.bob, T0, &e[4], NULL, KMS_E_SESSION_REORDERED);
        open_env_fails(pr.bob, T0, &e[78], NULL, KMS_E_SESSION_REORDERED);
        open_env_fails(pr.bob, T0, &e[79], NULL, KMS_E_SESSION_REPLAY);
        kms_session_crypto_get_info(pr.bob, &info);
        assert_int_equal(info.received, 4);
        assert_int_equal(info.highest_received, 79);
        pair_free(&pr);
}

/* With a reordering window of n, an unseen number up to n behind the
 * newest opens once; further behind it is reordered. */
static void test_reorder_window(void **state)
{
        struct kms_session_crypto_params p = params_default();
        struct pair pr;
        struct env e[80];

        p.reorder_window = 2;
        pair_new(&pr, &p, T0);
        for (size_t i = 1; i < ELEMENTSOF(e); i++)
                seal_ok(pr.alice, T0, "m", NULL, &e[i]);
        open_ok(pr.bob, T0, &e[5], NULL, "m");
        open_ok(pr.bob, T0, &e[3], NULL, "m"); /* 2 behind */
        open_ok(pr.bob, T0, &e[4], NULL, "m"); /* 1 behind */
        open_env_fails(pr.bob, T0, &e[3], NULL, KMS_E_SESSION_REPLAY);
        open_env_fails(pr.bob, T0, &e[2], NULL, KMS_E_SESSION_REORDERED); /* 3 behind */
        open_env_fails(pr.bob, T0, &e[5], NULL, KMS_E_SESSION_REPLAY);
        open_ok(pr.bob, T0, &e[6], NULL, "m");
        open_env_fails(pr.bob, T0, &e[4], NULL, KMS_E_SESSION_REPLAY); /* seen, still remembered */
        pair_free(&pr);

        /* The widest window: 63 behind is accepted, 64 is not. */
        p.reorder_window = KMS_SESSION_MAX_REORDER_WINDOW;
        pair_new(&pr, &p, T0);
        for (size_t i = 1; i < ELEMENTSOF(e); i++)
                seal_ok(pr.alice, T0, "m", NULL, &e[i]);
        open_ok(pr.bob, T0, &e[70], NULL, "m");
        open_env_fails(pr.bob, T0, &e[6], NULL, KMS_E_SESSION_REORDERED);
        open_ok(pr.bob, T0, &e[7], NULL, "m");
        open_env_fails(pr.bob, T0, &e[7], NULL, KMS_E_SESSION_REPLAY);
        pair_free(&pr);
}

static void test_stale_and_future(void **state)
{
        struct kms_session_crypto_params p = params_default();
        struct pair pr;
        struct env old, edge, ahead, late;

        p.stale_ms = 300000;
        p.skew_ms = 60000;
        pair_new(&pr, &p, T0);
        seal_ok(pr.alice, T0, "old", NULL, &old);
        seal_ok(pr.alice, T0 + 1000, "edge", NULL, &edge);
        seal_ok(pr.alice, T0 + 1000 + 60001, "ahead", NULL, &ahead);
        seal_ok(pr.alice, T0 + 2000, "late", NULL, &late);

        /* 300001 ms old: stale. Exactly 300000: accepted (below). */
        open_env_fails(pr.bob, T0 + 300001, &old, NULL, KMS_E_SESSION_STALE);
        /* 60001 ms ahead of Bob's clock: from the future. */
        open_env_fails(pr.bob, T0 + 1000, &ahead, NULL, KMS_E_SESSION_STALE);
        /* Rejections moved nothing: the same envelopes open at a time
         * that suits them, in order. */
        open_ok(pr.bob, T0 + 300000, &old, NULL, "old");
        open_ok(pr.bob, T0 + 1000 - 60000, &edge, NULL, "edge"); /* exactly skew_ms ahead */
        open_ok(pr.bob, T0 + 1000 + 60001, &ahead, NULL, "ahead");
        /* Stale and replayed: the replay verdict comes first. */
        open_env_fails(pr.bob, T0 + 10000000, &old, NULL, KMS_E_SESSION_REPLAY);
        open_ok(pr.bob, T0 + 2000, &late, NULL, "late");
        pair_free(&pr);
}

static void test_tampering(void **state)
{
        struct pair pr;
        struct env e, t, own;
        size_t ct_off = KMS_ENVELOPE_HEADER_BYTES;

        pair_new(&pr, NULL, T0);
        seal_ok(pr.alice, T0, "attack at dawn", "aad", &e);
        size_t tag_off = e.len - KMS_ENVELOPE_TAG_BYTES;

        /* One bit flipped anywhere. */
        for (size_t i = 0; i < e.len; i++) {
                int want = KMS_E_SESSION_INTEGRITY;

                t = e;
                t.b[i] ^= (i == 1) ? 0x01 : 0x80;
                if (i == 0 || i == 1)
                        want = KMS_E_SESSION_MALFORMED; /* version, direction */
                open_env_fails(pr.bob, T0, &t, "aad", want);
        }
        /* seq and timestamp rewritten: the tag covers the header. */
        t = e;
        t.b[9] = 7;
        open_env_fails(pr.bob, T0, &t, "aad", KMS_E_SESSION_INTEGRITY);
        t = e;
        t.b[17] ^= 0x10;
        open_env_fails(pr.bob, T0, &t, "aad", KMS_E_SESSION_INTEGRITY);
        t = e;
        memset(t.b + 2, 0, 8); /* seq 0 */
        open_env_fails(pr.bob, T0, &t, "aad", KMS_E_SESSION_MALFORMED);
        /* Ciphertext, tag, AAD. */
        t = e;
        t.b[ct_off + 3] ^= 1;
        open_env_fails(pr.bob, T0, &t, "aad", KMS_E_SESSION_INTEGRITY);
        t = e;
        t.b[tag_off + 15] ^= 1;
        open_env_fails(pr.bob, T0, &t, "aad", KMS_E_SESSION_INTEGRITY);
        open_env_fails(pr.bob, T0, &e, "aae", KMS_E_SESSION_INTEGRITY);
        open_env_fails(pr.bob, T0, &e, "aadx", KMS_E_SESSION_INTEGRITY);
        open_env_fails(pr.bob, T0, &e, NULL, KMS_E_SESSION_INTEGRITY);
        /* Cut short: one byte less (tag misplaced), and below the minimum. */
        open_fails(pr.bob, T0, e.b, e.len - 1, "aad", KMS_E_SESSION_INTEGRITY);
        open_fails(pr.bob, T0, e.b, KMS_ENVELOPE_OVERHEAD - 1, "aad", KMS_E_SESSION_MALFORMED);
        open_fails(pr.bob, T0, e.b, 0, "aad", KMS_E_SESSION_MALFORMED);
        /* One of Alice's own envelopes, reflected back to her. */
        seal_ok(pr.alice, T0, "mine", NULL, &own);
        open_env_fails(pr.alice, T0, &own, NULL, KMS_E_SESSION_MALFORMED);
        /* An envelope of another session (other context → other keys). */
        {
                _cleanup_(freep) uint8_t *z = NULL, *spki_a = NULL, *spki_b = NULL;
                _cleanup_(kms_session_crypto_freep) struct kms_session_crypto *other = NULL;
                size_t z_len, a_len, b_len;
                struct env o;

                z = vec_bytes("z", &z_len);
                spki_a = vec_bytes("spki_initiator", &a_len);
                spki_b = vec_bytes("spki_responder", &b_len);
                assert_int_equal(kms_session_crypto_new(KMS_SESSION_INITIATOR, z, z_len, spki_a, a_len, spki_b, b_len,
                                                        (const uint8_t *)"other", 5, NULL, T0, &other),
                                 0);
                seal_ok(other, T0, "attack at dawn", "aad", &o);
                open_env_fails(pr.bob, T0, &o, "aad", KMS_E_SESSION_INTEGRITY);
        }

        /* After all that, the genuine envelope still opens, once. */
        open_ok(pr.bob, T0, &e, "aad", "attack at dawn");
        open_env_fails(pr.bob, T0, &e, "aad", KMS_E_SESSION_REPLAY);
        pair_free(&pr);
}

/* ------------------------------------------------------------ limits */

static void test_send_limit(void **state)
{
        struct kms_session_crypto_params p = params_default();
        struct kms_session_crypto_info info;
        struct pair pr;
        struct env e;
        uint8_t out[64];
        size_t n = 0x5a5a;

        assert_int_equal(p.max_messages, 100);
        pair_new(&pr, NULL, T0);
        for (unsigned i = 0; i < 100; i++)
                seal_ok(pr.alice, T0, "x", NULL, &e);
        assert_int_equal(kms_session_crypto_seal(pr.alice, T0, (const uint8_t *)"x", 1, NULL, 0, out, sizeof(out), &n),
                         KMS_E_SESSION_EXHAUSTED);
        assert_int_equal(n, 0x5a5a);
        kms_session_crypto_get_info(pr.alice, &info);
        assert_int_equal(info.sent, 100);
        /* The other direction has its own count. */
        seal_ok(pr.bob, T0, "y", NULL, &e);
        open_ok(pr.alice, T0, &e, NULL, "y");
        pair_free(&pr);
}

static void test_receive_limit(void **state)
{
        struct kms_session_crypto_params p = params_default();
        _cleanup_(freep) uint8_t *z = NULL, *spki_a = NULL, *spki_b = NULL;
        _cleanup_(kms_session_crypto_freep) struct kms_session_crypto *alice = NULL, *bob = NULL;
        size_t z_len, a_len, b_len;
        struct env e[6];

        /* Alice may send 5, Bob accepts 3. */
        z = vec_bytes("z", &z_len);
        spki_a = vec_bytes("spki_initiator", &a_len);
        spki_b = vec_bytes("spki_responder", &b_len);
        p.max_messages = 5;
        assert_int_equal(kms_session_crypto_new(KMS_SESSION_INITIATOR, z, z_len, spki_a, a_len, spki_b, b_len, NULL, 0,
                                                &p, T0, &alice),
                         0);
        p.max_messages = 3;
        assert_int_equal(kms_session_crypto_new(KMS_SESSION_RESPONDER, z, z_len, spki_b, b_len, spki_a, a_len, NULL, 0,
                                                &p, T0, &bob),
                         0);
        for (size_t i = 1; i < ELEMENTSOF(e); i++)
                seal_ok(alice, T0, "m", NULL, &e[i]);
        open_ok(bob, T0, &e[1], NULL, "m");
        /* Number 4 is above Bob's limit: exhausted, and nothing moved. */
        open_env_fails(bob, T0, &e[4], NULL, KMS_E_SESSION_EXHAUSTED);
        open_ok(bob, T0, &e[2], NULL, "m");
        open_ok(bob, T0, &e[3], NULL, "m");
        /* Three accepted: whatever comes now is refused as exhausted. */
        open_env_fails(bob, T0, &e[5], NULL, KMS_E_SESSION_EXHAUSTED);
        open_env_fails(bob, T0, &e[3], NULL, KMS_E_SESSION_EXHAUSTED);
}

static void test_expiry(void **state)
{
        struct kms_session_crypto_params p = params_default();
        struct kms_session_crypto_info info;
        struct pair pr;
        struct env e, late;
        uint8_t out[64];
        size_t n = 0x5a5a;

        assert_true(p.ttl_ms == 24ull * 3600 * 1000);
        p.ttl_ms = 1000;
        pair_new(&pr, &p, T0);
        kms_session_crypto_get_info(pr.alice, &info);
        assert_true(info.created_ms == T0);
        assert_true(info.expires_ms == T0 + 1000);
        assert_false(kms_session_crypto_expired(pr.alice, T0 + 999));
        assert_true(kms_session_crypto_expired(pr.alice, T0 + 1000));

        seal_ok(pr.alice, T0 + 999, "in time", NULL, &e);
        seal_ok(pr.alice, T0 + 999, "too late", NULL, &late);
        assert_int_equal(
                kms_session_crypto_seal(pr.alice, T0 + 1000, (const uint8_t *)"x", 1, NULL, 0, out, sizeof(out), &n),
                KMS_E_SESSION_EXPIRED);
        assert_int_equal(n, 0x5a5a);
        open_ok(pr.bob, T0 + 999, &e, NULL, "in time");
        open_env_fails(pr.bob, T0 + 1000, &late, NULL, KMS_E_SESSION_EXPIRED);
        pair_free(&pr);
}

static void test_sizes(void **state)
{
        struct kms_session_crypto_params p = params_default();
        struct kms_session_crypto_info before, after;
        static uint8_t big[KMS_SESSION_MAX_AAD_BYTES + 1];
        uint8_t env[200], out[200];
        size_t n = 0x5a5a, m = 0x5a5a;
        struct pair pr;

        assert_int_equal(p.max_plaintext, 1024 * 1024);
        p.max_plaintext = 100;
        pair_new(&pr, &p, T0);

        kms_session_crypto_get_info(pr.alice, &before);
        assert_int_equal(kms_session_crypto_seal(pr.alice, T0, big, 101, NULL, 0, env, sizeof(env), &n), -EMSGSIZE);
        assert_int_equal(kms_session_crypto_seal(pr.alice, T0, big, 1, big, sizeof(big), env, sizeof(env), &n),
                         -EMSGSIZE);
        assert_int_equal(
                kms_session_crypto_seal(pr.alice, T0, big, 100, NULL, 0, env, 100 + KMS_ENVELOPE_OVERHEAD - 1, &n),
                -ENOBUFS);
        assert_int_equal(n, 0x5a5a);
        kms_session_crypto_get_info(pr.alice, &after);
        assert_memory_equal(&before, &after, sizeof(before));

        /* The biggest plaintext and AAD allowed. */
        assert_int_equal(
                kms_session_crypto_seal(pr.alice, T0, big, 100, big, KMS_SESSION_MAX_AAD_BYTES, env, sizeof(env), &n),
                0);
        assert_int_equal(n, 100 + KMS_ENVELOPE_OVERHEAD);
        open_fails(pr.bob, T0, env, n, NULL, KMS_E_SESSION_INTEGRITY);
        open_fails(pr.bob, T0, env, n + 1, NULL, -EMSGSIZE);
        kms_session_crypto_get_info(pr.bob, &before);
        assert_int_equal(kms_session_crypto_open(pr.bob, T0, env, n, big, sizeof(big), out, sizeof(out), &m),
                         -EMSGSIZE);
        assert_int_equal(kms_session_crypto_open(pr.bob, T0, env, n, big, KMS_SESSION_MAX_AAD_BYTES, out, 99, &m),
                         -ENOBUFS);
        assert_int_equal(m, 0x5a5a);
        kms_session_crypto_get_info(pr.bob, &after);
        assert_memory_equal(&before, &after, sizeof(before));
        assert_int_equal(
                kms_session_crypto_open(pr.bob, T0, env, n, big, KMS_SESSION_MAX_AAD_BYTES, out, sizeof(out), &m), 0);
        assert_int_equal(m, 100);
        pair_free(&pr);
}

/* ------------------------------------------------------------ arguments */

enum param_field {
        P_TTL,
        P_MAX_MESSAGES,
        P_STALE,
        P_SKEW,
        P_MAX_PLAINTEXT,
        P_REORDER_WINDOW,
};

static void param_set(struct kms_session_crypto_params *p, enum param_field f, uint64_t v)
{
        switch (f) {
        case P_TTL: p->ttl_ms = v; break;
        case P_MAX_MESSAGES: p->max_messages = v; break;
        case P_STALE: p->stale_ms = v; break;
        case P_SKEW: p->skew_ms = v; break;
        case P_MAX_PLAINTEXT: p->max_plaintext = (size_t)v; break;
        case P_REORDER_WINDOW: p->reorder_window = (unsigned)v; break;
        }
}

static void test_new_rejects(void **state)
{
        _cleanup_(freep) uint8_t *z = NULL, *spki_a = NULL, *spki_b = NULL;
        struct kms_session_crypto *s = (struct kms_session_crypto *)&s;
        struct kms_session_crypto *const sentinel = s;
        size_t z_len, a_len, b_len;
        struct kms_session_crypto_params p;

        z = vec_bytes("z", &z_len);
        spki_a = vec_bytes("spki_initiator", &a_len);
        spki_b = vec_bytes("spki_responder", &b_len);

#define NEW(role, params, now)                                                                                         \
        kms_session_crypto_new(role, z, z_len, spki_a, a_len, spki_b, b_len, NULL, 0, params, now, &s)
        assert_int_equal(NEW((enum kms_session_role)2, NULL, T0), -EINVAL);
        assert_int_equal(NEW(KMS_SESSION_ROLE_INVALID, NULL, T0), -EINVAL);
        assert_int_equal(NEW(KMS_SESSION_INITIATOR, NULL, UINT64_MAX - 10), -EINVAL); /* expiry overflows */

        static const struct {
                const char *what;
                enum param_field field;
                uint64_t value;
        } bad[] = {
                {"ttl_ms 0", P_TTL, 0},
                {"ttl_ms over the ceiling", P_TTL, KMS_SESSION_MAX_TTL_MS + 1},
                {"max_messages 0", P_MAX_MESSAGES, 0},
                {"max_messages over the ceiling", P_MAX_MESSAGES, KMS_SESSION_MAX_MESSAGES_CEILING + 1},
                {"stale_ms 0", P_STALE, 0},
                {"stale_ms over the ceiling", P_STALE, KMS_SESSION_MAX_WINDOW_MS + 1},
                {"skew_ms over the ceiling", P_SKEW, KMS_SESSION_MAX_WINDOW_MS + 1},
                {"max_plaintext over the ceiling", P_MAX_PLAINTEXT, KMS_SESSION_MAX_PLAINTEXT_CEILING + 1},
                {"reorder_window over the ceiling", P_REORDER_WINDOW, KMS_SESSION_MAX_REORDER_WINDOW + 1},
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                kms_session_crypto_params_init(&p);
                param_set(&p, bad[i].field, bad[i].value);
                if (NEW(KMS_SESSION_INITIATOR, &p, T0) != -EINVAL)
                        fail_msg("params with %s accepted", bad[i].what);
        }
        /* Key schedule errors come through. */
        assert_int_equal(kms_session_crypto_new(KMS_SESSION_RESPONDER, z, 0, spki_a, a_len, spki_b, b_len, NULL, 0,
                                                NULL, T0, &s),
                         -EINVAL);
        assert_int_equal(kms_session_crypto_new(KMS_SESSION_RESPONDER, z, z_len, spki_a, a_len - 1, spki_b, b_len, NULL,
                                                0, NULL, T0, &s),
                         -EINVAL);
        assert_ptr_equal(s, sentinel);
        assert_int_equal(kms_session_crypto_new(KMS_SESSION_RESPONDER, z, z_len, spki_a, a_len, spki_b, b_len, NULL, 0,
                                                NULL, T0, NULL),
                         -EINVAL);

        /* The ceilings themselves are accepted. */
        p = (struct kms_session_crypto_params){
                .ttl_ms = KMS_SESSION_MAX_TTL_MS,
                .max_messages = KMS_SESSION_MAX_MESSAGES_CEILING,
                .stale_ms = KMS_SESSION_MAX_WINDOW_MS,
                .skew_ms = KMS_SESSION_MAX_WINDOW_MS,
                .max_plaintext = KMS_SESSION_MAX_PLAINTEXT_CEILING,
                .reorder_window = KMS_SESSION_MAX_REORDER_WINDOW,
        };
        assert_int_equal(NEW(KMS_SESSION_INITIATOR, &p, T0), 0);
        kms_session_crypto_free(s);
        kms_session_crypto_free(NULL);
#undef NEW
}

static void test_seal_open_reject_null(void **state)
{
        uint8_t buf[64];
        size_t n = 0x5a5a;
        struct pair pr;
        struct env e;

        pair_new(&pr, NULL, T0);
        assert_int_equal(kms_session_crypto_seal(NULL, T0, buf, 1, NULL, 0, buf, sizeof(buf), &n), -EINVAL);
        assert_int_equal(kms_session_crypto_seal(pr.alice, T0, NULL, 1, NULL, 0, buf, sizeof(buf), &n), -EINVAL);
        assert_int_equal(kms_session_crypto_seal(pr.alice, T0, buf, 1, NULL, 1, buf, sizeof(buf), &n), -EINVAL);
        assert_int_equal(kms_session_crypto_seal(pr.alice, T0, buf, 1, NULL, 0, NULL, sizeof(buf), &n), -EINVAL);
        assert_int_equal(kms_session_crypto_seal(pr.alice, T0, buf, 1, NULL, 0, buf, sizeof(buf), NULL), -EINVAL);
        seal_ok(pr.alice, T0, "", NULL, &e);
        assert_int_equal(kms_session_crypto_open(NULL, T0, e.b, e.len, NULL, 0, buf, sizeof(buf), &n), -EINVAL);
        assert_int_equal(kms_session_crypto_open(pr.bob, T0, NULL, e.len, NULL, 0, buf, sizeof(buf), &n), -EINVAL);
        assert_int_equal(kms_session_crypto_open(pr.bob, T0, e.b, e.len, NULL, 1, buf, sizeof(buf), &n), -EINVAL);
        assert_int_equal(kms_session_crypto_open(pr.bob, T0, e.b, e.len, NULL, 0, NULL, 1, &n), -EINVAL);
        assert_int_equal(kms_session_crypto_open(pr.bob, T0, e.b, e.len, NULL, 0, buf, sizeof(buf), NULL), -EINVAL);
        assert_int_equal(n, 0x5a5a);
        /* An empty plaintext needs no output buffer. */
        assert_int_equal(kms_session_crypto_open(pr.bob, T0, e.b, e.len, NULL, 0, NULL, 0, &n), 0);
        assert_int_equal(n, 0);
        pair_free(&pr);
}

/* ------------------------------------------------------------ the rest */

static void test_secure_heap(void **state)
{
        size_t used;
        struct pair pr;

        assert_true(kms_secure_heap_active());
        assert_int_equal(kms_secure_heap_init(1u << 16), -EALREADY);
        assert_int_equal(kms_secure_heap_init(3000), -EINVAL);
        assert_int_equal(kms_secure_heap_init(1u << 11), -EINVAL);
        assert_int_equal(kms_secure_heap_init((1u << 16) + 1), -EINVAL);

        /* Each session takes exactly its one block of keys. */
        used = CRYPTO_secure_used();
        pair_new(&pr, NULL, T0);
        assert_int_equal(CRYPTO_secure_used(), used + 2 * KMS_SESSION_SECURE_BYTES);
        pair_free(&pr);
        assert_int_equal(CRYPTO_secure_used(), used);
}

static void test_session_id(void **state)
{
        char a[KMS_SESSION_ID_STRING_SIZE], b[KMS_SESSION_ID_STRING_SIZE];
        uint8_t bytes[KMS_SESSION_ID_BYTES], keep[KMS_SESSION_ID_BYTES];

        assert_int_equal(kms_session_id_new(a), 0);
        assert_int_equal(kms_session_id_new(b), 0);
        assert_int_equal(strlen(a), 36);
        assert_string_not_equal(a, b);
        assert_int_equal(a[14], '4');
        assert_non_null(strchr("89ab", a[19]));
        assert_int_equal(kms_session_id_parse(a, bytes), 0);
        assert_int_equal(kms_session_id_parse(a, NULL), 0);
        assert_int_equal(bytes[6] >> 4, 4);
        assert_int_equal(bytes[8] & 0xc0, 0x80);
        {
                /* Round trip through the bytes. */
                _cleanup_(freep) char *h = kms_hex_encode(bytes, sizeof(bytes));
                char want[64];

                snprintf(want, sizeof(want), "%.8s%.4s%.4s%.4s%.12s", a, a + 9, a + 14, a + 19, a + 24);
                assert_string_equal(h, want);
        }

        assert_int_equal(kms_session_id_parse("0b6f6a3e-5c1d-4b8e-9a7f-2d3c4b5a6978", NULL), 0);
        memset(keep, 0x5a, sizeof(keep));
        memcpy(bytes, keep, sizeof(bytes));
        static const char *const bad[] = {
                "",
                "0b6f6a3e-5c1d-4b8e-9a7f-2d3c4b5a697",   /* short */
                "0b6f6a3e-5c1d-4b8e-9a7f-2d3c4b5a69780", /* long */
                "0B6F6A3E-5C1D-4B8E-9A7F-2D3C4B5A6978",  /* upper case */
                "0b6f6a3e5c1d-4b8e-9a7f-2d3c4b5a69780",  /* dash missing */
                "0b6f6a3e-5c1d-3b8e-9a7f-2d3c4b5a6978",  /* version 3 */
                "0b6f6a3e-5c1d-4b8e-ca7f-2d3c4b5a6978",  /* variant 11 */
                "0b6f6a3e-5c1d-4b8e-7a7f-2d3c4b5a6978",  /* variant 0 */
                "0b6f6a3e-5c1d-4b8e-9a7f-2d3c4b5a697g",  /* not hex */
                "{0b6f6a3e-5c1d-4b8e-9a7f-2d3c4b5a697}", /* braces */
                " 0b6f6a3e-5c1d-4b8e-9a7f-2d3c4b5a6978",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                if (kms_session_id_parse(bad[i], bytes) != -EINVAL)
                        fail_msg("accepted \"%s\"", bad[i]);
                assert_memory_equal(bytes, keep, sizeof(keep));
        }
        assert_int_equal(kms_session_id_parse(NULL, bytes), -EINVAL);
}

static void test_strings(void **state)
{
        static const int codes[] = {
                KMS_E_SESSION_EXPIRED,
                KMS_E_SESSION_EXHAUSTED,
                KMS_E_SESSION_MALFORMED,
                KMS_E_SESSION_INTEGRITY,
                KMS_E_SESSION_REPLAY,
                KMS_E_SESSION_REORDERED,
                KMS_E_SESSION_STALE,
                -EINVAL,
                -EMSGSIZE,
                -ENOBUFS,
                -ENOMEM,
        };

        /* Every code has its own sentence, so a log line tells them apart. */
        for (size_t i = 0; i < ELEMENTSOF(codes); i++) {
                assert_string_not_equal(kms_session_crypto_strerror(codes[i]), "unknown error");
                for (size_t j = 0; j < i; j++) {
                        assert_int_not_equal(codes[i], codes[j]);
                        assert_string_not_equal(kms_session_crypto_strerror(codes[i]),
                                                kms_session_crypto_strerror(codes[j]));
                }
        }
        assert_string_equal(kms_session_crypto_strerror(-EPERM), "unknown error");

        /* The session codes are kmsd's alone: none is one of kms-error.h's
         * named codes, so each can be mapped to its own bus error. */
        {
                static const int session_codes[] = {
                        KMS_E_SESSION_EXPIRED, KMS_E_SESSION_MALFORMED, KMS_E_SESSION_INTEGRITY,
                        KMS_E_SESSION_REPLAY,  KMS_E_SESSION_REORDERED, KMS_E_SESSION_STALE,
                };
                static const int named[] = {
                        KMS_E_BACKEND,   KMS_E_STORE, KMS_E_REVOKED, KMS_E_DISABLED,
                        KMS_E_DESTROYED, KMS_E_STATE, KMS_E_POLICY,
                };
                for (size_t i = 0; i < ELEMENTSOF(session_codes); i++)
                        for (size_t j = 0; j < ELEMENTSOF(named); j++)
                                assert_int_not_equal(session_codes[i], named[j]);
        }

        assert_string_equal(kms_session_role_to_string(KMS_SESSION_INITIATOR), "initiator");
        assert_string_equal(kms_session_role_to_string(KMS_SESSION_RESPONDER), "responder");
        assert_null(kms_session_role_to_string(KMS_SESSION_ROLE_INVALID));
        assert_int_equal(kms_session_role_from_string("initiator"), KMS_SESSION_INITIATOR);
        assert_int_equal(kms_session_role_from_string("responder"), KMS_SESSION_RESPONDER);
        assert_int_equal(kms_session_role_from_string("Initiator"), KMS_SESSION_ROLE_INVALID);
        assert_int_equal(kms_session_role_from_string(""), KMS_SESSION_ROLE_INVALID);
        assert_int_equal(kms_session_role_from_string(NULL), KMS_SESSION_ROLE_INVALID);
}

int main(int argc, char **argv)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_hkdf_rfc5869),
                cmocka_unit_test(test_hkdf_rejects),
                cmocka_unit_test(test_vector_key_schedule),
                cmocka_unit_test(test_vector_envelopes),
                cmocka_unit_test(test_key_schedule_symmetric),
                cmocka_unit_test(test_key_schedule_inputs),
                cmocka_unit_test(test_key_schedule_rejects),
                cmocka_unit_test(test_nonce_and_header),
                cmocka_unit_test(test_round_trip),
                cmocka_unit_test(test_replay),
                cmocka_unit_test(test_reorder_and_gap),
                cmocka_unit_test(test_reorder_window),
                cmocka_unit_test(test_stale_and_future),
                cmocka_unit_test(test_tampering),
                cmocka_unit_test(test_send_limit),
                cmocka_unit_test(test_receive_limit),
                cmocka_unit_test(test_expiry),
                cmocka_unit_test(test_sizes),
                cmocka_unit_test(test_new_rejects),
                cmocka_unit_test(test_seal_open_reject_null),
                cmocka_unit_test(test_secure_heap),
                cmocka_unit_test(test_session_id),
                cmocka_unit_test(test_strings),
        };
        int r;

        if (argc > 1)
                vector_path = argv[1];
        if (vector_load() < 0)
                return 1;
        /* Like kmsd: the secure heap first. 1 = not locked (low
         * RLIMIT_MEMLOCK), which the tests do not care about. */
        r = kms_secure_heap_init(1u << 16);
        if (r < 0) {
                fprintf(stderr, "kms_secure_heap_init: %d\n", r);
                return 1;
        }
        return cmocka_run_group_tests(tests, NULL, NULL);
}
