/* kmsctl policy show|check|reload: GetPolicy, CheckPolicy, ReloadPolicy.
 * kmsd decides; these commands show what it decided and why. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "bus.h"
#include "json.h"
#include "kmsctl.h"

struct rule {
        const char *name, *file, *effect, *subjects, *operations, *keys;
        uint32_t line;
};

static int read_rule(DBusMessageIter *it, struct rule *ret)
{
        struct rule r = {};
        struct kmsctl_dict_field fields[] = {
                {"name", "s", &r.name, true},         {"file", "s", &r.file, true},
                {"line", "u", &r.line, true},         {"effect", "s", &r.effect, true},
                {"subjects", "s", &r.subjects, true}, {"operations", "s", &r.operations, true},
                {"keys", "s", &r.keys, true},
        };

        if (kmsctl_dict_read(it, fields, ELEMENTSOF(fields)) < 0)
                return -EBADMSG;
        *ret = r;
        return 0;
}

int kmsctl_policy_show_main(const struct kmsctl_command *cmd, int argc, char **argv)
{
        static const struct option options[] = {
                {"json", no_argument, NULL, 'j'},
                {},
        };
        _cleanup_(dbus_message_unrefp) DBusMessage *m = NULL, *reply = NULL;
        const char *dir = NULL, *admin_group = NULL, *owner_rights = NULL;
        dbus_bool_t admin_group_exists = false;
        struct kmsctl_dict_field fields[] = {
                {"dir", "s", &dir, true},
                {"admin_group", "s", &admin_group, true},
                {"admin_group_exists", "b", &admin_group_exists, true},
                {"owner_rights", "s", &owner_rights, true},
        };
        DBusMessageIter it, rules;
        struct kmsctl_json j;
        bool json = false;
        unsigned n = 0;
        int r;

        r = kmsctl_parse_args(cmd, argc, argv, options, kmsctl_json_option, &json, 0, NULL);
        if (r != KMSCTL_CONTINUE)
                return r;
        m = kmsctl_bus_new_call("GetPolicy", &it);
        if (!m)
                return kmsctl_log_oom();
        r = kmsctl_bus_call(m, "a{sv}aa{sv}", NULL, &reply);
        if (r != KMS_EXIT_OK)
                return r;
        dbus_message_iter_init(reply, &it);
        if (kmsctl_dict_read(&it, fields, ELEMENTSOF(fields)) < 0)
                return KMS_EXIT_FAILURE;
        dbus_message_iter_next(&it);
        if (kmsctl_array_open(&it, "a{sv}", &rules) < 0)
                return KMS_EXIT_FAILURE;

        if (json) {
                kmsctl_json_init(&j, stdout);
                kmsctl_json_begin_object(&j);
                kmsctl_json_field_string(&j, "dir", dir);
                kmsctl_json_field_string(&j, "admin_group", admin_group);
                kmsctl_json_field_bool(&j, "admin_group_exists", admin_group_exists);
                kmsctl_json_field_string(&j, "owner_rights", owner_rights);
                kmsctl_json_key(&j, "rules");
                kmsctl_json_begin_array(&j);
        } else {
                printf("Policy folder:  %s\n"
                       "Admins:         uid 0%s%s%s\n"
                       "Owner rights:   %s\n",
                       *dir ? dir : "(none)", *admin_group ? " and group " : "", admin_group,
                       *admin_group && !admin_group_exists ? " (no such group)" : "",
                       *owner_rights ? owner_rights : "(none)");
        }
        while (dbus_message_iter_get_arg_type(&rules) == DBUS_TYPE_ARRAY) {
                struct rule rl;

                if (read_rule(&rules, &rl) < 0)
                        return KMS_EXIT_FAILURE;
                if (json) {
                        kmsctl_json_begin_object(&j);
                        kmsctl_json_field_string(&j, "name", rl.name);
                        kmsctl_json_field_string(&j, "file", rl.file);
                        kmsctl_json_field_uint(&j, "line", rl.line);
                        kmsctl_json_field_string(&j, "effect", rl.effect);
                        kmsctl_json_field_string(&j, "subjects", rl.subjects);
                        kmsctl_json_field_string(&j, "operations", rl.operations);
                        kmsctl_json_field_string(&j, "keys", rl.keys);
                        kmsctl_json_end_object(&j);
                } else
                        printf("\n[%s]  %s:%" PRIu32 "\n  effect      %s\n  subjects    %s\n  operations  %s\n"
                               "  keys        %s\n",
                               rl.name, rl.file, rl.line, rl.effect, rl.subjects, rl.operations, rl.keys);
                n++;
                dbus_message_iter_next(&rules);
        }
        if (json) {
                kmsctl_json_end_array(&j);
                kmsctl_json_end_object(&j);
        } else
                printf("\n%u rule(s), first match decides; then owner rights; otherwise denied.\n", n);
        return KMS_EXIT_OK;
}

struct check_args {
        const char *user, *key, *op;
        bool json;
};

static int check_option(int opt, const char *arg, void *userdata)
{
        struct check_args *a = userdata;

        switch (opt) {
        case 'u': a->user = arg; return 0;
        case 'k': a->key = arg; return 0;
        case 'o': a->op = arg; return 0;
        case 'j': a->json = true; return 0;
        default: return -EINVAL;
        }
}

int kmsctl_policy_check_main(const struct kmsctl_command *cmd, int argc, char **argv)
{
        static const struct option options[] = {
                {"user", required_argument, NULL, 'u'},
                {"key", required_argument, NULL, 'k'},
                {"op", required_argument, NULL, 'o'},
                {"json", no_argument, NULL, 'j'},
                {},
        };
        _cleanup_(dbus_message_unrefp) DBusMessage *m = NULL, *reply = NULL;
        struct check_args a = {.key = ""};
        dbus_bool_t allow;
        const char *why;
        DBusMessageIter it;
        int r;

        r = kmsctl_parse_args(cmd, argc, argv, options, check_option, &a, 0, NULL);
        if (r != KMSCTL_CONTINUE)
                return r;
        if (!a.user)
                return kmsctl_usage_error(cmd, "--user USER is required (a name, a uid, or uid:N)");
        if (!a.op)
                return kmsctl_usage_error(cmd, "--op OPERATION is required (sign, read, create, ...)");
        if (*a.key && kmsctl_check_key_name(a.key) < 0)
                return KMS_EXIT_USAGE;
        m = kmsctl_bus_new_call("CheckPolicy", &it);
        if (!m || kmsctl_append_string(&it, a.user) < 0 || kmsctl_append_string(&it, a.key) < 0 ||
            kmsctl_append_string(&it, a.op) < 0)
                return kmsctl_log_oom();
        r = kmsctl_bus_call(m, "bs", NULL, &reply);
        if (r != KMS_EXIT_OK)
                return r;
        if (!dbus_message_get_args(reply, NULL, DBUS_TYPE_BOOLEAN, &allow, DBUS_TYPE_STRING, &why, DBUS_TYPE_INVALID))
                return kmsctl_log_oom();
        if (a.json) {
                struct kmsctl_json j;

                kmsctl_json_init(&j, stdout);
                kmsctl_json_begin_object(&j);
                kmsctl_json_field_string(&j, "user", a.user);
                kmsctl_json_field_string(&j, "key", *a.key ? a.key : NULL);
                kmsctl_json_field_string(&j, "operation", a.op);
                kmsctl_json_field_bool(&j, "allowed", allow);
                kmsctl_json_field_string(&j, "reason", why);
                kmsctl_json_end_object(&j);
        } else
                printf("%s: %s\n", allow ? "allow" : "deny", why);
        /* The answer is the output; the exit status says it too, for scripts. */
        return allow ? KMS_EXIT_OK : KMS_EXIT_DENIED;
}

int kmsctl_policy_reload_main(const struct kmsctl_command *cmd, int argc, char **argv)
{
        _cleanup_(dbus_message_unrefp) DBusMessage *m = NULL, *reply = NULL;
        DBusMessageIter it;
        uint32_t n;
        int r;

        r = kmsctl_parse_args(cmd, argc, argv, NULL, NULL, NULL, 0, NULL);
        if (r != KMSCTL_CONTINUE)
                return r;
        m = kmsctl_bus_new_call("ReloadPolicy", &it);
        if (!m)
                return kmsctl_log_oom();
        r = kmsctl_bus_call(m, "u", NULL, &reply);
        if (r != KMS_EXIT_OK)
                return r;
        if (!dbus_message_get_args(reply, NULL, DBUS_TYPE_UINT32, &n, DBUS_TYPE_INVALID))
                return kmsctl_log_oom();
        printf("Policy reloaded: %" PRIu32 " rule(s) in force\n", n);
        return KMS_EXIT_OK;
}
