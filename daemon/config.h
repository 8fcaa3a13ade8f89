/* kmsd.conf: defaults, parsing with libinih, validation. See
 * docs/configuration.md for the format. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kms-log.h"

struct kms_config {
        char *bus; /* "system", "session" or a D-Bus address */
        char *state_dir;
        unsigned workers;
        int log_level;
        enum kms_log_target log_target;
        uint64_t max_message_bytes;
        unsigned max_pending;
        unsigned max_keys;
        uint64_t min_rotate_every; /* [limits] shortest rotate_every accepted, seconds */
        unsigned max_versions_kept; /* [limits] most usable versions a key keeps (keep_versions 0 included) */
        char *pkcs11_module;
        char *token_label;
        char *token_serial;
        char *pin_file; /* NULL: $CREDENTIALS_DIRECTORY/pin */
        char *policy_dir;   /* "": no rule files */
        char *admin_group;  /* "": only root is admin */
        unsigned owner_rights; /* KMS_OP_BIT() mask */
        unsigned session_stale_seconds; /* [limits] oldest envelope timestamp accepted */
        unsigned session_skew_seconds;  /* [limits] how far ahead a timestamp may be */
        bool audit_failure_open;
        bool audit_syslog;
        unsigned audit_checkpoint_records;
        unsigned audit_checkpoint_seconds;
        bool tpm_enable;
        char *tpm_tcti;            /* "device:/dev/tpmrm0" */
        char *tpm_owner_auth_file; /* NULL: $CREDENTIALS_DIRECTORY/tpm-owner-auth if there, else empty auth */
};

#define KMS_DEFAULT_CONFIG_FILE "/etc/kmsd/kmsd.conf"
#define KMS_MAX_WORKERS 64u
#define KMS_MAX_PENDING_CEILING 65536u
/* [limits] min_rotate_every: an hour unless kmsd.conf says otherwise; at
 * most a year (a longer minimum would forbid periods people use). */
#define KMS_DEFAULT_MIN_ROTATE_EVERY 3600u
#define KMS_MIN_ROTATE_EVERY_CEILING 31536000u
/* [limits] max_versions_kept (at most KMS_MAX_VERSIONS). */
#define KMS_DEFAULT_MAX_VERSIONS_KEPT 100u

/* Fill c with the built-in defaults (all strings allocated). */
int kms_config_init(struct kms_config *c);
/* Parse the file at path over the values in c. On error returns -EINVAL
 * (or -ENOENT, -ENOMEM) and writes "path:line: sentence" to errbuf; c
 * may then hold a mix of old and new values and should be freed. */
int kms_config_load(struct kms_config *c, const char *path, char *errbuf, size_t errlen);
/* Same for text in memory; name stands in for the path in messages. */
int kms_config_load_string(struct kms_config *c, const char *text, const char *name, char *errbuf,
                           size_t errlen);
void kms_config_free(struct kms_config *c);
