/* kmsd-bench --sessions N: N sessions held open at once in kmsd (N/2
 * pairs: an initiator on key A with B as peer, a responder on key B with
 * A as peer), then T client threads seal on one side of a pair and open
 * on the other, each thread on its own pairs (so sequence numbers arrive
 * in order). Reported: kmsd's resident memory before, with the sessions
 * open, and after the load; seal+open round trips per second and their
 * latency; and, as the baseline in the same run, the same round trip in
 * this process on kms_session_crypto (no D-Bus, no daemon). Every
 * opened plaintext is compared with what was sealed. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <dbus/dbus.h>
#include <openssl/rand.h>

#include "kms-bus.h"
#include "kms-session-crypto.h"
#include "kms-session-id.h"
#include "sessions.h"

#define SESS_PLAIN_BYTES 256u
#define SESS_CALL_TIMEOUT_MS 60000

struct pair {
        char a[KMS_SESSION_ID_STRING_SIZE], b[KMS_SESSION_ID_STRING_SIZE];
};

struct sess_run {
        const char *bus_address;
        struct pair *pairs;
        size_t n_pairs;
        unsigned threads;
        uint64_t deadline;
        pthread_barrier_t go;
};

struct sess_thread {
        struct sess_run *run;
        unsigned index;
        uint64_t ops, errors;
        uint64_t *lat;
        size_t n_lat, cap_lat;
        char first_error[256];
};

static uint64_t sess_now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static long rss_kib(long pid)
{
        char path[64], line[256];
        long kib = -1;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%ld/status", pid);
        f = fopen(path, "re");
        if (!f)
                return -1;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
                        break;
        fclose(f);
        return kib;
}

static DBusConnection *sess_bus_open(const char *address)
{
        DBusError err;
        DBusConnection *c;

        dbus_error_init(&err);
        c = dbus_connection_open_private(address, &err);
        if (c && !dbus_bus_register(c, &err)) {
                dbus_connection_close(c);
                dbus_connection_unref(c);
                c = NULL;
        }
        if (!c) {
                fprintf(stderr, "kmsd-bench: cannot connect to %s: %s\n", address, err.message ? err.message : "?");
                dbus_error_free(&err);
        }
        return c;
}

static void sess_bus_close(DBusConnection *c)
{
        if (c) {
                dbus_connection_close(c);
                dbus_connection_unref(c);
        }
}

/* Call and wait; on error copy "Name: message" to err. */
static DBusMessage *sess_call(DBusConnection *c, DBusMessage *m, char *err, size_t errlen)
{
        DBusError e;
        DBusMessage *reply;

        dbus_error_init(&e);
        reply = m ? dbus_connection_send_with_reply_and_block(c, m, SESS_CALL_TIMEOUT_MS, &e) : NULL;
        if (m)
                dbus_message_unref(m);
        if (!reply) {
                snprintf(err, errlen, "%s: %s", e.name ? e.name : "out of memory", e.message ? e.message : "");
                dbus_error_free(&e);
        }
        return reply;
}

static bool append_ay(DBusMessageIter *it, const uint8_t *p, size_t n)
{
        DBusMessageIter sub;

        return dbus_message_iter_open_container(it, DBUS_TYPE_ARRAY, "y", &sub) &&
               dbus_message_iter_append_fixed_array(&sub, DBUS_TYPE_BYTE, &p, (int)n) &&
               dbus_message_iter_close_container(it, &sub);
}

static bool append_empty_options(DBusMessageIter *it)
{
        DBusMessageIter sub;

        return dbus_message_iter_open_container(it, DBUS_TYPE_ARRAY, "{sv}", &sub) &&
               dbus_message_iter_close_container(it, &sub);
}

static bool read_ay(DBusMessage *reply, const uint8_t **p, int *n)
{
        DBusMessageIter it, sub;

        if (!dbus_message_iter_init(reply, &it) || dbus_message_iter_get_arg_type(&it) != DBUS_TYPE_ARRAY)
                return false;
        dbus_message_iter_recurse(&it, &sub);
        dbus_message_iter_get_fixed_array(&sub, p, n);
        return true;
}

