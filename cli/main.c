/* kmsctl: the shell front end of kmsd. This file holds the one table of
 * subcommands, which drives both dispatch and the usage text, and the
 * global options. Each subcommand lives in its own file. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bus.h"
#include "kms-bus.h"
#include "kms-util.h"
#include "kmsctl.h"

static const struct kmsctl_command commands[] = {
        {
                "key create",
                kmsctl_key_create_main,
                "NAME --algorithm ALG [--usage LIST] [--owner USER] [--backend B]\n"
                "                         [--rotate-every D] [--rotate-after-uses N] [--keep-versions N] [--json]",
                "Generate a key pair inside the token and record it",
                "  --algorithm ALG        ec-p256, ec-p384, rsa-2048, rsa-3072 or rsa-4096\n"
                "  --usage LIST           Comma-separated usages: sign, derive (EC), decrypt (RSA);\n"
                "                         default: sign\n"
                "  --backend B            pkcs11 (the token; default) or tpm (when kmsd has one)\n"
                "  --owner UID|USER       Owner of the key; default: the caller. Another user needs\n"
                "                         an admin (root, admin_group, or a rule granting admin)\n"
                "  --rotate-every D       Rotate on this schedule: 90s, 5m, 12h, 30d, 1d12h\n"
                "  --rotate-after-uses N  Rotate when the primary version has signed N times\n"
                "  --keep-versions N      Destroy the oldest versions beyond the newest N\n"
                "  --json                 Print the new key as JSON\n",
        },
        {
                "key list",
                kmsctl_key_list_main,
                "[--all] [--json]",
                "List keys with their algorithm, state, owner and primary version",
                "  --all                  Include destroyed keys\n"
                "  --json                 Print a JSON array of keys\n",
        },
        {
                "key show",
                kmsctl_key_show_main,
                "NAME [--json]",
                "Show a key with every version, its rotation settings and schedule",
                "  --json                 Print the key as JSON\n",
        },
        {
                "key public",
                kmsctl_key_public_main,
                "NAME [--version N] [--der] [--out FILE]",
                "Export a public key as SubjectPublicKeyInfo (PEM by default)",
                "  --version N            Version to export; default: the primary version\n"
                "  --der                  Write DER instead of PEM\n"
                "  --out FILE             Write to FILE (mode 0644) instead of standard output\n",
        },
        {
                "key attest",
                kmsctl_key_attest_main,
                "NAME (--out FILE | --out-dir DIR) [--nonce HEX] [--version N]",
                "Have the TPM certify a TPM key with kmsd's attestation key (TPM2_Certify)",
                "  --out FILE             Write one JSON object (hex fields: nonce, attest, signature,\n"
                "                         key_name, key_public; ak_pem) to FILE ('-': standard output)\n"
                "  --out-dir DIR          Write attest.bin, attest.sig (DER), ak.pem, key.name,\n"
                "                         key.public and nonce.bin into DIR (made if missing)\n"
                "  --nonce HEX            Up to 64 bytes the attestation must include (extraData);\n"
                "                         default: 32 random bytes\n"
                "  --version N            Version to attest; default: the primary version\n"
                "                         How to check the result without kmsd: docs/tpm.md\n",
        },
        {
                "key destroy",
                kmsctl_key_destroy_main,
                "NAME --now --yes | --after D",
                "Destroy every version of a key in the token, keeping a tombstone",
                "  --now                  Destroy at once (the default; needs --yes)\n"
                "  --yes                  Confirm: the private keys cannot be recovered\n"
                "  --after D              Schedule the destruction in D (90s, 5m, 12h, 30d, 1d12h);\n"
                "                         the key is unusable until then; key cancel-destroy undoes it\n",
        },
        {
                "key cancel-destroy",
                kmsctl_key_cancel_destroy_main,
                "NAME",
                "Cancel a destruction scheduled with key destroy --after",
                NULL,
        },
        {
                "key rotate",
                kmsctl_key_rotate_main,
                "NAME [--json]",
                "Generate a new version of a key and make it primary",
                "  --json                 Print {\"name\",\"version\"} on stdout\n",
        },
        {
                "key revoke",
                kmsctl_key_revoke_main,
                "NAME [--version N] --reason R [--note TEXT] [--no-replace] [--json]",
                "Revoke a key or one version for good, destroying its private key",
                "  --version N            Revoke this version only; default: every version\n"
                "  --reason R             compromised, superseded or retired (required)\n"
                "  --note TEXT            A note kept with the revocation (at most 256 bytes)\n"
                "  --no-replace           Revoking the primary of a key with a rotation schedule\n"
                "                         rotates first; this leaves the key without a primary\n"
                "  --json                 Print {\"name\",\"version\",\"reason\",\"primary_version\"}\n",
        },
        {
                "key revoked",
                kmsctl_key_revoked_main,
                "[--json]",
                "List revoked versions: name, version, time, reason, fingerprint, note",
                "  --json                 Print a JSON array\n",
        },
        {
                "key disable",
                kmsctl_key_disable_main,
                "NAME",
                "Refuse signing with a key until key enable (verify still works)",
                NULL,
        },
        {
                "key enable",
                kmsctl_key_enable_main,
                "NAME",
                "Allow a disabled key to sign again",
                NULL,
        },
        {
                "key set",
                kmsctl_key_set_main,
                "NAME [--rotate-every D|none] [--rotate-after-uses N|none] [--keep-versions N|none]\n"
                "                         [--json]",
                "Change a key's rotation settings",
                "  --rotate-every D|none  Rotate on this schedule: 90s, 5m, 12h, 30d, 1d12h\n"
                "  --rotate-after-uses N|none\n"
                "                         Rotate when the primary version has signed N times\n"
                "  --keep-versions N|none Destroy the oldest versions beyond the newest N\n"
                "                         ('none' clears a setting; what is not given stays)\n"
                "  --json                 Print the key as JSON\n",
        },
        {
                "key watch",
                kmsctl_monitor_main,
                "[--json] [--count N]",
                "Same as monitor",
                "  --json                 One JSON object per line\n"
                "  --count N              Exit after N signals\n",
        },
        {
                "sign",
                kmsctl_sign_main,
                "NAME --in FILE|- --out FILE|- [--hash H] [--padding P] [--prehash] [--json]",
                "Sign data with the primary version of a key",
                "  --in FILE|-            Data to sign ('-': standard input)\n"
                "  --out FILE|-           Where the signature goes (binary; mode 0644)\n"
                "  --hash H               sha256, sha384 or sha512; default: sha384 for ec-p384,\n"
                "                         sha256 otherwise\n"
                "  --padding P            RSA only: pkcs1 (default) or pss\n"
                "  --prehash              Hash locally and send only the digest (SignDigest), for\n"
                "                         inputs larger than kmsd's message limit\n"
                "  --json                 Print {\"name\",\"version\",\"signature_file\"} on stdout\n",
        },
        {
                "verify",
                kmsctl_verify_main,
                "NAME --in FILE|- --sig FILE [--version N] [--hash H] [--padding P] [--json]",
                "Verify a signature; exit status 0 if it verifies, 1 if not",
                "  --in FILE|-            Signed data ('-': standard input)\n"
                "  --sig FILE             The signature (binary)\n"
                "  --version N            Version to verify with; default: the primary version\n"
                "  --hash H               sha256, sha384 or sha512 (default as for sign)\n"
                "  --padding P            RSA only: pkcs1 (default) or pss\n"
                "  --json                 Print {\"name\",\"version\",\"valid\"} on stdout\n",
        },
        {
                "derive",
                kmsctl_derive_main,
                "NAME --peer FILE --out FILE [--salt HEX] [--info TEXT] [--length N] [--json]",
                "Derive a shared secret: ECDH with an EC key's primary version, then HKDF-SHA256",
                "  --peer FILE            The peer's public key (PEM or DER SubjectPublicKeyInfo),\n"
                "                         on the key's curve\n"
                "  --out FILE             Where the derived bytes go (mode 0600; never printed)\n"
                "  --salt HEX             HKDF salt as hex digits, up to 1024 bytes; default: none\n"
                "                         (HKDF then uses 32 zero bytes)\n"
                "  --info TEXT            HKDF info, up to 1024 bytes; default: empty\n"
                "  --length N             Bytes to derive, 1 to 1024; default: 32\n"
                "  --json                 Print {\"name\",\"version\",\"length\",\"secret_file\"} on stdout\n",
        },
        {
                "decrypt",
                kmsctl_decrypt_main,
                "NAME --in FILE|- --out FILE [--version N] [--json]",
                "Unwrap data encrypted to an RSA key with RSA-OAEP (SHA-256)",
                "  --in FILE|-            The ciphertext ('-': standard input), as made by\n"
                "                         openssl pkeyutl -encrypt -pkeyopt rsa_padding_mode:oaep\n"
                "                         -pkeyopt rsa_oaep_md:sha256\n"
                "  --out FILE             Where the plaintext goes (mode 0600; never printed)\n"
                "  --version N            Version to decrypt with; default: the primary version\n"
                "  --json                 Print {\"name\",\"version\",\"length\",\"plaintext_file\"} on stdout\n",
        },
        {
                "session open",
                kmsctl_session_open_main,
                "NAME --peer FILE --role initiator|responder [--max-messages N] [--ttl D]\n"
                "                         [--context TEXT | --context-hex HEX] [--json]",
                "Open an AES-256-GCM session with a peer; prints its id",
                "  --peer FILE            The peer's public key (PEM or DER SubjectPublicKeyInfo)\n"
                "  --role R               initiator or responder; the peer takes the other one\n"
                "  --max-messages N       Envelopes per direction, 1 to 65536; default: 100\n"
                "  --ttl D                Lifetime: 90s, 5m, 12h, 30d (at most 30d); default: 24h\n"
                "  --context TEXT         Agreed with the peer; must differ for every session between\n"
                "                         the same two keys (a conversation id and a counter);\n"
                "                         up to 256 bytes; default: empty\n"
                "  --context-hex HEX      The context as hex digits\n"
                "  --json                 Print the session as JSON instead of its id\n"
                "                         (the text form prints the id on stdout, the expiry on stderr)\n",
        },
        {
                "session seal",
                kmsctl_session_seal_main,
                "ID --in FILE|- --out FILE|- [--aad TEXT]",
                "Encrypt a message into an envelope for the session's peer",
                "  --in FILE|-            The plaintext ('-': standard input)\n"
                "  --out FILE|-           Where the envelope goes (binary; mode 0644)\n"
                "  --aad TEXT             Associated data, authenticated but not in the envelope;\n"
                "                         the peer must give the same to open it\n",
        },
        {
                "session open-envelope",
                kmsctl_session_open_envelope_main,
                "ID --in FILE|- --out FILE [--aad TEXT]",
                "Check and decrypt an envelope from the session's peer",
                "  --in FILE|-            The envelope ('-': standard input)\n"
                "  --out FILE             Where the plaintext goes (mode 0600; never printed)\n"
                "  --aad TEXT             The associated data the peer sealed with\n",
        },
        {
                "session close",
                kmsctl_session_close_main,
                "ID",
                "Close a session; kmsd wipes its keys",
                NULL,
        },
        {
                "session list",
                kmsctl_session_list_main,
                "[--json]",
                "List your open sessions: key, role, expiry, messages used, peer fingerprint",
                "  --json                 Print a JSON array of sessions\n",
        },
        {
                "status",
                kmsctl_status_main,
                "[--json]",
                "Show kmsd's version, token, key count, uptime and load",
                "  --json                 Print the status as JSON\n",
        },
        {
                "policy show",
                kmsctl_policy_show_main,
                "[--json]",
                "Print the access rules in force, each with the file and line it came from (admins)",
                "  --json                 Print the settings and rules as JSON\n",
        },
        {
                "policy check",
                kmsctl_policy_check_main,
                "--user USER --op OP [--key NAME] [--json]",
                "Ask kmsd whether USER may do OP on key NAME, and which rule decides (admins)",
                "  --user USER            A user name, a uid, or uid:N\n"
                "  --op OP                create, read, sign, verify, derive, decrypt, session, rotate,\n"
                "                         revoke, disable, destroy, audit, admin, status\n"
                "  --key NAME             The key (omit for operations not about one key)\n"
                "  --json                 Print {\"allowed\",\"reason\",...}; exit status 3 when denied\n",
        },
        {
                "policy reload",
                kmsctl_policy_reload_main,
                "",
                "Re-read the policy files; a broken file is refused and the old policy stays (admins)",
                NULL,
        },
        {
                "audit export",
                kmsctl_audit_export_main,
                "--out FILE|- [--since TIME] [--until TIME] [--key NAME] [--format jsonl|csv]",
                "Export the audit log up to a checkpoint made for it (admins, or the audit operation)",
                "  --out FILE|-           Where the export goes (mode 0600; written whole or not at all)\n"
                "  --since TIME           Start at the first record at or after TIME\n"
                "  --until TIME           Records after TIME become stubs (seq and hash only)\n"
                "  --key NAME             Records about other keys become stubs\n"
                "  --format F             jsonl (default; what audit verify reads) or csv\n"
                "                         TIME: 2026-11-26T01:02:03Z (optionally .mmm), 2026-11-26 (UTC)\n"
                "                         or Unix seconds\n",
        },
        {
                "audit verify",
                kmsctl_audit_verify_main,
                "FILE|- [--pubkey PEM]... [--first-seq N] [--last-seq N]",
                "Check an export offline: hash chain, checkpoint signatures; exit 0 intact, 1 broken",
                "  --pubkey PEM           An audit public key (kmsctl audit pubkey --all); a file may\n"
                "                         hold several. Without it only the chain is checked\n"
                "  --first-seq N          The export must start at seq N (1: the whole log)\n"
                "  --last-seq N           The export must end with a checkpoint at seq N or later\n"
                "                         (the seq audit export printed)\n",
        },
        {
                "audit pubkey",
                kmsctl_audit_pubkey_main,
                "[--all] [--out FILE]",
                "Print the audit public key (PEM) that verifies the checkpoints",
                "  --all                  Every audit key kmsd has had, oldest first\n"
                "  --out FILE             Write to FILE (mode 0644) instead of standard output\n",
        },
        {
                "audit tail",
                kmsctl_audit_tail_main,
                "[-f] [-n N]",
                "Print the newest audit records, one line each; -f follows new ones",
                "  -f, --follow           Ask kmsd for new records every second until interrupted\n"
                "  -n, --lines N          How many records to print first, 0 to 5000; default: 10\n",
        },
        {
                "monitor",
                kmsctl_monitor_main,
                "[--json] [--count N]",
                "Print kmsd's signals (key created, rotated, revoked, destroyed) as they arrive",
                "  --json                 One JSON object per line\n"
                "  --count N              Exit after N signals\n",
        },
};

static size_t name_words(const char *name)
{
        return strchr(name, ' ') ? 2 : 1;
}

/* Does argv start with the words of name? */
static bool command_matches(const char *name, int argc, char **argv)
{
        const char *space = strchr(name, ' ');

        if (!space)
                return argc >= 1 && strcmp(argv[0], name) == 0;
        return argc >= 2 && strlen(argv[0]) == (size_t)(space - name) &&
               strncmp(argv[0], name, (size_t)(space - name)) == 0 && strcmp(argv[1], space + 1) == 0;
}

