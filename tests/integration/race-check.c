/* race-check: kmsd under concurrent state changes, for
 * tests/integration/race.sh. A raw libdbus client (none of kmsd's code),
 * with two modes:
 *
 *   race-check state ADDRESS ROUNDS PARALLEL VERSIONS_OUT
 *      Promise A: key state changes are atomic; revoked and destroyed are
 *      terminal. Per round a fresh ec-p256 key (sign, derive; a third of
 *      the rounds with rotate_every, so RevokeKey's replace path runs, a
 *      third with keep_versions 2, so trimming runs). Four connections
 *      race on it: DisableKey/EnableKey in turn, RotateKey, SetKeyOptions
 *      (keep_versions 2/3, rotate_after_uses 4/2/none) and Sign, while the
 *      owner's connection calls RevokeKey (reason compromised, every
 *      version; in the rounds with a schedule first the primary alone) or,
 *      in every fourth round, DestroyKey. Once that reply was a success and
 *      every racer's call in flight is answered: DescribeKey shows state
 *      revoked (destroyed) and no version active or lost; EnableKey,
 *      RotateKey, Sign, DisableKey and SetKeyOptions all fail (their error
 *      names are counted); DescribeKey still shows it terminal. PARALLEL
 *      rounds run at once, each on its own five connections. After the
 *      last round every key is described again (a rotation the use counter
 *      queued may run late). Every version of every key goes to
 *      VERSIONS_OUT as "NAME<TAB>VERSION<TAB>STATE<TAB>BACKEND_ID" for the
 *      script's pkcs11-tool check.
 *
 *   race-check order ADDRESS ROUNDS LOAD PEER_DER VERSIONS_OUT
 *      Promise B: once RevokeKey has replied, no reply carrying a revoked
 *      version leaves kmsd. kmsd answers one connection in the order it
 *      sends, so on one connection the arrival order is kmsd's sending
 *      order. Per round a fresh key and a session on it (OpenSession with
 *      the peer key PEER_DER); on ONE connection, without waiting: 30
 *      Sign, Derive and Seal calls in turn, RevokeKey (every version, or
 *      the primary alone; half the rounds on a key with rotate_every, so
 *      the primary is replaced first), 30 more; then the replies are read
 *      in arrival order. After the RevokeKey reply no Sign or Derive reply
 *      may carry a revoked version as used_version, and every Seal reply
 *      must be the error KeyRevoked. LOAD other connections sign and
 *      derive with the round's key all the while. The round's versions are
 *      appended to VERSIONS_OUT as above.
 *
 * Prints "PASS: ..." / "FAIL: ..." (one line per promise checked, plus up
 * to 8 example lines per failing check) and "INFO: ..." lines; exits 0
 * only if every check passed. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <dbus/dbus.h>

#include "check.h"

#define DEST "org.kmsd.KeyManager1"
#define OBJ "/org/kmsd/KeyManager1"
#define IFACE "org.kmsd.KeyManager1"
#define ERR_PREFIX "org.kmsd.KeyManager1.Error."
#define CALL_TIMEOUT_MS 60000
#define MAX_EXAMPLES 8

static const char *bus_address;

/* ------------------------------------------------------------ failures */

/* A check counted over many rounds: how many rounds it held in, and the
 * first few ways it did not. */
struct tally {
        const char *what;
        pthread_mutex_t lock;
        unsigned ok, bad;
        char examples[MAX_EXAMPLES][400];
};

#define TALLY(w) { .what = (w), .lock = PTHREAD_MUTEX_INITIALIZER }

static void tally_ok(struct tally *t)
{
        pthread_mutex_lock(&t->lock);
        t->ok++;
        pthread_mutex_unlock(&t->lock);
}

static void tally_bad(struct tally *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tally_bad(struct tally *t, const char *fmt, ...)
{
        va_list ap;

        pthread_mutex_lock(&t->lock);
        if (t->bad < MAX_EXAMPLES) {
                va_start(ap, fmt);
                vsnprintf(t->examples[t->bad], sizeof(t->examples[t->bad]), fmt, ap);
                va_end(ap);
        }
        t->bad++;
        pthread_mutex_unlock(&t->lock);
}

static void tally_report(struct tally *t)
{
        for (unsigned i = 0; i < t->bad && i < MAX_EXAMPLES; i++)
                printf("FAIL:   e.g. %s\n", t->examples[i]);
        check(t->bad == 0 && t->ok > 0, "%s (held in %u, failed in %u)", t->what, t->ok, t->bad);
}

/* Error names seen, counted: "RotateKey after revoke: InvalidState 312". */
#define MAX_NAMES 16
struct histo {
        pthread_mutex_t lock;
        unsigned n;
        char name[MAX_NAMES][64];
        unsigned count[MAX_NAMES];
};

#define HISTO { .lock = PTHREAD_MUTEX_INITIALIZER }

static void histo_add(struct histo *h, const char *name)
{
        pthread_mutex_lock(&h->lock);
        for (unsigned i = 0; i < h->n; i++)
                if (strcmp(h->name[i], name) == 0) {
                        h->count[i]++;
                        goto out;
                }
        if (h->n < MAX_NAMES) {
                snprintf(h->name[h->n], sizeof(h->name[h->n]), "%s", name);
                h->count[h->n++] = 1;
        }
out:
        pthread_mutex_unlock(&h->lock);
}

static void histo_print(struct histo *h, const char *what)
{
        char buf[1024];
        size_t off = 0;

        buf[0] = '\0';
        for (unsigned i = 0; i < h->n && off < sizeof(buf); i++)
                off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%s%s %u", i ? ", " : "", h->name[i],
                                        h->count[i]);
        printf("INFO: %s: %s\n", what, h->n ? buf : "none");
}

/* ------------------------------------------------------------ the bus */

static DBusConnection *connect_bus(void)
{
        DBusConnection *c;
        DBusError e;

        dbus_error_init(&e);
        c = dbus_connection_open_private(bus_address, &e);
        if (!c || !dbus_bus_register(c, &e)) {
                fprintf(stderr, "race-check: cannot connect to %s: %s\n", bus_address, e.message ? e.message : "?");
                dbus_error_free(&e);
                exit(2);
        }
        dbus_connection_set_exit_on_disconnect(c, FALSE);
        return c;
}

