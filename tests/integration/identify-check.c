/* Raw libdbus clients, and a socket proxy, for tests/integration/identify.sh
 * (kmsd identifies callers without blocking its bus thread). None of
 * kmsd's code. The bus is $KMSD_BUS_ADDRESS.
 *
 *   identify-check flood SECONDS THREADS MIB KEY
 *       THREADS threads, each for SECONDS: open a fresh connection, send
 *       one Sign on KEY with MIB MiB of data, wait for the answer, close.
 *       Prints "flood: sent=N ok=O LimitExceeded=L AccessDenied=A Busy=B
 *       other=X first_other=NAME".
 *   identify-check probe SECONDS KEY
 *       Sign (8 bytes) and GetStatus in turn on one connection, one call
 *       sent every 20 ms for SECONDS whether or not the earlier ones were
 *       answered (an open loop: a stall shows in every call it holds
 *       up). Prints "probe: n=N p50_ms=X p90_ms=Y max_ms=Z errors=E
 *       AccessDenied=A first_error=NAME".
 *   identify-check fresh SECONDS KEY
 *       Every 100 ms, one Sign on a fresh connection, in a thread of its
 *       own (only the call is timed), for SECONDS. Prints a probe line.
 *   identify-check pipeline N [QUIET]
 *       On a fresh connection, N calls of methods kmsd does not have, sent
 *       at once; kmsd refuses each on its bus thread, so the answers come
 *       in the order it handled them. The first QUIET calls ask for no
 *       answer (the bus daemon lets a connection wait for 128 answers at
 *       most; calls without one are not counted). Prints "pipeline: answered=A
 *       in_order=I UnknownMethod=U Busy=B ms=T" (in_order: answers that
 *       came right after the answer to the call sent before theirs).
 *   identify-check once KEY [MIB]
 *       One Sign (8 bytes, or MIB MiB) on a fresh connection: "once: R
 *       ms=T".
 *   identify-check leave KEY N
 *       N Signs on a fresh connection, sent, then the connection closed
 *       at once without waiting for an answer.
 *   identify-check proxy LISTEN_PATH BUS_PATH ARM_FILE
 *       A unix-socket proxy for kmsd's own bus connection. While ARM_FILE
 *       exists, the first GetConnectionCredentials that kmsd sends stalls
 *       one direction for a while: ARM_FILE holds "in MS" (nothing from
 *       the bus reaches kmsd for MS ms: its question times out) or "out
 *       MS" (the question, and whatever kmsd sends after it, is held for
 *       MS ms). ARM_FILE is removed when it fires. Runs until killed.
 *
 * Exit 0 when it ran, 1 on a setup error. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <dbus/dbus.h>

#define NAME "org.kmsd.KeyManager1"
#define PATH "/org/kmsd/KeyManager1"
#define CALL_TIMEOUT_MS 30000

static double now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static DBusConnection *connect_bus(void)
{
        const char *addr = getenv("KMSD_BUS_ADDRESS");
        DBusConnection *c;
        DBusError err;

        dbus_error_init(&err);
        if (!addr) {
                fprintf(stderr, "identify-check: KMSD_BUS_ADDRESS is not set\n");
                return NULL;
        }
        c = dbus_connection_open_private(addr, &err);
        if (!c || !dbus_bus_register(c, &err)) {
                fprintf(stderr, "identify-check: cannot connect to %s: %s\n", addr, err.message ? err.message : "?");
                dbus_error_free(&err);
                if (c) {
                        dbus_connection_close(c);
                        dbus_connection_unref(c);
                }
                return NULL;
        }
        return c;
}

static void disconnect_bus(DBusConnection *c)
{
        dbus_connection_close(c);
        dbus_connection_unref(c);
}

/* Sign(s key, ay data, a{sv} {}) with len bytes of data (zeros if
 * data is NULL, from a shared buffer). */
static DBusMessage *sign_call(const char *key, const unsigned char *data, size_t len)
{
        DBusMessage *m = dbus_message_new_method_call(NAME, PATH, NAME, "Sign");
        DBusMessageIter it, arr, dict;

        if (!m)
                return NULL;
        dbus_message_iter_init_append(m, &it);
        if (!dbus_message_iter_append_basic(&it, DBUS_TYPE_STRING, &key) ||
            !dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "y", &arr) ||
            !dbus_message_iter_append_fixed_array(&arr, DBUS_TYPE_BYTE, &data, (int)len) ||
            !dbus_message_iter_close_container(&it, &arr) ||
            !dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "{sv}", &dict) ||
            !dbus_message_iter_close_container(&it, &dict)) {
                dbus_message_unref(m);
                return NULL;
        }
        return m;
}

