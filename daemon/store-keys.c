/* The store: keys and their versions; see store.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kms-error.h"
#include "kms-log.h"
#include "kms-util.h"
#include "store-internal.h"

/* Read the KEY_COLUMNS starting at column 0. */
static int read_key(sqlite3_stmt *st, struct kms_key_record *k)
{
        const char *name = (const char *)sqlite3_column_text(st, 1);
        const char *alg = (const char *)sqlite3_column_text(st, 2);
        const char *backend = (const char *)sqlite3_column_text(st, 3);
        const char *state = (const char *)sqlite3_column_text(st, 7);

        memset(k, 0, sizeof(*k));
        if (!name || !alg || !backend || !state || strlen(name) > KMS_MAX_KEY_NAME)
                return KMS_E_STORE;
        k->id = sqlite3_column_int64(st, 0);
        snprintf(k->name, sizeof(k->name), "%s", name);
        k->algorithm = kms_algorithm_from_string(alg);
        snprintf(k->backend, sizeof(k->backend), "%s", backend);
        k->usages = (unsigned)sqlite3_column_int(st, 4);
        k->owner = (uint32_t)sqlite3_column_int64(st, 5);
        k->created = sqlite3_column_int64(st, 6);
        k->state = kms_key_state_from_string(state);
        k->primary_version = (uint32_t)sqlite3_column_int64(st, 8);
        k->version_count = (uint32_t)sqlite3_column_int64(st, 9);
        k->primary_created = sqlite3_column_int64(st, 10);
        k->rotate_every = (uint64_t)sqlite3_column_int64(st, 11);
        k->rotate_after_uses = (uint64_t)sqlite3_column_int64(st, 12);
        k->keep_versions = (uint32_t)sqlite3_column_int64(st, 13);
        k->destroy_at = sqlite3_column_int64(st, 14);
        k->primary_uses = (uint64_t)sqlite3_column_int64(st, 15);
        if (k->algorithm == KMS_ALG_INVALID || k->state == KMS_KEY_STATE_INVALID)
                return KMS_E_STORE;
        return 0;
}

/* Read the VERSION_COLUMNS starting at column col. */
static int read_version(sqlite3_stmt *st, int col, bool want_spki, struct kms_key_version_record *v)
{
        const char *state = (const char *)sqlite3_column_text(st, col + 1);
        const void *id = sqlite3_column_blob(st, col + 3);

        memset(v, 0, sizeof(*v));
        v->version = (uint32_t)sqlite3_column_int64(st, col);
        v->state = kms_key_state_from_string(state);
        v->created = sqlite3_column_int64(st, col + 2);
        if (v->state == KMS_KEY_STATE_INVALID || !id || sqlite3_column_bytes(st, col + 3) != KMS_KEY_ID_BYTES)
                return KMS_E_STORE;
        memcpy(v->backend_id, id, KMS_KEY_ID_BYTES);
        v->uses = (uint64_t)sqlite3_column_int64(st, col + 5);
        v->revoked_at = sqlite3_column_int64(st, col + 6);
        snprintf(v->revoke_reason, sizeof(v->revoke_reason), "%s",
                 sqlite3_column_text(st, col + 7) ? (const char *)sqlite3_column_text(st, col + 7) : "");
        snprintf(v->revoke_note, sizeof(v->revoke_note), "%s",
                 sqlite3_column_text(st, col + 8) ? (const char *)sqlite3_column_text(st, col + 8) : "");
        if (want_spki) {
                const void *spki = sqlite3_column_blob(st, col + 4);
                int n = sqlite3_column_bytes(st, col + 4);

                if (!spki || n <= 0)
                        return KMS_E_STORE;
                v->spki = malloc((size_t)n);
                if (!v->spki)
                        return -ENOMEM;
                memcpy(v->spki, spki, (size_t)n);
                v->spki_len = (size_t)n;
        }
        return 0;
}

