/* kmsctl key revoke NAME [--version N] --reason R [--note TEXT]
 * [--no-replace] [--json]: RevokeKey. Irreversible: kmsd destroys the
 * revoked versions' private keys. --reason is required, so a revocation
 * is never typed by accident and always says why. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "bus.h"
#include "json.h"
#include "key.h"
#include "kms-key.h"
#include "kmsctl.h"

struct revoke_args {
        uint32_t version; /* 0: every version */
        const char *reason;
        const char *note;
        bool no_replace;
        bool json;
};

static int handle_option(int opt, const char *arg, void *userdata)
{
        struct revoke_args *a = userdata;

        switch (opt) {
        case 'v': return kmsctl_parse_version(arg, &a->version);
        case 'r':
                if (kms_revoke_reason_from_string(arg) == KMS_REVOKE_INVALID) {
                        fprintf(stderr, "kmsctl: unknown revocation reason '%s' (compromised, superseded, retired)\n",
                                arg);
                        return -EINVAL;
                }
                a->reason = arg;
                return 0;
        case 'n':
                if (strlen(arg) > KMS_MAX_REVOKE_NOTE) {
                        fprintf(stderr, "kmsctl: --note takes at most %u bytes, not %zu\n", KMS_MAX_REVOKE_NOTE,
                                strlen(arg));
                        return -EINVAL;
                }
                a->note = arg;
                return 0;
        case 'N': a->no_replace = true; return 0;
        case 'j': a->json = true; return 0;
        default: return -EINVAL;
        }
}

static void print_json(const char *name, const struct revoke_args *a, uint32_t primary)
{
        struct kmsctl_json j;

        kmsctl_json_init(&j, stdout);
        kmsctl_json_begin_object(&j);
        kmsctl_json_field_string(&j, "name", name);
        kmsctl_json_key(&j, "version");
        if (a->version)
                kmsctl_json_uint(&j, a->version);
        else
                kmsctl_json_null(&j); /* every version */
        kmsctl_json_field_string(&j, "reason", a->reason);
        kmsctl_json_key(&j, "primary_version");
        if (primary)
                kmsctl_json_uint(&j, primary);
        else
                kmsctl_json_null(&j);
        kmsctl_json_end_object(&j);
}

int kmsctl_key_revoke_main(const struct kmsctl_command *cmd, int argc, char **argv)
{
        static const struct option options[] = {
                {"version", required_argument, NULL, 'v'}, {"reason", required_argument, NULL, 'r'},
                {"note", required_argument, NULL, 'n'},    {"no-replace", no_argument, NULL, 'N'},
                {"json", no_argument, NULL, 'j'},          {},
        };
        _cleanup_(dbus_message_unrefp) DBusMessage *reply = NULL;
        struct revoke_args a = {};
        uint32_t primary;
        char *name;
        int r;

        r = kmsctl_parse_key_args(cmd, argc, argv, options, handle_option, &a, &name);
        if (r != KMSCTL_CONTINUE)
                return r;
        if (!a.reason)
                return kmsctl_usage_error(cmd, "--reason is required (compromised, superseded, retired)");

        const struct kmsctl_bus_option opts[] = {
                {.key = "reason", .type = DBUS_TYPE_STRING, .set = true, .s = a.reason},
                {.key = "note", .type = DBUS_TYPE_STRING, .set = a.note, .s = a.note},
                {.key = "version", .type = DBUS_TYPE_UINT32, .set = a.version != 0, .u = a.version},
                {.key = "no_replace", .type = DBUS_TYPE_BOOLEAN, .set = a.no_replace, .b = TRUE},
        };
        r = kmsctl_key_call("RevokeKey", name, opts, ELEMENTSOF(opts), "u", &reply);
        if (r != KMS_EXIT_OK)
                return r;
        if (!dbus_message_get_args(reply, NULL, DBUS_TYPE_UINT32, &primary, DBUS_TYPE_INVALID))
                return kmsctl_log_oom();

        if (a.json) {
                print_json(name, &a, primary);
                return KMS_EXIT_OK;
        }
        if (a.version)
                printf("Revoked key %s version %" PRIu32 " (%s)\n", name, a.version, a.reason);
        else
                printf("Revoked every version of key %s (%s)\n", name, a.reason);
        if (primary)
                printf("Version %" PRIu32 " of %s is primary\n", primary, name);
        else
                printf("Key %s has no usable version left\n", name);
        return KMS_EXIT_OK;
}
