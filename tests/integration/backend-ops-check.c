/* backend-ops-check: the PKCS#11 backend's derive and decrypt operations
 * against a real token, for tests/integration/backend-ops.sh. It opens the
 * backend as kmsd does (kms_pkcs11_open, one worker), generates keys, and
 * checks every answer against OpenSSL computing the other side in this
 * process: ECDH on P-256 and P-384 (including a secret with a leading zero
 * byte), RSA-OAEP-SHA-256 decryption, and the refusals (wrong usage, bad
 * lengths, bad ciphertexts, unknown keys). It also looks inside the
 * backend (pkcs11-internal.h) to plant a stale cached handle and an
 * operation left active, and to count the secret-key objects left in the
 * worker's session, which must stay zero.
 *
 * usage: backend-ops-check MODULE TOKEN_LABEL PIN_FILE
 *
 * Prints "PASS: ..." or "FAIL: ..." per check and "INFO: ..." for what the
 * token may answer either way; exits 0 only if every check passed. Set
 * KMS_TEST_DEBUG=1 for the backend's debug log (CK_RV names only). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "check.h"
#include "kms-backend.h"
#include "kms-key.h"
#include "kms-log.h"
#include "kms-pkcs11.h"
#include "pkcs11-internal.h"

#define TOKEN_PREFIX "kmsd-backend-ops:"

struct ctx {
        struct kms_backend *b;
        struct kms_backend_worker *w;
        const struct kms_backend_ops *ops;
};

static struct kms_pkcs11_worker *P(struct ctx *c)
{
        return (struct kms_pkcs11_worker *)c->w;
}

/* Objects of class cls visible to the worker's session (session objects
 * included), or -1. */
static long count_objects(struct ctx *c, CK_OBJECT_CLASS cls)
{
        CK_FUNCTION_LIST *f = P(c)->p->f;
        CK_SESSION_HANDLE s = P(c)->session;
        CK_ATTRIBUTE t = {CKA_CLASS, &cls, sizeof(cls)};
        CK_OBJECT_HANDLE h[64];
        CK_ULONG n = 0;
        long total = 0;

        if (f->C_FindObjectsInit(s, &t, 1) != CKR_OK)
                return -1;
        do {
                if (f->C_FindObjects(s, h, 64, &n) != CKR_OK) {
                        total = -1;
                        break;
                }
                total += (long)n;
        } while (n > 0);
        f->C_FindObjectsFinal(s);
        return total;
}

static EVP_PKEY *pkey_from_spki(const uint8_t *spki, size_t len)
{
        const unsigned char *p = spki;

        return d2i_PUBKEY(NULL, &p, (long)len);
}

static int generate(struct ctx *c, enum kms_algorithm alg, unsigned usages, const char *label,
                    uint8_t id[KMS_KEY_ID_BYTES], EVP_PKEY **ret_pub)
{
        uint8_t *spki = NULL;
        size_t spki_len = 0;
        int r;

        memset(id, 0, KMS_KEY_ID_BYTES); /* a random CKA_ID */
        r = c->ops->generate(c->w, alg, usages, label, id, &spki, &spki_len);

        check(r == 0, "generate %s usages 0x%x (%s)", kms_algorithm_to_string(alg), usages, check_err_name(r));
        if (r < 0)
                return r;
        *ret_pub = pkey_from_spki(spki, spki_len);
        free(spki);
        check(*ret_pub != NULL, "%s: the SPKI parses", label);
        return *ret_pub ? 0 : -EINVAL;
}

/* ---------------------------------------------------------------- ECDH */

static const char *group_of(enum kms_algorithm alg)
{
        return alg == KMS_ALG_EC_P256 ? "P-256" : "P-384";
}

/* A fresh peer key on alg's curve, its uncompressed point in point, and
 * the shared secret OpenSSL computes with the token's public key. */