static int load_versions(struct kms_store *s, struct kms_key_record *k)
{
        sqlite3_stmt *st = kms_store_stmt(s, STMT_VERSIONS_OF);
        int rc, r;

        if (!st)
                return KMS_E_STORE;
        sqlite3_bind_int64(st, 1, k->id);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                struct kms_key_version_record *nv;

                if (k->n_versions >= KMS_MAX_VERSIONS)
                        break;
                nv = realloc(k->versions, (k->n_versions + 1) * sizeof(*nv));
                if (!nv)
                        return -ENOMEM;
                k->versions = nv;
                r = read_version(st, 0, true, &k->versions[k->n_versions]);
                if (r < 0) {
                        kms_key_version_record_clear(&k->versions[k->n_versions]);
                        return r;
                }
                k->n_versions++;
        }
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
                return kms_store_sql_err(s, rc, "versions");
        sqlite3_reset(st);
        return 0;
}

int kms_store_key_get(struct kms_store *s, const char *name, bool with_versions, struct kms_key_record **ret)
{
        sqlite3_stmt *st = kms_store_stmt(s, STMT_KEY_GET);
        struct kms_key_record *k;
        int rc, r;

        if (!st)
                return KMS_E_STORE;
        k = calloc(1, sizeof(*k));
        if (!k)
                return -ENOMEM;
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
                r = -ENOENT;
        else if (rc != SQLITE_ROW)
                r = kms_store_sql_err(s, rc, "key get");
        else
                r = read_key(st, k);
        sqlite3_reset(st);
        if (r >= 0 && with_versions)
                r = load_versions(s, k);
        if (r < 0) {
                kms_key_record_free(k);
                return r;
        }
        *ret = k;
        return 0;
}

int kms_store_key_get_version(struct kms_store *s, const char *name, uint32_t version, bool want_spki,
                              struct kms_key_record *ret_key, struct kms_key_version_record *ret_version)
{
        sqlite3_stmt *st = kms_store_stmt(s, STMT_KEY_GET_VERSION);
        struct kms_key_record k;
        struct kms_key_version_record v = { 0 };
        int rc, r;

        if (!st)
                return KMS_E_STORE;
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, version);
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
                r = -ENOENT;
        else if (rc != SQLITE_ROW)
                r = kms_store_sql_err(s, rc, "key get version");
        else {
                r = read_key(st, &k);
                if (r >= 0)
                        r = read_version(st, KEY_NCOLUMNS, want_spki, &v);
        }
        sqlite3_reset(st);
        if (r < 0) {
                kms_key_version_record_clear(&v);
                return r;
        }
        *ret_key = k;
        *ret_version = v;
        return 0;
}

int kms_store_key_limits_check(struct kms_store *s, const struct kms_key_limits *lim, int64_t owner,
                               enum kms_key_limit *ret_limit, size_t *ret_count)
{
        /* Root (owner 0) has no per-owner caps. */
        const struct {
                enum kms_key_limit limit;
                size_t max;
                int64_t owner; /* -1: everyone's keys */
                bool include_destroyed;
        } caps[] = {
                { KMS_KEY_LIMIT_KEYS, lim->max_keys, -1, false },
                { KMS_KEY_LIMIT_OWNER_KEYS, owner != 0 ? lim->max_owner_keys : 0, owner, false },
                { KMS_KEY_LIMIT_OWNER_NAMES, owner != 0 ? lim->max_owner_names : 0, owner, true },
        };

        for (size_t i = 0; i < ELEMENTSOF(caps); i++) {
                size_t n;
                int r;

                if (caps[i].max == 0)
                        continue;
                r = kms_store_key_count_owner(s, caps[i].include_destroyed, caps[i].owner, &n);
                if (r < 0)
                        return r;
                if (n >= caps[i].max) {
                        if (ret_limit)
                                *ret_limit = caps[i].limit;
                        if (ret_count)
                                *ret_count = n;
                        return -EDQUOT;
                }
        }
        return 0;
}

