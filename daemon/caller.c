/* Who is calling: the uid and pid the bus daemon reports for a unique
 * bus name (GetConnectionCredentials), cached per name on the bus thread
 * and dropped when the name goes away (NameOwnerChanged), when it is
 * KMS_CALLER_TTL_MS old, and at every policy reload. Nothing the caller
 * sends about itself is used.
 *
 * The bus thread never waits for the bus daemon's answer. A message
 * whose sender is not in the cache (or whose entry is too old) is parked
 * on the sender's entry and the question is sent with a DBusPendingCall;
 * its reply (or its timeout, KMS_CALLER_TIMEOUT_MS) comes back through
 * the bus thread's dispatch, which fills the entry and hands the parked
 * messages, in the order they came, to the function bus.c gave. While a
 * sender has messages parked, its new ones queue behind them, so none
 * overtakes another. The parked messages are capped per sender and in
 * all (KMS_CALLER_MAX_PARKED*): over a cap, kms_caller_identify() says
 * -EBUSY and bus.c answers Busy.
 *
 * The groups come from the uid's account when the entry is made, so the
 * entry's age bounds how long a removed group membership keeps working
 * on a connection that stays open; a reload ends it at once. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "kms-log.h"
#include "kms-util.h"

#define KMS_CALLER_BUCKETS 256u
/* How long the bus daemon has to answer GetConnectionCredentials; the
 * messages parked for the answer are then answered Busy (bus.c). */
#define KMS_CALLER_TIMEOUT_MS 5000
/* How long a caller's identity and groups are used before they are
 * fetched again (docs/policy.md, "Who is calling"). */
#define KMS_CALLER_TTL_MS 30000u
/* Messages waiting for their sender's identity: per sender (the pool's
 * share of one caller, a quarter of the default max_pending), in all,
 * and their bytes in all (bus.c's count of each message's arguments).
 * The bytes stay below libdbus's 63 MiB of received messages alive per
 * connection, past which it stops reading until some are freed: parked
 * messages alone must never reach it, or the answers that free them
 * would not be read (they would wait for the timeout). Six 8 MB Seals
 * from fresh connections at once (max_message_bytes = 8 MiB) fit. One
 * message alone is always taken. */
#define KMS_CALLER_MAX_PARKED_PER_SENDER 256u
#define KMS_CALLER_MAX_PARKED 2048u
#define KMS_CALLER_MAX_PARKED_BYTES (48u * 1024u * 1024u)

struct parked {
        DBusMessage *msg;
        size_t bytes;
        struct parked *next;
};

struct caller_entry {
        char *name;
        struct kms_caller caller; /* when identified */
        uint64_t fetched_ms;      /* monotonic */
        bool identified;
        /* The question in flight, and the messages waiting for it
         * (oldest first); pending is set exactly when n_parked > 0. */
        DBusPendingCall *pending;
        struct parked *head, *tail;
        unsigned n_parked;
        struct caller_entry *next;
};

struct kms_caller_cache {
        struct caller_entry *buckets[KMS_CALLER_BUCKETS];
        size_t n;
        unsigned generation; /* d->caller_generation when last emptied */
        size_t parked, parked_bytes;
        kms_caller_ready_fn ready;
};

/* What the pending call's notify gets: the entry is looked up again by
 * name, since it may be gone by then. */
struct query {
        struct kms_daemon *d;
        char name[];
};

static unsigned hash_name(const char *s)
{
        unsigned h = 5381;

        while (*s)
                h = h * 33 + (unsigned char)*s++;
        return h % KMS_CALLER_BUCKETS;
}

static struct caller_entry *find(struct kms_caller_cache *c, const char *name)
{
        for (struct caller_entry *e = c->buckets[hash_name(name)]; e; e = e->next)
                if (strcmp(e->name, name) == 0)
                        return e;
        return NULL;
}

/* Takes e's parked messages off it (the caller then owns the list) and
 * cancels its question. */
static struct parked *take_parked(struct kms_caller_cache *c, struct caller_entry *e)
{
        struct parked *list = e->head;

        for (struct parked *p = list; p; p = p->next)
                c->parked_bytes -= p->bytes;
        c->parked -= e->n_parked;
        e->head = e->tail = NULL;
        e->n_parked = 0;
        if (e->pending) {
                dbus_pending_call_cancel(e->pending);
                dbus_pending_call_unref(e->pending);
                e->pending = NULL;
        }
        return list;
}

