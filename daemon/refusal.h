/* Refusals on the bus thread (a denial, an unknown method, bad
 * arguments, a full queue, ...): each gets its error reply, and its log
 * line and audit record unless its uid is over the limit below. Refusals
 * over the limit are counted, and one summary record per uid and interval
 * says how many were left out (docs/audit.md, kind refusals_suppressed).
 * Without this, a uid with no rights could add audit rows, which are kept
 * for good, as fast as the bus delivers its calls. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct kms_daemon;
struct kms_caller;

/* Per uid: up to KMS_REFUSAL_BURST refusals recorded at once, then
 * KMS_REFUSAL_PER_S a second (a token bucket); docs/audit.md and
 * docs/policy.md quote these. */
#define KMS_REFUSAL_BURST 20u
#define KMS_REFUSAL_PER_S 2u
/* At most one summary of suppressed refusals per uid this often. */
#define KMS_REFUSAL_SUMMARY_MS 10000u
/* uids tracked at once; beyond, refusals of new uids share one bucket. */
#define KMS_REFUSAL_MAX_UIDS 1024u

struct kms_refusal {
        const struct kms_caller *caller; /* NULL: kmsd could not identify it */
        const char *member;              /* the D-Bus method */
        const char *key;                 /* NULL or the key name */
        const char *kind;                /* audit kind; NULL: "request" */
        const char *result;              /* "denied" or an error's short name (a static string) */
        const char *message;             /* what the caller is told; the audit record's details */
        /* The log line, at notice (a denial); NULL or "": "METHOD from
         * uid U pid P refused: MESSAGE" at info. */
        const char *log_line;
};

/* Log and audit ref (the audit record is queued, not waited for), or
 * count it for its uid's next summary when the uid is over its limit.
 * Bus thread only. Returns true if it was recorded. */
bool kms_refusal_record(struct kms_daemon *d, const struct kms_refusal *ref);
/* Milliseconds until the next summary is due, -1 if none is pending:
 * the bus thread's poll() timeout. */
int kms_refusal_next_due(struct kms_daemon *d);
/* Write the summaries that are due (with force: all pending ones, at
 * shutdown, while the audit writer still runs). */
void kms_refusal_flush(struct kms_daemon *d, bool force);
void kms_refusal_free(struct kms_daemon *d);