int kms_store_key_insert(struct kms_store *s, const struct kms_key_record *key, const struct kms_key_version_record *v1,
                         const struct kms_key_limits *lim, enum kms_key_limit *ret_limit, size_t *ret_count)
{
        sqlite3_stmt *st;
        int64_t id;
        bool own;
        int rc, r;

        if (!key || !v1 || !v1->spki || kms_key_name_check(key->name, NULL) < 0 ||
            !kms_algorithm_to_string(key->algorithm))
                return -EINVAL;
        r = kms_store_txn_begin(s, &own);
        if (r < 0)
                return r;
        if (lim) {
                r = kms_store_key_limits_check(s, lim, key->owner, ret_limit, ret_count);
                if (r < 0)
                        goto fail;
        }
        st = kms_store_stmt(s, STMT_KEY_INSERT);
        if (!st) {
                r = KMS_E_STORE;
                goto fail;
        }
        sqlite3_bind_text(st, 1, key->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, kms_algorithm_to_string(key->algorithm), -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, key->backend, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 4, (int)key->usages);
        sqlite3_bind_int64(st, 5, key->owner);
        sqlite3_bind_int64(st, 6, key->created);
        sqlite3_bind_text(st, 7, kms_key_state_to_string(KMS_KEY_ACTIVE), -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 8, v1->version);
        sqlite3_bind_int64(st, 9, (sqlite3_int64)key->rotate_every);
        sqlite3_bind_int64(st, 10, (sqlite3_int64)key->rotate_after_uses);
        sqlite3_bind_int64(st, 11, key->keep_versions);
        rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc != SQLITE_DONE) {
                r = kms_store_sql_err(s, rc, "key insert");
                goto fail;
        }
        id = sqlite3_last_insert_rowid(s->db);
        st = kms_store_stmt(s, STMT_VERSION_INSERT);
        if (!st) {
                r = KMS_E_STORE;
                goto fail;
        }
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_int64(st, 2, v1->version);
        sqlite3_bind_text(st, 3, kms_key_state_to_string(KMS_KEY_ACTIVE), -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, v1->created);
        sqlite3_bind_blob(st, 5, v1->backend_id, KMS_KEY_ID_BYTES, SQLITE_STATIC);
        sqlite3_bind_blob(st, 6, v1->spki, (int)v1->spki_len, SQLITE_STATIC);
        sqlite3_bind_int64(st, 7, (sqlite3_int64)v1->uses);
        rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc != SQLITE_DONE) {
                r = kms_store_sql_err(s, rc, "version insert");
                /* A duplicate CKA_ID is a backend problem, not a name clash. */
                if (r == -EEXIST)
                        r = KMS_E_STORE;
                goto fail;
        }
        r = kms_store_journal_remove(s, v1->backend_id);
fail:
        return kms_store_txn_end(s, own, r);
}

/* The keys the prepared statement st selects (KEY_COLUMNS), in its order. */
static int read_keys(struct kms_store *s, sqlite3_stmt *st, struct kms_key_record **ret, size_t *ret_n)
{
        struct kms_key_record *keys = NULL;
        size_t n = 0;
        int rc, r = 0;

        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                struct kms_key_record *nk;

                if (n >= KMS_MAX_KEYS)
                        break;
                nk = realloc(keys, (n + 1) * sizeof(*nk));
                if (!nk) {
                        r = -ENOMEM;
                        break;
                }
                keys = nk;
                r = read_key(st, &keys[n]);
                if (r < 0)
                        break;
                n++;
        }
        if (r >= 0 && rc != SQLITE_ROW && rc != SQLITE_DONE)
                r = kms_store_sql_err(s, rc, "key list");
        sqlite3_reset(st);
        if (r < 0) {
                kms_key_records_free(keys, n);
                return r;
        }
        *ret = keys;
        *ret_n = n;
        return 0;
}

int kms_store_key_list(struct kms_store *s, bool include_destroyed, struct kms_key_record **ret, size_t *ret_n)
{
        sqlite3_stmt *st = kms_store_stmt(s, STMT_KEY_LIST);

        if (!st)
                return KMS_E_STORE;
        sqlite3_bind_int(st, 1, include_destroyed);
        return read_keys(s, st, ret, ret_n);
}