static void parked_free(struct parked *list)
{
        while (list) {
                struct parked *next = list->next;

                dbus_message_unref(list->msg);
                free(list);
                list = next;
        }
}

/* Unlinks e (at *pe) and frees it; its parked messages are dropped
 * without an answer. */
static void entry_remove(struct kms_caller_cache *c, struct caller_entry **pe)
{
        struct caller_entry *e = *pe;

        *pe = e->next;
        parked_free(take_parked(c, e));
        free(e->name);
        free(e);
        c->n--;
}

/* Drops the entries (all of them, or only those no message waits for:
 * a reload or a full cache; the others are being fetched now). */
static void cache_clear(struct kms_caller_cache *c, bool all)
{
        for (unsigned i = 0; i < KMS_CALLER_BUCKETS; i++) {
                struct caller_entry **pe = &c->buckets[i];

                while (*pe)
                        if (all || !(*pe)->pending)
                                entry_remove(c, pe);
                        else
                                pe = &(*pe)->next;
        }
}

/* The cache, made on first use and emptied after a policy reload. */
static struct kms_caller_cache *cache_get(struct kms_daemon *d)
{
        struct kms_caller_cache *c = d->callers;
        unsigned generation = atomic_load(&d->caller_generation);

        if (!c) {
                c = d->callers = calloc(1, sizeof(struct kms_caller_cache));
                if (!c)
                        return NULL;
                c->generation = generation;
        }
        if (c->generation != generation) {
                cache_clear(c, false); /* the policy was reloaded */
                c->generation = generation;
        }
        return c;
}

void kms_caller_cache_free(struct kms_daemon *d)
{
        if (!d->callers)
                return;
        cache_clear(d->callers, true);
        free(d->callers);
        d->callers = NULL;
}

void kms_caller_invalidate(struct kms_daemon *d)
{
        /* A reload may run in a worker; the cache belongs to the bus
         * thread, which compares this counter before every lookup. */
        atomic_fetch_add(&d->caller_generation, 1);
}

void kms_caller_forget(struct kms_daemon *d, const char *name)
{
        struct kms_caller_cache *c = d->callers;

        if (!c || !name)
                return;
        for (struct caller_entry **pe = &c->buckets[hash_name(name)]; *pe; pe = &(*pe)->next)
                if (strcmp((*pe)->name, name) == 0) {
                        /* Gone before it was identified: no answer can
                         * reach it. */
                        if ((*pe)->n_parked)
                                log_debug("%s left the bus: %u request(s) waiting for its identity dropped", name,
                                          (*pe)->n_parked);
                        entry_remove(c, pe);
                        return;
                }
}

/* The caller's executable for the audit log: /proc/PID/exe when kmsd may
 * read it (same user, or privileges), else "argv0:" and argv[0] from
 * /proc/PID/cmdline (readable by anyone, chosen by the caller). Read once
 * per connection; a pid can be reused, so this is a label, not an
 * identity. */
static void caller_exe(pid_t pid, char *buf, size_t len)
{
        char path[64];
        ssize_t n;
        FILE *f;

        buf[0] = '\0';
        if (pid <= 0)
                return;
        snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
        n = readlink(path, buf, len - 1);
        if (n > 0) {
                buf[n] = '\0';
                return;
        }
        /* argv[0] is whatever the caller chose: marked as such. */
        snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
        f = fopen(path, "re");
        if (!f)
                return;
        strcpy(buf, "argv0:");
        n = (ssize_t)fread(buf + 6, 1, len - 7, f);
        fclose(f);
        buf[6 + (n > 0 ? n : 0)] = '\0'; /* argv[0] ends at its NUL */
        if (n <= 0)
                buf[0] = '\0';
}

/* The bus daemon's answer about name: 0 and *ret, or -ETIMEDOUT (no
 * answer in time), -ESRCH (an error: the name is gone, ...), -EPROTO (not
 * an answer of the bus daemon's, or no uid in it). */
