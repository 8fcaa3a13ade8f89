/* tpm-backend-check: the TPM backend (tpm/) against swtpm, without kmsd
 * or a bus, for tests/integration/tpm-backend.sh. It opens the backend as
 * kmsd does (kms_tpm_open, workers) and checks every answer against
 * OpenSSL in this process: ECDSA, RSA PKCS#1 v1.5 and PSS signatures with
 * kmsd's own verify (kms_signature_verify) over the returned SPKI, ECDH
 * against EVP_PKEY_derive, RSA-OAEP-SHA-256 decryption, the refusals
 * (usage, lengths, bad ciphertexts, destroyed and unknown keys), more
 * keys than the TPM has slots used round robin while the transient
 * objects in the TPM are counted (TPM2_CAP_HANDLES through the backend's
 * own context: swtpm serves one connection at a time), and several
 * workers at once. It looks inside the backend (tpm-internal.h) for the
 * handle count and to make the TPM run out of object memory.
 *
 * usage: tpm-backend-check MODE TCTI DB DIR [OWNER_AUTH_FILE]
 *   create     the checks above; leaves in DIR what later modes and the
 *              script use: keep.id/keep.spki (an ec-p256 sign key),
 *              rsa-dec.id/rsa-dec.pem (an rsa-2048 decrypt key), and
 *              signatures for `openssl dgst -verify` (data.bin, *.sig,
 *              *.pem)
 *   reopen     a new process (after swtpm restarted too): what an earlier
 *              process left loaded is flushed, the kept keys work from
 *              their blobs; decrypts DIR/oaep.bin (openssl
 *              pkeyutl's) and compares it with DIR/plain.bin
 *   crash      loads a kept key and exits without closing the backend
 *   reconnect  the TPM goes away and comes back under an open backend:
 *              writes DIR/stepN and waits for DIR/goN from the script;
 *              then destroys the kept keys
 *   offline    the TPM is down: open fails, or succeeds with
 *              allow_unreachable and reports the TPM unavailable
 *   bad-auth   open must fail with -EACCES (OWNER_AUTH_FILE is wrong or
 *              has a bad mode)
 *
 * Prints "PASS: ..." or "FAIL: ..." per check and "INFO: ..." for what the
 * TPM may answer either way; exits 0 only if every check passed. Set
 * KMS_TEST_DEBUG=1 for the backend's debug log (Tss2_RC_Decode text). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include <tss2/tss2_mu.h>

#include "check.h"
#include "kms-backend.h"
#include "kms-key.h"
#include "kms-log.h"
#include "kms-tpm.h"
#include "kms-util.h"
#include "tpm-internal.h"

#define LABEL_PREFIX "kmsd-tpm-check:"
#define STRESS_KEYS 10
#define STRESS_OPS 3000
#define THREADS 4
#define THREAD_OPS 150

static const char *dir;

static double now_s(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---------------------------------------------------------------- files */

static int write_file(const char *name, const void *data, size_t len)
{
        char path[4096];
        FILE *f;
        int ok;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        f = fopen(path, "wbe");
        if (!f)
                return -errno;
        ok = fwrite(data, 1, len, f) == len;
        ok = fclose(f) == 0 && ok;
        return ok ? 0 : -EIO;
}

/* Reads DIR/name into a new buffer (at most 64 KiB). */
static int read_file(const char *name, uint8_t **ret, size_t *ret_len)
{
        char path[4096];
        uint8_t *buf;
        size_t n;
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        f = fopen(path, "rbe");
        if (!f)
                return -errno;
        buf = malloc(65536);
        if (!buf) {
                fclose(f);
                return -ENOMEM;
        }
        n = fread(buf, 1, 65536, f);
        fclose(f);
        *ret = buf;
        *ret_len = n;
        return 0;
}

static int write_pem(const char *name, const uint8_t *spki, size_t spki_len)
{
        const unsigned char *p = spki;
        EVP_PKEY *pkey = d2i_PUBKEY(NULL, &p, (long)spki_len);
        char path[4096];
        FILE *f;
        int ok;

        if (!pkey)
                return -EINVAL;
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        f = fopen(path, "we");
        ok = f && PEM_write_PUBKEY(f, pkey) == 1;
        if (f)
                ok = fclose(f) == 0 && ok;
        EVP_PKEY_free(pkey);
        return ok ? 0 : -EIO;
}

/* The script's turn: write DIR/stepN, wait (60 s at most) for DIR/goN. */
static int handshake(int n)
{
        char name[32], path[4096];

        snprintf(name, sizeof(name), "step%d", n);
        if (write_file(name, "", 0) < 0)
                return -EIO;
        snprintf(path, sizeof(path), "%s/go%d", dir, n);
        for (int i = 0; i < 600; i++) {
                FILE *f = fopen(path, "re");

                if (f) {
                        fclose(f);
                        return 0;
                }
                nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL);
        }
        return -ETIMEDOUT;
}

/* ---------------------------------------------------------------- the backend */

struct ctx {
        struct kms_backend *b;
        struct kms_backend_worker *w;
        const struct kms_backend_ops *ops;
        struct kms_tpm *t;
};

static int open_backend(struct ctx *c, const char *tcti, const char *db, const char *auth, bool allow_unreachable,
                        char *err, size_t errlen)
{
        struct kms_tpm_config cfg = {
                .tcti = tcti, .owner_auth_file = auth, .db_path = db, .allow_unreachable = allow_unreachable};
        int r;

        memset(c, 0, sizeof(*c));
        err[0] = '\0';
        r = kms_tpm_open(&cfg, &c->b, err, errlen);
        if (r < 0)
                return r;
        c->ops = c->b->ops;
        c->t = (struct kms_tpm *)c->b;
        r = c->ops->worker_open(c->b, &c->w);
        if (r < 0) {
                c->ops->free(c->b);
                c->b = NULL;
        }
        return r;
}

static void close_backend(struct ctx *c)
{
        if (!c->b)
                return;
        c->ops->worker_close(c->w);
        c->ops->free(c->b);
        c->b = NULL;
}

/* Transient objects in the TPM now, through the backend's own context. */
static long transient_count(struct ctx *c)
{
        unsigned n = 0;
        int r;

        pthread_mutex_lock(&c->t->lock);
        r = kms_tpm_transient_count(c->t, &n);
        pthread_mutex_unlock(&c->t->lock);
        return r < 0 ? -1 : (long)n;
}