int kms_store_key_list_scheduled(struct kms_store *s, struct kms_key_record **ret, size_t *ret_n)
{
        sqlite3_stmt *st = kms_store_stmt(s, STMT_KEY_LIST_SCHEDULED);

        if (!st)
                return KMS_E_STORE;
        return read_keys(s, st, ret, ret_n);
}

int kms_store_key_page(struct kms_store *s, const struct kms_key_page *q,
                       bool (*filter)(const char *name, uint32_t owner, void *userdata), void *userdata,
                       struct kms_key_page_entry **ret, size_t *ret_n)
{
        enum stmt_id id = q->revoked_only ? (q->owner >= 0 ? STMT_REVOKED_PAGE_OWNER : STMT_REVOKED_PAGE)
                                          : (q->owner >= 0 ? STMT_KEY_PAGE_OWNER : STMT_KEY_PAGE);
        sqlite3_stmt *st = kms_store_stmt(s, id);
        struct kms_key_page_entry *taken = NULL;
        size_t n = 0, cap = 0;
        int rc = SQLITE_DONE, r = 0;

        if (!st)
                return KMS_E_STORE;
        if (q->want == 0) {
                *ret = NULL;
                *ret_n = 0;
                return 0;
        }
        /* Parameters a statement does not have are not bound (SQLITE_RANGE). */
        sqlite3_bind_text(st, 1, q->after ? q->after : "", -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, q->max_rows ? (sqlite3_int64)q->max_rows : -1);
        sqlite3_bind_int(st, 3, q->include_destroyed);
        sqlite3_bind_int64(st, 4, q->owner);
        while (n < q->want && (rc = sqlite3_step(st)) == SQLITE_ROW) {
                const char *name = (const char *)sqlite3_column_text(st, 1);
                uint32_t owner = (uint32_t)sqlite3_column_int64(st, 2);
                struct kms_key_page_entry *p;

                if (!name || strlen(name) > KMS_MAX_KEY_NAME) {
                        r = KMS_E_STORE;
                        break;
                }
                if (filter && !filter(name, owner, userdata))
                        continue;
                if (n == cap) {
                        cap = cap ? 2 * cap : 64;
                        p = realloc(taken, cap * sizeof(*p));
                        if (!p) {
                                r = -ENOMEM;
                                break;
                        }
                        taken = p;
                }
                taken[n].id = sqlite3_column_int64(st, 0);
                snprintf(taken[n].name, sizeof(taken[n].name), "%s", name);
                taken[n].owner = owner;
                n++;
        }
        if (r >= 0 && rc != SQLITE_ROW && rc != SQLITE_DONE)
                r = kms_store_sql_err(s, rc, "key page");
        sqlite3_reset(st);
        if (r < 0) {
                free(taken);
                return r;
        }
        *ret = taken;
        *ret_n = n;
        return 0;
}

int kms_store_versions_revoked(struct kms_store *s, int64_t key_id, struct kms_key_version_record **ret, size_t *ret_n)
{
        sqlite3_stmt *st = kms_store_stmt(s, STMT_VERSIONS_REVOKED_OF);
        struct kms_key_version_record *v = NULL;
        size_t n = 0;
        int rc, r = 0;

        if (!st)
                return KMS_E_STORE;
        sqlite3_bind_int64(st, 1, key_id);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW && n < KMS_MAX_VERSIONS) {
                struct kms_key_version_record *nv = realloc(v, (n + 1) * sizeof(*nv));

                if (!nv) {
                        r = -ENOMEM;
                        break;
                }
                v = nv;
                r = read_version(st, 0, true, &v[n]);
                if (r < 0) {
                        kms_key_version_record_clear(&v[n]);
                        break;
                }
                n++;
        }
        if (r >= 0 && rc != SQLITE_ROW && rc != SQLITE_DONE)
                r = kms_store_sql_err(s, rc, "revoked versions");
        sqlite3_reset(st);
        if (r < 0) {
                kms_key_versions_free(v, n);
                return r;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

void kms_key_versions_free(struct kms_key_version_record *v, size_t n)
{
        if (!v)
                return;
        for (size_t i = 0; i < n; i++)
                kms_key_version_record_clear(&v[i]);
        free(v);
}

int kms_store_key_owner(struct kms_store *s, const char *name, uid_t *ret)
{
        sqlite3_stmt *st = kms_store_stmt(s, STMT_KEY_OWNER);
        int rc;

        if (!st)
                return KMS_E_STORE;
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
                *ret = (uid_t)sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        if (rc == SQLITE_DONE)
                return -ENOENT;
        return rc == SQLITE_ROW ? 0 : kms_store_sql_err(s, rc, "key owner");
}

int kms_store_key_count(struct kms_store *s, bool include_destroyed, size_t *ret)
{
        return kms_store_key_count_owner(s, include_destroyed, -1, ret);
}

int kms_store_key_count_owner(struct kms_store *s, bool include_destroyed, int64_t owner, size_t *ret)
{
        sqlite3_stmt *st = kms_store_stmt(s, STMT_KEY_COUNT);
        int rc;

        if (!st)
                return KMS_E_STORE;
        sqlite3_bind_int(st, 1, include_destroyed);
        sqlite3_bind_int64(st, 2, owner);
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW) {
                sqlite3_reset(st);
                return kms_store_sql_err(s, rc, "key count");
        }
        *ret = (size_t)sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        return 0;
}

