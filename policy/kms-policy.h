/* Who may do what: the access policy (docs/policy.md).
 *
 * A decision takes the caller (uid, gids and pid as the bus daemon reports
 * them), an operation, and the key it is about (its name and owner), and
 * goes in this order:
 *   1. admins (uid 0 and the members of admin_group) may do everything;
 *   2. the rules, in order (files in lexical order, rules in file order):
 *      the first rule whose subjects, operations and key patterns all
 *      match decides, allow or deny;
 *   3. the key's owner may do what owner_rights lists;
 *   4. otherwise denied ("no rule matched: denied by default").
 *
 * A policy is immutable once loaded and reference counted, so a reload
 * swaps in a new one while requests in flight finish under the old. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum kms_operation {
        KMS_OP_CREATE,
        KMS_OP_READ,
        KMS_OP_SIGN,
        KMS_OP_VERIFY,
        KMS_OP_DERIVE,
        KMS_OP_DECRYPT,
        KMS_OP_SESSION,
        KMS_OP_ROTATE,
        KMS_OP_REVOKE,
        KMS_OP_DISABLE,
        KMS_OP_DESTROY,
        KMS_OP_AUDIT,
        KMS_OP_ADMIN,
        KMS_OP_STATUS,
        _KMS_OP_MAX,
        KMS_OP_INVALID = -1,
};

#define KMS_OP_BIT(op) (1u << (op))
#define KMS_OPS_ALL ((1u << _KMS_OP_MAX) - 1u)
/* The operations that are not about one key: a rule's keys line does not
 * limit them, so a rule granting only these needs none (and may not have
 * one other than "*"). */
#define KMS_OPS_GLOBAL (KMS_OP_BIT(KMS_OP_ADMIN) | KMS_OP_BIT(KMS_OP_AUDIT) | KMS_OP_BIT(KMS_OP_STATUS))
/* What a key's owner may do without a rule, unless kmsd.conf says
 * otherwise ([policy] owner_rights). */
#define KMS_OWNER_RIGHTS_DEFAULT                                                                                       \
        (KMS_OP_BIT(KMS_OP_READ) | KMS_OP_BIT(KMS_OP_SIGN) | KMS_OP_BIT(KMS_OP_VERIFY) | KMS_OP_BIT(KMS_OP_DERIVE) |   \
         KMS_OP_BIT(KMS_OP_DECRYPT) | KMS_OP_BIT(KMS_OP_SESSION) | KMS_OP_BIT(KMS_OP_ROTATE) |                         \
         KMS_OP_BIT(KMS_OP_REVOKE) | KMS_OP_BIT(KMS_OP_DISABLE) | KMS_OP_BIT(KMS_OP_DESTROY))

#define KMS_NO_OWNER ((uid_t)-1)
#define KMS_MAX_CALLER_GROUPS 256
#define KMS_POLICY_WHY_MAX 320

/* A caller as the bus daemon reports it; gids holds the primary group and
 * the supplementary groups of the uid's account (resolved by kmsd). */
struct kms_caller {
        uid_t uid;
        pid_t pid;
        char exe[128]; /* for the audit log; "" if unknown */
        unsigned n_gids;
        bool groups_incomplete; /* the account's groups could not all be read: non-root callers are denied */
        gid_t gids[KMS_MAX_CALLER_GROUPS];
};

const char *kms_operation_to_string(enum kms_operation op);
enum kms_operation kms_operation_from_string(const char *s);
/* "sign,derive" (commas and/or blanks) → a mask of KMS_OP_BIT()s. On an
 * unknown name returns -EINVAL and points *ret_bad at it in a static
 * copy (valid until the next call). */
int kms_operations_parse(const char *s, unsigned *ret_mask, const char **ret_bad);
/* The names in mask, comma separated, into buf. */
void kms_operations_format(unsigned mask, char *buf, size_t len);

