/* errno ↔ bus error names ↔ exit codes; see kms-error.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "kms-bus.h"
#include "kms-error.h"

const char *kms_error_to_bus_name(int r)
{
        switch (r) {
        case -ENOENT: return KMS_ERROR_NOT_FOUND;
        case -EEXIST: return KMS_ERROR_ALREADY_EXISTS;
        case -EINVAL:
        case -EOPNOTSUPP:
        case -EBADMSG: return KMS_ERROR_INVALID_ARGUMENT;
        case -EACCES:
        case -EPERM: return KMS_ERROR_ACCESS_DENIED;
        case KMS_E_REVOKED: return KMS_ERROR_KEY_REVOKED;
        case KMS_E_DISABLED: return KMS_ERROR_KEY_DISABLED;
        case KMS_E_DESTROYED: return KMS_ERROR_KEY_DESTROYED;
        case KMS_E_STATE: return KMS_ERROR_INVALID_STATE;
        case -E2BIG:
        case -EMSGSIZE:
        case -EDQUOT: return KMS_ERROR_LIMIT_EXCEEDED;
        case -EBUSY:
        case -EAGAIN: return KMS_ERROR_BUSY;
        case KMS_E_BACKEND: return KMS_ERROR_BACKEND;
        case KMS_E_STORE:
        case -ENOSPC:
        case -EROFS: return KMS_ERROR_STORE;
        case -ESHUTDOWN: return KMS_ERROR_SHUTTING_DOWN;
        case KMS_E_POLICY: return KMS_ERROR_POLICY_INVALID;
        case KMS_E_AUDIT: return KMS_ERROR_AUDIT_FAILURE;
        case KMS_E_NO_SESSION: return KMS_ERROR_SESSION_NOT_FOUND;
        case KMS_E_EXPIRED: return KMS_ERROR_SESSION_EXPIRED;
        case KMS_E_REPLAY:
        case KMS_E_REORDERED: return KMS_ERROR_REPLAY;
        case KMS_E_STALE: return KMS_ERROR_STALE;
        case KMS_E_INTEGRITY: return KMS_ERROR_INTEGRITY;
        default: return KMS_ERROR_INTERNAL;
        }
}

int kms_error_exit_code(const char *name)
{
        if (!name)
                return KMS_EXIT_FAILURE;
        if (strcmp(name, KMS_ERROR_ACCESS_DENIED) == 0 ||
            strcmp(name, "org.freedesktop.DBus.Error.AccessDenied") == 0)
                return KMS_EXIT_DENIED;
        if (strcmp(name, KMS_ERROR_NOT_FOUND) == 0 || strcmp(name, KMS_ERROR_SESSION_NOT_FOUND) == 0)
                return KMS_EXIT_NOT_FOUND;
        return KMS_EXIT_FAILURE;
}

int kms_errorf(char *errmsg, size_t errlen, int r, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(errmsg, errlen, fmt, ap);
        va_end(ap);
        return r;
}