struct key {
        enum kms_algorithm alg;
        uint8_t id[KMS_KEY_ID_BYTES];
        uint8_t *spki;
        size_t spki_len;
};

static void key_free(struct key *k)
{
        free(k->spki);
        k->spki = NULL;
}

static int generate(struct ctx *c, enum kms_algorithm alg, unsigned usages, const char *what, struct key *k)
{
        char label[128];
        int r;

        snprintf(label, sizeof(label), LABEL_PREFIX "%s", what);
        memset(k, 0, sizeof(*k));
        k->alg = alg;
        r = c->ops->generate(c->w, alg, usages, label, k->id, &k->spki, &k->spki_len);
        check(r == 0, "generate %s (%s, usages 0x%x) -> %s", what, kms_algorithm_to_string(alg), usages,
              check_err_name(r));
        return r;
}

/* Sign hash(data) through worker w and verify with kmsd's verify over the
 * key's SPKI. Returns 1 if the signature verifies, 0 if not, or the
 * backend's negative code; the signature goes to sig/sig_len if given. */
static int sign_verify(struct ctx *c, struct kms_backend_worker *w, const struct key *k, enum kms_hash h,
                       enum kms_padding pad, const uint8_t *data, size_t len, uint8_t *ret_sig, size_t *ret_sig_len)
{
        uint8_t digest[64], sig[KMS_MAX_SIGNATURE_BYTES];
        size_t sig_len = 0;
        int r;

        if (kms_hash_compute(h, data, len, digest) < 0)
                return -EINVAL;
        r = c->ops->sign(w, k->id, k->alg, h, pad, digest, kms_hash_length(h), sig, &sig_len);
        if (r < 0)
                return r;
        if (ret_sig) {
                memcpy(ret_sig, sig, sig_len);
                *ret_sig_len = sig_len;
        }
        return kms_signature_verify(k->spki, k->spki_len, k->alg, h, pad, data, len, sig, sig_len) == 1;
}

/* ---------------------------------------------------------------- EC */

static const uint8_t oid_p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
static const uint8_t oid_p384[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};

/* Named curve and an uncompressed point, as the PKCS#11 backend writes
 * them: 91 bytes for P-256, 120 for P-384. */
static void check_ec_spki(const struct key *k, const char *what)
{
        bool p256 = k->alg == KMS_ALG_EC_P256;
        const uint8_t *oid = p256 ? oid_p256 : oid_p384;
        size_t oid_len = p256 ? sizeof(oid_p256) : sizeof(oid_p384), want = p256 ? 91 : 120;
        size_t plen = 2 * kms_algorithm_size(k->alg) + 1;
        bool named = k->spki_len == want && memmem(k->spki, k->spki_len, oid, oid_len) != NULL;

        check(named && k->spki[k->spki_len - plen] == 0x04,
              "%s: SPKI is %zu bytes with the named curve OID and an uncompressed point (want %zu)", what, k->spki_len,
              want);
}

static EVP_PKEY *pkey_of(const struct key *k)
{
        const unsigned char *p = k->spki;

        return d2i_PUBKEY(NULL, &p, (long)k->spki_len);
}

/* A fresh peer on k's curve: its uncompressed point, and the secret
 * OpenSSL computes with k's public key. */
static int peer_side(const struct key *k, uint8_t *point, size_t *point_len, uint8_t *secret, size_t *secret_len)
{
        EVP_PKEY *peer = EVP_PKEY_Q_keygen(NULL, NULL, "EC", k->alg == KMS_ALG_EC_P256 ? "P-256" : "P-384");
        EVP_PKEY *pub = pkey_of(k);
        EVP_PKEY_CTX *dctx = NULL;
        int r = -1;

        if (!peer || !pub ||
            EVP_PKEY_get_octet_string_param(peer, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, point, 2 * 48 + 1, point_len) !=
                    1)
                goto out;
        dctx = EVP_PKEY_CTX_new_from_pkey(NULL, peer, NULL);
        *secret_len = KMS_MAX_ECDH_SECRET_BYTES;
        if (!dctx || EVP_PKEY_derive_init(dctx) != 1 || EVP_PKEY_derive_set_peer(dctx, pub) != 1 ||
            EVP_PKEY_derive(dctx, secret, secret_len) != 1)
                goto out;
        r = 0;
out:
        ERR_print_errors_fp(stderr);
        EVP_PKEY_CTX_free(dctx);
        EVP_PKEY_free(peer);
        EVP_PKEY_free(pub);
        return r;
}

static void ecdh_checks(struct ctx *c, const struct key *k, const struct key *sign_only, const char *what)
{
        size_t coord = kms_algorithm_size(k->alg);
        uint8_t point[2 * 48 + 1], bad[2 * 48 + 1], secret[KMS_MAX_ECDH_SECRET_BYTES], out[KMS_MAX_ECDH_SECRET_BYTES];
        size_t point_len = 0, secret_len = 0, out_len = 12345;
        int r, ok = 1;

        for (int i = 0; i < 4 && ok; i++) {
                if (peer_side(k, point, &point_len, secret, &secret_len) < 0) {
                        check(0, "%s: OpenSSL peer side", what);
                        return;
                }
                r = c->ops->derive(c->w, k->id, k->alg, point, point_len, out, &out_len);
                ok = r == 0 && out_len == secret_len && CRYPTO_memcmp(out, secret, secret_len) == 0;
                check(ok, "%s: ECDH_ZGen secret #%d (%zu bytes) = OpenSSL's EVP_PKEY_derive (%s)", what, i + 1, out_len,
                      check_err_name(r));
        }
        check(out_len == coord, "%s: the secret is the field size, %zu bytes", what, coord);

        memset(out, 0xa5, sizeof(out));
        out_len = 12345;
        r = c->ops->derive(c->w, k->id, k->alg, point, point_len - 1, out, &out_len);
        check_rc(r, -EINVAL, "derive with a point one byte short");
        memcpy(bad, point, point_len);
        bad[point_len - 1] ^= 0x01;
        r = c->ops->derive(c->w, k->id, k->alg, bad, point_len, out, &out_len);
        check(r == -EINVAL, "%s: derive with a point off the curve -> %s (want -EINVAL: TPM_RC_ECC_POINT)", what,
              check_err_name(r));
        r = c->ops->derive(c->w, k->id, KMS_ALG_RSA_2048, point, point_len, out, &out_len);
        check_rc(r, -EINVAL, "derive with an RSA algorithm");
        check(out[0] == 0xa5 && out_len == 12345, "%s: outputs untouched after the refusals", what);
        if (sign_only) {
                r = c->ops->derive(c->w, sign_only->id, sign_only->alg, point, point_len, out, &out_len);
                check_rc(r, -EPERM, "derive with a key created with the sign usage only");
        }
        OPENSSL_cleanse(secret, sizeof(secret));
        OPENSSL_cleanse(out, sizeof(out));
}