static int open_session(DBusConnection *c, const char *key, const uint8_t *peer, size_t peer_len, const char *role,
                        const char *context, char ret_id[KMS_SESSION_ID_STRING_SIZE], char *err, size_t errlen)
{
        DBusMessage *m = dbus_message_new_method_call(KMS_BUS_NAME, KMS_BUS_PATH, KMS_BUS_INTERFACE, "OpenSession");
        DBusMessageIter it, opts, entry, var, sub;
        DBusMessage *reply;
        const char *id = NULL, *k_ctx = "context", *k_max = "max_messages", *k_ttl = "ttl";
        const uint8_t *ctx = (const uint8_t *)context;
        dbus_uint32_t max = KMS_SESSION_MAX_MESSAGES_CEILING;
        dbus_uint64_t ttl = 3600;

        if (!m)
                return -ENOMEM;
        dbus_message_iter_init_append(m, &it);
        if (!dbus_message_iter_append_basic(&it, DBUS_TYPE_STRING, &key) || !append_ay(&it, peer, peer_len) ||
            !dbus_message_iter_append_basic(&it, DBUS_TYPE_STRING, &role) ||
            !dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "{sv}", &opts) ||
            !dbus_message_iter_open_container(&opts, DBUS_TYPE_DICT_ENTRY, NULL, &entry) ||
            !dbus_message_iter_append_basic(&entry, DBUS_TYPE_STRING, &k_ctx) ||
            !dbus_message_iter_open_container(&entry, DBUS_TYPE_VARIANT, "ay", &var) ||
            !dbus_message_iter_open_container(&var, DBUS_TYPE_ARRAY, "y", &sub) ||
            !dbus_message_iter_append_fixed_array(&sub, DBUS_TYPE_BYTE, &ctx, (int)strlen(context)) ||
            !dbus_message_iter_close_container(&var, &sub) || !dbus_message_iter_close_container(&entry, &var) ||
            !dbus_message_iter_close_container(&opts, &entry) ||
            !dbus_message_iter_open_container(&opts, DBUS_TYPE_DICT_ENTRY, NULL, &entry) ||
            !dbus_message_iter_append_basic(&entry, DBUS_TYPE_STRING, &k_max) ||
            !dbus_message_iter_open_container(&entry, DBUS_TYPE_VARIANT, "u", &var) ||
            !dbus_message_iter_append_basic(&var, DBUS_TYPE_UINT32, &max) ||
            !dbus_message_iter_close_container(&entry, &var) || !dbus_message_iter_close_container(&opts, &entry) ||
            !dbus_message_iter_open_container(&opts, DBUS_TYPE_DICT_ENTRY, NULL, &entry) ||
            !dbus_message_iter_append_basic(&entry, DBUS_TYPE_STRING, &k_ttl) ||
            !dbus_message_iter_open_container(&entry, DBUS_TYPE_VARIANT, "t", &var) ||
            !dbus_message_iter_append_basic(&var, DBUS_TYPE_UINT64, &ttl) ||
            !dbus_message_iter_close_container(&entry, &var) || !dbus_message_iter_close_container(&opts, &entry) ||
            !dbus_message_iter_close_container(&it, &opts)) {
                dbus_message_unref(m);
                return -ENOMEM;
        }
        reply = sess_call(c, m, err, errlen);
        if (!reply)
                return -EIO;
        if (!dbus_message_iter_init(reply, &it) || dbus_message_iter_get_arg_type(&it) != DBUS_TYPE_STRING) {
                snprintf(err, errlen, "OpenSession replied (%s)", dbus_message_get_signature(reply));
                dbus_message_unref(reply);
                return -EBADMSG;
        }
        dbus_message_iter_get_basic(&it, &id);
        snprintf(ret_id, KMS_SESSION_ID_STRING_SIZE, "%s", id);
        dbus_message_unref(reply);
        return 0;
}

