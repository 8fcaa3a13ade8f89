/* Key lifecycle operations shared by the bus methods and the scheduler:
 * rotation, trimming, revocation, destruction, the checks that decide
 * whether a key may be used, and start-up reconciliation of the token
 * with the store. docs/lifecycle.md draws the state machine.
 *
 * Ordering that survives a crash at any point: a new version is created
 * in the token first and recorded second; revocation, trimming and
 * destruction mark the metadata first and destroy the objects second;
 * kms_lifecycle_reconcile() finishes whatever a crash interrupted. */
#pragma once

#include "daemon.h"

/* 0 if k (and version v, may be NULL) may be used; private_op for sign,
 * derive, decrypt. Otherwise a negative errno with the reason in errmsg. */
int kms_lifecycle_check_use(const struct kms_key_record *k, const struct kms_key_version_record *v, bool private_op,
                            char *errmsg, size_t errlen);

/* Make a new primary version. With expected_primary != 0, do nothing (and
 * return 0 with *ret_version = 0) unless that is still the primary: the
 * scheduler's and the use counter's requests are idempotent. */
int kms_lifecycle_rotate(struct kms_worker *w, const char *name, uint32_t expected_primary, uint32_t *ret_version,
                         char *errmsg, size_t errlen);

/* Destroy the oldest active non-primary versions beyond keep_versions. */
void kms_lifecycle_trim(struct kms_worker *w, const char *name);

/* Revoke version (0: all) of k. replace: rotate first when the primary is
 * revoked and k has a rotation schedule. *ret_primary: the usable primary
 * afterwards, 0 if none. */
int kms_lifecycle_revoke(struct kms_worker *w, const struct kms_key_record *k, uint32_t version, bool replace,
                         enum kms_revoke_reason reason, const char *note, uint32_t *ret_primary, char *errmsg,
                         size_t errlen);

/* Destroy every version of the key now. */
int kms_lifecycle_destroy(struct kms_worker *w, const char *name, const char *by, char *errmsg, size_t errlen);

/* Start-up: bring token and store into agreement and log every finding. */
void kms_lifecycle_reconcile(struct kms_daemon *d);
