/* The SQLite metadata store; see store.h. */
#include "store-internal.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <sqlite3.h>

#include "kms-error.h"
#include "kms-log.h"
#include "kms-util.h"

#define KEY_COLUMNS                                                                                          \
        "k.id, k.name, k.algorithm, k.backend, k.usages, k.owner, k.created, k.state, k.primary_version, "   \
        "(SELECT COUNT(*) FROM key_versions v2 WHERE v2.key_id = k.id), "                                     \
        "(SELECT v3.created FROM key_versions v3 WHERE v3.key_id = k.id AND v3.version = k.primary_version), " \
        "k.rotate_every, k.rotate_after_uses, k.keep_versions, k.destroy_at, "                                \
        "(SELECT v4.uses FROM key_versions v4 WHERE v4.key_id = k.id AND v4.version = k.primary_version)"
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
        /* What the scheduler looks at: scheduled destructions, and the
         * rotation settings of active keys; other keys' rows are skipped
         * before their columns (the subqueries) are computed. */
        [STMT_KEY_LIST_SCHEDULED] = "SELECT " KEY_COLUMNS " FROM keys k WHERE k.state != 'destroyed' AND"
                                    " (k.destroy_at != 0 OR (k.state = 'active' AND"
                                    " (k.rotate_every != 0 OR k.rotate_after_uses != 0)))",
        [STMT_KEY_COUNT] = "SELECT COUNT(*) FROM keys k WHERE (?1 OR k.state != 'destroyed') AND (?2 < 0 OR k.owner = ?2)",
        /* Pages of names for the lists (kms_store_key_page): an indexed
         * walk in name order, LIMIT ?2 rows (-1: none); by owner on the
         * index keys_owner, keys with a revocation on keys_revoked. */
        [STMT_KEY_PAGE] = "SELECT k.id, k.name, k.owner FROM keys k WHERE k.name > ?1 AND (?3 OR k.state != 'destroyed')"
                          " ORDER BY k.name LIMIT ?2",
        [STMT_KEY_PAGE_OWNER] = "SELECT k.id, k.name, k.owner FROM keys k WHERE k.owner = ?4 AND k.name > ?1"
                                " AND (?3 OR k.state != 'destroyed') ORDER BY k.name LIMIT ?2",
        [STMT_REVOKED_PAGE] = "SELECT k.id, k.name, k.owner FROM keys k WHERE k.has_revoked = 1 AND k.name > ?1"
                              " ORDER BY k.name LIMIT ?2",
        [STMT_REVOKED_PAGE_OWNER] = "SELECT k.id, k.name, k.owner FROM keys k WHERE k.owner = ?4 AND k.has_revoked = 1"
                                    " AND k.name > ?1 ORDER BY k.name LIMIT ?2",
        [STMT_VERSIONS_REVOKED_OF] = "SELECT " VERSION_COLUMNS " FROM key_versions v WHERE v.key_id = ?1"
                                     " AND v.state = 'revoked' ORDER BY v.version",
        [STMT_KEY_MARK_REVOKED] = "UPDATE keys SET has_revoked = 1 WHERE id = ?1",
        /* Compare-and-set: only from the state the caller read, and never
         * out of revoked or destroyed. */
        [STMT_KEY_SET_STATE] = "UPDATE keys SET state = ?2 WHERE name = ?1 AND state = ?3"
                               " AND state NOT IN ('revoked', 'destroyed')",
        [STMT_VERSION_USES] = "SELECT uses FROM key_versions WHERE key_id = ?1 AND version = ?2",
        [STMT_VERSION_ADD_USES] = "UPDATE key_versions SET uses = uses + ?3 WHERE key_id = ?1 AND version = ?2",
        [STMT_KEY_DESTROY] = "UPDATE keys SET state = 'destroyed', destroy_at = 0 WHERE name = ?1 AND state != 'destroyed'",
        [STMT_VERSIONS_DESTROY] = "UPDATE key_versions SET state = 'destroyed' WHERE state != 'revoked'"
                                  " AND key_id = (SELECT id FROM keys WHERE name = ?1)",
        [STMT_KEY_SET_SETTINGS] = "UPDATE keys SET rotate_every = ?2, rotate_after_uses = ?3, keep_versions = ?4"
                                  " WHERE name = ?1 AND state IN ('active', 'disabled')",
        [STMT_KEY_SET_DESTROY_AT] = "UPDATE keys SET destroy_at = ?2 WHERE name = ?1 AND state != 'destroyed'",
        /* Only a key that can still be used gets a new primary, and only
         * the primary the rotation started from is replaced. */
        [STMT_KEY_SET_PRIMARY] = "UPDATE keys SET primary_version = ?2 WHERE id = ?1 AND primary_version = ?3"
                                 " AND state IN ('active', 'disabled')",
        [STMT_VERSION_REVOKE] = "UPDATE key_versions SET state = 'revoked', revoked_at = ?3, revoke_reason = ?4, revoke_note = ?5"
                                " WHERE key_id = ?1 AND (?2 = 0 OR version = ?2) AND state IN ('active', 'lost')",
        /* A key is revoked once no version of it can be used again. */
        [STMT_KEY_SET_REVOKED] = "UPDATE keys SET state = 'revoked', destroy_at = 0 WHERE id = ?1 AND NOT EXISTS"
                                 " (SELECT 1 FROM key_versions WHERE key_id = ?1 AND state IN ('active', 'lost'))",
        /* Revoked and destroyed versions stay what they are. */
        [STMT_VERSION_SET_STATE] = "UPDATE key_versions SET state = ?3 WHERE key_id = ?1 AND version = ?2"
                                   " AND state IN ('active', 'lost')",
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
        [STMT_AUDIT_PENDING_ADD] = "INSERT INTO audit_pending (time_ms, kind, uid, pid, exe, operation, key, version,"
                                   " result, details) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        [STMT_AUDIT_PENDING_READ] = "SELECT id, time_ms, kind, uid, pid, exe, operation, key, version, result, details"
                                    " FROM audit_pending ORDER BY id LIMIT ?1",
        [STMT_AUDIT_PENDING_DELETE] = "DELETE FROM audit_pending WHERE id <= ?1",
        [STMT_JOURNAL_ADD] = "INSERT INTO object_journal (backend_id, backend, label, created) VALUES (?1, ?2, ?3, ?4)",
        [STMT_JOURNAL_REMOVE] = "DELETE FROM object_journal WHERE backend_id = ?1",
        [STMT_JOURNAL_CLEAR] = "DELETE FROM object_journal WHERE backend = ?1",
        [STMT_JOURNAL_HAS] = "SELECT 1 FROM object_journal WHERE backend_id = ?1 AND backend = ?2",
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

