/* kmsctl key destroy NAME --now --yes | --after D: DestroyKey, at once or
 * scheduled. Destroying at once needs --yes (nothing is sent without it):
 * private keys cannot be recovered. --yes alone still means "now", as it
 * did before --after existed. A scheduled destruction can be cancelled
 * (key cancel-destroy), so --after needs no confirmation. */
#include <inttypes.h>
#include <stdio.h>

#include "bus.h"
#include "duration.h"
#include "key.h"
#include "kmsctl.h"

struct destroy_args {
        bool yes;
        bool now;
        bool has_after;
        uint64_t after; /* seconds */
};

static int handle_option(int opt, const char *arg, void *userdata)
{
        struct destroy_args *a = userdata;

        switch (opt) {
        case 'y': a->yes = true; return 0;
        case 'n': a->now = true; return 0;
        case 'a': a->has_after = true; return kmsctl_parse_duration("--after", arg, &a->after);
        default: return -EINVAL;
        }
}

int kmsctl_key_destroy_main(const struct kmsctl_command *cmd, int argc, char **argv)
{
        static const struct option options[] = {
                {"yes", no_argument, NULL, 'y'},
                {"now", no_argument, NULL, 'n'},
                {"after", required_argument, NULL, 'a'},
                {},
        };
        _cleanup_(dbus_message_unrefp) DBusMessage *reply = NULL;
        struct destroy_args a = {};
        char after[KMSCTL_DURATION_MAX];
        char *name;
        int r;

        r = kmsctl_parse_key_args(cmd, argc, argv, options, handle_option, &a, &name);
        if (r != KMSCTL_CONTINUE)
                return r;
        if (a.now && a.has_after)
                return kmsctl_usage_error(cmd, "--now and --after exclude each other");
        if (!a.has_after && !a.yes)
                return kmsctl_usage_error(cmd,
                                          "destroying '%s' deletes every version's private key for good; "
                                          "add --yes to confirm (or schedule it with --after DURATION)",
                                          name);

        const struct kmsctl_bus_option opts[] = {
                {.key = "after", .type = DBUS_TYPE_UINT64, .set = a.has_after, .t = a.after},
        };
        r = kmsctl_key_call("DestroyKey", name, opts, ELEMENTSOF(opts), "", &reply);
        if (r != KMS_EXIT_OK)
                return r;
        if (a.has_after)
                printf("Key %s is scheduled for destruction in %s; until then kmsd refuses to use it "
                       "('kmsctl key cancel-destroy %s' undoes this)\n",
                       name, kmsctl_format_duration(a.after, after, sizeof(after)), name);
        else
                printf("Destroyed key %s\n", name);
        return KMS_EXIT_OK;
}
