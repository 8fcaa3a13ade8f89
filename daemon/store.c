/* The SQLite metadata store; see store.h. */
#include "store.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <sqlite3.h>

#include "kms-error.h"
#include "kms-log.h"
#include "kms-util.h"

enum stmt_id {
        STMT_KEY_GET,
        STMT_KEY_GET_VERSION,
        STMT_VERSIONS_OF,
        STMT_KEY_INSERT,
        STMT_VERSION_INSERT,
        STMT_KEY_LIST,
        STMT_KEY_COUNT,
        STMT_KEY_SET_STATE,
        STMT_VERSION_ADD_USES,
        STMT_KEY_DESTROY,
        STMT_VERSIONS_DESTROY,
        STMT_KEY_SET_SETTINGS,
        STMT_KEY_SET_DESTROY_AT,
        STMT_KEY_SET_PRIMARY,
        STMT_VERSION_REVOKE,
        STMT_KEY_SET_REVOKED,
        STMT_VERSION_SET_STATE,
        STMT_KEY_OWNER,
        STMT_BINDING_ADD,
        STMT_AUDIT_HEAD,
        STMT_AUDIT_INSERT,
        STMT_AUDIT_READ,
        STMT_AUDIT_SINCE,
        STMT_AUDIT_KEYS,
        STMT_AUDIT_KEY_ADD,
        _STMT_MAX,
};

#define KEY_COLUMNS                                                                                          \
        "k.id, k.name, k.algorithm, k.backend, k.usages, k.owner, k.created, k.state, k.primary_version, "   \
        "(SELECT COUNT(*) FROM key_versions v2 WHERE v2.key_id = k.id), "                                     \
        "(SELECT v3.created FROM key_versions v3 WHERE v3.key_id = k.id AND v3.version = k.primary_version), " \
        "k.rotate_every, k.rotate_after_uses, k.keep_versions, k.destroy_at"
#define KEY_NCOLUMNS 15
#define VERSION_COLUMNS "v.version, v.state, v.created, v.backend_id, v.spki, v.uses, v.revoked_at, v.revoke_reason, v.revoke_note"

