/* kmsd-bench: how fast kmsd signs with ECDSA P-256, compared with
 * signing directly against the same token.
 *
 * (a) direct: in this process, through the project's own PKCS#11 backend
 *     (kms_pkcs11_open, one worker session per thread, ops->sign of a
 *     SHA-256 digest computed here with kms_hash_compute);
 * (b) kmsd: org.kmsd.KeyManager1.Sign over D-Bus, one private bus
 *     connection and one thread per client, blocking calls in a loop.
 *
 * Both use the same key: DescribeKey(--key) gives versions[0].backend_id
 * (the CKA_ID), and (a) signs with that id. Each case runs for a fixed
 * time and reports signatures per second and p50/p99 latency; every (b)
 * rate is also shown as a fraction of the direct 2-thread rate, and the
 * project's target (kmsd at 8 clients >= 60% of it) is checked.
 *
 * (c) TPM (tpm.c, with --tpm-direct and --tpm-key; run-bench.sh --tpm):
 *     kmsd signing with a TPM key over D-Bus against two direct signers
 *     on the same swtpm: a bare Esys_Sign loop and the project's TPM
 *     backend in-process with kmsd's key. swtpm serves one connection at
 *     a time, so the direct cases run in a process of their own
 *     (--tpm-direct) while kmsd is stopped, and the D-Bus cases
 *     (--tpm-key) in the main run, compared with the fastest direct rate
 *     given by --tpm-reference.
 *
 * Every signature is checked for success, and one signature of each path
 * is verified here against the key's public key (and, with --samples DIR,
 * written out for `openssl dgst -verify`), so a fast benchmark of
 * failures or garbage cannot pass for a result.
 *
 * Exit: 0 all cases ran without errors (target met or not, unless
 * --require-target), 1 errors, 2 usage, 3 target missed with
 * --require-target. See docs/benchmark.md. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <dbus/dbus.h>

#include "kms-backend.h"
#include "kms-bus.h"
#include "kms-key.h"
#include "kms-log.h"
#include "kms-pkcs11.h"
#include "kms-util.h"
#include "sessions.h"
#ifdef KMS_BENCH_HAVE_TPM
#include "tpm.h"
#endif

/* Caps on what the command line can make the benchmark start. */
#define BENCH_MAX_THREADS 1024u
#define BENCH_MAX_CASES 16u
#define BENCH_MAX_SECONDS 3600u
#define BENCH_CALL_TIMEOUT_MS 60000
#define BENCH_TARGET_CLIENTS 8u
#define BENCH_TARGET_PERCENT 60u
#define BENCH_REFERENCE_THREADS 2u

/* The message every call signs: fixed, so both paths sign the same bytes. */
static const uint8_t bench_message[] = "kmsd-bench: ECDSA P-256 signing throughput sample message, 64 B.";
#define BENCH_MESSAGE_LEN (sizeof(bench_message) - 1)

struct options {
        const char *bus_address;
        const char *key;
        const char *module;
        const char *token_label;
        const char *token_serial;
        const char *pin_file;
        const char *samples_dir;
        unsigned seconds;
        unsigned direct_threads[BENCH_MAX_CASES];
        size_t n_direct;
        unsigned clients[BENCH_MAX_CASES];
        size_t n_clients;
        bool require_target;
        bool debug;
        /* --sessions: the session load test (sessions.c) */
        unsigned sessions, session_threads;
        const char *key_b;
        long kmsd_pid;
        /* --tpm-direct: the direct TPM cases only, no bus (tpm.c) */
        bool tpm_direct;
        const char *tcti, *tpm_db, *key_id, *spki_file;
        /* --tpm-key: kmsd's TPM signing over D-Bus */
        const char *tpm_key;
        unsigned tpm_clients[BENCH_MAX_CASES];
        size_t n_tpm_clients;
        double tpm_reference;
};

/* Latencies of one thread, in nanoseconds. */
struct latencies {
        uint64_t *v;
        size_t n, cap;
};

static int latencies_add(struct latencies *l, uint64_t ns)
{
        if (l->n == l->cap) {
                size_t cap = l->cap ? l->cap * 2 : 4096;
                uint64_t *v = realloc(l->v, cap * sizeof(*v));

                if (!v)
                        return -ENOMEM;
                l->v = v;
                l->cap = cap;
        }
        l->v[l->n++] = ns;
        return 0;
}

static uint64_t now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* What one case measured. */
struct result {
        const char *what;
        unsigned threads;
        uint64_t ops;
        uint64_t errors;
        double seconds;
        double rate;
        double p50_ms, p99_ms;
        char first_error[256];
};

/* Shared by the threads of one case. */
struct run {
        pthread_barrier_t ready, go; /* threads + the main thread */
        uint64_t t0;
        _Atomic uint64_t deadline;
        /* first signature of the case, for the verification */
        pthread_mutex_t lock;
        uint8_t sample[KMS_MAX_SIGNATURE_BYTES];
        size_t sample_len;
        char first_error[256];
        /* direct path */
        struct kms_backend *backend;
        uint8_t id[KMS_KEY_ID_BYTES];
        struct bench_tpm_esapi *esapi; /* the bare ESAPI signer (tpm.c) */
        /* D-Bus path */
        const char *bus_address;
        const char *key;
};

struct thread {
        struct run *run;
        unsigned index;
        pthread_t tid;
        struct latencies lat;
        uint64_t ops, errors;
        uint64_t end;
};

/* Keep the first error of a case as "what: a[: b]". */
static void run_error(struct run *run, const char *what, const char *a, const char *b)
{
        pthread_mutex_lock(&run->lock);
        if (!run->first_error[0])
                snprintf(run->first_error, sizeof(run->first_error), "%s: %s%s%s", what, a, b && *b ? ": " : "",
                         b ? b : "");
        pthread_mutex_unlock(&run->lock);
}

static void run_sample(struct run *run, const uint8_t *sig, size_t len)
{
        pthread_mutex_lock(&run->lock);
        if (run->sample_len == 0 && len <= sizeof(run->sample)) {
                memcpy(run->sample, sig, len);
                run->sample_len = len;
        }
        pthread_mutex_unlock(&run->lock);
}

/* Every thread has connected (or failed to); the main thread starts the
 * clock between the two barriers, so no thread runs before the deadline
 * is set and set-up time is not measured. */
static void run_wait_start(struct thread *t)
{
        pthread_barrier_wait(&t->run->ready);
        pthread_barrier_wait(&t->run->go);
}

static unsigned bench_seconds;