static void disconnect_bus(DBusConnection *c)
{
        dbus_connection_close(c);
        dbus_connection_unref(c);
}

static void oom(void)
{
        fprintf(stderr, "race-check: out of memory\n");
        exit(2);
}

static DBusMessage *new_call(const char *member, DBusMessageIter *it)
{
        DBusMessage *m = dbus_message_new_method_call(DEST, OBJ, IFACE, member);

        if (!m)
                oom();
        dbus_message_iter_init_append(m, it);
        return m;
}

static void add_str(DBusMessageIter *it, const char *s)
{
        if (!dbus_message_iter_append_basic(it, DBUS_TYPE_STRING, &s))
                oom();
}

static void add_bytes(DBusMessageIter *it, const uint8_t *p, size_t n)
{
        DBusMessageIter a;

        if (!dbus_message_iter_open_container(it, DBUS_TYPE_ARRAY, "y", &a) ||
            !dbus_message_iter_append_fixed_array(&a, DBUS_TYPE_BYTE, &p, (int)n) ||
            !dbus_message_iter_close_container(it, &a))
                oom();
}

/* add_opts(it, KEY, TYPE, VALUE..., NULL): an a{sv}. TYPE is 's' (const
 * char *), 'u' (unsigned), 't' (uint64_t), 'b' (int), 'y' (const uint8_t *,
 * size_t: an ay) or 'S' (const char **, int: an as). */
static void add_opts(DBusMessageIter *it, ...)
{
        DBusMessageIter dict, entry, var, arr;
        const char *key;
        va_list ap;

        if (!dbus_message_iter_open_container(it, DBUS_TYPE_ARRAY, "{sv}", &dict))
                oom();
        va_start(ap, it);
        while ((key = va_arg(ap, const char *))) {
                int type = va_arg(ap, int);
                char sig[3] = { (char)type, 0, 0 };
                bool ok = true;

                if (type == 'y' || type == 'S') {
                        sig[0] = 'a';
                        sig[1] = type == 'y' ? 'y' : 's';
                }
                if (!dbus_message_iter_open_container(&dict, DBUS_TYPE_DICT_ENTRY, NULL, &entry) ||
                    !dbus_message_iter_append_basic(&entry, DBUS_TYPE_STRING, &key) ||
                    !dbus_message_iter_open_container(&entry, DBUS_TYPE_VARIANT, sig, &var))
                        oom();
                switch (type) {
                case 's': {
                        const char *s = va_arg(ap, const char *);
                        ok = dbus_message_iter_append_basic(&var, DBUS_TYPE_STRING, &s);
                        break;
                }
                case 'u': {
                        dbus_uint32_t u = va_arg(ap, unsigned);
                        ok = dbus_message_iter_append_basic(&var, DBUS_TYPE_UINT32, &u);
                        break;
                }
                case 't': {
                        dbus_uint64_t t = va_arg(ap, uint64_t);
                        ok = dbus_message_iter_append_basic(&var, DBUS_TYPE_UINT64, &t);
                        break;
                }
                case 'b': {
                        dbus_bool_t b = va_arg(ap, int) ? TRUE : FALSE;
                        ok = dbus_message_iter_append_basic(&var, DBUS_TYPE_BOOLEAN, &b);
                        break;
                }
                case 'y': {
                        const uint8_t *p = va_arg(ap, const uint8_t *);
                        size_t n = va_arg(ap, size_t);
                        add_bytes(&var, p, n);
                        break;
                }
                case 'S': {
                        const char **v = va_arg(ap, const char **);
                        int n = va_arg(ap, int);
                        ok = dbus_message_iter_open_container(&var, DBUS_TYPE_ARRAY, "s", &arr);
                        for (int i = 0; ok && i < n; i++)
                                ok = dbus_message_iter_append_basic(&arr, DBUS_TYPE_STRING, &v[i]);
                        ok = ok && dbus_message_iter_close_container(&var, &arr);
                        break;
                }
                default:
                        fprintf(stderr, "race-check: bad option type %c\n", type);
                        exit(2);
                }
                if (!ok || !dbus_message_iter_close_container(&entry, &var) ||
                    !dbus_message_iter_close_container(&dict, &entry))
                        oom();
        }
        va_end(ap);
        if (!dbus_message_iter_close_container(it, &dict))
                oom();
}

/* The outcome of a call: ok, or the error's short name. */
struct res {
        bool ok;
        char err[128];
        char msg[256];
        DBusMessage *reply; /* owned; NULL on error */
};

static void res_clear(struct res *r)
{
        if (r->reply)
                dbus_message_unref(r->reply);
        r->reply = NULL;
}

static const char *short_error(const char *name)
{
        size_t n = strlen(ERR_PREFIX);

        return strncmp(name, ERR_PREFIX, n) == 0 ? name + n : name;
}

/* From a reply or error message (not unref'd). */
static void res_from_message(struct res *r, DBusMessage *m)
{
        memset(r, 0, sizeof(*r));
        if (dbus_message_get_type(m) == DBUS_MESSAGE_TYPE_ERROR) {
                const char *text = NULL;

                snprintf(r->err, sizeof(r->err), "%s", short_error(dbus_message_get_error_name(m)));
                if (dbus_message_get_args(m, NULL, DBUS_TYPE_STRING, &text, DBUS_TYPE_INVALID) && text)
                        snprintf(r->msg, sizeof(r->msg), "%s", text);
                return;
        }
        r->ok = true;
        r->reply = dbus_message_ref(m);
}

/* Sends m (and unrefs it), waits for the answer. */
static struct res call(DBusConnection *c, DBusMessage *m)
{
        struct res r;
        DBusError e;
        DBusMessage *reply;