/* Is word the first word of a two-word command ("key")? */
static bool is_group(const char *word)
{
        for (size_t i = 0; i < ELEMENTSOF(commands); i++) {
                const char *space = strchr(commands[i].name, ' ');

                if (space && strlen(word) == (size_t)(space - commands[i].name) &&
                    strncmp(word, commands[i].name, (size_t)(space - commands[i].name)) == 0)
                        return true;
        }
        return false;
}

static const struct kmsctl_command *find_command(int argc, char **argv)
{
        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                if (command_matches(commands[i].name, argc, argv))
                        return &commands[i];
        return NULL;
}

static void usage(FILE *f)
{
        int width = 0;

        fprintf(f, "Usage: kmsctl [--bus system|session] [--bus-address ADDRESS] [--timeout SECONDS]\n"
                   "              COMMAND [ARGUMENTS...]\n"
                   "       kmsctl help [COMMAND]\n"
                   "       kmsctl --version\n\n"
                   "Manage the keys kmsd keeps in its token; sign, derive, unwrap and seal with them.\n\n"
                   "Commands:\n");
        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                if ((int)strlen(commands[i].name) > width)
                        width = (int)strlen(commands[i].name);
        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                fprintf(f, "  %-*s %s\n", width, commands[i].name, commands[i].help);
        fprintf(f,
                "\nRun 'kmsctl COMMAND --help' for a command's arguments and options.\n\n"
                "Global options (before the command, or anywhere after it):\n"
                "  --bus system|session   Talk to kmsd on the system (default) or session bus\n"
                "  --bus-address ADDRESS  Talk to kmsd on the bus at this D-Bus address\n"
                "  --timeout SECONDS      Wait this long for each answer (default: %u)\n"
                "  --help                 Show this help\n"
                "  --version              Show kmsctl's version\n\n"
                "Environment:\n"
                "  %-22s Bus address used when neither --bus nor --bus-address\n"
                "                         is given (scripts/run prints it)\n\n"
                "Exit status:\n"
                "  %d  success (for verify: the signature verifies)\n"
                "  %d  failure (for verify: the signature does not verify)\n"
                "  %d  usage error: bad option, argument or value\n"
                "  %d  access denied (AccessDenied)\n"
                "  %d  key, version or session not found (NotFound, SessionNotFound)\n",
                KMSCTL_DEFAULT_TIMEOUT_SEC, KMS_ENV_BUS_ADDRESS, KMS_EXIT_OK, KMS_EXIT_FAILURE, KMS_EXIT_USAGE,
                KMS_EXIT_DENIED, KMS_EXIT_NOT_FOUND);
}