static const char *const stmt_sql[_STMT_MAX] = {
        [STMT_KEY_GET] = "SELECT " KEY_COLUMNS " FROM keys k WHERE k.name = ?1",
        [STMT_KEY_GET_VERSION] = "SELECT " KEY_COLUMNS ", " VERSION_COLUMNS
                                 " FROM keys k JOIN key_versions v ON v.key_id = k.id"
                                 " WHERE k.name = ?1 AND v.version = CASE ?2 WHEN 0 THEN k.primary_version ELSE ?2 END",
        [STMT_VERSIONS_OF] = "SELECT " VERSION_COLUMNS " FROM key_versions v WHERE v.key_id = ?1 ORDER BY v.version",
        [STMT_KEY_INSERT] = "INSERT INTO keys (name, algorithm, backend, usages, owner, created, state, primary_version,"
                            " rotate_every, rotate_after_uses, keep_versions)"
                            " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        [STMT_VERSION_INSERT] = "INSERT INTO key_versions (key_id, version, state, created, backend_id, spki, uses)"
                                " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        [STMT_KEY_LIST] = "SELECT " KEY_COLUMNS " FROM keys k WHERE ?1 OR k.state != 'destroyed' ORDER BY k.name",
        [STMT_KEY_COUNT] = "SELECT COUNT(*) FROM keys k WHERE (?1 OR k.state != 'destroyed') AND (?2 < 0 OR k.owner = ?2)",
        [STMT_KEY_SET_STATE] = "UPDATE keys SET state = ?2 WHERE name = ?1",
        [STMT_VERSION_ADD_USES] = "UPDATE key_versions SET uses = uses + ?3 WHERE key_id = ?1 AND version = ?2",
        [STMT_KEY_DESTROY] = "UPDATE keys SET state = 'destroyed', destroy_at = 0 WHERE name = ?1 AND state != 'destroyed'",
        [STMT_VERSIONS_DESTROY] = "UPDATE key_versions SET state = 'destroyed' WHERE state != 'revoked'"
                                  " AND key_id = (SELECT id FROM keys WHERE name = ?1)",
        [STMT_KEY_SET_SETTINGS] = "UPDATE keys SET rotate_every = ?2, rotate_after_uses = ?3, keep_versions = ?4 WHERE name = ?1",
        [STMT_KEY_SET_DESTROY_AT] = "UPDATE keys SET destroy_at = ?2 WHERE name = ?1",
        [STMT_KEY_SET_PRIMARY] = "UPDATE keys SET primary_version = ?2 WHERE id = ?1",
        [STMT_VERSION_REVOKE] = "UPDATE key_versions SET state = 'revoked', revoked_at = ?3, revoke_reason = ?4, revoke_note = ?5"
                                " WHERE key_id = ?1 AND (?2 = 0 OR version = ?2) AND state IN ('active', 'lost')",
        /* A key is revoked once no version of it can be used again. */
        [STMT_KEY_SET_REVOKED] = "UPDATE keys SET state = 'revoked', destroy_at = 0 WHERE id = ?1 AND NOT EXISTS"
                                 " (SELECT 1 FROM key_versions WHERE key_id = ?1 AND state IN ('active', 'lost'))",
        [STMT_VERSION_SET_STATE] = "UPDATE key_versions SET state = ?3 WHERE key_id = ?1 AND version = ?2",
        [STMT_KEY_OWNER] = "SELECT owner FROM keys WHERE name = ?1",
        [STMT_AUDIT_HEAD] = "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
        [STMT_AUDIT_INSERT] = "INSERT INTO audit (seq, time_ms, kind, uid, pid, exe, operation, key, version, result, "
                              "details, prev, hash, signature) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, "
                              "?12, ?13, ?14)",
        [STMT_AUDIT_READ] = "SELECT seq, time_ms, kind, uid, pid, exe, operation, key, version, result, details, prev, "
                            "hash, signature FROM audit WHERE seq >= ?1 AND (?2 = 0 OR seq <= ?2) ORDER BY seq LIMIT ?3",
        [STMT_AUDIT_SINCE] = "SELECT MIN(seq) FROM audit WHERE time_ms >= ?1",
        [STMT_AUDIT_KEYS] = "SELECT no, backend_id, spki FROM audit_keys ORDER BY no",
        [STMT_AUDIT_KEY_ADD] = "INSERT INTO audit_keys (no, backend_id, spki, created) VALUES (?1, ?2, ?3, ?4)",
        [STMT_BINDING_ADD] = "INSERT INTO session_bindings (binding, role, created) VALUES (?1, ?2, ?3)",
};

static const char schema_v1[] =
        "CREATE TABLE keys ("
        " id INTEGER PRIMARY KEY,"
        " name TEXT NOT NULL UNIQUE,"
        " algorithm TEXT NOT NULL,"
        " backend TEXT NOT NULL,"
        " usages INTEGER NOT NULL,"
        " owner INTEGER NOT NULL,"
        " created INTEGER NOT NULL,"
        " state TEXT NOT NULL,"
        " primary_version INTEGER NOT NULL);"
        "CREATE TABLE key_versions ("
        " key_id INTEGER NOT NULL REFERENCES keys(id),"
        " version INTEGER NOT NULL,"
        " state TEXT NOT NULL,"
        " created INTEGER NOT NULL,"
        " backend_id BLOB NOT NULL UNIQUE,"
        " spki BLOB NOT NULL,"
        " uses INTEGER NOT NULL DEFAULT 0,"
        " PRIMARY KEY (key_id, version));";

/* Lifecycle (issue 3): rotation settings, scheduled destruction,
 * revocation records. */
static const char schema_v2[] =
        "ALTER TABLE keys ADD COLUMN rotate_every INTEGER NOT NULL DEFAULT 0;"
        "ALTER TABLE keys ADD COLUMN rotate_after_uses INTEGER NOT NULL DEFAULT 0;"
        "ALTER TABLE keys ADD COLUMN keep_versions INTEGER NOT NULL DEFAULT 0;"
        "ALTER TABLE keys ADD COLUMN destroy_at INTEGER NOT NULL DEFAULT 0;"
        "ALTER TABLE key_versions ADD COLUMN revoked_at INTEGER NOT NULL DEFAULT 0;"
        "ALTER TABLE key_versions ADD COLUMN revoke_reason TEXT NOT NULL DEFAULT '';"
        "ALTER TABLE key_versions ADD COLUMN revoke_note TEXT NOT NULL DEFAULT '';";

