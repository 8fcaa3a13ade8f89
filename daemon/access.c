/* Access decisions on the bus thread, before any backend work: the
 * caller (from the bus daemon), the method's operation, the key's owner
 * (from the bus thread's own store connection), and the policy in force.
 * A denial is not logged here: its log line goes into the request, and
 * the bus thread writes it with the refusal's audit record, both subject
 * to the per-uid limit of refusal.c. See policy/kms-policy.h and
 * docs/policy.md. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "daemon.h"
#include "kms-error.h"
#include "kms-log.h"

static int load(struct kms_daemon *d, struct kms_policy **ret, char *errbuf, size_t errlen)
{
        const struct kms_policy_settings st = {
                .dir = d->cfg.policy_dir,
                .admin_group = d->cfg.admin_group,
                .owner_rights = d->cfg.owner_rights,
        };
        int r = kms_policy_load(&st, ret, errbuf, errlen);

        /* A file that does not parse, cannot be opened or read: all the
         * operator's to fix, and all PolicyInvalid to the caller. */
        return r < 0 && r != -ENOMEM ? KMS_E_POLICY : r;
}

int kms_access_init(struct kms_daemon *d, char *errbuf, size_t errlen)
{
        struct kms_policy *p = NULL;
        int r;

        r = pthread_mutex_init(&d->policy_lock, NULL);
        if (r != 0)
                return -r;
        r = load(d, &p, errbuf, errlen);
        if (r < 0)
                return r;
        d->policy = p;
        if (*d->cfg.admin_group && !*kms_policy_admin_group(p))
                log_notice("admin_group '%s' does not exist: only root is admin", d->cfg.admin_group);
        log_info("policy: %zu rule(s) from %s", kms_policy_n_rules(p),
                 *d->cfg.policy_dir ? d->cfg.policy_dir : "(no policy folder)");
        return 0;
}

void kms_access_free(struct kms_daemon *d)
{
        kms_policy_unref(d->policy);
        d->policy = NULL;
        if (d->bus_store)
                kms_store_close(d->bus_store);
        d->bus_store = NULL;
        pthread_mutex_destroy(&d->policy_lock);
}

struct kms_policy *kms_access_policy(struct kms_daemon *d)
{
        struct kms_policy *p;

        pthread_mutex_lock(&d->policy_lock);
        p = kms_policy_ref(d->policy);
        pthread_mutex_unlock(&d->policy_lock);
        return p;
}

int kms_access_reload(struct kms_daemon *d, char *errbuf, size_t errlen)
{
        struct kms_policy *p = NULL, *old;
        size_t n;
        int r;

        r = load(d, &p, errbuf, errlen);
        /* Whatever the outcome, identities are fetched again: a reload is
         * how an admin makes a group change apply to open connections. */
        kms_caller_invalidate(d);
        if (r < 0) {
                log_error("policy reload refused, the old policy stays in force: %s", errbuf);
                return r;
        }
        n = kms_policy_n_rules(p);
        pthread_mutex_lock(&d->policy_lock);
        old = d->policy;
        d->policy = p;
        pthread_mutex_unlock(&d->policy_lock);
        kms_policy_unref(old);
        log_notice("policy reloaded: %zu rule(s)", n);
        return n > INT32_MAX ? INT32_MAX : (int)n;
}

/* The owner of the named key, KMS_NO_OWNER if there is none. One indexed
 * lookup on the bus thread's own connection. */
static int key_owner(struct kms_daemon *d, const char *name, uid_t *ret)
{
        int r;

        if (!d->bus_store) {
                r = kms_store_open(d->db_path, &d->bus_store);
                if (r < 0)
                        return r;
        }
        r = kms_store_key_owner(d->bus_store, name, ret);
        if (r == -ENOENT) {
                *ret = KMS_NO_OWNER;
                return 0;
        }
        return r;
}

/* Fill the caller's message and the log line of a denial. target says
 * what was asked for ("do 'sign' on key 'k'"); the caller is told the
 * rule's name, the log has its file and line (dec->why). Both may be cut
 * short: a long key name and a long policy path do not fit together. */
