/* kmsctl audit export [--since TIME] [--until TIME] [--key NAME]
 * [--format jsonl|csv] --out FILE: AuditCheckpoint, then ExportAudit page
 * by page up to that checkpoint, written as JSON Lines (docs/audit.md) or
 * CSV.
 *
 * A file is written whole or not at all: the records go to a temporary
 * file (mode 0600) beside it, which replaces FILE only after the last
 * page arrived and ended with the checkpoint. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit.h"
#include "bus.h"
#include "kmsctl.h"

enum export_format {
        FORMAT_JSONL,
        FORMAT_CSV,
};

struct export_args {
        bool has_since, has_until;
        int64_t since_ms, until_ms;
        const char *key;
        enum export_format format;
        const char *out;
};

static int handle_option(int opt, const char *arg, void *userdata)
{
        struct export_args *a = userdata;

        switch (opt) {
        case 's': a->has_since = true; return kmsctl_audit_parse_time("--since", arg, &a->since_ms);
        case 'u': a->has_until = true; return kmsctl_audit_parse_time("--until", arg, &a->until_ms);
        case 'k': a->key = arg; return kmsctl_check_key_name(arg);
        case 'f':
                if (strcmp(arg, "jsonl") == 0)
                        a->format = FORMAT_JSONL;
                else if (strcmp(arg, "csv") == 0)
                        a->format = FORMAT_CSV;
                else {
                        fprintf(stderr, "kmsctl: --format takes jsonl or csv, not '%s'\n", arg);
                        return -EINVAL;
                }
                return 0;
        case 'o': a->out = arg; return 0;
        default: return -EINVAL;
        }
}

/* Where the export goes: standard output, a file written in place (a
 * FIFO, /dev/stdout), or a temporary file renamed to path at the end. */
struct output {
        FILE *f;
        const char *path;
        char *tmp; /* the temporary file, or NULL */
};

static int output_open(const char *path, struct output *ret)
{
        struct stat st;
        size_t n;
        int fd;

        *ret = (struct output){.path = path};
        if (strcmp(path, "-") == 0) {
                ret->f = stdout;
                return 0;
        }
        if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
                fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
                if (fd < 0) {
                        int r = -errno; /* before fprintf() can change errno */

                        fprintf(stderr, "kmsctl: cannot open '%s': %s\n", path, strerror(-r));
                        return r;
                }
        } else {
                n = strlen(path) + sizeof(".tmp.XXXXXX");
                ret->tmp = malloc(n);
                if (!ret->tmp) {
                        fprintf(stderr, "kmsctl: out of memory\n");
                        return -ENOMEM;
                }
                snprintf(ret->tmp, n, "%s.tmp.XXXXXX", path);
                fd = mkostemp(ret->tmp, O_CLOEXEC); /* mode 0600 */
                if (fd < 0) {
                        int r = -errno;

                        fprintf(stderr, "kmsctl: cannot create a temporary file beside '%s': %s\n", path,
                                strerror(errno));
                        free(ret->tmp);
                        ret->tmp = NULL;
                        return r;
                }
        }
        ret->f = fdopen(fd, "w");
        if (!ret->f) {
                fprintf(stderr, "kmsctl: out of memory\n");
                close(fd);
                if (ret->tmp)
                        unlink(ret->tmp);
                free(ret->tmp);
                ret->tmp = NULL;
                return -ENOMEM;
        }
        return 0;
}

/* Finish the output: on success flush, sync and rename into place;
 * otherwise remove the temporary file. Returns 0 or a negative errno
 * (printed). */
static int output_close(struct output *o, bool success)
{
        int r = 0;

        if (!o->f)
                return 0;
        if (o->f == stdout) {
                if (fflush(stdout) != 0 || ferror(stdout)) {
                        fprintf(stderr, "kmsctl: cannot write to standard output: %s\n", strerror(errno));
                        r = -EIO;
                }
                o->f = NULL;
                return success ? r : 0;
        }
        if (success && (fflush(o->f) != 0 || ferror(o->f) || fsync(fileno(o->f)) < 0))
                r = errno ? -errno : -EIO;
        if (fclose(o->f) != 0 && success && r == 0)
                r = -errno;
        o->f = NULL;
        if (success && r < 0)
                fprintf(stderr, "kmsctl: cannot write '%s': %s\n", o->tmp ? o->tmp : o->path, strerror(-r));
        if (success && r == 0 && o->tmp && rename(o->tmp, o->path) < 0) {
                r = -errno;
                fprintf(stderr, "kmsctl: cannot rename '%s' to '%s': %s\n", o->tmp, o->path, strerror(errno));
        }
        if (o->tmp && (!success || r < 0))
                unlink(o->tmp);
        free(o->tmp);
        o->tmp = NULL;
        return success ? r : 0;
}

/* AuditCheckpoint: the seq of the checkpoint the export will end with. */
static int checkpoint(uint64_t *ret_seq)
{
        _cleanup_(dbus_message_unrefp) DBusMessage *m = NULL, *reply = NULL;
        DBusMessageIter it;
        int r;

        m = kmsctl_bus_new_call("AuditCheckpoint", &it);
        if (!m)
                return kmsctl_log_oom();
        r = kmsctl_bus_call(m, "t", kmsctl_audit_hints, &reply);
        if (r != KMS_EXIT_OK)
                return r;
        dbus_message_iter_init(reply, &it);
        dbus_message_iter_get_basic(&it, ret_seq);
        return KMS_EXIT_OK;
}

