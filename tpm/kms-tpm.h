/* The TPM 2.0 backend: tpm2-tss ESAPI through the TCTI loader, a primary
 * storage key recreated from the standard SRK template at start-up, child
 * keys kept as TPM2B_PUBLIC/TPM2B_PRIVATE blobs in a table of kmsd's
 * database, and the backend table (common/kms-backend.h) on top. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "kms-backend.h"

struct kms_tpm_config {
        const char *tcti;            /* e.g. "device:/dev/tpmrm0", "swtpm:host=127.0.0.1,port=2321" */
        const char *owner_auth_file; /* NULL: empty owner auth; else a 0600 file, content wiped after use */
        const char *db_path;         /* kmsd's SQLite database: the backend keeps its blobs in its own table there */
        /* If the TPM cannot be reached at open (no device, nothing
         * listening), open anyway: errbuf says why, info() reports the
         * TPM as unavailable, every key operation fails with
         * KMS_E_BACKEND, and the backend connects on a later call once
         * the TPM is back. Any other failure (database, owner auth, a TPM
         * that answers with an error) still fails the open. */
        bool allow_unreachable;
};

/* Connect to the TPM, recreate the primary storage key and open the blob
 * table (created if missing) in cfg->db_path. The owner auth file must be
 * a regular file not accessible by group or others; its content is the
 * auth value as bytes (one line, a trailing newline dropped), or
 * "hex:..." for a binary value, as tpm2-tools writes it; it is read again
 * whenever the backend reconnects, and wiped from memory after each use.
 * On failure returns a negative errno and writes a sentence an operator
 * can act on to errbuf (never the auth value). */
int kms_tpm_open(const struct kms_tpm_config *cfg, struct kms_backend **ret, char *errbuf, size_t errlen);
