/* Who is calling: the uid and pid the bus daemon reports for a unique
 * bus name (GetConnectionCredentials), cached per name on the bus thread
 * and dropped when the name goes away (NameOwnerChanged), when it is
 * KMS_CALLER_TTL_MS old, and at every policy reload. Nothing the caller
 * sends about itself is used.
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
#define KMS_CALLER_TIMEOUT_MS 5000
/* How long a caller's identity and groups are used before they are
 * fetched again (docs/policy.md, "Who is calling"). */
#define KMS_CALLER_TTL_MS 30000u

struct caller_entry {
        char *name;
        struct kms_caller caller;
        uint64_t fetched_ms; /* monotonic */
        struct caller_entry *next;
};

struct kms_caller_cache {
        struct caller_entry *buckets[KMS_CALLER_BUCKETS];
        size_t n;
        unsigned generation; /* d->caller_generation when last emptied */
};

static unsigned hash_name(const char *s)
{
        unsigned h = 5381;

        while (*s)
                h = h * 33 + (unsigned char)*s++;
        return h % KMS_CALLER_BUCKETS;
}

static void cache_clear(struct kms_caller_cache *c)
{
        for (unsigned i = 0; i < KMS_CALLER_BUCKETS; i++) {
                struct caller_entry *e = c->buckets[i];
                while (e) {
                        struct caller_entry *next = e->next;
                        free(e->name);
                        free(e);
                        e = next;
                }
                c->buckets[i] = NULL;
        }
        c->n = 0;
}

void kms_caller_cache_free(struct kms_daemon *d)
{
        if (!d->callers)
                return;
        cache_clear(d->callers);
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
                        struct caller_entry *e = *pe;
                        *pe = e->next;
                        free(e->name);
                        free(e);
                        c->n--;
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

/* Ask the bus daemon. Blocks the bus thread for one round trip, once per
 * peer connection. */
static int query(struct kms_daemon *d, const char *sender, struct kms_caller *ret)
{
        DBusMessage *m, *reply;
        DBusMessageIter it, dict;
        DBusError err;
        bool have_uid = false;
        struct kms_caller c = { .uid = (uid_t)-1, .pid = 0 };

        m = dbus_message_new_method_call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                                         "GetConnectionCredentials");
        if (!m || !dbus_message_append_args(m, DBUS_TYPE_STRING, &sender, DBUS_TYPE_INVALID)) {
                if (m)
                        dbus_message_unref(m);
                return -ENOMEM;
        }
        dbus_error_init(&err);
        reply = dbus_connection_send_with_reply_and_block(d->conn, m, KMS_CALLER_TIMEOUT_MS, &err);
        dbus_message_unref(m);
        if (!reply) {
                log_debug("GetConnectionCredentials(%s): %s", sender, err.message);
                dbus_error_free(&err);
                return -ESRCH;
        }
        if (!dbus_message_iter_init(reply, &it) || dbus_message_iter_get_arg_type(&it) != DBUS_TYPE_ARRAY) {
                dbus_message_unref(reply);
                return -EPROTO;
        }
        dbus_message_iter_recurse(&it, &dict);
        while (dbus_message_iter_get_arg_type(&dict) == DBUS_TYPE_DICT_ENTRY) {
                DBusMessageIter entry, var;
                const char *key;
                dbus_uint32_t v;

                dbus_message_iter_recurse(&dict, &entry);
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
        dbus_message_unref(reply);
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

int kms_caller_lookup(struct kms_daemon *d, const char *sender, struct kms_caller *ret)
{
        struct kms_caller_cache *c = d->callers;
        struct caller_entry *e;
        unsigned b, generation = atomic_load(&d->caller_generation);
        uint64_t now = kms_now_mono_ms();
        int r;

        if (!sender)
                return -EPROTO;
        if (!c) {
                c = d->callers = calloc(1, sizeof(struct kms_caller_cache));
                if (!c)
                        return -ENOMEM;
                c->generation = generation;
        }
        if (c->generation != generation) {
                cache_clear(c); /* the policy was reloaded */
                c->generation = generation;
        }
        b = hash_name(sender);
        for (e = c->buckets[b]; e; e = e->next)
                if (strcmp(e->name, sender) == 0)
                        break;
        if (e && now - e->fetched_ms < KMS_CALLER_TTL_MS) {
                *ret = e->caller;
                return 0;
        }
        r = query(d, sender, ret);
        if (r < 0) {
                if (e)
                        kms_caller_forget(d, sender);
                return r;
        }
        if (e) { /* expired: the same connection, fetched again */
                e->caller = *ret;
                e->fetched_ms = now;
                return 0;
        }
        if (c->n >= KMS_MAX_CALLERS)
                cache_clear(c); /* rare; entries are refetched on demand */
        e = calloc(1, sizeof(*e));
        if (e && (e->name = strdup(sender))) {
                e->caller = *ret;
                e->fetched_ms = now;
                e->next = c->buckets[b];
                c->buckets[b] = e;
                c->n++;
        } else
                free(e);
        return 0;
}