static int unknown_command(int argc, char **argv)
{
        if (is_group(argv[0])) {
                if (argc < 2)
                        fprintf(stderr, "kmsctl: '%s' needs a subcommand:", argv[0]);
                else
                        fprintf(stderr, "kmsctl: unknown command '%s %s'; '%s' has:", argv[0], argv[1], argv[0]);
                for (size_t i = 0, n = 0; i < ELEMENTSOF(commands); i++)
                        if (name_words(commands[i].name) == 2 &&
                            strncmp(commands[i].name, argv[0], strlen(argv[0])) == 0 &&
                            commands[i].name[strlen(argv[0])] == ' ')
                                fprintf(stderr, "%s %s", n++ ? "," : "", commands[i].name + strlen(argv[0]) + 1);
                fputc('\n', stderr);
        } else
                fprintf(stderr, "kmsctl: unknown command '%s'\n", argv[0]);
        fprintf(stderr, "Try 'kmsctl --help'.\n");
        return KMS_EXIT_USAGE;
}

/* kmsctl help [COMMAND]: the general usage, or a command's. */
static int help(int argc, char **argv)
{
        const struct kmsctl_command *cmd;

        if (argc == 0) {
                usage(stdout);
                return KMS_EXIT_OK;
        }
        cmd = find_command(argc, argv);
        if (!cmd)
                return unknown_command(argc, argv);
        if ((size_t)argc > name_words(cmd->name)) {
                fprintf(stderr, "kmsctl: unexpected argument '%s'\nTry 'kmsctl --help'.\n",
                        argv[name_words(cmd->name)]);
                return KMS_EXIT_USAGE;
        }
        kmsctl_command_help(cmd);
        return KMS_EXIT_OK;
}

