/* The rotation settings of a key as kmsctl takes them on the command line
 * (--rotate-every D, --rotate-after-uses N, --keep-versions N), shared by
 * key create and key set, and the CreateKey/SetKeyOptions options they
 * become. */
#pragma once

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>

#include "bus.h"
#include "kmsctl.h"

#define KMSCTL_KEY_OPTIONS                                                                                             \
        {"rotate-every", required_argument, NULL, KMSCTL_OPT_ROTATE_EVERY},                                            \
                {"rotate-after-uses", required_argument, NULL, KMSCTL_OPT_ROTATE_AFTER_USES},                          \
        {                                                                                                              \
                "keep-versions", required_argument, NULL, KMSCTL_OPT_KEEP_VERSIONS                                     \
        }

#define KMSCTL_KEY_N_OPTIONS 3u

struct kmsctl_key_options {
        bool allow_none; /* key set: "none" clears a setting (sent as 0) */
        bool has_rotate_every, has_rotate_after_uses, has_keep_versions;
        uint64_t rotate_every;      /* seconds */
        uint64_t rotate_after_uses; /* signatures by the primary version */
        uint32_t keep_versions;
};

/* Is opt one of KMSCTL_KEY_OPTIONS? */
bool kmsctl_key_options_has(int opt);

/* Parse one of KMSCTL_KEY_OPTIONS into o. Returns 0, or -EINVAL after
 * printing a message that names the bad value. */
int kmsctl_key_options_parse(struct kmsctl_key_options *o, int opt, const char *arg);

/* Was any of them given? */
bool kmsctl_key_options_any(const struct kmsctl_key_options *o);

/* The options dictionary entries, left out where not given. */
void kmsctl_key_options_to_bus(const struct kmsctl_key_options *o,
                               struct kmsctl_bus_option ret[static KMSCTL_KEY_N_OPTIONS]);