static int parse_credentials(DBusMessage *reply, const char *name, struct kms_caller *ret)
{
        struct kms_caller c = { .uid = (uid_t)-1, .pid = 0 };
        DBusMessageIter it, dict;
        bool have_uid = false;

        if (dbus_message_get_type(reply) == DBUS_MESSAGE_TYPE_ERROR) {
                const char *error = dbus_message_get_error_name(reply);

                log_debug("GetConnectionCredentials(%s): %s", name, error ? error : "?");
                return error && strcmp(error, DBUS_ERROR_NO_REPLY) == 0 ? -ETIMEDOUT : -ESRCH;
        }
        /* libdbus matches a reply by its serial alone; only the bus
         * daemon's is an answer. */
        if (dbus_message_get_type(reply) != DBUS_MESSAGE_TYPE_METHOD_RETURN ||
            !dbus_message_has_sender(reply, DBUS_SERVICE_DBUS) || !dbus_message_iter_init(reply, &it) ||
            dbus_message_iter_get_arg_type(&it) != DBUS_TYPE_ARRAY)
                return -EPROTO;
        dbus_message_iter_recurse(&it, &dict);
        while (dbus_message_iter_get_arg_type(&dict) == DBUS_TYPE_DICT_ENTRY) {
                DBusMessageIter entry, var;
                const char *key;
                dbus_uint32_t v;

                dbus_message_iter_recurse(&dict, &entry);
                if (dbus_message_iter_get_arg_type(&entry) != DBUS_TYPE_STRING)
                        return -EPROTO;
                dbus_message_iter_get_basic(&entry, &key);
                dbus_message_iter_next(&entry);
                dbus_message_iter_recurse(&entry, &var);
                if (dbus_message_iter_get_arg_type(&var) == DBUS_TYPE_UINT32) {
                        dbus_message_iter_get_basic(&var, &v);
                        if (strcmp(key, "UnixUserID") == 0) {
                                c.uid = (uid_t)v;
                                have_uid = true;
                        } else if (strcmp(key, "ProcessID") == 0)
                                c.pid = (pid_t)v;
                }
                dbus_message_iter_next(&dict);
        }
        if (!have_uid)
                return -EPROTO;
        /* Groups from the uid's account, not from anything the caller
         * says: once per connection, cached with the rest. */
        (void)kms_caller_resolve_groups(&c);
        caller_exe(c.pid, c.exe, sizeof(c.exe));
        kms_utf8_sanitize(c.exe);
        *ret = c;
        return 0;
}

/* The pending call's notify, on the bus thread (dbus_connection_dispatch):
 * the answer, or libdbus's NoReply after KMS_CALLER_TIMEOUT_MS. Fills the
 * entry (or drops it on failure), then hands each parked message to
 * ready(), oldest first. */
static void on_credentials(DBusPendingCall *pending, void *data)
{
        const struct query *q = data;
        struct kms_daemon *d = q->d;
        struct kms_caller_cache *c = d->callers;
        struct caller_entry *e = c ? find(c, q->name) : NULL;
        struct kms_caller caller;
        struct parked *list;
        DBusMessage *reply;
        int r = -EPROTO;

        if (!e || e->pending != pending)
                return; /* cancelled; not expected */
        reply = dbus_pending_call_steal_reply(pending);
        if (reply) {
                r = parse_credentials(reply, q->name, &caller);
                dbus_message_unref(reply);
        }
        /* Completed: libdbus holds its own reference until this returns. */
        e->pending = NULL;
        dbus_pending_call_unref(pending);
        list = take_parked(c, e);
        if (r >= 0) {
                e->caller = caller;
                e->identified = true;
                e->fetched_ms = kms_now_mono_ms();
        } else
                kms_caller_forget(d, q->name); /* e is freed */
        /* ready() may log, refuse and queue; it does not dispatch, so no
         * other message of this sender runs in between. */
        for (struct parked *p = list; p; p = p->next)
                c->ready(d, p->msg, r >= 0 ? &caller : NULL, r);
        parked_free(list);
}

/* Sends the question about e's name; its answer comes to on_credentials.
 * 0, or -ENOMEM, -ENOTCONN (libdbus took no pending call: disconnected). */
