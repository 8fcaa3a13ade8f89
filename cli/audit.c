/* The audit record for the kmsctl audit commands; see audit.h and
 * docs/audit.md, the format's source of truth. */
#include "audit.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "bus.h"
#include "json.h"
#include "kms-bus.h"
#include "kms-util.h"

/* kms-bus.h names this error too once kmsd's side of the audit log is
 * in; spelled out here so that kmsctl builds either way. */
#ifndef KMS_ERROR_AUDIT_FAILURE
#define KMS_ERROR_AUDIT_FAILURE KMS_ERROR_PREFIX "AuditFailure"
#endif

const char *const kmsctl_audit_hints[] = {
        KMS_ERROR_ACCESS_DENIED,
        "the audit commands need the 'audit' operation: an admin, or a policy rule granting audit.",
        KMS_ERROR_AUDIT_FAILURE,
        "kmsd cannot write audit records (disk full? read-only database?) and refuses requests until it "
        "can; its log says why.",
        NULL,
};

int kmsctl_audit_record_read(DBusMessageIter *it, struct kmsctl_audit_record *ret)
{
        struct kmsctl_audit_record v = {
                .body = "",
                .time = "",
                .kind = "",
                .exe = "",
                .operation = "",
                .key = "",
                .result = "",
                .details = "",
                .prev = "",
        };
        dbus_bool_t redacted = false;
        struct kmsctl_dict_field fields[] = {
                {"seq", "t", &v.seq, true},
                {"redacted", "b", &redacted, false},
                {"body", "s", &v.body, false},
                {"time", "s", &v.time, false},
                {"kind", "s", &v.kind, false},
                {"uid", "u", &v.uid, false},
                {"pid", "u", &v.pid, false},
                {"exe", "s", &v.exe, false},
                {"operation", "s", &v.operation, false},
                {"key", "s", &v.key, false},
                {"version", "u", &v.version, false},
                {"result", "s", &v.result, false},
                {"details", "s", &v.details, false},
                {"prev", "s", &v.prev, false},
                {"signature", "s", &v.signature, false},
        };
        static const char *const record_keys[] = {"time", "kind",    "uid",    "pid",     "exe", "operation",
                                                  "key",  "version", "result", "details", "prev"};
        int r;

        r = kmsctl_dict_read(it, fields, ELEMENTSOF(fields));
        if (r < 0)
                return r;
        v.redacted = redacted;
        if (v.redacted) {
                /* A stub: prev and body, so that the records around it
                 * stay bound. */
                const char *missing = !fields[2].found ? "body" : !fields[13].found ? "prev" : NULL;

                if (missing) {
                        fprintf(stderr, "kmsctl: kmsd sent a redacted record (seq %" PRIu64 ") without '%s'\n", v.seq,
                                missing);
                        return -EBADMSG;
                }
                v.signature = NULL;
        } else {
                for (size_t i = 0; i < ELEMENTSOF(record_keys); i++)
                        for (size_t k = 0; k < ELEMENTSOF(fields); k++)
                                if (strcmp(fields[k].key, record_keys[i]) == 0 && !fields[k].found) {
                                        fprintf(stderr, "kmsctl: kmsd sent audit record seq %" PRIu64 " without '%s'\n",
                                                v.seq, record_keys[i]);
                                        return -EBADMSG;
                                }
        }
        *ret = v;
        return 0;
}

bool kmsctl_audit_is_checkpoint(const struct kmsctl_audit_record *rec)
{
        return !rec->redacted && strcmp(rec->kind, "checkpoint") == 0;
}

/* Append s to the canonical line with docs/audit.md's escaping of the
 * text fields. */
static void put_text(FILE *f, const char *s)
{
        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
                switch (*p) {
                case '\\': fputs("\\\\", f); break;
                case '\t': fputs("\\t", f); break;
                case '\n': fputs("\\n", f); break;
                case '\r': fputs("\\r", f); break;
                default:
                        if (*p < 0x20 || *p == 0x7f)
                                fprintf(f, "\\x%02x", *p);
                        else
                                fputc(*p, f);
                }
        }
}