static int peer_side(enum kms_algorithm alg, EVP_PKEY *token_pub, uint8_t *point, size_t *point_len, uint8_t *secret,
                     size_t *secret_len)
{
        EVP_PKEY *peer = EVP_PKEY_Q_keygen(NULL, NULL, "EC", group_of(alg));
        EVP_PKEY_CTX *dctx = NULL;
        int r = -1;

        if (!peer)
                goto out;
        if (EVP_PKEY_get_octet_string_param(peer, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, point, 2 * 66 + 1, point_len) !=
            1)
                goto out;
        dctx = EVP_PKEY_CTX_new_from_pkey(NULL, peer, NULL);
        *secret_len = KMS_MAX_ECDH_SECRET_BYTES;
        if (!dctx || EVP_PKEY_derive_init(dctx) != 1 || EVP_PKEY_derive_set_peer(dctx, token_pub) != 1 ||
            EVP_PKEY_derive(dctx, secret, secret_len) != 1)
                goto out;
        r = 0;
out:
        ERR_print_errors_fp(stderr);
        EVP_PKEY_CTX_free(dctx);
        EVP_PKEY_free(peer);
        return r;
}

/* Derive through the backend and compare with OpenSSL; returns 1 on a match. */
static int derive_matches(struct ctx *c, enum kms_algorithm alg, const uint8_t id[KMS_KEY_ID_BYTES],
                          const uint8_t *point, size_t point_len, const uint8_t *want, size_t want_len, int *ret_r)
{
        uint8_t got[KMS_MAX_ECDH_SECRET_BYTES];
        size_t got_len = 0;
        int ok;

        *ret_r = c->ops->derive(c->w, id, alg, point, point_len, got, &got_len);
        ok = *ret_r == 0 && got_len == want_len && CRYPTO_memcmp(got, want, want_len) == 0;
        OPENSSL_cleanse(got, sizeof(got));
        return ok;
}