/* Sessions (issue 4): every (key schedule binding, role) a session was
 * opened with, so that no two sessions ever get the same AES-GCM keys
 * (docs/sessions.md, "Key reuse"). */
static const char schema_v3[] = "CREATE TABLE session_bindings ("
                                " binding BLOB NOT NULL,"
                                " role INTEGER NOT NULL,"
                                " created INTEGER NOT NULL,"
                                " PRIMARY KEY (binding, role)"
                                ") WITHOUT ROWID;";

/* The audit log (issue 6): records and the audit keys. */
static const char schema_v4[] = "CREATE TABLE audit ("
                                " seq INTEGER PRIMARY KEY,"
                                " time_ms INTEGER NOT NULL,"
                                " kind TEXT NOT NULL,"
                                " uid INTEGER NOT NULL,"
                                " pid INTEGER NOT NULL,"
                                " exe TEXT NOT NULL,"
                                " operation TEXT NOT NULL,"
                                " key TEXT NOT NULL,"
                                " version INTEGER NOT NULL,"
                                " result TEXT NOT NULL,"
                                " details TEXT NOT NULL,"
                                " prev BLOB NOT NULL,"
                                " hash BLOB NOT NULL,"
                                " signature BLOB"
                                ");"
                                "CREATE INDEX audit_time ON audit (time_ms);"
                                "CREATE TABLE audit_keys ("
                                " no INTEGER PRIMARY KEY,"
                                " backend_id BLOB NOT NULL,"
                                " spki BLOB NOT NULL,"
                                " created INTEGER NOT NULL"
                                ");";

struct kms_store;
static int exec(struct kms_store *s, const char *sql);
static int step_done(struct kms_store *s, sqlite3_stmt *st, const char *what, int *ret_changes);

static _Atomic uint64_t store_generation = 1;

uint64_t kms_store_generation(void)
{
        return store_generation;
}

/* COMMIT a write that changes what a key may do, and tell the caches. */
static int commit_change(struct kms_store *s)
{
        int r = exec(s, "COMMIT");

        if (r < 0) {
                /* Never leave the transaction open: a later COMMIT on this
                 * connection would save what the caller undid. */
                (void)exec(s, "ROLLBACK");
                return r;
        }
        store_generation++;
        return r;
}

struct kms_store {
        sqlite3 *db;
        sqlite3_stmt *stmt[_STMT_MAX];
};

/* Translate an SQLite result at the edge. */
static int sql_err(struct kms_store *s, int rc, const char *what)
{
        int ext = s && s->db ? sqlite3_extended_errcode(s->db) : rc;

        log_debug("store: %s: %s (%d)", what, s && s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc), ext);
        switch (rc & 0xff) {
        case SQLITE_CONSTRAINT: return ext == SQLITE_CONSTRAINT_UNIQUE || ext == SQLITE_CONSTRAINT_PRIMARYKEY ? -EEXIST : KMS_E_STORE;
        case SQLITE_FULL: return -ENOSPC;
        case SQLITE_READONLY: return -EROFS;
        case SQLITE_BUSY:
        case SQLITE_LOCKED: return -EBUSY;
        case SQLITE_NOMEM: return -ENOMEM;
        default: return KMS_E_STORE;
        }
}

static sqlite3_stmt *stmt(struct kms_store *s, enum stmt_id id)
{
        if (!s->stmt[id] && sqlite3_prepare_v3(s->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &s->stmt[id], NULL) != SQLITE_OK) {
                log_debug("store: prepare %d: %s", (int)id, sqlite3_errmsg(s->db));
                return NULL;
        }
        sqlite3_reset(s->stmt[id]);
        sqlite3_clear_bindings(s->stmt[id]);
        return s->stmt[id];
}

static int exec(struct kms_store *s, const char *sql)
{
        int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
        return rc == SQLITE_OK ? 0 : sql_err(s, rc, sql);
}

