/* kmsctl key revoked [--json]: ListRevoked, the revocation list (name,
 * version, time, reason, fingerprint, note). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "bus.h"
#include "io.h"
#include "json.h"
#include "key.h"
#include "kmsctl.h"

struct revocation {
        const char *name;
        uint32_t version;
        int64_t revoked_at;
        const char *reason;
        const char *note;
        const char *fingerprint;
};

static int read_revocation(DBusMessageIter *it, struct revocation *ret)
{
        struct revocation v = {.note = ""};
        struct kmsctl_dict_field fields[] = {
                {"name", "s", &v.name, true},
                {"version", "u", &v.version, true},
                {"revoked_at", "x", &v.revoked_at, true},
                {"reason", "s", &v.reason, true},
                {"note", "s", &v.note, false},
                {"fingerprint", "s", &v.fingerprint, true},
        };
        int r;

        r = kmsctl_dict_read(it, fields, ELEMENTSOF(fields));
        if (r < 0)
                return r;
        *ret = v;
        return 0;
}

static void print_json_entry(struct kmsctl_json *j, const struct revocation *v)
{
        char t[KMSCTL_TIME_MAX];

        kmsctl_json_begin_object(j);
        kmsctl_json_field_string(j, "name", v->name);
        kmsctl_json_field_uint(j, "version", v->version);
        kmsctl_json_field_string(j, "revoked_at", kmsctl_format_time(v->revoked_at, t, sizeof(t)));
        kmsctl_json_field_string(j, "reason", v->reason);
        kmsctl_json_field_string(j, "fingerprint", v->fingerprint);
        kmsctl_json_field_string(j, "note", v->note);
        kmsctl_json_end_object(j);
}

static void print_text_entry(const struct revocation *v, int wname)
{
        char t[KMSCTL_TIME_MAX], reason[KMSCTL_PRINTABLE_MAX], note[KMSCTL_PRINTABLE_MAX];

        printf("%-*s  %7" PRIu32 "  %-20s  %-11s  %-64s  %s\n", wname, v->name, v->version,
               kmsctl_format_time(v->revoked_at, t, sizeof(t)), kmsctl_printable(v->reason, reason, sizeof(reason)),
               v->fingerprint, kmsctl_printable(v->note, note, sizeof(note)));
}

/* Walk the aa{sv} twice: once for the widest name, once to print. */
static int print_text(DBusMessageIter *list)
{
        DBusMessageIter it = *list;
        struct revocation v;
        int wname = (int)strlen("NAME");

        for (; dbus_message_iter_get_arg_type(&it) == DBUS_TYPE_ARRAY; dbus_message_iter_next(&it)) {
                if (read_revocation(&it, &v) < 0)
                        return KMS_EXIT_FAILURE;
                if ((int)strlen(v.name) > wname)
                        wname = (int)strlen(v.name);
        }
        printf("%-*s  %7s  %-20s  %-11s  %-64s  %s\n", wname, "NAME", "VERSION", "REVOKED", "REASON", "FINGERPRINT",
               "NOTE");
        for (it = *list; dbus_message_iter_get_arg_type(&it) == DBUS_TYPE_ARRAY; dbus_message_iter_next(&it)) {
                if (read_revocation(&it, &v) < 0)
                        return KMS_EXIT_FAILURE;
                print_text_entry(&v, wname);
        }
        return KMS_EXIT_OK;
}

static int print_json(DBusMessageIter *list)
{
        struct kmsctl_json j;
        struct revocation v;
        DBusMessageIter it;

        /* Read everything first, so a bad reply prints no half document. */
        for (it = *list; dbus_message_iter_get_arg_type(&it) == DBUS_TYPE_ARRAY; dbus_message_iter_next(&it))
                if (read_revocation(&it, &v) < 0)
                        return KMS_EXIT_FAILURE;
        kmsctl_json_init(&j, stdout);
        kmsctl_json_begin_array(&j);
        for (it = *list; dbus_message_iter_get_arg_type(&it) == DBUS_TYPE_ARRAY; dbus_message_iter_next(&it)) {
                (void)read_revocation(&it, &v);
                print_json_entry(&j, &v);
        }
        kmsctl_json_end_array(&j);
        return KMS_EXIT_OK;
}

static int print_list(DBusMessageIter *list, bool json)
{
        return json ? print_json(list) : print_text(list);
}

int kmsctl_key_revoked_main(const struct kmsctl_command *cmd, int argc, char **argv)
{
        return kmsctl_list_main(cmd, argc, argv, "ListRevoked", NULL, print_list);
}