static void ec_checks(struct ctx *c, enum kms_algorithm alg)
{
        const char *name = kms_algorithm_to_string(alg);
        size_t coord = kms_algorithm_size(alg);
        uint8_t id[KMS_KEY_ID_BYTES], sign_id[KMS_KEY_ID_BYTES];
        EVP_PKEY *pub = NULL, *sign_pub = NULL;
        uint8_t point[2 * 66 + 1], bad[2 * 66 + 4], secret[KMS_MAX_ECDH_SECRET_BYTES];
        uint8_t out[KMS_MAX_ECDH_SECRET_BYTES];
        size_t point_len = 0, secret_len = 0, out_len = 12345;
        int r, ok = 1;
        char label[64];

        snprintf(label, sizeof(label), TOKEN_PREFIX "%s-derive", name);
        if (generate(c, alg, KMS_USAGE_SIGN | KMS_USAGE_DERIVE, label, id, &pub) < 0)
                return;

        /* Several peers: the first one teaches the backend the point form. */
        for (int i = 0; i < 6 && ok; i++) {
                if (peer_side(alg, pub, point, &point_len, secret, &secret_len) < 0) {
                        check(0, "%s: OpenSSL peer side", name);
                        break;
                }
                ok = derive_matches(c, alg, id, point, point_len, secret, secret_len, &r);
                check(ok, "%s: ECDH secret #%d (%zu bytes) = OpenSSL's EVP_PKEY_derive (%s)", name, i + 1, secret_len,
                      check_err_name(r));
        }
        check(secret_len == coord, "%s: the secret is the field size, %zu bytes", name, coord);

        /* A secret whose first byte is zero must keep its full length. */
        ok = 0;
        for (int i = 0; i < 8192; i++) {
                if (peer_side(alg, pub, point, &point_len, secret, &secret_len) < 0)
                        break;
                if (secret_len == coord && secret[0] == 0x00) {
                        ok = 1;
                        break;
                }
        }
        if (ok) {
                ok = derive_matches(c, alg, id, point, point_len, secret, secret_len, &r);
                check(ok, "%s: a secret with a leading zero byte keeps all %zu bytes (%s)", name, coord,
                      check_err_name(r));
        } else
                check(0, "%s: no peer with a leading-zero secret found in 8192 tries", name);

        /* The DER-wrapped form the backend falls back to for modules that
         * want it (SoftHSMv2 takes both forms). */
        {
                int form = atomic_load(&P(c)->p->point_form);

                atomic_store(&P(c)->p->point_form, KMS_PKCS11_POINT_DER);
                ok = derive_matches(c, alg, id, point, point_len, secret, secret_len, &r);
                check(ok, "%s: ECDH with the point passed DER-wrapped gives the same secret (%s)", name,
                      check_err_name(r));
                atomic_store(&P(c)->p->point_form, form);
        }

        /* A stale cached handle is dropped and the key found again. */
        kms_pkcs11_cache_put(&P(c)->p->cache, id, (CK_OBJECT_HANDLE)0x7fff1234);
        ok = derive_matches(c, alg, id, point, point_len, secret, secret_len, &r);
        check(ok, "%s: derive through a stale cached handle finds the key again (%s)", name, check_err_name(r));

        /* Refusals, with the outputs untouched. */
        memset(out, 0xa5, sizeof(out));
        r = c->ops->derive(c->w, id, alg, point, point_len - 1, out, &out_len);
        check_rc(r, -EINVAL, "derive with a point one byte short");
        check(out[0] == 0xa5 && out[coord - 1] == 0xa5 && out_len == 12345, "%s: outputs untouched on failure", name);
        bad[0] = 0x04;
        bad[1] = (uint8_t)point_len;
        memcpy(bad + 2, point, point_len);
        r = c->ops->derive(c->w, id, alg, bad, point_len + 2, out, &out_len);
        check_rc(r, -EINVAL, "derive with a DER-wrapped point (the caller passes the raw point)");
        memcpy(bad, point, coord + 1);
        bad[0] = 0x02 | (point[point_len - 1] & 1);
        r = c->ops->derive(c->w, id, alg, bad, coord + 1, out, &out_len);
        check_rc(r, -EINVAL, "derive with a compressed point");
        memcpy(bad, point, point_len);
        bad[0] = 0x05;
        r = c->ops->derive(c->w, id, alg, bad, point_len, out, &out_len);
        check_rc(r, -EINVAL, "derive with a point that does not start with 0x04");
        r = c->ops->derive(c->w, id, alg == KMS_ALG_EC_P256 ? KMS_ALG_EC_P384 : KMS_ALG_EC_P256, point, point_len, out,
                           &out_len);
        check_rc(r, -EINVAL, "derive with the other curve's algorithm (point size mismatch)");
        r = c->ops->derive(c->w, id, KMS_ALG_RSA_2048, point, point_len, out, &out_len);
        check_rc(r, -EINVAL, "derive with an RSA algorithm");

        /* Not on the curve, and the all-zero point: the daemon validates
         * peers first, so the token may say either; it must not crash or
         * leave anything behind. */
        memcpy(bad, point, point_len);
        bad[point_len - 1] ^= 0x01;
        r = c->ops->derive(c->w, id, alg, bad, point_len, out, &out_len);
        printf("INFO: %s: derive with a point off the curve -> %s\n", name, check_err_name(r));
        check(r == 0 || r == -EINVAL || r == -EIO, "%s: a point off the curve is answered, not crashed on (%s)", name,
              check_err_name(r));
        memset(bad, 0, point_len);
        bad[0] = 0x04;
        r = c->ops->derive(c->w, id, alg, bad, point_len, out, &out_len);
        printf("INFO: %s: derive with the point (0, 0) -> %s\n", name, check_err_name(r));
        check(r == 0 || r == -EINVAL || r == -EIO, "%s: the point (0, 0) is answered, not crashed on (%s)", name,
              check_err_name(r));
        OPENSSL_cleanse(out, sizeof(out));

        /* A key without the derive usage: CKA_DERIVE is false. */
        snprintf(label, sizeof(label), TOKEN_PREFIX "%s-sign-only", name);
        if (generate(c, alg, KMS_USAGE_SIGN, label, sign_id, &sign_pub) == 0) {
                if (peer_side(alg, sign_pub, point, &point_len, secret, &secret_len) == 0) {
                        r = c->ops->derive(c->w, sign_id, alg, point, point_len, out, &out_len);
                        check_rc(r, -EPERM, "derive with a key created without the derive usage");
                }
                check_rc(c->ops->destroy(c->w, sign_id), 0, "destroy the sign-only key");
        }

        check(count_objects(c, CKO_SECRET_KEY) == 0, "%s: no secret-key object left in the session", name);

        /* After destroy the key is gone, cache or not. */
        check_rc(c->ops->destroy(c->w, id), 0, "destroy the derive key");
        r = c->ops->derive(c->w, id, alg, point, point_len, out, &out_len);
        check_rc(r, -ENOENT, "derive with a destroyed key");

        OPENSSL_cleanse(secret, sizeof(secret));
        OPENSSL_cleanse(out, sizeof(out));
        EVP_PKEY_free(pub);
        EVP_PKEY_free(sign_pub);
}