/* One UPDATE by key name (in its own transaction or the caller's): -ENOENT
 * if no key has that name, KMS_E_STATE if the key is there but the
 * UPDATE's condition on its state did not hold. */
static int update_by_name(struct kms_store *s, sqlite3_stmt *st, const char *name, const char *what)
{
        int changes = 0, r;
        bool own;

        if (!st)
                return KMS_E_STORE;
        r = kms_store_txn_begin(s, &own);
        if (r < 0) {
                sqlite3_reset(st);
                return r;
        }
        r = kms_store_step_done(s, st, what, &changes);
        if (r >= 0 && changes == 0) {
                uid_t owner;

                r = kms_store_key_owner(s, name, &owner);
                r = r == -ENOENT ? -ENOENT : r < 0 ? r : KMS_E_STATE;
        }
        return kms_store_txn_end(s, own, r);
}

int kms_store_key_set_state(struct kms_store *s, const char *name, enum kms_key_state from,
                            enum kms_key_state state)
{
        const char *st_name = kms_key_state_to_string(state), *from_name = kms_key_state_to_string(from);
        sqlite3_stmt *st;

        if (!st_name || !from_name)
                return -EINVAL;
        st = kms_store_stmt(s, STMT_KEY_SET_STATE);
        if (st) {
                sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 2, st_name, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 3, from_name, -1, SQLITE_STATIC);
        }
        return update_by_name(s, st, name, "set state");
}

int kms_store_key_set_settings(struct kms_store *s, const char *name, uint64_t rotate_every,
                               uint64_t rotate_after_uses, uint32_t keep_versions)
{
        sqlite3_stmt *st = kms_store_stmt(s, STMT_KEY_SET_SETTINGS);

        if (st) {
                sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
                sqlite3_bind_int64(st, 2, (sqlite3_int64)rotate_every);
                sqlite3_bind_int64(st, 3, (sqlite3_int64)rotate_after_uses);
                sqlite3_bind_int64(st, 4, keep_versions);
        }
        return update_by_name(s, st, name, "set settings");
}

int kms_store_key_set_destroy_at(struct kms_store *s, const char *name, int64_t destroy_at)
{
        sqlite3_stmt *st = kms_store_stmt(s, STMT_KEY_SET_DESTROY_AT);

        if (st) {
                sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
                sqlite3_bind_int64(st, 2, destroy_at);
        }
        return update_by_name(s, st, name, "set destroy_at");
}

