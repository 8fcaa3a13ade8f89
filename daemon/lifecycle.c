/* Key lifecycle: rotation, trimming, revocation, destruction, use checks
 * and start-up reconciliation; see lifecycle.h. */
#include "lifecycle.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include <openssl/rand.h>

#include "kms-bus.h"
#include "kms-error.h"
#include "kms-log.h"


static void format_time(int64_t t, char *buf, size_t len)
{
        time_t tt = (time_t)t;
        struct tm tm;

        if (!gmtime_r(&tt, &tm) || strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
                snprintf(buf, len, "%lld", (long long)t);
}

int kms_lifecycle_check_use(const struct kms_key_record *k, const struct kms_key_version_record *v, bool private_op,
                            char *errmsg, size_t errlen)
{
        char when[32];

        if (k->state == KMS_KEY_DESTROYED)
                return kms_errorf(errmsg, errlen, KMS_E_DESTROYED, "key '%s' was destroyed", k->name);
        if (k->destroy_at != 0) {
                format_time(k->destroy_at, when, sizeof(when));
                return kms_errorf(errmsg, errlen, KMS_E_DISABLED,
                                  "key '%s' is scheduled for destruction at %s (kmsctl key cancel-destroy undoes it)",
                                  k->name, when);
        }
        if (v && v->state == KMS_KEY_REVOKED) {
                format_time(v->revoked_at, when, sizeof(when));
                return kms_errorf(errmsg, errlen, KMS_E_REVOKED, "key '%s' version %u was revoked at %s (%s%s%s)",
                                  k->name, v->version, when, v->revoke_reason, v->revoke_note[0] ? ": " : "",
                                  v->revoke_note);
        }
        if (k->state == KMS_KEY_REVOKED)
                return kms_errorf(errmsg, errlen, KMS_E_REVOKED, "key '%s' was revoked", k->name);
        if (v && v->state == KMS_KEY_DESTROYED)
                return kms_errorf(errmsg, errlen, KMS_E_DESTROYED, "key '%s' version %u was destroyed", k->name,
                                  v->version);
        if (private_op && k->state == KMS_KEY_DISABLED)
                return kms_errorf(errmsg, errlen, KMS_E_DISABLED, "key '%s' is disabled (kmsctl key enable)", k->name);
        if (private_op && v && v->state == KMS_KEY_LOST)
                return kms_errorf(errmsg, errlen, KMS_E_BACKEND,
                                  "key '%s' version %u is lost: its private key is no longer in the token", k->name,
                                  v->version);
        return 0;
}

/* Mark first, destroy second: called after the commit that says the
 * version is gone. A failure is logged; start-up retries it. */
static void destroy_object(struct kms_worker *w, const char *name, const char *backend, uint32_t version,
                           const uint8_t *id)
{
        int b = kms_backend_index(w->daemon, backend);
        int r = b < 0 ? -ENODEV : w->daemon->backends[b]->ops->destroy(w->backends[b], id);

        if (r < 0)
                log_error("key '%s' version %u: token objects not destroyed (%s); kmsd retries at start-up", name,
                          version, strerror(-r));
}

/* ---- changes ----------------------------------------------------------------
 * Every change of a key runs as: its exclusive key lock (held until the
 * reply is queued), BEGIN IMMEDIATE, read the key in the transaction,
 * decide, write, add the audit records, COMMIT; then the token objects
 * of what the commit ended are destroyed. Nothing is read in one
 * transaction and written in another. */

int kms_change_begin(struct kms_worker *w, struct kms_request *req, const char *name, char *errmsg, size_t errlen)
{
        int r = kms_key_lock(w->daemon, req, name, true);

        if (r < 0)
                return kms_errorf(errmsg, errlen, r, "internal error: key '%s' locked twice", name);
        r = kms_store_begin(w->store);
        if (r < 0)
                return kms_errorf(errmsg, errlen, r, "the metadata store failed: %s", kms_store_strerror(r));
        return 0;
}

void kms_change_abort(struct kms_worker *w)
{
        kms_store_rollback(w->store);
}

int kms_change_commit(struct kms_worker *w, char *errmsg, size_t errlen)
{
        int r = kms_store_commit_change(w->store);

        if (r < 0)
                return kms_errorf(errmsg, errlen, r, "the metadata store failed: %s", kms_store_strerror(r));
        return 0;
}

/* A record of kmsd's own (kind, operation) about key and version, added
 * to the open change. */
static int change_record(struct kms_worker *w, const char *kind, const char *operation, const char *key,
                         uint32_t version, const char *details)
{
        const struct kms_audit_event ev = {
                .kind = kind,
                .uid = getuid(),
                .pid = getpid(),
                .exe = "kmsd",
                .operation = operation,
                .key = key,
                .version = version,
                .result = "ok",
                .details = details,
        };
        struct kms_audit_row row;

        kms_audit_row_from_event(&ev, &row);
        return kms_store_audit_pending_add(w->store, &row);
}

int kms_change_record_request(struct kms_worker *w, struct kms_request *req)
{
        char details[KMS_ERRMSG_MAX + 64];
        struct kms_audit_event ev;
        struct kms_audit_row row;
        int r;

        kms_request_audit_event(req, 0, "", &ev, details, sizeof(details));
        kms_audit_row_from_event(&ev, &row);
        r = kms_store_audit_pending_add(w->store, &row);
        if (r >= 0)
                req->audit_committed = true;
        return r;
}

/* Fail the open change with the store's error r. */
static int store_error(struct kms_worker *w, int r, const char *name, char *errmsg, size_t errlen)
{
        kms_change_abort(w);
        if (r == -ENOENT)
                return kms_errorf(errmsg, errlen, r, "no key named '%s'", name);
        return kms_errorf(errmsg, errlen, r, "the metadata store failed: %s", kms_store_strerror(r));
}

/* End the open change whose writes returned r: req's own record and the
 * commit, or, when r or either of those failed, the rollback (errmsg
 * then says why, and req's record does not count as written). */
static int finish_change(struct kms_worker *w, struct kms_request *req, int r, char *errmsg, size_t errlen)
{
        if (r >= 0)
                r = kms_change_record_request(w, req);
        if (r < 0)
                r = store_error(w, r, req->name, errmsg, errlen);
        else
                r = kms_change_commit(w, errmsg, errlen);
        if (r < 0)
                req->audit_committed = false;
        return r;
}

/* Versions whose objects go once the change is committed. */
struct doomed {
        struct doomed_version {
                uint32_t version;
                uint8_t id[KMS_KEY_ID_BYTES];
        } *v;
        size_t n, cap;
};

/* Out of memory, a version's object stays in the token until the next
 * start-up (reconciliation removes objects of ended versions). */
static void doom(struct doomed *g, const struct kms_key_version_record *v)
{
        if (g->n == g->cap) {
                size_t cap = g->cap ? 2 * g->cap : 8;
                struct doomed_version *nv = realloc(g->v, cap * sizeof(*nv));

                if (!nv) {
                        log_error("out of memory: version %u's object is removed at the next start", v->version);
                        return;
                }
                g->v = nv;
                g->cap = cap;
        }
        g->v[g->n].version = v->version;
        memcpy(g->v[g->n].id, v->backend_id, KMS_KEY_ID_BYTES);
        g->n++;
}

static void destroy_doomed(struct kms_worker *w, const char *name, const char *backend, const struct doomed *g)
{
        for (size_t i = 0; i < g->n; i++)
                destroy_object(w, name, backend, g->v[i].version, g->v[i].id);
}

static bool usable_version(const struct kms_key_version_record *v)
{
        return v->state == KMS_KEY_ACTIVE || v->state == KMS_KEY_LOST;
}

/* How many usable versions k keeps: its keep_versions, but never more
 * than kmsd.conf's [limits] max_versions_kept (keep_versions 0, "all",
 * included), so a key rotated often cannot fill the token. */
static uint32_t keep_bound(const struct kms_worker *w, const struct kms_key_record *k)
{
        uint32_t max = w->daemon->cfg.max_versions_kept;

        return k->keep_versions != 0 && k->keep_versions < max ? k->keep_versions : max;
}

/* In the open change: mark destroyed the oldest usable non-primary
 * versions of k beyond keep (k read in this transaction, with primary
 * the primary it will have and extra versions it does not list yet;
 * skip: a version this change revokes, neither counted nor trimmed),
 * each with its record. */
static int trim_in_change(struct kms_worker *w, const struct kms_key_record *k, uint32_t keep, uint32_t primary,
                          size_t extra, uint32_t skip, struct doomed *g)
{
        size_t active = extra;
        int r;

        if (keep == 0)
                return 0;
        for (size_t i = 0; i < k->n_versions; i++)
                if (usable_version(&k->versions[i]) && k->versions[i].version != skip)
                        active++;
        /* Versions are in ascending order: the oldest go first. */
        for (size_t i = 0; i < k->n_versions && active > keep; i++) {
                const struct kms_key_version_record *v = &k->versions[i];
                char details[64];

                if (v->version == primary || v->version == skip || !usable_version(v))
                        continue;
                r = kms_store_version_set_state(w->store, k->id, v->version, KMS_KEY_DESTROYED);
                if (r < 0)
                        return r;
                /* The key's own bound as before; kmsd's says so. */
                if (keep == k->keep_versions)
                        snprintf(details, sizeof(details), "keep_versions=%u", keep);
                else
                        snprintf(details, sizeof(details), "keep_versions=%u (max_versions_kept)", keep);
                r = change_record(w, "trim", "TrimVersion", k->name, v->version, details);
                if (r < 0)
                        return r;
                doom(g, v);
                active--;
        }
        return 0;
}

/* ---- rotation ---------------------------------------------------------------- */

int kms_lifecycle_generate(struct kms_worker *w, int b, enum kms_algorithm alg, unsigned usages, const char *name,
                           struct kms_key_version_record *v, char *errmsg, size_t errlen)
{
        const struct kms_backend_ops *ops = w->daemon->backends[b]->ops;
        char label[KMS_MAX_KEY_NAME + 32];
        int r;

        snprintf(label, sizeof(label), KMS_LABEL_PREFIX "%s#%u", name, v->version);
        if (RAND_bytes(v->backend_id, KMS_KEY_ID_BYTES) != 1)
                return kms_errorf(errmsg, errlen, -ENOMEM, "no random bytes for a key id");
        r = kms_generation_begin(w->daemon, errmsg, errlen);
        if (r < 0)
                return r;
        /* Recorded before the object exists: a crash from here on leaves
         * an object reconciliation can prove is kmsd's own. */
        r = kms_store_journal_add(w->store, ops->name, v->backend_id, label, kms_now_unix());
        if (r < 0) {
                kms_generation_end(w->daemon);
                return kms_errorf(errmsg, errlen, r, "the metadata store failed: %s", kms_store_strerror(r));
        }
        r = ops->generate(w->backends[b], alg, usages, label, v->backend_id, &v->spki, &v->spki_len);
        kms_generation_end(w->daemon);
        if (r < 0) {
                char why[256];

                (void)kms_store_journal_remove(w->store, v->backend_id);
                if (v->version == 1)
                        return kms_errorf(errmsg, errlen, r, "the %s could not generate the %s key: %s",
                                          kms_backend_noun(ops->name), kms_algorithm_to_string(alg),
                                          kms_backend_explain(w->daemon, ops->name, r, why, sizeof(why)));
                return kms_errorf(errmsg, errlen, r, "the %s could not generate version %u of '%s': %s",
                                  kms_backend_noun(ops->name), v->version, name,
                                  kms_backend_explain(w->daemon, ops->name, r, why, sizeof(why)));
        }
        v->created = kms_now_unix();
        return 0;
}

void kms_lifecycle_discard(struct kms_worker *w, int b, const char *name, const struct kms_key_version_record *v)
{
        int r = b < 0 ? -ENODEV : w->daemon->backends[b]->ops->destroy(w->backends[b], v->backend_id);

        if (r < 0)
                log_error("key '%s': could not remove the new token object of version %u that was not recorded: "
                          "%s; kmsd removes it at start-up",
                          name, v->version, strerror(-r));
        else
                (void)kms_store_journal_remove(w->store, v->backend_id);
}

/* The next version's object, generated in k's backend before any lock
 * is taken (RSA-4096 takes seconds): v->version, backend_id, spki. */
static int rotation_generate(struct kms_worker *w, const struct kms_key_record *k, struct kms_key_version_record *v,
                             char *errmsg, size_t errlen)
{
        int b = kms_backend_index(w->daemon, k->backend);

        if (k->version_count >= KMS_MAX_VERSIONS)
                return kms_errorf(errmsg, errlen, -EDQUOT, "key '%s' has %u versions, the limit", k->name,
                                  k->version_count);
        if (b < 0)
                return kms_errorf(errmsg, errlen, KMS_E_BACKEND,
                                  "key '%s' is in the %s backend, which kmsd is not configured for", k->name,
                                  k->backend);
        v->version = k->version_count + 1;
        return kms_lifecycle_generate(w, b, k->algorithm, k->usages, k->name, v, errmsg, errlen);
}

/* Remove a generated object that no commit took. */
static void rotation_discard(struct kms_worker *w, const struct kms_key_record *k, const struct kms_key_version_record *v)
{
        kms_lifecycle_discard(w, kms_backend_index(w->daemon, k->backend), k->name, v);
}

/* In the open change: make v the primary of now (read in this
 * transaction) if it is still what the rotation started from (from), and
 * trim. KMS_E_STATE when the key moved on meanwhile. */
static int rotation_commit(struct kms_worker *w, const struct kms_key_record *now, uint32_t from,
                           const struct kms_key_version_record *v, uint32_t skip, struct doomed *g, char *errmsg,
                           size_t errlen)
{
        int r;

        if (now->state != KMS_KEY_ACTIVE && now->state != KMS_KEY_DISABLED)
                return kms_errorf(errmsg, errlen, KMS_E_STATE, "key '%s' is %s and cannot be rotated", now->name,
                                  kms_key_state_to_string(now->state));
        if (now->primary_version != from || now->version_count + 1 != v->version)
                return kms_errorf(errmsg, errlen, -EBUSY, "key '%s' is being rotated by another request", now->name);
        r = kms_store_version_add(w->store, now->id, from, v);
        if (r == -EEXIST)
                return kms_errorf(errmsg, errlen, -EBUSY, "key '%s' is being rotated by another request", now->name);
        if (r < 0)
                return kms_errorf(errmsg, errlen, r, "the metadata store failed: %s", kms_store_strerror(r));
        r = trim_in_change(w, now, keep_bound(w, now), v->version, 1, skip, g);
        if (r < 0)
                return kms_errorf(errmsg, errlen, r, "the metadata store failed: %s", kms_store_strerror(r));
        return 0;
}

int kms_lifecycle_rotate(struct kms_worker *w, struct kms_request *req, uint32_t expected_primary,
                         uint32_t *ret_version, char *errmsg, size_t errlen)
{
        const char *name = req->name;
        struct kms_key_record *k = NULL, *now = NULL;
        struct kms_key_version_record v = { 0 };
        struct doomed g = { .v = NULL };
        int r;

        *ret_version = 0;
        r = kms_store_key_get(w->store, name, false, &k);
        if (r < 0)
                return r == -ENOENT ? kms_errorf(errmsg, errlen, r, "no key named '%s'", name)
                                    : kms_errorf(errmsg, errlen, r, "the metadata store failed: %s", kms_store_strerror(r));
        if (expected_primary != 0 && k->primary_version != expected_primary) {
                snprintf(req->audit_details, sizeof(req->audit_details), "not rotated: rotated already");
                goto out; /* someone rotated already */
        }
        if (k->state == KMS_KEY_DESTROYED || k->state == KMS_KEY_REVOKED) {
                r = kms_errorf(errmsg, errlen, KMS_E_STATE, "key '%s' is %s and cannot be rotated", name,
                               kms_key_state_to_string(k->state));
                goto out;
        }
        r = kms_lifecycle_check_use(k, NULL, true, errmsg, errlen);
        if (r < 0)
                goto out;
        r = rotation_generate(w, k, &v, errmsg, errlen);
        if (r < 0)
                goto out;

        r = kms_change_begin(w, req, name, errmsg, errlen);
        if (r >= 0) {
                r = kms_store_key_get(w->store, name, true, &now);
                if (r < 0)
                        r = store_error(w, r, name, errmsg, errlen);
        }
        if (r >= 0 && expected_primary != 0 && now->primary_version != expected_primary) {
                /* The scheduler's and the use counter's requests are
                 * idempotent: someone rotated meanwhile. */
                kms_change_abort(w);
                rotation_discard(w, k, &v);
                snprintf(req->audit_details, sizeof(req->audit_details), "not rotated: rotated already");
                goto out;
        }
        if (r >= 0) {
                r = rotation_commit(w, now, k->primary_version, &v, 0, &g, errmsg, errlen);
                if (r >= 0) {
                        req->audit_version = v.version;
                        r = kms_change_record_request(w, req);
                        if (r < 0)
                                r = kms_errorf(errmsg, errlen, r, "the audit record could not be stored: %s",
                                               kms_store_strerror(r));
                }
                if (r >= 0)
                        r = kms_change_commit(w, errmsg, errlen);
                else
                        kms_change_abort(w);
        }
        if (r < 0) {
                req->audit_committed = false;
                rotation_discard(w, k, &v);
                goto out;
        }
        destroy_doomed(w, name, k->backend, &g);
        log_info("key '%s' rotated to version %u", name, v.version);
        kms_signal_key_rotated(w->daemon, name, v.version);
        *ret_version = v.version;
out:
        free(g.v);
        kms_key_version_record_clear(&v);
        kms_key_record_free(now);
        kms_key_record_free(k);
        return r;
}

/* ---- revocation ---------------------------------------------------------------- */

int kms_lifecycle_revoke(struct kms_worker *w, struct kms_request *req, uint32_t version, bool replace,
                         enum kms_revoke_reason reason, const char *note, uint32_t *ret_primary, char *errmsg,
                         size_t errlen)
{
        const char *name = req->name, *reason_s = kms_revoke_reason_to_string(reason);
        struct kms_key_record *k = NULL, *now = NULL;
        struct kms_key_version_record nv = { 0 };
        struct doomed g = { .v = NULL }, trimmed = { .v = NULL };
        uint32_t primary = 0;
        bool rotate = false;
        int64_t at = kms_now_unix();
        char details[64 + KMS_MAX_REVOKE_NOTE];
        int r;

        *ret_primary = 0;
        r = kms_store_key_get(w->store, name, true, &k);
        if (r < 0)
                return r == -ENOENT ? kms_errorf(errmsg, errlen, r, "no key named '%s'", name)
                                    : kms_errorf(errmsg, errlen, r, "the metadata store failed: %s", kms_store_strerror(r));
        /* A compromised primary of a scheduled key is replaced before it
         * goes, so callers keep a key to sign with: its object is made
         * now, outside the lock, and committed with the revocation. */
        rotate = version != 0 && version == k->primary_version && replace &&
                 (k->rotate_every || k->rotate_after_uses) && k->state == KMS_KEY_ACTIVE && k->destroy_at == 0;
        if (rotate) {
                r = rotation_generate(w, k, &nv, errmsg, errlen);
                if (r < 0)
                        goto out;
        }

        r = kms_change_begin(w, req, name, errmsg, errlen);
        if (r < 0)
                goto fail;
        r = kms_store_key_get(w->store, name, true, &now);
        if (r < 0) {
                r = store_error(w, r, name, errmsg, errlen);
                goto fail;
        }
        if (now->state == KMS_KEY_DESTROYED || now->state == KMS_KEY_REVOKED) {
                r = kms_errorf(errmsg, errlen, KMS_E_STATE, "key '%s' is already %s", name,
                               kms_key_state_to_string(now->state));
                goto abort;
        }
        if (version != 0) {
                const struct kms_key_version_record *v = NULL;

                for (size_t i = 0; i < now->n_versions; i++)
                        if (now->versions[i].version == version)
                                v = &now->versions[i];
                if (!v) {
                        r = kms_errorf(errmsg, errlen, -ENOENT, "key '%s' has no version %u (it has %u)", name,
                                       version, now->version_count);
                        goto abort;
                }
                if (v->state == KMS_KEY_REVOKED || v->state == KMS_KEY_DESTROYED) {
                        r = kms_errorf(errmsg, errlen, KMS_E_STATE, "key '%s' version %u is already %s", name,
                                       version, v->state == KMS_KEY_REVOKED ? "revoked" : "destroyed");
                        goto abort;
                }
        }
        if (rotate && now->primary_version == version && now->state == KMS_KEY_ACTIVE) {
                r = rotation_commit(w, now, version, &nv, version, &trimmed, errmsg, errlen);
                if (r < 0)
                        goto abort;
                snprintf(details, sizeof(details), "replaces version %u (%s)", version, reason_s);
                r = change_record(w, "rotation", "ReplaceVersion", name, nv.version, details);
                if (r < 0) {
                        r = store_error(w, r, name, errmsg, errlen);
                        goto fail;
                }
        } else if (rotate) {
                /* The key moved on meanwhile: revoke without replacing. */
                rotation_discard(w, k, &nv);
                rotate = false;
        }

        /* Exactly the versions this transaction ends: those usable now. */
        snprintf(details, sizeof(details), "reason=%s%s%s", reason_s, note && *note ? " note=" : "", note ? note : "");
        for (size_t i = 0; i < now->n_versions; i++) {
                const struct kms_key_version_record *v = &now->versions[i];
                bool trimmed_now = false;

                for (size_t j = 0; j < trimmed.n; j++)
                        trimmed_now |= trimmed.v[j].version == v->version;
                if ((version != 0 && v->version != version) || !usable_version(v) || trimmed_now)
                        continue;
                r = change_record(w, "revocation", "RevokeVersion", name, v->version, details);
                if (r < 0) {
                        r = store_error(w, r, name, errmsg, errlen);
                        goto fail;
                }
                doom(&g, v);
        }
        r = kms_store_version_revoke(w->store, now->id, version, at, reason_s, note);
        if (r < 0) {
                r = r == -ENOENT ? kms_errorf(errmsg, errlen, KMS_E_STATE, "key '%s' has nothing left to revoke", name)
                                 : kms_errorf(errmsg, errlen, r, "the metadata store failed (%s)", kms_store_strerror(r));
                goto abort;
        }
        req->audit_version = version;
        snprintf(req->audit_details, sizeof(req->audit_details), "reason=%s", reason_s);
        if (rotate)
                snprintf(req->audit_details + strlen(req->audit_details),
                         sizeof(req->audit_details) - strlen(req->audit_details), " replaced_by=%u", nv.version);
        r = finish_change(w, req, 0, errmsg, errlen);
        if (r < 0)
                goto fail;

        /* Committed: nothing uses these versions from here on. */
        destroy_doomed(w, name, now->backend, &g);
        destroy_doomed(w, name, now->backend, &trimmed);
        if (rotate) {
                log_info("key '%s' rotated to version %u before revoking version %u", name, nv.version, version);
                kms_signal_key_rotated(w->daemon, name, nv.version);
        }
        for (size_t i = 0; i < g.n; i++) {
                log_notice("key '%s' version %u revoked (%s%s%s)", name, g.v[i].version, reason_s,
                           note && *note ? ": " : "", note ? note : "");
                kms_signal_key_revoked(w->daemon, name, g.v[i].version, reason_s);
        }
        /* The usable primary afterwards. */
        kms_key_record_free(now);
        now = NULL;
        if (kms_store_key_get(w->store, name, true, &now) >= 0) {
                for (size_t i = 0; i < now->n_versions; i++)
                        if (now->versions[i].version == now->primary_version &&
                            now->versions[i].state == KMS_KEY_ACTIVE && now->state == KMS_KEY_ACTIVE)
                                primary = now->primary_version;
        }
        *ret_primary = primary;
        r = 0;
        goto out;
abort:
        kms_change_abort(w);
fail:
        req->audit_committed = false;
        if (rotate)
                rotation_discard(w, k, &nv);
out:
        free(g.v);
        free(trimmed.v);
        kms_key_version_record_clear(&nv);
        kms_key_record_free(now);
        kms_key_record_free(k);
        return r;
}

/* ---- destruction ---------------------------------------------------------------- */

int kms_lifecycle_destroy(struct kms_worker *w, struct kms_request *req, bool only_if_due, const char *by,
                          char *errmsg, size_t errlen)
{
        const char *name = req->name;
        struct kms_key_record *k = NULL;
        struct doomed g = { .v = NULL };
        int r;

        r = kms_change_begin(w, req, name, errmsg, errlen);
        if (r < 0)
                return r;
        r = kms_store_key_get(w->store, name, true, &k);
        if (r < 0)
                return store_error(w, r, name, errmsg, errlen);
        if (k->state == KMS_KEY_DESTROYED) {
                r = kms_errorf(errmsg, errlen, KMS_E_DESTROYED, "key '%s' was destroyed", name);
                goto abort;
        }
        /* Still scheduled, and due? It may have been cancelled meanwhile. */
        if (only_if_due && !(k->destroy_at != 0 && k->destroy_at <= kms_now_unix())) {
                snprintf(req->audit_details, sizeof(req->audit_details),
                         "not destroyed: no longer due (cancelled or rescheduled)");
                r = 0;
                goto abort;
        }
        for (size_t i = 0; i < k->n_versions; i++)
                if (usable_version(&k->versions[i]))
                        doom(&g, &k->versions[i]);
        /* Metadata first: from the commit on nothing will use the key,
         * even if kmsd dies before the token objects are gone. */
        r = kms_store_key_destroy(w->store, name);
        if (r < 0) {
                kms_change_abort(w);
                r = r == -ENOENT ? kms_errorf(errmsg, errlen, KMS_E_DESTROYED, "key '%s' was destroyed", name)
                                 : kms_errorf(errmsg, errlen, r, "the metadata store failed: %s", kms_store_strerror(r));
                goto out;
        }
        r = finish_change(w, req, 0, errmsg, errlen);
        if (r < 0)
                goto out;
        destroy_doomed(w, name, k->backend, &g);
        log_info("destroyed key '%s' (%s)", name, by);
        kms_signal_key_destroyed(w->daemon, name);
        goto out;
abort:
        kms_change_abort(w);
out:
        free(g.v);
        kms_key_record_free(k);
        return r;
}

/* ---- state, settings, scheduled destruction ------------------------------------ */

int kms_lifecycle_set_state(struct kms_worker *w, struct kms_request *req, bool enable, char *errmsg, size_t errlen)
{
        enum kms_key_state from = enable ? KMS_KEY_DISABLED : KMS_KEY_ACTIVE;
        enum kms_key_state to = enable ? KMS_KEY_ACTIVE : KMS_KEY_DISABLED;
        struct kms_key_record *k = NULL;
        int r;

        r = kms_change_begin(w, req, req->name, errmsg, errlen);
        if (r < 0)
                return r;
        r = kms_store_key_get(w->store, req->name, false, &k);
        if (r < 0)
                return store_error(w, r, req->name, errmsg, errlen);
        if (k->state != from) {
                r = kms_errorf(errmsg, errlen, KMS_E_STATE, "key '%s' is %s; only %s keys can be %s", req->name,
                               kms_key_state_to_string(k->state), kms_key_state_to_string(from),
                               enable ? "enabled" : "disabled");
                kms_change_abort(w);
                goto out;
        }
        r = kms_store_key_set_state(w->store, req->name, from, to);
        r = finish_change(w, req, r, errmsg, errlen);
        if (r < 0)
                goto out;
        log_info("key '%s' %s by uid %u", req->name, enable ? "enabled" : "disabled", (unsigned)req->caller.uid);
out:
        kms_key_record_free(k);
        return r;
}

int kms_lifecycle_set_options(struct kms_worker *w, struct kms_request *req, char *errmsg, size_t errlen)
{
        struct kms_key_record *k = NULL, *after = NULL;
        struct doomed g = { .v = NULL };
        int r;

        r = kms_change_begin(w, req, req->name, errmsg, errlen);
        if (r < 0)
                return r;
        r = kms_store_key_get(w->store, req->name, false, &k);
        if (r < 0)
                return store_error(w, r, req->name, errmsg, errlen);
        if (k->state != KMS_KEY_ACTIVE && k->state != KMS_KEY_DISABLED) {
                r = kms_errorf(errmsg, errlen, KMS_E_STATE, "key '%s' is %s", req->name,
                               kms_key_state_to_string(k->state));
                kms_change_abort(w);
                goto out;
        }
        r = kms_store_key_set_settings(w->store, req->name, req->rotate_every_set ? req->rotate_every : k->rotate_every,
                                       req->rotate_after_uses_set ? req->rotate_after_uses : k->rotate_after_uses,
                                       req->keep_versions_set ? req->keep_versions : k->keep_versions);
        if (r >= 0 && req->keep_versions_set) {
                r = kms_store_key_get(w->store, req->name, true, &after);
                if (r >= 0)
                        r = trim_in_change(w, after, keep_bound(w, after), after->primary_version, 0, 0, &g);
        }
        r = finish_change(w, req, r, errmsg, errlen);
        if (r < 0)
                goto out;
        destroy_doomed(w, req->name, k->backend, &g);
        for (size_t i = 0; i < g.n; i++)
                log_info("key '%s': version %u trimmed (keep_versions %u)", req->name, g.v[i].version,
                         keep_bound(w, after));
out:
        free(g.v);
        kms_key_record_free(after);
        kms_key_record_free(k);
        return r;
}

int kms_lifecycle_schedule_destroy(struct kms_worker *w, struct kms_request *req, int64_t at, char *errmsg,
                                   size_t errlen)
{
        struct kms_key_record *k = NULL;
        int r;

        r = kms_change_begin(w, req, req->name, errmsg, errlen);
        if (r < 0)
                return r;
        r = kms_store_key_get(w->store, req->name, false, &k);
        if (r < 0)
                return store_error(w, r, req->name, errmsg, errlen);
        if (k->state == KMS_KEY_DESTROYED)
                r = kms_errorf(errmsg, errlen, KMS_E_DESTROYED, "key '%s' was destroyed", req->name);
        else if (at == 0 && k->destroy_at == 0)
                r = kms_errorf(errmsg, errlen, KMS_E_STATE, "no destruction of key '%s' is scheduled", req->name);
        if (r < 0) {
                kms_change_abort(w);
                goto out;
        }
        r = kms_store_key_set_destroy_at(w->store, req->name, at);
        r = finish_change(w, req, r, errmsg, errlen);
        if (r < 0)
                goto out;
        if (at)
                log_info("key '%s' scheduled for destruction at %lld by uid %u", req->name, (long long)at,
                         (unsigned)req->caller.uid);
        else
                log_info("scheduled destruction of key '%s' cancelled by uid %u", req->name,
                         (unsigned)req->caller.uid);
out:
        kms_key_record_free(k);
        return r;
}
