/* Start-up reconciliation of each backend with the store: finish what a
 * crash interrupted (objects of ended versions still in the token, objects
 * no version knows, versions whose object is gone). Runs once, before any
 * request; see docs/lifecycle.md. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kms-error.h"
#include "kms-log.h"
#include "lifecycle.h"

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
        size_t n = 0, mine = 0, destroyed = 0, lost = 0, orphans = 0, unknown = 0;
        bool incomplete = false, enumerated = false, keep_journal = false;
        int r;

        if (kms_store_open(d->db_path, &store) < 0 || ops->worker_open(d->backends[b], &bw) < 0) {
                log_error("reconciliation skipped: cannot open the store or a token session");
                goto out;
        }
        r = ops->enumerate(bw, KMS_LABEL_PREFIX, collect, &seen);
        enumerated = r >= 0;
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
        /* kmsd-labelled objects that no metadata knows. Destroyed only
         * when the object journal proves kmsd made them (a create or
         * rotation that died between the token and the store); any other
         * is another kmsd's on the same token, or newer than a restored
         * database: reported, never touched. */
        for (size_t x = 0; x < seen.n && !incomplete; x++) {
                if (!seen.labels[x][0])
                        continue;
                r = kms_store_journal_has(store, ops->name, seen.ids[x]);
                if (r == 1) {
                        r = ops->destroy(bw, seen.ids[x]);
                        log_warning("reconciliation: token object '%s' has no metadata: %s", seen.labels[x],
                                    r < 0 ? strerror(-r) : "destroyed");
                        if (r >= 0)
                                (void)kms_store_journal_remove(store, seen.ids[x]);
                        else
                                keep_journal = true; /* the proof for the next start */
                        orphans++;
                        audit_reconcile(d, "", 0,
                                        "a token object without metadata (an interrupted create or rotation): "
                                        "destroyed");
                        continue;
                }
                log_warning("reconciliation: token object '%s' is labelled like kmsd's but this kmsd did not make it "
                            "(another kmsd on the same token, or a database older than the token): left alone",
                            seen.labels[x]);
                unknown++;
                audit_reconcile(d, "", 0,
                                "a kmsd-labelled token object this kmsd did not make (another instance, or a "
                                "database older than the token): left alone");
        }
        /* What is left in the journal never became an object (a crash
         * before the backend made it), or was handled above. */
        if (!incomplete && enumerated && !keep_journal)
                (void)kms_store_journal_clear(store, ops->name);
        log_info("reconciliation (%s): %zu key(s); %zu revoked/destroyed object set(s) removed, %zu version(s) lost, "
                 "%zu orphan(s) removed, %zu object(s) of others left alone",
                 ops->name, mine, destroyed, lost, orphans, unknown);
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
