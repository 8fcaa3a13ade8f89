/* kmsctl key revoked [--json]: ListRevoked, the revocation list (name,
 * version, time, reason, fingerprint, note). kmsd answers in pages
 * (docs/dbus-api.md, ListRevoked); kmsctl reads them all, then prints. */
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

static void print_text(const struct revocation *v, size_t n)
{
        int wname = (int)strlen("NAME");

        for (size_t i = 0; i < n; i++)
                if ((int)strlen(v[i].name) > wname)
                        wname = (int)strlen(v[i].name);
        printf("%-*s  %7s  %-20s  %-11s  %-64s  %s\n", wname, "NAME", "VERSION", "REVOKED", "REASON", "FINGERPRINT",
               "NOTE");
        for (size_t i = 0; i < n; i++)
                print_text_entry(&v[i], wname);
}

static void print_json(const struct revocation *v, size_t n)
{
        struct kmsctl_json j;

        kmsctl_json_init(&j, stdout);
        kmsctl_json_begin_array(&j);
        for (size_t i = 0; i < n; i++)
                print_json_entry(&j, &v[i]);
        kmsctl_json_end_array(&j);
}

/* Entries per ListRevoked call: kmsd's default page. */
#define KMSCTL_REVOKED_PAGE 1000u

/* Append the entries of one reply to *v; *ret_page: how many it held.
 * Names come after `after` and in order (a key's versions together).
 * Everything is read before anything is printed, so a bad reply prints
 * no half list. Returns 0 or a negative errno (printed). */
static int read_page(DBusMessageIter *it, const char *after, struct revocation **v, size_t *n, size_t *ret_page)
{
        DBusMessageIter list;
        size_t page = 0;
        int r;

        r = kmsctl_array_open(it, "a{sv}", &list);
        for (; r >= 0 && dbus_message_iter_get_arg_type(&list) == DBUS_TYPE_ARRAY; dbus_message_iter_next(&list)) {
                struct revocation *p = realloc(*v, (*n + 1) * sizeof(*p));
                int c;

                if (!p) {
                        fprintf(stderr, "kmsctl: out of memory\n");
                        return -ENOMEM;
                }
                *v = p;
                r = read_revocation(&list, &p[*n]);
                if (r < 0)
                        break;
                c = strcmp(p[*n].name, page ? p[*n - 1].name : after);
                if (c < 0 || (c == 0 && !page)) {
                        fprintf(stderr, "kmsctl: kmsd's reply is not in name order at '%s'\n", p[*n].name);
                        return -EBADMSG;
                }
                (*n)++;
                page++;
        }
        *ret_page = page;
        return r;
}

int kmsctl_key_revoked_main(const struct kmsctl_command *cmd, int argc, char **argv)
{
        static const struct option options[] = {
                {"json", no_argument, NULL, 'j'},
                {},
        };
        DBusMessage **replies = NULL;
        size_t n_replies = 0, n = 0;
        struct revocation *v = NULL;
        bool json = false;
        int r, ret = KMS_EXIT_FAILURE;

        r = kmsctl_parse_args(cmd, argc, argv, options, kmsctl_json_option, &json, 0, NULL);
        if (r != KMSCTL_CONTINUE)
                return r;
        for (;;) {
                _cleanup_(dbus_message_unrefp) DBusMessage *m = NULL, *reply = NULL;
                const char *after = n ? v[n - 1].name : "";
                const struct kmsctl_bus_option opts[] = {
                        {.key = "limit", .type = DBUS_TYPE_UINT32, .set = true, .u = KMSCTL_REVOKED_PAGE},
                        {.key = "after", .type = DBUS_TYPE_STRING, .set = n > 0, .s = after},
                };
                DBusMessage **more;
                DBusMessageIter it;
                size_t page = 0;

                m = kmsctl_bus_new_call("ListRevoked", &it);
                if (!m || kmsctl_append_options(&it, opts, ELEMENTSOF(opts)) < 0) {
                        ret = kmsctl_log_oom();
                        goto out;
                }
                r = kmsctl_bus_call(m, "aa{sv}", NULL, &reply);
                if (r != KMS_EXIT_OK) {
                        ret = r;
                        goto out;
                }
                more = realloc(replies, (n_replies + 1) * sizeof(*more));
                if (!more) {
                        ret = kmsctl_log_oom();
                        goto out;
                }
                replies = more;
                replies[n_replies++] = TAKE_PTR(reply);
                dbus_message_iter_init(replies[n_replies - 1], &it);
                if (read_page(&it, after, &v, &n, &page) < 0)
                        goto out;
                /* A key's revocations are never split: a short page is the last. */
                if (page < KMSCTL_REVOKED_PAGE)
                        break;
        }
        if (json)
                print_json(v, n);
        else
                print_text(v, n);
        ret = KMS_EXIT_OK;
out:
        free(v);
        for (size_t i = 0; i < n_replies; i++)
                dbus_message_unref(replies[i]);
        free(replies);
        return ret;
}