static int run(int argc, char **argv)
{
        static const struct option options[] = {
                KMSCTL_GLOBAL_OPTIONS,
                {"version", no_argument, NULL, KMSCTL_OPT_VERSION},
                {},
        };
        const struct kmsctl_command *cmd;
        size_t words;
        int c;

        opterr = 0;
        /* '+': stop at the command; what follows belongs to it. */
        while ((c = kmsctl_getopt(argc, argv, "+:h", options)) != -1) {
                switch (c) {
                case 'h': usage(stdout); return KMS_EXIT_OK;
                case KMSCTL_OPT_VERSION: printf("kmsctl %s\n", KMS_VERSION); return KMS_EXIT_OK;
                case KMSCTL_OPT_BUS:
                case KMSCTL_OPT_BUS_ADDRESS:
                case KMSCTL_OPT_TIMEOUT:
                        if (kmsctl_bus_option(c, optarg) < 0)
                                goto usage_error;
                        break;
                default: /* '?', already reported */ goto usage_error;
                }
        }
        argc -= optind;
        argv += optind;
        if (argc == 0) {
                usage(stderr);
                return KMS_EXIT_USAGE;
        }
        if (strcmp(argv[0], "help") == 0)
                return help(argc - 1, argv + 1);

        cmd = find_command(argc, argv);
        if (!cmd)
                return unknown_command(argc, argv);
        /* The command sees its last word as argv[0], as getopt expects. */
        words = name_words(cmd->name);
        return cmd->run(cmd, argc - (int)(words - 1), argv + (words - 1));

usage_error:
        fprintf(stderr, "Try 'kmsctl --help'.\n");
        return KMS_EXIT_USAGE;
}