/* Seal on a, open on b; compare. 0 or -EIO with err. */
static int round_trip(DBusConnection *c, const struct pair *p, const uint8_t *plain, char *err, size_t errlen)
{
        DBusMessage *m, *sealed, *opened;
        DBusMessageIter it;
        const char *id = p->a;
        const uint8_t *env = NULL, *out = NULL;
        int env_len = 0, out_len = 0, r = 0;

        m = dbus_message_new_method_call(KMS_BUS_NAME, KMS_BUS_PATH, KMS_BUS_INTERFACE, "Seal");
        if (m) {
                dbus_message_iter_init_append(m, &it);
                if (!dbus_message_iter_append_basic(&it, DBUS_TYPE_STRING, &id) ||
                    !append_ay(&it, plain, SESS_PLAIN_BYTES) || !append_empty_options(&it)) {
                        dbus_message_unref(m);
                        m = NULL;
                }
        }
        sealed = sess_call(c, m, err, errlen);
        if (!sealed)
                return -EIO;
        if (!read_ay(sealed, &env, &env_len) || env_len != (int)kms_session_crypto_envelope_size(SESS_PLAIN_BYTES)) {
                snprintf(err, errlen, "Seal: unexpected reply");
                dbus_message_unref(sealed);
                return -EIO;
        }
        id = p->b;
        m = dbus_message_new_method_call(KMS_BUS_NAME, KMS_BUS_PATH, KMS_BUS_INTERFACE, "OpenEnvelope");
        if (m) {
                dbus_message_iter_init_append(m, &it);
                if (!dbus_message_iter_append_basic(&it, DBUS_TYPE_STRING, &id) ||
                    !append_ay(&it, env, (size_t)env_len) || !append_empty_options(&it)) {
                        dbus_message_unref(m);
                        m = NULL;
                }
        }
        opened = sess_call(c, m, err, errlen);
        dbus_message_unref(sealed);
        if (!opened)
                return -EIO;
        if (!read_ay(opened, &out, &out_len) || out_len != (int)SESS_PLAIN_BYTES ||
            memcmp(out, plain, SESS_PLAIN_BYTES)) {
                snprintf(err, errlen, "OpenEnvelope gave back other bytes than were sealed");
                r = -EIO;
        }
        dbus_message_unref(opened);
        return r;
}

static void thread_error(struct sess_thread *t, const char *err)
{
        t->errors++;
        if (!t->first_error[0])
                snprintf(t->first_error, sizeof(t->first_error), "%s", err);
}

static void add_latency(struct sess_thread *t, uint64_t ns)
{
        if (t->n_lat == t->cap_lat) {
                size_t cap = t->cap_lat ? t->cap_lat * 2 : 4096;
                uint64_t *v = realloc(t->lat, cap * sizeof(*v));

                if (!v) {
                        t->errors++;
                        return;
                }
                t->lat = v;
                t->cap_lat = cap;
        }
        t->lat[t->n_lat++] = ns;
}

static void *load_thread(void *arg)
{
        struct sess_thread *t = arg;
        struct sess_run *run = t->run;
        DBusConnection *c = sess_bus_open(run->bus_address);
        uint8_t plain[SESS_PLAIN_BYTES];
        char err[256];
        size_t next = t->index;

        pthread_barrier_wait(&run->go);
        if (!c) {
                thread_error(t, "cannot connect");
                return NULL;
        }
        RAND_bytes(plain, sizeof(plain));
        /* Pairs index, index + T, index + 2T, ...: no other thread uses them. */
        while (next < run->n_pairs && sess_now_ns() < run->deadline) {
                uint64_t a = sess_now_ns();

                if (round_trip(c, &run->pairs[next], plain, err, sizeof(err)) < 0) {
                        thread_error(t, err);
                        if (t->errors > 100)
                                break;
                } else {
                        t->ops++;
                        add_latency(t, sess_now_ns() - a);
                }
                plain[0]++;
                next += run->threads;
                if (next >= run->n_pairs)
                        next = t->index;
        }
        sess_bus_close(c);
        return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

        return x < y ? -1 : x > y;
}

/* The baseline: seal and open on kms_session_crypto in this process, one
 * thread, the same plaintext size. */
