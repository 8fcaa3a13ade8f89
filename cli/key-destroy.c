/* kmsctl key destroy NAME --yes: DestroyKey. Without --yes nothing is
 * sent: destroying private keys cannot be undone. */
#include <stdio.h>

#include "bus.h"
#include "kmsctl.h"

static int handle_option(int opt, const char *arg, void *userdata)
{
        bool *yes = userdata;

        if (opt != 'y')
                return -EINVAL;
        *yes = true;
        return 0;
}

int kmsctl_key_destroy_main(const struct kmsctl_command *cmd, int argc, char **argv)
{
        static const struct option options[] = {
                {"yes", no_argument, NULL, 'y'},
                {},
        };
        _cleanup_(dbus_message_unrefp) DBusMessage *m = NULL, *reply = NULL;
        DBusMessageIter it;
        bool yes = false;
        char *name;
        int r;

        r = kmsctl_parse_args(cmd, argc, argv, options, handle_option, &yes, 1, &name);
        if (r != KMSCTL_CONTINUE)
                return r;
        if (kmsctl_check_key_name(name) < 0)
                return KMS_EXIT_USAGE;
        if (!yes)
                return kmsctl_usage_error(cmd,
                                          "destroying '%s' deletes every version's private key for good; "
                                          "add --yes to confirm",
                                          name);

        m = kmsctl_bus_new_call("DestroyKey", &it);
        if (!m || kmsctl_append_string(&it, name) < 0 || kmsctl_append_options(&it, NULL, 0) < 0)
                return kmsctl_log_oom();
        r = kmsctl_bus_call(m, "", NULL, &reply);
        if (r != KMS_EXIT_OK)
                return r;
        printf("Destroyed key %s\n", name);
        return KMS_EXIT_OK;
}
