/* kmsctl's bus connection, the one call helper and the dictionary helpers;
 * see bus.h. */
#include "bus.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "kms-bus.h"
#include "kms-error.h"
#include "kmsctl.h"

#define DBUS_ERROR_PREFIX "org.freedesktop.DBus.Error."

enum bus_kind {
        BUS_DEFAULT, /* $KMSD_BUS_ADDRESS if set, else the system bus */
        BUS_SYSTEM,
        BUS_SESSION,
        BUS_ADDRESS,
};

static struct {
        enum bus_kind kind;
        const char *address;
        bool address_from_env;
        unsigned timeout_sec;
        DBusConnection *conn;
} bus = {
        .kind = BUS_DEFAULT,
        .timeout_sec = KMSCTL_DEFAULT_TIMEOUT_SEC,
};

int kmsctl_bus_option(int opt, const char *arg)
{
        DBusError err = DBUS_ERROR_INIT;
        DBusAddressEntry **entries = NULL;
        uint64_t u;
        int n;

        switch (opt) {
        case KMSCTL_OPT_BUS:
                if (strcmp(arg, "system") == 0)
                        bus.kind = BUS_SYSTEM;
                else if (strcmp(arg, "session") == 0)
                        bus.kind = BUS_SESSION;
                else {
                        fprintf(stderr,
                                "kmsctl: --bus takes 'system' or 'session', not '%s' "
                                "(an address goes to --bus-address)\n",
                                arg);
                        return -EINVAL;
                }
                return 0;
        case KMSCTL_OPT_BUS_ADDRESS:
                /* Check the syntax now so a typo is a usage error. */
                if (!dbus_parse_address(arg, &entries, &n, &err)) {
                        fprintf(stderr, "kmsctl: invalid bus address '%s': %s\n", arg, err.message);
                        dbus_error_free(&err);
                        return -EINVAL;
                }
                dbus_address_entries_free(entries);
                bus.kind = BUS_ADDRESS;
                bus.address = arg;
                bus.address_from_env = false;
                return 0;
        case KMSCTL_OPT_TIMEOUT:
                if (kms_parse_u64(arg, 1, KMSCTL_MAX_TIMEOUT_SEC, &u) < 0) {
                        fprintf(stderr, "kmsctl: --timeout takes whole seconds from 1 to %u, not '%s'\n",
                                KMSCTL_MAX_TIMEOUT_SEC, arg);
                        return -EINVAL;
                }
                bus.timeout_sec = (unsigned)u;
                return 0;
        default: return -EINVAL;
        }
}

/* Settle BUS_DEFAULT into what it means in this environment. */
static void bus_resolve(void)
{
        const char *env;

        if (bus.kind != BUS_DEFAULT)
                return;
        env = secure_getenv(KMS_ENV_BUS_ADDRESS);
        if (env && *env) {
                bus.kind = BUS_ADDRESS;
                bus.address = env;
                bus.address_from_env = true;
        } else
                bus.kind = BUS_SYSTEM;
}

static void bus_describe(char *buf, size_t size)
{
        switch (bus.kind) {
        case BUS_SESSION: snprintf(buf, size, "the session bus"); break;
        case BUS_ADDRESS:
                snprintf(buf, size, "the bus at %s%s", bus.address,
                         bus.address_from_env ? " (from $" KMS_ENV_BUS_ADDRESS ")" : "");
                break;
        default: snprintf(buf, size, "the system bus"); break;
        }
}

static void bus_print_unreachable(const char *why)
{
        char where[512];

        bus_describe(where, sizeof(where));
        fprintf(stderr, "kmsctl: kmsd is not reachable on %s: %s\n", where, why);
        fprintf(stderr,
                "kmsctl: start kmsd, or point kmsctl at the bus kmsd is on with --bus-address ADDRESS "
                "or %s=ADDRESS (scripts/run prints it), or --bus system|session.\n",
                KMS_ENV_BUS_ADDRESS);
}

static int bus_connect(void)
{
        DBusError err = DBUS_ERROR_INIT;
        DBusConnection *c;

        if (bus.conn)
                return 0;
        bus_resolve();
        if (bus.kind == BUS_ADDRESS) {
                c = dbus_connection_open_private(bus.address, &err);
                if (c && !dbus_bus_register(c, &err)) {
                        dbus_connection_close(c);
                        dbus_connection_unref(c);
                        c = NULL;
                }
        } else
                c = dbus_bus_get_private(bus.kind == BUS_SESSION ? DBUS_BUS_SESSION : DBUS_BUS_SYSTEM, &err);
        if (!c) {
                bus_print_unreachable(dbus_error_is_set(&err) ? err.message : "cannot connect");
                dbus_error_free(&err);
                return -ECONNREFUSED;
        }
        dbus_connection_set_exit_on_disconnect(c, FALSE);
        bus.conn = c;
        return 0;
}