/* Records of changes, committed in the change's own transaction and
 * chained into the audit table by the audit writer afterwards (issue 13):
 * a crash leaves a change with its record or neither. */
static const char schema_v5[] = "CREATE TABLE audit_pending ("
                                " id INTEGER PRIMARY KEY,"
                                " time_ms INTEGER NOT NULL,"
                                " kind TEXT NOT NULL,"
                                " uid INTEGER NOT NULL,"
                                " pid INTEGER NOT NULL,"
                                " exe TEXT NOT NULL,"
                                " operation TEXT NOT NULL,"
                                " key TEXT NOT NULL,"
                                " version INTEGER NOT NULL,"
                                " result TEXT NOT NULL,"
                                " details TEXT NOT NULL"
                                ");"
                                /* The objects kmsd is about to make in a
                                 * backend, recorded before they exist and
                                 * removed with the commit that records
                                 * their version: what reconciliation may
                                 * prove is its own. */
                                "CREATE TABLE object_journal ("
                                " backend_id BLOB PRIMARY KEY,"
                                " backend TEXT NOT NULL,"
                                " label TEXT NOT NULL,"
                                " created INTEGER NOT NULL"
                                ") WITHOUT ROWID;";

/* Lists in pages (issue 17): ListKeys of a caller who may read only its
 * own keys walks the index on (owner, name); ListRevoked walks only the
 * keys that have a revoked version (has_revoked, set by the revocation
 * and never cleared: a revoked version stays revoked) and reads only
 * their revoked versions. */