static int query_start(struct kms_daemon *d, struct caller_entry *e)
{
        const char *name = e->name;
        DBusPendingCall *pending = NULL;
        struct query *q;
        DBusMessage *m;

        m = dbus_message_new_method_call(DBUS_SERVICE_DBUS, DBUS_PATH_DBUS, DBUS_INTERFACE_DBUS,
                                         "GetConnectionCredentials");
        if (!m || !dbus_message_append_args(m, DBUS_TYPE_STRING, &name, DBUS_TYPE_INVALID)) {
                if (m)
                        dbus_message_unref(m);
                return -ENOMEM;
        }
        /* The timeout is a DBusTimeout that bus.c's loop runs. */
        if (!dbus_connection_send_with_reply(d->conn, m, &pending, KMS_CALLER_TIMEOUT_MS)) {
                dbus_message_unref(m);
                return -ENOMEM;
        }
        dbus_message_unref(m);
        if (!pending)
                return -ENOTCONN;
        q = malloc(sizeof(*q) + strlen(name) + 1);
        if (!q) {
                dbus_pending_call_cancel(pending);
                dbus_pending_call_unref(pending);
                return -ENOMEM;
        }
        q->d = d;
        strcpy(q->name, name);
        if (!dbus_pending_call_set_notify(pending, on_credentials, q, free)) {
                free(q);
                dbus_pending_call_cancel(pending);
                dbus_pending_call_unref(pending);
                return -ENOMEM;
        }
        e->pending = pending;
        return 0;
}

int kms_caller_peek(struct kms_daemon *d, const char *sender, struct kms_caller *ret)
{
        struct kms_caller_cache *c;
        struct caller_entry *e;

        if (!sender || !(c = cache_get(d)) || !(e = find(c, sender)))
                return -ENOENT;
        if (!e->identified || e->pending || kms_now_mono_ms() - e->fetched_ms >= KMS_CALLER_TTL_MS)
                return -ENOENT;
        *ret = e->caller;
        return 0;
}

int kms_caller_identify(struct kms_daemon *d, DBusMessage *m, size_t bytes, kms_caller_ready_fn ready,
                        struct kms_caller *ret)
{
        const char *sender = dbus_message_get_sender(m);
        struct kms_caller_cache *c;
        struct caller_entry *e;
        struct parked *p;
        int r;

        if (!sender)
                return -EPROTO;
        c = cache_get(d);
        if (!c)
                return -ENOMEM;
        c->ready = ready;
        e = find(c, sender);
        if (e && !e->pending && e->identified && kms_now_mono_ms() - e->fetched_ms < KMS_CALLER_TTL_MS) {
                *ret = e->caller;
                return 0;
        }
        /* Park m: behind the sender's waiting messages, or as the first
         * one, with a new question (an entry too old is asked again). */
        if ((e && e->n_parked >= KMS_CALLER_MAX_PARKED_PER_SENDER) || c->parked >= KMS_CALLER_MAX_PARKED ||
            (c->parked_bytes > 0 &&
             (c->parked_bytes >= KMS_CALLER_MAX_PARKED_BYTES || bytes > KMS_CALLER_MAX_PARKED_BYTES - c->parked_bytes)))
                return -EBUSY;
        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        if (!e) {
                if (c->n >= KMS_MAX_CALLERS)
                        cache_clear(c, false); /* rare; entries are fetched again on demand */
                e = calloc(1, sizeof(*e));
                if (!e || !(e->name = strdup(sender))) {
                        free(e);
                        free(p);
                        return -ENOMEM;
                }
                e->next = c->buckets[hash_name(sender)];
                c->buckets[hash_name(sender)] = e;
                c->n++;
        }
        if (!e->pending) {
                e->identified = false; /* not used until it is fetched again */
                r = query_start(d, e);
                if (r < 0) {
                        free(p);
                        kms_caller_forget(d, sender); /* nothing was parked on it */
                        return r;
                }
        }
        p->msg = dbus_message_ref(m);
        p->bytes = bytes;
        if (e->tail)
                e->tail->next = p;
        else
                e->head = p;
        e->tail = p;
        e->n_parked++;
        c->parked++;
        c->parked_bytes += bytes;
        return 1;
}

void kms_caller_drain(struct kms_daemon *d, int r)
{
        struct kms_caller_cache *c = d->callers;
        struct parked *all = NULL, **tail = &all;

        if (!c)
                return;
        /* Every list taken first: ready() looks the cache up (and may
         * empty it after a reload), so no walk of it is in progress. */
        for (unsigned i = 0; i < KMS_CALLER_BUCKETS; i++) {
                struct caller_entry **pe = &c->buckets[i];

                while (*pe) {
                        if (!(*pe)->pending) {
                                pe = &(*pe)->next;
                                continue;
                        }
                        *tail = take_parked(c, *pe);
                        while (*tail)
                                tail = &(*tail)->next;
                        entry_remove(c, pe);
                }
        }
        for (struct parked *p = all; p; p = p->next)
                c->ready(d, p->msg, NULL, r);
        parked_free(all);
}
