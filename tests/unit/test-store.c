/* Unit tests for daemon/store.c on a real SQLite database in a temporary
 * folder: schema creation, insert/get/list/count, state changes, the
 * version lookup of the signing path, use counters and persistence. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "kms-error.h"
#include "kms-util.h"
#include "store.h"
#include "store-internal.h" /* kms_store_exec */

struct fixture {
        char dir[64];
        char path[128];
        struct kms_store *store;
};

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));

        if (!f)
                return -1;
        snprintf(f->dir, sizeof(f->dir), "/tmp/kmsd-test-store.XXXXXX");
        if (!mkdtemp(f->dir))
                return -1;
        snprintf(f->path, sizeof(f->path), "%s/" KMS_STORE_FILE, f->dir);
        if (kms_store_open(f->path, &f->store) < 0)
                return -1;
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;
        char cmd[200];

        if (!f)
                return 0;
        kms_store_close(f->store);
        /* kmsd.db, -wal, -shm */
        snprintf(cmd, sizeof(cmd), "%s-wal", f->path);
        unlink(cmd);
        snprintf(cmd, sizeof(cmd), "%s-shm", f->path);
        unlink(cmd);
        unlink(f->path);
        rmdir(f->dir);
        free(f);
        return 0;
}

static void make_key(const char *name, struct kms_key_record *k, struct kms_key_version_record *v, uint8_t *spki,
                     size_t spki_len, uint8_t id_byte)
{
        memset(k, 0, sizeof(*k));
        memset(v, 0, sizeof(*v));
        snprintf(k->name, sizeof(k->name), "%s", name);
        k->algorithm = KMS_ALG_EC_P256;
        snprintf(k->backend, sizeof(k->backend), "pkcs11");
        k->usages = KMS_USAGE_SIGN | KMS_USAGE_DERIVE;
        k->owner = 1000;
        k->created = 1700000000;
        k->state = KMS_KEY_ACTIVE;
        v->version = 1;
        v->state = KMS_KEY_ACTIVE;
        v->created = 1700000000;
        memset(v->backend_id, id_byte, KMS_KEY_ID_BYTES);
        for (size_t i = 0; i < spki_len; i++)
                spki[i] = (uint8_t)(id_byte + i);
        v->spki = spki;
        v->spki_len = spki_len;
        v->uses = 0;
}

static void insert(struct kms_store *s, const char *name, uint8_t id_byte)
{
        struct kms_key_record k;
        struct kms_key_version_record v;
        uint8_t spki[91];

        make_key(name, &k, &v, spki, sizeof(spki), id_byte);
        assert_int_equal(kms_store_key_insert(s, &k, &v, NULL, NULL, NULL), 0);
}

static int64_t sql_int(const char *path, const char *sql)
{
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        int64_t v;

        assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        sqlite3_close(db);
        return v;
}

