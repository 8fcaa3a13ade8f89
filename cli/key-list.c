/* kmsctl key list [--all] [--json]: ListKeys, as a table or a JSON array.
 * kmsd answers in pages (docs/dbus-api.md, ListKeys); kmsctl asks for the
 * next one until a short page says there is no more, then prints all. */
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

/* Keys per ListKeys call: kmsd's default page. */
#define KMSCTL_LIST_PAGE 1000u

/* Append the aa{sv} at it to *keys (*n of them), at most max; *ret_page:
 * how many this reply held. The names must come after `after`, in order.
 * Returns 0 or a negative errno (printed). */
static int read_keys(DBusMessageIter *it, const char *after, size_t max, struct kmsctl_key **keys, size_t *n,
                     size_t *ret_page)
{
        DBusMessageIter a;
        size_t page = 0;
        int r;

        r = kmsctl_array_open(it, "a{sv}", &a);
        for (; r >= 0 && dbus_message_iter_get_arg_type(&a) == DBUS_TYPE_ARRAY; dbus_message_iter_next(&a)) {
                struct kmsctl_key *p;

                if (page >= max) {
                        fprintf(stderr, "kmsctl: kmsd's reply has more than the %zu keys asked for\n", max);
                        return -EBADMSG;
                }
                p = realloc(*keys, (*n + 1) * sizeof(*p));
                if (!p) {
                        fprintf(stderr, "kmsctl: out of memory\n");
                        return -ENOMEM;
                }
                *keys = p;
                r = kmsctl_key_read(&a, false, &p[*n]);
                if (r < 0)
                        break;
                /* Strictly ascending across pages, so paging ends. */
                if (strcmp(p[*n].name, *n ? p[*n - 1].name : after) <= 0) {
                        fprintf(stderr, "kmsctl: kmsd's reply is not in name order at '%s'\n", p[*n].name);
                        kmsctl_key_done(&p[*n]);
                        return -EBADMSG;
                }
                (*n)++;
                page++;
        }
        *ret_page = page;
        return r;
}

/* The pages' replies, which the keys' strings point into. */
static void replies_free(DBusMessage **replies, size_t n)
{
        for (size_t i = 0; i < n; i++)
                dbus_message_unref(replies[i]);
        free(replies);
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
        DBusMessage **replies = NULL;
        size_t n_replies = 0;
        struct kmsctl_key *keys = NULL;
        size_t n = 0;
        int r, ret = KMS_EXIT_FAILURE;

        r = kmsctl_parse_args(cmd, argc, argv, options, handle_option, &a, 0, NULL);
        if (r != KMSCTL_CONTINUE)
                return r;

        for (;;) {
                _cleanup_(dbus_message_unrefp) DBusMessage *m = NULL, *reply = NULL;
                const char *after = n ? keys[n - 1].name : "";
                const struct kmsctl_bus_option opts[] = {
                        {.key = "all", .type = DBUS_TYPE_BOOLEAN, .set = a.all, .b = TRUE},
                        {.key = "limit", .type = DBUS_TYPE_UINT32, .set = true, .u = KMSCTL_LIST_PAGE},
                        {.key = "after", .type = DBUS_TYPE_STRING, .set = n > 0, .s = after},
                };
                DBusMessage **more;
                DBusMessageIter it;
                size_t page = 0;

                m = kmsctl_bus_new_call("ListKeys", &it);
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
                if (read_keys(&it, after, KMSCTL_LIST_PAGE, &keys, &n, &page) < 0)
                        goto out;
                if (page < KMSCTL_LIST_PAGE)
                        break;
        }
        if (a.json) {
                struct kmsctl_json j;

                kmsctl_json_init(&j, stdout);
                kmsctl_json_begin_array(&j);
                for (size_t i = 0; i < n; i++)
                        kmsctl_key_json(&j, &keys[i]);
                kmsctl_json_end_array(&j);
        } else
                print_table(keys, n);
        ret = KMS_EXIT_OK;
out:
        keys_free(keys, n);
        replies_free(replies, n_replies);
        return ret;
}
