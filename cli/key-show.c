/* kmsctl key show NAME [--json]: DescribeKey, with every version. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "bus.h"
#include "key.h"
#include "kmsctl.h"

static int handle_option(int opt, const char *arg, void *userdata)
{
        bool *json = userdata;

        if (opt != 'j')
                return -EINVAL;
        *json = true;
        return 0;
}

static void print_key(const struct kmsctl_key *k)
{
        char owner[KMSCTL_USER_MAX], created[KMSCTL_TIME_MAX];
        int wid = (int)strlen("BACKEND ID");

        printf("Name:            %s\n"
               "Algorithm:       %s\n"
               "Backend:         %s\n"
               "State:           %s\n"
               "Owner:           %s (uid %" PRIu32 ")\n"
               "Usages:          ",
               k->name, k->algorithm, k->backend, k->state, kmsctl_format_user(k->owner, owner, sizeof(owner)),
               k->owner);
        for (size_t i = 0; i < k->n_usages; i++)
                printf("%s%s", i ? ", " : "", k->usages[i]);
        printf("\nCreated:         %s\n"
               "Primary version: %" PRIu32 "\n"
               "Versions:        %" PRIu32 "\n\n",
               kmsctl_format_time(k->created, created, sizeof(created)), k->primary_version, k->version_count);

        for (size_t i = 0; i < k->n_versions; i++) {
                int l = (int)strlen(k->versions[i].backend_id);

                if (l > wid)
                        wid = l;
        }
        printf("%7s  %-9s  %-20s  %10s  %-*s  %s\n", "VERSION", "STATE", "CREATED", "USES", wid, "BACKEND ID",
               "FINGERPRINT");
        for (size_t i = 0; i < k->n_versions; i++) {
                const struct kmsctl_key_version *v = &k->versions[i];

                printf("%7" PRIu32 "  %-9s  %-20s  %10" PRIu64 "  %-*s  %s\n", v->version, v->state,
                       kmsctl_format_time(v->created, created, sizeof(created)), v->uses, wid, v->backend_id,
                       v->fingerprint);
        }
}

int kmsctl_key_show_main(const struct kmsctl_command *cmd, int argc, char **argv)
{
        static const struct option options[] = {
                {"json", no_argument, NULL, 'j'},
                {},
        };
        _cleanup_(dbus_message_unrefp) DBusMessage *reply = NULL;
        struct kmsctl_key k;
        bool json = false;
        char *name;
        int r;

        r = kmsctl_parse_args(cmd, argc, argv, options, handle_option, &json, 1, &name);
        if (r != KMSCTL_CONTINUE)
                return r;
        if (kmsctl_check_key_name(name) < 0)
                return KMS_EXIT_USAGE;

        r = kmsctl_key_describe(name, &reply, &k);
        if (r != KMS_EXIT_OK)
                return r;
        if (json) {
                struct kmsctl_json j;

                kmsctl_json_init(&j, stdout);
                kmsctl_key_json(&j, &k);
        } else
                print_key(&k);
        kmsctl_key_done(&k);
        return KMS_EXIT_OK;
}