static DBusMessage *small_sign(const char *key)
{
        static const unsigned char data[] = "identify";

        return sign_call(key, data, sizeof(data) - 1);
}

/* "OK", kmsd's error's short name, or another error's full name (static
 * or in the message, valid while reply lives). */
static const char *result_name(DBusMessage *reply)
{
        const char *e;

        if (dbus_message_get_type(reply) != DBUS_MESSAGE_TYPE_ERROR)
                return "OK";
        e = dbus_message_get_error_name(reply);
        if (!e)
                return "?";
        if (strncmp(e, NAME ".Error.", strlen(NAME ".Error.")) == 0)
                return e + strlen(NAME ".Error.");
        return e;
}

/* Sends m (unref'd) on c and waits; writes the result's name to buf. */
static void call(DBusConnection *c, DBusMessage *m, char *buf, size_t len)
{
        DBusPendingCall *pending = NULL;
        DBusMessage *reply;

        if (!m) {
                snprintf(buf, len, "no-memory");
                return;
        }
        if (!dbus_connection_send_with_reply(c, m, &pending, CALL_TIMEOUT_MS) || !pending) {
                dbus_message_unref(m);
                snprintf(buf, len, "not-sent");
                return;
        }
        dbus_message_unref(m);
        dbus_pending_call_block(pending);
        reply = dbus_pending_call_steal_reply(pending);
        dbus_pending_call_unref(pending);
        if (!reply) {
                snprintf(buf, len, "no-reply");
                return;
        }
        snprintf(buf, len, "%s", result_name(reply));
        dbus_message_unref(reply);
}

/* ---------------------------------------------------------------- flood */

static struct {
        pthread_mutex_t lock;
        long sent, ok, limit, denied, busy, other;
        char first_other[200];
} flood_stats = { .lock = PTHREAD_MUTEX_INITIALIZER };

static double flood_until;
static const char *flood_key;
static unsigned char *flood_data;
static size_t flood_len;

static void *flood_one(void *arg)
{
        (void)arg;
        while (now_ms() < flood_until) {
                DBusConnection *c = connect_bus();
                char res[200];

                if (!c)
                        break;
                call(c, sign_call(flood_key, flood_data, flood_len), res, sizeof(res));
                disconnect_bus(c);
                pthread_mutex_lock(&flood_stats.lock);
                flood_stats.sent++;
                if (strcmp(res, "OK") == 0)
                        flood_stats.ok++;
                else if (strcmp(res, "LimitExceeded") == 0)
                        flood_stats.limit++;
                else if (strcmp(res, "AccessDenied") == 0)
                        flood_stats.denied++;
                else if (strcmp(res, "Busy") == 0)
                        flood_stats.busy++;
                else if (flood_stats.other++ == 0)
                        snprintf(flood_stats.first_other, sizeof(flood_stats.first_other), "%s", res);
                pthread_mutex_unlock(&flood_stats.lock);
        }
        return NULL;
}

static int flood(int seconds, int threads, int mib, const char *key)
{
        pthread_t t[32];

        if (seconds < 1 || threads < 1 || threads > 32 || mib < 1 || mib > 128)
                return 1;
        flood_key = key;
        flood_len = (size_t)mib * 1024 * 1024;
        flood_data = calloc(1, flood_len);
        if (!flood_data)
                return 1;
        flood_until = now_ms() + seconds * 1000.0;
        for (int i = 0; i < threads; i++)
                pthread_create(&t[i], NULL, flood_one, NULL);
        for (int i = 0; i < threads; i++)
                pthread_join(t[i], NULL);
        printf("flood: sent=%ld ok=%ld LimitExceeded=%ld AccessDenied=%ld Busy=%ld other=%ld first_other=%s\n",
               flood_stats.sent, flood_stats.ok, flood_stats.limit, flood_stats.denied, flood_stats.busy,
               flood_stats.other, flood_stats.first_other[0] ? flood_stats.first_other : "-");
        free(flood_data);
        return 0;
}

/* ---------------------------------------------------------------- probes */

