/* Key lifecycle: rotation, trimming, revocation, destruction, use checks
 * and start-up reconciliation; see lifecycle.h. */
#include "lifecycle.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include "kms-bus.h"
#include "kms-error.h"
#include "kms-log.h"

#define KMS_LABEL_PREFIX "kmsd:"

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

/* Mark first, destroy second: called with the metadata already saying
 * the version is gone. A failure is logged; start-up retries it. */
static void destroy_object(struct kms_worker *w, const struct kms_key_record *k, uint32_t version,
                           const uint8_t *id)
{
        const char *name = k->name;
        int b = kms_backend_index(w->daemon, k->backend);
        int r = b < 0 ? -ENODEV : w->daemon->backends[b]->ops->destroy(w->backends[b], id);

        if (r < 0)
                log_error("key '%s' version %u: token objects not destroyed (%s); kmsd retries at start-up", name,
                          version, strerror(-r));
}

void kms_lifecycle_trim(struct kms_worker *w, const char *name)
{
        struct kms_key_record *k = NULL;
        size_t active = 0;

        if (kms_store_key_get(w->store, name, true, &k) < 0)
                return;
        if (k->keep_versions == 0)
                goto out;
        for (size_t i = 0; i < k->n_versions; i++)
                if (k->versions[i].state == KMS_KEY_ACTIVE || k->versions[i].state == KMS_KEY_LOST)
                        active++;
        /* Versions are in ascending order: the oldest go first. */
        for (size_t i = 0; i < k->n_versions && active > k->keep_versions; i++) {
                struct kms_key_version_record *v = &k->versions[i];

                if (v->version == k->primary_version || (v->state != KMS_KEY_ACTIVE && v->state != KMS_KEY_LOST))
                        continue;
                if (kms_store_version_set_state(w->store, k->id, v->version, KMS_KEY_DESTROYED) < 0)
                        break;
                destroy_object(w, k, v->version, v->backend_id);
                log_info("key '%s': version %u trimmed (keep_versions %u)", k->name, v->version, k->keep_versions);
                active--;
        }
out:
        kms_key_record_free(k);
}

int kms_lifecycle_rotate(struct kms_worker *w, const char *name, uint32_t expected_primary, uint32_t *ret_version,
                         char *errmsg, size_t errlen)
{
        const struct kms_backend_ops *ops;
        struct kms_backend_worker *bw;
        struct kms_key_record *k = NULL;
        struct kms_key_version_record v = { 0 };
        char label[KMS_MAX_KEY_NAME + 32];
        int r, b;

        r = kms_store_key_get(w->store, name, false, &k);
        if (r < 0)
                return r == -ENOENT ? kms_errorf(errmsg, errlen, r, "no key named '%s'", name)
                                    : kms_errorf(errmsg, errlen, r, "the metadata store failed: %s", strerror(-r));
        if (expected_primary != 0 && k->primary_version != expected_primary) {
                kms_key_record_free(k);
                *ret_version = 0; /* someone rotated already */
                return 0;
        }
        if (k->state == KMS_KEY_DESTROYED || k->state == KMS_KEY_REVOKED) {
                r = kms_errorf(errmsg, errlen, KMS_E_STATE, "key '%s' is %s and cannot be rotated", name,
                               kms_key_state_to_string(k->state));
                goto out;
        }
        r = kms_lifecycle_check_use(k, NULL, true, errmsg, errlen);
        if (r < 0)
                goto out;
        if (k->version_count >= KMS_MAX_VERSIONS) {
                r = kms_errorf(errmsg, errlen, -EDQUOT, "key '%s' has %u versions, the limit", name, k->version_count);
                goto out;
        }

        b = kms_backend_index(w->daemon, k->backend);
        if (b < 0) {
                r = kms_errorf(errmsg, errlen, KMS_E_BACKEND, "key '%s' is in the %s backend, which kmsd is not configured for",
                               name, k->backend);
                goto out;
        }
        ops = w->daemon->backends[b]->ops;
        bw = w->backends[b];

        /* Token first, metadata second. */
        v.version = k->version_count + 1;
        snprintf(label, sizeof(label), KMS_LABEL_PREFIX "%s#%u", name, v.version);
        r = kms_generation_begin(w->daemon, errmsg, errlen);
        if (r < 0)
                goto out;
        r = ops->generate(bw, k->algorithm, k->usages, label, v.backend_id, &v.spki, &v.spki_len);
        kms_generation_end(w->daemon);
        if (r < 0) {
                char why[256];

                r = kms_errorf(errmsg, errlen, r, "the %s could not generate version %u of '%s': %s",
                               kms_backend_noun(k->backend), v.version, name,
                               kms_backend_explain(w->daemon, k->backend, r, why, sizeof(why)));
                goto out;
        }
        v.created = kms_now_unix();
        r = kms_store_version_add(w->store, k->id, &v);
        if (r < 0) {
                int r2 = ops->destroy(bw, v.backend_id);
                if (r2 < 0)
                        log_error("key '%s': could not remove the new token object after a failed rotation: %s", name,
                                  strerror(-r2));
                r = r == -EEXIST ? kms_errorf(errmsg, errlen, -EBUSY, "key '%s' is being rotated by another request", name)
                                 : kms_errorf(errmsg, errlen, r, "the metadata store failed: %s", strerror(-r));
                goto out;
        }
        log_info("key '%s' rotated to version %u", name, v.version);
        kms_signal_key_rotated(w->daemon, name, v.version);
        *ret_version = v.version;
        kms_lifecycle_trim(w, name);
out:
        kms_key_version_record_clear(&v);
        kms_key_record_free(k);
        return r;
}