/* ---------------------------------------------------------------- RSA */

static int oaep_encrypt(const struct key *k, const char *md, const uint8_t *msg, size_t msg_len, uint8_t *ct,
                        size_t *ct_len)
{
        EVP_PKEY *pub = pkey_of(k);
        EVP_PKEY_CTX *ctx = pub ? EVP_PKEY_CTX_new_from_pkey(NULL, pub, NULL) : NULL;
        int ok = ctx && EVP_PKEY_encrypt_init(ctx) == 1 &&
                 EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) == 1 &&
                 EVP_PKEY_CTX_set_rsa_oaep_md_name(ctx, md, NULL) == 1 &&
                 EVP_PKEY_CTX_set_rsa_mgf1_md_name(ctx, md, NULL) == 1;

        *ct_len = KMS_MAX_RSA_BYTES;
        ok = ok && EVP_PKEY_encrypt(ctx, ct, ct_len, msg, msg_len) == 1;
        ERR_print_errors_fp(stderr);
        EVP_PKEY_CTX_free(ctx);
        EVP_PKEY_free(pub);
        return ok ? 0 : -1;
}

static void oaep_checks(struct ctx *c, const struct key *k, const struct key *sign_only)
{
        size_t n = kms_algorithm_size(k->alg);
        size_t sizes[] = {32, 0, 1, n - 2 * 32 - 2};
        uint8_t msg[KMS_MAX_RSA_BYTES], ct[KMS_MAX_RSA_BYTES], bad[KMS_MAX_RSA_BYTES], out[KMS_MAX_RSA_BYTES];
        size_t ct_len = 0, out_len = 12345;
        int r, ok;

        for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
                if (RAND_bytes(msg, sizeof(msg)) != 1 || oaep_encrypt(k, "SHA256", msg, sizes[i], ct, &ct_len) < 0) {
                        check(0, "OpenSSL OAEP-SHA-256 encryption of %zu bytes", sizes[i]);
                        continue;
                }
                r = c->ops->decrypt(c->w, k->id, k->alg, ct, ct_len, out, &out_len);
                ok = r == 0 && out_len == sizes[i] && (sizes[i] == 0 || CRYPTO_memcmp(out, msg, sizes[i]) == 0);
                check(ok, "rsa-2048: RSA_Decrypt OAEP-SHA-256 of %zu random bytes = the plaintext (%s)", sizes[i],
                      check_err_name(r));
        }
        if (oaep_encrypt(k, "SHA256", msg, 32, ct, &ct_len) < 0)
                return;

        memset(out, 0xa5, sizeof(out));
        out_len = 12345;
        memcpy(bad, ct, ct_len);
        bad[ct_len / 2] ^= 0x40;
        r = c->ops->decrypt(c->w, k->id, k->alg, bad, ct_len, out, &out_len);
        check_rc(r, -EBADMSG, "decrypt with one byte of the ciphertext flipped");
        memset(bad, 0xff, n);
        r = c->ops->decrypt(c->w, k->id, k->alg, bad, n, out, &out_len);
        check_rc(r, -EBADMSG, "decrypt with a ciphertext above the modulus");
        memset(bad, 0, n);
        r = c->ops->decrypt(c->w, k->id, k->alg, bad, n, out, &out_len);
        check_rc(r, -EBADMSG, "decrypt with an all-zero ciphertext");
        if (oaep_encrypt(k, "SHA1", msg, 32, bad, &ct_len) == 0) {
                r = c->ops->decrypt(c->w, k->id, k->alg, bad, ct_len, out, &out_len);
                check_rc(r, -EBADMSG, "decrypt of OAEP-SHA-1 (not the agreed hash)");
        }
        r = c->ops->decrypt(c->w, k->id, k->alg, ct, n - 1, out, &out_len);
        check_rc(r, -EINVAL, "decrypt with a ciphertext one byte short");
        r = c->ops->decrypt(c->w, k->id, KMS_ALG_EC_P256, ct, n, out, &out_len);
        check_rc(r, -EINVAL, "decrypt with an EC algorithm");
        check(out[0] == 0xa5 && out_len == 12345, "rsa-2048: outputs untouched after every refusal");
        r = c->ops->decrypt(c->w, k->id, k->alg, ct, n, out, &out_len);
        check(r == 0 && out_len == 32 && CRYPTO_memcmp(out, msg, 32) == 0,
              "rsa-2048: the good ciphertext still decrypts after the failures (%s)", check_err_name(r));
        if (sign_only && oaep_encrypt(sign_only, "SHA256", msg, 32, bad, &ct_len) == 0) {
                r = c->ops->decrypt(c->w, sign_only->id, sign_only->alg, bad, ct_len, out, &out_len);
                check_rc(r, -EPERM, "decrypt with a key created with the sign usage only");
        }
        OPENSSL_cleanse(msg, sizeof(msg));
        OPENSSL_cleanse(out, sizeof(out));
}

/* ---------------------------------------------------------------- many keys */

struct thread_arg {
        struct ctx *c;
        struct key *keys;
        unsigned n_keys, seed, ok, bad;
        long max_handles;
};