struct probe {
        double *lat;
        int n, cap, errors, denied;
        char first_error[200];
};

static void probe_add(struct probe *p, double ms, const char *res)
{
        if (strcmp(res, "OK") != 0) {
                if (p->errors++ == 0)
                        snprintf(p->first_error, sizeof(p->first_error), "%s", res);
                if (strcmp(res, "AccessDenied") == 0)
                        p->denied++;
        }
        if (p->n == p->cap) {
                int cap = p->cap ? 2 * p->cap : 256;
                double *lat = realloc(p->lat, (size_t)cap * sizeof(*lat));

                if (!lat)
                        return;
                p->lat = lat;
                p->cap = cap;
        }
        p->lat[p->n++] = ms; /* every call, answered or not: its time counts */
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;

        return x < y ? -1 : x > y;
}

static void probe_print(struct probe *p)
{
        int n = p->n;

        qsort(p->lat, (size_t)n, sizeof(*p->lat), cmp_double);
        printf("probe: n=%d p50_ms=%.1f p90_ms=%.1f max_ms=%.1f errors=%d AccessDenied=%d first_error=%s\n", n,
               n ? p->lat[n / 2] : -1.0, n ? p->lat[(n * 9) / 10] : -1.0, n ? p->lat[n - 1] : -1.0, p->errors,
               p->denied, p->first_error[0] ? p->first_error : "-");
        free(p->lat);
}

/* Open loop: a call every INTERVAL_MS whether or not the earlier ones
 * were answered, so that a stall shows in every call it holds up, not in
 * one (a closed loop would wait it out and make few samples). */
#define PROBE_INTERVAL_MS 20

static int probe(int seconds, const char *key)
{
        DBusConnection *c = connect_bus();
        const int max = seconds * 1000 / PROBE_INTERVAL_MS + 1;
        double *t0 = calloc((size_t)max, sizeof(*t0));
        bool *done = calloc((size_t)max, sizeof(*done));
        double start = now_ms(), until = start + seconds * 1000.0, next = start;
        dbus_uint32_t first = 0;
        struct probe p = { 0 };
        int sent = 0, answered = 0;

        if (!c || !t0 || !done)
                return 1;
        for (;;) {
                double now = now_ms();
                DBusMessage *m;
                int wait_ms;

                if (now < until && now >= next && sent < max) {
                        dbus_uint32_t serial;

                        m = sent % 2 ? dbus_message_new_method_call(NAME, PATH, NAME, "GetStatus") : small_sign(key);
                        if (!m || !dbus_connection_send(c, m, &serial))
                                return 1;
                        dbus_message_unref(m);
                        if (sent == 0)
                                first = serial;
                        else if (serial != first + (dbus_uint32_t)sent)
                                return 1; /* serials are consecutive on a connection of its own */
                        t0[sent++] = now;
                        next += PROBE_INTERVAL_MS;
                        continue;
                }
                if ((now >= until && answered == sent) || now >= until + CALL_TIMEOUT_MS)
                        break;
                wait_ms = now < until ? (int)(next - now) + 1 : 100;
                if (!dbus_connection_read_write(c, wait_ms))
                        break;
                while ((m = dbus_connection_pop_message(c))) {
                        dbus_uint32_t i = dbus_message_get_reply_serial(m) - first;

                        if (dbus_message_get_reply_serial(m) && i < (dbus_uint32_t)sent && !done[i]) {
                                done[i] = true;
                                answered++;
                                probe_add(&p, now_ms() - t0[i], result_name(m));
                        }
                        dbus_message_unref(m);
                }
        }
        for (int i = 0; i < sent; i++)
                if (!done[i])
                        probe_add(&p, now_ms() - t0[i], "no-answer");
        disconnect_bus(c);
        free(t0);
        free(done);
        probe_print(&p);
        return 0;
}

/* fresh: a thread every FRESH_INTERVAL_MS, each one call on a connection
 * of its own (the connection's set-up is not timed). */
#define FRESH_INTERVAL_MS 100
#define FRESH_MAX_THREADS 256

