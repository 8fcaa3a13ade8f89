/* The default access rules; see kms-policy.h. */
#include <errno.h>
#include <stddef.h>

#include "kms-policy.h"

static const char *const op_names[_KMS_OP_MAX] = {
        [KMS_OP_CREATE] = "create", [KMS_OP_READ] = "read",       [KMS_OP_SIGN] = "sign",
        [KMS_OP_VERIFY] = "verify", [KMS_OP_DESTROY] = "destroy", [KMS_OP_STATUS] = "status",
        [KMS_OP_ROTATE] = "rotate", [KMS_OP_REVOKE] = "revoke",   [KMS_OP_DISABLE] = "disable",
};

const char *kms_operation_to_string(enum kms_operation op)
{
        return op >= 0 && op < _KMS_OP_MAX ? op_names[op] : "unknown";
}

int kms_policy_check(const struct kms_caller *caller, enum kms_operation op, uid_t key_owner, const char **ret_why)
{
        const char *why = NULL;

        if (!caller)
                return -EINVAL;
        if (caller->uid == 0)
                return 0;
        switch (op) {
        case KMS_OP_READ:
        case KMS_OP_VERIFY:
        case KMS_OP_STATUS: return 0;
        case KMS_OP_CREATE:
                if (key_owner == caller->uid)
                        return 0;
                why = "only root may create a key for another owner";
                break;
        case KMS_OP_SIGN:
        case KMS_OP_DESTROY:
        case KMS_OP_ROTATE:
        case KMS_OP_REVOKE:
        case KMS_OP_DISABLE:
                if (key_owner == caller->uid)
                        return 0;
                why = "only the key's owner or root may use or change it";
                break;
        default: why = "unknown operation"; break;
        }
        if (ret_why)
                *ret_why = why;
        return -EACCES;
}
