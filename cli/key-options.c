/* Rotation settings on kmsctl's command line; see key-options.h. */
#include "key-options.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "duration.h"
#include "kms-key.h"

bool kmsctl_key_options_has(int opt)
{
        return opt == KMSCTL_OPT_ROTATE_EVERY || opt == KMSCTL_OPT_ROTATE_AFTER_USES || opt == KMSCTL_OPT_KEEP_VERSIONS;
}

int kmsctl_key_options_parse(struct kmsctl_key_options *o, int opt, const char *arg)
{
        bool none = o->allow_none && strcmp(arg, "none") == 0;
        uint64_t v = 0;
        int r = 0;

        switch (opt) {
        case KMSCTL_OPT_ROTATE_EVERY:
                if (!none)
                        r = kmsctl_parse_duration("--rotate-every", arg, &v);
                o->has_rotate_every = r == 0;
                o->rotate_every = v;
                break;
        case KMSCTL_OPT_ROTATE_AFTER_USES:
                if (!none)
                        r = kmsctl_parse_number("--rotate-after-uses", arg, 1, INT64_MAX, &v);
                o->has_rotate_after_uses = r == 0;
                o->rotate_after_uses = v;
                break;
        case KMSCTL_OPT_KEEP_VERSIONS:
                if (!none)
                        r = kmsctl_parse_number("--keep-versions", arg, 1, KMS_MAX_VERSIONS, &v);
                o->has_keep_versions = r == 0;
                o->keep_versions = (uint32_t)v;
                break;
        default: return -EINVAL;
        }
        if (r < 0 && o->allow_none)
                fprintf(stderr, "kmsctl: 'none' clears the setting\n");
        return r;
}

bool kmsctl_key_options_any(const struct kmsctl_key_options *o)
{
        return o->has_rotate_every || o->has_rotate_after_uses || o->has_keep_versions;
}

void kmsctl_key_options_to_bus(const struct kmsctl_key_options *o,
                               struct kmsctl_bus_option ret[static KMSCTL_KEY_N_OPTIONS])
{
        ret[0] = (struct kmsctl_bus_option){
                .key = "rotate_every", .type = DBUS_TYPE_UINT64, .set = o->has_rotate_every, .t = o->rotate_every};
        ret[1] = (struct kmsctl_bus_option){.key = "rotate_after_uses",
                                            .type = DBUS_TYPE_UINT64,
                                            .set = o->has_rotate_after_uses,
                                            .t = o->rotate_after_uses};
        ret[2] = (struct kmsctl_bus_option){
                .key = "keep_versions", .type = DBUS_TYPE_UINT32, .set = o->has_keep_versions, .u = o->keep_versions};
}