/* ---------------------------------------------------------------- RSA-OAEP */

/* OAEP-encrypt msg to pub with md for OAEP and MGF1 (NULL: PKCS#1 v1.5). */
static int encrypt_to(EVP_PKEY *pub, const char *md, const uint8_t *msg, size_t msg_len, uint8_t *ct, size_t *ct_len)
{
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pub, NULL);
        int ok = ctx && EVP_PKEY_encrypt_init(ctx) == 1;

        if (ok && md)
                ok = EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) == 1 &&
                     EVP_PKEY_CTX_set_rsa_oaep_md_name(ctx, md, NULL) == 1 &&
                     EVP_PKEY_CTX_set_rsa_mgf1_md_name(ctx, md, NULL) == 1;
        else if (ok)
                ok = EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1;
        *ct_len = KMS_MAX_RSA_BYTES;
        ok = ok && EVP_PKEY_encrypt(ctx, ct, ct_len, msg, msg_len) == 1;
        ERR_print_errors_fp(stderr);
        EVP_PKEY_CTX_free(ctx);
        return ok ? 0 : -1;
}

/* Decrypt through the backend; 1 if the result is msg. */
static int decrypt_matches(struct ctx *c, enum kms_algorithm alg, const uint8_t id[KMS_KEY_ID_BYTES], const uint8_t *ct,
                           size_t ct_len, const uint8_t *msg, size_t msg_len, int *ret_r)
{
        uint8_t out[KMS_MAX_RSA_BYTES];
        size_t out_len = 0;
        int ok;

        *ret_r = c->ops->decrypt(c->w, id, alg, ct, ct_len, out, &out_len);
        ok = *ret_r == 0 && out_len == msg_len && (msg_len == 0 || CRYPTO_memcmp(out, msg, msg_len) == 0);
        OPENSSL_cleanse(out, sizeof(out));
        return ok;
}