static int deny(struct kms_request *req, const char *target_caller, const char *target_log,
                const struct kms_decision *dec, char *errmsg, size_t errlen)
{
        int n;

        snprintf(errmsg, errlen, "uid %u may not %s: %s", (unsigned)req->caller.uid, target_caller, dec->why_caller);
        n = snprintf(req->refusal_log, sizeof(req->refusal_log), "denied: uid %u pid %d %s%s: %s",
                     (unsigned)req->caller.uid, (int)req->caller.pid, req->method->member, target_log, dec->why);
        if (n < 0)
                req->refusal_log[0] = '\0'; /* the default refusal line is logged then */
        return -EACCES;
}

/* CreateKey. The caller needs create on the name; naming another owner
 * needs admin as well, so that a grant of admin is no way around a deny
 * rule on the name (both decisions must allow). */
static int check_create(struct kms_request *req, char *errmsg, size_t errlen)
{
        struct kms_decision dec = {0};
        char target[KMS_MAX_KEY_NAME + 64], target_log[KMS_MAX_KEY_NAME + 64];

        snprintf(target, sizeof(target), "do 'create' on key '%s'", req->name);
        snprintf(target_log, sizeof(target_log), " key '%s'", req->name);
        if (!kms_policy_decide(req->policy, &req->caller, KMS_OP_CREATE, req->name, KMS_NO_OWNER, &dec))
                return deny(req, target, target_log, &dec, errmsg, errlen);
        if (!req->owner_set || req->owner == req->caller.uid)
                return 0;
        if (kms_policy_decide(req->policy, &req->caller, KMS_OP_ADMIN, NULL, KMS_NO_OWNER, &dec))
                return 0;
        snprintf(target, sizeof(target), "create a key for another owner (uid %u), which needs 'admin'",
                 (unsigned)req->owner);
        snprintf(target_log, sizeof(target_log), " key '%s' for owner uid %u (needs admin)", req->name,
                 (unsigned)req->owner);
        return deny(req, target, target_log, &dec, errmsg, errlen);
}

int kms_access_check(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen)
{
        const struct kms_method *m = req->method;
        struct kms_decision dec = {0};
        const char *key = NULL;
        uid_t owner = KMS_NO_OWNER;
        enum kms_operation op = m->op;
        char target[KMS_MAX_KEY_NAME + 64], target_log[KMS_MAX_KEY_NAME + 64];
        int r;

        req->policy = kms_access_policy(d);
        switch (m->scope) {
        case KMS_SCOPE_NONE:
        case KMS_SCOPE_FILTER: return 0;
        case KMS_SCOPE_GLOBAL: break;
        case KMS_SCOPE_CREATE: return check_create(req, errmsg, errlen);
        case KMS_SCOPE_OWN_SESSION:
        case KMS_SCOPE_SESSION:
                /* The caller's own session, on a key the caller may still
                 * use for sessions. Another user's id is denied here
                 * (and logged); an unknown one goes on to the worker,
                 * which answers SessionNotFound. */
                r = kms_sessions_key_name(&d->sessions, req->session_id, req->caller.uid, req->name,
                                          sizeof(req->name));
                if (r == -EPERM) {
                        snprintf(req->refusal_log, sizeof(req->refusal_log),
                                 "denied: uid %u pid %d %s session %s: the session belongs to another user",
                                 (unsigned)req->caller.uid, (int)req->caller.pid, m->member, req->session_id);
                        snprintf(errmsg, errlen, "session %s belongs to another user", req->session_id);
                        req->audit_kind = "session_foreign";
                        return -EACCES;
                }
                /* Closing one's own session needs no right: it only ends
                 * what the caller started (and wipes its keys). */
                if (r < 0 || m->scope == KMS_SCOPE_OWN_SESSION)
                        return 0;
                /* fall through */
        case KMS_SCOPE_KEY:
                key = req->name;
                r = key_owner(d, key, &owner);
                if (r < 0) {
                        snprintf(errmsg, errlen, "the metadata store failed: %s", strerror(-r));
                        return r;
                }
                break;
        }
        if (kms_policy_decide(req->policy, &req->caller, op, key, owner, &dec))
                return 0;
        if (key) {
                snprintf(target, sizeof(target), "do '%s' on key '%s'", kms_operation_to_string(op), key);
                snprintf(target_log, sizeof(target_log), " key '%s'", key);
        } else {
                snprintf(target, sizeof(target), "do '%s'", kms_operation_to_string(op));
                target_log[0] = '\0';
        }
        return deny(req, target, target_log, &dec, errmsg, errlen);
}