int kmsctl_audit_canonical(const struct kmsctl_audit_record *rec, char **ret, size_t *ret_len)
{
        char *buf = NULL;
        size_t len = 0;
        FILE *f;

        f = open_memstream(&buf, &len);
        if (!f)
                return -ENOMEM;
        fprintf(f, KMSCTL_AUDIT_VERSION_TAG "\t%" PRIu64 "\t%s\t", rec->seq, rec->time);
        put_text(f, rec->kind);
        fprintf(f, "\t%" PRIu32 "\t%" PRIu32 "\t", rec->uid, rec->pid);
        put_text(f, rec->exe);
        fputc('\t', f);
        put_text(f, rec->operation);
        fputc('\t', f);
        put_text(f, rec->key);
        fprintf(f, "\t%" PRIu32 "\t", rec->version);
        put_text(f, rec->result);
        fputc('\t', f);
        put_text(f, rec->details);
        if (ferror(f)) {
                fclose(f);
                free(buf);
                return -ENOMEM;
        }
        if (fclose(f) != 0) {
                free(buf);
                return -ENOMEM;
        }
        *ret = buf;
        *ret_len = len;
        return 0;
}

int kmsctl_audit_sha256_hex(const void *data, size_t len, char ret[static KMSCTL_AUDIT_HASH_HEX + 1])
{
        static const char digits[] = "0123456789abcdef";
        unsigned char md[32];
        unsigned int n = 0;

        if (EVP_Digest(data, len, md, &n, EVP_sha256(), NULL) != 1 || n != sizeof(md))
                return -ENOMEM;
        for (size_t i = 0; i < sizeof(md); i++) {
                ret[2 * i] = digits[md[i] >> 4];
                ret[2 * i + 1] = digits[md[i] & 0xf];
        }
        ret[KMSCTL_AUDIT_HASH_HEX] = '\0';
        return 0;
}

int kmsctl_audit_body_hex(const struct kmsctl_audit_record *rec, char ret[static KMSCTL_AUDIT_HASH_HEX + 1])
{
        _cleanup_(freep) char *canonical = NULL;
        size_t len = 0;

        if (rec->redacted) {
                snprintf(ret, KMSCTL_AUDIT_HASH_HEX + 1, "%s", rec->body);
                return 0;
        }
        if (kmsctl_audit_canonical(rec, &canonical, &len) < 0)
                return -ENOMEM;
        return kmsctl_audit_sha256_hex(canonical, len, ret);
}

