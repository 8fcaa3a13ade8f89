/* kmsctl key create NAME --algorithm ALG [--usage LIST] [--owner USER] [--backend B]
 * [--rotate-every D] [--rotate-after-uses N] [--keep-versions N] [--json]:
 * CreateKey. */
#include <errno.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>

#include "bus.h"
#include "key-options.h"
#include "key.h"
#include "kmsctl.h"

struct create_args {
        enum kms_algorithm algorithm;
        const char *usage_text; /* checked against the algorithm once both are known */
        unsigned usages;
        bool has_owner;
        uint32_t owner;
        const char *backend;
        struct kmsctl_key_options settings;
        bool json;
};

static int parse_owner(const char *s, uint32_t *ret)
{
        struct passwd *pw;
        uint64_t u;

        if (s[0] >= '0' && s[0] <= '9') {
                /* (uid_t)-1 means "no user" to the kernel: not an owner. */
                if (kms_parse_u64(s, 0, UINT32_MAX - 1, &u) < 0) {
                        fprintf(stderr, "kmsctl: --owner takes a user name or a uid from 0 to %u, not '%s'\n",
                                UINT32_MAX - 1, s);
                        return -EINVAL;
                }
                *ret = (uint32_t)u;
                return 0;
        }
        errno = 0;
        pw = getpwnam(s);
        if (!pw) {
                fprintf(stderr, "kmsctl: --owner: no user '%s'%s%s\n", s, errno ? ": " : "",
                        errno ? strerror(errno) : "");
                return -EINVAL;
        }
        *ret = (uint32_t)pw->pw_uid;
        return 0;
}

static int parse_usages(const char *s, unsigned *ret)
{
        /* kms_usages_from_string() only says "bad"; find the word to name. */
        if (kms_usages_from_string(s, ret) == 0)
                return 0;
        for (const char *p = s;; p += strcspn(p, ",") + 1) {
                size_t n = strcspn(p, ",");
                char word[32];

                if (n < sizeof(word)) {
                        memcpy(word, p, n);
                        word[n] = '\0';
                }
                if (n == 0 || n >= sizeof(word) || kms_usage_from_string(word) == 0) {
                        fprintf(stderr, "kmsctl: unknown usage '%.*s' in '%s' (sign, derive, decrypt)\n", (int)n, p, s);
                        return -EINVAL;
                }
                if (p[n] == '\0')
                        break;
        }
        fprintf(stderr, "kmsctl: invalid usage list '%s'\n", s);
        return -EINVAL;
}

static int handle_option(int opt, const char *arg, void *userdata)
{
        struct create_args *a = userdata;

        if (kmsctl_key_options_has(opt))
                return kmsctl_key_options_parse(&a->settings, opt, arg);
        switch (opt) {
        case 'a':
                a->algorithm = kms_algorithm_from_string(arg);
                if (a->algorithm == KMS_ALG_INVALID) {
                        fprintf(stderr, "kmsctl: unknown algorithm '%s' (%s)\n", arg, kms_algorithm_list());
                        return -EINVAL;
                }
                return 0;
        case 'u': a->usage_text = arg; return parse_usages(arg, &a->usages);
        case 'o': a->has_owner = true; return parse_owner(arg, &a->owner);
        case 'b':
                if (strcmp(arg, "pkcs11") != 0 && strcmp(arg, "tpm") != 0) {
                        fprintf(stderr, "kmsctl: --backend '%s' is not pkcs11 or tpm\n", arg);
                        return -EINVAL;
                }
                a->backend = arg;
                return 0;
        case 'j': a->json = true; return 0;
        default: return -EINVAL;
        }
}

static const enum kms_usage usage_order[] = {KMS_USAGE_SIGN, KMS_USAGE_DERIVE, KMS_USAGE_DECRYPT};

/* Usage words in the mask, in a fixed order, NULL-terminated. */
static void usages_to_strv(unsigned mask, const char *strv[static ELEMENTSOF(usage_order) + 1])
{
        size_t n = 0;

        for (size_t i = 0; i < ELEMENTSOF(usage_order); i++)
                if (mask & usage_order[i])
                        strv[n++] = kms_usage_to_string(usage_order[i]);
        strv[n] = NULL;
}