static char *sql_text(const char *path, const char *sql)
{
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        char *v;

        assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        v = strdup((const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
        sqlite3_close(db);
        return v;
}

static void test_schema(void **state)
{
        struct fixture *f = *state;
        _cleanup_(freep) char *mode = NULL;

        assert_int_equal(access(f->path, F_OK), 0);
        assert_int_equal(sql_int(f->path, "PRAGMA user_version"), KMS_STORE_SCHEMA_VERSION);
        mode = sql_text(f->path, "PRAGMA journal_mode");
        assert_string_equal(mode, "wal");
}

static void test_open_fails(void **state)
{
        struct kms_store *s = (struct kms_store *)0x1;

        /* A folder that does not exist: an error, and *ret untouched. */
        assert_true(kms_store_open("/nonexistent-kmsd-dir/sub/kmsd.db", &s) < 0);
        assert_ptr_equal(s, (struct kms_store *)0x1);
        kms_store_close(NULL);
}

static void test_insert_get(void **state)
{
        struct fixture *f = *state;
        struct kms_key_record k, *got = NULL;
        struct kms_key_version_record v;
        uint8_t spki[91];

        make_key("chat/alice", &k, &v, spki, sizeof(spki), 0xa1);
        assert_int_equal(kms_store_key_insert(f->store, &k, &v, NULL, NULL, NULL), 0);

        /* Without versions. */
        assert_int_equal(kms_store_key_get(f->store, "chat/alice", false, &got), 0);
        assert_non_null(got);
        assert_true(got->id > 0);
        assert_string_equal(got->name, "chat/alice");
        assert_int_equal(got->algorithm, KMS_ALG_EC_P256);
        assert_string_equal(got->backend, "pkcs11");
        assert_int_equal(got->usages, KMS_USAGE_SIGN | KMS_USAGE_DERIVE);
        assert_int_equal(got->owner, 1000);
        assert_int_equal(got->created, 1700000000);
        assert_int_equal(got->state, KMS_KEY_ACTIVE);
        assert_int_equal(got->primary_version, 1);
        assert_int_equal(got->version_count, 1);
        assert_null(got->versions);
        assert_int_equal(got->n_versions, 0);
        kms_key_record_free(got);
        got = NULL;

        /* With versions. */
        assert_int_equal(kms_store_key_get(f->store, "chat/alice", true, &got), 0);
        assert_int_equal(got->n_versions, 1);
        assert_non_null(got->versions);
        assert_int_equal(got->versions[0].version, 1);
        assert_int_equal(got->versions[0].state, KMS_KEY_ACTIVE);
        assert_int_equal(got->versions[0].created, 1700000000);
        assert_memory_equal(got->versions[0].backend_id, v.backend_id, KMS_KEY_ID_BYTES);
        assert_int_equal(got->versions[0].spki_len, sizeof(spki));
        assert_memory_equal(got->versions[0].spki, spki, sizeof(spki));
        assert_int_equal(got->versions[0].uses, 0);
        kms_key_record_free(got);
        kms_key_record_free(NULL);
}

static void test_duplicate(void **state)
{
        struct fixture *f = *state;
        struct kms_key_record k, *got = NULL;
        struct kms_key_version_record v;
        uint8_t spki[64];
        size_t n = 99;

        insert(f->store, "dup", 0x01);
        make_key("dup", &k, &v, spki, sizeof(spki), 0x02);
        assert_int_equal(kms_store_key_insert(f->store, &k, &v, NULL, NULL, NULL), -EEXIST);
        /* The first one is intact, and there is only one. */
        assert_int_equal(kms_store_key_get(f->store, "dup", true, &got), 0);
        assert_int_equal(got->versions[0].backend_id[0], 0x01);
        kms_key_record_free(got);
        assert_int_equal(kms_store_key_count(f->store, true, &n), 0);
        assert_int_equal(n, 1);

        /* A tombstone keeps its name. */
        assert_int_equal(kms_store_key_destroy(f->store, "dup"), 0);
        assert_int_equal(kms_store_key_insert(f->store, &k, &v, NULL, NULL, NULL), -EEXIST);
}

/* Inserts name for owner under lim; returns what kms_store_key_insert()
 * returned. */
static int insert_limited(struct kms_store *s, const char *name, uint32_t owner, uint8_t id_byte,
                          const struct kms_key_limits *lim, enum kms_key_limit *limit, size_t *count)
{
        struct kms_key_record k;
        struct kms_key_version_record v;
        uint8_t spki[91];

        make_key(name, &k, &v, spki, sizeof(spki), id_byte);
        k.owner = owner;
        return kms_store_key_insert(s, &k, &v, lim, limit, count);
}

static void test_limits(void **state)
{
        struct fixture *f = *state;
        const struct kms_key_limits lim = { .max_keys = 4, .max_owner_keys = 2, .max_owner_names = 3 };
        enum kms_key_limit limit = KMS_KEY_LIMIT_NONE;
        struct kms_key_record *got = NULL;
        size_t count = 0, n = 0;

        /* Owner 1000: two live keys, then its cap. */
        assert_int_equal(insert_limited(f->store, "u/a", 1000, 0x01, &lim, &limit, &count), 0);
        assert_int_equal(insert_limited(f->store, "u/b", 1000, 0x02, &lim, &limit, &count), 0);
        assert_int_equal(insert_limited(f->store, "u/c", 1000, 0x03, &lim, &limit, &count), -EDQUOT);
        assert_int_equal(limit, KMS_KEY_LIMIT_OWNER_KEYS);
        assert_int_equal(count, 2);
        /* Refused: nothing inserted, the name is still free. */
        assert_int_equal(kms_store_key_get(f->store, "u/c", false, &got), -ENOENT);
        assert_int_equal(kms_store_key_limits_check(f->store, &lim, 1000, &limit, &count), -EDQUOT);

        /* A destroyed key frees a live slot but keeps its name: the names
         * cap (3) is next. */
        assert_int_equal(kms_store_key_destroy(f->store, "u/a"), 0);
        assert_int_equal(kms_store_key_limits_check(f->store, &lim, 1000, NULL, NULL), 0);
        assert_int_equal(insert_limited(f->store, "u/c", 1000, 0x03, &lim, &limit, &count), 0);
        assert_int_equal(kms_store_key_destroy(f->store, "u/b"), 0);
        assert_int_equal(insert_limited(f->store, "u/d", 1000, 0x04, &lim, &limit, &count), -EDQUOT);
        assert_int_equal(limit, KMS_KEY_LIMIT_OWNER_NAMES);
        assert_int_equal(count, 3);

        /* Root has no per-owner caps; all live keys (u/c and root's) reach
         * max_keys = 4. */
        assert_int_equal(insert_limited(f->store, "r/1", 0, 0x11, &lim, &limit, &count), 0);
        assert_int_equal(insert_limited(f->store, "r/2", 0, 0x12, &lim, &limit, &count), 0);
        assert_int_equal(insert_limited(f->store, "r/3", 0, 0x13, &lim, &limit, &count), 0);
        assert_int_equal(insert_limited(f->store, "r/4", 0, 0x14, &lim, &limit, &count), -EDQUOT);
        assert_int_equal(limit, KMS_KEY_LIMIT_KEYS);
        assert_int_equal(count, 4);
        assert_int_equal(kms_store_key_count(f->store, false, &n), 0);
        assert_int_equal(n, 4);

        /* Without limits the store does not count. */
        assert_int_equal(insert_limited(f->store, "r/4", 0, 0x14, NULL, NULL, NULL), 0);
        /* A cap of 0 is no cap. */
        assert_int_equal(kms_store_key_limits_check(f->store, &(struct kms_key_limits){ 0 }, 1000, NULL, NULL), 0);
}

static void test_get_missing(void **state)
{
        struct fixture *f = *state;
        struct kms_key_record *got = (struct kms_key_record *)0x1;
        struct kms_key_record k;
        struct kms_key_version_record v;

        assert_int_equal(kms_store_key_get(f->store, "nope", false, &got), -ENOENT);
        assert_ptr_equal(got, (struct kms_key_record *)0x1);
        assert_int_equal(kms_store_key_get(f->store, "nope", true, &got), -ENOENT);
        assert_ptr_equal(got, (struct kms_key_record *)0x1);

        memset(&k, 0x5a, sizeof(k));
        memset(&v, 0x5a, sizeof(v));
        assert_int_equal(kms_store_key_get_version(f->store, "nope", 0, true, &k, &v), -ENOENT);
        assert_int_equal(k.id, (int64_t)0x5a5a5a5a5a5a5a5a);
        assert_int_equal(v.version, 0x5a5a5a5a);
        assert_int_equal(kms_store_key_destroy(f->store, "nope"), -ENOENT);
}

static void test_list_sorted(void **state)
{
        struct fixture *f = *state;
        static const char *const inserted[] = { "zeta", "alpha", "chat/bob", "chat/alice", "Beta", "a" };
        static const char *const sorted[] = { "Beta", "a", "alpha", "chat/alice", "chat/bob", "zeta" };
        struct kms_key_record *keys = NULL;
        size_t n = 0;

        for (size_t i = 0; i < ELEMENTSOF(inserted); i++)
                insert(f->store, inserted[i], (uint8_t)(0x10 + i));
        assert_int_equal(kms_store_key_list(f->store, false, &keys, &n), 0);
        assert_int_equal(n, ELEMENTSOF(sorted));
        for (size_t i = 0; i < n; i++) {
                assert_string_equal(keys[i].name, sorted[i]);
                assert_null(keys[i].versions);
                assert_int_equal(keys[i].primary_version, 1);
        }
        kms_key_records_free(keys, n);

        /* Destroyed keys only with include_destroyed. */
        assert_int_equal(kms_store_key_destroy(f->store, "chat/alice"), 0);
        assert_int_equal(kms_store_key_list(f->store, false, &keys, &n), 0);
        assert_int_equal(n, ELEMENTSOF(sorted) - 1);
        for (size_t i = 0; i < n; i++)
                assert_string_not_equal(keys[i].name, "chat/alice");
        kms_key_records_free(keys, n);
        assert_int_equal(kms_store_key_list(f->store, true, &keys, &n), 0);
        assert_int_equal(n, ELEMENTSOF(sorted));
        assert_string_equal(keys[3].name, "chat/alice");
        assert_int_equal(keys[3].state, KMS_KEY_DESTROYED);
        kms_key_records_free(keys, n);
}

static void test_list_empty(void **state)
{
        struct fixture *f = *state;
        struct kms_key_record *keys = NULL;
        size_t n = 99;

        assert_int_equal(kms_store_key_list(f->store, true, &keys, &n), 0);
        assert_int_equal(n, 0);
        kms_key_records_free(keys, n);
        assert_int_equal(kms_store_key_count(f->store, true, &n), 0);
        assert_int_equal(n, 0);
}

static void test_count(void **state)
{
        struct fixture *f = *state;
        size_t n = 99;

        insert(f->store, "k1", 1);
        insert(f->store, "k2", 2);
        insert(f->store, "k3", 3);
        assert_int_equal(kms_store_key_count(f->store, false, &n), 0);
        assert_int_equal(n, 3);
        assert_int_equal(kms_store_key_destroy(f->store, "k2"), 0);
        assert_int_equal(kms_store_key_count(f->store, false, &n), 0);
        assert_int_equal(n, 2);
        assert_int_equal(kms_store_key_count(f->store, true, &n), 0);
        assert_int_equal(n, 3);
}

static void test_set_state_destroyed(void **state)
{
        struct fixture *f = *state;
        struct kms_key_record *got = NULL;

        insert(f->store, "to/destroy", 0x77);
        assert_int_equal(kms_store_key_destroy(f->store, "to/destroy"), 0);
        assert_int_equal(kms_store_key_get(f->store, "to/destroy", true, &got), 0);
        assert_int_equal(got->state, KMS_KEY_DESTROYED);
        assert_int_equal(got->n_versions, 1);
        assert_int_equal(got->versions[0].state, KMS_KEY_DESTROYED);
        /* History stays: the backend id and the public key are kept. */
        assert_int_equal(got->versions[0].backend_id[0], 0x77);
        assert_true(got->versions[0].spki_len > 0);
        kms_key_record_free(got);

        assert_int_equal(kms_store_key_set_state(f->store, "to/destroy", KMS_KEY_ACTIVE, KMS_KEY_STATE_INVALID),
                         -EINVAL);
}

static void test_get_version(void **state)
{
        struct fixture *f = *state;
        struct kms_key_record k;
        struct kms_key_version_record v;

        insert(f->store, "chat/sig", 0x33);

        /* 0 is the primary. */
        memset(&k, 0, sizeof(k));
        memset(&v, 0, sizeof(v));
        assert_int_equal(kms_store_key_get_version(f->store, "chat/sig", 0, true, &k, &v), 0);
        assert_string_equal(k.name, "chat/sig");
        assert_true(k.id > 0);
        assert_int_equal(k.primary_version, 1);
        assert_null(k.versions);
        assert_int_equal(v.version, 1);
        assert_int_equal(v.state, KMS_KEY_ACTIVE);
        assert_int_equal(v.backend_id[0], 0x33);
        assert_int_equal(v.backend_id[KMS_KEY_ID_BYTES - 1], 0x33);
        assert_int_equal(v.spki_len, 91);
        assert_non_null(v.spki);
        assert_int_equal(v.spki[0], 0x33);
        kms_key_version_record_clear(&v);
        assert_null(v.spki);

        /* Explicit version, without the public key. */
        memset(&v, 0, sizeof(v));
        assert_int_equal(kms_store_key_get_version(f->store, "chat/sig", 1, false, &k, &v), 0);
        assert_int_equal(v.version, 1);
        assert_int_equal(v.backend_id[0], 0x33);
        assert_null(v.spki);
        kms_key_version_record_clear(&v);

        /* A version that does not exist; outputs untouched. */
        memset(&k, 0x5a, sizeof(k));
        memset(&v, 0x5a, sizeof(v));
        assert_int_equal(kms_store_key_get_version(f->store, "chat/sig", 2, true, &k, &v), -ENOENT);
        assert_int_equal(v.version, 0x5a5a5a5a);
        assert_int_equal(k.id, (int64_t)0x5a5a5a5a5a5a5a5a);
}

static void test_add_uses(void **state)
{
        struct fixture *f = *state;
        struct kms_key_record k, *got = NULL;
        struct kms_key_version_record v;

        insert(f->store, "counted", 0x44);
        assert_int_equal(kms_store_key_get_version(f->store, "counted", 0, false, &k, &v), 0);
        assert_int_equal(v.uses, 0);
        assert_int_equal(kms_store_version_add_uses(f->store, k.id, 1, 1), 0);
        assert_int_equal(kms_store_version_add_uses(f->store, k.id, 1, 41), 0);
        assert_int_equal(kms_store_version_add_uses(f->store, k.id, 1, 0), 0);
        kms_key_version_record_clear(&v);
        assert_int_equal(kms_store_key_get_version(f->store, "counted", 0, false, &k, &v), 0);
        assert_int_equal(v.uses, 42);
        kms_key_version_record_clear(&v);
        assert_int_equal(kms_store_key_get(f->store, "counted", true, &got), 0);
        assert_int_equal(got->versions[0].uses, 42);
        kms_key_record_free(got);

        /* No such version or key. */
        assert_int_equal(kms_store_version_add_uses(f->store, k.id, 7, 1), -ENOENT);
        assert_int_equal(kms_store_version_add_uses(f->store, k.id + 1000, 1, 1), -ENOENT);
}

/* Revoking versions one at a time: the key stays active while a usable
 * version remains and becomes revoked with the last one. */
static void test_revoke_versions(void **state)
{
        struct fixture *f = *state;
        struct kms_key_record k, *got = NULL;
        struct kms_key_version_record v, v2;
        uint8_t spki[91];

        insert(f->store, "rv/one", 0x51);
        make_key("rv/one", &k, &v2, spki, sizeof(spki), 0x52);
        assert_int_equal(kms_store_key_get_version(f->store, "rv/one", 0, false, &k, &v), 0);
        kms_key_version_record_clear(&v);
        v2.version = 2;
        assert_int_equal(kms_store_version_add(f->store, k.id, 1, &v2), 0);

        assert_int_equal(kms_store_version_revoke(f->store, k.id, 1, 1700000100, "compromised", "laptop"), 0);
        assert_int_equal(kms_store_key_get(f->store, "rv/one", true, &got), 0);
        assert_int_equal(got->state, KMS_KEY_ACTIVE);
        assert_int_equal(got->versions[0].state, KMS_KEY_REVOKED);
        assert_int_equal(got->versions[0].revoked_at, 1700000100);
        assert_string_equal(got->versions[0].revoke_reason, "compromised");
        assert_string_equal(got->versions[0].revoke_note, "laptop");
        assert_int_equal(got->versions[1].state, KMS_KEY_ACTIVE);
        kms_key_record_free(got);

        /* Again: nothing left to revoke in version 1, nothing changes. */
        assert_int_equal(kms_store_version_revoke(f->store, k.id, 1, 1700000200, "retired", ""), -ENOENT);

        assert_int_equal(kms_store_version_revoke(f->store, k.id, 2, 1700000300, "retired", NULL), 0);
        assert_int_equal(kms_store_key_get(f->store, "rv/one", true, &got), 0);
        assert_int_equal(got->state, KMS_KEY_REVOKED);
        assert_int_equal(got->versions[0].revoked_at, 1700000100);
        assert_int_equal(got->versions[1].state, KMS_KEY_REVOKED);
        kms_key_record_free(got);
}

static void test_reopen_persists(void **state)
{
        struct fixture *f = *state;
        struct kms_key_record *got = NULL, k;
        struct kms_key_version_record v;
        size_t n = 0;

        insert(f->store, "persist/a", 0x55);
        insert(f->store, "persist/b", 0x56);
        assert_int_equal(kms_store_key_get_version(f->store, "persist/a", 0, false, &k, &v), 0);
        assert_int_equal(kms_store_version_add_uses(f->store, k.id, 1, 5), 0);
        assert_int_equal(kms_store_key_destroy(f->store, "persist/b"), 0);

        kms_store_close(f->store);
        f->store = NULL;
        assert_int_equal(kms_store_open(f->path, &f->store), 0);
        assert_int_equal(sql_int(f->path, "PRAGMA user_version"), KMS_STORE_SCHEMA_VERSION);

        assert_int_equal(kms_store_key_get(f->store, "persist/a", true, &got), 0);
        assert_int_equal(got->versions[0].backend_id[0], 0x55);
        assert_int_equal(got->versions[0].uses, 5);
        assert_int_equal(got->state, KMS_KEY_ACTIVE);
        kms_key_record_free(got);
        assert_int_equal(kms_store_key_get(f->store, "persist/b", false, &got), 0);
        assert_int_equal(got->state, KMS_KEY_DESTROYED);
        kms_key_record_free(got);
        assert_int_equal(kms_store_key_count(f->store, true, &n), 0);
        assert_int_equal(n, 2);
}

/* Two connections on one file, as two workers have. */
static void test_two_connections(void **state)
{
        struct fixture *f = *state;
        struct kms_store *second = NULL;
        struct kms_key_record *got = NULL;

        assert_int_equal(kms_store_open(f->path, &second), 0);
        insert(f->store, "shared", 0x66);
        assert_int_equal(kms_store_key_get(second, "shared", false, &got), 0);
        kms_key_record_free(got);
        kms_store_close(second);
}

/* Compare-and-set: a state change from a state the key is not in
 * changes nothing; revoked and destroyed keys stay so. */
static void test_state_cas(void **state)
{
        struct fixture *f = *state;
        struct kms_key_record *got = NULL;
        struct kms_key_record k;
        struct kms_key_version_record v, v2;
        uint8_t spki[91];

        insert(f->store, "cas/one", 0x61);
        assert_int_equal(kms_store_key_set_state(f->store, "cas/one", KMS_KEY_DISABLED, KMS_KEY_ACTIVE), KMS_E_STATE);
        assert_int_equal(kms_store_key_set_state(f->store, "cas/one", KMS_KEY_ACTIVE, KMS_KEY_DISABLED), 0);
        assert_int_equal(kms_store_key_set_state(f->store, "cas/none", KMS_KEY_ACTIVE, KMS_KEY_DISABLED), -ENOENT);
        assert_int_equal(kms_store_key_get_version(f->store, "cas/one", 0, false, &k, &v), 0);
        kms_key_version_record_clear(&v);
        assert_int_equal(kms_store_version_revoke(f->store, k.id, 0, 1700000100, "compromised", ""), 0);
        /* Revoked is terminal: no enable, no settings, no new primary. */
        assert_int_equal(kms_store_key_set_state(f->store, "cas/one", KMS_KEY_REVOKED, KMS_KEY_ACTIVE), KMS_E_STATE);
        assert_int_equal(kms_store_key_get(f->store, "cas/one", false, &got), 0);
        kms_key_record_free(got);
        make_key("cas/one", &k, &v2, spki, sizeof(spki), 0x62);
        assert_int_equal(kms_store_key_get(f->store, "cas/one", false, &got), 0);
        v2.version = 2;
        assert_int_equal(kms_store_version_add(f->store, got->id, got->primary_version, &v2), KMS_E_STATE);
        assert_int_equal(kms_store_key_set_settings(f->store, "cas/one", 60, 0, 0), KMS_E_STATE);
        kms_key_record_free(got);
        assert_int_equal(kms_store_key_get(f->store, "cas/one", true, &got), 0);
        assert_int_equal(got->n_versions, 1);
        assert_int_equal(got->versions[0].state, KMS_KEY_REVOKED);
        assert_int_equal(got->rotate_every, 0);
        assert_int_equal(kms_store_version_set_state(f->store, got->id, 1, KMS_KEY_ACTIVE), -ENOENT);
        kms_key_record_free(got);
}

/* A rotation commits only over the primary it started from. */
static void test_version_add_expected(void **state)
{
        struct fixture *f = *state;
        struct kms_key_record k, *got = NULL;
        struct kms_key_version_record v, v2, v3;
        uint8_t spki[91], spki3[91];

        insert(f->store, "rot/one", 0x71);
        assert_int_equal(kms_store_key_get_version(f->store, "rot/one", 0, false, &k, &v), 0);
        kms_key_version_record_clear(&v);
        make_key("rot/one", &k, &v2, spki, sizeof(spki), 0x72);
        make_key("rot/one", &k, &v3, spki3, sizeof(spki3), 0x73);
        assert_int_equal(kms_store_key_get(f->store, "rot/one", false, &got), 0);
        v2.version = 2;
        v3.version = 3;
        assert_int_equal(kms_store_version_add(f->store, got->id, 1, &v2), 0);
        /* A second rotation that also started from version 1. */
        assert_int_equal(kms_store_version_add(f->store, got->id, 1, &v3), KMS_E_STATE);
        kms_key_record_free(got);
        assert_int_equal(kms_store_key_get(f->store, "rot/one", true, &got), 0);
        assert_int_equal(got->primary_version, 2);
        assert_int_equal(got->n_versions, 2);
        kms_key_record_free(got);
}

/* A change and its record commit together or not at all, and the writer
 * finds the records and deletes them as it chains them. */
static void test_pending_records(void **state)
{
        struct fixture *f = *state;
        struct kms_audit_row row, got[4];
        size_t n = 0;
        int64_t upto = 0;

        memset(&row, 0, sizeof(row));
        row.time_ms = 1700000000123;
        snprintf(row.kind, sizeof(row.kind), "request");
        snprintf(row.operation, sizeof(row.operation), "DisableKey");
        snprintf(row.key, sizeof(row.key), "pend/one");
        snprintf(row.result, sizeof(row.result), "ok");
        insert(f->store, "pend/one", 0x81);

        /* Rolled back: neither the change nor the record. */
        assert_int_equal(kms_store_begin(f->store), 0);
        assert_int_equal(kms_store_key_set_state(f->store, "pend/one", KMS_KEY_ACTIVE, KMS_KEY_DISABLED), 0);
        assert_int_equal(kms_store_audit_pending_add(f->store, &row), 0);
        kms_store_rollback(f->store);
        assert_int_equal(sql_int(f->path, "SELECT COUNT(*) FROM audit_pending"), 0);
        assert_int_equal(sql_int(f->path, "SELECT state = 'active' FROM keys WHERE name = 'pend/one'"), 1);

        /* Committed: both. */
        assert_int_equal(kms_store_begin(f->store), 0);
        assert_int_equal(kms_store_key_set_state(f->store, "pend/one", KMS_KEY_ACTIVE, KMS_KEY_DISABLED), 0);
        assert_int_equal(kms_store_audit_pending_add(f->store, &row), 0);
        assert_int_equal(kms_store_commit_change(f->store), 0);
        assert_int_equal(sql_int(f->path, "SELECT COUNT(*) FROM audit_pending"), 1);
        assert_int_equal(sql_int(f->path, "SELECT state = 'disabled' FROM keys WHERE name = 'pend/one'"), 1);

        assert_int_equal(kms_store_audit_pending_read(f->store, got, 4, &n, &upto), 0);
        assert_int_equal(n, 1);
        assert_true(upto > 0);
        assert_string_equal(got[0].operation, "DisableKey");
        assert_string_equal(got[0].key, "pend/one");
        assert_int_equal(got[0].time_ms, 1700000000123);
        got[0].seq = 1;
        assert_int_equal(kms_store_audit_append(f->store, got, 1, upto), 0);
        assert_int_equal(sql_int(f->path, "SELECT COUNT(*) FROM audit_pending"), 0);
        assert_int_equal(sql_int(f->path, "SELECT COUNT(*) FROM audit WHERE operation = 'DisableKey'"), 1);
}

/* kms_store_check on a sound database: every table reads through. */
static void test_check_sound(void **state)
{
        struct fixture *f = *state;
        char err[512] = "";

        insert(f->store, "check/a", 0x71);
        assert_int_equal(kms_store_check(f->store, err, sizeof(err)), 0);
        assert_string_equal(err, "");
}

/* Overwrite page `page` of the file at path with 0xA5 bytes, as a
 * damaged disk or a bad copy would. */
static void damage_page(const char *path, int64_t page, int64_t page_size)
{
        FILE *fp = fopen(path, "r+b");
        uint8_t junk[65536];

        assert_non_null(fp);
        assert_true(page_size > 0 && (size_t)page_size <= sizeof(junk));
        memset(junk, 0xa5, (size_t)page_size);
        assert_int_equal(fseek(fp, (long)((page - 1) * page_size), SEEK_SET), 0);
        assert_int_equal(fwrite(junk, 1, (size_t)page_size, fp), (size_t)page_size);
        assert_int_equal(fclose(fp), 0);
}

/* A damaged page of the keys table: kms_store_check names the table and
 * says corrupt; kms_store_strerror says corrupt for what a read returns. */
static void test_check_corrupt_keys(void **state)
{
        struct fixture *f = *state;
        struct kms_key_record *got = NULL;
        char err[512] = "";
        int64_t root, page_size;
        int r;

        insert(f->store, "check/b", 0x72);
        kms_store_close(f->store); /* checkpoints the WAL into the file */
        f->store = NULL;
        root = sql_int(f->path, "SELECT rootpage FROM sqlite_schema WHERE name = 'keys'");
        page_size = sql_int(f->path, "PRAGMA page_size");
        damage_page(f->path, root, page_size);

        assert_int_equal(kms_store_open(f->path, &f->store), 0);
        r = kms_store_check(f->store, err, sizeof(err));
        assert_int_equal(r, KMS_E_STORE);
        assert_non_null(strstr(err, "table 'keys'"));
        assert_non_null(strstr(err, "corrupt"));
        assert_null(strchr(err, '\n'));

        r = kms_store_key_get(f->store, "check/b", false, &got);
        assert_int_equal(r, KMS_E_STORE);
        assert_null(got);
        assert_non_null(strstr(kms_store_strerror(r), "corrupt"));
}

/* A file that is not a database at all: kms_store_open fails, and the
 * sentence says so instead of "State not recoverable". */
static void test_open_not_a_database(void **state)
{
        struct fixture *f = *state;
        struct kms_store *s = NULL;
        char path[160];
        FILE *fp;
        int r;

        snprintf(path, sizeof(path), "%s/garbage.db", f->dir);
        fp = fopen(path, "wb");
        assert_non_null(fp);
        for (int i = 0; i < 8192; i++)
                fputc(0x5a, fp);
        assert_int_equal(fclose(fp), 0);
        r = kms_store_open(path, &s);
        unlink(path);
        assert_true(r < 0);
        assert_null(s);
        assert_non_null(strstr(kms_store_strerror(r), "corrupt"));
}

/* The sentences for the errno values the store returns, and a write to a
 * connection that may not write: -EROFS, said as read-only. */
static void test_strerror(void **state)
{
        struct fixture *f = *state;
        struct kms_key_record k;
        struct kms_key_version_record v;
        uint8_t spki[91];
        int r;

        assert_non_null(strstr(kms_store_strerror(-ENOSPC), "full"));
        assert_non_null(strstr(kms_store_strerror(-EROFS), "read-only"));
        assert_non_null(strstr(kms_store_strerror(-EBUSY), "busy"));
        assert_non_null(strstr(kms_store_strerror(-EPROTO), "newer kmsd"));
        assert_non_null(kms_store_strerror(-ENOENT));
        /* query_only: SQLite refuses writes as on a read-only file (which
         * root, who runs these tests, could write anyway). */
        assert_int_equal(kms_store_exec(f->store, "PRAGMA query_only = 1"), 0);
        make_key("check/ro", &k, &v, spki, sizeof(spki), 0x73);
        r = kms_store_key_insert(f->store, &k, &v, NULL, NULL, NULL);
        assert_int_equal(r, -EROFS);
        assert_non_null(strstr(kms_store_strerror(r), "read-only"));
        assert_int_equal(kms_store_exec(f->store, "PRAGMA query_only = 0"), 0);
}

static void insert_owned(struct kms_store *s, const char *name, uint8_t id_byte, uint32_t owner)
{
        struct kms_key_record k;
        struct kms_key_version_record v;
        uint8_t spki[91];

        make_key(name, &k, &v, spki, sizeof(spki), id_byte);
        k.owner = owner;
        assert_int_equal(kms_store_key_insert(s, &k, &v, NULL, NULL, NULL), 0);
}

static bool skip_b(const char *name, uint32_t owner, void *userdata)
{
        (*(int *)userdata)++;
        return strchr(name, 'b') == NULL;
}

/* Pages for the lists: name order after a name, by owner, a bound on the
 * rows read, a filter, destroyed keys, keys with revocations. */
static void test_key_page(void **state)
{
        struct fixture *f = *state;
        struct kms_key_page_entry *e = NULL;
        struct kms_key_page q = { .after = "", .owner = -1, .want = 2 };
        struct kms_key_record k;
        struct kms_key_version_record v;
        struct kms_key_version_record *rv = NULL;
        size_t n = 99;
        int seen = 0;

        insert_owned(f->store, "c", 0x61, 1000);
        insert_owned(f->store, "a", 0x62, 1001);
        insert_owned(f->store, "b", 0x63, 1000);
        insert_owned(f->store, "d", 0x64, 1001);
        insert_owned(f->store, "bb", 0x65, 1000);

        assert_int_equal(kms_store_key_page(f->store, &q, NULL, NULL, &e, &n), 0);
        assert_int_equal(n, 2);
        assert_string_equal(e[0].name, "a");
        assert_int_equal(e[0].owner, 1001);
        assert_string_equal(e[1].name, "b");
        free(e);
        /* The next page starts after the last name. */
        q.after = "b";
        q.want = 10;
        assert_int_equal(kms_store_key_page(f->store, &q, NULL, NULL, &e, &n), 0);
        assert_int_equal(n, 3);
        assert_string_equal(e[0].name, "bb");
        assert_string_equal(e[2].name, "d");
        free(e);
        /* One owner's keys. */
        q.after = "";
        q.owner = 1000;
        assert_int_equal(kms_store_key_page(f->store, &q, NULL, NULL, &e, &n), 0);
        assert_int_equal(n, 3);
        assert_string_equal(e[0].name, "b");
        assert_string_equal(e[1].name, "bb");
        assert_string_equal(e[2].name, "c");
        free(e);
        q.owner = 4242;
        assert_int_equal(kms_store_key_page(f->store, &q, NULL, NULL, &e, &n), 0);
        assert_int_equal(n, 0);
        free(e);
        /* The filter sees every row read; max_rows bounds them. */
        q.owner = -1;
        assert_int_equal(kms_store_key_page(f->store, &q, skip_b, &seen, &e, &n), 0);
        assert_int_equal(seen, 5);
        assert_int_equal(n, 3);
        assert_string_equal(e[1].name, "c");
        free(e);
        seen = 0;
        q.max_rows = 2;
        assert_int_equal(kms_store_key_page(f->store, &q, skip_b, &seen, &e, &n), 0);
        assert_int_equal(seen, 2);
        assert_int_equal(n, 1);
        assert_string_equal(e[0].name, "a");
        free(e);
        q.max_rows = 0;
        /* Destroyed keys only when asked for. */
        assert_int_equal(kms_store_key_destroy(f->store, "c"), 0);
        assert_int_equal(kms_store_key_page(f->store, &q, NULL, NULL, &e, &n), 0);
        assert_int_equal(n, 4);
        free(e);
        q.include_destroyed = true;
        assert_int_equal(kms_store_key_page(f->store, &q, NULL, NULL, &e, &n), 0);
        assert_int_equal(n, 5);
        free(e);
        /* Keys with a revoked version, and those versions. */
        q.revoked_only = true;
        assert_int_equal(kms_store_key_page(f->store, &q, NULL, NULL, &e, &n), 0);
        assert_int_equal(n, 0);
        free(e);
        assert_int_equal(kms_store_key_get_version(f->store, "bb", 0, false, &k, &v), 0);
        assert_int_equal(kms_store_version_revoke(f->store, k.id, 1, 1700000100, "retired", "n"), 0);
        assert_int_equal(kms_store_key_page(f->store, &q, NULL, NULL, &e, &n), 0);
        assert_int_equal(n, 1);
        assert_string_equal(e[0].name, "bb");
        assert_int_equal(e[0].id, k.id);
        free(e);
        q.owner = 1001;
        assert_int_equal(kms_store_key_page(f->store, &q, NULL, NULL, &e, &n), 0);
        assert_int_equal(n, 0);
        free(e);
        assert_int_equal(kms_store_versions_revoked(f->store, k.id, &rv, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(rv[0].version, 1);
        assert_int_equal(rv[0].revoked_at, 1700000100);
        assert_string_equal(rv[0].revoke_reason, "retired");
        assert_int_equal(rv[0].spki_len, 91);
        kms_key_versions_free(rv, n);
        /* want 0: nothing, without a query. */
        q.want = 0;
        assert_int_equal(kms_store_key_page(f->store, &q, NULL, NULL, &e, &n), 0);
        assert_int_equal(n, 0);
        assert_null(e);
}

/* What the scheduler reads: scheduled destructions, and active keys with
 * a rotation setting. */
static void test_list_scheduled(void **state)
{
        struct fixture *f = *state;
        struct kms_key_record *keys = NULL;
        size_t n = 99;

        insert(f->store, "s/none", 0x81);
        insert(f->store, "s/every", 0x82);
        insert(f->store, "s/uses", 0x83);
        insert(f->store, "s/disabled", 0x84);
        insert(f->store, "s/doomed", 0x85);
        assert_int_equal(kms_store_key_set_settings(f->store, "s/every", 3600, 0, 0), 0);
        assert_int_equal(kms_store_key_set_settings(f->store, "s/uses", 0, 10, 0), 0);
        assert_int_equal(kms_store_key_set_settings(f->store, "s/disabled", 3600, 0, 0), 0);
        assert_int_equal(kms_store_key_set_state(f->store, "s/disabled", KMS_KEY_ACTIVE, KMS_KEY_DISABLED), 0);
        assert_int_equal(kms_store_key_set_destroy_at(f->store, "s/doomed", 1700000000), 0);
        assert_int_equal(kms_store_key_list_scheduled(f->store, &keys, &n), 0);
        assert_int_equal(n, 3);
        for (size_t i = 0; i < n; i++) {
                assert_true(strcmp(keys[i].name, "s/every") == 0 || strcmp(keys[i].name, "s/uses") == 0 ||
                            strcmp(keys[i].name, "s/doomed") == 0);
                assert_int_equal(keys[i].primary_version, 1);
                assert_int_equal(keys[i].primary_created, 1700000000);
        }
        kms_key_records_free(keys, n);
}

/* A database of schema 5 with a revoked version: the step to 6 marks the
 * key for ListRevoked. */
static void test_migrate_v6(void **state)
{
        struct fixture *f = *state;
        struct kms_key_record k;
        struct kms_key_version_record v;
        struct kms_key_page_entry *e = NULL;
        const struct kms_key_page q = { .after = "", .owner = -1, .revoked_only = true, .want = 10 };
        size_t n = 0;

        insert(f->store, "mig/a", 0x71);
        insert(f->store, "mig/b", 0x72);
        assert_int_equal(kms_store_key_get_version(f->store, "mig/b", 0, false, &k, &v), 0);
        assert_int_equal(kms_store_version_revoke(f->store, k.id, 1, 1700000100, "retired", ""), 0);
        /* Back to what schema 5 had. */
        assert_int_equal(kms_store_exec(f->store, "DROP INDEX keys_owner; DROP INDEX keys_revoked;"
                                                  " DROP INDEX key_versions_revoked;"
                                                  " ALTER TABLE keys DROP COLUMN has_revoked;"
                                                  " PRAGMA user_version = 5"),
                         0);
        kms_store_close(f->store);
        f->store = NULL;
        assert_int_equal(kms_store_open(f->path, &f->store), 0);
        assert_int_equal(sql_int(f->path, "PRAGMA user_version"), KMS_STORE_SCHEMA_VERSION);
        assert_int_equal(kms_store_key_page(f->store, &q, NULL, NULL, &e, &n), 0);
        assert_int_equal(n, 1);
        assert_string_equal(e[0].name, "mig/b");
        free(e);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
        const struct CMUnitTest tests[] = {
                T(test_schema),     T(test_open_fails),   T(test_insert_get),          T(test_duplicate), T(test_limits),
                T(test_get_missing), T(test_list_sorted), T(test_list_empty),          T(test_count),
                T(test_set_state_destroyed), T(test_get_version), T(test_add_uses), T(test_revoke_versions), T(test_reopen_persists),
                T(test_two_connections), T(test_check_sound), T(test_check_corrupt_keys), T(test_open_not_a_database),
                T(test_strerror),
                T(test_state_cas), T(test_version_add_expected), T(test_pending_records), T(test_key_page),
                T(test_list_scheduled), T(test_migrate_v6),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