void kmsctl_bus_close(void)
{
        if (!bus.conn)
                return;
        dbus_connection_close(bus.conn);
        dbus_connection_unref(bus.conn);
        bus.conn = NULL;
}

DBusMessage *kmsctl_bus_new_call(const char *method, DBusMessageIter *ret_it)
{
        DBusMessage *m = dbus_message_new_method_call(KMS_BUS_NAME, KMS_BUS_PATH, KMS_BUS_INTERFACE, method);

        if (m)
                dbus_message_iter_init_append(m, ret_it);
        return m;
}

/* Errors that mean nobody answers for kmsd's name on this bus. */
static bool error_is_unreachable(const char *name)
{
        return strcmp(name, DBUS_ERROR_SERVICE_UNKNOWN) == 0 || strcmp(name, DBUS_ERROR_NAME_HAS_NO_OWNER) == 0 ||
               strcmp(name, DBUS_ERROR_DISCONNECTED) == 0 || strcmp(name, DBUS_ERROR_NO_SERVER) == 0 ||
               strncmp(name, DBUS_ERROR_PREFIX "Spawn.", strlen(DBUS_ERROR_PREFIX "Spawn.")) == 0;
}

static const char *error_short_name(const char *name)
{
        if (strncmp(name, KMS_ERROR_PREFIX, strlen(KMS_ERROR_PREFIX)) == 0)
                return name + strlen(KMS_ERROR_PREFIX);
        if (strncmp(name, DBUS_ERROR_PREFIX, strlen(DBUS_ERROR_PREFIX)) == 0)
                return name + strlen(DBUS_ERROR_PREFIX);
        return name;
}

static void print_hints(const char *const *hints, const char *name)
{
        for (size_t i = 0; hints && hints[i] && hints[i + 1]; i += 2)
                if (strcmp(hints[i], name) == 0)
                        fprintf(stderr, "kmsctl: %s\n", hints[i + 1]);
}

static int bus_report_error(const DBusError *err, const char *const *hints)
{
        char timeout_hint[160];
        const char *const builtin[] = {
                DBUS_ERROR_NO_REPLY,
                timeout_hint,
                NULL,
        };

        if (error_is_unreachable(err->name)) {
                bus_print_unreachable(err->message);
                return KMS_EXIT_FAILURE;
        }
        snprintf(timeout_hint, sizeof(timeout_hint),
                 "kmsd stopped before answering, or gave no answer within %u s "
                 "(a slow token may need a longer --timeout).",
                 bus.timeout_sec);
        fprintf(stderr, "kmsctl: %s (%s)\n", err->message && *err->message ? err->message : "no message",
                error_short_name(err->name));
        print_hints(builtin, err->name);
        print_hints(hints, err->name);
        return kms_error_exit_code(err->name);
}

int kmsctl_bus_call(DBusMessage *m, const char *reply_signature, const char *const *hints, DBusMessage **ret_reply)
{
        DBusError err = DBUS_ERROR_INIT;
        DBusMessage *reply;
        int r;

        if (bus_connect() < 0)
                return KMS_EXIT_FAILURE;
        reply = dbus_connection_send_with_reply_and_block(bus.conn, m, (int)bus.timeout_sec * 1000, &err);
        if (!reply) {
                r = bus_report_error(&err, hints);
                dbus_error_free(&err);
                return r;
        }
        if (!dbus_message_has_signature(reply, reply_signature)) {
                fprintf(stderr, "kmsctl: kmsd answered %s with signature '%s', expected '%s'\n",
                        dbus_message_get_member(m), dbus_message_get_signature(reply), reply_signature);
                dbus_message_unref(reply);
                return KMS_EXIT_FAILURE;
        }
        *ret_reply = reply;
        return KMS_EXIT_OK;
}

int kmsctl_bus_add_match(const char *rule)
{
        DBusError err = DBUS_ERROR_INIT;
        int r;

        if (bus_connect() < 0)
                return KMS_EXIT_FAILURE;
        /* Blocks for the bus's answer, so a bad rule is reported here. */
        dbus_bus_add_match(bus.conn, rule, &err);
        if (dbus_error_is_set(&err)) {
                r = bus_report_error(&err, NULL);
                dbus_error_free(&err);
                return r;
        }
        return KMS_EXIT_OK;
}

