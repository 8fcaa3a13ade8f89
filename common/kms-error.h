/* The one mapping between kmsd's internal error codes (negative errno
 * values) and the named bus errors, and from bus errors to kmsctl exit
 * codes. */
#pragma once

#include <stddef.h>

/* kmsctl exit codes (documented in kmsctl --help and README). */
enum {
        KMS_EXIT_OK = 0,
        KMS_EXIT_FAILURE = 1,
        KMS_EXIT_USAGE = 2,
        KMS_EXIT_DENIED = 3,
        KMS_EXIT_NOT_FOUND = 4,
};

/* Internal codes that have no natural errno. */
#define KMS_E_BACKEND (-EIO)
#define KMS_E_STORE (-ENOTRECOVERABLE)
#define KMS_E_REVOKED (-EKEYREVOKED)
#define KMS_E_DISABLED (-EKEYREJECTED)
#define KMS_E_DESTROYED (-ENOKEY)
#define KMS_E_STATE (-EALREADY) /* the change makes no sense in this state */
#define KMS_E_POLICY (-EBADRQC) /* a policy file is broken; the old policy stays */
#define KMS_E_AUDIT (-EUNATCH)  /* an audit record could not be written (failure = closed) */
/* Sessions (the codes of kms-session-crypto.h where it has one). */
#define KMS_E_NO_SESSION (-ENXIO)  /* unknown id, or another user's */
#define KMS_E_EXPIRED (-ETIME)     /* past its time or its message limit */
#define KMS_E_REPLAY (-ENOTUNIQ)   /* a sequence number seen before */
#define KMS_E_REORDERED (-ECHRNG)  /* older than the newest accepted */
#define KMS_E_STALE (-ESTALE)      /* timestamp outside the window */
#define KMS_E_INTEGRITY (-EILSEQ)  /* the GCM tag (or RSA-OAEP padding) does not verify */

/* printf into errmsg (errlen bytes) and return r: the one way the
 * daemon's handlers fail with a sentence for the caller. */
int kms_errorf(char *errmsg, size_t errlen, int r, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Bus error name for a negative errno; never NULL (unknown → Internal). */
const char *kms_error_to_bus_name(int r);
/* Exit code kmsctl uses for a bus error name (NULL → failure). */
int kms_error_exit_code(const char *bus_error_name);