static void *thread_main(void *p)
{
        struct thread_arg *a = p;
        struct kms_backend_worker *w = NULL;
        uint8_t data[32];

        if (a->c->ops->worker_open(a->c->b, &w) < 0) {
                a->bad = THREAD_OPS;
                return NULL;
        }
        for (unsigned i = 0; i < THREAD_OPS; i++) {
                const struct key *k = &a->keys[(a->seed + i) % a->n_keys];

                memset(data, (int)(a->seed * 31 + i), sizeof(data));
                if (sign_verify(a->c, w, k, KMS_HASH_SHA256, KMS_PAD_NONE, data, sizeof(data), NULL, NULL) == 1)
                        a->ok++;
                else
                        a->bad++;
        }
        a->c->ops->worker_close(w);
        return NULL;
}

static void stress_checks(struct ctx *c)
{
        struct key keys[STRESS_KEYS];
        unsigned slots = c->t->transient_min, n_ok = 0, n_bad = 0, n_keys = 0;
        long most = 0, h;
        uint8_t data[48];
        double t0, dt;
        int r;

        for (unsigned i = 0; i < STRESS_KEYS; i++) {
                char what[32];

                snprintf(what, sizeof(what), "stress-%u", i);
                if (generate(c, KMS_ALG_EC_P256, KMS_USAGE_SIGN, what, &keys[n_keys]) == 0)
                        n_keys++;
        }
        if (n_keys == 0)
                return;
        printf("INFO: the TPM guarantees %u transient slots; the backend keeps %zu child keys loaded\n", slots,
               c->t->lru.cap);
        check(c->t->lru.cap >= 1 && c->t->lru.cap < slots, "the LRU is smaller than the TPM's slots (%zu < %u)",
              c->t->lru.cap, slots);

        t0 = now_s();
        for (unsigned i = 0; i < STRESS_OPS; i++) {
                const struct key *k = &keys[i % n_keys];

                memset(data, (int)i, sizeof(data));
                /* Verify every 10th signature; the rest only must not fail. */
                if (i % 10 == 0) {
                        r = sign_verify(c, c->w, k, KMS_HASH_SHA256, KMS_PAD_NONE, data, sizeof(data), NULL, NULL);
                } else {
                        uint8_t sig[KMS_MAX_SIGNATURE_BYTES];
                        size_t sig_len;

                        r = c->ops->sign(c->w, k->id, k->alg, KMS_HASH_SHA256, KMS_PAD_NONE, data, 32, sig, &sig_len);
                        r = r == 0 ? 1 : r;
                }
                if (r == 1)
                        n_ok++;
                else
                        n_bad++;
                if (i % 100 == 0) {
                        h = transient_count(c);
                        if (h < 0 || h > most)
                                most = h < 0 ? 1000 : h;
                }
        }
        dt = now_s() - t0;
        check(n_bad == 0, "%u signatures round robin over %u keys: %u good, %u failed", STRESS_OPS, n_keys, n_ok,
              n_bad);
        check(most >= 1 && most <= (long)slots,
              "transient objects in the TPM stayed within its %u slots during the run (at most %ld)", slots, most);
        printf("INFO: round robin over %u keys (a load and a flush per signature): %.0f signatures/s\n", n_keys,
               STRESS_OPS / dt);

        /* A TPM with fewer free slots than the backend thinks: the loads
         * run into TPM_RC_OBJECT_MEMORY, the LRU flushes and shrinks. */
        c->t->lru.cap = 8;
        n_ok = n_bad = 0;
        for (unsigned i = 0; i < 200; i++) {
                memset(data, (int)i, sizeof(data));
                r = sign_verify(c, c->w, &keys[i % n_keys], KMS_HASH_SHA256, KMS_PAD_NONE, data, sizeof(data), NULL,
                                NULL);
                if (r == 1)
                        n_ok++;
                else
                        n_bad++;
        }
        h = transient_count(c);
        check(n_bad == 0 && c->t->lru.cap < slots && h >= 1 && h <= (long)slots,
              "after TPM_RC_OBJECT_MEMORY the LRU shrank to %zu keys; 200 signatures good (%u failed), %ld objects "
              "loaded",
              c->t->lru.cap, n_bad, h);

        /* Several workers at once, each on its own thread. */
        {
                pthread_t th[THREADS];
                struct thread_arg args[THREADS];
                unsigned good = 0, bad = 0;

                for (unsigned i = 0; i < THREADS; i++) {
                        args[i] = (struct thread_arg){.c = c, .keys = keys, .n_keys = n_keys, .seed = i * 3};
                        if (pthread_create(&th[i], NULL, thread_main, &args[i]) != 0)
                                args[i].bad = THREAD_OPS;
                }
                for (unsigned i = 0; i < THREADS; i++) {
                        pthread_join(th[i], NULL);
                        good += args[i].ok;
                        bad += args[i].bad;
                }
                h = transient_count(c);
                check(bad == 0 && good == THREADS * THREAD_OPS && h >= 1 && h <= (long)slots,
                      "%d workers on %d threads: %u signatures verify, %u failed; %ld objects loaded", THREADS, THREADS,
                      good, bad, h);
        }

        /* Throughput on one loaded key: through the backend, and a bare
         * Esys_Sign loop on the same handle for comparison. */
        {
                uint8_t sig[KMS_MAX_SIGNATURE_BYTES];
                size_t sig_len;
                unsigned n = 500, bad_sigs = 0;
                struct kms_tpm_key *tk;

                t0 = now_s();
                for (unsigned i = 0; i < n; i++)
                        if (c->ops->sign(c->w, keys[0].id, keys[0].alg, KMS_HASH_SHA256, KMS_PAD_NONE, data, 32, sig,
                                         &sig_len) < 0)
                                bad_sigs++;
                dt = now_s() - t0;
                check(bad_sigs == 0, "%u ECDSA P-256 signatures with one loaded key", n);
                printf("INFO: ECDSA P-256 sign through the backend: %.0f signatures/s\n", n / dt);

                pthread_mutex_lock(&c->t->lock);
                tk = kms_tpm_lru_find(c->t, keys[0].id);
                if (tk) {
                        TPMT_SIG_SCHEME scheme = {.scheme = TPM2_ALG_ECDSA, .details.ecdsa.hashAlg = TPM2_ALG_SHA256};
                        TPMT_TK_HASHCHECK validation = {.tag = TPM2_ST_HASHCHECK, .hierarchy = TPM2_RH_NULL};
                        TPM2B_DIGEST d = {.size = 32};

                        t0 = now_s();
                        for (unsigned i = 0; i < n; i++) {
                                TPMT_SIGNATURE *s = NULL;

                                if (Esys_Sign(c->t->esys, tk->handle, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &d,
                                              &scheme, &validation, &s) != TSS2_RC_SUCCESS)
                                        bad_sigs++;
                                Esys_Free(s);
                        }
                        dt = now_s() - t0;
                        printf("INFO: ECDSA P-256 sign, bare Esys_Sign loop on the same handle: %.0f signatures/s\n",
                               n / dt);
                }
                pthread_mutex_unlock(&c->t->lock);
        }

        for (unsigned i = 0; i < n_keys; i++) {
                check_rc(c->ops->destroy(c->w, keys[i].id), 0, "destroy a stress key");
                key_free(&keys[i]);
        }
        h = transient_count(c);
        check(h == 1, "after destroying the stress keys only the SRK is loaded (%ld objects)", h);
}

