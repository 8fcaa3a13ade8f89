/* Argument parsing shared by the subcommands; see kmsctl.h. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "bus.h"
#include "kms-util.h"
#include "kmsctl.h"

/* The command's options plus the global ones fit in this. */
#define KMSCTL_MAX_OPTIONS 32u

void kmsctl_command_help(const struct kmsctl_command *cmd)
{
        printf("Usage: kmsctl %s %s\n\n%s.\n\n", cmd->name, cmd->synopsis, cmd->help);
        printf("Options:\n%s", cmd->options ? cmd->options : "");
        printf("  --help                 Show this help\n\n"
               "The global options --bus, --bus-address and --timeout are accepted here too\n"
               "(see kmsctl --help).\n");
}

static int usage_hint(const struct kmsctl_command *cmd)
{
        fprintf(stderr, "Try 'kmsctl %s --help'.\n", cmd->name);
        return KMS_EXIT_USAGE;
}

int kmsctl_usage_error(const struct kmsctl_command *cmd, const char *fmt, ...)
{
        va_list ap;

        fputs("kmsctl: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return usage_hint(cmd);
}

/* The argv element of the option getopt_long just returned. */
static const char *current_option(char **argv)
{
        /* "--name VALUE": the value is argv[optind - 1], the option one further back. */
        return optarg && optarg == argv[optind - 1] ? argv[optind - 2] : argv[optind - 1];
}

/* getopt_long takes any unique prefix of a long option; kmsctl wants the
 * whole name, so "--alg" never silently means "--algorithm" (and a script
 * keeps working when another option with that prefix is added). */
static bool option_spelled_out(const char *el, const struct option *o)
{
        size_t n = strlen(o->name);

        return strncmp(el, "--", 2) == 0 && strncmp(el + 2, o->name, n) == 0 && (el[2 + n] == '\0' || el[2 + n] == '=');
}

int kmsctl_getopt(int argc, char **argv, const char *optstring, const struct option *options)
{
        int longindex = -1, c;

        c = getopt_long(argc, argv, optstring, options, &longindex);
        if (c == ':') {
                fprintf(stderr, "kmsctl: option '%s' needs a value\n", argv[optind - 1]);
                return '?';
        }
        if (c == '?' && strncmp(argv[optind - 1], "--", 2) != 0) {
                /* A short option, maybe inside a group ("-xh") where optind has not moved on. */
                fprintf(stderr, "kmsctl: unknown option '-%c'\n", optopt);
                return '?';
        }
        if (c == '?' || (c != -1 && longindex >= 0 && !option_spelled_out(current_option(argv), &options[longindex]))) {
                /* Unknown, abbreviated, or "--flag=VALUE" for a flag that takes none. */
                fprintf(stderr, "kmsctl: invalid option '%s'\n", c == '?' ? argv[optind - 1] : current_option(argv));
                return '?';
        }
        return c;
}

int kmsctl_parse_args(const struct kmsctl_command *cmd, int argc, char **argv, const struct option *options,
                      int (*handle)(int opt, const char *arg, void *userdata), void *userdata, unsigned n_args,
                      char **ret_args)
{
        static const struct option global[] = {KMSCTL_GLOBAL_OPTIONS};
        struct option all[KMSCTL_MAX_OPTIONS];
        size_t n = 0;
        int c;

        for (; options && options[n].name; n++) {
                if (n >= ELEMENTSOF(all) - ELEMENTSOF(global) - 1)
                        abort(); /* a programming error in the command's table */
                all[n] = options[n];
        }
        memcpy(all + n, global, sizeof(global));
        all[n + ELEMENTSOF(global)] = (struct option){0};

        optind = 0; /* GNU getopt: start afresh (main() parsed before us) */
        opterr = 0; /* our own messages, which name the bad value */
        while ((c = kmsctl_getopt(argc, argv, ":h", all)) != -1) {
                switch (c) {
                case 'h': kmsctl_command_help(cmd); return KMS_EXIT_OK;
                case '?': return usage_hint(cmd);
                case KMSCTL_OPT_BUS:
                case KMSCTL_OPT_BUS_ADDRESS:
                case KMSCTL_OPT_TIMEOUT:
                        if (kmsctl_bus_option(c, optarg) < 0)
                                return usage_hint(cmd);
                        break;
                default:
                        if (handle(c, optarg, userdata) < 0)
                                return usage_hint(cmd);
                }
        }

        if ((unsigned)(argc - optind) > n_args)
                return kmsctl_usage_error(cmd, "unexpected argument '%s'", argv[optind + n_args]);
        if ((unsigned)(argc - optind) < n_args)
                return kmsctl_usage_error(cmd, "missing argument; usage: kmsctl %s %s", cmd->name, cmd->synopsis);
        for (unsigned i = 0; i < n_args; i++)
                ret_args[i] = argv[optind + i];
        return KMSCTL_CONTINUE;
}

int kmsctl_parse_key_args(const struct kmsctl_command *cmd, int argc, char **argv, const struct option *options,
                          int (*handle)(int opt, const char *arg, void *userdata), void *userdata, char **ret_name)
{
        int r = kmsctl_parse_args(cmd, argc, argv, options, handle, userdata, 1, ret_name);

        if (r != KMSCTL_CONTINUE)
                return r;
        if (kmsctl_check_key_name(*ret_name) < 0)
                return KMS_EXIT_USAGE;
        return KMSCTL_CONTINUE;
}

int kmsctl_json_option(int opt, const char *arg, void *userdata)
{
        bool *json = userdata;

        (void)arg;
        if (opt != 'j')
                return -EINVAL;
        *json = true;
        return 0;
}

int kmsctl_check_key_name(const char *name)
{
        const char *why = NULL;

        if (kms_key_name_check(name, &why) < 0) {
                fprintf(stderr, "kmsctl: invalid key name '%s': %s\n", name, why ? why : "not allowed");
                return -EINVAL;
        }
        return 0;
}

int kmsctl_parse_version(const char *s, uint32_t *ret)
{
        uint64_t v;

        if (kms_parse_u64(s, 1, UINT32_MAX, &v) < 0) {
                fprintf(stderr, "kmsctl: --version takes a version number from 1 to %u, not '%s'\n", UINT32_MAX, s);
                return -EINVAL;
        }
        *ret = (uint32_t)v;
        return 0;
}

int kmsctl_parse_hash(const char *s, enum kms_hash *ret)
{
        enum kms_hash h = kms_hash_from_string(s);

        if (h == KMS_HASH_INVALID) {
                fprintf(stderr, "kmsctl: unknown hash '%s' (sha256, sha384, sha512)\n", s);
                return -EINVAL;
        }
        *ret = h;
        return 0;
}

int kmsctl_parse_padding(const char *s, enum kms_padding *ret)
{
        enum kms_padding p = kms_padding_from_string(s);

        /* "none" is how ECDSA is described internally, not an option value. */
        if (p != KMS_PAD_PKCS1 && p != KMS_PAD_PSS) {
                fprintf(stderr, "kmsctl: unknown padding '%s' (pkcs1, pss)\n", s);
                return -EINVAL;
        }
        *ret = p;
        return 0;
}

int kmsctl_parse_number(const char *option, const char *s, uint64_t min, uint64_t max, uint64_t *ret)
{
        if (kms_parse_u64(s, min, max, ret) < 0) {
                fprintf(stderr, "kmsctl: %s takes a whole number from %" PRIu64 " to %" PRIu64 ", not '%s'\n", option,
                        min, max, s);
                return -EINVAL;
        }
        return 0;
}

int kmsctl_log_oom(void)
{
        fprintf(stderr, "kmsctl: out of memory\n");
        return KMS_EXIT_FAILURE;
}