static const char schema_v6[] = "ALTER TABLE keys ADD COLUMN has_revoked INTEGER NOT NULL DEFAULT 0;"
                                "UPDATE keys SET has_revoked = 1 WHERE id IN"
                                " (SELECT key_id FROM key_versions WHERE state = 'revoked');"
                                "CREATE INDEX keys_owner ON keys (owner, name);"
                                "CREATE INDEX keys_revoked ON keys (name) WHERE has_revoked = 1;"
                                "CREATE INDEX key_versions_revoked ON key_versions (key_id, version)"
                                " WHERE state = 'revoked';";

/* schema_steps[v] takes a database from version v to v + 1. */
static const char *const schema_steps[KMS_STORE_SCHEMA_VERSION] = {
        schema_v1, schema_v2, schema_v3, schema_v4, schema_v5, schema_v6,
};

static _Atomic uint64_t store_generation = 1;

uint64_t kms_store_generation(void)
{
        return store_generation;
}

/* COMMIT a write that changes what a key may do, and tell the caches. */
int kms_store_commit_change(struct kms_store *s)
{
        int r = kms_store_exec(s, "COMMIT");

        if (r < 0) {
                /* Never leave the transaction open: a later COMMIT on this
                 * connection would save what the caller undid. */
                (void)kms_store_exec(s, "ROLLBACK");
                return r;
        }
        store_generation++;
        return r;
}

/* The SQLite result behind the last KMS_E_STORE of this thread, for
 * kms_store_strerror(): each connection is used by one thread at a time,
 * and the sentence is made right after the failure, on the same thread. */
static _Thread_local int last_store_rc = SQLITE_ERROR;

/* Translate an SQLite result at the edge. Disk full, read-only and busy
 * have an errno of their own; corruption, I/O errors and the rest are
 * KMS_E_STORE (the bus error Store), told apart by kms_store_strerror(). */
int kms_store_sql_err(struct kms_store *s, int rc, const char *what)
{
        int ext = s && s->db ? sqlite3_extended_errcode(s->db) : rc;

        log_debug("store: %s: %s (%d)", what, s && s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc), ext);
        switch (rc & 0xff) {
        case SQLITE_CONSTRAINT:
                if (ext == SQLITE_CONSTRAINT_UNIQUE || ext == SQLITE_CONSTRAINT_PRIMARYKEY)
                        return -EEXIST;
                break;
        case SQLITE_FULL: return -ENOSPC;
        case SQLITE_READONLY: return -EROFS;
        case SQLITE_BUSY:
        case SQLITE_LOCKED: return -EBUSY;
        case SQLITE_NOMEM: return -ENOMEM;
        case SQLITE_IOERR:
                if (ext == SQLITE_IOERR_NOMEM)
                        return -ENOMEM;
                break;
        default: break;
        }
        last_store_rc = rc & 0xff;
        return KMS_E_STORE;
}

const char *kms_store_strerror(int r)
{
        static _Thread_local char other[160];

        switch (r) {
        case -ENOSPC: return "the disk that holds the database is full";
        case -EROFS:
                return "the database is read-only (a read-only file system, or kmsd may not write kmsd.db, its -wal "
                       "and -shm files or their folder)";
        case -EBUSY: return "the database is busy: another process holds a lock on it";
        case -ENOMEM: return "out of memory";
        case -EPROTO: return "the database was written by a newer kmsd (its schema version is higher)";
        case -EIO: /* kms_store_open() */
        case KMS_E_STORE: break;
        default: return strerror(-r);
        }
        switch (last_store_rc) {
        case SQLITE_CORRUPT:
        case SQLITE_NOTADB:
                return "the database is corrupt (SQLite: database disk image is malformed, or not a database); "
                       "restore kmsd.db from a backup";
        case SQLITE_IOERR: return "the database could not be read or written (an I/O error)";
        case SQLITE_CANTOPEN: return "the database file, or its -wal or -shm file, cannot be opened";
        case SQLITE_PERM:
        case SQLITE_AUTH: return "the database refused access (permissions)";
        default:
                snprintf(other, sizeof(other), "the database failed (SQLite: %s)", sqlite3_errstr(last_store_rc));
                return other;
        }
}