/* ---------------------------------------------------------------- modes */

static int hex_id_write(const char *name, const uint8_t id[KMS_KEY_ID_BYTES])
{
        _cleanup_(freep) char *hex = kms_hex_encode(id, KMS_KEY_ID_BYTES);

        return hex ? write_file(name, hex, strlen(hex)) : -ENOMEM;
}

static int hex_id_read(const char *name, uint8_t id[KMS_KEY_ID_BYTES])
{
        _cleanup_(freep) uint8_t *buf = NULL, *raw = NULL;
        size_t len = 0, raw_len = 0;
        char hex[2 * KMS_KEY_ID_BYTES + 1];
        int r = read_file(name, &buf, &len);

        if (r < 0)
                return r;
        if (len != 2 * KMS_KEY_ID_BYTES)
                return -EINVAL;
        memcpy(hex, buf, len);
        hex[len] = '\0';
        r = kms_hex_decode(hex, &raw, &raw_len);
        if (r < 0 || raw_len != KMS_KEY_ID_BYTES)
                return -EINVAL;
        memcpy(id, raw, KMS_KEY_ID_BYTES);
        return 0;
}

static void count_cb(const uint8_t id[KMS_KEY_ID_BYTES], const char *label, void *userdata)
{
        (*(unsigned *)userdata)++;
}

struct find_arg {
        const uint8_t *id;
        int found;
};

static void find_cb(const uint8_t id[KMS_KEY_ID_BYTES], const char *label, void *userdata)
{
        struct find_arg *a = userdata;

        if (memcmp(id, a->id, KMS_KEY_ID_BYTES) == 0 && strncmp(label, LABEL_PREFIX, strlen(LABEL_PREFIX)) == 0)
                a->found++;
}