static void rsa_checks(struct ctx *c, enum kms_algorithm alg)
{
        const char *name = kms_algorithm_to_string(alg);
        size_t k = kms_algorithm_size(alg);
        size_t sizes[] = {32, 0, 1, k - 2 * 32 - 2};
        uint8_t id[KMS_KEY_ID_BYTES], sign_id[KMS_KEY_ID_BYTES];
        EVP_PKEY *pub = NULL, *sign_pub = NULL;
        uint8_t msg[KMS_MAX_RSA_BYTES], ct[KMS_MAX_RSA_BYTES], bad[KMS_MAX_RSA_BYTES + 1], out[KMS_MAX_RSA_BYTES];
        size_t ct_len = 0, out_len = 12345;
        char label[64];
        int r, ok;

        snprintf(label, sizeof(label), TOKEN_PREFIX "%s-decrypt", name);
        if (generate(c, alg, KMS_USAGE_DECRYPT, label, id, &pub) < 0)
                return;

        for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
                if (RAND_bytes(msg, sizeof(msg)) != 1 || encrypt_to(pub, "SHA256", msg, sizes[i], ct, &ct_len) < 0) {
                        check(0, "%s: OpenSSL OAEP-SHA-256 encryption of %zu bytes", name, sizes[i]);
                        continue;
                }
                ok = decrypt_matches(c, alg, id, ct, ct_len, msg, sizes[i], &r);
                check(ok, "%s: OAEP-SHA-256 decryption of %zu random bytes = the plaintext (%s)", name, sizes[i],
                      check_err_name(r));
        }
        printf("INFO: RSA-OAEP-SHA-256 is decoded %s\n",
               atomic_load(&P(c)->p->oaep_mode) == KMS_PKCS11_OAEP_HOST
                       ? "on the host after raw RSA in the token (the token refused SHA-256 OAEP parameters)"
                       : "in the token");

        /* The working ciphertext for the checks below: 32 bytes. */
        if (encrypt_to(pub, "SHA256", msg, 32, ct, &ct_len) < 0)
                check(0, "%s: OpenSSL OAEP encryption", name);

        /* An operation some other call left active in the session. */
        {
                CK_MECHANISM raw = {CKM_RSA_X_509, NULL, 0};
                CK_OBJECT_HANDLE key;
                CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
                CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_ID, id, sizeof(id)}};
                CK_FUNCTION_LIST *f = P(c)->p->f;
                CK_ULONG n = 0;
                CK_RV rv = CKR_GENERAL_ERROR;

                if (f->C_FindObjectsInit(P(c)->session, t, 2) == CKR_OK) {
                        if (f->C_FindObjects(P(c)->session, &key, 1, &n) != CKR_OK)
                                n = 0;
                        f->C_FindObjectsFinal(P(c)->session);
                        if (n == 1)
                                rv = f->C_DecryptInit(P(c)->session, &raw, key);
                }
                check(rv == CKR_OK, "%s: left a decryption active in the worker's session", name);
                ok = decrypt_matches(c, alg, id, ct, ct_len, msg, 32, &r);
                check(ok, "%s: decrypt still works with an operation left active (session replaced) (%s)", name,
                      check_err_name(r));
        }

        /* A stale cached handle. */
        kms_pkcs11_cache_put(&P(c)->p->cache, id, (CK_OBJECT_HANDLE)0x7fff4321);
        ok = decrypt_matches(c, alg, id, ct, ct_len, msg, 32, &r);
        check(ok, "%s: decrypt through a stale cached handle finds the key again (%s)", name, check_err_name(r));

        /* Bad ciphertexts: one answer for all, and the session stays usable. */
        memset(out, 0xa5, sizeof(out));
        memcpy(bad, ct, ct_len);
        bad[ct_len / 2] ^= 0x40;
        r = c->ops->decrypt(c->w, id, alg, bad, ct_len, out, &out_len);
        check_rc(r, -EBADMSG, "decrypt with one byte of the ciphertext flipped");
        check(out[0] == 0xa5 && out[k - 1] == 0xa5 && out_len == 12345, "%s: outputs untouched on failure", name);
        memset(bad, 0, k);
        r = c->ops->decrypt(c->w, id, alg, bad, k, out, &out_len);
        check_rc(r, -EBADMSG, "decrypt with an all-zero ciphertext");
        memset(bad, 0xff, k);
        r = c->ops->decrypt(c->w, id, alg, bad, k, out, &out_len);
        check_rc(r, -EBADMSG, "decrypt with a ciphertext above the modulus");
        memcpy(bad, ct, k);
        bad[0] = 0x00;
        bad[1] = 0x00;
        r = c->ops->decrypt(c->w, id, alg, bad, k, out, &out_len);
        check_rc(r, -EBADMSG, "decrypt with a ciphertext whose first two bytes are zero");
        if (encrypt_to(pub, "SHA1", msg, 32, bad, &ct_len) == 0) {
                r = c->ops->decrypt(c->w, id, alg, bad, ct_len, out, &out_len);
                check_rc(r, -EBADMSG, "decrypt of OAEP-SHA-1 (not the agreed hash)");
        }
        if (encrypt_to(pub, NULL, msg, 32, bad, &ct_len) == 0) {
                r = c->ops->decrypt(c->w, id, alg, bad, ct_len, out, &out_len);
                check_rc(r, -EBADMSG, "decrypt of PKCS#1 v1.5 padding");
        }
        ok = decrypt_matches(c, alg, id, ct, k, msg, 32, &r);
        check(ok, "%s: the good ciphertext still decrypts after the failures (%s)", name, check_err_name(r));

        memcpy(bad, ct, k);
        bad[k] = 0;
        r = c->ops->decrypt(c->w, id, alg, bad, k - 1, out, &out_len);
        check_rc(r, -EINVAL, "decrypt with a ciphertext one byte short");
        r = c->ops->decrypt(c->w, id, alg, bad, k + 1, out, &out_len);
        check_rc(r, -EINVAL, "decrypt with a ciphertext one byte long");
        r = c->ops->decrypt(c->w, id, KMS_ALG_EC_P256, ct, k, out, &out_len);
        check_rc(r, -EINVAL, "decrypt with an EC algorithm");
        check(out[0] == 0xa5 && out_len == 12345, "%s: outputs untouched after every refusal", name);

        /* A key without the decrypt usage: CKA_DECRYPT is false. */
        snprintf(label, sizeof(label), TOKEN_PREFIX "%s-sign-only", name);
        if (generate(c, alg, KMS_USAGE_SIGN, label, sign_id, &sign_pub) == 0) {
                if (encrypt_to(sign_pub, "SHA256", msg, 32, bad, &ct_len) == 0) {
                        r = c->ops->decrypt(c->w, sign_id, alg, bad, ct_len, out, &out_len);
                        check_rc(r, -EPERM, "decrypt with a key created without the decrypt usage");
                }
                check_rc(c->ops->destroy(c->w, sign_id), 0, "destroy the sign-only RSA key");
        }

        check_rc(c->ops->destroy(c->w, id), 0, "destroy the decrypt key");
        r = c->ops->decrypt(c->w, id, alg, ct, k, out, &out_len);
        check_rc(r, -ENOENT, "decrypt with a destroyed key");

        OPENSSL_cleanse(msg, sizeof(msg));
        OPENSSL_cleanse(out, sizeof(out));
        EVP_PKEY_free(pub);
        EVP_PKEY_free(sign_pub);
}

