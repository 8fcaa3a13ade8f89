/* kmsctl key list [--all] [--json]: ListKeys, as a table or a JSON array. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "bus.h"
#include "key.h"
#include "kmsctl.h"

struct list_args {
        bool all;
        bool json;
};

static int handle_option(int opt, const char *arg, void *userdata)
{
        struct list_args *a = userdata;

        switch (opt) {
        case 'a': a->all = true; return 0;
        case 'j': a->json = true; return 0;
        default: return -EINVAL;
        }
}

static void keys_free(struct kmsctl_key *keys, size_t n)
{
        for (size_t i = 0; i < n; i++)
                kmsctl_key_done(&keys[i]);
        free(keys);
}

/* Read the aa{sv} at it into a new array. Returns 0 or a negative errno
 * (printed). */
static int read_keys(DBusMessageIter *it, struct kmsctl_key **ret, size_t *ret_n)
{
        struct kmsctl_key *keys = NULL;
        DBusMessageIter a;
        size_t n = 0;
        int r;

        r = kmsctl_array_open(it, "a{sv}", &a);
        for (; r >= 0 && dbus_message_iter_get_arg_type(&a) == DBUS_TYPE_ARRAY; dbus_message_iter_next(&a)) {
                struct kmsctl_key *p;

                if (n >= KMS_MAX_KEYS) {
                        fprintf(stderr, "kmsctl: kmsd's reply has more than %u keys\n", KMS_MAX_KEYS);
                        r = -EBADMSG;
                        break;
                }
                p = realloc(keys, (n + 1) * sizeof(*p));
                if (!p) {
                        fprintf(stderr, "kmsctl: out of memory\n");
                        r = -ENOMEM;
                        break;
                }
                keys = p;
                r = kmsctl_key_read(&a, false, &keys[n]);
                if (r >= 0)
                        n++;
        }
        if (r < 0) {
                keys_free(keys, n);
                return r;
        }
        *ret = keys;
        *ret_n = n;
        return 0;
}

static void print_table(const struct kmsctl_key *keys, size_t n)
{
        int wname = (int)strlen("NAME"), wowner = (int)strlen("OWNER");
        char owner[KMSCTL_USER_MAX], created[KMSCTL_TIME_MAX];

        for (size_t i = 0; i < n; i++) {
                int l = (int)strlen(keys[i].name);

                if (l > wname)
                        wname = l;
                l = (int)strlen(kmsctl_format_user(keys[i].owner, owner, sizeof(owner)));
                if (l > wowner)
                        wowner = l;
        }
        printf("%-*s  %-9s  %-9s  %-*s  %7s  %s\n", wname, "NAME", "ALGORITHM", "STATE", wowner, "OWNER", "VERSION",
               "CREATED");
        for (size_t i = 0; i < n; i++)
                printf("%-*s  %-9s  %-9s  %-*s  %7" PRIu32 "  %s\n", wname, keys[i].name, keys[i].algorithm,
                       keys[i].state, wowner, kmsctl_format_user(keys[i].owner, owner, sizeof(owner)),
                       keys[i].primary_version, kmsctl_format_time(keys[i].created, created, sizeof(created)));
}

int kmsctl_key_list_main(const struct kmsctl_command *cmd, int argc, char **argv)
{
        static const struct option options[] = {
                {"all", no_argument, NULL, 'a'},
                {"json", no_argument, NULL, 'j'},
                {},
        };
        struct list_args a = {};
        _cleanup_(dbus_message_unrefp) DBusMessage *m = NULL, *reply = NULL;
        struct kmsctl_key *keys = NULL;
        DBusMessageIter it;
        size_t n = 0;
        int r;

        r = kmsctl_parse_args(cmd, argc, argv, options, handle_option, &a, 0, NULL);
        if (r != KMSCTL_CONTINUE)
                return r;

        const struct kmsctl_bus_option opts[] = {
                {.key = "all", .type = DBUS_TYPE_BOOLEAN, .set = a.all, .b = TRUE},
        };
        m = kmsctl_bus_new_call("ListKeys", &it);
        if (!m || kmsctl_append_options(&it, opts, ELEMENTSOF(opts)) < 0)
                return kmsctl_log_oom();
        r = kmsctl_bus_call(m, "aa{sv}", NULL, &reply);
        if (r != KMS_EXIT_OK)
                return r;

        dbus_message_iter_init(reply, &it);
        if (read_keys(&it, &keys, &n) < 0)
                return KMS_EXIT_FAILURE;
        if (a.json) {
                struct kmsctl_json j;

                kmsctl_json_init(&j, stdout);
                kmsctl_json_begin_array(&j);
                for (size_t i = 0; i < n; i++)
                        kmsctl_key_json(&j, &keys[i]);
                kmsctl_json_end_array(&j);
        } else
                print_table(keys, n);
        keys_free(keys, n);
        return KMS_EXIT_OK;
}