/* "sign, derive" for messages. */
static const char *usages_to_text(unsigned mask, char *buf, size_t size)
{
        const char *strv[ELEMENTSOF(usage_order) + 1];
        size_t n = 0;

        buf[0] = '\0';
        usages_to_strv(mask, strv);
        for (size_t i = 0; strv[i] && n < size; i++)
                n += (size_t)snprintf(buf + n, size - n, "%s%s", i ? ", " : "", strv[i]);
        return buf;
}

static void print_summary(const struct kmsctl_key *k)
{
        const struct kmsctl_key_version *v = kmsctl_key_find_version(k, k->primary_version);

        printf("Created key %s\n"
               "  algorithm:   %s\n"
               "  version:     %" PRIu32 "\n"
               "  fingerprint: %s\n",
               k->name, k->algorithm, k->primary_version, v ? v->fingerprint : "-");
        if (k->rotate_every || k->rotate_after_uses) {
                char rot[KMSCTL_ROTATION_MAX];

                printf("  rotation:    %s\n", kmsctl_key_format_rotation(k, rot, sizeof(rot)));
        }
        if (k->keep_versions)
                printf("  keep:        %" PRIu32 " versions\n", k->keep_versions);
}

int kmsctl_key_create_main(const struct kmsctl_command *cmd, int argc, char **argv)
{
        static const struct option options[] = {
                {"algorithm", required_argument, NULL, 'a'},
                {"usage", required_argument, NULL, 'u'},
                {"owner", required_argument, NULL, 'o'},
                {"backend", required_argument, NULL, 'b'},
                {"json", no_argument, NULL, 'j'},
                KMSCTL_KEY_OPTIONS,
                {},
        };
        struct create_args a = {.algorithm = KMS_ALG_INVALID};
        _cleanup_(dbus_message_unrefp) DBusMessage *m = NULL, *reply = NULL;
        struct kmsctl_key k;
        const char *usages[ELEMENTSOF(usage_order) + 1];
        char allowed[64];
        DBusMessageIter it;
        char *name;
        int r;

        r = kmsctl_parse_key_args(cmd, argc, argv, options, handle_option, &a, &name);
        if (r != KMSCTL_CONTINUE)
                return r;
        if (a.algorithm == KMS_ALG_INVALID)
                return kmsctl_usage_error(cmd, "--algorithm is required (%s)", kms_algorithm_list());
        if (a.usage_text && (a.usages & ~kms_algorithm_usages(a.algorithm)))
                return kmsctl_usage_error(cmd, "--usage '%s' does not fit %s keys, which allow: %s", a.usage_text,
                                          kms_algorithm_to_string(a.algorithm),
                                          usages_to_text(kms_algorithm_usages(a.algorithm), allowed, sizeof(allowed)));
        usages_to_strv(a.usages, usages);

        struct kmsctl_bus_option opts[3 + KMSCTL_KEY_N_OPTIONS] = {
                {.key = "usages", .type = DBUS_TYPE_ARRAY, .set = a.usage_text, .strv = usages},
                {.key = "owner", .type = DBUS_TYPE_UINT32, .set = a.has_owner, .u = a.owner},
                {.key = "backend", .type = DBUS_TYPE_STRING, .set = a.backend, .s = a.backend},
        };
        kmsctl_key_options_to_bus(&a.settings, opts + 3); /* after the 3 above */
        m = kmsctl_bus_new_call("CreateKey", &it);
        if (!m || kmsctl_append_string(&it, name) < 0 ||
            kmsctl_append_string(&it, kms_algorithm_to_string(a.algorithm)) < 0 ||
            kmsctl_append_options(&it, opts, ELEMENTSOF(opts)) < 0)
                return kmsctl_log_oom();
        r = kmsctl_bus_call(m, "a{sv}", NULL, &reply);
        if (r != KMS_EXIT_OK)
                return r;

        dbus_message_iter_init(reply, &it);
        if (kmsctl_key_read(&it, true, &k) < 0)
                return KMS_EXIT_FAILURE;
        if (a.json) {
                struct kmsctl_json j;

                kmsctl_json_init(&j, stdout);
                kmsctl_key_json(&j, &k);
        } else
                print_summary(&k);
        kmsctl_key_done(&k);
        return KMS_EXIT_OK;
}