        dbus_error_init(&e);
        reply = dbus_connection_send_with_reply_and_block(c, m, CALL_TIMEOUT_MS, &e);
        dbus_message_unref(m);
        if (!reply) {
                memset(&r, 0, sizeof(r));
                snprintf(r.err, sizeof(r.err), "%s", e.name ? short_error(e.name) : "?");
                snprintf(r.msg, sizeof(r.msg), "%s", e.message ? e.message : "");
                dbus_error_free(&e);
                return r;
        }
        res_from_message(&r, reply);
        dbus_message_unref(reply);
        return r;
}

static const char *res_name(const struct res *r)
{
        return r->ok ? "ok" : r->err;
}

/* Reads the u after the first argument (Sign, Derive: ay, u). */
static uint32_t reply_used_version(DBusMessage *m)
{
        DBusMessageIter it;
        dbus_uint32_t u = 0;

        if (!dbus_message_iter_init(m, &it) || !dbus_message_iter_next(&it) ||
            dbus_message_iter_get_arg_type(&it) != DBUS_TYPE_UINT32)
                return 0;
        dbus_message_iter_get_basic(&it, &u);
        return u;
}

/* ------------------------------------------------------------ key calls */

static const char *const USAGES[] = { "sign", "derive" };

static struct res create_key(DBusConnection *c, const char *name, bool sched, bool keep)
{
        DBusMessageIter it;
        DBusMessage *m = new_call("CreateKey", &it);

        add_str(&it, name);
        add_str(&it, "ec-p256");
        if (sched && keep)
                add_opts(&it, "usages", 'S', USAGES, 2, "rotate_every", 't', (uint64_t)86400, "keep_versions", 'u', 2u,
                         NULL);
        else if (sched)
                add_opts(&it, "usages", 'S', USAGES, 2, "rotate_every", 't', (uint64_t)86400, NULL);
        else if (keep)
                add_opts(&it, "usages", 'S', USAGES, 2, "keep_versions", 'u', 2u, NULL);
        else
                add_opts(&it, "usages", 'S', USAGES, 2, NULL);
        return call(c, m);
}

/* SoftHSM now and then fails a key generation among concurrent ones
 * (Backend, "Input/output error"), and kmsd answers Busy when too many
 * run: neither is what this test is about, so the creation is retried. */
static atomic_uint create_retries;

static struct res create_key_retry(DBusConnection *c, const char *name, bool sched, bool keep)
{
        struct res r;

        for (unsigned tries = 0;; tries++) {
                r = create_key(c, name, sched, keep);
                if (r.ok || (strcmp(r.err, "Busy") != 0 && strcmp(r.err, "Backend") != 0) || tries >= 100)
                        return r;
                res_clear(&r);
                atomic_fetch_add(&create_retries, 1);
                usleep(5000);
        }
}

/* METHOD(s name, a{sv} {}) */
static struct res name_call(DBusConnection *c, const char *member, const char *name)
{
        DBusMessageIter it;
        DBusMessage *m = new_call(member, &it);

        add_str(&it, name);
        add_opts(&it, NULL);
        return call(c, m);
}

static DBusMessage *revoke_msg(const char *name, uint32_t version)
{
        DBusMessageIter it;
        DBusMessage *m = new_call("RevokeKey", &it);

        add_str(&it, name);
        if (version)
                add_opts(&it, "reason", 's', "compromised", "version", 'u', (unsigned)version, NULL);
        else
                add_opts(&it, "reason", 's', "compromised", NULL);
        return m;
}

static DBusMessage *sign_msg(const char *name)
{
        static const uint8_t data[] = "signed while racing";
        DBusMessageIter it;
        DBusMessage *m = new_call("Sign", &it);

        add_str(&it, name);
        add_bytes(&it, data, sizeof(data) - 1);
        add_opts(&it, NULL);
        return m;
}

static DBusMessage *derive_msg(const char *name, const uint8_t *peer, size_t peer_len)
{
        DBusMessageIter it;
        DBusMessage *m = new_call("Derive", &it);

        add_str(&it, name);
        add_bytes(&it, peer, peer_len);
        add_opts(&it, NULL);
        return m;
}

static DBusMessage *seal_msg(const char *id)
{
        static const uint8_t data[] = "sealed while racing";
        DBusMessageIter it;
        DBusMessage *m = new_call("Seal", &it);

        add_str(&it, id);
        add_bytes(&it, data, sizeof(data) - 1);
        add_opts(&it, NULL);
        return m;
}

static struct res set_options(DBusConnection *c, const char *name, unsigned variant)
{
        DBusMessageIter it;
        DBusMessage *m = new_call("SetKeyOptions", &it);

        add_str(&it, name);
        switch (variant % 4) {
        case 0: add_opts(&it, "keep_versions", 'u', 2u, NULL); break;
        case 1: add_opts(&it, "keep_versions", 'u', 3u, "rotate_after_uses", 't', (uint64_t)4, NULL); break;
        case 2: add_opts(&it, "rotate_after_uses", 't', (uint64_t)0, NULL); break;
        default: add_opts(&it, "keep_versions", 'u', 2u, "rotate_after_uses", 't', (uint64_t)2, NULL); break;
        }
        return call(c, m);
}

/* ------------------------------------------------------------ DescribeKey */

struct version_info {
        uint32_t version;
        char state[16];
        char backend_id[80];
};

struct key_info {
        char state[16];
        uint32_t primary;
        size_t n;
        struct version_info *v;
};

static void key_info_clear(struct key_info *k)
{
        free(k->v);
        memset(k, 0, sizeof(*k));
}

/* Walks an a{sv} (it points at the array); calls fn for each entry. */
static void walk_dict(DBusMessageIter *arr, void (*fn)(const char *key, DBusMessageIter *var, void *ud), void *ud)
{
        DBusMessageIter dict;

        dbus_message_iter_recurse(arr, &dict);
        while (dbus_message_iter_get_arg_type(&dict) == DBUS_TYPE_DICT_ENTRY) {
                DBusMessageIter entry, var;
                const char *key;

                dbus_message_iter_recurse(&dict, &entry);
                dbus_message_iter_get_basic(&entry, &key);
                dbus_message_iter_next(&entry);
                dbus_message_iter_recurse(&entry, &var);
                fn(key, &var, ud);
                dbus_message_iter_next(&dict);
        }
}