static int mode_create(struct ctx *c)
{
        static const uint8_t data[] = "kmsd TPM backend: a message to sign\n";
        struct key ec_sign, ec_derive, rsa_dec, rsa_sign, k = {0};
        struct kms_backend_info info;
        uint8_t sig[KMS_MAX_SIGNATURE_BYTES], digest[64];
        size_t sig_len = 0;
        long h;
        int r;

        r = c->ops->info(c->b, &info);
        check(r == 0 && !info.unavailable && info.manufacturer[0] && info.transient_max >= 3,
              "info: manufacturer \"%s\", model \"%s\", firmware %s, %u of %u transient slots free", info.manufacturer,
              info.model, info.firmware, info.transient_free, info.transient_max);
        h = transient_count(c);
        check(h == 1, "after open only the SRK is loaded (%ld transient objects)", h);
        check(c->t->session != ESYS_TR_NONE,
              "a salted session is open: ECDH_ZGen and RSA_Decrypt answers cross the bus encrypted");
        if (write_file("data.bin", data, sizeof(data) - 1) < 0)
                check(0, "write data.bin");

        /* ec-p256, sign only. */
        if (generate(c, KMS_ALG_EC_P256, KMS_USAGE_SIGN, "ec-p256-sign", &ec_sign) < 0)
                return 1;
        check_ec_spki(&ec_sign, "ec-p256-sign");
        r = sign_verify(c, c->w, &ec_sign, KMS_HASH_SHA256, KMS_PAD_NONE, data, sizeof(data) - 1, sig, &sig_len);
        check(r == 1, "ec-p256: ECDSA SHA-256 signature (DER, %zu bytes) verifies against the SPKI (%s)", sig_len,
              check_err_name(r < 0 ? r : 0));
        if (r == 1 &&
            (write_file("ecdsa.sig", sig, sig_len) < 0 || write_pem("ecdsa.pem", ec_sign.spki, ec_sign.spki_len) < 0))
                check(0, "write ecdsa.sig and ecdsa.pem");
        for (enum kms_hash hh = KMS_HASH_SHA384; hh <= KMS_HASH_SHA512; hh++) {
                r = sign_verify(c, c->w, &ec_sign, hh, KMS_PAD_NONE, data, sizeof(data) - 1, NULL, NULL);
                if (r == -EOPNOTSUPP)
                        printf("INFO: ec-p256: the TPM has no %s\n", kms_hash_to_string(hh));
                else
                        check(r == 1, "ec-p256: ECDSA %s signature verifies (%s)", kms_hash_to_string(hh),
                              check_err_name(r < 0 ? r : 0));
        }
        r = c->ops->sign(c->w, ec_sign.id, ec_sign.alg, KMS_HASH_SHA256, KMS_PAD_PKCS1, digest, 32, sig, &sig_len);
        check_rc(r, -EINVAL, "ECDSA key with PKCS#1 padding");
        r = c->ops->sign(c->w, ec_sign.id, ec_sign.alg, KMS_HASH_SHA256, KMS_PAD_NONE, digest, 31, sig, &sig_len);
        check_rc(r, -EINVAL, "sign a digest of the wrong length");

        /* ec-p256, derive only. */
        if (generate(c, KMS_ALG_EC_P256, KMS_USAGE_DERIVE, "ec-p256-derive", &ec_derive) == 0) {
                check_ec_spki(&ec_derive, "ec-p256-derive");
                ecdh_checks(c, &ec_derive, &ec_sign, "ec-p256");
                r = sign_verify(c, c->w, &ec_derive, KMS_HASH_SHA256, KMS_PAD_NONE, data, 8, NULL, NULL);
                check_rc(r, -EPERM, "sign with a key created with the derive usage only");
                check_rc(c->ops->destroy(c->w, ec_derive.id), 0, "destroy the derive key");
                key_free(&ec_derive);
        }

        /* ec-p384, both usages, where the TPM has the curve. */
        memset(k.id, 0, sizeof(k.id));
        r = c->ops->generate(c->w, KMS_ALG_EC_P384, KMS_USAGE_SIGN | KMS_USAGE_DERIVE, LABEL_PREFIX "ec-p384", k.id,
                             &k.spki, &k.spki_len);
        if (r == -EOPNOTSUPP)
                printf("INFO: this TPM has no NIST P-384 (generate -> -EOPNOTSUPP)\n");
        else {
                check(r == 0, "generate ec-p384 (sign, derive) -> %s", check_err_name(r));
                if (r == 0) {
                        k.alg = KMS_ALG_EC_P384;
                        check_ec_spki(&k, "ec-p384");
                        r = sign_verify(c, c->w, &k, KMS_HASH_SHA384, KMS_PAD_NONE, data, sizeof(data) - 1, NULL, NULL);
                        check(r == 1, "ec-p384: ECDSA SHA-384 signature verifies (%s)", check_err_name(r < 0 ? r : 0));
                        ecdh_checks(c, &k, NULL, "ec-p384");
                        check_rc(c->ops->destroy(c->w, k.id), 0, "destroy the ec-p384 key");
                        key_free(&k);
                }
        }

        /* rsa-2048, sign: PKCS#1 v1.5 and PSS. */
        if (generate(c, KMS_ALG_RSA_2048, KMS_USAGE_SIGN, "rsa-2048-sign", &rsa_sign) == 0) {
                r = sign_verify(c, c->w, &rsa_sign, KMS_HASH_SHA256, KMS_PAD_PKCS1, data, sizeof(data) - 1, sig,
                                &sig_len);
                check(r == 1 && sig_len == 256, "rsa-2048: PKCS#1 v1.5 SHA-256 signature (%zu bytes) verifies (%s)",
                      sig_len, check_err_name(r < 0 ? r : 0));
                if (r == 1)
                        (void)write_file("rsa-pkcs1.sig", sig, sig_len);
                r = sign_verify(c, c->w, &rsa_sign, KMS_HASH_SHA256, KMS_PAD_PSS, data, sizeof(data) - 1, sig,
                                &sig_len);
                check(r == 1, "rsa-2048: PSS SHA-256 signature verifies with salt = digest length (%s)",
                      check_err_name(r < 0 ? r : 0));
                if (r == 1)
                        (void)write_file("rsa-pss.sig", sig, sig_len);
                (void)write_pem("rsa-sign.pem", rsa_sign.spki, rsa_sign.spki_len);
                r = sign_verify(c, c->w, &rsa_sign, KMS_HASH_SHA384, KMS_PAD_PSS, data, sizeof(data) - 1, NULL, NULL);
                check(r == 1, "rsa-2048: PSS SHA-384 signature verifies (%s)", check_err_name(r < 0 ? r : 0));
                r = sign_verify(c, c->w, &rsa_sign, KMS_HASH_SHA256, KMS_PAD_NONE, data, 8, NULL, NULL);
                check_rc(r, -EINVAL, "RSA key without padding");
        }

        /* rsa-2048, decrypt. */
        if (generate(c, KMS_ALG_RSA_2048, KMS_USAGE_DECRYPT, "rsa-2048-decrypt", &rsa_dec) == 0) {
                oaep_checks(c, &rsa_dec, rsa_sign.spki ? &rsa_sign : NULL);
                r = sign_verify(c, c->w, &rsa_dec, KMS_HASH_SHA256, KMS_PAD_PKCS1, data, 8, NULL, NULL);
                check_rc(r, -EPERM, "sign with a key created with the decrypt usage only");
                if (hex_id_write("rsa-dec.id", rsa_dec.id) < 0 ||
                    write_pem("rsa-dec.pem", rsa_dec.spki, rsa_dec.spki_len) < 0)
                        check(0, "write rsa-dec.id and rsa-dec.pem");
        }

        /* Larger RSA where the TPM has it. */
        for (enum kms_algorithm a = KMS_ALG_RSA_3072; a <= KMS_ALG_RSA_4096; a++) {
                double t0 = now_s();

                memset(k.id, 0, sizeof(k.id));
                r = c->ops->generate(c->w, a, KMS_USAGE_SIGN, LABEL_PREFIX "rsa-large", k.id, &k.spki, &k.spki_len);
                if (r == -EOPNOTSUPP) {
                        printf("INFO: this TPM cannot make %s keys (generate -> -EOPNOTSUPP)\n",
                               kms_algorithm_to_string(a));
                        continue;
                }
                check(r == 0, "generate %s -> %s (%.1f s)", kms_algorithm_to_string(a), check_err_name(r),
                      now_s() - t0);
                if (r < 0)
                        continue;
                k.alg = a;
                r = sign_verify(c, c->w, &k, KMS_HASH_SHA256, KMS_PAD_PSS, data, sizeof(data) - 1, NULL, NULL);
                check(r == 1, "%s: PSS signature verifies (%s)", kms_algorithm_to_string(a),
                      check_err_name(r < 0 ? r : 0));
                check_rc(c->ops->destroy(c->w, k.id), 0, "destroy the large RSA key");
                key_free(&k);
        }

        /* Lookups, destroy, unknown keys. */
        {
                struct find_arg fa = {.id = ec_sign.id};
                uint8_t unknown[KMS_KEY_ID_BYTES], point[65] = {0x04}, out[KMS_MAX_RSA_BYTES];
                size_t out_len;

                check(c->ops->exists(c->w, ec_sign.id) == 1, "exists: a live key is there");
                check(c->ops->enumerate(c->w, LABEL_PREFIX, find_cb, &fa) == 0 && fa.found == 1,
                      "enumerate with the label prefix lists the key once (%d)", fa.found);
                fa.found = 0;
                check(c->ops->enumerate(c->w, "no-such-prefix:", find_cb, &fa) == 0 && fa.found == 0,
                      "enumerate with another prefix does not list it");
                if (rsa_sign.spki) {
                        /* Its private blob, for the script to look for in
                         * the database files after the destroy. */
                        TPM2B_PUBLIC pub;
                        TPM2B_PRIVATE priv;
                        uint8_t blob[sizeof(TPM2B_PRIVATE)];
                        size_t blob_len = 0;

                        if (kms_tpm_store_get(c->t, rsa_sign.id, &pub, &priv) < 0 ||
                            Tss2_MU_TPM2B_PRIVATE_Marshal(&priv, blob, sizeof(blob), &blob_len) != TSS2_RC_SUCCESS ||
                            write_file("destroyed-private.bin", blob, blob_len) < 0)
                                check(0, "write the private blob of the RSA sign key");
                        check_rc(c->ops->destroy(c->w, rsa_sign.id), 0, "destroy the RSA sign key");
                        r = sign_verify(c, c->w, &rsa_sign, KMS_HASH_SHA256, KMS_PAD_PKCS1, data, 8, NULL, NULL);
                        check_rc(r, -ENOENT, "sign with a destroyed key");
                        check_rc(c->ops->destroy(c->w, rsa_sign.id), 0, "destroy it again (idempotent)");
                        check(c->ops->exists(c->w, rsa_sign.id) == 0, "exists: a destroyed key is not there");
                }
                if (RAND_bytes(unknown, sizeof(unknown)) == 1) {
                        memcpy(k.id, unknown, sizeof(unknown));
                        k.alg = KMS_ALG_EC_P256;
                        k.spki = ec_sign.spki;
                        k.spki_len = ec_sign.spki_len;
                        r = sign_verify(c, c->w, &k, KMS_HASH_SHA256, KMS_PAD_NONE, data, 8, NULL, NULL);
                        check_rc(r, -ENOENT, "sign with an unknown key id");
                        memset(point + 1, 0x11, 64);
                        r = c->ops->derive(c->w, unknown, KMS_ALG_EC_P256, point, 65, out, &out_len);
                        check_rc(r, -ENOENT, "derive with an unknown key id");
                        memset(out, 0x11, 256);
                        r = c->ops->decrypt(c->w, unknown, KMS_ALG_RSA_2048, out, 256, out, &out_len);
                        check_rc(r, -ENOENT, "decrypt with an unknown key id");
                }
        }
        key_free(&rsa_sign);

        stress_checks(c);

        /* What the later modes use. */
        if (hex_id_write("keep.id", ec_sign.id) < 0 || write_file("keep.spki", ec_sign.spki, ec_sign.spki_len) < 0)
                check(0, "write keep.id and keep.spki");
        key_free(&ec_sign);
        key_free(&rsa_dec);
        return 0;
}