static double baseline_rate(unsigned seconds, uint64_t *ret_ops)
{
        static const uint8_t z[32] = {1, 2, 3}, spki_a[] = {0x30, 0x01, 0x00}, spki_b[] = {0x30, 0x01, 0x01};
        struct kms_session_crypto *i = NULL, *r = NULL;
        uint8_t plain[SESS_PLAIN_BYTES], env[SESS_PLAIN_BYTES + KMS_ENVELOPE_OVERHEAD], out[SESS_PLAIN_BYTES];
        struct kms_session_crypto_params p;
        uint64_t ops = 0, t0, now_ms = 1700000000000ull, end;
        double rate = 0;

        kms_session_crypto_params_init(&p);
        p.max_messages = KMS_SESSION_MAX_MESSAGES_CEILING;
        if (kms_session_crypto_new(KMS_SESSION_INITIATOR, z, sizeof(z), spki_a, sizeof(spki_a), spki_b, sizeof(spki_b),
                                   NULL, 0, &p, now_ms, &i) < 0 ||
            kms_session_crypto_new(KMS_SESSION_RESPONDER, z, sizeof(z), spki_b, sizeof(spki_b), spki_a, sizeof(spki_a),
                                   NULL, 0, &p, now_ms, &r) < 0)
                goto out;
        RAND_bytes(plain, sizeof(plain));
        t0 = sess_now_ns();
        end = t0 + (uint64_t)seconds * 1000000000u;
        while (sess_now_ns() < end && ops < KMS_SESSION_MAX_MESSAGES_CEILING) {
                size_t n = 0, m = 0;

                if (kms_session_crypto_seal(i, now_ms, plain, sizeof(plain), NULL, 0, env, sizeof(env), &n) < 0 ||
                    kms_session_crypto_open(r, now_ms, env, n, NULL, 0, out, sizeof(out), &m) < 0 ||
                    m != sizeof(plain) || memcmp(out, plain, m) != 0)
                        goto out;
                ops++;
        }
        rate = (double)ops / ((double)(sess_now_ns() - t0) / 1e9);
        *ret_ops = ops;
out:
        kms_session_crypto_free(i);
        kms_session_crypto_free(r);
        return rate;
}

