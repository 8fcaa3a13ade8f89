/* kmsctl session close ID: CloseSession. kmsd wipes the session's keys. */
#include <stdio.h>

#include "bus.h"
#include "session.h"

static int no_option(int opt, const char *arg, void *userdata)
{
        (void)opt;
        (void)arg;
        (void)userdata;
        return -EINVAL;
}

int kmsctl_session_close_main(const struct kmsctl_command *cmd, int argc, char **argv)
{
        static const struct option options[] = {{}};
        _cleanup_(dbus_message_unrefp) DBusMessage *m = NULL, *reply = NULL;
        DBusMessageIter it;
        char *id;
        int r;

        r = kmsctl_session_parse_id_args(cmd, argc, argv, options, no_option, NULL, &id);
        if (r != KMSCTL_CONTINUE)
                return r;
        m = kmsctl_bus_new_call("CloseSession", &it);
        if (!m || kmsctl_append_string(&it, id) < 0)
                return kmsctl_log_oom();
        r = kmsctl_bus_call(m, "", kmsctl_session_hints, &reply);
        if (r != KMS_EXIT_OK)
                return r;
        printf("Closed session %s\n", id);
        return KMS_EXIT_OK;
}
