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

/* Labels of kmsd's objects in a backend: "kmsd:NAME#VERSION". */
#define KMS_LABEL_PREFIX "kmsd:"

#include "daemon.h"

/* 0 if k (and version v, may be NULL) may be used; private_op for sign,
 * derive, decrypt. Otherwise a negative errno with the reason in errmsg. */
int kms_lifecycle_check_use(const struct kms_key_record *k, const struct kms_key_version_record *v, bool private_op,
                            char *errmsg, size_t errlen);

/* A change of a key: the request's exclusive key lock (kept until its
 * reply is queued), then one store transaction in which the key is read,
 * checked and written and the audit records are added (committed with the
 * change or not at all). On failure errmsg says why; after begin fails,
 * there is nothing to abort. */
int kms_change_begin(struct kms_worker *w, struct kms_request *req, const char *name, char *errmsg, size_t errlen);
/* req's own record ("ok", with its audit_version and audit_details as set
 * now), in the open change; sets req->audit_committed. */
int kms_change_record_request(struct kms_worker *w, struct kms_request *req);
int kms_change_commit(struct kms_worker *w, char *errmsg, size_t errlen);
void kms_change_abort(struct kms_worker *w);

/* Make the key pair of version v->version of key name in backend b (an
 * index in d->backends): v->backend_id is chosen here and recorded in the
 * store's object journal (committed) before the object exists, so that
 * start-up reconciliation can prove a leftover object is kmsd's own. On
 * success v has backend_id, spki and created. */
int kms_lifecycle_generate(struct kms_worker *w, int b, enum kms_algorithm alg, unsigned usages, const char *name,
                           struct kms_key_version_record *v, char *errmsg, size_t errlen);
/* Remove an object made by kms_lifecycle_generate that no commit
 * recorded, and its journal entry (kept if the object cannot be removed:
 * start-up retries). */
void kms_lifecycle_discard(struct kms_worker *w, int b, const char *name, const struct kms_key_version_record *v);

/* Make a new primary version of req->name (generated in the backend
 * first, outside the lock; committed only if the key is still active or
 * disabled with the same primary, otherwise the new object is removed).
 * With expected_primary != 0, do nothing (return 0, *ret_version 0)
 * unless that is still the primary: the scheduler's and the use
 * counter's requests are idempotent. Versions beyond keep_versions are
 * trimmed in the same commit. */
int kms_lifecycle_rotate(struct kms_worker *w, struct kms_request *req, uint32_t expected_primary,
                         uint32_t *ret_version, char *errmsg, size_t errlen);

/* Revoke version (0: all) of req->name. replace: a scheduled key's
 * revoked primary is replaced first, in the same commit. Destroys the
 * token objects of exactly the versions the commit revoked. *ret_primary:
 * the usable primary afterwards, 0 if none. */
int kms_lifecycle_revoke(struct kms_worker *w, struct kms_request *req, uint32_t version, bool replace,
                         enum kms_revoke_reason reason, const char *note, uint32_t *ret_primary, char *errmsg,
                         size_t errlen);

/* Destroy every version of req->name now (only_if_due: only if its
 * scheduled destruction is still set and due; otherwise 0 and nothing). */
int kms_lifecycle_destroy(struct kms_worker *w, struct kms_request *req, bool only_if_due, const char *by,
                          char *errmsg, size_t errlen);

/* Enable (disabled → active) or disable (active → disabled). */
int kms_lifecycle_set_state(struct kms_worker *w, struct kms_request *req, bool enable, char *errmsg, size_t errlen);
/* The rotation settings of req (those set), trimming to keep_versions. */
int kms_lifecycle_set_options(struct kms_worker *w, struct kms_request *req, char *errmsg, size_t errlen);
/* Schedule destruction at Unix time at, or cancel it (at 0). */
int kms_lifecycle_schedule_destroy(struct kms_worker *w, struct kms_request *req, int64_t at, char *errmsg,
                                   size_t errlen);

/* reconcile.c. Start-up: bring token and store into agreement and log every finding. */
void kms_lifecycle_reconcile(struct kms_daemon *d);
