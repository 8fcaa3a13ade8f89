/* What the kmsctl audit commands share: the audit record of docs/audit.md
 * as kmsctl reads it from kmsd (ExportAudit) or from an export file, its
 * canonical form, body and hash, the JSON Lines and CSV writers, and the
 * ExportAudit call. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <dbus/dbus.h>

#include "kmsctl.h"

/* Records kmsctl asks for per ExportAudit call (kmsd's default; its
 * maximum is 5000). */
#define KMSCTL_AUDIT_PAGE 1000u
#define KMSCTL_AUDIT_PAGE_MAX 5000u
/* "2026-11-26T01:02:03.456Z" */
#define KMSCTL_AUDIT_TIME_LEN 24u
#define KMSCTL_AUDIT_HASH_HEX 64u
#define KMSCTL_AUDIT_VERSION_TAG "kmsd-audit-v1"

/* One line of an export: a record, or a stub (redacted: only seq, prev
 * and body). Strings point into a D-Bus reply or a parsed line, which must
 * outlive this; absent text fields are "". */
struct kmsctl_audit_record {
        uint64_t seq;
        bool redacted;
        const char *body; /* stubs: SHA-256 (hex) of the left-out record's canonical form */
        const char *time;
        const char *kind;
        uint32_t uid;
        uint32_t pid;
        const char *exe;
        const char *operation;
        const char *key;
        uint32_t version;
        const char *result;
        const char *details;
        const char *prev;      /* records and stubs: the hash of the record before */
        const char *signature; /* checkpoints: hex DER; NULL otherwise */
};

/* Read one element of ExportAudit's aa{sv} at it. Returns 0, or
 * -EBADMSG / -ENOMEM (printed). */
int kmsctl_audit_record_read(DBusMessageIter *it, struct kmsctl_audit_record *ret);

/* Is this a checkpoint (kind "checkpoint")? */
bool kmsctl_audit_is_checkpoint(const struct kmsctl_audit_record *rec);

/* The canonical form of a (non-redacted) record, as a new NUL-terminated
 * string (its length in *ret_len): the 12 fields, without prev. Returns 0
 * or -ENOMEM. */
int kmsctl_audit_canonical(const struct kmsctl_audit_record *rec, char **ret, size_t *ret_len);

/* SHA-256 of data as 64 lower-case hex digits plus NUL into ret (65
 * bytes). Returns 0 or -ENOMEM. */
int kmsctl_audit_sha256_hex(const void *data, size_t len, char ret[static KMSCTL_AUDIT_HASH_HEX + 1]);

/* body: SHA-256 (hex) of rec's canonical form; a stub's given body.
 * Returns 0 or -ENOMEM. */
int kmsctl_audit_body_hex(const struct kmsctl_audit_record *rec, char ret[static KMSCTL_AUDIT_HASH_HEX + 1]);

/* The 64-byte message prev || body (raw bytes) from the two hex values,
 * which must be 64 hex digits each: a record's hash is its SHA-256 (hex
 * with kmsctl_audit_sha256_hex()), a checkpoint's signature is an
 * ECDSA-SHA256 signature of it. Returns 0 or -EINVAL. */
int kmsctl_audit_link_message(const char *prev_hex, const char *body_hex, uint8_t ret[static 64]);

/* Write rec as one line of JSON Lines (docs/audit.md's field order) or
 * CSV to f; write errors show in ferror(f). */
void kmsctl_audit_write_jsonl(FILE *f, const struct kmsctl_audit_record *rec);
void kmsctl_audit_write_csv_header(FILE *f);
void kmsctl_audit_write_csv(FILE *f, const struct kmsctl_audit_record *rec);

/* The options of one ExportAudit call; a zero field is left out (kmsd's
 * default), except since/until, which have has_ flags. */
struct kmsctl_audit_query {
        uint64_t from_seq;
        uint64_t to_seq;
        bool has_since, has_until;
        int64_t since_ms, until_ms;
        const char *key;
        uint32_t last;
        uint32_t limit;
};

/* Call ExportAudit with q. On KMS_EXIT_OK, *ret_reply holds the reply,
 * *ret_records is at the first element of its aa{sv}, and *ret_next_seq
 * is its next_seq. Otherwise returns the exit status (printed). */
int kmsctl_audit_export_call(const struct kmsctl_audit_query *q, DBusMessage **ret_reply, DBusMessageIter *ret_records,
                             uint64_t *ret_next_seq);

/* Parse a time for --since/--until: ISO 8601 UTC "2026-11-26T01:02:03Z"
 * (optionally ".mmm" before the Z), a date "2026-11-26" (midnight UTC),
 * or Unix seconds. Writes milliseconds since the epoch. Returns 0, or
 * -EINVAL after printing a message that names option and s. */
int kmsctl_audit_parse_time(const char *option, const char *s, int64_t *ret_ms);

/* The hint printed with kmsd's errors for the audit commands. */
extern const char *const kmsctl_audit_hints[];