/* quick_check(TABLE) of one table: that table's b-tree and its indexes
 * (SQLite 3.33 and later), page by page; one "ok" row if sound, else one
 * row per problem. */
static int check_table(struct kms_store *s, const char *table, char *errbuf, size_t errlen)
{
        char *sql = sqlite3_mprintf("PRAGMA quick_check(\"%w\")", table);
        sqlite3_stmt *st = NULL;
        int rc, r = 0;

        if (!sql)
                return -ENOMEM;
        rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                const char *res = (const char *)sqlite3_column_text(st, 0);

                if (!res || strcmp(res, "ok") != 0) {
                        static const char header[] = "*** in database main ***\n";
                        char problem[200];

                        /* The first problem, on one line. */
                        if (res && strncmp(res, header, sizeof(header) - 1) == 0)
                                res += sizeof(header) - 1;
                        snprintf(problem, sizeof(problem), "%s", res ? res : "no answer");
                        problem[strcspn(problem, "\n")] = '\0';
                        last_store_rc = SQLITE_CORRUPT;
                        snprintf(errbuf, errlen,
                                 "the database is corrupt: table '%s' cannot be read (SQLite quick_check: %s); "
                                 "restore kmsd.db from a backup",
                                 table, problem);
                        r = KMS_E_STORE;
                }
        } else {
                r = kms_store_sql_err(s, rc, sql);
                snprintf(errbuf, errlen, "table '%s' cannot be checked: %s", table, kms_store_strerror(r));
        }
        sqlite3_finalize(st);
        sqlite3_free(sql);
        return r;
}

/* Every table is read through but the audit log, which grows without
 * bound (`kmsctl audit verify` checks it, and a damaged page of it makes
 * ExportAudit fail with Store): the keys and their versions, the session
 * bindings that keep AES-GCM keys from repeating, the audit keys, the
 * records waiting for the audit writer, the TPM's key blobs. */
int kms_store_check(struct kms_store *s, char *errbuf, size_t errlen)
{
        char (*tables)[64] = NULL;
        sqlite3_stmt *st = NULL;
        size_t n = 0;
        int rc, r = 0;

        /* The schema itself first: reading it needs page 1 and the
         * sqlite_schema table. */
        rc = sqlite3_prepare_v2(s->db,
                                "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
                                "AND name != 'audit' ORDER BY rowid",
                                -1, &st, NULL);
        while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
                const char *name = (const char *)sqlite3_column_text(st, 0);
                char (*p)[64];

                if (!name || strlen(name) >= sizeof(*tables))
                        continue; /* not one of kmsd's */
                p = realloc(tables, (n + 1) * sizeof(*tables));
                if (!p) {
                        r = -ENOMEM;
                        break;
                }
                tables = p;
                snprintf(tables[n++], sizeof(*tables), "%s", name);
                rc = SQLITE_OK;
        }
        if (r == 0 && rc != SQLITE_DONE) {
                r = kms_store_sql_err(s, rc, "list the tables");
                snprintf(errbuf, errlen, "the list of tables cannot be read: %s", kms_store_strerror(r));
        }
        sqlite3_finalize(st);
        if (r == -ENOMEM)
                snprintf(errbuf, errlen, "out of memory");
        for (size_t i = 0; r == 0 && i < n; i++)
                r = check_table(s, tables[i], errbuf, errlen);
        free(tables);
        return r;
}

