/* A load generator and a latency probe for tests/integration/fairness.sh,
 * with raw libdbus so that one process can keep many calls in flight
 * (kmsctl and busctl wait for each reply).
 *
 *   fair-check flood KEY CONNS DEPTH SECONDS
 *       CONNS connections, each keeping DEPTH Sign calls on KEY in flight
 *       for SECONDS; prints "flood: R replies, B busy, E other errors".
 *   fair-check probe KEY COUNT
 *       COUNT Sign calls on KEY one after another; prints
 *       "probe: n=N p50_ms=X p90_ms=Y max_ms=Z errors=E".
 *
 * The bus is $KMSD_BUS_ADDRESS. Exit 0 when it ran, 1 on a setup error. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <dbus/dbus.h>

#define NAME "org.kmsd.KeyManager1"
#define PATH "/org/kmsd/KeyManager1"
#define BUSY NAME ".Error.Busy"

static const char *key;
static int depth, seconds;

static double now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static DBusConnection *connect_bus(void)
{
        const char *addr = getenv("KMSD_BUS_ADDRESS");
        DBusError err;
        DBusConnection *c;

        dbus_error_init(&err);
        if (!addr) {
                fprintf(stderr, "fair-check: KMSD_BUS_ADDRESS is not set\n");
                return NULL;
        }
        c = dbus_connection_open_private(addr, &err);
        if (!c || !dbus_bus_register(c, &err)) {
                fprintf(stderr, "fair-check: cannot connect to %s: %s\n", addr, err.message ? err.message : "?");
                dbus_error_free(&err);
                if (c) {
                        dbus_connection_close(c);
                        dbus_connection_unref(c);
                }
                return NULL;
        }
        return c;
}

static DBusMessage *sign_call(void)
{
        static const unsigned char data[] = "fairness";
        const unsigned char *p = data;
        DBusMessage *m = dbus_message_new_method_call(NAME, PATH, NAME, "Sign");
        DBusMessageIter it, arr, dict;

        if (!m)
                return NULL;
        dbus_message_iter_init_append(m, &it);
        if (!dbus_message_iter_append_basic(&it, DBUS_TYPE_STRING, &key) ||
            !dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "y", &arr) ||
            !dbus_message_iter_append_fixed_array(&arr, DBUS_TYPE_BYTE, &p, (int)sizeof(data) - 1) ||
            !dbus_message_iter_close_container(&it, &arr) ||
            !dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "{sv}", &dict) ||
            !dbus_message_iter_close_container(&it, &dict)) {
                dbus_message_unref(m);
                return NULL;
        }
        return m;
}

struct flood_stats {
        pthread_mutex_t lock;
        long replies, busy, errors;
};

static struct flood_stats stats = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void *flood_one(void *arg)
{
        DBusConnection *c = connect_bus();
        double until = now_ms() + seconds * 1000.0;
        long replies = 0, busy = 0, errors = 0, in_flight = 0;
        double resume = 0;

        if (!c)
                return NULL;
        for (;;) {
                DBusMessage *m;

                /* After Busy, wait 20 ms before refilling: the queue stays
                 * full without flooding the bus thread with refusals. */
                while (in_flight < depth && now_ms() < until && now_ms() >= resume) {
                        DBusMessage *call = sign_call();

                        if (!call || !dbus_connection_send(c, call, NULL))
                                break;
                        dbus_message_unref(call);
                        in_flight++;
                }
                if (in_flight == 0)
                        break;
                if (!dbus_connection_read_write(c, 10))
                        break;
                while ((m = dbus_connection_pop_message(c))) {
                        int type = dbus_message_get_type(m);

                        if (type == DBUS_MESSAGE_TYPE_METHOD_RETURN) {
                                replies++;
                                in_flight--;
                        } else if (type == DBUS_MESSAGE_TYPE_ERROR) {
                                if (strcmp(dbus_message_get_error_name(m), BUSY) == 0) {
                                        busy++;
                                        resume = now_ms() + 20.0;
                                } else
                                        errors++;
                                in_flight--;
                        }
                        dbus_message_unref(m);
                }
                /* Past the end: wait only for what is in flight, for at
                 * most a minute. */
                if (now_ms() > until + 60000.0)
                        break;
        }
        pthread_mutex_lock(&stats.lock);
        stats.replies += replies;
        stats.busy += busy;
        stats.errors += errors;
        pthread_mutex_unlock(&stats.lock);
        dbus_connection_close(c);
        dbus_connection_unref(c);
        return NULL;
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;

        return x < y ? -1 : x > y;
}

static int probe(int count)
{
        DBusConnection *c = connect_bus();
        double *lat = calloc((size_t)count, sizeof(*lat));
        int n = 0, errors = 0;

        if (!c || !lat)
                return 1;
        for (int i = 0; i < count; i++) {
                DBusMessage *call = sign_call(), *reply;
                DBusError err;
                double t0 = now_ms();

                dbus_error_init(&err);
                if (!call)
                        return 1;
                reply = dbus_connection_send_with_reply_and_block(c, call, 120000, &err);
                dbus_message_unref(call);
                if (!reply) {
                        errors++;
                        fprintf(stderr, "probe: %s\n", err.message ? err.message : "?");
                        dbus_error_free(&err);
                        continue;
                }
                dbus_message_unref(reply);
                lat[n++] = now_ms() - t0;
        }
        qsort(lat, (size_t)n, sizeof(*lat), cmp_double);
        printf("probe: n=%d p50_ms=%.1f p90_ms=%.1f max_ms=%.1f errors=%d\n", n, n ? lat[n / 2] : -1.0,
               n ? lat[(n * 9) / 10] : -1.0, n ? lat[n - 1] : -1.0, errors);
        free(lat);
        dbus_connection_close(c);
        dbus_connection_unref(c);
        return 0;
}

int main(int argc, char **argv)
{
        if (argc == 6 && strcmp(argv[1], "flood") == 0) {
                int conns = atoi(argv[3]);
                pthread_t t[64];

                key = argv[2];
                depth = atoi(argv[4]);
                seconds = atoi(argv[5]);
                if (conns < 1 || conns > 64 || depth < 1 || seconds < 1)
                        return 1;
                dbus_threads_init_default();
                for (int i = 0; i < conns; i++)
                        pthread_create(&t[i], NULL, flood_one, NULL);
                for (int i = 0; i < conns; i++)
                        pthread_join(t[i], NULL);
                printf("flood: %ld replies, %ld busy, %ld other errors\n", stats.replies, stats.busy, stats.errors);
                return 0;
        }
        if (argc == 4 && strcmp(argv[1], "probe") == 0) {
                key = argv[2];
                return probe(atoi(argv[3]));
        }
        fprintf(stderr, "usage: fair-check flood KEY CONNS DEPTH SECONDS | probe KEY COUNT\n");
        return 1;
}
