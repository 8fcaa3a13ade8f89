/* What every kmsctl subcommand shares: the command table entry, the
 * argument parser that runs getopt_long over a command's options plus the
 * global ones, and the checks for values that several commands take (key
 * names, versions, digests, paddings).
 *
 * Convention in cli/: helpers return 0 or a negative errno and have
 * already printed a message when they fail (kmsctl logs once, at its
 * boundary); a command's run function and kmsctl_bus_call() return a
 * process exit status (KMS_EXIT_* from kms-error.h). */
#pragma once

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>

#include "kms-error.h"
#include "kms-key.h"

/* Largest input kmsctl sends to kmsd in one request (Sign, Verify); larger
 * inputs can be signed with --prehash. */
#define KMSCTL_MAX_INPUT_BYTES (64u * 1024u * 1024u)
/* Largest signature file kmsctl reads for verify. No algorithm here comes
 * close; anything bigger is not a signature. */
#define KMSCTL_MAX_SIGNATURE_FILE_BYTES (64u * 1024u)

struct kmsctl_command {
        const char *name; /* one or two words: "status", "key create" */
        int (*run)(const struct kmsctl_command *cmd, int argc, char **argv);
        const char *synopsis; /* arguments after the name */
        const char *help;     /* one line */
        const char *options;  /* option lines for --help, or NULL */
};

/* Option values of the global options (long only, so outside char range). */
enum {
        KMSCTL_OPT_BUS = 0x100,
        KMSCTL_OPT_BUS_ADDRESS,
        KMSCTL_OPT_TIMEOUT,
        KMSCTL_OPT_VERSION,
        /* The rotation settings (key-options.h), shared by key create and key set. */
        KMSCTL_OPT_ROTATE_EVERY,
        KMSCTL_OPT_ROTATE_AFTER_USES,
        KMSCTL_OPT_KEEP_VERSIONS,
};

#define KMSCTL_GLOBAL_OPTIONS                                                                                          \
        {"help", no_argument, NULL, 'h'}, {"bus", required_argument, NULL, KMSCTL_OPT_BUS},                            \
                {"bus-address", required_argument, NULL, KMSCTL_OPT_BUS_ADDRESS},                                      \
        {                                                                                                              \
                "timeout", required_argument, NULL, KMSCTL_OPT_TIMEOUT                                                 \
        }

/* kmsctl_parse_args() returns this when the command should go on. */
#define KMSCTL_CONTINUE (-1)

/* Parse argv (argv[0] is the command's last word) with getopt_long over
 * options (the command's own, terminated by a zero entry) plus the global
 * ones. Each of the command's options goes to handle(opt, optarg,
 * userdata), which returns 0 or a negative errno after printing what is
 * wrong. Exactly n_args positional arguments must remain; they are stored
 * in ret_args[0..n_args-1].
 *
 * Returns KMSCTL_CONTINUE, or the exit status the command should return
 * at once: KMS_EXIT_OK after --help, KMS_EXIT_USAGE after a usage error
 * (already printed). */
int kmsctl_parse_args(const struct kmsctl_command *cmd, int argc, char **argv, const struct option *options,
                      int (*handle)(int opt, const char *arg, void *userdata), void *userdata, unsigned n_args,
                      char **ret_args);

/* kmsctl_parse_args() for the commands whose one argument is a key name,
 * which must be a valid one (a usage error otherwise). */
int kmsctl_parse_key_args(const struct kmsctl_command *cmd, int argc, char **argv, const struct option *options,
                          int (*handle)(int opt, const char *arg, void *userdata), void *userdata, char **ret_name);

/* The option handler of the commands whose only option is --json ('j');
 * userdata is a bool. */
int kmsctl_json_option(int opt, const char *arg, void *userdata);

/* Print "Usage: ..." for cmd to stdout. */
void kmsctl_command_help(const struct kmsctl_command *cmd);
/* Print a usage error about cmd ("kmsctl key create: <msg>") and the
 * hint to run --help; returns KMS_EXIT_USAGE. */