static struct {
        pthread_mutex_t lock;
        struct probe p;
        const char *key;
} fresh_state = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void *fresh_one(void *arg)
{
        DBusConnection *c = connect_bus();
        char res[200];
        double t0;

        (void)arg;
        if (!c) {
                snprintf(res, sizeof(res), "no-connection");
                t0 = now_ms();
        } else {
                t0 = now_ms();
                call(c, small_sign(fresh_state.key), res, sizeof(res));
                disconnect_bus(c);
        }
        pthread_mutex_lock(&fresh_state.lock);
        probe_add(&fresh_state.p, now_ms() - t0, res);
        pthread_mutex_unlock(&fresh_state.lock);
        return NULL;
}

static int fresh(int seconds, const char *key)
{
        pthread_t t[FRESH_MAX_THREADS];
        double until = now_ms() + seconds * 1000.0;
        int n = 0;

        fresh_state.key = key;
        while (now_ms() < until && n < FRESH_MAX_THREADS) {
                if (pthread_create(&t[n], NULL, fresh_one, NULL) != 0)
                        break;
                n++;
                usleep(FRESH_INTERVAL_MS * 1000);
        }
        for (int i = 0; i < n; i++)
                pthread_join(t[i], NULL);
        probe_print(&fresh_state.p);
        return 0;
}

/* N calls of methods kmsd does not have (Order0, Order1, ...): each is
 * refused on kmsd's bus thread as it is handled, so the answers come back
 * in the order kmsd handled the calls. */
static int pipeline(int n, int quiet)
{
        DBusConnection *c = connect_bus();
        dbus_uint32_t first = 0, last = 0;
        int answered = 0, in_order = 0, unknown = 0, busy = 0;
        double t0 = now_ms();

        if (!c || n < 1 || quiet < 0 || quiet >= n)
                return 1;
        for (int i = 0; i < n; i++) {
                char member[32];
                DBusMessage *m;
                dbus_uint32_t serial;

                snprintf(member, sizeof(member), "Order%d", i);
                m = dbus_message_new_method_call(NAME, PATH, NAME, member);
                if (!m)
                        return 1;
                dbus_message_set_no_reply(m, i < quiet);
                if (!dbus_connection_send(c, m, &serial))
                        return 1;
                dbus_message_unref(m);
                if (i == quiet)
                        first = serial;
        }
        n -= quiet; /* the answers expected: serials first .. first + n - 1 */
        last = first - 1;
        while (answered < n && now_ms() - t0 < CALL_TIMEOUT_MS) {
                DBusMessage *m;

                if (!dbus_connection_read_write(c, 100))
                        break;
                while ((m = dbus_connection_pop_message(c))) {
                        dbus_uint32_t rs = dbus_message_get_reply_serial(m);

                        if (rs >= first && rs < first + (dbus_uint32_t)n) {
                                answered++;
                                if (rs == last + 1)
                                        in_order++;
                                last = rs;
                                if (dbus_message_is_error(m, DBUS_ERROR_UNKNOWN_METHOD))
                                        unknown++;
                                else if (dbus_message_is_error(m, NAME ".Error.Busy"))
                                        busy++;
                        }
                        dbus_message_unref(m);
                }
        }
        printf("pipeline: answered=%d in_order=%d UnknownMethod=%d Busy=%d ms=%.0f\n", answered, in_order, unknown,
               busy, now_ms() - t0);
        disconnect_bus(c);
        return 0;
}

static int once(const char *key, int mib)
{
        DBusConnection *c = connect_bus();
        size_t len = (size_t)(mib > 0 ? mib : 0) * 1024 * 1024;
        unsigned char *data = len ? calloc(1, len) : NULL;
        char res[200];
        double t0 = now_ms();

        if (!c || (len && !data))
                return 1;
        call(c, len ? sign_call(key, data, len) : small_sign(key), res, sizeof(res));
        free(data);
        printf("once: %s ms=%.0f\n", res, now_ms() - t0);
        disconnect_bus(c);
        return 0;
}

static int leave(const char *key, int n)
{
        DBusConnection *c = connect_bus();

        if (!c)
                return 1;
        for (int i = 0; i < n; i++) {
                DBusMessage *m = small_sign(key);

                if (!m || !dbus_connection_send(c, m, NULL))
                        return 1;
                dbus_message_unref(m);
        }
        dbus_connection_flush(c);
        disconnect_bus(c);
        printf("leave: %d sent, left\n", n);
        return 0;
}

/* ---------------------------------------------------------------- proxy */

#define PROXY_PAIRS 4
#define TRIGGER "GetConnectionCredentials"

