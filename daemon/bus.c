/* The bus thread: connect, own org.kmsd.KeyManager1, and run the one
 * poll() loop that reads requests, refuses oversized ones, identifies the
 * caller (caller.c, without waiting: the request waits, parked, not this
 * thread), checks each against the method table, parses and validates
 * the arguments, and queues it for the workers. Workers send their
 * replies themselves; libdbus wakes this loop (wakeup_main) when a queued
 * write has to wait. The loop also runs libdbus's timeouts (those of the
 * identification questions). */
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>

#include "daemon.h"
#include "kms-bus.h"
#include "kms-error.h"
#include "kms-log.h"
#include "kms-util.h"
#include "notify.h"
#include "refusal.h"

/* A request's arguments may be max_message_bytes of data and this much
 * more (names, options, a Seal's aad of up to 64 KiB, a peer key, salt
 * and info): a body past that is refused before the caller is
 * identified, since every parser would refuse it too. */
#define KMS_BUS_BODY_MARGIN (128u * 1024u)
/* Values counted in one body before it is refused as too large (a{sv}
 * holds at most KMS_MAX_OPTIONS entries): bounds the walk. */
#define KMS_BUS_MAX_BODY_VALUES 4096u
/* libdbus timeouts held at once: one per identification in flight,
 * which caller.c caps at 2048. */
#define KMS_BUS_MAX_TIMERS 4096u

extern const char *const kms_introspect_xml;

struct kms_bus_timers {
        struct {
                DBusTimeout *timeout;
                uint64_t due_ms; /* monotonic; set when added or enabled */
        } v[KMS_BUS_MAX_TIMERS];
        unsigned n;
};