int kms_store_key_destroy(struct kms_store *s, const char *name)
{
        sqlite3_stmt *st;
        int changes = 0, r;
        bool own;

        r = kms_store_txn_begin(s, &own);
        if (r < 0)
                return r;
        st = kms_store_stmt(s, STMT_KEY_DESTROY);
        if (!st) {
                r = KMS_E_STORE;
                goto out;
        }
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        r = kms_store_step_done(s, st, "destroy key", &changes);
        if (r >= 0 && changes == 0)
                r = -ENOENT;
        if (r < 0)
                goto out;
        st = kms_store_stmt(s, STMT_VERSIONS_DESTROY);
        if (!st) {
                r = KMS_E_STORE;
                goto out;
        }
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        r = kms_store_step_done(s, st, "destroy versions", NULL);
out:
        return kms_store_txn_end(s, own, r);
}

int kms_store_version_add(struct kms_store *s, int64_t key_id, uint32_t expected_primary,
                          const struct kms_key_version_record *v)
{
        sqlite3_stmt *st;
        int changes = 0, r;
        bool own;

        if (!v || !v->spki || v->version == 0)
                return -EINVAL;
        r = kms_store_txn_begin(s, &own);
        if (r < 0)
                return r;
        /* The primary first: if the key moved on (revoked, destroyed,
         * rotated by someone else) nothing is inserted. */
        st = kms_store_stmt(s, STMT_KEY_SET_PRIMARY);
        if (!st) {
                r = KMS_E_STORE;
                goto out;
        }
        sqlite3_bind_int64(st, 1, key_id);
        sqlite3_bind_int64(st, 2, v->version);
        sqlite3_bind_int64(st, 3, expected_primary);
        r = kms_store_step_done(s, st, "set primary", &changes);
        if (r >= 0 && changes == 0)
                r = KMS_E_STATE;
        if (r < 0)
                goto out;
        st = kms_store_stmt(s, STMT_VERSION_INSERT);
        if (!st) {
                r = KMS_E_STORE;
                goto out;
        }
        sqlite3_bind_int64(st, 1, key_id);
        sqlite3_bind_int64(st, 2, v->version);
        sqlite3_bind_text(st, 3, kms_key_state_to_string(KMS_KEY_ACTIVE), -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, v->created);
        sqlite3_bind_blob(st, 5, v->backend_id, KMS_KEY_ID_BYTES, SQLITE_STATIC);
        sqlite3_bind_blob(st, 6, v->spki, (int)v->spki_len, SQLITE_STATIC);
        sqlite3_bind_int64(st, 7, 0);
        r = kms_store_step_done(s, st, "version add", NULL);
        if (r >= 0)
                r = kms_store_journal_remove(s, v->backend_id);
out:
        return kms_store_txn_end(s, own, r);
}

int kms_store_version_revoke(struct kms_store *s, int64_t key_id, uint32_t version, int64_t at, const char *reason,
                             const char *note)
{
        sqlite3_stmt *st;
        int changes = 0, r;
        bool own;

        r = kms_store_txn_begin(s, &own);
        if (r < 0)
                return r;
        st = kms_store_stmt(s, STMT_VERSION_REVOKE);
        if (!st) {
                r = KMS_E_STORE;
                goto out;
        }
        sqlite3_bind_int64(st, 1, key_id);
        sqlite3_bind_int64(st, 2, version);
        sqlite3_bind_int64(st, 3, at);
        sqlite3_bind_text(st, 4, reason, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, note ? note : "", -1, SQLITE_STATIC);
        r = kms_store_step_done(s, st, "revoke", &changes);
        if (r >= 0 && changes == 0)
                r = -ENOENT;
        if (r < 0)
                goto out;
        /* For ListRevoked's walk over the keys that have revocations. */
        st = kms_store_stmt(s, STMT_KEY_MARK_REVOKED);
        if (!st) {
                r = KMS_E_STORE;
                goto out;
        }
        sqlite3_bind_int64(st, 1, key_id);
        r = kms_store_step_done(s, st, "mark revoked", NULL);
        if (r < 0)
                goto out;
        st = kms_store_stmt(s, STMT_KEY_SET_REVOKED);
        if (!st) {
                r = KMS_E_STORE;
                goto out;
        }
        sqlite3_bind_int64(st, 1, key_id);
        r = kms_store_step_done(s, st, "revoke key", NULL);
out:
        return kms_store_txn_end(s, own, r);
}

