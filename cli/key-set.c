/* kmsctl key set NAME [--rotate-every D|none] [--rotate-after-uses N|none]
 * [--keep-versions N|none] [--json]: SetKeyOptions. "none" clears a
 * setting (0 on the bus); settings not given stay as they are. */
#include <stdio.h>

#include "bus.h"
#include "key-options.h"
#include "key.h"
#include "kmsctl.h"

struct set_args {
        struct kmsctl_key_options settings;
        bool json;
};

static int handle_option(int opt, const char *arg, void *userdata)
{
        struct set_args *a = userdata;

        if (kmsctl_key_options_has(opt))
                return kmsctl_key_options_parse(&a->settings, opt, arg);
        if (opt != 'j')
                return -EINVAL;
        a->json = true;
        return 0;
}

int kmsctl_key_set_main(const struct kmsctl_command *cmd, int argc, char **argv)
{
        static const struct option options[] = {
                KMSCTL_KEY_OPTIONS,
                {"json", no_argument, NULL, 'j'},
                {},
        };
        _cleanup_(dbus_message_unrefp) DBusMessage *reply = NULL;
        struct set_args a = {.settings.allow_none = true};
        struct kmsctl_bus_option opts[KMSCTL_KEY_N_OPTIONS];
        struct kmsctl_key k;
        char *name;
        int r;

        r = kmsctl_parse_key_args(cmd, argc, argv, options, handle_option, &a, &name);
        if (r != KMSCTL_CONTINUE)
                return r;
        if (!kmsctl_key_options_any(&a.settings))
                return kmsctl_usage_error(cmd, "nothing to change: give --rotate-every, --rotate-after-uses "
                                               "or --keep-versions");

        kmsctl_key_options_to_bus(&a.settings, opts);
        r = kmsctl_key_call_read("SetKeyOptions", name, opts, ELEMENTSOF(opts), &reply, &k);
        if (r != KMS_EXIT_OK)
                return r;
        if (a.json) {
                struct kmsctl_json j;

                kmsctl_json_init(&j, stdout);
                kmsctl_key_json(&j, &k);
        } else {
                printf("Updated key %s\n", k.name);
                kmsctl_key_print_lifecycle(&k);
        }
        kmsctl_key_done(&k);
        return KMS_EXIT_OK;
}