/* One signature of bench_message's SHA-256 digest by a direct signer
 * (signer: a backend worker, or the bare ESAPI signer). 0 or a negative
 * errno; *ret_why may say more. */
typedef int (*direct_sign_fn)(struct run *run, void *signer, const uint8_t digest[32],
                              uint8_t sig[KMS_MAX_SIGNATURE_BYTES], size_t *ret_sig_len, const char **ret_why);

/* A direct case's loop, once the clock runs: sign until the deadline,
 * counting errors under the name what. */
static void direct_loop(struct thread *t, const char *what, direct_sign_fn sign, void *signer)
{
        struct run *run = t->run;

        for (;;) {
                uint8_t digest[32], sig[KMS_MAX_SIGNATURE_BYTES];
                const char *why = NULL;
                size_t sig_len = 0;
                uint64_t a = now_ns(), b;
                int r;

                r = kms_hash_compute(KMS_HASH_SHA256, bench_message, BENCH_MESSAGE_LEN, digest);
                if (r >= 0)
                        r = sign(run, signer, digest, sig, &sig_len, &why);
                b = now_ns();
                if (r < 0) {
                        run_error(run, what, strerror(-r), why);
                        t->errors++;
                } else {
                        t->ops++;
                        if (latencies_add(&t->lat, b - a) < 0)
                                t->errors++;
                        if (t->ops == 1)
                                run_sample(run, sig, sig_len);
                }
                if (b >= atomic_load(&run->deadline))
                        break;
                if (t->errors > 1000)
                        break; /* something is broken; do not spin */
        }
        t->end = now_ns();
}

static int backend_sign(struct run *run, void *signer, const uint8_t digest[32], uint8_t sig[KMS_MAX_SIGNATURE_BYTES],
                        size_t *ret_sig_len, const char **ret_why)
{
        return run->backend->ops->sign(signer, run->id, KMS_ALG_EC_P256, KMS_HASH_SHA256, KMS_PAD_NONE, digest, 32, sig,
                                       ret_sig_len);
}

/* The project's backend (PKCS#11, or the TPM's with --tpm-direct), one
 * worker context per thread. */
static void *direct_thread(void *arg)
{
        struct thread *t = arg;
        struct run *run = t->run;
        struct kms_backend_worker *w = NULL;
        int r;

        r = run->backend->ops->worker_open(run->backend, &w);
        if (r < 0) {
                run_error(run, "worker_open", strerror(-r), NULL);
                t->errors++;
        }
        run_wait_start(t);
        if (w) {
                direct_loop(t, "sign", backend_sign, w);
                run->backend->ops->worker_close(w);
        }
        if (!t->end)
                t->end = now_ns();
        return NULL;
}

#ifdef KMS_BENCH_HAVE_TPM
static int esapi_sign(struct run *run, void *signer, const uint8_t digest[32], uint8_t sig[KMS_MAX_SIGNATURE_BYTES],
                      size_t *ret_sig_len, const char **ret_why)
{
        return bench_tpm_esapi_sign(signer, digest, sig, ret_sig_len, ret_why);
}

/* The bare ESAPI loop: one thread, the signer's own context. */
static void *esapi_thread(void *arg)
{
        struct thread *t = arg;

        run_wait_start(t);
        direct_loop(t, "Esys_Sign", esapi_sign, t->run->esapi);
        return NULL;
}
#endif

static DBusMessage *sign_call(const char *key)
{
        DBusMessage *m = dbus_message_new_method_call(KMS_BUS_NAME, KMS_BUS_PATH, KMS_BUS_INTERFACE, "Sign");
        DBusMessageIter it, sub;
        const uint8_t *data = bench_message;

        if (!m)
                return NULL;
        dbus_message_iter_init_append(m, &it);
        if (!dbus_message_iter_append_basic(&it, DBUS_TYPE_STRING, &key) ||
            !dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "y", &sub) ||
            !dbus_message_iter_append_fixed_array(&sub, DBUS_TYPE_BYTE, &data, (int)BENCH_MESSAGE_LEN) ||
            !dbus_message_iter_close_container(&it, &sub) ||
            !dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "{sv}", &sub) ||
            !dbus_message_iter_close_container(&it, &sub)) {
                dbus_message_unref(m);
                return NULL;
        }
        return m;
}

/* The signature bytes of a Sign reply ("ayu"); 0 or -EBADMSG. */
static int sign_reply(DBusMessage *reply, const uint8_t **ret, int *ret_len)
{
        DBusMessageIter it, sub;

        if (!dbus_message_has_signature(reply, "ayu") || !dbus_message_iter_init(reply, &it))
                return -EBADMSG;
        dbus_message_iter_recurse(&it, &sub);
        dbus_message_iter_get_fixed_array(&sub, ret, ret_len);
        return 0;
}

static DBusConnection *bus_open(const char *address, DBusError *err)
{
        DBusConnection *c = dbus_connection_open_private(address, err);

        if (!c)
                return NULL;
        if (!dbus_bus_register(c, err)) {
                dbus_connection_close(c);
                dbus_connection_unref(c);
                return NULL;
        }
        return c;
}

static void bus_close(DBusConnection *c)
{
        if (!c)
                return;
        dbus_connection_close(c);
        dbus_connection_unref(c);
}