int bench_sessions(const char *bus_address, const char *key_a, const uint8_t *spki_a, size_t spki_a_len,
                   const char *key_b, const uint8_t *spki_b, size_t spki_b_len, unsigned n_sessions, unsigned threads,
                   unsigned seconds, long kmsd_pid)
{
        struct sess_run run = {.bus_address = bus_address, .threads = threads};
        struct sess_thread *ts = NULL;
        DBusConnection *c = sess_bus_open(bus_address);
        char err[256] = "", tag[17];
        uint8_t rnd[8];
        long rss0, rss1, rss2;
        uint64_t t0, t_open, ops = 0, errors = 0, base_ops = 0;
        uint64_t *all = NULL;
        size_t n_all = 0;
        double rate, base;
        int r = 0;

        if (!c)
                return -EIO;
        run.n_pairs = n_sessions / 2;
        run.pairs = calloc(run.n_pairs, sizeof(*run.pairs));
        ts = calloc(threads, sizeof(*ts));
        if (!run.pairs || !ts) {
                r = -ENOMEM;
                goto out;
        }
        /* A fresh context per run and pair: kmsd refuses to reuse one. */
        RAND_bytes(rnd, sizeof(rnd));
        for (int i = 0; i < 8; i++)
                snprintf(tag + 2 * i, 3, "%02x", rnd[i]);

        rss0 = rss_kib(kmsd_pid);
        t0 = sess_now_ns();
        for (size_t i = 0; i < run.n_pairs && r == 0; i++) {
                char ctx[64];

                snprintf(ctx, sizeof(ctx), "kmsd-bench %s %zu", tag, i);
                r = open_session(c, key_a, spki_b, spki_b_len, "initiator", ctx, run.pairs[i].a, err, sizeof(err));
                if (r == 0)
                        r = open_session(c, key_b, spki_a, spki_a_len, "responder", ctx, run.pairs[i].b, err,
                                         sizeof(err));
        }
        t_open = sess_now_ns() - t0;
        if (r < 0) {
                fprintf(stderr, "kmsd-bench: OpenSession: %s\n", err);
                goto out;
        }
        rss1 = rss_kib(kmsd_pid);
        printf("\nsessions: %zu open at once in kmsd (%zu pairs), opened in %.2f s (%.0f OpenSession/s)\n",
               2 * run.n_pairs, run.n_pairs, (double)t_open / 1e9, 2.0 * (double)run.n_pairs / ((double)t_open / 1e9));

        if (pthread_barrier_init(&run.go, NULL, threads + 1) != 0) {
                r = -ENOMEM;
                goto out;
        }
        {
                pthread_t tid[threads];

                for (unsigned i = 0; i < threads; i++) {
                        ts[i].run = &run;
                        ts[i].index = i;
                        if (pthread_create(&tid[i], NULL, load_thread, &ts[i]) != 0) {
                                fprintf(stderr, "kmsd-bench: cannot start a thread\n");
                                exit(1);
                        }
                }
                t0 = sess_now_ns();
                run.deadline = t0 + (uint64_t)seconds * 1000000000u;
                pthread_barrier_wait(&run.go);
                for (unsigned i = 0; i < threads; i++)
                        pthread_join(tid[i], NULL);
        }
        pthread_barrier_destroy(&run.go);
        rate = 0;
        for (unsigned i = 0; i < threads; i++) {
                ops += ts[i].ops;
                errors += ts[i].errors;
                if (ts[i].first_error[0] && !err[0])
                        snprintf(err, sizeof(err), "%s", ts[i].first_error);
        }
        rate = (double)ops / ((double)(sess_now_ns() - t0) / 1e9);
        all = calloc(ops ? ops : 1, sizeof(*all));
        for (unsigned i = 0; all && i < threads; i++) {
                memcpy(all + n_all, ts[i].lat, ts[i].n_lat * sizeof(*all));
                n_all += ts[i].n_lat;
        }
        if (all && n_all)
                qsort(all, n_all, sizeof(*all), cmp_u64);
        rss2 = rss_kib(kmsd_pid);
        base = baseline_rate(seconds, &base_ops);

        printf("%-28s %7s %9s %10s %9s %9s %7s %12s\n", "case", "threads", "trips", "trips/s", "p50 ms", "p99 ms",
               "errors", "vs in-proc");
        printf("%-28s %7u %9" PRIu64 " %10.1f %9s %9s %7u\n", "in-process seal+open", 1u, base_ops, base, "-", "-", 0u);
        printf("%-28s %7u %9" PRIu64 " %10.1f %9.3f %9.3f %7" PRIu64 " %11.2f%%\n", "kmsd Seal+OpenEnvelope", threads,
               ops, rate, n_all ? (double)all[n_all / 2] / 1e6 : 0, n_all ? (double)all[(n_all * 99) / 100] / 1e6 : 0,
               errors, base > 0 ? 100.0 * rate / base : 0);
        printf("(a trip is one Seal on the initiator and one OpenEnvelope on the responder, %u-byte plaintext;\n"
               " every opened plaintext was compared with the sealed one)\n",
               SESS_PLAIN_BYTES);
        if (errors)
                printf("  first error: %s\n", err);
        if (rss0 > 0 && rss1 > 0 && rss2 > 0)
                printf("kmsd RSS: %.1f MiB before, %.1f MiB with %zu sessions (%+.1f KiB per session), %.1f MiB after "
                       "the load\n",
                       rss0 / 1024.0, rss1 / 1024.0, 2 * run.n_pairs, (double)(rss1 - rss0) / (2.0 * run.n_pairs),
                       rss2 / 1024.0);
        else
                printf("kmsd RSS: not available (--kmsd-pid)\n");
        if (errors || ops == 0 || base_ops == 0)
                r = -EIO;

        /* Close them all: kmsd wipes the keys. */
        for (size_t i = 0; i < run.n_pairs; i++)
                for (int side = 0; side < 2; side++) {
                        DBusMessage *m = dbus_message_new_method_call(KMS_BUS_NAME, KMS_BUS_PATH, KMS_BUS_INTERFACE,
                                                                      "CloseSession");
                        const char *id = side ? run.pairs[i].b : run.pairs[i].a;
                        DBusMessage *reply;

                        if (m && !dbus_message_append_args(m, DBUS_TYPE_STRING, &id, DBUS_TYPE_INVALID)) {
                                dbus_message_unref(m);
                                m = NULL;
                        }
                        reply = sess_call(c, m, err, sizeof(err));
                        if (!reply)
                                r = -EIO;
                        else
                                dbus_message_unref(reply);
                }
out:
        for (unsigned i = 0; ts && i < threads; i++)
                free(ts[i].lat);
        free(all);
        free(ts);
        free(run.pairs);
        sess_bus_close(c);
        fflush(stdout);
        return r;
}