static int migrate(struct kms_store *s)
{
        sqlite3_stmt *st = NULL;
        int version, r;

        if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK || sqlite3_step(st) != SQLITE_ROW) {
                sqlite3_finalize(st);
                return sql_err(s, sqlite3_errcode(s->db), "user_version");
        }
        version = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        if (version == KMS_STORE_SCHEMA_VERSION)
                return 0;
        if (version > KMS_STORE_SCHEMA_VERSION) {
                log_debug("store: schema version %d is newer than %d", version, KMS_STORE_SCHEMA_VERSION);
                return -EPROTO;
        }
        r = exec(s, "BEGIN IMMEDIATE");
        if (r < 0)
                return r;
        /* One step per version; each runs in this transaction. */
        if (version < 1) {
                r = exec(s, schema_v1);
                if (r < 0)
                        goto fail;
        }
        if (version < 2) {
                r = exec(s, schema_v2);
                if (r < 0)
                        goto fail;
        }
        if (version < 3) {
                r = exec(s, schema_v3);
                if (r < 0)
                        goto fail;
        }
        if (version < 4) {
                r = exec(s, schema_v4);
                if (r < 0)
                        goto fail;
        }
        r = exec(s, "PRAGMA user_version = 4");
        if (r < 0)
                goto fail;
        return exec(s, "COMMIT");
fail:
        (void)exec(s, "ROLLBACK");
        return r;
}

int kms_store_open(const char *path, struct kms_store **ret)
{
        struct kms_store *s;
        int rc, r;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
        if (rc != SQLITE_OK) {
                r = sql_err(s, rc, "open");
                kms_store_close(s);
                return r == KMS_E_STORE ? -EIO : r;
        }
        sqlite3_busy_timeout(s->db, 5000);
        /* WAL for concurrent readers; FULL sync because a key's metadata
         * must be durable once its reply went out. */
        r = exec(s, "PRAGMA journal_mode = WAL");
        if (r >= 0)
                r = exec(s, "PRAGMA synchronous = FULL");
        if (r >= 0)
                r = exec(s, "PRAGMA foreign_keys = ON");
        if (r >= 0)
                r = migrate(s);
        if (r < 0) {
                kms_store_close(s);
                return r;
        }
        *ret = s;
        return 0;
}

void kms_store_close(struct kms_store *s)
{
        if (!s)
                return;
        for (int i = 0; i < _STMT_MAX; i++)
                sqlite3_finalize(s->stmt[i]);
        sqlite3_close(s->db);
        free(s);
}

void kms_key_version_record_clear(struct kms_key_version_record *v)
{
        if (!v)
                return;
        free(v->spki);
        v->spki = NULL;
        v->spki_len = 0;
}

void kms_key_record_free(struct kms_key_record *k)
{
        if (!k)
                return;
        for (size_t i = 0; i < k->n_versions; i++)
                kms_key_version_record_clear(&k->versions[i]);
        free(k->versions);
        free(k);
}

void kms_key_records_free(struct kms_key_record *k, size_t n)
{
        if (!k)
                return;
        for (size_t i = 0; i < n; i++) {
                for (size_t j = 0; j < k[i].n_versions; j++)
                        kms_key_version_record_clear(&k[i].versions[j]);
                free(k[i].versions);
        }
        free(k);
}

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
        sqlite3_stmt *st = stmt(s, STMT_VERSIONS_OF);
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
                return sql_err(s, rc, "versions");
        sqlite3_reset(st);
        return 0;
}

int kms_store_key_get(struct kms_store *s, const char *name, bool with_versions, struct kms_key_record **ret)
{
        sqlite3_stmt *st = stmt(s, STMT_KEY_GET);
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
                r = sql_err(s, rc, "key get");
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
        sqlite3_stmt *st = stmt(s, STMT_KEY_GET_VERSION);
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
                r = sql_err(s, rc, "key get version");
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
        int rc, r;

        if (!key || !v1 || !v1->spki || kms_key_name_check(key->name, NULL) < 0 ||
            !kms_algorithm_to_string(key->algorithm))
                return -EINVAL;
        r = exec(s, "BEGIN IMMEDIATE");
        if (r < 0)
                return r;
        if (lim) {
                r = kms_store_key_limits_check(s, lim, key->owner, ret_limit, ret_count);
                if (r < 0)
                        goto fail;
        }
        st = stmt(s, STMT_KEY_INSERT);
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
                r = sql_err(s, rc, "key insert");
                goto fail;
        }
        id = sqlite3_last_insert_rowid(s->db);
        st = stmt(s, STMT_VERSION_INSERT);
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
                r = sql_err(s, rc, "version insert");
                /* A duplicate CKA_ID is a backend problem, not a name clash. */
                if (r == -EEXIST)
                        r = KMS_E_STORE;
                goto fail;
        }
        return commit_change(s);
fail:
        (void)exec(s, "ROLLBACK");
        return r;
}

