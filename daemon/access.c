/* Access decisions on the bus thread, before any backend work: the
 * caller (from the bus daemon), the method's operation, the key's owner
 * (from the bus thread's own store connection), and the policy in force.
 * See policy/kms-policy.h and docs/policy.md. */
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

int kms_access_check(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen)
{
        const struct kms_method *m = req->method;
        struct kms_decision dec = {0};
        const char *key = NULL;
        uid_t owner = KMS_NO_OWNER;
        enum kms_operation op = m->op;
        int r;

        req->policy = kms_access_policy(d);
        switch (m->scope) {
        case KMS_SCOPE_NONE:
        case KMS_SCOPE_FILTER: return 0;
        case KMS_SCOPE_GLOBAL: break;
        case KMS_SCOPE_CREATE:
                key = req->name;
                /* Naming another owner is an admin's business. */
                if (req->owner_set && req->owner != req->caller.uid) {
                        op = KMS_OP_ADMIN;
                        key = NULL;
                }
                break;
        case KMS_SCOPE_OWN_SESSION:
        case KMS_SCOPE_SESSION:
                /* The caller's own session, on a key the caller may still
                 * use for sessions. Another user's id is denied here
                 * (and logged); an unknown one goes on to the worker,
                 * which answers SessionNotFound. */
                r = kms_sessions_key_name(&d->sessions, req->session_id, req->caller.uid, req->name,
                                          sizeof(req->name));
                if (r == -EPERM) {
                        log_notice("denied: uid %u pid %d %s session %s: the session belongs to another user",
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
        if (op != m->op)
                log_notice("denied: uid %u pid %d %s key '%s' for owner uid %u: %s", (unsigned)req->caller.uid,
                           (int)req->caller.pid, m->member, req->name, (unsigned)req->owner, dec.why);
        else if (key)
                log_notice("denied: uid %u pid %d %s key '%s': %s", (unsigned)req->caller.uid, (int)req->caller.pid,
                           m->member, key, dec.why);
        else
                log_notice("denied: uid %u pid %d %s: %s", (unsigned)req->caller.uid, (int)req->caller.pid, m->member,
                           dec.why);
        if (op != m->op)
                snprintf(errmsg, errlen, "uid %u may not create a key for another owner (uid %u): %s",
                         (unsigned)req->caller.uid, (unsigned)req->owner, dec.why);
        else if (key)
                snprintf(errmsg, errlen, "uid %u may not do '%s' on key '%s': %s", (unsigned)req->caller.uid,
                         kms_operation_to_string(op), key, dec.why);
        else
                snprintf(errmsg, errlen, "uid %u may not do '%s': %s", (unsigned)req->caller.uid,
                         kms_operation_to_string(op), dec.why);
        return -EACCES;
}