static void *dbus_thread(void *arg)
{
        struct thread *t = arg;
        struct run *run = t->run;
        DBusConnection *c;
        DBusError err;

        dbus_error_init(&err);
        c = bus_open(run->bus_address, &err);
        if (!c) {
                run_error(run, "connect", err.name ? err.name : "?", err.message);
                dbus_error_free(&err);
                t->errors++;
        }
        run_wait_start(t);
        if (!c)
                goto out;

        for (;;) {
                DBusMessage *m = sign_call(run->key), *reply = NULL;
                uint64_t a = now_ns(), b;
                const uint8_t *sig = NULL;
                int sig_len = 0;

                if (m)
                        reply = dbus_connection_send_with_reply_and_block(c, m, BENCH_CALL_TIMEOUT_MS, &err);
                b = now_ns();
                if (!reply) {
                        run_error(run, "Sign", err.name ? err.name : "out of memory", err.message);
                        dbus_error_free(&err);
                        t->errors++;
                } else if (sign_reply(reply, &sig, &sig_len) < 0 || sig_len <= 0) {
                        run_error(run, "Sign", "unexpected reply signature", dbus_message_get_signature(reply));
                        t->errors++;
                } else {
                        t->ops++;
                        if (latencies_add(&t->lat, b - a) < 0)
                                t->errors++;
                        if (t->ops == 1)
                                run_sample(run, sig, (size_t)sig_len);
                }
                if (reply)
                        dbus_message_unref(reply);
                if (m)
                        dbus_message_unref(m);
                if (b >= atomic_load(&run->deadline))
                        break;
                if (t->errors > 1000)
                        break;
        }
        t->end = now_ns();
        bus_close(c);
out:
        if (!t->end)
                t->end = now_ns();
        return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

        return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted v. */
static double percentile_ms(const uint64_t *v, size_t n, unsigned pct)
{
        size_t rank;

        if (n == 0)
                return 0;
        rank = (n * pct + 99) / 100; /* ceil(n * pct / 100), 1-based */
        if (rank == 0)
                rank = 1;
        return (double)v[rank - 1] / 1e6;
}

/* Run one case with n threads of fn; fills res and, if the case produced
 * one, the first signature. Returns 0 or a negative errno. */
static int run_case(struct run *run, void *(*fn)(void *), unsigned n, const char *what, struct result *res)
{
        _cleanup_(freep) struct thread *threads = calloc(n, sizeof(*threads));
        struct latencies all = {0};
        uint64_t last = 0;
        unsigned started = 0;
        int r = 0;

        if (!threads)
                return -ENOMEM;
        memset(res, 0, sizeof(*res));
        res->what = what;
        res->threads = n;
        run->t0 = 0;
        atomic_store(&run->deadline, 0);
        run->sample_len = 0;
        run->first_error[0] = '\0';
        if (pthread_barrier_init(&run->ready, NULL, n + 1) != 0 || pthread_barrier_init(&run->go, NULL, n + 1) != 0)
                return -ENOMEM;
        for (unsigned i = 0; i < n; i++) {
                threads[i].run = run;
                threads[i].index = i;
                if (pthread_create(&threads[i].tid, NULL, fn, &threads[i]) != 0) {
                        /* The barrier counts n; without all threads it never opens. */
                        fprintf(stderr, "kmsd-bench: cannot start thread %u of %u\n", i + 1, n);
                        exit(1);
                }
                started++;
        }
        pthread_barrier_wait(&run->ready);
        run->t0 = now_ns();
        atomic_store(&run->deadline, run->t0 + (uint64_t)bench_seconds * 1000000000u);
        pthread_barrier_wait(&run->go);
        for (unsigned i = 0; i < started; i++) {
                pthread_join(threads[i].tid, NULL);
                res->ops += threads[i].ops;
                res->errors += threads[i].errors;
                if (threads[i].end > last)
                        last = threads[i].end;
        }
        pthread_barrier_destroy(&run->ready);
        pthread_barrier_destroy(&run->go);

        for (unsigned i = 0; i < n; i++) {
                for (size_t j = 0; j < threads[i].lat.n && r == 0; j++)
                        r = latencies_add(&all, threads[i].lat.v[j]);
                free(threads[i].lat.v);
        }
        if (r < 0) {
                free(all.v);
                return r;
        }
        qsort(all.v, all.n, sizeof(*all.v), cmp_u64);
        res->seconds = last > run->t0 ? (double)(last - run->t0) / 1e9 : 0;
        res->rate = res->seconds > 0 ? (double)res->ops / res->seconds : 0;
        res->p50_ms = percentile_ms(all.v, all.n, 50);
        res->p99_ms = percentile_ms(all.v, all.n, 99);
        snprintf(res->first_error, sizeof(res->first_error), "%s", run->first_error);
        free(all.v);
        return 0;
}

/* Find the dict entry key in an a{sv} iterator positioned on the array;
 * leaves *ret on the variant's content. */
static bool dict_find(DBusMessageIter *array, const char *key, DBusMessageIter *ret)
{
        DBusMessageIter entry;

        if (dbus_message_iter_get_arg_type(array) != DBUS_TYPE_ARRAY)
                return false;
        dbus_message_iter_recurse(array, &entry);
        while (dbus_message_iter_get_arg_type(&entry) == DBUS_TYPE_DICT_ENTRY) {
                DBusMessageIter kv, v;
                const char *k = NULL;

                dbus_message_iter_recurse(&entry, &kv);
                if (dbus_message_iter_get_arg_type(&kv) == DBUS_TYPE_STRING) {
                        dbus_message_iter_get_basic(&kv, &k);
                        if (strcmp(k, key) == 0 && dbus_message_iter_next(&kv) &&
                            dbus_message_iter_get_arg_type(&kv) == DBUS_TYPE_VARIANT) {
                                dbus_message_iter_recurse(&kv, &v);
                                *ret = v;
                                return true;
                        }
                }
                dbus_message_iter_next(&entry);
        }
        return false;
}

static DBusMessage *call_blocking(DBusConnection *c, DBusMessage *m, const char *what)
{
        DBusError err;
        DBusMessage *reply;

        dbus_error_init(&err);
        reply = dbus_connection_send_with_reply_and_block(c, m, BENCH_CALL_TIMEOUT_MS, &err);
        dbus_message_unref(m);
        if (!reply) {
                fprintf(stderr, "kmsd-bench: %s failed: %s: %s\n", what, err.name ? err.name : "?",
                        err.message ? err.message : "?");
                dbus_error_free(&err);
        }
        return reply;
}

/* DescribeKey(name): the algorithm (ec-p256 or an error),
 * versions[0].backend_id and the backend the key is in ("pkcs11", "tpm"). */
static int describe_key(DBusConnection *c, const char *name, uint8_t ret_id[KMS_KEY_ID_BYTES], char *ret_backend,
                        size_t backend_size)
{
        DBusMessage *m = dbus_message_new_method_call(KMS_BUS_NAME, KMS_BUS_PATH, KMS_BUS_INTERFACE, "DescribeKey");
        DBusMessage *reply;
        DBusMessageIter it, v, versions, first;
        const char *alg = NULL, *hex = NULL, *backend = NULL;
        _cleanup_(freep) uint8_t *id = NULL;
        size_t id_len = 0;
        int r = -EBADMSG;

        if (!m || !dbus_message_append_args(m, DBUS_TYPE_STRING, &name, DBUS_TYPE_INVALID))
                return -ENOMEM;
        reply = call_blocking(c, m, "DescribeKey");
        if (!reply)
                return -EIO;
        if (!dbus_message_has_signature(reply, "a{sv}") || !dbus_message_iter_init(reply, &it))
                goto out;
        if (!dict_find(&it, "algorithm", &v) || dbus_message_iter_get_arg_type(&v) != DBUS_TYPE_STRING)
                goto out;
        dbus_message_iter_get_basic(&v, &alg);
        if (strcmp(alg, "ec-p256") != 0) {
                fprintf(stderr, "kmsd-bench: key %s is %s; the benchmark needs an ec-p256 key\n", name, alg);
                r = -EINVAL;
                goto out;
        }
        if (!dict_find(&it, "backend", &v) || dbus_message_iter_get_arg_type(&v) != DBUS_TYPE_STRING)
                goto out;
        dbus_message_iter_get_basic(&v, &backend);
        if (!dict_find(&it, "versions", &versions) || dbus_message_iter_get_arg_type(&versions) != DBUS_TYPE_ARRAY)
                goto out;
        dbus_message_iter_recurse(&versions, &first);
        if (dbus_message_iter_get_arg_type(&first) != DBUS_TYPE_ARRAY)
                goto out; /* no versions */
        if (!dict_find(&first, "backend_id", &v) || dbus_message_iter_get_arg_type(&v) != DBUS_TYPE_STRING)
                goto out;
        dbus_message_iter_get_basic(&v, &hex);
        if (kms_hex_decode(hex, &id, &id_len) < 0 || id_len != KMS_KEY_ID_BYTES) {
                fprintf(stderr, "kmsd-bench: backend_id '%s' is not %u bytes of hex\n", hex, KMS_KEY_ID_BYTES);
                r = -EINVAL;
                goto out;
        }
        memcpy(ret_id, id, KMS_KEY_ID_BYTES);
        snprintf(ret_backend, backend_size, "%s", backend);
        r = 0;
out:
        if (r == -EBADMSG)
                fprintf(stderr,
                        "kmsd-bench: DescribeKey reply (%s) lacks algorithm, backend or versions[0].backend_id\n",
                        dbus_message_get_signature(reply));
        dbus_message_unref(reply);
        return r;
}

/* GetPublicKey(name, 0): the SubjectPublicKeyInfo DER. */
static int get_public_key(DBusConnection *c, const char *name, uint8_t **ret, size_t *ret_len)
{
        DBusMessage *m = dbus_message_new_method_call(KMS_BUS_NAME, KMS_BUS_PATH, KMS_BUS_INTERFACE, "GetPublicKey");
        DBusMessage *reply;
        DBusMessageIter it, sub;
        const uint8_t *spki = NULL;
        int len = 0, r = -EBADMSG;
        uint32_t zero = 0;

        if (!m || !dbus_message_append_args(m, DBUS_TYPE_STRING, &name, DBUS_TYPE_UINT32, &zero, DBUS_TYPE_INVALID))
                return -ENOMEM;
        reply = call_blocking(c, m, "GetPublicKey");
        if (!reply)
                return -EIO;
        if (dbus_message_has_signature(reply, "ayu") && dbus_message_iter_init(reply, &it)) {
                dbus_message_iter_recurse(&it, &sub);
                dbus_message_iter_get_fixed_array(&sub, &spki, &len);
                if (len > 0) {
                        *ret = malloc((size_t)len);
                        if (*ret) {
                                memcpy(*ret, spki, (size_t)len);
                                *ret_len = (size_t)len;
                                r = 0;
                        } else
                                r = -ENOMEM;
                }
        }
        if (r == -EBADMSG)
                fprintf(stderr, "kmsd-bench: GetPublicKey reply has signature '%s', expected 'ayu'\n",
                        dbus_message_get_signature(reply));
        dbus_message_unref(reply);
        return r;
}

static int write_file(const char *dir, const char *name, const uint8_t *data, size_t len)
{
        char path[4096];
        FILE *f;
        int r = 0;

        if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
                return -ENAMETOOLONG;
        f = fopen(path, "we");
        if (!f) {
                fprintf(stderr, "kmsd-bench: cannot write %s: %s\n", path, strerror(errno));
                return -errno;
        }
        if (fwrite(data, 1, len, f) != len)
                r = -EIO;
        if (fclose(f) != 0 && r == 0)
                r = -EIO;
        return r;
}

/* Read a small file (a public key) whole; *ret is the caller's. */
static int read_small_file(const char *path, uint8_t **ret, size_t *ret_len)
{
        uint8_t buf[8192];
        size_t n;
        FILE *f = fopen(path, "re");

        if (!f) {
                fprintf(stderr, "kmsd-bench: cannot read %s: %s\n", path, strerror(errno));
                return -errno;
        }
        n = fread(buf, 1, sizeof(buf), f);
        if (ferror(f) || !feof(f) || n == 0) {
                fprintf(stderr, "kmsd-bench: %s is empty, unreadable or larger than %zu bytes\n", path, sizeof(buf));
                fclose(f);
                return -EINVAL;
        }
        fclose(f);
        *ret = malloc(n);
        if (!*ret)
                return -ENOMEM;
        memcpy(*ret, buf, n);
        *ret_len = n;
        return 0;
}

/* "1,8,64" → list; every value in [1, BENCH_MAX_THREADS]. */
static int parse_list(const char *s, unsigned *list, size_t *ret_n)
{
        _cleanup_(freep) char *copy = strdup(s);
        size_t n = 0;
        char *save = NULL;

        if (!copy)
                return -ENOMEM;
        if (!*copy || copy[strlen(copy) - 1] == ',' || strstr(copy, ",,") || copy[0] == ',')
                return -EINVAL;
        for (char *w = strtok_r(copy, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
                uint64_t v;

                if (n == BENCH_MAX_CASES || kms_parse_u64(w, 1, BENCH_MAX_THREADS, &v) < 0)
                        return -EINVAL;
                list[n++] = (unsigned)v;
        }
        *ret_n = n;
        return 0;
}

static void usage(FILE *out)
{
        fprintf(out, "Usage: kmsd-bench --bus-address ADDR --key NAME --module PATH\n"
                     "                  (--token-label L | --token-serial S) --pin-file F [options]\n"
                     "\n"
                     "Measure ECDSA P-256 signing directly against the PKCS#11 token and through\n"
                     "kmsd over D-Bus, with the same key.\n"
                     "\n"
                     "  --seconds N          duration of each case (default 5)\n"
                     "  --direct-threads L   thread counts of the direct cases (default 1,2)\n"
                     "  --clients L          client counts of the D-Bus cases (default 1,8,64)\n"
                     "  --samples DIR        write data.bin, pub.der, direct.sig, dbus.sig to DIR\n"
                     "  --require-target     exit 3 if kmsd at 8 clients is below 60%% of direct 2-thread\n"
                     "  --sessions N         then hold N sessions open (--key and --key-b, both EC keys\n"
                     "                       with the derive usage) and seal/open in all of them\n"
                     "  --session-threads T  client threads of the session load (default 8)\n"
                     "  --key-b NAME         the second key of the session pairs\n"
                     "  --kmsd-pid PID       report kmsd's resident memory (VmRSS) around the session load\n"
                     "  --tpm-key NAME       then sign with kmsd's TPM key NAME (ec-p256) over D-Bus\n"
                     "  --tpm-clients L      client counts of the TPM D-Bus cases (default 1,8)\n"
                     "  --tpm-reference R    the fastest direct rate (sig/s) of --tpm-direct, for the\n"
                     "                       vs direct column of the TPM cases\n"
                     "  --debug              log the backends' (and tpm2-tss's) debug messages to stderr\n"
                     "\n"
                     "       kmsd-bench --tpm-direct --tcti T --tpm-db FILE --key-id HEX --spki FILE [options]\n"
                     "\n"
                     "Only the direct TPM cases, with kmsd stopped (swtpm serves one connection at a\n"
                     "time): a bare Esys_Sign loop with a key of its own, then the TPM backend in\n"
                     "this process with kmsd's key (backend id HEX, public key FILE, DER) from kmsd's\n"
                     "database FILE. --seconds, --direct-threads (the backend cases), --samples and\n"
                     "--debug apply.\n"
                     "  --help               this text\n");
}

static int parse_args(int argc, char **argv, struct options *o)
{
        enum {
                OPT_BUS_ADDRESS = 0x100,
                OPT_KEY,
                OPT_MODULE,
                OPT_TOKEN_LABEL,
                OPT_TOKEN_SERIAL,
                OPT_PIN_FILE,
                OPT_SECONDS,
                OPT_DIRECT_THREADS,
                OPT_CLIENTS,
                OPT_SAMPLES,
                OPT_REQUIRE_TARGET,
                OPT_DEBUG,
                OPT_SESSIONS,
                OPT_SESSION_THREADS,
                OPT_KEY_B,
                OPT_KMSD_PID,
                OPT_TPM_DIRECT,
                OPT_TCTI,
                OPT_TPM_DB,
                OPT_KEY_ID,
                OPT_SPKI,
                OPT_TPM_KEY,
                OPT_TPM_CLIENTS,
                OPT_TPM_REFERENCE,
        };
        static const struct option longopts[] = {
                {"bus-address", required_argument, NULL, OPT_BUS_ADDRESS},
                {"key", required_argument, NULL, OPT_KEY},
                {"module", required_argument, NULL, OPT_MODULE},
                {"token-label", required_argument, NULL, OPT_TOKEN_LABEL},
                {"token-serial", required_argument, NULL, OPT_TOKEN_SERIAL},
                {"pin-file", required_argument, NULL, OPT_PIN_FILE},
                {"seconds", required_argument, NULL, OPT_SECONDS},
                {"direct-threads", required_argument, NULL, OPT_DIRECT_THREADS},
                {"clients", required_argument, NULL, OPT_CLIENTS},
                {"samples", required_argument, NULL, OPT_SAMPLES},
                {"require-target", no_argument, NULL, OPT_REQUIRE_TARGET},
                {"debug", no_argument, NULL, OPT_DEBUG},
                {"sessions", required_argument, NULL, OPT_SESSIONS},
                {"session-threads", required_argument, NULL, OPT_SESSION_THREADS},
                {"key-b", required_argument, NULL, OPT_KEY_B},
                {"kmsd-pid", required_argument, NULL, OPT_KMSD_PID},
                {"tpm-direct", no_argument, NULL, OPT_TPM_DIRECT},
                {"tcti", required_argument, NULL, OPT_TCTI},
                {"tpm-db", required_argument, NULL, OPT_TPM_DB},
                {"key-id", required_argument, NULL, OPT_KEY_ID},
                {"spki", required_argument, NULL, OPT_SPKI},
                {"tpm-key", required_argument, NULL, OPT_TPM_KEY},
                {"tpm-clients", required_argument, NULL, OPT_TPM_CLIENTS},
                {"tpm-reference", required_argument, NULL, OPT_TPM_REFERENCE},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        int c;

        *o = (struct options){
                .seconds = 5,
                .direct_threads = {1, 2},
                .n_direct = 2,
                .clients = {1, 8, 64},
                .n_clients = 3,
                .session_threads = 8,
                .tpm_clients = {1, 8},
                .n_tpm_clients = 2,
        };
        while ((c = getopt_long(argc, argv, "h", longopts, NULL)) >= 0) {
                uint64_t v;

                switch (c) {
                case OPT_BUS_ADDRESS: o->bus_address = optarg; break;
                case OPT_KEY: o->key = optarg; break;
                case OPT_MODULE: o->module = optarg; break;
                case OPT_TOKEN_LABEL: o->token_label = optarg; break;
                case OPT_TOKEN_SERIAL: o->token_serial = optarg; break;
                case OPT_PIN_FILE: o->pin_file = optarg; break;
                case OPT_SAMPLES: o->samples_dir = optarg; break;
                case OPT_REQUIRE_TARGET: o->require_target = true; break;
                case OPT_DEBUG: o->debug = true; break;
                case OPT_SECONDS:
                        if (kms_parse_u64(optarg, 1, BENCH_MAX_SECONDS, &v) < 0) {
                                fprintf(stderr, "kmsd-bench: --seconds '%s' is not a number of seconds in 1..%u\n",
                                        optarg, BENCH_MAX_SECONDS);
                                return -EINVAL;
                        }
                        o->seconds = (unsigned)v;
                        break;
                case OPT_DIRECT_THREADS:
                        if (parse_list(optarg, o->direct_threads, &o->n_direct) < 0) {
                                fprintf(stderr,
                                        "kmsd-bench: --direct-threads '%s' is not a list like 1,2 (each 1..%u)\n",
                                        optarg, BENCH_MAX_THREADS);
                                return -EINVAL;
                        }
                        break;
                case OPT_CLIENTS:
                        if (parse_list(optarg, o->clients, &o->n_clients) < 0) {
                                fprintf(stderr, "kmsd-bench: --clients '%s' is not a list like 1,8,64 (each 1..%u)\n",
                                        optarg, BENCH_MAX_THREADS);
                                return -EINVAL;
                        }
                        break;
                case OPT_SESSIONS:
                        if (kms_parse_u64(optarg, 2, 16384, &v) < 0) {
                                fprintf(stderr, "kmsd-bench: --sessions '%s' is not a number in 2..16384\n", optarg);
                                return -EINVAL;
                        }
                        o->sessions = (unsigned)v;
                        break;
                case OPT_SESSION_THREADS:
                        if (kms_parse_u64(optarg, 1, BENCH_MAX_THREADS, &v) < 0) {
                                fprintf(stderr, "kmsd-bench: --session-threads '%s' is not in 1..%u\n", optarg,
                                        BENCH_MAX_THREADS);
                                return -EINVAL;
                        }
                        o->session_threads = (unsigned)v;
                        break;
                case OPT_KEY_B: o->key_b = optarg; break;
                case OPT_KMSD_PID:
                        if (kms_parse_u64(optarg, 1, INT32_MAX, &v) < 0) {
                                fprintf(stderr, "kmsd-bench: --kmsd-pid '%s' is not a pid\n", optarg);
                                return -EINVAL;
                        }
                        o->kmsd_pid = (long)v;
                        break;
                case OPT_TPM_DIRECT: o->tpm_direct = true; break;
                case OPT_TCTI: o->tcti = optarg; break;
                case OPT_TPM_DB: o->tpm_db = optarg; break;
                case OPT_KEY_ID: o->key_id = optarg; break;
                case OPT_SPKI: o->spki_file = optarg; break;
                case OPT_TPM_KEY: o->tpm_key = optarg; break;
                case OPT_TPM_CLIENTS:
                        if (parse_list(optarg, o->tpm_clients, &o->n_tpm_clients) < 0) {
                                fprintf(stderr, "kmsd-bench: --tpm-clients '%s' is not a list like 1,8 (each 1..%u)\n",
                                        optarg, BENCH_MAX_THREADS);
                                return -EINVAL;
                        }
                        break;
                case OPT_TPM_REFERENCE: {
                        char *end = NULL;

                        errno = 0;
                        o->tpm_reference = strtod(optarg, &end);
                        if (errno != 0 || end == optarg || *end != '\0' || !(o->tpm_reference > 0) ||
                            o->tpm_reference > 1e9) {
                                fprintf(stderr, "kmsd-bench: --tpm-reference '%s' is not a rate in sig/s\n", optarg);
                                return -EINVAL;
                        }
                        break;
                }
                case 'h': usage(stdout); exit(0);
                default: return -EINVAL;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "kmsd-bench: unexpected argument '%s'\n", argv[optind]);
                return -EINVAL;
        }
#ifndef KMS_BENCH_HAVE_TPM
        if (o->tpm_direct || o->tpm_key) {
                fprintf(stderr, "kmsd-bench: built without TPM support (the kms-tpm target, libtss2-dev)\n");
                return -EOPNOTSUPP;
        }
#endif
        if (o->tpm_direct) {
                if (!o->tcti || !o->tpm_db || !o->key_id || !o->spki_file) {
                        fprintf(stderr, "kmsd-bench: --tpm-direct needs --tcti, --tpm-db, --key-id and --spki\n");
                        return -EINVAL;
                }
                return 0;
        }
        if (o->sessions && !o->key_b) {
                fprintf(stderr, "kmsd-bench: --sessions needs --key-b\n");
                return -EINVAL;
        }
        if (!o->bus_address || !o->key || !o->module || (!o->token_label && !o->token_serial) || !o->pin_file) {
                fprintf(stderr, "kmsd-bench: --bus-address, --key, --module, --token-label (or --token-serial) and "
                                "--pin-file are required\n");
                return -EINVAL;
        }
        return 0;
}

static void print_result(const struct result *r, const struct result *ref)
{
        printf("%-18s %7u %9" PRIu64 " %10.1f %9.3f %9.3f %7" PRIu64, r->what, r->threads, r->ops, r->rate, r->p50_ms,
               r->p99_ms, r->errors);
        if (ref && ref->rate > 0)
                printf(" %9.1f%%", 100.0 * r->rate / ref->rate);
        printf("\n");
        if (r->first_error[0])
                printf("  first error: %s\n", r->first_error);
        fflush(stdout);
}

static bool check_sample(const char *what, const struct run *run, const uint8_t *spki, size_t spki_len)
{
        int v;

        if (run->sample_len == 0) {
                fprintf(stderr, "kmsd-bench: %s: no signature to verify\n", what);
                return false;
        }
        v = kms_signature_verify(spki, spki_len, KMS_ALG_EC_P256, KMS_HASH_SHA256, KMS_PAD_NONE, bench_message,
                                 BENCH_MESSAGE_LEN, run->sample, run->sample_len);
        if (v != 1) {
                fprintf(stderr, "kmsd-bench: %s: a signature does not verify with the key's public key (%d)\n", what,
                        v);
                return false;
        }
        return true;
}

#ifdef KMS_BENCH_HAVE_TPM
/* --tpm-direct: the bare ESAPI loop (1 thread), then the TPM backend
 * in-process with kmsd's key (--direct-threads). kmsd must not hold the
 * TPM meanwhile. Returns the exit status. */
static int main_tpm_direct(const struct options *o, struct run *run)
{
        _cleanup_(freep) uint8_t *spki = NULL, *esapi_spki = NULL, *id = NULL;
        size_t spki_len = 0, esapi_spki_len = 0, id_len = 0;
        struct result esapi, direct[BENCH_MAX_CASES];
        const struct result *best;
        bool ok = true;
        int r;

        if (kms_hex_decode(o->key_id, &id, &id_len) < 0 || id_len != KMS_KEY_ID_BYTES) {
                fprintf(stderr, "kmsd-bench: --key-id '%s' is not %u bytes of hex\n", o->key_id, KMS_KEY_ID_BYTES);
                return 2;
        }
        memcpy(run->id, id, KMS_KEY_ID_BYTES);
        if (read_small_file(o->spki_file, &spki, &spki_len) < 0)
                return 1;

        printf("kmsd-bench: TPM ECDSA P-256 (SHA-256 of %zu bytes) on %s, key id %s, %u s per case\n",
               BENCH_MESSAGE_LEN, o->tcti, o->key_id, o->seconds);
        printf("%-18s %7s %9s %10s %9s %9s %7s %10s\n", "case", "threads", "sigs", "sig/s", "p50 ms", "p99 ms",
               "errors", "vs esapi");
        fflush(stdout);

        /* (1) The bare ESAPI loop, with a key of its own. */
        r = bench_tpm_esapi_open(o->tcti, &run->esapi, &esapi_spki, &esapi_spki_len);
        if (r < 0)
                return 1;
        r = run_case(run, esapi_thread, 1, "direct esapi", &esapi);
        bench_tpm_esapi_close(run->esapi);
        run->esapi = NULL;
        if (r < 0) {
                fprintf(stderr, "kmsd-bench: %s\n", strerror(-r));
                return 1;
        }
        print_result(&esapi, NULL);
        best = &esapi;
        if (esapi.errors > 0 || esapi.ops == 0 || !check_sample("direct esapi", run, esapi_spki, esapi_spki_len))
                ok = false;
        else if (o->samples_dir && (write_file(o->samples_dir, "tpm-esapi.sig", run->sample, run->sample_len) < 0 ||
                                    write_file(o->samples_dir, "tpm-esapi-pub.der", esapi_spki, esapi_spki_len) < 0))
                ok = false;

        /* (2) The TPM backend in this process, with kmsd's key. */
        r = bench_tpm_backend_open(o->tcti, o->tpm_db, &run->backend);
        if (r < 0)
                return 1;
        for (size_t i = 0; i < o->n_direct; i++) {
                r = run_case(run, direct_thread, o->direct_threads[i], "direct kms-tpm", &direct[i]);
                if (r < 0) {
                        fprintf(stderr, "kmsd-bench: %s\n", strerror(-r));
                        ok = false;
                        break;
                }
                print_result(&direct[i], &esapi);
                if (direct[i].errors > 0 || direct[i].ops == 0)
                        ok = false;
                if (direct[i].rate > best->rate)
                        best = &direct[i];
                if (i == 0) {
                        if (!check_sample("direct kms-tpm", run, spki, spki_len))
                                ok = false;
                        else if (o->samples_dir &&
                                 write_file(o->samples_dir, "tpm-direct.sig", run->sample, run->sample_len) < 0)
                                ok = false;
                }
        }
        run->backend->ops->free(run->backend);
        run->backend = NULL;

        if (o->samples_dir && write_file(o->samples_dir, "data.bin", bench_message, BENCH_MESSAGE_LEN) < 0)
                ok = false;
        /* One TPM connection serves one command at a time; a second
         * thread only overlaps the work around it. The fastest case is
         * what this TPM does for one client: kmsd's reference. */
        printf("reference: %s with %u thread%s, %.1f sig/s (the fastest direct case)\n", best->what, best->threads,
               best->threads == 1 ? "" : "s", best->rate);
        if (!ok)
                printf("result: INVALID (errors or an unverifiable signature; see above)\n");
        fflush(stdout);
        return ok ? 0 : 1;
}

/* --tpm-key: kmsd signing with its TPM key over D-Bus, each client count
 * of --tpm-clients, against the ESAPI rate of --tpm-reference. */
static bool run_tpm_dbus(const struct options *o, struct run *run)
{
        _cleanup_(freep) uint8_t *spki = NULL;
        const struct result ref = {.what = "direct", .threads = 1, .rate = o->tpm_reference};
        uint8_t id[KMS_KEY_ID_BYTES];
        char backend[16] = "";
        struct result res;
        size_t spki_len = 0;
        DBusConnection *ctl;
        DBusError err;
        bool ok = true;
        int r;

        dbus_error_init(&err);
        ctl = bus_open(o->bus_address, &err);
        if (!ctl) {
                fprintf(stderr, "kmsd-bench: cannot connect to %s: %s\n", o->bus_address,
                        err.message ? err.message : "?");
                dbus_error_free(&err);
                return false;
        }
        r = describe_key(ctl, o->tpm_key, id, backend, sizeof(backend));
        if (r >= 0)
                r = get_public_key(ctl, o->tpm_key, &spki, &spki_len);
        bus_close(ctl);
        if (r < 0)
                return false;
        if (strcmp(backend, "tpm") != 0) {
                fprintf(stderr, "kmsd-bench: --tpm-key %s is a key of the %s backend, not of the TPM\n", o->tpm_key,
                        backend);
                return false;
        }
        printf("TPM key %s through kmsd%s\n", o->tpm_key,
               o->tpm_reference > 0 ? "; vs direct: of the fastest direct TPM case (--tpm-reference)" : "");
        fflush(stdout);
        run->key = o->tpm_key;
        for (size_t i = 0; i < o->n_tpm_clients; i++) {
                r = run_case(run, dbus_thread, o->tpm_clients[i], "kmsd tpm (D-Bus)", &res);
                if (r < 0) {
                        fprintf(stderr, "kmsd-bench: %s\n", strerror(-r));
                        ok = false;
                        break;
                }
                print_result(&res, o->tpm_reference > 0 ? &ref : NULL);
                if (res.errors > 0 || res.ops == 0)
                        ok = false;
                if (i == 0) {
                        if (!check_sample("kmsd tpm", run, spki, spki_len))
                                ok = false;
                        else if (o->samples_dir &&
                                 (write_file(o->samples_dir, "tpm-dbus.sig", run->sample, run->sample_len) < 0 ||
                                  write_file(o->samples_dir, "tpm-pub.der", spki, spki_len) < 0))
                                ok = false;
                }
        }
        run->key = o->key;
        if (o->tpm_reference > 0)
                printf("tpm reference: the fastest direct TPM case, %.1f sig/s\n", o->tpm_reference);
        return ok;
}
#endif

int main(int argc, char **argv)
{
        struct options o;
        struct kms_pkcs11_config pcfg;
        struct run run = {0};
        struct result direct[BENCH_MAX_CASES], bus[BENCH_MAX_CASES];
        const struct result *ref = NULL;
        DBusConnection *ctl = NULL;
        DBusError err;
        _cleanup_(freep) uint8_t *spki = NULL;
        _cleanup_(freep) char *id_hex = NULL;
        size_t spki_len = 0;
        char errbuf[512] = "", backend[16] = "";
        bool ok = true, target_met = false, target_known = false;
        int r;

        if (parse_args(argc, argv, &o) < 0) {
                usage(stderr);
                return 2;
        }
        bench_seconds = o.seconds;
        /* The backend logs foreign codes (CK_RV) at debug level only. */
        kms_log_setup(KMS_LOG_STDERR, o.debug ? LOG_DEBUG : LOG_WARNING, "kmsd-bench");
        if (!dbus_threads_init_default()) {
                fprintf(stderr, "kmsd-bench: out of memory\n");
                return 1;
        }
        pthread_mutex_init(&run.lock, NULL);
        run.bus_address = o.bus_address;
        run.key = o.key;
#ifdef KMS_BENCH_HAVE_TPM
        /* tpm2-tss prints every TPM answer it dislikes on stderr. */
        if (!o.debug)
                setenv("TSS2_LOG", "all+NONE", 0);
        if (o.tpm_direct) {
                r = main_tpm_direct(&o, &run);
                pthread_mutex_destroy(&run.lock);
                return r;
        }
#endif

        /* The key's CKA_ID and public key, from kmsd. */
        dbus_error_init(&err);
        ctl = bus_open(o.bus_address, &err);
        if (!ctl) {
                fprintf(stderr, "kmsd-bench: cannot connect to %s: %s\n", o.bus_address,
                        err.message ? err.message : "?");
                dbus_error_free(&err);
                return 1;
        }
        r = describe_key(ctl, o.key, run.id, backend, sizeof(backend));
        if (r >= 0)
                r = get_public_key(ctl, o.key, &spki, &spki_len);
        bus_close(ctl);
        if (r < 0)
                return 1;
        if (strcmp(backend, "pkcs11") != 0) {
                fprintf(stderr,
                        "kmsd-bench: --key %s is a key of the %s backend; the direct cases need a PKCS#11 key\n", o.key,
                        backend);
                return 1;
        }
        id_hex = kms_hex_encode(run.id, sizeof(run.id));

        printf("kmsd-bench: ECDSA P-256 (SHA-256 of %zu bytes), key %s, CKA_ID %s, %u s per case\n", BENCH_MESSAGE_LEN,
               o.key, id_hex ? id_hex : "?", o.seconds);
        printf("%-18s %7s %9s %10s %9s %9s %7s %10s\n", "case", "threads", "sigs", "sig/s", "p50 ms", "p99 ms",
               "errors", "vs direct");
        fflush(stdout);

        /* (a) direct, first: kmsd is idle meanwhile. */
        pcfg = (struct kms_pkcs11_config){
                .module = o.module,
                .token_label = o.token_label,
                .token_serial = o.token_serial,
                .pin_file = o.pin_file,
        };
        r = kms_pkcs11_open(&pcfg, &run.backend, errbuf, sizeof(errbuf));
        if (r < 0) {
                fprintf(stderr, "kmsd-bench: %s\n", errbuf[0] ? errbuf : strerror(-r));
                return 1;
        }
        for (size_t i = 0; i < o.n_direct; i++) {
                r = run_case(&run, direct_thread, o.direct_threads[i], "direct pkcs11", &direct[i]);
                if (r < 0) {
                        fprintf(stderr, "kmsd-bench: %s\n", strerror(-r));
                        return 1;
                }
                print_result(&direct[i], NULL);
                if (direct[i].errors > 0 || direct[i].ops == 0)
                        ok = false;
                if (i == 0) {
                        if (!check_sample("direct", &run, spki, spki_len))
                                ok = false;
                        else if (o.samples_dir &&
                                 write_file(o.samples_dir, "direct.sig", run.sample, run.sample_len) < 0)
                                ok = false;
                }
                if (direct[i].threads == BENCH_REFERENCE_THREADS)
                        ref = &direct[i];
        }
        run.backend->ops->free(run.backend);
        run.backend = NULL;
        if (!ref && o.n_direct > 0)
                ref = &direct[o.n_direct - 1]; /* no 2-thread case asked for: the last one */

        /* (b) through kmsd. */
        for (size_t i = 0; i < o.n_clients; i++) {
                r = run_case(&run, dbus_thread, o.clients[i], "kmsd over D-Bus", &bus[i]);
                if (r < 0) {
                        fprintf(stderr, "kmsd-bench: %s\n", strerror(-r));
                        return 1;
                }
                print_result(&bus[i], ref);
                if (bus[i].errors > 0 || bus[i].ops == 0)
                        ok = false;
                if (i == 0) {
                        if (!check_sample("kmsd", &run, spki, spki_len))
                                ok = false;
                        else if (o.samples_dir && write_file(o.samples_dir, "dbus.sig", run.sample, run.sample_len) < 0)
                                ok = false;
                }
                if (bus[i].threads == BENCH_TARGET_CLIENTS && ref && ref->rate > 0) {
                        target_known = true;
                        target_met =
                                bus[i].errors == 0 && 100.0 * bus[i].rate / ref->rate >= (double)BENCH_TARGET_PERCENT;
                }
        }

#ifdef KMS_BENCH_HAVE_TPM
        if (o.tpm_key && !run_tpm_dbus(&o, &run))
                ok = false;
#endif

        if (o.sessions) {
                _cleanup_(freep) uint8_t *spki_b = NULL;
                size_t spki_b_len = 0;

                ctl = bus_open(o.bus_address, &err);
                r = ctl ? get_public_key(ctl, o.key_b, &spki_b, &spki_b_len) : -EIO;
                bus_close(ctl);
                if (r >= 0)
                        r = bench_sessions(o.bus_address, o.key, spki, spki_len, o.key_b, spki_b, spki_b_len,
                                           o.sessions, o.session_threads, o.seconds, o.kmsd_pid);
                if (r < 0)
                        ok = false;
        }

        if (o.samples_dir && (write_file(o.samples_dir, "data.bin", bench_message, BENCH_MESSAGE_LEN) < 0 ||
                              write_file(o.samples_dir, "pub.der", spki, spki_len) < 0))
                ok = false;

        if (ref)
                printf("reference: direct pkcs11 with %u thread%s, %.1f sig/s\n", ref->threads,
                       ref->threads == 1 ? "" : "s", ref->rate);
        if (!target_known)
                printf("target: not checked (needs a direct %u-thread case and a %u-client case)\n",
                       BENCH_REFERENCE_THREADS, BENCH_TARGET_CLIENTS);
        else if (!ref || ref->threads != BENCH_REFERENCE_THREADS)
                printf("target: not checked (no direct %u-thread case)\n", BENCH_REFERENCE_THREADS);
        else
                printf("target: kmsd at %u clients >= %u%% of direct %u-thread rate: %s\n", BENCH_TARGET_CLIENTS,
                       BENCH_TARGET_PERCENT, BENCH_REFERENCE_THREADS, target_met ? "MET" : "NOT MET");
        if (!ok)
                printf("result: INVALID (errors or an unverifiable signature; see above)\n");
        fflush(stdout);
        pthread_mutex_destroy(&run.lock);
        dbus_shutdown();
        if (!ok)
                return 1;
        if (o.require_target && !(target_known && target_met && ref->threads == BENCH_REFERENCE_THREADS))
                return 3;
        return 0;
}