struct export_state {
        uint64_t checkpoint;
        uint64_t records, stubs;
        uint64_t last_seq; /* 0: nothing yet */
        bool last_is_checkpoint;
};

/* Write the records of one page. Returns an exit status. */
static int write_page(DBusMessageIter *records, enum export_format format, FILE *f, struct export_state *s)
{
        struct kmsctl_audit_record rec;

        for (; dbus_message_iter_get_arg_type(records) == DBUS_TYPE_ARRAY; dbus_message_iter_next(records)) {
                if (kmsctl_audit_record_read(records, &rec) < 0)
                        return KMS_EXIT_FAILURE;
                /* kmsd sends the chain in order and without gaps; anything
                 * else would be an export that cannot verify. */
                if (s->last_seq != 0 && rec.seq != s->last_seq + 1) {
                        fprintf(stderr, "kmsctl: kmsd sent audit record seq %" PRIu64 " after seq %" PRIu64 "\n",
                                rec.seq, s->last_seq);
                        return KMS_EXIT_FAILURE;
                }
                if (rec.seq > s->checkpoint) {
                        fprintf(stderr, "kmsctl: kmsd sent audit record seq %" PRIu64 ", past to_seq %" PRIu64 "\n",
                                rec.seq, s->checkpoint);
                        return KMS_EXIT_FAILURE;
                }
                if (format == FORMAT_CSV)
                        kmsctl_audit_write_csv(f, &rec);
                else
                        kmsctl_audit_write_jsonl(f, &rec);
                s->records++;
                s->stubs += rec.redacted;
                s->last_seq = rec.seq;
                s->last_is_checkpoint = kmsctl_audit_is_checkpoint(&rec) && rec.signature;
        }
        return KMS_EXIT_OK;
}

static int export_pages(const struct export_args *a, FILE *f, struct export_state *s)
{
        struct kmsctl_audit_query q = {
                .to_seq = s->checkpoint,
                .has_since = a->has_since,
                .since_ms = a->since_ms,
                .has_until = a->has_until,
                .until_ms = a->until_ms,
                .key = a->key,
                .limit = KMSCTL_AUDIT_PAGE,
        };
        int r;

        if (a->format == FORMAT_CSV)
                kmsctl_audit_write_csv_header(f);
        for (;;) {
                _cleanup_(dbus_message_unrefp) DBusMessage *reply = NULL;
                DBusMessageIter records;
                uint64_t next;

                r = kmsctl_audit_export_call(&q, &reply, &records, &next);
                if (r != KMS_EXIT_OK)
                        return r;
                r = write_page(&records, a->format, f, s);
                if (r != KMS_EXIT_OK)
                        return r;
                if (next == 0)
                        break;
                /* Each page must move on, or this would never end. */
                if (s->last_seq == 0 || next != s->last_seq + 1) {
                        fprintf(stderr,
                                "kmsctl: kmsd answered next_seq %" PRIu64 " after a page ending at seq %" PRIu64 "\n",
                                next, s->last_seq);
                        return KMS_EXIT_FAILURE;
                }
                /* since picks the first record; from here on the seq does. */
                q.from_seq = next;
                q.has_since = false;
        }
        if (s->last_seq != s->checkpoint || !s->last_is_checkpoint) {
                fprintf(stderr,
                        "kmsctl: the export from kmsd does not end with the signed checkpoint seq %" PRIu64 "\n",
                        s->checkpoint);
                return KMS_EXIT_FAILURE;
        }
        return KMS_EXIT_OK;
}

int kmsctl_audit_export_main(const struct kmsctl_command *cmd, int argc, char **argv)
{
        static const struct option options[] = {
                {"since", required_argument, NULL, 's'}, {"until", required_argument, NULL, 'u'},
                {"key", required_argument, NULL, 'k'},   {"format", required_argument, NULL, 'f'},
                {"out", required_argument, NULL, 'o'},   {},
        };
        struct export_args a = {.format = FORMAT_JSONL};
        struct export_state s = {0};
        struct output out;
        int r;

        r = kmsctl_parse_args(cmd, argc, argv, options, handle_option, &a, 0, NULL);
        if (r != KMSCTL_CONTINUE)
                return r;
        if (!a.out)
                return kmsctl_usage_error(cmd, "--out FILE is required ('-' for standard output)");
        if (a.has_since && a.has_until && a.since_ms > a.until_ms)
                return kmsctl_usage_error(cmd, "--since is after --until");

        r = checkpoint(&s.checkpoint);
        if (r != KMS_EXIT_OK)
                return r;
        if (output_open(a.out, &out) < 0)
                return KMS_EXIT_FAILURE;
        r = export_pages(&a, out.f, &s);
        if (output_close(&out, r == KMS_EXIT_OK) < 0)
                r = KMS_EXIT_FAILURE;
        if (r != KMS_EXIT_OK)
                return r;
        fprintf(stderr,
                "exported %" PRIu64 " records (%" PRIu64 " stubs) to %s, ending with checkpoint seq %" PRIu64 "\n",
                s.records, s.stubs, strcmp(a.out, "-") == 0 ? "standard output" : a.out, s.checkpoint);
        return KMS_EXIT_OK;
}