int kms_lifecycle_revoke(struct kms_worker *w, const struct kms_key_record *k, uint32_t version, bool replace,
                         enum kms_revoke_reason reason, const char *note, uint32_t *ret_primary, char *errmsg,
                         size_t errlen)
{
        const char *reason_s = kms_revoke_reason_to_string(reason);
        struct kms_key_record *after = NULL;
        uint32_t primary = k->primary_version, rotated = 0;
        int64_t now = kms_now_unix();
        int r;

        if (k->state == KMS_KEY_DESTROYED || k->state == KMS_KEY_REVOKED)
                return kms_errorf(errmsg, errlen, KMS_E_STATE, "key '%s' is already %s", k->name,
                                  kms_key_state_to_string(k->state));
        if (version != 0) {
                const struct kms_key_version_record *v = NULL;

                for (size_t i = 0; i < k->n_versions; i++)
                        if (k->versions[i].version == version)
                                v = &k->versions[i];
                if (!v)
                        return kms_errorf(errmsg, errlen, -ENOENT, "key '%s' has no version %u (it has %u)", k->name,
                                          version, k->version_count);
                if (v->state == KMS_KEY_REVOKED)
                        return kms_errorf(errmsg, errlen, KMS_E_STATE, "key '%s' version %u is already revoked", k->name,
                                          version);
                if (v->state == KMS_KEY_DESTROYED)
                        return kms_errorf(errmsg, errlen, KMS_E_STATE, "key '%s' version %u was destroyed", k->name,
                                          version);
                /* A compromised primary of a scheduled key is replaced before it
                 * goes, so callers keep a key to sign with. */
                if (version == primary && replace && (k->rotate_every || k->rotate_after_uses) &&
                    k->state == KMS_KEY_ACTIVE && k->destroy_at == 0) {
                        r = kms_lifecycle_rotate(w, k->name, primary, &rotated, errmsg, errlen);
                        if (r < 0)
                                return r;
                }
        }

        /* Metadata first: from this commit on nothing uses the versions. */
        r = kms_store_version_revoke(w->store, k->id, version, now, reason_s, note);
        if (r < 0)
                return kms_errorf(errmsg, errlen, r == -ENOENT ? KMS_E_STATE : r,
                                  r == -ENOENT ? "key '%s' has nothing left to revoke" : "the metadata store failed (%s)",
                                  r == -ENOENT ? k->name : strerror(-r));
        for (size_t i = 0; i < k->n_versions; i++) {
                const struct kms_key_version_record *v = &k->versions[i];

                if ((version != 0 && v->version != version) || (v->state != KMS_KEY_ACTIVE && v->state != KMS_KEY_LOST))
                        continue;
                destroy_object(w, k, v->version, v->backend_id);
                log_notice("key '%s' version %u revoked (%s%s%s)", k->name, v->version, reason_s, note && *note ? ": " : "",
                           note ? note : "");                {
                        char details[64 + KMS_MAX_REVOKE_NOTE];
                        const struct kms_audit_event ev = {
                                .kind = "revocation",
                                .uid = getuid(),
                                .pid = getpid(),
                                .exe = "kmsd",
                                .operation = "RevokeVersion",
                                .key = k->name,
                                .version = v->version,
                                .result = "ok",
                                .details = details,
                        };

                        snprintf(details, sizeof(details), "reason=%s%s%s", reason_s, note && *note ? " note=" : "",
                                 note ? note : "");
                        (void)kms_audit_log(w->daemon, &ev, false);
                }

                kms_signal_key_revoked(w->daemon, k->name, v->version, reason_s);
        }

        /* The usable primary afterwards. */
        *ret_primary = 0;
        if (kms_store_key_get(w->store, k->name, true, &after) >= 0) {
                for (size_t i = 0; i < after->n_versions; i++)
                        if (after->versions[i].version == after->primary_version &&
                            after->versions[i].state == KMS_KEY_ACTIVE && after->state == KMS_KEY_ACTIVE)
                                *ret_primary = after->primary_version;
                kms_key_record_free(after);
        }
        return 0;
}

