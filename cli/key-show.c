/* kmsctl key show NAME [--json]: DescribeKey, with every version, the
 * rotation settings and any scheduled destruction. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "bus.h"
#include "io.h"
#include "key.h"
#include "kmsctl.h"

/* The line under a revoked version. */
static void print_revocation(const struct kmsctl_key_version *v)
{
        char when[KMSCTL_TIME_MAX], reason[KMSCTL_PRINTABLE_MAX], note[KMSCTL_PRINTABLE_MAX];
        bool has_note = v->revoke_note && *v->revoke_note;

        printf("%7s  revoked %s, reason: %s%s%s\n", "", kmsctl_format_time(v->revoked_at, when, sizeof(when)),
               v->revoke_reason && *v->revoke_reason ? kmsctl_printable(v->revoke_reason, reason, sizeof(reason)) : "-",
               has_note ? ", note: " : "", has_note ? kmsctl_printable(v->revoke_note, note, sizeof(note)) : "");
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
               "Versions:        %" PRIu32 "\n",
               kmsctl_format_time(k->created, created, sizeof(created)), k->primary_version, k->version_count);
        kmsctl_key_print_lifecycle(k);
        putchar('\n');

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
                if (v->revoked_at != 0 || (v->revoke_reason && *v->revoke_reason))
                        print_revocation(v);
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

        r = kmsctl_parse_key_args(cmd, argc, argv, options, kmsctl_json_option, &json, &name);
        if (r != KMSCTL_CONTINUE)
                return r;

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