/* The kept ec-p256 key from keep.id/keep.spki. */
static int kept_key(struct key *k)
{
        int r;

        memset(k, 0, sizeof(*k));
        k->alg = KMS_ALG_EC_P256;
        r = hex_id_read("keep.id", k->id);
        if (r == 0)
                r = read_file("keep.spki", &k->spki, &k->spki_len);
        check(r == 0, "read keep.id and keep.spki (%s)", check_err_name(r));
        return r;
}

/* Load the kept key and exit without closing the backend, as a killed
 * kmsd would: the SRK and the key stay loaded in swtpm (no resource
 * manager), for the next open to flush. */
static int mode_crash(struct ctx *c)
{
        static const uint8_t data[] = "about to crash\n";
        struct key k;
        int r;

        if (kept_key(&k) < 0)
                return 1;
        r = sign_verify(c, c->w, &k, KMS_HASH_SHA256, KMS_PAD_NONE, data, sizeof(data) - 1, NULL, NULL);
        check(r == 1, "the kept key signs (%s)", check_err_name(r < 0 ? r : 0));
        check(transient_count(c) == 2, "the SRK and the kept key are loaded");
        key_free(&k);
        printf("tpm-backend-check crash: %u passed, %u failed; exiting without closing the backend\n", check_passed(),
               check_failed());
        fflush(stdout);
        _exit(check_failed() == 0 ? 0 : 1);
}

static int mode_reopen(struct ctx *c)
{
        static const uint8_t data[] = "signed after a restart of the backend and of the TPM\n";
        uint8_t sig[KMS_MAX_SIGNATURE_BYTES], dec_id[KMS_KEY_ID_BYTES], out[KMS_MAX_RSA_BYTES];
        _cleanup_(freep) uint8_t *ct = NULL, *plain = NULL;
        size_t sig_len = 0, ct_len = 0, plain_len = 0, out_len = 0;
        struct key k;
        unsigned n = 0;
        int r;

        if (kept_key(&k) < 0)
                return 1;
        check(transient_count(c) == 1, "after open only the SRK is loaded (what an earlier process left was flushed)");
        check(c->ops->exists(c->w, k.id) == 1, "exists: the kept key is in the new process's backend");
        check(c->ops->enumerate(c->w, LABEL_PREFIX, count_cb, &n) == 0 && n == 2,
              "enumerate lists the two kept keys (%u)", n);
        r = sign_verify(c, c->w, &k, KMS_HASH_SHA256, KMS_PAD_NONE, data, sizeof(data) - 1, sig, &sig_len);
        check(r == 1, "the kept ec-p256 key signs after the restart (blobs reloaded under the recreated SRK) (%s)",
              check_err_name(r < 0 ? r : 0));
        if (r == 1 &&
            (write_file("reopen.sig", sig, sig_len) < 0 || write_file("reopen.bin", data, sizeof(data) - 1) < 0))
                check(0, "write reopen.sig");

        r = hex_id_read("rsa-dec.id", dec_id);
        if (r == 0)
                r = read_file("oaep.bin", &ct, &ct_len);
        if (r == 0)
                r = read_file("plain.bin", &plain, &plain_len);
        check(r == 0, "read rsa-dec.id, oaep.bin and plain.bin (%s)", check_err_name(r));
        if (r == 0) {
                r = c->ops->decrypt(c->w, dec_id, KMS_ALG_RSA_2048, ct, ct_len, out, &out_len);
                check(r == 0 && out_len == plain_len && CRYPTO_memcmp(out, plain, plain_len) == 0,
                      "openssl pkeyutl's RSA-OAEP-SHA-256 ciphertext decrypts to the plaintext (%s, %zu bytes)",
                      check_err_name(r), out_len);
                OPENSSL_cleanse(out, sizeof(out));
        }
        check(transient_count(c) <= c->t->transient_min, "transient objects within the TPM's slots");
        key_free(&k);
        return 0;
}

