/* kmsctl session list [--json]: ListSessions, the caller's own sessions
 * (kmsd shows nobody another user's): id, key, role, times, messages used,
 * the peer's key fingerprint. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "bus.h"
#include "key.h"
#include "session.h"

static void print_text_entry(const struct kmsctl_session_info *s, int wkey)
{
        char created[KMSCTL_TIME_MAX], expires[KMSCTL_TIME_MAX];

        printf("%-36s  %-*s  %7" PRIu32 "  %-9s  %-20s  %-20s  %5" PRIu64 "  %8" PRIu64 "  %5" PRIu64 "  %s\n", s->id,
               wkey, s->key, s->version, s->role, kmsctl_format_time(s->created, created, sizeof(created)),
               kmsctl_format_time(s->expires, expires, sizeof(expires)), s->sent, s->received, s->max_messages,
               s->peer_fingerprint);
}

/* Read every entry first (the widest key name; and a bad reply prints no
 * half table or document), then print. */
static int print_list(DBusMessageIter *list, bool json)
{
        struct kmsctl_session_info s;
        struct kmsctl_json j;
        DBusMessageIter it;
        int wkey = (int)strlen("KEY");

        for (it = *list; dbus_message_iter_get_arg_type(&it) == DBUS_TYPE_ARRAY; dbus_message_iter_next(&it)) {
                if (kmsctl_session_info_read(&it, &s) < 0)
                        return KMS_EXIT_FAILURE;
                if ((int)strlen(s.key) > wkey)
                        wkey = (int)strlen(s.key);
        }
        if (json) {
                kmsctl_json_init(&j, stdout);
                kmsctl_json_begin_array(&j);
        } else
                printf("%-36s  %-*s  %7s  %-9s  %-20s  %-20s  %5s  %8s  %5s  %s\n", "ID", wkey, "KEY", "VERSION",
                       "ROLE", "CREATED", "EXPIRES", "SENT", "RECEIVED", "MAX", "PEER");
        for (it = *list; dbus_message_iter_get_arg_type(&it) == DBUS_TYPE_ARRAY; dbus_message_iter_next(&it)) {
                (void)kmsctl_session_info_read(&it, &s);
                if (json)
                        kmsctl_session_info_json(&j, &s);
                else
                        print_text_entry(&s, wkey);
        }
        if (json)
                kmsctl_json_end_array(&j);
        return KMS_EXIT_OK;
}

int kmsctl_session_list_main(const struct kmsctl_command *cmd, int argc, char **argv)
{
        return kmsctl_list_main(cmd, argc, argv, "ListSessions", kmsctl_session_hints, print_list);
}