int kms_lifecycle_destroy(struct kms_worker *w, const char *name, const char *by, char *errmsg, size_t errlen)
{
        struct kms_key_record *k = NULL;
        int r;

        r = kms_store_key_get(w->store, name, true, &k);
        if (r < 0)
                return kms_errorf(errmsg, errlen, r, r == -ENOENT ? "no key named '%s'" : "the metadata store failed for '%s'",
                                  name);
        if (k->state == KMS_KEY_DESTROYED) {
                kms_key_record_free(k);
                return kms_errorf(errmsg, errlen, KMS_E_DESTROYED, "key '%s' was destroyed", name);
        }
        /* Metadata first: from here on nothing will use the key, even if
         * kmsd dies before the token objects are gone. */
        r = kms_store_key_destroy(w->store, name);
        if (r < 0) {
                kms_key_record_free(k);
                if (r == -ENOENT) /* a concurrent destroy won */
                        return kms_errorf(errmsg, errlen, KMS_E_DESTROYED, "key '%s' was destroyed", name);
                return kms_errorf(errmsg, errlen, r, "the metadata store failed: %s", strerror(-r));
        }
        for (size_t i = 0; i < k->n_versions; i++)
                if (k->versions[i].state == KMS_KEY_ACTIVE || k->versions[i].state == KMS_KEY_LOST)
                        destroy_object(w, k, k->versions[i].version, k->versions[i].backend_id);
        kms_key_record_free(k);
        log_info("destroyed key '%s' (%s)", name, by);
        kms_signal_key_destroyed(w->daemon, name);
        return 0;
}

/* ---- reconciliation ------------------------------------------------------ */

struct seen_ids {
        uint8_t (*ids)[KMS_KEY_ID_BYTES];
        char (*labels)[KMS_MAX_KEY_NAME + 64];
        size_t n, cap;
};

static void collect(const uint8_t id[KMS_KEY_ID_BYTES], const char *label, void *userdata)
{
        struct seen_ids *s = userdata;

        for (size_t i = 0; i < s->n; i++)
                if (memcmp(s->ids[i], id, KMS_KEY_ID_BYTES) == 0)
                        return;
        if (s->n == s->cap) {
                size_t cap = s->cap ? 2 * s->cap : 64;
                void *a = realloc(s->ids, cap * sizeof(*s->ids)), *b;

                if (!a)
                        return;
                s->ids = a;
                b = realloc(s->labels, cap * sizeof(*s->labels));
                if (!b)
                        return;
                s->labels = b;
                s->cap = cap;
        }
        memcpy(s->ids[s->n], id, KMS_KEY_ID_BYTES);
        snprintf(s->labels[s->n], sizeof(s->labels[s->n]), "%s", label);
        s->n++;
}

/* A reconciliation finding, for the audit log. */
static void audit_reconcile(struct kms_daemon *d, const char *key, uint32_t version, const char *what)
{
        const struct kms_audit_event ev = {
                .kind = "reconcile",
                .uid = getuid(),
                .pid = getpid(),
                .exe = "kmsd",
                .operation = "Reconcile",
                .key = key,
                .version = version,
                .result = "ok",
                .details = what,
        };

        (void)kms_audit_log(d, &ev, false);
}