int kms_store_version_set_state(struct kms_store *s, int64_t key_id, uint32_t version, enum kms_key_state state)
{
        const char *st_name = kms_key_state_to_string(state);
        sqlite3_stmt *st = kms_store_stmt(s, STMT_VERSION_SET_STATE);
        int changes = 0, r;
        bool own;

        if (!st_name || !st)
                return st_name ? KMS_E_STORE : -EINVAL;
        r = kms_store_txn_begin(s, &own);
        if (r < 0)
                return r;
        sqlite3_bind_int64(st, 1, key_id);
        sqlite3_bind_int64(st, 2, version);
        sqlite3_bind_text(st, 3, st_name, -1, SQLITE_STATIC);
        r = kms_store_step_done(s, st, "version state", &changes);
        if (r >= 0 && changes == 0)
                r = -ENOENT;
        return kms_store_txn_end(s, own, r);
}

int kms_store_version_add_uses(struct kms_store *s, int64_t key_id, uint32_t version, uint64_t n)
{
        sqlite3_stmt *st = kms_store_stmt(s, STMT_VERSION_ADD_USES);
        int rc;

        if (!st)
                return KMS_E_STORE;
        sqlite3_bind_int64(st, 1, key_id);
        sqlite3_bind_int64(st, 2, version);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)n);
        rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc != SQLITE_DONE)
                return kms_store_sql_err(s, rc, "add uses");
        return sqlite3_changes(s->db) == 0 ? -ENOENT : 0;
}


int kms_store_version_uses(struct kms_store *s, int64_t key_id, uint32_t version, uint64_t *ret)
{
        sqlite3_stmt *st = kms_store_stmt(s, STMT_VERSION_USES);
        int rc;

        if (!st)
                return KMS_E_STORE;
        sqlite3_bind_int64(st, 1, key_id);
        sqlite3_bind_int64(st, 2, version);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
                *ret = (uint64_t)sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        if (rc == SQLITE_DONE)
                return -ENOENT;
        return rc == SQLITE_ROW ? 0 : kms_store_sql_err(s, rc, "version uses");
}

int kms_store_journal_add(struct kms_store *s, const char *backend, const uint8_t id[KMS_KEY_ID_BYTES],
                          const char *label, int64_t created)
{
        sqlite3_stmt *st = kms_store_stmt(s, STMT_JOURNAL_ADD);

        if (!st)
                return KMS_E_STORE;
        sqlite3_bind_blob(st, 1, id, KMS_KEY_ID_BYTES, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, backend, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, label, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, created);
        return kms_store_step_done(s, st, "journal add", NULL);
}

int kms_store_journal_remove(struct kms_store *s, const uint8_t id[KMS_KEY_ID_BYTES])
{
        sqlite3_stmt *st = kms_store_stmt(s, STMT_JOURNAL_REMOVE);

        if (!st)
                return KMS_E_STORE;
        sqlite3_bind_blob(st, 1, id, KMS_KEY_ID_BYTES, SQLITE_STATIC);
        return kms_store_step_done(s, st, "journal remove", NULL);
}

int kms_store_journal_has(struct kms_store *s, const char *backend, const uint8_t id[KMS_KEY_ID_BYTES])
{
        sqlite3_stmt *st = kms_store_stmt(s, STMT_JOURNAL_HAS);
        int rc;

        if (!st)
                return KMS_E_STORE;
        sqlite3_bind_blob(st, 1, id, KMS_KEY_ID_BYTES, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, backend, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc == SQLITE_ROW)
                return 1;
        return rc == SQLITE_DONE ? 0 : kms_store_sql_err(s, rc, "journal has");
}

int kms_store_journal_clear(struct kms_store *s, const char *backend)
{
        sqlite3_stmt *st = kms_store_stmt(s, STMT_JOURNAL_CLEAR);

        if (!st)
                return KMS_E_STORE;
        sqlite3_bind_text(st, 1, backend, -1, SQLITE_STATIC);
        return kms_store_step_done(s, st, "journal clear", NULL);
}