/* Fill c->gids with the primary and supplementary groups of c->uid's
 * account (getpwuid_r + getgrouplist); an account that does not exist
 * leaves no groups. If they cannot all be read (NSS failure, more than
 * KMS_MAX_CALLER_GROUPS), c->groups_incomplete is set: a deny rule on a
 * group must not fail open. */
int kms_caller_resolve_groups(struct kms_caller *c);

struct kms_policy;

struct kms_policy_settings {
        const char *dir;         /* NULL or "": no rule files */
        const char *admin_group; /* NULL or "": only root is admin */
        unsigned owner_rights;   /* mask of KMS_OP_BIT()s */
};

/* Read every *.conf in settings->dir (lexical order). On error returns
 * -EINVAL (or -ENOMEM, -EIO) and writes "file:line: reason" to errbuf;
 * nothing is returned then. A missing dir is not an error (no rules).
 * The folder and the files must be owned by root or by the uid this
 * process runs as, and not writable by group or others; neither may be a
 * symbolic link, and the files must be regular files. Otherwise -EPERM
 * (-ELOOP for a link) and "path: why" in errbuf. */
int kms_policy_load(const struct kms_policy_settings *settings, struct kms_policy **ret, char *errbuf, size_t errlen);
/* The same for one file's text in memory (tests); name stands in for the
 * file name. */
int kms_policy_load_string(const struct kms_policy_settings *settings, const char *text, const char *name,
                           struct kms_policy **ret, char *errbuf, size_t errlen);
struct kms_policy *kms_policy_ref(struct kms_policy *p);
void kms_policy_unref(struct kms_policy *p);

struct kms_decision {
        bool allow;
        /* Which rule decided, with its file and line, or why none did:
         * for kmsd's log and for admins (CheckPolicy). */
        char why[KMS_POLICY_WHY_MAX];
        /* The same for the caller: the rule's name, not where the policy
         * files are or what else is in them. */
        char why_caller[KMS_POLICY_WHY_MAX];
};

/* Decide. key: the key's name, or NULL for requests that are not about
 * one key (status, policy, audit of everything: key patterns are not
 * consulted then). owner: the key's owner, KMS_NO_OWNER when there is no
 * such key. Returns true if allowed. */
bool kms_policy_decide(const struct kms_policy *p, const struct kms_caller *c, enum kms_operation op, const char *key,
                       uid_t owner, struct kms_decision *ret);

/* True if the caller is an admin under p (root or admin_group). */
bool kms_policy_is_admin(const struct kms_policy *p, const struct kms_caller *c);

/* Which keys kms_policy_decide() can allow the caller op on, found from
 * the rules alone (no key is looked at), so that a list can be filtered
 * in the query before any key is decided:
 *   NONE  no key at all (no rule or owner right grants op; or the
 *         caller's groups are incomplete);
 *   OWN   at most the keys the caller owns (only owner_rights and rules
 *         whose matching subject is "owner" grant op);
 *   SOME  keys of other owners too, where a rule naming the caller (user,
 *         group or "*") grants op; which ones, only a decision per key says;
 *   ALL   every key: the caller is an admin.
 * Deny rules are not looked at: the answer is an upper bound, and each key
 * in it is still decided with kms_policy_decide(). */
enum kms_policy_reach {
        KMS_REACH_NONE,
        KMS_REACH_OWN,
        KMS_REACH_SOME,
        KMS_REACH_ALL,
};
enum kms_policy_reach kms_policy_reach(const struct kms_policy *p, const struct kms_caller *c, enum kms_operation op);

/* The rules in force, for `kmsctl policy show`. */
struct kms_policy_rule_info {
        const char *name;
        const char *file;
        unsigned line;
        bool allow;
        const char *subjects; /* as written, normalised: "user:alice group:chat" */
        const char *operations;
        const char *keys;
};
size_t kms_policy_n_rules(const struct kms_policy *p);
void kms_policy_rule_info(const struct kms_policy *p, size_t i, struct kms_policy_rule_info *ret);
const char *kms_policy_admin_group(const struct kms_policy *p);
unsigned kms_policy_owner_rights(const struct kms_policy *p);
