/* kmsctl audit tail [-f] [-n N]: the newest N audit records, one line
 * each; with -f, ask kmsd every second for records after the last one
 * shown, until SIGINT or SIGTERM (exit 0).
 *
 * Each ExportAudit call is itself a request kmsd records, so following
 * would show its own polls once a second: the records of ExportAudit
 * calls made by this very process (its pid and uid) are not printed. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "bus.h"
#include "io.h"
#include "kmsctl.h"

#define TAIL_DEFAULT_LINES 10u
#define TAIL_POLL_MS 1000u

struct tail_args {
        bool follow;
        uint64_t lines;
};

static volatile sig_atomic_t tail_stop;

static void on_signal(int sig)
{
        (void)sig;
        tail_stop = 1;
}

/* SIGINT and SIGTERM set tail_stop; no SA_RESTART, so the sleep between
 * polls ends at once. */
static void signals_install(void)
{
        struct sigaction sa = {.sa_handler = on_signal};

        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
}

static void sleep_ms(unsigned ms)
{
        struct timespec ts = {.tv_sec = ms / 1000u, .tv_nsec = (long)(ms % 1000u) * 1000000L};

        if (!tail_stop)
                nanosleep(&ts, NULL); /* EINTR: a signal, seen by the caller */
}

static bool own_poll(const struct kmsctl_audit_record *rec)
{
        return !rec->redacted && strcmp(rec->operation, "ExportAudit") == 0 && rec->pid == (uint32_t)getpid() &&
               rec->uid == (uint32_t)getuid();
}

static void print_record(const struct kmsctl_audit_record *rec)
{
        char kind[KMSCTL_PRINTABLE_MAX], op[KMSCTL_PRINTABLE_MAX], key[KMSCTL_PRINTABLE_MAX],
                result[KMSCTL_PRINTABLE_MAX], details[KMSCTL_PRINTABLE_MAX], t[KMSCTL_PRINTABLE_MAX];

        if (rec->redacted) {
                printf("%-24s %8" PRIu64 " (redacted)\n", "-", rec->seq);
                return;
        }
        printf("%s %8" PRIu64 " %-16s uid=%-6" PRIu32 " %-16s %s %s %s\n", kmsctl_printable(rec->time, t, sizeof(t)),
               rec->seq, kmsctl_printable(rec->kind, kind, sizeof(kind)), rec->uid,
               kmsctl_printable(rec->operation, op, sizeof(op)),
               rec->key[0] ? kmsctl_printable(rec->key, key, sizeof(key)) : "-",
               kmsctl_printable(rec->result, result, sizeof(result)),
               kmsctl_printable(rec->details, details, sizeof(details)));
}

/* One ExportAudit call: print its records (show) and move *last_seq to
 * the newest seen. Returns an exit status; *ret_next_seq as kmsd sent. */
static int fetch(const struct kmsctl_audit_query *q, bool show, uint64_t *last_seq, uint64_t *ret_next_seq)
{
        _cleanup_(dbus_message_unrefp) DBusMessage *reply = NULL;
        struct kmsctl_audit_record rec;
        DBusMessageIter records;
        int r;

        r = kmsctl_audit_export_call(q, &reply, &records, ret_next_seq);
        if (r != KMS_EXIT_OK)
                return r;
        for (; dbus_message_iter_get_arg_type(&records) == DBUS_TYPE_ARRAY; dbus_message_iter_next(&records)) {
                if (kmsctl_audit_record_read(&records, &rec) < 0)
                        return KMS_EXIT_FAILURE;
                if (rec.seq <= *last_seq)
                        continue; /* seen already */
                *last_seq = rec.seq;
                if (show && !own_poll(&rec))
                        print_record(&rec);
        }
        fflush(stdout);
        return KMS_EXIT_OK;
}

static int parse_args(const struct kmsctl_command *cmd, int argc, char **argv, struct tail_args *a)
{
        /* kmsctl_parse_args() takes long options only; tail has -f and -n
         * as tail(1) does. */
        static const struct option options[] = {
                {"follow", no_argument, NULL, 'f'},
                {"lines", required_argument, NULL, 'n'},
                KMSCTL_GLOBAL_OPTIONS,
                {},
        };
        int c;

        optind = 0;
        opterr = 0;
        while ((c = kmsctl_getopt(argc, argv, ":hfn:", options)) != -1) {
                switch (c) {
                case 'h': kmsctl_command_help(cmd); return KMS_EXIT_OK;
                case 'f': a->follow = true; break;
                case 'n':
                        if (kmsctl_parse_number("-n", optarg, 0, KMSCTL_AUDIT_PAGE_MAX, &a->lines) < 0)
                                goto usage;
                        break;
                case KMSCTL_OPT_BUS:
                case KMSCTL_OPT_BUS_ADDRESS:
                case KMSCTL_OPT_TIMEOUT:
                        if (kmsctl_bus_option(c, optarg) < 0)
                                goto usage;
                        break;
                default: goto usage;
                }
        }
        if (optind < argc)
                return kmsctl_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
        return KMSCTL_CONTINUE;
usage:
        fprintf(stderr, "Try 'kmsctl %s --help'.\n", cmd->name);
        return KMS_EXIT_USAGE;
}

int kmsctl_audit_tail_main(const struct kmsctl_command *cmd, int argc, char **argv)
{
        struct tail_args a = {.lines = TAIL_DEFAULT_LINES};
        struct kmsctl_audit_query q = {0};
        uint64_t last_seq = 0, next = 0;
        int r;

        r = parse_args(cmd, argc, argv, &a);
        if (r != KMSCTL_CONTINUE)
                return r;
        if (a.follow)
                signals_install();

        /* -n 0 still asks for the newest record, to know where to go on. */
        q.last = a.lines > 0 ? (uint32_t)a.lines : 1;
        q.limit = q.last;
        r = fetch(&q, a.lines > 0, &last_seq, &next);
        if (r != KMS_EXIT_OK || !a.follow)
                return r;

        while (!tail_stop) {
                q = (struct kmsctl_audit_query){.from_seq = last_seq + 1, .limit = KMSCTL_AUDIT_PAGE};
                r = fetch(&q, true, &last_seq, &next);
                if (r != KMS_EXIT_OK)
                        return tail_stop ? KMS_EXIT_OK : r;
                if (next == 0)
                        sleep_ms(TAIL_POLL_MS);
        }
        return KMS_EXIT_OK;
}