static void get_str(DBusMessageIter *var, char *buf, size_t len)
{
        const char *s = "";

        if (dbus_message_iter_get_arg_type(var) == DBUS_TYPE_STRING)
                dbus_message_iter_get_basic(var, &s);
        snprintf(buf, len, "%s", s);
}

static uint32_t get_u32(DBusMessageIter *var)
{
        dbus_uint32_t u = 0;

        if (dbus_message_iter_get_arg_type(var) == DBUS_TYPE_UINT32)
                dbus_message_iter_get_basic(var, &u);
        return u;
}

static void version_entry(const char *key, DBusMessageIter *var, void *ud)
{
        struct version_info *v = ud;

        if (strcmp(key, "version") == 0)
                v->version = get_u32(var);
        else if (strcmp(key, "state") == 0)
                get_str(var, v->state, sizeof(v->state));
        else if (strcmp(key, "backend_id") == 0)
                get_str(var, v->backend_id, sizeof(v->backend_id));
}

static void key_entry(const char *key, DBusMessageIter *var, void *ud)
{
        struct key_info *k = ud;

        if (strcmp(key, "state") == 0)
                get_str(var, k->state, sizeof(k->state));
        else if (strcmp(key, "primary_version") == 0)
                k->primary = get_u32(var);
        else if (strcmp(key, "versions") == 0 && dbus_message_iter_get_arg_type(var) == DBUS_TYPE_ARRAY) {
                DBusMessageIter arr;
                size_t cap = 0;

                dbus_message_iter_recurse(var, &arr);
                while (dbus_message_iter_get_arg_type(&arr) == DBUS_TYPE_ARRAY) {
                        if (k->n == cap) {
                                cap = cap ? 2 * cap : 16;
                                k->v = realloc(k->v, cap * sizeof(*k->v));
                                if (!k->v)
                                        oom();
                        }
                        memset(&k->v[k->n], 0, sizeof(k->v[k->n]));
                        walk_dict(&arr, version_entry, &k->v[k->n]);
                        k->n++;
                        dbus_message_iter_next(&arr);
                }
        }
}

static struct res describe(DBusConnection *c, const char *name, struct key_info *k)
{
        DBusMessageIter it;
        DBusMessage *m = new_call("DescribeKey", &it);
        struct res r;

        memset(k, 0, sizeof(*k));
        add_str(&it, name);
        r = call(c, m);
        if (r.ok && dbus_message_iter_init(r.reply, &it) && dbus_message_iter_get_arg_type(&it) == DBUS_TYPE_ARRAY)
                walk_dict(&it, key_entry, k);
        res_clear(&r);
        return r;
}

/* "v1 revoked, v2 active, ..." */
static void versions_text(const struct key_info *k, char *buf, size_t len)
{
        size_t off = 0;

        buf[0] = '\0';
        for (size_t i = 0; i < k->n && off + 1 < len; i++)
                off += (size_t)snprintf(buf + off, len - off, "%sv%u %s", i ? ", " : "", k->v[i].version,
                                        k->v[i].state);
}

/* Versions active or lost: the ones a terminal key may not have. */
static size_t live_versions(const struct key_info *k)
{
        size_t n = 0;

        for (size_t i = 0; i < k->n; i++)
                if (strcmp(k->v[i].state, "active") == 0 || strcmp(k->v[i].state, "lost") == 0)
                        n++;
        return n;
}

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static FILE *versions_out;

static void write_versions(const char *name, const struct key_info *k)
{
        pthread_mutex_lock(&out_lock);
        for (size_t i = 0; i < k->n; i++)
                fprintf(versions_out, "%s\t%u\t%s\t%s\n", name, k->v[i].version, k->v[i].state, k->v[i].backend_id);
        fflush(versions_out);
        pthread_mutex_unlock(&out_lock);
}

static void sleep_ms(unsigned ms)
{
        struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

        nanosleep(&ts, NULL);
}

