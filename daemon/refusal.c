/* Rate limits on what a refused request leaves behind: its log line and
 * its audit record. See refusal.h. Bus thread only: no locks. */
#include "refusal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "kms-log.h"

/* Distinct results counted in one summary; the rest are "other". */
#define REFUSAL_RESULTS 4u

struct refusal_count {
        const char *result; /* static */
        uint64_t n;
};

struct refusal_entry {
        uid_t uid;
        struct kms_log_ratelimit bucket;
        /* Suppressed since window_start_ms (the first suppression of the
         * current interval); 0 = no window open. */
        uint64_t suppressed;
        uint64_t window_start_ms;
        struct refusal_count results[REFUSAL_RESULTS];
        uint64_t other_results;
        /* The last suppressed refusal, for the summary. */
        pid_t last_pid;
        char last_exe[128];
        char last_member[64];
};

struct kms_refusals {
        /* entries[0..n) by uid; entries[KMS_REFUSAL_MAX_UIDS] is shared by
         * uids that find the table full of uids still over their limit. */
        struct refusal_entry entries[KMS_REFUSAL_MAX_UIDS + 1];
        size_t n;
        uint64_t next_due_ms; /* the earliest window_start + interval; 0: none */
};

static struct kms_refusals *refusals_get(struct kms_daemon *d)
{
        if (!d->refusals)
                d->refusals = calloc(1, sizeof(*d->refusals));
        return d->refusals;
}

/* The entry of uid, made if need be. A full table first forgets the
 * entries whose bucket is full again and that have nothing to report:
 * they are as good as new. */
static struct refusal_entry *entry_for(struct kms_refusals *rs, uid_t uid, uint64_t now)
{
        struct refusal_entry *e;

        for (size_t i = 0; i < rs->n; i++)
                if (rs->entries[i].uid == uid)
                        return &rs->entries[i];
        if (rs->n == KMS_REFUSAL_MAX_UIDS) {
                size_t kept = 0;

                for (size_t i = 0; i < rs->n; i++) {
                        e = &rs->entries[i];
                        if (e->suppressed == 0 &&
                            kms_log_ratelimit_full(&e->bucket, KMS_REFUSAL_BURST, KMS_REFUSAL_PER_S, now))
                                continue;
                        if (kept != i)
                                rs->entries[kept] = *e;
                        kept++;
                }
                rs->n = kept;
                if (rs->n == KMS_REFUSAL_MAX_UIDS)
                        return &rs->entries[KMS_REFUSAL_MAX_UIDS];
        }
        e = &rs->entries[rs->n++];
        memset(e, 0, sizeof(*e));
        e->uid = uid;
        return e;
}

static bool is_shared(const struct kms_refusals *rs, const struct refusal_entry *e)
{
        return e == &rs->entries[KMS_REFUSAL_MAX_UIDS];
}

static void count_suppressed(struct kms_refusals *rs, struct refusal_entry *e, const struct kms_refusal *ref,
                             uint64_t now)
{
        const char *result = ref->result ? ref->result : "";
        size_t i;

        if (e->suppressed == 0) {
                e->window_start_ms = now;
                if (rs->next_due_ms == 0 || now + KMS_REFUSAL_SUMMARY_MS < rs->next_due_ms)
                        rs->next_due_ms = now + KMS_REFUSAL_SUMMARY_MS;
        }
        e->suppressed++;
        for (i = 0; i < REFUSAL_RESULTS && e->results[i].result; i++)
                if (strcmp(e->results[i].result, result) == 0)
                        break;
        if (i == REFUSAL_RESULTS)
                e->other_results++;
        else {
                e->results[i].result = result;
                e->results[i].n++;
        }
        e->last_pid = ref->caller ? ref->caller->pid : 0;
        snprintf(e->last_exe, sizeof(e->last_exe), "%s", ref->caller ? ref->caller->exe : "");
        snprintf(e->last_member, sizeof(e->last_member), "%s", ref->member ? ref->member : "");
}

static void audit_refusal(struct kms_daemon *d, const struct kms_refusal *ref)
{
        const struct kms_caller *caller = ref->caller;
        const struct kms_audit_event ev = {
                .kind = ref->kind ? ref->kind : "request",
                .uid = caller ? caller->uid : (uid_t)-1,
                .pid = caller ? caller->pid : 0,
                .exe = caller ? caller->exe : "",
                .operation = ref->member,
                .key = ref->key,
                .result = ref->result,
                .details = ref->message,
        };

        /* Not waited for: the bus thread never blocks on the disk (the
         * writer retries with it). */
        (void)kms_audit_log(d, &ev, false);
}