struct pair {
        int k, b;                       /* kmsd's side, the bus's side; -1: unused */
        char tail[sizeof(TRIGGER) - 1]; /* the last bytes kmsd sent, for a match across reads */
        size_t tail_len;
};

static struct {
        int dir; /* 0 none, 1 "in", 2 "out" */
        double until;
        struct pair *who;
        char *held; /* "out": what kmsd sent from the trigger on */
        size_t held_len;
} stall;

static int write_all(int fd, const char *buf, size_t len)
{
        while (len > 0) {
                ssize_t n = write(fd, buf, len);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return -1;
                buf += n;
                len -= (size_t)n;
        }
        return 0;
}

static void pair_close(struct pair *p)
{
        if (p->k >= 0)
                close(p->k);
        if (p->b >= 0)
                close(p->b);
        p->k = p->b = -1;
        p->tail_len = 0;
        if (stall.who == p) {
                stall.dir = 0;
                stall.who = NULL;
                free(stall.held);
                stall.held = NULL;
                stall.held_len = 0;
        }
}

/* Does kmsd's stream hold the trigger, in buf or across the end of the
 * last read? Keeps the stream's last bytes in p->tail. */
static bool saw_trigger(struct pair *p, const char *buf, size_t len)
{
        const size_t tlen = sizeof(TRIGGER) - 1, keep = tlen - 1;
        const size_t head = len < tlen ? len : tlen;
        char win[2 * sizeof(TRIGGER)];
        size_t total, k;
        bool found;

        memcpy(win, p->tail, p->tail_len);
        memcpy(win + p->tail_len, buf, head);
        found = memmem(win, p->tail_len + head, TRIGGER, tlen) || memmem(buf, len, TRIGGER, tlen);
        total = p->tail_len + head; /* win holds the old tail and buf's start */
        if (len >= keep) {
                memcpy(p->tail, buf + len - keep, keep);
                p->tail_len = keep;
        } else {
                k = total < keep ? total : keep;
                memmove(p->tail, win + total - k, k);
                p->tail_len = k;
        }
        return found;
}

/* The armed stall, if ARM_FILE exists: its direction and length. */
static bool armed(const char *arm_file, int *ret_dir, int *ret_ms)
{
        char dir[8] = "";
        FILE *f = fopen(arm_file, "re");
        int ms = 0;

        if (!f)
                return false;
        if (fscanf(f, "%7s %d", dir, &ms) != 2 || ms <= 0 || (strcmp(dir, "in") != 0 && strcmp(dir, "out") != 0)) {
                fclose(f);
                return false;
        }
        fclose(f);
        *ret_dir = strcmp(dir, "in") == 0 ? 1 : 2;
        *ret_ms = ms;
        return true;
}