static double now_s(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ============================================================ mode state */

enum racer_kind { RACE_TOGGLE, RACE_ROTATE, RACE_SET, RACE_SIGN, N_RACERS };
static const char *const racer_names[N_RACERS] = { "DisableKey/EnableKey", "RotateKey", "SetKeyOptions", "Sign" };

static struct histo racer_results[N_RACERS] = { HISTO, HISTO, HISTO, HISTO };
static struct histo after_results[5] = { HISTO, HISTO, HISTO, HISTO, HISTO };
static const char *const after_names[5] = { "EnableKey", "RotateKey", "Sign", "DisableKey", "SetKeyOptions" };
static struct histo primary_revoke_results = HISTO;
static struct histo terminal_results = HISTO;

static struct tally t_terminal = TALLY("A: after a successful RevokeKey/DestroyKey (racers answered) DescribeKey shows "
                                       "the key revoked/destroyed with no version active or lost");
static struct tally t_refused = TALLY("A: EnableKey, RotateKey, Sign, DisableKey and SetKeyOptions on a revoked or "
                                      "destroyed key all fail");
static struct tally t_still = TALLY("A: the key is still revoked/destroyed with no active or lost version after "
                                    "those calls");
static struct tally t_final = TALLY("A: after all rounds, every key is still revoked/destroyed with no active or "
                                    "lost version");
static struct tally t_create = TALLY("A: CreateKey of each round's key succeeded (retried while Busy or Backend)");
static struct tally t_done = TALLY("A: the owner's RevokeKey/DestroyKey succeeded (retried while Busy)");

struct slot {
        unsigned id;
        DBusConnection *owner, *racer[N_RACERS];
};

struct racer {
        struct slot *slot;
        enum racer_kind kind;
        const char *name;
        atomic_bool *stop;
        unsigned calls, oks;
};

static void *racer_main(void *arg)
{
        struct racer *rc = arg;
        DBusConnection *c = rc->slot->racer[rc->kind];
        unsigned i = 0;

        while (!atomic_load(rc->stop)) {
                struct res r;

                switch (rc->kind) {
                case RACE_TOGGLE: r = name_call(c, i % 2 ? "EnableKey" : "DisableKey", rc->name); break;
                case RACE_ROTATE: r = name_call(c, "RotateKey", rc->name); break;
                case RACE_SET: r = set_options(c, rc->name, i); break;
                default: r = call(c, sign_msg(rc->name)); break;
                }
                histo_add(&racer_results[rc->kind], res_name(&r));
                rc->calls++;
                rc->oks += r.ok;
                res_clear(&r);
                i++;
        }
        return NULL;
}

static atomic_uint next_round;
static unsigned n_rounds;
static atomic_uint racer_oks, racer_calls;

static void state_round(struct slot *s, unsigned round)
{
        char name[64], vt[2048];
        bool sched = round % 3 == 1, keep = round % 3 == 2, destroy = round % 4 == 3;
        const char *want = destroy ? "destroyed" : "revoked";
        atomic_bool stop = false;
        bool primary_revoked = false;
        struct racer rc[N_RACERS];
        pthread_t th[N_RACERS];
        struct key_info k;
        struct res r, r_done;
        unsigned tries;

        snprintf(name, sizeof(name), "race/a%05u", round);
        r = create_key_retry(s->owner, name, sched, keep);
        res_clear(&r);
        if (!r.ok) {
                tally_bad(&t_create, "%s: CreateKey failed: %s: %s", name, r.err, r.msg);
                return;
        }
        tally_ok(&t_create);

        for (int i = 0; i < N_RACERS; i++) {
                rc[i] = (struct racer){ .slot = s, .kind = (enum racer_kind)i, .name = name, .stop = &stop };
                if (pthread_create(&th[i], NULL, racer_main, &rc[i]) != 0)
                        oom();
        }
        /* Let the racers get going, so the change lands among their calls. */
        sleep_ms((unsigned)(rand() % 12));

        if (sched && !destroy) {
                /* The primary alone first: RevokeKey rotates before it
                 * revokes (the replace path), racing the others. */
                for (tries = 0; tries < 50; tries++) {
                        if (!describe(s->owner, name, &k).ok || !k.primary) {
                                key_info_clear(&k);
                                break;
                        }
                        r = call(s->owner, revoke_msg(name, k.primary));
                        key_info_clear(&k);
                        histo_add(&primary_revoke_results, res_name(&r));
                        res_clear(&r);
                        primary_revoked |= r.ok;
                        if (r.ok || strcmp(r.err, "Busy") != 0)
                                break;
                        sleep_ms(2);
                }
        }
        for (tries = 0;; tries++) {
                if (destroy) {
                        DBusMessageIter it;
                        DBusMessage *m = new_call("DestroyKey", &it);

                        add_str(&it, name);
                        add_opts(&it, NULL);
                        r = call(s->owner, m);
                } else
                        r = call(s->owner, revoke_msg(name, 0));
                histo_add(&terminal_results, res_name(&r));
                res_clear(&r);
                if (r.ok || strcmp(r.err, "Busy") != 0 || tries > 200)
                        break;
                sleep_ms(2);
        }
        /* Every racer's call in flight is answered once it is joined. */
        atomic_store(&stop, true);
        for (int i = 0; i < N_RACERS; i++) {
                pthread_join(th[i], NULL);
                atomic_fetch_add(&racer_oks, rc[i].oks);
                atomic_fetch_add(&racer_calls, rc[i].calls);
        }
        /* Revoking the primary alone revokes the key when no usable
         * version is left (the replace rotation did not run because the
         * key was disabled just then): RevokeKey then answers
         * InvalidState, the key being revoked already. From that reply on
         * the key must stay revoked like after a successful one. */
        if (!r.ok && primary_revoked && strcmp(r.err, "InvalidState") == 0)
                histo_add(&terminal_results, "(InvalidState after the primary's revocation: revoked already)");
        else if (!r.ok) {
                tally_bad(&t_done, "%s: %s failed: %s: %s", name, destroy ? "DestroyKey" : "RevokeKey", r.err, r.msg);
                return;
        }
        tally_ok(&t_done);
        r_done = r;

        r = describe(s->owner, name, &k);
        versions_text(&k, vt, sizeof(vt));
        if (!r.ok)
                tally_bad(&t_terminal, "%s: DescribeKey failed: %s: %s", name, r.err, r.msg);
        else if (strcmp(k.state, want) != 0 || live_versions(&k) > 0)
                tally_bad(&t_terminal, "%s: %s replied %s, then the key is %s, primary v%u; versions: %s", name,
                          destroy ? "DestroyKey" : "RevokeKey", res_name(&r_done), k.state, k.primary, vt);
        else
                tally_ok(&t_terminal);
        key_info_clear(&k);

        {
                /* The order of the report: an enable, a rotation and a
                 * signature would bring a revoked key back to life. */
                char got[512] = "";
                size_t off = 0;
                bool any_ok = false;

                for (int i = 0; i < 5; i++) {
                        switch (i) {
                        case 0: r = name_call(s->owner, "EnableKey", name); break;
                        case 1: r = name_call(s->owner, "RotateKey", name); break;
                        case 2: r = call(s->owner, sign_msg(name)); break;
                        case 3: r = name_call(s->owner, "DisableKey", name); break;
                        default: r = set_options(s->owner, name, round); break;
                        }
                        histo_add(&after_results[i], res_name(&r));
                        off += (size_t)snprintf(got + off, sizeof(got) - off, "%s%s -> %s", i ? ", " : "",
                                                after_names[i], res_name(&r));
                        if (r.ok && i == 1) {
                                uint32_t v = 0;

                                dbus_message_get_args(r.reply, NULL, DBUS_TYPE_UINT32, &v, DBUS_TYPE_INVALID);
                                off += (size_t)snprintf(got + off, sizeof(got) - off, " (version %u)", v);
                        }
                        if (r.ok && i == 2)
                                off += (size_t)snprintf(got + off, sizeof(got) - off, " (used_version %u)",
                                                        reply_used_version(r.reply));
                        any_ok |= r.ok;
                        res_clear(&r);
                }
                if (any_ok)
                        tally_bad(&t_refused, "%s (%s): %s", name, want, got);
                else
                        tally_ok(&t_refused);
        }

        r = describe(s->owner, name, &k);
        versions_text(&k, vt, sizeof(vt));
        if (!r.ok)
                tally_bad(&t_still, "%s: DescribeKey failed: %s: %s", name, r.err, r.msg);
        else if (strcmp(k.state, want) != 0 || live_versions(&k) > 0)
                tally_bad(&t_still, "%s: now %s, primary v%u; versions: %s", name, k.state, k.primary, vt);
        else
                tally_ok(&t_still);
        key_info_clear(&k);
}

static void *slot_main(void *arg)
{
        struct slot *s = arg;
        unsigned round;

        while ((round = atomic_fetch_add(&next_round, 1)) < n_rounds)
                state_round(s, round);
        return NULL;
}

static int mode_state(unsigned rounds, unsigned parallel)
{
        struct slot *slots = calloc(parallel, sizeof(*slots));
        pthread_t *th = calloc(parallel, sizeof(*th));
        DBusConnection *c;
        double t0 = now_s();

        if (!slots || !th)
                oom();
        n_rounds = rounds;
        for (unsigned i = 0; i < parallel; i++) {
                slots[i].id = i;
                slots[i].owner = connect_bus();
                for (int j = 0; j < N_RACERS; j++)
                        slots[i].racer[j] = connect_bus();
        }
        for (unsigned i = 0; i < parallel; i++)
                if (pthread_create(&th[i], NULL, slot_main, &slots[i]) != 0)
                        oom();
        for (unsigned i = 0; i < parallel; i++)
                pthread_join(th[i], NULL);
        printf("INFO: state: %u rounds, %u at a time, in %.1f s; racers made %u calls, %u succeeded; CreateKey retried %u "
               "times (Busy, Backend)\n",
               rounds, parallel, now_s() - t0, atomic_load(&racer_calls), atomic_load(&racer_oks),
               atomic_load(&create_retries));
        for (int i = 0; i < N_RACERS; i++) {
                char what[128];

                snprintf(what, sizeof(what), "racer %s results", racer_names[i]);
                histo_print(&racer_results[i], what);
        }
        histo_print(&primary_revoke_results, "RevokeKey of the primary alone (scheduled keys, replace path)");
        histo_print(&terminal_results, "the owner's RevokeKey/DestroyKey (with Busy retries)");
        for (int i = 0; i < 5; i++) {
                char what[128];

                snprintf(what, sizeof(what), "%s on the revoked/destroyed key", after_names[i]);
                histo_print(&after_results[i], what);
        }

        /* A rotation the use counter queued may run after the round:
         * describe every key once more, now that everything is quiet. */
        sleep_ms(1500);
        c = slots[0].owner;
        for (unsigned round = 0; round < rounds; round++) {
                bool destroy = round % 4 == 3;
                const char *want = destroy ? "destroyed" : "revoked";
                char name[64], vt[2048];
                struct key_info k;
                struct res r;

                snprintf(name, sizeof(name), "race/a%05u", round);
                r = describe(c, name, &k);
                versions_text(&k, vt, sizeof(vt));
                if (!r.ok)
                        tally_bad(&t_final, "%s: DescribeKey failed: %s: %s", name, r.err, r.msg);
                else if (strcmp(k.state, want) != 0 || live_versions(&k) > 0)
                        tally_bad(&t_final, "%s: %s, primary v%u; versions: %s", name, k.state, k.primary, vt);
                else
                        tally_ok(&t_final);
                if (r.ok)
                        write_versions(name, &k);
                key_info_clear(&k);
        }
        check(atomic_load(&racer_oks) > 0, "A: the racers' calls got through (%u of %u succeeded)",
              atomic_load(&racer_oks), atomic_load(&racer_calls));
        tally_report(&t_create);
        tally_report(&t_done);
        tally_report(&t_terminal);
        tally_report(&t_refused);
        tally_report(&t_still);
        tally_report(&t_final);
        for (unsigned i = 0; i < parallel; i++) {
                disconnect_bus(slots[i].owner);
                for (int j = 0; j < N_RACERS; j++)
                        disconnect_bus(slots[i].racer[j]);
        }
        free(slots);
        free(th);
        return check_exit_status();
}

/* ============================================================ mode order */

#define PIPE_BEFORE 30
#define PIPE_AFTER 30

enum call_kind { K_SIGN, K_DERIVE, K_SEAL, K_REVOKE };
static const char *const kind_names[] = { "Sign", "Derive", "Seal", "RevokeKey" };

static struct tally t_order_sign = TALLY("B: no Sign reply carrying a revoked version arrives after the RevokeKey reply "
                                         "(same connection)");
static struct tally t_order_derive = TALLY("B: no Derive reply carrying a revoked version arrives after the RevokeKey "
                                           "reply (same connection)");
static struct tally t_order_seal = TALLY("B: every Seal reply after the RevokeKey reply is the error KeyRevoked "
                                         "(same connection)");
static struct tally t_order_revoke = TALLY("B: the pipelined RevokeKey succeeded and every call was answered");
static struct histo order_after[3] = { HISTO, HISTO, HISTO };
static struct histo order_before[3] = { HISTO, HISTO, HISTO };

static char load_key[64];
static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_bool load_stop;
static atomic_uint load_calls, load_oks;
static const uint8_t *load_peer;
static size_t load_peer_len;

static void *load_main(void *arg)
{
        DBusConnection *c = connect_bus();
        unsigned n = 0;

        (void)arg;
        while (!atomic_load(&load_stop)) {
                char name[64];
                struct res r;

                pthread_mutex_lock(&load_lock);
                snprintf(name, sizeof(name), "%s", load_key);
                pthread_mutex_unlock(&load_lock);
                if (!name[0]) {
                        sleep_ms(2);
                        continue;
                }
                /* Signatures and derivations in turn: token work and
                 * CPU work (HKDF) beside the pipelined calls. */
                r = call(c, n++ % 2 ? derive_msg(name, load_peer, load_peer_len) : sign_msg(name));
                atomic_fetch_add(&load_calls, 1);
                if (r.ok)
                        atomic_fetch_add(&load_oks, 1);
                else if (strcmp(r.err, "NotFound") == 0 || strcmp(r.err, "KeyRevoked") == 0)
                        sleep_ms(1); /* between rounds */
                res_clear(&r);
        }
        disconnect_bus(c);
        return NULL;
}

struct pending {
        dbus_uint32_t serial;
        enum call_kind kind;
        bool answered;
};

static unsigned late_before_ok; /* calls sent before the revoke, answered ok after its reply */

/* One round's violations of one check: how many, and the first. */
struct viol {
        unsigned n;
        char first[400];
};

static void viol_add(struct viol *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void viol_add(struct viol *v, const char *fmt, ...)
{
        va_list ap;

        if (v->n++ == 0) {
                va_start(ap, fmt);
                vsnprintf(v->first, sizeof(v->first), fmt, ap);
                va_end(ap);
        }
}

static void viol_tally(struct tally *t, const struct viol *v)
{
        if (v->n == 0)
                tally_ok(t);
        else if (v->n == 1)
                tally_bad(t, "%s", v->first);
        else
                tally_bad(t, "%s (and %u more in this round)", v->first, v->n - 1);
}

static void order_round(DBusConnection *c, unsigned round, const uint8_t *peer, size_t peer_len)
{
        char name[64], id[64] = "", ctx[64];
        bool sched = round % 2 == 1, all = (round / 2) % 2 == 0;
        struct pending p[PIPE_BEFORE + PIPE_AFTER + 1];
        unsigned n = 0, answered = 0, revoke_pos = 0;
        uint32_t revoked_version = 0; /* 0: every version */
        bool revoke_seen = false, revoke_ok = false;
        char revoke_err[512] = "";
        struct viol v_sign = { 0 }, v_derive = { 0 }, v_seal = { 0 };
        struct key_info k;
        DBusMessageIter it;
        DBusMessage *m;
        struct res r;
        double deadline;

        snprintf(name, sizeof(name), "race/b%05u", round);
        r = create_key_retry(c, name, sched, false);
        res_clear(&r);
        if (!r.ok) {
                tally_bad(&t_order_revoke, "%s: CreateKey failed: %s: %s", name, r.err, r.msg);
                return;
        }
        m = new_call("OpenSession", &it);
        add_str(&it, name);
        add_bytes(&it, peer, peer_len);
        add_str(&it, "initiator");
        snprintf(ctx, sizeof(ctx), "race-check order round %u", round);
        add_opts(&it, "context", 'y', (const uint8_t *)ctx, strlen(ctx), "max_messages", 'u', 65536u, NULL);
        r = call(c, m);
        if (r.ok) {
                const char *s = "";

                dbus_message_get_args(r.reply, NULL, DBUS_TYPE_STRING, &s, DBUS_TYPE_INVALID);
                snprintf(id, sizeof(id), "%s", s);
        }
        res_clear(&r);
        if (!id[0]) {
                tally_bad(&t_order_revoke, "%s: OpenSession failed: %s: %s", name, r.err, r.msg);
                return;
        }
        if (!all) {
                r = describe(c, name, &k);
                revoked_version = k.primary;
                key_info_clear(&k);
                if (!r.ok || !revoked_version) {
                        tally_bad(&t_order_revoke, "%s: DescribeKey failed: %s: %s", name, r.err, r.msg);
                        return;
                }
        }
        pthread_mutex_lock(&load_lock);
        snprintf(load_key, sizeof(load_key), "%s", name);
        pthread_mutex_unlock(&load_lock);

        /* Everything in one go, no waiting. */
        for (unsigned i = 0; i < PIPE_BEFORE + PIPE_AFTER + 1; i++) {
                enum call_kind kind;

                if (i == PIPE_BEFORE) {
                        kind = K_REVOKE;
                        m = revoke_msg(name, revoked_version);
                        revoke_pos = n;
                } else {
                        kind = (enum call_kind)(i % 3);
                        m = kind == K_SIGN ? sign_msg(name) : kind == K_DERIVE ? derive_msg(name, peer, peer_len)
                                                                               : seal_msg(id);
                }
                p[n] = (struct pending){ .kind = kind };
                if (!dbus_connection_send(c, m, &p[n].serial))
                        oom();
                dbus_message_unref(m);
                n++;
        }
        dbus_connection_flush(c);

        /* The replies, in the order they arrive. */
        deadline = now_s() + CALL_TIMEOUT_MS / 1000.0;
        while (answered < n && now_s() < deadline) {
                DBusMessage *in;

                if (!dbus_connection_read_write(c, 200)) {
                        tally_bad(&t_order_revoke, "%s: the connection closed", name);
                        return;
                }
                while ((in = dbus_connection_pop_message(c))) {
                        int type = dbus_message_get_type(in);
                        dbus_uint32_t rs = dbus_message_get_reply_serial(in);
                        struct pending *q = NULL;
                        struct res a;

                        if (type != DBUS_MESSAGE_TYPE_METHOD_RETURN && type != DBUS_MESSAGE_TYPE_ERROR) {
                                dbus_message_unref(in);
                                continue;
                        }
                        for (unsigned i = 0; i < n; i++)
                                if (p[i].serial == rs && !p[i].answered)
                                        q = &p[i];
                        if (!q) {
                                dbus_message_unref(in);
                                continue;
                        }
                        q->answered = true;
                        answered++;
                        res_from_message(&a, in);
                        dbus_message_unref(in);
                        if (q->kind == K_REVOKE) {
                                revoke_seen = true;
                                revoke_ok = a.ok;
                                snprintf(revoke_err, sizeof(revoke_err), "%s: %s", a.err, a.msg);
                        } else if (!revoke_seen) {
                                histo_add(&order_before[q->kind], res_name(&a));
                        } else {
                                uint32_t used = a.ok && q->kind != K_SEAL ? reply_used_version(a.reply) : 0;
                                bool revoked = a.ok && q->kind != K_SEAL &&
                                               (revoked_version == 0 || used == revoked_version);
                                const char *when = q < &p[revoke_pos] ? "before" : "after";
                                const char *which = revoked_version ? "that version" : "every version";

                                if (a.ok && q < &p[revoke_pos])
                                        late_before_ok++;
                                histo_add(&order_after[q->kind], res_name(&a));
                                if (q->kind == K_SIGN && revoked)
                                        viol_add(&v_sign,
                                                 "%s: a Sign reply with used_version %u (RevokeKey revoked %s) "
                                                 "arrived after the RevokeKey reply; the call was sent %s it",
                                                 name, used, which, when);
                                else if (q->kind == K_DERIVE && revoked)
                                        viol_add(&v_derive,
                                                 "%s: a Derive reply with used_version %u (RevokeKey revoked %s) "
                                                 "arrived after the RevokeKey reply; the call was sent %s it",
                                                 name, used, which, when);
                                else if (q->kind == K_SEAL && (a.ok || strcmp(a.err, "KeyRevoked") != 0))
                                        viol_add(&v_seal,
                                                 "%s: a Seal reply arrived after the RevokeKey reply (RevokeKey "
                                                 "revoked %s) as %s%s%s; the call was sent %s it",
                                                 name, which, a.ok ? "a success" : a.err, a.ok ? "" : ": ", a.msg,
                                                 when);
                        }
                        res_clear(&a);
                }
        }
        pthread_mutex_lock(&load_lock);
        load_key[0] = '\0';
        pthread_mutex_unlock(&load_lock);
        if (answered < n || !revoke_seen || !revoke_ok) {
                tally_bad(&t_order_revoke, "%s: %u of %u calls answered; RevokeKey %s", name, answered, n,
                          !revoke_seen ? "unanswered" : revoke_ok ? "ok" : revoke_err);
                return;
        }
        tally_ok(&t_order_revoke);
        viol_tally(&t_order_sign, &v_sign);
        viol_tally(&t_order_derive, &v_derive);
        viol_tally(&t_order_seal, &v_seal);

        m = new_call("CloseSession", &it);
        add_str(&it, id);
        r = call(c, m);
        res_clear(&r);
        r = describe(c, name, &k);
        if (r.ok)
                write_versions(name, &k);
        key_info_clear(&k);
}

static int read_file(const char *path, uint8_t **ret, size_t *ret_len)
{
        FILE *f = fopen(path, "rb");
        uint8_t *buf;
        size_t n;

        if (!f)
                return -errno;
        buf = malloc(4096);
        if (!buf)
                oom();
        n = fread(buf, 1, 4096, f);
        fclose(f);
        *ret = buf;
        *ret_len = n;
        return 0;
}

static int mode_order(unsigned rounds, unsigned load, const char *peer_path)
{
        pthread_t *th = calloc(load ? load : 1, sizeof(*th));
        DBusConnection *c = connect_bus();
        uint8_t *peer = NULL;
        size_t peer_len = 0;
        double t0 = now_s();

        if (!th)
                oom();
        if (read_file(peer_path, &peer, &peer_len) < 0 || peer_len == 0) {
                fprintf(stderr, "race-check: cannot read %s\n", peer_path);
                return 2;
        }
        load_peer = peer;
        load_peer_len = peer_len;
        for (unsigned i = 0; i < load; i++)
                if (pthread_create(&th[i], NULL, load_main, NULL) != 0)
                        oom();
        for (unsigned round = 0; round < rounds; round++)
                order_round(c, round, peer, peer_len);
        atomic_store(&load_stop, true);
        for (unsigned i = 0; i < load; i++)
                pthread_join(th[i], NULL);
        printf("INFO: order: %u rounds of %u pipelined calls on one connection in %.1f s; %u load calls (%u ok) on "
               "%u other connections (signatures and derivations in turn)\n",
               rounds, PIPE_BEFORE + PIPE_AFTER + 1, now_s() - t0, atomic_load(&load_calls), atomic_load(&load_oks),
               load);
        printf("INFO: order: calls sent before the RevokeKey but answered ok after its reply: %u\n", late_before_ok);
        for (int i = 0; i < 3; i++) {
                char what[128];

                snprintf(what, sizeof(what), "%s replies before the RevokeKey reply", kind_names[i]);
                histo_print(&order_before[i], what);
                snprintf(what, sizeof(what), "%s replies after the RevokeKey reply", kind_names[i]);
                histo_print(&order_after[i], what);
        }
        tally_report(&t_order_revoke);
        tally_report(&t_order_sign);
        tally_report(&t_order_derive);
        tally_report(&t_order_seal);
        disconnect_bus(c);
        free(peer);
        free(th);
        return check_exit_status();
}

/* ============================================================ main */

static unsigned arg_uint(const char *s, const char *what)
{
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno || *end || end == s || v > 1000000) {
                fprintf(stderr, "race-check: bad %s '%s'\n", what, s);
                exit(2);
        }
        return (unsigned)v;
}

int main(int argc, char **argv)
{
        const char *usage = "usage: race-check state ADDRESS ROUNDS PARALLEL VERSIONS_OUT\n"
                            "       race-check order ADDRESS ROUNDS LOAD PEER_DER VERSIONS_OUT\n";
        int rc;

        setvbuf(stdout, NULL, _IOLBF, 0);
        dbus_threads_init_default();
        srand((unsigned)time(NULL) ^ (unsigned)getpid());
        if (argc == 6 && strcmp(argv[1], "state") == 0) {
                bus_address = argv[2];
                versions_out = fopen(argv[5], "a");
                if (!versions_out) {
                        fprintf(stderr, "race-check: cannot open %s: %s\n", argv[5], strerror(errno));
                        return 2;
                }
                rc = mode_state(arg_uint(argv[3], "ROUNDS"), arg_uint(argv[4], "PARALLEL") ?: 1);
        } else if (argc == 7 && strcmp(argv[1], "order") == 0) {
                bus_address = argv[2];
                versions_out = fopen(argv[6], "a");
                if (!versions_out) {
                        fprintf(stderr, "race-check: cannot open %s: %s\n", argv[6], strerror(errno));
                        return 2;
                }
                rc = mode_order(arg_uint(argv[3], "ROUNDS"), arg_uint(argv[4], "LOAD"), argv[5]);
        } else {
                fputs(usage, stderr);
                return 2;
        }
        fclose(versions_out);
        dbus_shutdown();
        return rc;
}