int kms_store_key_list(struct kms_store *s, bool include_destroyed, struct kms_key_record **ret, size_t *ret_n)
{
        sqlite3_stmt *st = stmt(s, STMT_KEY_LIST);
        struct kms_key_record *keys = NULL;
        size_t n = 0;
        int rc, r = 0;

        if (!st)
                return KMS_E_STORE;
        sqlite3_bind_int(st, 1, include_destroyed);
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
                r = sql_err(s, rc, "key list");
        sqlite3_reset(st);
        if (r < 0) {
                kms_key_records_free(keys, n);
                return r;
        }
        *ret = keys;
        *ret_n = n;
        return 0;
}

int kms_store_key_owner(struct kms_store *s, const char *name, uid_t *ret)
{
        sqlite3_stmt *st = stmt(s, STMT_KEY_OWNER);
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
        return rc == SQLITE_ROW ? 0 : sql_err(s, rc, "key owner");
}

static void copy_text(char *dst, size_t len, sqlite3_stmt *st, int col)
{
        const unsigned char *t = sqlite3_column_text(st, col);

        snprintf(dst, len, "%s", t ? (const char *)t : "");
}

static void copy_blob(uint8_t *dst, size_t cap, size_t *ret_len, sqlite3_stmt *st, int col)
{
        const void *b = sqlite3_column_blob(st, col);
        size_t n = (size_t)sqlite3_column_bytes(st, col);

        if (n > cap)
                n = 0;
        if (b && n)
                memcpy(dst, b, n);
        if (ret_len)
                *ret_len = b ? n : 0;
}

int kms_store_audit_head(struct kms_store *s, uint64_t *ret_seq, uint8_t ret_hash[32])
{
        sqlite3_stmt *st = stmt(s, STMT_AUDIT_HEAD);
        int rc;

        if (!st)
                return KMS_E_STORE;
        *ret_seq = 0;
        memset(ret_hash, 0, 32);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                *ret_seq = (uint64_t)sqlite3_column_int64(st, 0);
                copy_blob(ret_hash, 32, NULL, st, 1);
        }
        sqlite3_reset(st);
        return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sql_err(s, rc, "audit head");
}

int kms_store_audit_append(struct kms_store *s, const struct kms_audit_row *rows, size_t n)
{
        int r = exec(s, "BEGIN IMMEDIATE");

        if (r < 0)
                return r;
        for (size_t i = 0; i < n && r >= 0; i++) {
                const struct kms_audit_row *a = &rows[i];
                sqlite3_stmt *st = stmt(s, STMT_AUDIT_INSERT);

                if (!st) {
                        r = KMS_E_STORE;
                        break;
                }
                sqlite3_bind_int64(st, 1, (sqlite3_int64)a->seq);
                sqlite3_bind_int64(st, 2, a->time_ms);
                sqlite3_bind_text(st, 3, a->kind, -1, SQLITE_STATIC);
                sqlite3_bind_int64(st, 4, a->uid);
                sqlite3_bind_int64(st, 5, a->pid);
                sqlite3_bind_text(st, 6, a->exe, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 7, a->operation, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 8, a->key, -1, SQLITE_STATIC);
                sqlite3_bind_int64(st, 9, a->version);
                sqlite3_bind_text(st, 10, a->result, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 11, a->details, -1, SQLITE_STATIC);
                sqlite3_bind_blob(st, 12, a->prev, 32, SQLITE_STATIC);
                sqlite3_bind_blob(st, 13, a->hash, 32, SQLITE_STATIC);
                if (a->sig_len)
                        sqlite3_bind_blob(st, 14, a->sig, (int)a->sig_len, SQLITE_STATIC);
                r = step_done(s, st, "audit insert", NULL);
        }
        if (r < 0) {
                (void)exec(s, "ROLLBACK");
                return r;
        }
        r = exec(s, "COMMIT");
        if (r < 0)
                (void)exec(s, "ROLLBACK");
        return r;
}