static void reconcile_one(struct kms_daemon *d, unsigned b)
{
        const struct kms_backend_ops *ops = d->backends[b]->ops;
        struct kms_backend_worker *bw = NULL;
        struct kms_store *store = NULL;
        struct kms_key_record *keys = NULL;
        struct seen_ids seen = { 0 };
        size_t n = 0, mine = 0, destroyed = 0, lost = 0, orphans = 0;
        bool incomplete = false;
        int r;

        if (kms_store_open(d->db_path, &store) < 0 || ops->worker_open(d->backends[b], &bw) < 0) {
                log_error("reconciliation skipped: cannot open the store or a token session");
                goto out;
        }
        r = ops->enumerate(bw, KMS_LABEL_PREFIX, collect, &seen);
        if (r < 0)
                log_warning("reconciliation: cannot list the token's objects: %s", strerror(-r));
        if (kms_store_key_list(store, true, &keys, &n) < 0) {
                log_error("reconciliation skipped: cannot read the keys");
                goto out;
        }
        for (size_t i = 0; i < n; i++) {
                struct kms_key_record *k = NULL;

                if (strcmp(keys[i].backend, ops->name) != 0)
                        continue;
                r = kms_store_key_get(store, keys[i].name, true, &k);
                if (r < 0) {
                        /* Its versions cannot be marked as known: removing
                         * "orphans" now could destroy its live objects. */
                        log_error("reconciliation (%s): cannot read key '%s' (%s); no orphan is removed this time",
                                  ops->name, keys[i].name, strerror(-r));
                        incomplete = true;
                        continue;
                }
                mine++;
                for (size_t j = 0; j < k->n_versions; j++) {
                        struct kms_key_version_record *v = &k->versions[j];
                        bool in_token = false;

                        for (size_t x = 0; x < seen.n; x++)
                                if (memcmp(seen.ids[x], v->backend_id, KMS_KEY_ID_BYTES) == 0) {
                                        in_token = true;
                                        /* Known to the metadata: not an orphan. */
                                        seen.labels[x][0] = '\0';
                                }
                        if (v->state == KMS_KEY_REVOKED || v->state == KMS_KEY_DESTROYED ||
                            k->state == KMS_KEY_DESTROYED) {
                                /* An interrupted revocation or destruction. */
                                if (in_token) {
                                        r = ops->destroy(bw, v->backend_id);
                                        log_warning("reconciliation: key '%s' version %u is %s but its objects were in "
                                                    "the token: %s",
                                                    k->name, v->version, kms_key_state_to_string(v->state),
                                                    r < 0 ? strerror(-r) : "destroyed");
                                        destroyed++;
                                        audit_reconcile(d, k->name, v->version,
                                                        "revoked or destroyed, but its objects were in the token: "
                                                        "destroyed them");
                                }
                                continue;
                        }
                        if (v->state == KMS_KEY_ACTIVE && ops->exists(bw, v->backend_id) == 0) {
                                if (kms_store_version_set_state(store, k->id, v->version, KMS_KEY_LOST) >= 0) {
                                        log_warning("reconciliation: key '%s' version %u: its private key is gone "
                                                    "from the token; marked lost",
                                                    k->name, v->version);
                                        lost++;
                                        audit_reconcile(d, k->name, v->version,
                                                        "its private key is gone from the token: marked lost");
                                }
                        }
                }
                kms_key_record_free(k);
        }
        /* kmsd-labelled objects that no metadata knows: a create or rotation
         * that died between the token and the store. */
        for (size_t x = 0; x < seen.n && !incomplete; x++) {
                if (!seen.labels[x][0])
                        continue;
                r = ops->destroy(bw, seen.ids[x]);
                log_warning("reconciliation: token object '%s' has no metadata: %s", seen.labels[x],
                            r < 0 ? strerror(-r) : "destroyed");
                orphans++;
                audit_reconcile(d, "", 0, "a token object without metadata (an interrupted create or rotation): destroyed");
        }
        log_info("reconciliation (%s): %zu key(s); %zu revoked/destroyed object set(s) removed, %zu version(s) lost, "
                 "%zu orphan(s) removed",
                 ops->name, mine, destroyed, lost, orphans);
out:
        free(seen.ids);
        free(seen.labels);
        kms_key_records_free(keys, n);
        if (bw)
                ops->worker_close(bw);
        kms_store_close(store);
}

void kms_lifecycle_reconcile(struct kms_daemon *d)
{
        for (unsigned b = 0; b < d->n_backends; b++)
                reconcile_one(d, b);
}