static int hex_digit(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* Exactly 64 hex digits at s into 32 bytes. */
static int hex32(const char *s, uint8_t ret[static 32])
{
        if (strlen(s) != KMSCTL_AUDIT_HASH_HEX)
                return -EINVAL;
        for (size_t i = 0; i < 32; i++) {
                int hi = hex_digit(s[2 * i]), lo = hex_digit(s[2 * i + 1]);

                if (hi < 0 || lo < 0)
                        return -EINVAL;
                ret[i] = (uint8_t)(hi << 4 | lo);
        }
        return 0;
}

int kmsctl_audit_link_message(const char *prev_hex, const char *body_hex, uint8_t ret[static 64])
{
        if (hex32(prev_hex, ret) < 0 || hex32(body_hex, ret + 32) < 0)
                return -EINVAL;
        return 0;
}

void kmsctl_audit_write_jsonl(FILE *f, const struct kmsctl_audit_record *rec)
{
        struct kmsctl_json j;

        kmsctl_json_init(&j, f);
        kmsctl_json_begin_object(&j);
        kmsctl_json_field_uint(&j, "seq", rec->seq);
        if (rec->redacted) {
                kmsctl_json_field_bool(&j, "redacted", true);
                kmsctl_json_field_string(&j, "prev", rec->prev);
                kmsctl_json_field_string(&j, "body", rec->body);
                kmsctl_json_end_object(&j);
                return;
        }
        kmsctl_json_field_string(&j, "time", rec->time);
        kmsctl_json_field_string(&j, "kind", rec->kind);
        kmsctl_json_field_uint(&j, "uid", rec->uid);
        kmsctl_json_field_uint(&j, "pid", rec->pid);
        kmsctl_json_field_string(&j, "exe", rec->exe);
        kmsctl_json_field_string(&j, "operation", rec->operation);
        kmsctl_json_field_string(&j, "key", rec->key);
        kmsctl_json_field_uint(&j, "version", rec->version);
        kmsctl_json_field_string(&j, "result", rec->result);
        kmsctl_json_field_string(&j, "details", rec->details);
        kmsctl_json_field_string(&j, "prev", rec->prev);
        if (rec->signature)
                kmsctl_json_field_string(&j, "signature", rec->signature);
        kmsctl_json_end_object(&j); /* ends the line */
}

/* The columns: docs/audit.md's fields, then the two that only a stub
 * fills (a stub also fills seq and prev). */
void kmsctl_audit_write_csv_header(FILE *f)
{
        fputs("seq,time,kind,uid,pid,exe,operation,key,version,result,details,prev,signature,redacted,body\n", f);
}

/* An RFC 4180 field. Text that a spreadsheet would take for a formula
 * (starting with = + - @, a TAB or a CR) gets a leading ' so that opening
 * an export never runs what a caller put into a key name or a note. */
static void csv_text(FILE *f, const char *s)
{
        bool quote = strpbrk(s, ",\"\r\n") != NULL;
        bool defuse = s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@' || s[0] == '\t' || s[0] == '\r';

        if (quote)
                fputc('"', f);
        if (defuse)
                fputc('\'', f);
        for (; *s; s++) {
                if (*s == '"')
                        fputc('"', f);
                fputc(*s, f);
        }
        if (quote)
                fputc('"', f);
}

void kmsctl_audit_write_csv(FILE *f, const struct kmsctl_audit_record *rec)
{
        if (rec->redacted) {
                fprintf(f, "%" PRIu64 ",,,,,,,,,,,", rec->seq);
                csv_text(f, rec->prev);
                fputs(",,true,", f);
                csv_text(f, rec->body);
                fputc('\n', f);
                return;
        }
        fprintf(f, "%" PRIu64 ",", rec->seq);
        csv_text(f, rec->time);
        fputc(',', f);
        csv_text(f, rec->kind);
        fprintf(f, ",%" PRIu32 ",%" PRIu32 ",", rec->uid, rec->pid);
        csv_text(f, rec->exe);
        fputc(',', f);
        csv_text(f, rec->operation);
        fputc(',', f);
        csv_text(f, rec->key);
        fprintf(f, ",%" PRIu32 ",", rec->version);
        csv_text(f, rec->result);
        fputc(',', f);
        csv_text(f, rec->details);
        fputc(',', f);
        csv_text(f, rec->prev);
        fputc(',', f);
        csv_text(f, rec->signature ? rec->signature : "");
        fputs(",false,\n", f);
}

/* One {sv} entry of basic type type (value points to it). */
static bool append_entry(DBusMessageIter *dict, const char *key, int type, const char *sig, const void *value)
{
        DBusMessageIter entry = DBUS_MESSAGE_ITER_INIT_CLOSED, v = DBUS_MESSAGE_ITER_INIT_CLOSED;
        bool ok;

        ok = dbus_message_iter_open_container(dict, DBUS_TYPE_DICT_ENTRY, NULL, &entry) &&
             dbus_message_iter_append_basic(&entry, DBUS_TYPE_STRING, &key) &&
             dbus_message_iter_open_container(&entry, DBUS_TYPE_VARIANT, sig, &v) &&
             dbus_message_iter_append_basic(&v, type, value) && dbus_message_iter_close_container(&entry, &v) &&
             dbus_message_iter_close_container(dict, &entry);
        if (!ok) {
                dbus_message_iter_abandon_container_if_open(&entry, &v);
                dbus_message_iter_abandon_container_if_open(dict, &entry);
        }
        return ok;
}

/* The options dictionary of ExportAudit. kmsctl_append_options() has no
 * int64 ('x'), which since and until are. */
static int append_query(DBusMessageIter *it, const struct kmsctl_audit_query *q)
{
        DBusMessageIter dict = DBUS_MESSAGE_ITER_INIT_CLOSED;
        bool ok;

        ok = dbus_message_iter_open_container(it, DBUS_TYPE_ARRAY, "{sv}", &dict);
        if (ok && q->from_seq)
                ok = append_entry(&dict, "from_seq", DBUS_TYPE_UINT64, "t", &q->from_seq);
        if (ok && q->to_seq)
                ok = append_entry(&dict, "to_seq", DBUS_TYPE_UINT64, "t", &q->to_seq);
        if (ok && q->has_since)
                ok = append_entry(&dict, "since", DBUS_TYPE_INT64, "x", &q->since_ms);
        if (ok && q->has_until)
                ok = append_entry(&dict, "until", DBUS_TYPE_INT64, "x", &q->until_ms);
        if (ok && q->key)
                ok = append_entry(&dict, "key", DBUS_TYPE_STRING, "s", &q->key);
        if (ok && q->last)
                ok = append_entry(&dict, "last", DBUS_TYPE_UINT32, "u", &q->last);
        if (ok && q->limit)
                ok = append_entry(&dict, "limit", DBUS_TYPE_UINT32, "u", &q->limit);
        ok = ok && dbus_message_iter_close_container(it, &dict);
        if (!ok) {
                dbus_message_iter_abandon_container_if_open(it, &dict);
                return -ENOMEM;
        }
        return 0;
}

int kmsctl_audit_export_call(const struct kmsctl_audit_query *q, DBusMessage **ret_reply, DBusMessageIter *ret_records,
                             uint64_t *ret_next_seq)
{
        _cleanup_(dbus_message_unrefp) DBusMessage *m = NULL, *reply = NULL;
        DBusMessageIter it, records;
        uint64_t next;
        int r;

        m = kmsctl_bus_new_call("ExportAudit", &it);
        if (!m || append_query(&it, q) < 0)
                return kmsctl_log_oom();
        r = kmsctl_bus_call(m, "aa{sv}t", kmsctl_audit_hints, &reply);
        if (r != KMS_EXIT_OK)
                return r;
        dbus_message_iter_init(reply, &it);
        if (kmsctl_array_open(&it, "a{sv}", &records) < 0)
                return KMS_EXIT_FAILURE;
        dbus_message_iter_next(&it);
        dbus_message_iter_get_basic(&it, &next);
        *ret_next_seq = next;
        *ret_records = records;
        *ret_reply = TAKE_PTR(reply);
        return KMS_EXIT_OK;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian), after Howard
 * Hinnant's days_from_civil. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
        int64_t era, yoe, doy, doe;

        y -= m <= 2;
        era = (y >= 0 ? y : y - 399) / 400;
        yoe = y - era * 400;
        doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
        doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + doe - 719468;
}