int kms_store_audit_read(struct kms_store *s, uint64_t from, uint64_t to, size_t limit,
                         int (*cb)(const struct kms_audit_row *row, void *userdata), void *userdata)
{
        sqlite3_stmt *st = stmt(s, STMT_AUDIT_READ);
        struct kms_audit_row *row;
        int rc, r = 0;

        if (!st)
                return KMS_E_STORE;
        row = malloc(sizeof(*row));
        if (!row)
                return -ENOMEM;
        sqlite3_bind_int64(st, 1, (sqlite3_int64)from);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)to);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)limit);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                memset(row, 0, sizeof(*row));
                row->seq = (uint64_t)sqlite3_column_int64(st, 0);
                row->time_ms = sqlite3_column_int64(st, 1);
                copy_text(row->kind, sizeof(row->kind), st, 2);
                row->uid = (uint32_t)sqlite3_column_int64(st, 3);
                row->pid = (int32_t)sqlite3_column_int64(st, 4);
                copy_text(row->exe, sizeof(row->exe), st, 5);
                copy_text(row->operation, sizeof(row->operation), st, 6);
                copy_text(row->key, sizeof(row->key), st, 7);
                row->version = (uint32_t)sqlite3_column_int64(st, 8);
                copy_text(row->result, sizeof(row->result), st, 9);
                copy_text(row->details, sizeof(row->details), st, 10);
                copy_blob(row->prev, 32, NULL, st, 11);
                copy_blob(row->hash, 32, NULL, st, 12);
                copy_blob(row->sig, sizeof(row->sig), &row->sig_len, st, 13);
                r = cb(row, userdata);
                if (r < 0)
                        break;
        }
        if (r >= 0 && rc != SQLITE_ROW && rc != SQLITE_DONE)
                r = sql_err(s, rc, "audit read");
        sqlite3_reset(st);
        free(row);
        return r < 0 ? r : 0;
}

int kms_store_audit_seq_since(struct kms_store *s, int64_t since_ms, uint64_t *ret)
{
        sqlite3_stmt *st = stmt(s, STMT_AUDIT_SINCE);
        int rc;

        if (!st)
                return KMS_E_STORE;
        sqlite3_bind_int64(st, 1, since_ms);
        rc = sqlite3_step(st);
        *ret = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(st, 0) : 0;
        sqlite3_reset(st);
        return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sql_err(s, rc, "audit since");
}

int kms_store_audit_keys(struct kms_store *s, struct kms_audit_key **ret, size_t *ret_n)
{
        sqlite3_stmt *st = stmt(s, STMT_AUDIT_KEYS);
        struct kms_audit_key *keys = NULL;
        size_t n = 0;
        int rc;

        if (!st)
                return KMS_E_STORE;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                struct kms_audit_key *grown = realloc(keys, (n + 1) * sizeof(*keys));

                if (!grown) {
                        sqlite3_reset(st);
                        free(keys);
                        return -ENOMEM;
                }
                keys = grown;
                memset(&keys[n], 0, sizeof(keys[n]));
                keys[n].no = (uint32_t)sqlite3_column_int64(st, 0);
                copy_blob(keys[n].id, KMS_KEY_ID_BYTES, NULL, st, 1);
                copy_blob(keys[n].spki, sizeof(keys[n].spki), &keys[n].spki_len, st, 2);
                n++;
        }
        sqlite3_reset(st);
        if (rc != SQLITE_DONE) {
                free(keys);
                return sql_err(s, rc, "audit keys");
        }
        *ret = keys;
        *ret_n = n;
        return 0;
}

int kms_store_audit_key_add(struct kms_store *s, const struct kms_audit_key *k)
{
        sqlite3_stmt *st = stmt(s, STMT_AUDIT_KEY_ADD);

        if (!st)
                return KMS_E_STORE;
        sqlite3_bind_int64(st, 1, k->no);
        sqlite3_bind_blob(st, 2, k->id, KMS_KEY_ID_BYTES, SQLITE_STATIC);
        sqlite3_bind_blob(st, 3, k->spki, (int)k->spki_len, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, kms_now_unix());
        return step_done(s, st, "audit key", NULL);
}

int kms_store_session_binding_add(struct kms_store *s, const uint8_t *binding, size_t len, int role, int64_t created)
{
        sqlite3_stmt *st = stmt(s, STMT_BINDING_ADD);

        if (!st)
                return KMS_E_STORE;
        sqlite3_bind_blob(st, 1, binding, (int)len, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, role);
        sqlite3_bind_int64(st, 3, created);
        return step_done(s, st, "session binding", NULL);
}

int kms_store_key_count(struct kms_store *s, bool include_destroyed, size_t *ret)
{
        return kms_store_key_count_owner(s, include_destroyed, -1, ret);
}

