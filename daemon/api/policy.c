/* The policy domain: GetPolicy, CheckPolicy and ReloadPolicy (docs/policy.md).
 * Decisions themselves are made on the bus thread (../access.c). */
#include <pwd.h>
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "kms-error.h"
#include "kms-log.h"

#define fail kms_errorf /* printf into errmsg, return the code */

/* CheckPolicy(s user, s key, s operation): user is a name, "uid:N" or a
 * number; key may be "" for operations that are not about one key. */
static int parse_check_policy(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen)
{
        const char *user, *op;
        DBusMessageIter it;
        uint64_t v;

        dbus_message_iter_init(req->msg, &it);
        dbus_message_iter_get_basic(&it, &user);
        dbus_message_iter_next(&it);
        if (!*user || strlen(user) >= sizeof(req->check_user))
                return fail(errmsg, errlen, -EINVAL, "user must be a user name, uid:N or a number");
        if (kms_parse_u64(strncmp(user, "uid:", 4) == 0 ? user + 4 : user, 0, UINT32_MAX - 1, &v) >= 0) {
                req->check_uid = (uid_t)v;
                req->check_uid_set = true;
        } else if (strncmp(user, "uid:", 4) == 0)
                return fail(errmsg, errlen, -EINVAL, "'%.64s' is not uid:N", user);
        snprintf(req->check_user, sizeof(req->check_user), "%s", user);
        if (dbus_message_iter_get_arg_type(&it) == DBUS_TYPE_STRING) {
                const char *key;

                dbus_message_iter_get_basic(&it, &key);
                if (*key) {
                        int r = kms_arg_name(&it, req, errmsg, errlen);
                        if (r < 0)
                                return r;
                } else
                        dbus_message_iter_next(&it);
        }
        dbus_message_iter_get_basic(&it, &op);
        req->check_op = kms_operation_from_string(op);
        if (req->check_op == KMS_OP_INVALID)
                return fail(errmsg, errlen, -EINVAL,
                            "unknown operation '%.64s' (create, read, sign, verify, derive, decrypt, session, rotate, "
                            "revoke, disable, destroy, audit, admin, status)",
                            op);
        return 0;
}

static int run_get_policy(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg,
                          size_t errlen)
{
        const struct kms_policy *p = req->policy;
        DBusMessageIter it, dict, arr;
        char rights[256];
        int r;

        kms_operations_format(kms_policy_owner_rights(p), rights, sizeof(rights));
        r = kms_reply_new(req, ret, &it);
        if (r >= 0 && !(dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "{sv}", &dict) &&
                        kms_dict_add_str(&dict, "dir", w->daemon->cfg.policy_dir) &&
                        kms_dict_add_str(&dict, "admin_group", w->daemon->cfg.admin_group) &&
                        kms_dict_add_bool(&dict, "admin_group_exists", *kms_policy_admin_group(p) != '\0') &&
                        kms_dict_add_str(&dict, "owner_rights", rights) &&
                        dbus_message_iter_close_container(&it, &dict) &&
                        dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "a{sv}", &arr)))
                r = -ENOMEM;
        for (size_t i = 0; r >= 0 && i < kms_policy_n_rules(p); i++) {
                struct kms_policy_rule_info ri;

                kms_policy_rule_info(p, i, &ri);
                if (!(dbus_message_iter_open_container(&arr, DBUS_TYPE_ARRAY, "{sv}", &dict) &&
                      kms_dict_add_str(&dict, "name", ri.name) && kms_dict_add_str(&dict, "file", ri.file) &&
                      kms_dict_add_u32(&dict, "line", ri.line) &&
                      kms_dict_add_str(&dict, "effect", ri.allow ? "allow" : "deny") &&
                      kms_dict_add_str(&dict, "subjects", ri.subjects) && kms_dict_add_str(&dict, "operations", ri.operations) &&
                      kms_dict_add_str(&dict, "keys", ri.keys) && dbus_message_iter_close_container(&arr, &dict)))
                        r = -ENOMEM;
        }
        if (r >= 0 && !dbus_message_iter_close_container(&it, &arr))
                r = -ENOMEM;
        return r;
}

static int run_check_policy(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg,
                            size_t errlen)
{
        struct kms_caller who = { .pid = 0 };
        struct kms_decision dec;
        uid_t owner = KMS_NO_OWNER;
        const char *key = req->name[0] ? req->name : NULL;
        DBusMessageIter it;
        dbus_bool_t allow;
        char why[KMS_POLICY_WHY_MAX + 64];
        int r;

        if (req->check_uid_set)
                who.uid = req->check_uid;
        else {
                struct passwd pw, *res = NULL;
                char buf[4096];

                if (getpwnam_r(req->check_user, &pw, buf, sizeof(buf), &res) != 0 || !res)
                        return fail(errmsg, errlen, -ENOENT, "no user named '%s'", req->check_user);
                who.uid = pw.pw_uid;
        }
        (void)kms_caller_resolve_groups(&who);
        if (key) {
                r = kms_store_key_owner(w->store, key, &owner);
                if (r < 0 && r != -ENOENT)
                        return kms_api_store_fail(r, req, errmsg, errlen);
        }
        allow = kms_policy_decide(req->policy, &who, req->check_op, key, owner, &dec);
        snprintf(why, sizeof(why), "%s%s", dec.why, key && owner == KMS_NO_OWNER ? " (no such key yet)" : "");
        kms_utf8_sanitize(why); /* a file name from the policy folder, cut at its limit */
        r = kms_reply_new(req, ret, &it);
        if (r >= 0 && !(dbus_message_iter_append_basic(&it, DBUS_TYPE_BOOLEAN, &allow) &&
                        dbus_message_iter_append_basic(&it, DBUS_TYPE_STRING, &(const char *){ why })))
                r = -ENOMEM;
        return r;
}

static int run_reload_policy(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg,
                             size_t errlen)
{
        char err[KMS_ERRMSG_MAX - 64];
        int r = kms_access_reload(w->daemon, err, sizeof(err));

        if (r < 0)
                return fail(errmsg, errlen, r, "policy not reloaded, the old policy stays in force: %s", err);
        return kms_reply_u32(req, ret, (uint32_t)r);
}

static const struct kms_method policy_methods[] = {
        { "GetPolicy", "", KMS_OP_ADMIN, KMS_SCOPE_GLOBAL, kms_arg_none, run_get_policy },
        { "CheckPolicy", "sss", KMS_OP_ADMIN, KMS_SCOPE_GLOBAL, parse_check_policy, run_check_policy },
        { "ReloadPolicy", "", KMS_OP_ADMIN, KMS_SCOPE_GLOBAL, kms_arg_none, run_reload_policy },
};

const struct kms_method_slice kms_api_policy = { "policy", policy_methods, ELEMENTSOF(policy_methods) };