static int mode_reconnect(struct ctx *c)
{
        static const uint8_t data[] = "the TPM went away and came back\n";
        struct kms_backend_info info;
        uint8_t dec_id[KMS_KEY_ID_BYTES];
        struct key k;
        double t0;
        int r;

        if (kept_key(&k) < 0)
                return 1;
        r = sign_verify(c, c->w, &k, KMS_HASH_SHA256, KMS_PAD_NONE, data, sizeof(data) - 1, NULL, NULL);
        check(r == 1, "the kept key signs (%s)", check_err_name(r < 0 ? r : 0));

        /* The script stops swtpm. */
        check(handshake(1) == 0, "the script stopped swtpm");
        r = sign_verify(c, c->w, &k, KMS_HASH_SHA256, KMS_PAD_NONE, data, sizeof(data) - 1, NULL, NULL);
        check_rc(r, -EIO, "sign while the TPM is gone");
        r = c->ops->info(c->b, &info);
        check(r == 0 && info.unavailable && info.unavailable_why[0], "info while the TPM is gone: unavailable, \"%s\"",
              info.unavailable_why);
        check(c->ops->exists(c->w, k.id) == 1, "exists still answers from the blob table");

        /* The script starts swtpm again on the same port and state. */
        check(handshake(2) == 0, "the script restarted swtpm");
        t0 = now_s();
        do {
                r = sign_verify(c, c->w, &k, KMS_HASH_SHA256, KMS_PAD_NONE, data, sizeof(data) - 1, NULL, NULL);
                if (r != 1)
                        nanosleep(&(struct timespec){0, 200 * 1000 * 1000}, NULL);
        } while (r != 1 && now_s() - t0 < 10);
        check(r == 1, "the kept key signs again %.1f s after the TPM came back, without reopening the backend (%s)",
              now_s() - t0, check_err_name(r < 0 ? r : 0));
        r = c->ops->info(c->b, &info);
        check(r == 0 && !info.unavailable, "info: the TPM is available again");

        /* Done with the kept keys. */
        check_rc(c->ops->destroy(c->w, k.id), 0, "destroy the kept ec-p256 key");
        if (hex_id_read("rsa-dec.id", dec_id) == 0)
                check_rc(c->ops->destroy(c->w, dec_id), 0, "destroy the kept rsa-2048 key");
        {
                unsigned n = 0;

                check(c->ops->enumerate(c->w, LABEL_PREFIX, count_cb, &n) == 0 && n == 0,
                      "no key of this test is left in the blob table (%u)", n);
        }
        check(transient_count(c) == 1, "only the SRK is loaded");
        key_free(&k);
        return 0;
}

int main(int argc, char **argv)
{
        const char *dbg = getenv("KMS_TEST_DEBUG");
        const char *mode, *tcti, *db, *auth;
        struct ctx c;
        char err[512];
        int r, rc = 1;

        if (argc != 5 && argc != 6) {
                fprintf(stderr, "usage: tpm-backend-check create|crash|reopen|reconnect|offline|bad-auth TCTI DB DIR "
                                "[OWNER_AUTH_FILE]\n");
                return 2;
        }
        /* As kmsd does: a TPM that closes the socket must not kill us. */
        signal(SIGPIPE, SIG_IGN);
        kms_log_setup(KMS_LOG_STDERR, dbg && *dbg == '1' ? LOG_DEBUG : LOG_WARNING, "tpm-backend-check");
        mode = argv[1];
        tcti = argv[2];
        db = argv[3];
        dir = argv[4];
        auth = argc == 6 ? argv[5] : NULL;

        if (strcmp(mode, "bad-auth") == 0) {
                r = open_backend(&c, tcti, db, auth, false, err, sizeof(err));
                check(r == -EACCES && err[0], "open with a bad owner auth file -> %s: %s", check_err_name(r), err);
                close_backend(&c);
                goto out;
        }
        if (strcmp(mode, "offline") == 0) {
                struct kms_backend_info info;
                uint8_t digest[32] = {0}, sig[KMS_MAX_SIGNATURE_BYTES], id[KMS_KEY_ID_BYTES] = {1};
                size_t sig_len;

                r = open_backend(&c, tcti, db, auth, false, err, sizeof(err));
                check(r < 0 && err[0], "open while the TPM is down -> %s: %s", check_err_name(r), err);
                close_backend(&c);
                r = open_backend(&c, tcti, db, auth, true, err, sizeof(err));
                check(r == 0 && err[0], "open with allow_unreachable while the TPM is down -> %s (\"%s\")",
                      check_err_name(r), err);
                if (r == 0) {
                        r = c.ops->info(c.b, &info);
                        check(r == 0 && info.unavailable, "info: unavailable, \"%s\"", info.unavailable_why);
                        r = c.ops->sign(c.w, id, KMS_ALG_EC_P256, KMS_HASH_SHA256, KMS_PAD_NONE, digest, 32, sig,
                                        &sig_len);
                        check_rc(r, -EIO, "sign while the TPM is down");
                }
                close_backend(&c);
                goto out;
        }

        r = open_backend(&c, tcti, db, auth, false, err, sizeof(err));
        check(r == 0, "kms_tpm_open(%s) -> %s%s%s", tcti, check_err_name(r), err[0] ? ": " : "", err);
        if (r < 0)
                goto out;
        check(strcmp(c.ops->name, "tpm") == 0, "the backend is called \"tpm\"");
        if (strcmp(mode, "create") == 0)
                (void)mode_create(&c);
        else if (strcmp(mode, "reopen") == 0)
                (void)mode_reopen(&c);
        else if (strcmp(mode, "crash") == 0)
                (void)mode_crash(&c);
        else if (strcmp(mode, "reconnect") == 0)
                (void)mode_reconnect(&c);
        else
                check(0, "unknown mode %s", mode);
        close_backend(&c);
out:
        printf("tpm-backend-check %s: %u passed, %u failed\n", mode, check_passed(), check_failed());
        rc = check_exit_status();
        return rc;
}