int kmsctl_usage_error(const struct kmsctl_command *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Value checks for options; each prints a message naming the bad value
 * and returns -EINVAL, or 0 and writes *ret. */
int kmsctl_check_key_name(const char *name);
int kmsctl_parse_version(const char *s, uint32_t *ret);
int kmsctl_parse_hash(const char *s, enum kms_hash *ret);
int kmsctl_parse_padding(const char *s, enum kms_padding *ret);
/* A decimal number in [min, max] for option ("--count"). */
int kmsctl_parse_number(const char *option, const char *s, uint64_t min, uint64_t max, uint64_t *ret);

/* The subcommands, one file each. */
int kmsctl_key_create_main(const struct kmsctl_command *cmd, int argc, char **argv);
int kmsctl_key_list_main(const struct kmsctl_command *cmd, int argc, char **argv);
int kmsctl_key_show_main(const struct kmsctl_command *cmd, int argc, char **argv);
int kmsctl_key_public_main(const struct kmsctl_command *cmd, int argc, char **argv);
int kmsctl_key_attest_main(const struct kmsctl_command *cmd, int argc, char **argv);
int kmsctl_key_destroy_main(const struct kmsctl_command *cmd, int argc, char **argv);
int kmsctl_sign_main(const struct kmsctl_command *cmd, int argc, char **argv);
int kmsctl_verify_main(const struct kmsctl_command *cmd, int argc, char **argv);
int kmsctl_status_main(const struct kmsctl_command *cmd, int argc, char **argv);
int kmsctl_policy_show_main(const struct kmsctl_command *cmd, int argc, char **argv);
int kmsctl_policy_check_main(const struct kmsctl_command *cmd, int argc, char **argv);
int kmsctl_policy_reload_main(const struct kmsctl_command *cmd, int argc, char **argv);
int kmsctl_key_rotate_main(const struct kmsctl_command *cmd, int argc, char **argv);
int kmsctl_key_revoke_main(const struct kmsctl_command *cmd, int argc, char **argv);
int kmsctl_key_revoked_main(const struct kmsctl_command *cmd, int argc, char **argv);
int kmsctl_key_disable_main(const struct kmsctl_command *cmd, int argc, char **argv);
int kmsctl_key_enable_main(const struct kmsctl_command *cmd, int argc, char **argv);
int kmsctl_key_cancel_destroy_main(const struct kmsctl_command *cmd, int argc, char **argv);
int kmsctl_key_set_main(const struct kmsctl_command *cmd, int argc, char **argv);
int kmsctl_monitor_main(const struct kmsctl_command *cmd, int argc, char **argv);
int kmsctl_derive_main(const struct kmsctl_command *cmd, int argc, char **argv);
int kmsctl_decrypt_main(const struct kmsctl_command *cmd, int argc, char **argv);
int kmsctl_session_open_main(const struct kmsctl_command *cmd, int argc, char **argv);
int kmsctl_session_seal_main(const struct kmsctl_command *cmd, int argc, char **argv);
int kmsctl_session_open_envelope_main(const struct kmsctl_command *cmd, int argc, char **argv);
int kmsctl_session_close_main(const struct kmsctl_command *cmd, int argc, char **argv);
int kmsctl_session_list_main(const struct kmsctl_command *cmd, int argc, char **argv);
int kmsctl_audit_export_main(const struct kmsctl_command *cmd, int argc, char **argv);
int kmsctl_audit_verify_main(const struct kmsctl_command *cmd, int argc, char **argv);
int kmsctl_audit_pubkey_main(const struct kmsctl_command *cmd, int argc, char **argv);
int kmsctl_audit_tail_main(const struct kmsctl_command *cmd, int argc, char **argv);

/* Print "out of memory"; returns KMS_EXIT_FAILURE. */
int kmsctl_log_oom(void);

/* getopt_long() (the caller sets optind, and opterr = 0) that prints an
 * unknown option or a missing value and returns '?' for both. An
 * abbreviated long option counts as unknown: kmsctl takes option names
 * spelled out only. */
int kmsctl_getopt(int argc, char **argv, const char *optstring, const struct option *options);