static void wake(struct kms_daemon *d)
{
        uint64_t one = 1;

        if (write(d->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
                log_debug("wakeup write: %s", strerror(errno));
}

/* libdbus calls this after every send, also when the message went out
 * at once; waking the bus thread for each reply would cost a context
 * switch per request. kms_bus_send() wakes it only when something is
 * still queued, and the loop writes that out. */
static void wakeup_main(void *data)
{
}

/* The audit writer sends the replies it releases through this. */
static void audit_send(void *userdata, DBusMessage *m)
{
        kms_bus_send(userdata, m);
}

void kms_bus_send(struct kms_daemon *d, DBusMessage *m)
{
        /* Thread-safe once dbus_threads_init_default() ran. */
        if (!d->conn)
                return;
        if (!dbus_connection_send(d->conn, m, NULL)) {
                log_error("out of memory queueing a message");
                return;
        }
        if (dbus_connection_has_messages_to_send(d->conn))
                wake(d);
}

static dbus_bool_t add_watch(DBusWatch *w, void *data)
{
        struct kms_daemon *d = data;
        dbus_bool_t ok = TRUE;

        pthread_mutex_lock(&d->watch_lock);
        if (d->n_watches < ELEMENTSOF(d->watches))
                d->watches[d->n_watches++] = w;
        else
                ok = FALSE;
        pthread_mutex_unlock(&d->watch_lock);
        wake(d);
        return ok;
}

static void remove_watch(DBusWatch *w, void *data)
{
        struct kms_daemon *d = data;

        pthread_mutex_lock(&d->watch_lock);
        for (unsigned i = 0; i < d->n_watches; i++)
                if (d->watches[i] == w) {
                        d->watches[i] = d->watches[--d->n_watches];
                        break;
                }
        pthread_mutex_unlock(&d->watch_lock);
        wake(d);
}

/* A worker's failed send can make libdbus drop the watches (disconnect)
 * while this thread polls; handle only watches still registered. */
static bool watch_registered(struct kms_daemon *d, DBusWatch *w)
{
        bool found = false;

        pthread_mutex_lock(&d->watch_lock);
        for (unsigned i = 0; i < d->n_watches; i++)
                if (d->watches[i] == w)
                        found = true;
        pthread_mutex_unlock(&d->watch_lock);
        return found;
}

static void toggle_watch(DBusWatch *w, void *data)
{
        wake(data);
}

/* libdbus's timeouts: a pending call's (caller.c's questions to the bus
 * daemon) is added when the call is sent and removed when its reply is
 * in. A list under watch_lock (libdbus may call these from any thread
 * that holds the connection); the loop polls until the earliest one and
 * calls dbus_timeout_handle() when it is due. */
static int timer_find(struct kms_bus_timers *ts, DBusTimeout *t)
{
        for (unsigned i = 0; ts && i < ts->n; i++)
                if (ts->v[i].timeout == t)
                        return (int)i;
        return -1;
}

static dbus_bool_t add_timeout(DBusTimeout *t, void *data)
{
        struct kms_daemon *d = data;
        dbus_bool_t ok = FALSE;

        pthread_mutex_lock(&d->watch_lock);
        if (!d->timers)
                d->timers = calloc(1, sizeof(*d->timers));
        if (d->timers && d->timers->n < KMS_BUS_MAX_TIMERS) {
                d->timers->v[d->timers->n].timeout = t;
                d->timers->v[d->timers->n++].due_ms = kms_now_mono_ms() + (uint64_t)dbus_timeout_get_interval(t);
                ok = TRUE;
        }
        pthread_mutex_unlock(&d->watch_lock);
        wake(d);
        return ok;
}

static void remove_timeout(DBusTimeout *t, void *data)
{
        struct kms_daemon *d = data;
        int i;

        pthread_mutex_lock(&d->watch_lock);
        if ((i = timer_find(d->timers, t)) >= 0)
                d->timers->v[i] = d->timers->v[--d->timers->n];
        pthread_mutex_unlock(&d->watch_lock);
}

static void toggle_timeout(DBusTimeout *t, void *data)
{
        struct kms_daemon *d = data;
        int i;

        pthread_mutex_lock(&d->watch_lock);
        if ((i = timer_find(d->timers, t)) >= 0 && dbus_timeout_get_enabled(t))
                d->timers->v[i].due_ms = kms_now_mono_ms() + (uint64_t)dbus_timeout_get_interval(t);
        pthread_mutex_unlock(&d->watch_lock);
        wake(d);
}

/* Milliseconds until the earliest enabled timeout, -1 if none. */
static int timers_next_due(struct kms_daemon *d)
{
        struct kms_bus_timers *ts = d->timers;
        uint64_t now = kms_now_mono_ms(), next = UINT64_MAX;

        pthread_mutex_lock(&d->watch_lock);
        for (unsigned i = 0; ts && i < ts->n; i++)
                if (dbus_timeout_get_enabled(ts->v[i].timeout) && ts->v[i].due_ms < next)
                        next = ts->v[i].due_ms;
        pthread_mutex_unlock(&d->watch_lock);
        if (next == UINT64_MAX)
                return -1;
        return next <= now ? 0 : (int)(next - now);
}

/* Handles the timeouts that are due, each once. A libdbus timeout
 * repeats until removed, so each is set to its next interval first; a
 * pending call's removes itself (and queues its NoReply error, which the
 * next dispatch delivers). dbus_timeout_handle() takes the connection's
 * lock and calls remove_timeout(): called without watch_lock. */
static void timers_run(struct kms_daemon *d)
{
        const uint64_t now = kms_now_mono_ms();

        for (;;) {
                struct kms_bus_timers *ts = d->timers;
                DBusTimeout *due = NULL;

                pthread_mutex_lock(&d->watch_lock);
                for (unsigned i = 0; ts && i < ts->n && !due; i++) {
                        int interval = dbus_timeout_get_interval(ts->v[i].timeout);

                        if (dbus_timeout_get_enabled(ts->v[i].timeout) && ts->v[i].due_ms <= now) {
                                due = ts->v[i].timeout;
                                ts->v[i].due_ms = now + (uint64_t)(interval > 0 ? interval : 1);
                        }
                }
                pthread_mutex_unlock(&d->watch_lock);
                if (!due)
                        return;
                dbus_timeout_handle(due);
        }
}

static DBusHandlerResult reply_error(DBusConnection *c, DBusMessage *m, const char *name, const char *fmt, ...)
{
        char buf[KMS_ERRMSG_MAX];
        DBusMessage *reply;
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        kms_utf8_sanitize(buf); /* libdbus aborts on invalid UTF-8 */
        if (dbus_message_get_no_reply(m))
                return DBUS_HANDLER_RESULT_HANDLED;
        reply = dbus_message_new_error(m, name, buf);
        if (!reply)
                return DBUS_HANDLER_RESULT_NEED_MEMORY;
        dbus_connection_send(c, reply, NULL);
        dbus_message_unref(reply);
        return DBUS_HANDLER_RESULT_HANDLED;
}

static DBusHandlerResult handle_introspect(DBusConnection *c, DBusMessage *m)
{
        DBusMessage *reply;

        if (!dbus_message_has_signature(m, ""))
                return reply_error(c, m, DBUS_ERROR_INVALID_ARGS, "Introspect takes no arguments");
        reply = dbus_message_new_method_return(m);
        if (!reply || !dbus_message_append_args(reply, DBUS_TYPE_STRING, &kms_introspect_xml, DBUS_TYPE_INVALID)) {
                if (reply)
                        dbus_message_unref(reply);
                return DBUS_HANDLER_RESULT_NEED_MEMORY;
        }
        dbus_connection_send(c, reply, NULL);
        dbus_message_unref(reply);
        return DBUS_HANDLER_RESULT_HANDLED;
}

/* reply_error() with its log line and audit record, which refusal.c
 * writes unless the caller's uid is over its limit. The reply is always
 * sent. log_line: NULL, or a line to log at notice instead of the
 * default "METHOD from uid U pid P refused: MSG" at info. */
static DBusHandlerResult refuse(struct kms_daemon *d, DBusConnection *c, DBusMessage *m, const struct kms_caller *caller,
                                const char *key, const char *kind, const char *error, const char *msg,
                                const char *log_line)
{
        const char *member = dbus_message_get_member(m);
        const char *result = strrchr(error, '.') ? strrchr(error, '.') + 1 : error;
        const struct kms_refusal ref = {
                .caller = caller,
                .member = member,
                .key = key,
                .kind = kind,
                .result = strcmp(error, KMS_ERROR_ACCESS_DENIED) == 0 ? "denied" : result,
                .message = msg,
                .log_line = log_line,
        };

        (void)kms_refusal_record(d, &ref);
        return reply_error(c, m, error, "%s", msg);
}

/* The size of a message's arguments, about: the wire sizes of its
 * values, strings with their NUL, no padding. A fixed array counts in
 * O(1), so the walk costs one step per value, not per byte, and copies
 * nothing (libdbus has no call for a received message's size, and
 * dbus_message_marshal would copy it). */
struct body_walk {
        uint64_t bytes;
        unsigned values;
};

static unsigned wire_size(int type)
{
        if (type == DBUS_TYPE_BYTE)
                return 1;
        if (type == DBUS_TYPE_INT16 || type == DBUS_TYPE_UINT16)
                return 2;
        if (type == DBUS_TYPE_INT64 || type == DBUS_TYPE_UINT64 || type == DBUS_TYPE_DOUBLE)
                return 8;
        return 4; /* boolean, int32, uint32, unix fd */
}

/* false once more than KMS_BUS_MAX_BODY_VALUES values were seen. */
static bool walk_body(DBusMessageIter *it, struct body_walk *w)
{
        int type;

        for (; (type = dbus_message_iter_get_arg_type(it)) != DBUS_TYPE_INVALID; dbus_message_iter_next(it)) {
                DBusMessageIter sub;

                if (++w->values > KMS_BUS_MAX_BODY_VALUES)
                        return false;
                if (type == DBUS_TYPE_ARRAY) {
                        int elem = dbus_message_iter_get_element_type(it);

                        dbus_message_iter_recurse(it, &sub);
                        /* libdbus aborts on a fixed array of unix fds:
                         * those are walked one by one. */
                        if (dbus_type_is_fixed(elem) && elem != DBUS_TYPE_UNIX_FD) {
                                const void *values;
                                int n = 0;

                                dbus_message_iter_get_fixed_array(&sub, &values, &n);
                                w->bytes += (uint64_t)(n > 0 ? n : 0) * wire_size(elem);
                        } else if (!walk_body(&sub, w))
                                return false;
                } else if (dbus_type_is_container(type)) { /* struct, dict entry, variant */
                        dbus_message_iter_recurse(it, &sub);
                        if (!walk_body(&sub, w))
                                return false;
                } else if (type == DBUS_TYPE_STRING || type == DBUS_TYPE_OBJECT_PATH || type == DBUS_TYPE_SIGNATURE) {
                        const char *str;

                        dbus_message_iter_get_basic(it, &str);
                        w->bytes += strlen(str) + 1;
                } else
                        w->bytes += wire_size(type);
        }
        return true;
}

/* m's body size as walk_body counts it, in *ret_bytes; false when it is
 * over max_message_bytes + KMS_BUS_BODY_MARGIN or has too many values
 * (errmsg says which). */
static bool body_fits(struct kms_daemon *d, DBusMessage *m, size_t *ret_bytes, char *errmsg, size_t errlen)
{
        const uint64_t limit = d->cfg.max_message_bytes + KMS_BUS_BODY_MARGIN;
        struct body_walk w = { 0 };
        DBusMessageIter it;

        *ret_bytes = 0;
        if (dbus_message_iter_init(m, &it) && !walk_body(&it, &w)) {
                snprintf(errmsg, errlen, "the request holds more than %u values; kmsd takes no request that large",
                         KMS_BUS_MAX_BODY_VALUES);
                return false;
        }
        if (w.bytes > limit) {
                snprintf(errmsg, errlen,
                         "the request's arguments are %llu bytes, more than the limit of %llu (max_message_bytes "
                         "%llu and %u for the other arguments)",
                         (unsigned long long)w.bytes, (unsigned long long)limit,
                         (unsigned long long)d->cfg.max_message_bytes, KMS_BUS_BODY_MARGIN);
                return false;
        }
        *ret_bytes = (size_t)w.bytes;
        return true;
}

/* A refusal before the caller is known (too large, not identified,
 * shutting down): counted for the sender's uid when the cache knows it
 * already, else in refusal.c's one bucket for unidentified callers
 * (uid -1), whatever the bus name: each fresh connection has a new name,
 * so a bucket per name would give each a fresh burst of records. */
static DBusHandlerResult refuse_early(struct kms_daemon *d, DBusMessage *m, const char *error, const char *msg,
                                      const char *why)
{
        const char *sender = dbus_message_get_sender(m);
        const char *member = dbus_message_get_member(m);
        struct kms_caller caller;
        char line[KMS_ERRMSG_MAX];
        bool known = kms_caller_peek(d, sender, &caller) == 0;

        snprintf(line, sizeof(line), "refused %s from %s (%s): %s", member ? member : "?",
                 sender ? sender : "(no sender)", known ? "identified" : "not identified", why);
        return refuse(d, d->conn, m, known ? &caller : NULL, NULL, NULL, error, msg, line);
}

/* check → parse → decide (access.c, with the key's owner from the bus
 * thread's own store connection) → queue, for a message whose sender is
 * identified (caller). A denied request never reaches a worker or the
 * token. */
static DBusHandlerResult handle_call(struct kms_daemon *d, DBusConnection *c, DBusMessage *m,
                                     const struct kms_caller *caller)
{
        const char *iface = dbus_message_get_interface(m);
        const char *member = dbus_message_get_member(m);
        const struct kms_method *method;
        struct kms_request *req;
        char errmsg[KMS_ERRMSG_MAX] = "";
        int r;

        if (iface && strcmp(iface, KMS_BUS_INTERFACE) != 0) {
                snprintf(errmsg, sizeof(errmsg), "unknown interface '%.100s'", iface);
                return refuse(d, c, m, caller, NULL, NULL, DBUS_ERROR_UNKNOWN_INTERFACE, errmsg, NULL);
        }
        method = kms_registry_find(&d->registry, member);
        if (!method) {
                snprintf(errmsg, sizeof(errmsg), "unknown method '%.100s' of %s", member, KMS_BUS_INTERFACE);
                return refuse(d, c, m, caller, NULL, NULL, DBUS_ERROR_UNKNOWN_METHOD, errmsg, NULL);
        }
        if (!dbus_message_has_signature(m, method->signature)) {
                snprintf(errmsg, sizeof(errmsg), "%s takes (%s), not (%.100s)", member, method->signature,
                         dbus_message_get_signature(m));
                return refuse(d, c, m, caller, NULL, NULL, DBUS_ERROR_INVALID_ARGS, errmsg, NULL);
        }
        if (atomic_load(&d->stopping))
                return refuse(d, c, m, caller, NULL, NULL, KMS_ERROR_SHUTTING_DOWN,
                              "kmsd is shutting down; retry when it is back", NULL);
        if (kms_audit_refusing(d))
                return refuse(d, c, m, caller, NULL, NULL, KMS_ERROR_AUDIT_FAILURE,
                              "the audit log cannot be written, so kmsd refuses requests (failure = closed); see "
                              "kmsd's log",
                              NULL);

        req = calloc(1, sizeof(*req));
        if (!req)
                return DBUS_HANDLER_RESULT_NEED_MEMORY;
        req->msg = dbus_message_ref(m);
        req->method = method;
        req->algorithm = KMS_ALG_INVALID;
        req->hash = KMS_HASH_INVALID;
        req->padding = KMS_PAD_INVALID;
        req->caller = *caller;

        r = method->parse(d, req, errmsg, sizeof(errmsg));
        /* Decided here, before any backend work: a denied request never
         * reaches a worker or the token. */
        if (r >= 0) {
                r = kms_access_check(d, req, errmsg, sizeof(errmsg));
                if (r == -EACCES && !req->audit_kind)
                        req->audit_kind = "policy_denied";
        }
        if (r >= 0)
                r = kms_pool_submit(&d->pool, req, d->cfg.max_pending);
        if (r < 0) {
                DBusHandlerResult h;

                if (r == -EBUSY)
                        snprintf(errmsg, sizeof(errmsg),
                                 "kmsd's request queue is full (max_pending %u, a quarter of it per caller); retry "
                                 "later",
                                 d->cfg.max_pending);
                else if (r == -ESHUTDOWN)
                        snprintf(errmsg, sizeof(errmsg), "kmsd is shutting down; retry when it is back");
                h = refuse(d, c, m, &req->caller, req->name, req->audit_kind, kms_error_to_bus_name(r), errmsg,
                           req->refusal_log);
                kms_request_free(req);
                return h;
        }
        return DBUS_HANDLER_RESULT_HANDLED;
}

/* A parked message's turn (caller.c, from the dispatch of the bus
 * daemon's answer or of its timeout, or at shutdown). An identification
 * that failed or timed out is Busy, never AccessDenied: nothing was
 * decided about the caller, and a retry may well be identified. */
static void identified(struct kms_daemon *d, DBusMessage *m, const struct kms_caller *caller, int r)
{
        DBusHandlerResult h;
        char why[128];

        if (caller)
                h = handle_call(d, d->conn, m, caller);
        else if (r == -ESHUTDOWN)
                h = refuse_early(d, m, KMS_ERROR_SHUTTING_DOWN, "kmsd is shutting down; retry when it is back",
                                 "shutting down before the caller was identified");
        else {
                snprintf(why, sizeof(why), "could not identify the caller (%s)",
                         r == -ETIMEDOUT ? "no answer from the bus daemon in time" : strerror(-r));
                h = refuse_early(d, m, KMS_ERROR_BUSY, "kmsd could not identify the caller in time; retry", why);
        }
        if (h == DBUS_HANDLER_RESULT_NEED_MEMORY)
                log_error("out of memory: a %s request from %s got no answer", dbus_message_get_member(m),
                          dbus_message_get_sender(m));
}

/* size → identify (parks m unless its sender is known) → handle_call. */
static DBusHandlerResult message_function(DBusConnection *c, DBusMessage *m, void *data)
{
        struct kms_daemon *d = data;
        const char *iface = dbus_message_get_interface(m);
        const char *member = dbus_message_get_member(m);
        char errmsg[KMS_ERRMSG_MAX] = "";
        struct kms_caller caller;
        size_t bytes;
        int r;

        if (dbus_message_get_type(m) != DBUS_MESSAGE_TYPE_METHOD_CALL || !member)
                return DBUS_HANDLER_RESULT_NOT_YET_HANDLED;
        /* First, before anything costs more than a walk over the values:
         * a body no parser would take is refused at once. */
        if (!body_fits(d, m, &bytes, errmsg, sizeof(errmsg)))
                return refuse_early(d, m, KMS_ERROR_LIMIT_EXCEEDED, errmsg, errmsg);
        /* Introspection describes the interface; it is not an operation of
         * kmsd and is not audited. */
        if (iface && strcmp(iface, DBUS_INTERFACE_INTROSPECTABLE) == 0 && strcmp(member, "Introspect") == 0)
                return handle_introspect(c, m);
        /* Stopping: no new question to the bus daemon; a known caller
         * gets the same answer from handle_call(). */
        if (atomic_load(&d->stopping) && kms_caller_peek(d, dbus_message_get_sender(m), &caller) < 0)
                return refuse_early(d, m, KMS_ERROR_SHUTTING_DOWN, "kmsd is shutting down; retry when it is back",
                                    "shutting down");

        r = kms_caller_identify(d, m, bytes, identified, &caller);
        if (r == 0)
                return handle_call(d, c, m, &caller);
        if (r > 0)
                return DBUS_HANDLER_RESULT_HANDLED; /* parked: identified() runs for it */
        if (r == -EBUSY)
                return refuse_early(d, m, KMS_ERROR_BUSY,
                                    "kmsd has too many requests waiting for their callers to be identified; retry",
                                    "too many requests waiting for identification");
        snprintf(errmsg, sizeof(errmsg), "could not ask the bus daemon who the caller is (%s)", strerror(-r));
        return refuse_early(d, m, KMS_ERROR_BUSY, "kmsd could not identify the caller in time; retry", errmsg);
}

static DBusHandlerResult filter(DBusConnection *c, DBusMessage *m, void *data)
{
        struct kms_daemon *d = data;
        const char *name, *old_owner, *new_owner;

        if (dbus_message_is_signal(m, DBUS_INTERFACE_DBUS, "NameOwnerChanged") &&
            dbus_message_has_sender(m, DBUS_SERVICE_DBUS) &&
            dbus_message_get_args(m, NULL, DBUS_TYPE_STRING, &name, DBUS_TYPE_STRING, &old_owner, DBUS_TYPE_STRING,
                                  &new_owner, DBUS_TYPE_INVALID) &&
            name[0] == ':' && new_owner[0] == '\0')
                kms_caller_forget(d, name);
        if (dbus_message_is_signal(m, DBUS_INTERFACE_LOCAL, "Disconnected")) {
                log_error("lost the connection to the bus");
                atomic_store(&d->stopping, true);
                return DBUS_HANDLER_RESULT_HANDLED;
        }
        return DBUS_HANDLER_RESULT_NOT_YET_HANDLED;
}

static const DBusObjectPathVTable vtable = { .message_function = message_function };

int kms_bus_open(struct kms_daemon *d, char *errbuf, size_t errlen)
{
        DBusError err;
        const char *bus = d->cfg.bus;
        int r;

        dbus_error_init(&err);
        if (strcmp(bus, "system") == 0)
                d->conn = dbus_bus_get_private(DBUS_BUS_SYSTEM, &err);
        else if (strcmp(bus, "session") == 0)
                d->conn = dbus_bus_get_private(DBUS_BUS_SESSION, &err);
        else {
                d->conn = dbus_connection_open_private(bus, &err);
                if (d->conn && !dbus_bus_register(d->conn, &err)) {
                        dbus_connection_close(d->conn);
                        dbus_connection_unref(d->conn);
                        d->conn = NULL;
                }
        }
        if (!d->conn) {
                snprintf(errbuf, errlen, "cannot connect to the %s bus: %s", bus, err.message);
                dbus_error_free(&err);
                return -ECONNREFUSED;
        }
        dbus_connection_set_exit_on_disconnect(d->conn, FALSE);

        r = dbus_bus_request_name(d->conn, KMS_BUS_NAME, DBUS_NAME_FLAG_DO_NOT_QUEUE, &err);
        if (r != DBUS_REQUEST_NAME_REPLY_PRIMARY_OWNER) {
                snprintf(errbuf, errlen, "cannot own %s on the %s bus: %s", KMS_BUS_NAME, bus,
                         dbus_error_is_set(&err) ? err.message : "another process owns it");
                dbus_error_free(&err);
                return -EADDRINUSE;
        }
        dbus_bus_add_match(d->conn,
                           "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',"
                           "member='NameOwnerChanged'",
                           &err);
        if (dbus_error_is_set(&err)) {
                snprintf(errbuf, errlen, "cannot watch bus peers: %s", err.message);
                dbus_error_free(&err);
                return -EIO;
        }
        if (!dbus_connection_add_filter(d->conn, filter, d, NULL) ||
            !dbus_connection_register_object_path(d->conn, KMS_BUS_PATH, &vtable, d)) {
                snprintf(errbuf, errlen, "out of memory registering %s", KMS_BUS_PATH);
                return -ENOMEM;
        }
        if (!dbus_connection_set_watch_functions(d->conn, add_watch, remove_watch, toggle_watch, d, NULL) ||
            !dbus_connection_set_timeout_functions(d->conn, add_timeout, remove_timeout, toggle_timeout, d, NULL)) {
                snprintf(errbuf, errlen, "out of memory setting up the bus loop");
                return -ENOMEM;
        }
        dbus_connection_set_wakeup_main_function(d->conn, wakeup_main, d, NULL);
        kms_audit_set_sender(&d->audit, audit_send, d);
        return 0;
}

static void dispatch_all(struct kms_daemon *d)
{
        while (dbus_connection_get_dispatch_status(d->conn) == DBUS_DISPATCH_DATA_REMAINS)
                dbus_connection_dispatch(d->conn);
        /* A worker's reply can stay queued when the worker could not take
         * the I/O path; a non-blocking iteration writes it (and enables
         * the write watch if the socket is full). */
        if (dbus_connection_has_messages_to_send(d->conn)) {
                dbus_connection_read_write(d->conn, 0);
                while (dbus_connection_get_dispatch_status(d->conn) == DBUS_DISPATCH_DATA_REMAINS)
                        dbus_connection_dispatch(d->conn);
        }
}

static void handle_signal(struct kms_daemon *d)
{
        struct signalfd_siginfo si;
        int r;

        while (read(d->signal_fd, &si, sizeof(si)) == sizeof(si)) {
                switch (si.ssi_signo) {
                case SIGTERM:
                case SIGINT:
                        log_info("signal %d: finishing requests in flight and stopping", (int)si.ssi_signo);
                        atomic_store(&d->stopping, true);
                        break;
                case SIGHUP: {
                        char err[KMS_ERRMSG_MAX];

                        /* Tell systemd the reload began and ended, so
                         * ExecReload= returns. A broken file leaves the
                         * old policy in force (and is logged). */
                        (void)kms_notify_reloading();
                        log_info("SIGHUP: re-reading the policy files");
                        r = kms_access_reload(d, err, sizeof(err));
                        if (r >= 0)
                                snprintf(err, sizeof(err), "%d rule(s)", r);
                        {
                                const struct kms_audit_event ev = {
                                        .uid = getuid(),
                                        .pid = getpid(),
                                        .exe = "kmsd",
                                        .operation = "SIGHUP",
                                        .result = kms_audit_result_name(r),
                                        .details = err,
                                };

                                (void)kms_audit_log(d, &ev, false);
                        }
                        (void)kms_notify_ready();
                        break;
                }
                default: break;
                }
        }
}

/* poll()'s timeout: the earliest of libdbus's next timeout and the next
 * refusal summary, -1 for none. */
static int poll_timeout(struct kms_daemon *d)
{
        int a = timers_next_due(d), b = kms_refusal_next_due(d);

        if (a < 0)
                return b;
        return b < 0 || a < b ? a : b;
}

int kms_bus_run(struct kms_daemon *d)
{
        struct pollfd fds[2 + ELEMENTSOF(d->watches)];
        DBusWatch *ws[ELEMENTSOF(d->watches)];

        dispatch_all(d); /* messages read while registering */
        while (!atomic_load(&d->stopping)) {
                unsigned n = 0, nw = 0;
                uint64_t junk;

                fds[n++] = (struct pollfd){ .fd = d->wake_fd, .events = POLLIN };
                fds[n++] = (struct pollfd){ .fd = d->signal_fd, .events = POLLIN };
                pthread_mutex_lock(&d->watch_lock);
                for (unsigned i = 0; i < d->n_watches; i++) {
                        DBusWatch *w = d->watches[i];
                        unsigned flags;
                        short ev = 0;

                        if (!dbus_watch_get_enabled(w))
                                continue;
                        flags = dbus_watch_get_flags(w);
                        if (flags & DBUS_WATCH_READABLE)
                                ev |= POLLIN;
                        if (flags & DBUS_WATCH_WRITABLE)
                                ev |= POLLOUT;
                        ws[nw++] = w;
                        fds[n++] = (struct pollfd){ .fd = dbus_watch_get_unix_fd(w), .events = ev };
                }
                pthread_mutex_unlock(&d->watch_lock);

                /* Wake for libdbus's next timeout (an identification's)
                 * and the next summary of suppressed refusals too. */
                if (poll(fds, n, poll_timeout(d)) < 0) {
                        if (errno == EINTR)
                                continue;
                        log_error("poll: %s", strerror(errno));
                        return -errno;
                }
                if (fds[0].revents & POLLIN)
                        while (read(d->wake_fd, &junk, sizeof(junk)) == sizeof(junk))
                                ;
                if (fds[1].revents & POLLIN)
                        handle_signal(d);
                for (unsigned i = 0; i < nw; i++) {
                        short re = fds[2 + i].revents;
                        unsigned flags = 0;

                        if (!re)
                                continue;
                        if (re & POLLIN)
                                flags |= DBUS_WATCH_READABLE;
                        if (re & POLLOUT)
                                flags |= DBUS_WATCH_WRITABLE;
                        if (re & POLLHUP)
                                flags |= DBUS_WATCH_HANGUP;
                        if (re & POLLERR)
                                flags |= DBUS_WATCH_ERROR;
                        if (watch_registered(d, ws[i]))
                                dbus_watch_handle(ws[i], flags);
                }
                timers_run(d);
                dispatch_all(d);
                kms_refusal_flush(d, false);
        }
        if (dbus_connection_get_is_connected(d->conn)) {
                DBusError err;

                /* Give the name back so the bus routes no more calls here.
                 * Its reply comes after every call the bus routed to us
                 * before it, so once it is in, dispatching what was read
                 * answers each of those calls (ShuttingDown): no caller is
                 * left waiting for a reply that never comes. */
                dbus_error_init(&err);
                if (dbus_bus_release_name(d->conn, KMS_BUS_NAME, &err) < 0) {
                        log_warning("cannot release %s: %s", KMS_BUS_NAME, err.message);
                        dbus_error_free(&err);
                }
                dispatch_all(d);
        }
        /* Requests still waiting for their caller's identity get
         * ShuttingDown as well; their questions are cancelled. */
        kms_caller_drain(d, -ESHUTDOWN);
        /* The audit writer still runs: what was suppressed is counted in
         * the log before kmsd goes. */
        kms_refusal_flush(d, true);
        return 0;
}

void kms_bus_close(struct kms_daemon *d)
{
        if (!d->conn)
                return;
        kms_audit_set_sender(&d->audit, NULL, NULL);
        kms_refusal_free(d);
        /* Pending calls hold the connection: cancelled before it goes. */
        kms_caller_cache_free(d);
        if (dbus_connection_get_is_connected(d->conn)) {
                dbus_connection_flush(d->conn);
                dbus_connection_close(d->conn);
        }
        dbus_connection_unref(d->conn);
        d->conn = NULL;
        free(d->timers);
        d->timers = NULL;
}
