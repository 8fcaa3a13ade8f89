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

        assert_int_equal(kms_store_key_set_state(f->store, "to/destroy", KMS_KEY_STATE_INVALID), -EINVAL);
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
        assert_int_equal(kms_store_version_add(f->store, k.id, &v2), 0);

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

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
        const struct CMUnitTest tests[] = {
                T(test_schema),     T(test_open_fails),   T(test_insert_get),          T(test_duplicate), T(test_limits),
                T(test_get_missing), T(test_list_sorted), T(test_list_empty),          T(test_count),
                T(test_set_state_destroyed), T(test_get_version), T(test_add_uses), T(test_revoke_versions), T(test_reopen_persists),
                T(test_two_connections),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
