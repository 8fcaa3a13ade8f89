/* kmsctl key rotate NAME [--json]: RotateKey. The new version becomes
 * primary; older versions keep verifying. */
#include <inttypes.h>
#include <stdio.h>

#include "bus.h"
#include "json.h"
#include "key.h"
#include "kmsctl.h"

int kmsctl_key_rotate_main(const struct kmsctl_command *cmd, int argc, char **argv)
{
        static const struct option options[] = {
                {"json", no_argument, NULL, 'j'},
                {},
        };
        _cleanup_(dbus_message_unrefp) DBusMessage *reply = NULL;
        bool json = false;
        uint32_t version;
        char *name;
        int r;

        r = kmsctl_parse_key_args(cmd, argc, argv, options, kmsctl_json_option, &json, &name);
        if (r != KMSCTL_CONTINUE)
                return r;
        r = kmsctl_key_call("RotateKey", name, NULL, 0, "u", &reply);
        if (r != KMS_EXIT_OK)
                return r;
        if (!dbus_message_get_args(reply, NULL, DBUS_TYPE_UINT32, &version, DBUS_TYPE_INVALID))
                return kmsctl_log_oom();
        if (json) {
                struct kmsctl_json j;

                kmsctl_json_init(&j, stdout);
                kmsctl_json_begin_object(&j);
                kmsctl_json_field_string(&j, "name", name);
                kmsctl_json_field_uint(&j, "version", version);
                kmsctl_json_end_object(&j);
        } else
                printf("Rotated key %s: version %" PRIu32 " is primary\n", name, version);
        return KMS_EXIT_OK;
}