DBusConnection *kmsctl_bus_connection(void)
{
        return bus.conn;
}

int kmsctl_append_string(DBusMessageIter *it, const char *s)
{
        return dbus_message_iter_append_basic(it, DBUS_TYPE_STRING, &s) ? 0 : -ENOMEM;
}

int kmsctl_append_u32(DBusMessageIter *it, uint32_t u)
{
        return dbus_message_iter_append_basic(it, DBUS_TYPE_UINT32, &u) ? 0 : -ENOMEM;
}

int kmsctl_append_bytes(DBusMessageIter *it, const void *data, size_t len)
{
        DBusMessageIter sub = DBUS_MESSAGE_ITER_INIT_CLOSED;
        const uint8_t *p = data;
        bool ok;

        if (len > KMSCTL_MAX_INPUT_BYTES)
                return -EFBIG;
        ok = dbus_message_iter_open_container(it, DBUS_TYPE_ARRAY, DBUS_TYPE_BYTE_AS_STRING, &sub) &&
             dbus_message_iter_append_fixed_array(&sub, DBUS_TYPE_BYTE, &p, (int)len) &&
             dbus_message_iter_close_container(it, &sub);
        if (!ok) {
                dbus_message_iter_abandon_container_if_open(it, &sub);
                return -ENOMEM;
        }
        return 0;
}

/* The variant of one option entry. libdbus reads the value through a
 * pointer to the type it is told, so each type gets its own member. */
static bool append_variant(DBusMessageIter *entry, const struct kmsctl_bus_option *o)
{
        DBusMessageIter v = DBUS_MESSAGE_ITER_INIT_CLOSED, a = DBUS_MESSAGE_ITER_INIT_CLOSED;
        bool ok;

        switch (o->type) {
        case DBUS_TYPE_STRING:
                ok = dbus_message_iter_open_container(entry, DBUS_TYPE_VARIANT, "s", &v) &&
                     dbus_message_iter_append_basic(&v, DBUS_TYPE_STRING, &o->s);
                break;
        case DBUS_TYPE_UINT32:
                ok = dbus_message_iter_open_container(entry, DBUS_TYPE_VARIANT, "u", &v) &&
                     dbus_message_iter_append_basic(&v, DBUS_TYPE_UINT32, &o->u);
                break;
        case DBUS_TYPE_UINT64:
                ok = dbus_message_iter_open_container(entry, DBUS_TYPE_VARIANT, "t", &v) &&
                     dbus_message_iter_append_basic(&v, DBUS_TYPE_UINT64, &o->t);
                break;
        case DBUS_TYPE_BOOLEAN:
                ok = dbus_message_iter_open_container(entry, DBUS_TYPE_VARIANT, "b", &v) &&
                     dbus_message_iter_append_basic(&v, DBUS_TYPE_BOOLEAN, &o->b);
                break;
        case DBUS_TYPE_BYTE:
                ok = dbus_message_iter_open_container(entry, DBUS_TYPE_VARIANT, "ay", &v) &&
                     kmsctl_append_bytes(&v, o->bytes.data, o->bytes.len) == 0;
                break;
        case DBUS_TYPE_ARRAY:
                ok = dbus_message_iter_open_container(entry, DBUS_TYPE_VARIANT, "as", &v) &&
                     dbus_message_iter_open_container(&v, DBUS_TYPE_ARRAY, "s", &a);
                for (size_t i = 0; ok && o->strv[i]; i++)
                        ok = dbus_message_iter_append_basic(&a, DBUS_TYPE_STRING, &o->strv[i]);
                ok = ok && dbus_message_iter_close_container(&v, &a);
                break;
        default: ok = false;
        }
        ok = ok && dbus_message_iter_close_container(entry, &v);
        if (!ok) {
                dbus_message_iter_abandon_container_if_open(&v, &a);
                dbus_message_iter_abandon_container_if_open(entry, &v);
        }
        return ok;
}