int main(int argc, char **argv)
{
        struct kms_pkcs11_config cfg = {0};
        struct ctx c = {0};
        uint8_t unknown[KMS_KEY_ID_BYTES], point[2 * 32 + 1] = {0x04}, ct[256], out[KMS_MAX_RSA_BYTES];
        size_t out_len = 0;
        char err[512] = "";
        const char *dbg = getenv("KMS_TEST_DEBUG");
        int r;

        if (argc != 4) {
                fprintf(stderr, "usage: backend-ops-check MODULE TOKEN_LABEL PIN_FILE\n");
                return 2;
        }
        kms_log_setup(KMS_LOG_STDERR, dbg && *dbg == '1' ? LOG_DEBUG : LOG_WARNING, "backend-ops-check");
        cfg.module = argv[1];
        cfg.token_label = argv[2];
        cfg.pin_file = argv[3];
        r = kms_pkcs11_open(&cfg, &c.b, err, sizeof(err));
        if (r < 0) {
                fprintf(stderr, "backend-ops-check: %s\n", err);
                return 1;
        }
        c.ops = c.b->ops;
        check(c.ops->derive != NULL && c.ops->decrypt != NULL, "the pkcs11 backend has derive and decrypt");
        r = c.ops->worker_open(c.b, &c.w);
        if (r < 0) {
                fprintf(stderr, "backend-ops-check: worker_open: %s\n", check_err_name(r));
                c.ops->free(c.b);
                return 1;
        }

        ec_checks(&c, KMS_ALG_EC_P256);
        ec_checks(&c, KMS_ALG_EC_P384);
        printf("INFO: the token takes the ECDH peer point %s\n",
               atomic_load(&P(&c)->p->point_form) == KMS_PKCS11_POINT_DER ? "DER-wrapped (OCTET STRING)" : "raw");
        rsa_checks(&c, KMS_ALG_RSA_2048);

        /* Keys that were never there. */
        if (RAND_bytes(unknown, sizeof(unknown)) == 1) {
                memset(point + 1, 0x11, sizeof(point) - 1);
                r = c.ops->derive(c.w, unknown, KMS_ALG_EC_P256, point, sizeof(point), out, &out_len);
                check_rc(r, -ENOENT, "derive with an unknown key id");
                memset(ct, 0x11, sizeof(ct));
                r = c.ops->decrypt(c.w, unknown, KMS_ALG_RSA_2048, ct, sizeof(ct), out, &out_len);
                check_rc(r, -ENOENT, "decrypt with an unknown key id");
        }

        check(count_objects(&c, CKO_SECRET_KEY) == 0, "no secret-key object left in the worker's session");
        check(count_objects(&c, CKO_PRIVATE_KEY) == 0 && count_objects(&c, CKO_PUBLIC_KEY) == 0,
              "every key this test made is destroyed");

        c.ops->worker_close(c.w);
        c.ops->free(c.b);
        printf("backend-ops-check: %u passed, %u failed\n", check_passed(), check_failed());
        return check_exit_status();
}