/* A standard descriptor that was closed (kmsctl ... >&-) would be taken by
 * the next open(): the bus socket, an input file, and the records meant for
 * standard output would go there. Hold 0, 1 and 2 with /dev/null, opened
 * the other way round, so that using one still fails as on a closed
 * descriptor (EBADF): kmsctl reports output it could not write. Returns 0
 * or a negative errno. */
static int hold_std_fds(void)
{
        for (int fd = STDIN_FILENO; fd <= STDERR_FILENO; fd++) {
                int n;

                if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
                        continue;
                n = open("/dev/null", (fd == STDIN_FILENO ? O_WRONLY : O_RDONLY) | O_CLOEXEC | O_NOCTTY);
                if (n < 0)
                        return -errno;
                if (n != fd) { /* cannot happen: open() takes the lowest free descriptor */
                        close(n);
                        return -EBADF;
                }
        }
        return 0;
}

int main(int argc, char **argv)
{
        int r;

        if (hold_std_fds() < 0)
                return KMS_EXIT_FAILURE;
        r = run(argc, argv);

        kmsctl_bus_close();
        /* Output that did not reach stdout (a full disk, a closed pipe) is a
         * failure, not a success with a truncated document. */
        if (fflush(stdout) != 0 || ferror(stdout)) {
                fprintf(stderr, "kmsctl: cannot write to standard output: %s\n", strerror(errno));
                if (r == KMS_EXIT_OK)
                        r = KMS_EXIT_FAILURE;
        }
        return r;
}