int kms_store_key_count_owner(struct kms_store *s, bool include_destroyed, int64_t owner, size_t *ret)
{
        sqlite3_stmt *st = stmt(s, STMT_KEY_COUNT);
        int rc;

        if (!st)
                return KMS_E_STORE;
        sqlite3_bind_int(st, 1, include_destroyed);
        sqlite3_bind_int64(st, 2, owner);
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW) {
                sqlite3_reset(st);
                return sql_err(s, rc, "key count");
        }
        *ret = (size_t)sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        return 0;
}

/* Run one prepared statement with the binds already made; the number of
 * rows it changed goes to *ret_changes if not NULL. */
static int step_done(struct kms_store *s, sqlite3_stmt *st, const char *what, int *ret_changes)
{
        int rc = sqlite3_step(st);

        sqlite3_reset(st);
        if (rc != SQLITE_DONE)
                return sql_err(s, rc, what);
        if (ret_changes)
                *ret_changes = sqlite3_changes(s->db);
        return 0;
}

/* One UPDATE by key name in its own transaction; -ENOENT if no key. */
static int update_by_name(struct kms_store *s, sqlite3_stmt *st, const char *what)
{
        int changes = 0, r;

        if (!st)
                return KMS_E_STORE;
        r = exec(s, "BEGIN IMMEDIATE");
        if (r < 0) {
                sqlite3_reset(st);
                return r;
        }
        r = step_done(s, st, what, &changes);
        if (r >= 0 && changes == 0)
                r = -ENOENT;
        if (r < 0) {
                (void)exec(s, "ROLLBACK");
                return r;
        }
        return commit_change(s);
}

int kms_store_key_set_state(struct kms_store *s, const char *name, enum kms_key_state state)
{
        const char *st_name = kms_key_state_to_string(state);
        sqlite3_stmt *st;

        if (!st_name)
                return -EINVAL;
        st = stmt(s, STMT_KEY_SET_STATE);
        if (st) {
                sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 2, st_name, -1, SQLITE_STATIC);
        }
        return update_by_name(s, st, "set state");
}

int kms_store_key_set_settings(struct kms_store *s, const char *name, uint64_t rotate_every,
                               uint64_t rotate_after_uses, uint32_t keep_versions)
{
        sqlite3_stmt *st = stmt(s, STMT_KEY_SET_SETTINGS);

        if (st) {
                sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
                sqlite3_bind_int64(st, 2, (sqlite3_int64)rotate_every);
                sqlite3_bind_int64(st, 3, (sqlite3_int64)rotate_after_uses);
                sqlite3_bind_int64(st, 4, keep_versions);
        }
        return update_by_name(s, st, "set settings");
}

int kms_store_key_set_destroy_at(struct kms_store *s, const char *name, int64_t destroy_at)
{
        sqlite3_stmt *st = stmt(s, STMT_KEY_SET_DESTROY_AT);

        if (st) {
                sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
                sqlite3_bind_int64(st, 2, destroy_at);
        }
        return update_by_name(s, st, "set destroy_at");
}

int kms_store_key_destroy(struct kms_store *s, const char *name)
{
        sqlite3_stmt *st;
        int changes = 0, r;

        r = exec(s, "BEGIN IMMEDIATE");
        if (r < 0)
                return r;
        st = stmt(s, STMT_KEY_DESTROY);
        if (!st) {
                r = KMS_E_STORE;
                goto fail;
        }
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        r = step_done(s, st, "destroy key", &changes);
        if (r >= 0 && changes == 0)
                r = -ENOENT;
        if (r < 0)
                goto fail;
        st = stmt(s, STMT_VERSIONS_DESTROY);
        if (!st) {
                r = KMS_E_STORE;
                goto fail;
        }
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        r = step_done(s, st, "destroy versions", NULL);
        if (r < 0)
                goto fail;
        return commit_change(s);
fail:
        (void)exec(s, "ROLLBACK");
        return r;
}

