/* Who may do what. This is the built-in default rule set that stands
 * until policy files arrive (issue 5): it is deliberately narrow.
 *   - anyone may read metadata and public keys, and verify;
 *   - a caller may create keys it owns; only root may name another owner;
 *   - a key's owner and root may use it (sign) and change it (rotate,
 *     revoke, disable, enable, destroy, settings). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

enum kms_operation {
        KMS_OP_CREATE,
        KMS_OP_READ,
        KMS_OP_SIGN,
        KMS_OP_VERIFY,
        KMS_OP_DESTROY,
        KMS_OP_STATUS,
        KMS_OP_ROTATE,
        KMS_OP_REVOKE,
        KMS_OP_DISABLE,
        _KMS_OP_MAX,
};

struct kms_caller {
        uid_t uid;
        pid_t pid;
};

const char *kms_operation_to_string(enum kms_operation op);

/* Returns 0 if caller may do op on a key owned by key_owner (ignored for
 * operations that are not about an existing key), -EACCES otherwise with
 * a static reason in *ret_why. For KMS_OP_CREATE, key_owner is the owner
 * the new key would get. */
int kms_policy_check(const struct kms_caller *caller, enum kms_operation op, uid_t key_owner, const char **ret_why);