int kmsctl_append_options(DBusMessageIter *it, const struct kmsctl_bus_option *options, size_t n)
{
        DBusMessageIter dict = DBUS_MESSAGE_ITER_INIT_CLOSED;
        bool ok;

        ok = dbus_message_iter_open_container(it, DBUS_TYPE_ARRAY, "{sv}", &dict);
        for (size_t i = 0; ok && i < n; i++) {
                DBusMessageIter entry = DBUS_MESSAGE_ITER_INIT_CLOSED;

                if (!options[i].set)
                        continue;
                ok = dbus_message_iter_open_container(&dict, DBUS_TYPE_DICT_ENTRY, NULL, &entry) &&
                     dbus_message_iter_append_basic(&entry, DBUS_TYPE_STRING, &options[i].key) &&
                     append_variant(&entry, &options[i]) && dbus_message_iter_close_container(&dict, &entry);
                if (!ok)
                        dbus_message_iter_abandon_container_if_open(&dict, &entry);
        }
        ok = ok && dbus_message_iter_close_container(it, &dict);
        if (!ok) {
                dbus_message_iter_abandon_container_if_open(it, &dict);
                return -ENOMEM;
        }
        return 0;
}

/* Compare the signature of the single complete type at it with sig. */
static int iter_check_signature(DBusMessageIter *it, const char *sig, const char *what)
{
        char *actual = dbus_message_iter_get_signature(it);
        int r = 0;

        if (!actual) {
                fprintf(stderr, "kmsctl: out of memory\n");
                return -ENOMEM;
        }
        if (strcmp(actual, sig) != 0) {
                fprintf(stderr, "kmsctl: kmsd's reply has %s of type '%s', expected '%s'\n", what, actual, sig);
                r = -EBADMSG;
        }
        dbus_free(actual);
        return r;
}

int kmsctl_array_open(DBusMessageIter *it, const char *element_signature, DBusMessageIter *ret_sub)
{
        char sig[64];
        int r;

        if (snprintf(sig, sizeof(sig), "a%s", element_signature) >= (int)sizeof(sig))
                return -EINVAL;
        r = iter_check_signature(it, sig, "an array");
        if (r < 0)
                return r;
        dbus_message_iter_recurse(it, ret_sub);
        return 0;
}

int kmsctl_dict_read(DBusMessageIter *it, struct kmsctl_dict_field *fields, size_t n_fields)
{
        DBusMessageIter array;
        int r;

        r = kmsctl_array_open(it, "{sv}", &array);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n_fields; i++)
                fields[i].found = false;

        for (; dbus_message_iter_get_arg_type(&array) == DBUS_TYPE_DICT_ENTRY; dbus_message_iter_next(&array)) {
                DBusMessageIter entry, value;
                struct kmsctl_dict_field *f = NULL;
                const char *key;
                char what[160];

                dbus_message_iter_recurse(&array, &entry);
                dbus_message_iter_get_basic(&entry, &key);
                for (size_t i = 0; i < n_fields && !f; i++)
                        if (strcmp(fields[i].key, key) == 0)
                                f = &fields[i];
                if (!f)
                        continue; /* a key from a newer kmsd */
                dbus_message_iter_next(&entry);
                dbus_message_iter_recurse(&entry, &value);
                snprintf(what, sizeof(what), "'%s'", key);
                r = iter_check_signature(&value, f->signature, what);
                if (r < 0)
                        return r;
                if (dbus_type_is_basic(dbus_message_iter_get_arg_type(&value)))
                        dbus_message_iter_get_basic(&value, f->ret);
                else
                        *(DBusMessageIter *)f->ret = value;
                f->found = true;
        }

        for (size_t i = 0; i < n_fields; i++)
                if (fields[i].required && !fields[i].found) {
                        fprintf(stderr, "kmsctl: kmsd's reply lacks '%s'\n", fields[i].key);
                        return -EBADMSG;
                }
        return 0;
}

int kmsctl_list_main(const struct kmsctl_command *cmd, int argc, char **argv, const char *method,
                     const char *const *hints, int (*print)(DBusMessageIter *list, bool json))
{
        static const struct option options[] = {
                {"json", no_argument, NULL, 'j'},
                {},
        };
        _cleanup_(dbus_message_unrefp) DBusMessage *m = NULL, *reply = NULL;
        DBusMessageIter it, list;
        bool json = false;
        int r;

        r = kmsctl_parse_args(cmd, argc, argv, options, kmsctl_json_option, &json, 0, NULL);
        if (r != KMSCTL_CONTINUE)
                return r;
        m = kmsctl_bus_new_call(method, &it);
        if (!m || kmsctl_append_options(&it, NULL, 0) < 0)
                return kmsctl_log_oom();
        r = kmsctl_bus_call(m, "aa{sv}", hints, &reply);
        if (r != KMS_EXIT_OK)
                return r;
        dbus_message_iter_init(reply, &it);
        if (kmsctl_array_open(&it, "a{sv}", &list) < 0)
                return KMS_EXIT_FAILURE;
        return print(&list, json);
}