sqlite3_stmt *kms_store_stmt(struct kms_store *s, enum stmt_id id)
{
        if (!s->stmt[id] && sqlite3_prepare_v3(s->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &s->stmt[id], NULL) != SQLITE_OK) {
                log_debug("store: prepare %d: %s", (int)id, sqlite3_errmsg(s->db));
                return NULL;
        }
        sqlite3_reset(s->stmt[id]);
        sqlite3_clear_bindings(s->stmt[id]);
        return s->stmt[id];
}

int kms_store_exec(struct kms_store *s, const char *sql)
{
        int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
        return rc == SQLITE_OK ? 0 : kms_store_sql_err(s, rc, sql);
}

static int migrate(struct kms_store *s)
{
        sqlite3_stmt *st = NULL;
        int version, r;

        if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK || sqlite3_step(st) != SQLITE_ROW) {
                sqlite3_finalize(st);
                return kms_store_sql_err(s, sqlite3_errcode(s->db), "user_version");
        }
        version = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        if (version == KMS_STORE_SCHEMA_VERSION)
                return 0;
        if (version > KMS_STORE_SCHEMA_VERSION) {
                log_debug("store: schema version %d is newer than %d", version, KMS_STORE_SCHEMA_VERSION);
                return -EPROTO;
        }
        r = kms_store_exec(s, "BEGIN IMMEDIATE");
        if (r < 0)
                return r;
        /* One step per version; each runs in this transaction. */
        for (int step = version; step < KMS_STORE_SCHEMA_VERSION; step++) {
                r = kms_store_exec(s, schema_steps[step]);
                if (r < 0)
                        goto fail;
        }
        {
                char pragma[48];

                snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", KMS_STORE_SCHEMA_VERSION);
                r = kms_store_exec(s, pragma);
        }
        if (r < 0)
                goto fail;
        return kms_store_exec(s, "COMMIT");
fail:
        (void)kms_store_exec(s, "ROLLBACK");
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
                r = kms_store_sql_err(s, rc, "open");
                kms_store_close(s);
                return r == KMS_E_STORE ? -EIO : r;
        }
        sqlite3_busy_timeout(s->db, 5000);
        /* WAL for concurrent readers; FULL sync because a key's metadata
         * must be durable once its reply went out. */
        r = kms_store_exec(s, "PRAGMA journal_mode = WAL");
        if (r >= 0)
                r = kms_store_exec(s, "PRAGMA synchronous = FULL");
        if (r >= 0)
                r = kms_store_exec(s, "PRAGMA foreign_keys = ON");
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

/* Run one prepared statement with the binds already made; the number of
 * rows it changed goes to *ret_changes if not NULL. */
int kms_store_step_done(struct kms_store *s, sqlite3_stmt *st, const char *what, int *ret_changes)
{
        int rc = sqlite3_step(st);

        sqlite3_reset(st);
        if (rc != SQLITE_DONE)
                return kms_store_sql_err(s, rc, what);
        if (ret_changes)
                *ret_changes = sqlite3_changes(s->db);
        return 0;
}

int kms_store_begin(struct kms_store *s)
{
        return kms_store_exec(s, "BEGIN IMMEDIATE");
}

int kms_store_commit(struct kms_store *s)
{
        int r = kms_store_exec(s, "COMMIT");

        if (r < 0)
                (void)kms_store_exec(s, "ROLLBACK");
        return r;
}

void kms_store_rollback(struct kms_store *s)
{
        if (!sqlite3_get_autocommit(s->db))
                (void)kms_store_exec(s, "ROLLBACK");
}

bool kms_store_in_transaction(struct kms_store *s)
{
        return !sqlite3_get_autocommit(s->db);
}

int kms_store_txn_begin(struct kms_store *s, bool *ret_own)
{
        *ret_own = sqlite3_get_autocommit(s->db) != 0;
        return *ret_own ? kms_store_exec(s, "BEGIN IMMEDIATE") : 0;
}

int kms_store_txn_end(struct kms_store *s, bool own, int r)
{
        if (!own)
                return r; /* the caller's transaction decides */
        if (r < 0) {
                (void)kms_store_exec(s, "ROLLBACK");
                return r;
        }
        return kms_store_commit_change(s);
}