int kms_store_version_add(struct kms_store *s, int64_t key_id, const struct kms_key_version_record *v)
{
        sqlite3_stmt *st;
        int changes = 0, r;

        if (!v || !v->spki || v->version == 0)
                return -EINVAL;
        r = exec(s, "BEGIN IMMEDIATE");
        if (r < 0)
                return r;
        st = stmt(s, STMT_VERSION_INSERT);
        if (!st) {
                r = KMS_E_STORE;
                goto fail;
        }
        sqlite3_bind_int64(st, 1, key_id);
        sqlite3_bind_int64(st, 2, v->version);
        sqlite3_bind_text(st, 3, kms_key_state_to_string(KMS_KEY_ACTIVE), -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, v->created);
        sqlite3_bind_blob(st, 5, v->backend_id, KMS_KEY_ID_BYTES, SQLITE_STATIC);
        sqlite3_bind_blob(st, 6, v->spki, (int)v->spki_len, SQLITE_STATIC);
        sqlite3_bind_int64(st, 7, 0);
        r = step_done(s, st, "version add", NULL);
        if (r < 0)
                goto fail;
        st = stmt(s, STMT_KEY_SET_PRIMARY);
        if (!st) {
                r = KMS_E_STORE;
                goto fail;
        }
        sqlite3_bind_int64(st, 1, key_id);
        sqlite3_bind_int64(st, 2, v->version);
        r = step_done(s, st, "set primary", &changes);
        if (r >= 0 && changes == 0)
                r = -ENOENT;
        if (r < 0)
                goto fail;
        return commit_change(s);
fail:
        (void)exec(s, "ROLLBACK");
        return r;
}

int kms_store_version_revoke(struct kms_store *s, int64_t key_id, uint32_t version, int64_t at, const char *reason,
                             const char *note)
{
        sqlite3_stmt *st;
        int changes = 0, r;

        r = exec(s, "BEGIN IMMEDIATE");
        if (r < 0)
                return r;
        st = stmt(s, STMT_VERSION_REVOKE);
        if (!st) {
                r = KMS_E_STORE;
                goto fail;
        }
        sqlite3_bind_int64(st, 1, key_id);
        sqlite3_bind_int64(st, 2, version);
        sqlite3_bind_int64(st, 3, at);
        sqlite3_bind_text(st, 4, reason, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, note ? note : "", -1, SQLITE_STATIC);
        r = step_done(s, st, "revoke", &changes);
        if (r >= 0 && changes == 0)
                r = -ENOENT;
        if (r < 0)
                goto fail;
        st = stmt(s, STMT_KEY_SET_REVOKED);
        if (!st) {
                r = KMS_E_STORE;
                goto fail;
        }
        sqlite3_bind_int64(st, 1, key_id);
        r = step_done(s, st, "revoke key", NULL);
        if (r < 0)
                goto fail;
        return commit_change(s);
fail:
        (void)exec(s, "ROLLBACK");
        return r;
}

int kms_store_version_set_state(struct kms_store *s, int64_t key_id, uint32_t version, enum kms_key_state state)
{
        const char *st_name = kms_key_state_to_string(state);
        sqlite3_stmt *st = stmt(s, STMT_VERSION_SET_STATE);
        int changes = 0, r;

        if (!st_name || !st)
                return st_name ? KMS_E_STORE : -EINVAL;
        r = exec(s, "BEGIN IMMEDIATE");
        if (r < 0)
                return r;
        sqlite3_bind_int64(st, 1, key_id);
        sqlite3_bind_int64(st, 2, version);
        sqlite3_bind_text(st, 3, st_name, -1, SQLITE_STATIC);
        r = step_done(s, st, "version state", &changes);
        if (r >= 0 && changes == 0)
                r = -ENOENT;
        if (r < 0) {
                (void)exec(s, "ROLLBACK");
                return r;
        }
        return commit_change(s);
}

int kms_store_version_add_uses(struct kms_store *s, int64_t key_id, uint32_t version, uint64_t n)
{
        sqlite3_stmt *st = stmt(s, STMT_VERSION_ADD_USES);
        int rc;

        if (!st)
                return KMS_E_STORE;
        sqlite3_bind_int64(st, 1, key_id);
        sqlite3_bind_int64(st, 2, version);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)n);
        rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc != SQLITE_DONE)
                return sql_err(s, rc, "add uses");
        return sqlite3_changes(s->db) == 0 ? -ENOENT : 0;
}

int kms_store_begin(struct kms_store *s)
{
        return exec(s, "BEGIN IMMEDIATE");
}

int kms_store_commit(struct kms_store *s)
{
        int r = exec(s, "COMMIT");

        if (r < 0)
                (void)exec(s, "ROLLBACK");
        return r;
}