static int proxy(const char *listen_path, const char *bus_path, const char *arm_file)
{
        struct sockaddr_un la = { .sun_family = AF_UNIX }, ba = { .sun_family = AF_UNIX };
        struct pair pairs[PROXY_PAIRS];
        int lfd;

        if (strlen(listen_path) >= sizeof(la.sun_path) || strlen(bus_path) >= sizeof(ba.sun_path))
                return 1;
        strcpy(la.sun_path, listen_path);
        strcpy(ba.sun_path, bus_path);
        for (int i = 0; i < PROXY_PAIRS; i++)
                pairs[i] = (struct pair){ .k = -1, .b = -1 };
        lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (lfd < 0 || bind(lfd, (struct sockaddr *)&la, sizeof(la)) < 0 || listen(lfd, 4) < 0) {
                perror("proxy: listen");
                return 1;
        }
        printf("proxy: listening on %s\n", listen_path);
        fflush(stdout);
        for (;;) {
                struct pollfd fds[1 + 2 * PROXY_PAIRS];
                int n = 0, timeout = -1;
                char buf[65536];

                if (stall.dir && now_ms() >= stall.until) {
                        if (stall.held && stall.who && write_all(stall.who->b, stall.held, stall.held_len) < 0)
                                pair_close(stall.who);
                        free(stall.held);
                        stall.held = NULL;
                        stall.held_len = 0;
                        stall.dir = 0;
                        stall.who = NULL;
                        printf("proxy: stall over\n");
                        fflush(stdout);
                }
                if (stall.dir)
                        timeout = (int)(stall.until - now_ms()) + 1;
                fds[n++] = (struct pollfd){ .fd = lfd, .events = POLLIN };
                for (int i = 0; i < PROXY_PAIRS; i++) {
                        struct pair *p = &pairs[i];
                        bool k_held = stall.dir == 2 && stall.who == p;
                        bool b_held = stall.dir == 1 && stall.who == p;

                        fds[n++] = (struct pollfd){ .fd = k_held ? -1 : p->k, .events = POLLIN };
                        fds[n++] = (struct pollfd){ .fd = b_held ? -1 : p->b, .events = POLLIN };
                }
                if (poll(fds, (nfds_t)n, timeout) < 0) {
                        if (errno == EINTR)
                                continue;
                        perror("proxy: poll");
                        return 1;
                }
                if (fds[0].revents & POLLIN) {
                        int k = accept4(lfd, NULL, NULL, SOCK_CLOEXEC), b, i;

                        for (i = 0; i < PROXY_PAIRS && pairs[i].k >= 0; i++)
                                ;
                        b = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                        if (k < 0 || i == PROXY_PAIRS || b < 0 || connect(b, (struct sockaddr *)&ba, sizeof(ba)) < 0) {
                                if (k >= 0)
                                        close(k);
                                if (b >= 0)
                                        close(b);
                        } else {
                                pairs[i].k = k;
                                pairs[i].b = b;
                        }
                }
                for (int i = 0; i < PROXY_PAIRS; i++) {
                        struct pair *p = &pairs[i];
                        short kre = fds[1 + 2 * i].revents, bre = fds[2 + 2 * i].revents;
                        ssize_t r;

                        if (p->k < 0)
                                continue;
                        if (kre & (POLLIN | POLLHUP | POLLERR)) {
                                int dir, ms;

                                r = read(p->k, buf, sizeof(buf));
                                if (r <= 0) {
                                        pair_close(p);
                                        continue;
                                }
                                if (!stall.dir && saw_trigger(p, buf, (size_t)r) && armed(arm_file, &dir, &ms)) {
                                        unlink(arm_file);
                                        stall.dir = dir;
                                        stall.until = now_ms() + ms;
                                        stall.who = p;
                                        printf("proxy: stall %s for %d ms\n", dir == 1 ? "in" : "out", ms);
                                        fflush(stdout);
                                        if (dir == 2) {
                                                stall.held = malloc((size_t)r);
                                                if (stall.held) {
                                                        memcpy(stall.held, buf, (size_t)r);
                                                        stall.held_len = (size_t)r;
                                                        continue;
                                                }
                                        }
                                }
                                if (write_all(p->b, buf, (size_t)r) < 0) {
                                        pair_close(p);
                                        continue;
                                }
                        }
                        if (p->b >= 0 && (bre & (POLLIN | POLLHUP | POLLERR))) {
                                r = read(p->b, buf, sizeof(buf));
                                if (r <= 0 || write_all(p->k, buf, (size_t)r) < 0)
                                        pair_close(p);
                        }
                }
        }
}

int main(int argc, char **argv)
{
        if (argc == 6 && strcmp(argv[1], "flood") == 0) {
                dbus_threads_init_default();
                return flood(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), argv[5]);
        }
        if (argc == 4 && strcmp(argv[1], "probe") == 0)
                return probe(atoi(argv[2]), argv[3]);
        if (argc == 4 && strcmp(argv[1], "fresh") == 0) {
                dbus_threads_init_default();
                return fresh(atoi(argv[2]), argv[3]);
        }
        if ((argc == 3 || argc == 4) && strcmp(argv[1], "pipeline") == 0)
                return pipeline(atoi(argv[2]), argc == 4 ? atoi(argv[3]) : 0);
        if ((argc == 3 || argc == 4) && strcmp(argv[1], "once") == 0)
                return once(argv[2], argc == 4 ? atoi(argv[3]) : 0);
        if (argc == 4 && strcmp(argv[1], "leave") == 0)
                return leave(argv[2], atoi(argv[3]));
        if (argc == 5 && strcmp(argv[1], "proxy") == 0)
                return proxy(argv[2], argv[3], argv[4]);
        fprintf(stderr,
                "usage: identify-check flood SECONDS THREADS MIB KEY | probe SECONDS KEY | fresh SECONDS KEY |\n"
                "       pipeline N [QUIET] | once KEY [MIB] | leave KEY N | proxy LISTEN_PATH BUS_PATH ARM_FILE\n");
        return 1;
}