static bool leap_year(unsigned y)
{
        return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* n decimal digits at s into *ret; false if any is not a digit. */
static bool digits(const char *s, unsigned n, unsigned *ret)
{
        unsigned v = 0;

        for (unsigned i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return false;
                v = v * 10 + (unsigned)(s[i] - '0');
        }
        *ret = v;
        return true;
}

/* Latest time accepted: 9999-12-31T23:59:59Z. */
#define MAX_UNIX_SECONDS 253402300799ull

int kmsctl_audit_parse_time(const char *option, const char *s, int64_t *ret_ms)
{
        static const unsigned mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        unsigned y, mo, d, h = 0, mi = 0, sec = 0, ms = 0;
        size_t n = strlen(s);
        uint64_t u;
        bool ok;

        if (n > 0 && strspn(s, "0123456789") == n) {
                if (kms_parse_u64(s, 0, MAX_UNIX_SECONDS, &u) < 0)
                        goto bad;
                *ret_ms = (int64_t)u * 1000;
                return 0;
        }
        ok = (n == 10 || n == 20 || n == 24) && digits(s, 4, &y) && s[4] == '-' && digits(s + 5, 2, &mo) &&
             s[7] == '-' && digits(s + 8, 2, &d);
        if (ok && n >= 20)
                ok = s[10] == 'T' && digits(s + 11, 2, &h) && s[13] == ':' && digits(s + 14, 2, &mi) && s[16] == ':' &&
                     digits(s + 17, 2, &sec);
        if (ok && n == 20)
                ok = s[19] == 'Z';
        if (ok && n == 24)
                ok = s[19] == '.' && digits(s + 20, 3, &ms) && s[23] == 'Z';
        if (!ok)
                goto bad;
        if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] + (mo == 2 && leap_year(y)) || h > 23 ||
            mi > 59 || sec > 59)
                goto bad;
        *ret_ms = ((days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec) * 1000) + ms;
        return 0;
bad:
        fprintf(stderr,
                "kmsctl: %s takes a UTC time (2026-11-26T01:02:03Z, with optional .mmm), a date (2026-11-26) "
                "or Unix seconds from 1970 to 9999, not '%s'\n",
                option, s);
        return -EINVAL;
}