bool kms_refusal_record(struct kms_daemon *d, const struct kms_refusal *ref)
{
        struct kms_refusals *rs = refusals_get(d);
        uid_t uid = ref->caller ? ref->caller->uid : (uid_t)-1;
        uint64_t now = kms_now_mono_ms();
        struct refusal_entry *e;

        /* Out of memory: record it, as before there was a limit. */
        e = rs ? entry_for(rs, uid, now) : NULL;
        if (e && !kms_log_ratelimit_take(&e->bucket, KMS_REFUSAL_BURST, KMS_REFUSAL_PER_S, now)) {
                count_suppressed(rs, e, ref, now);
                return false;
        }
        if (ref->log_line && *ref->log_line)
                log_notice("%s", ref->log_line);
        else if (ref->caller)
                log_info("%s from uid %u pid %d refused: %s", ref->member, (unsigned)ref->caller->uid,
                         (int)ref->caller->pid, ref->message);
        else
                log_info("%s refused: %s", ref->member, ref->message);
        audit_refusal(d, ref);
        return true;
}

/* "denied 3970, UnknownMethod 10" */
static void format_results(const struct refusal_entry *e, char *buf, size_t len)
{
        size_t off = 0;
        int n;

        buf[0] = '\0';
        for (size_t i = 0; i < REFUSAL_RESULTS && e->results[i].result; i++) {
                n = snprintf(buf + off, len - off, "%s%s %llu", off ? ", " : "", e->results[i].result,
                             (unsigned long long)e->results[i].n);
                if (n < 0 || (size_t)n >= len - off)
                        return;
                off += (size_t)n;
        }
        if (e->other_results)
                snprintf(buf + off, len - off, "%sother %llu", off ? ", " : "", (unsigned long long)e->other_results);
}

static void summarise(struct kms_daemon *d, struct kms_refusals *rs, struct refusal_entry *e, uint64_t now)
{
        char results[256], details[KMS_ERRMSG_MAX];
        const bool shared = is_shared(rs, e);
        const unsigned secs = (unsigned)((now - e->window_start_ms + 500) / 1000);
        const struct kms_audit_event ev = {
                .kind = "refusals_suppressed",
                .uid = shared ? (uid_t)-1 : e->uid,
                .pid = e->last_pid,
                .exe = e->last_exe,
                .operation = "RefusalSummary",
                .result = "suppressed",
                .details = details,
        };

        format_results(e, results, sizeof(results));
        snprintf(details, sizeof(details),
                 "%llu similar refusals suppressed in %u s (%s%s); the last: %s; limit: %u at once, then %u a "
                 "second per uid",
                 (unsigned long long)e->suppressed, secs, results, shared ? "; from several uids" : "",
                 e->last_member, KMS_REFUSAL_BURST, KMS_REFUSAL_PER_S);
        if (shared)
                log_notice("several uids: %s", details);
        else
                log_notice("uid %u: %s", (unsigned)e->uid, details);
        (void)kms_audit_log(d, &ev, false);
        e->suppressed = 0;
        e->window_start_ms = 0;
        memset(e->results, 0, sizeof(e->results));
        e->other_results = 0;
}

void kms_refusal_flush(struct kms_daemon *d, bool force)
{
        struct kms_refusals *rs = d->refusals;
        uint64_t now = kms_now_mono_ms(), next = 0;

        if (!rs || rs->next_due_ms == 0 || (!force && now < rs->next_due_ms))
                return;
        for (size_t i = 0; i <= KMS_REFUSAL_MAX_UIDS; i++) {
                struct refusal_entry *e = &rs->entries[i];
                uint64_t due;

                if (i >= rs->n && i < KMS_REFUSAL_MAX_UIDS)
                        continue;
                if (e->suppressed == 0)
                        continue;
                due = e->window_start_ms + KMS_REFUSAL_SUMMARY_MS;
                if (force || now >= due)
                        summarise(d, rs, e, now);
                else if (next == 0 || due < next)
                        next = due;
        }
        rs->next_due_ms = next;
}

int kms_refusal_next_due(struct kms_daemon *d)
{
        const struct kms_refusals *rs = d->refusals;
        uint64_t now;

        if (!rs || rs->next_due_ms == 0)
                return -1;
        now = kms_now_mono_ms();
        if (now >= rs->next_due_ms)
                return 0;
        return (int)(rs->next_due_ms - now);
}

void kms_refusal_free(struct kms_daemon *d)
{
        free(d->refusals);
        d->refusals = NULL;
}
