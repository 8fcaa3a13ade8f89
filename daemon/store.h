/* The metadata store: one SQLite database (WAL) under the state folder
 * with the keys and their versions. The backend is the truth for key
 * material; this is the truth for names, owners and states.
 *
 * One struct kms_store is one SQLite connection, used by one thread at a
 * time; each worker opens its own. Functions return 0 or a negative errno
 * (-ENOENT, -EEXIST, -EINVAL, KMS_E_STORE, -ENOSPC, -EROFS); SQLite codes
 * are translated here and logged at debug level only. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "kms-key.h"

#define KMS_STORE_SCHEMA_VERSION 6
#define KMS_STORE_FILE "kmsd.db"

struct kms_store;

struct kms_key_version_record {
        uint32_t version;
        enum kms_key_state state;
        int64_t created;
        uint8_t backend_id[KMS_KEY_ID_BYTES];
        uint8_t *spki; /* SubjectPublicKeyInfo DER, owned */
        size_t spki_len;
        uint64_t uses;
        int64_t revoked_at; /* 0: not revoked */
        char revoke_reason[16];
        char revoke_note[KMS_MAX_REVOKE_NOTE + 1];
};

struct kms_key_record {
        int64_t id;
        char name[KMS_MAX_KEY_NAME + 1];
        enum kms_algorithm algorithm;
        char backend[16];
        unsigned usages; /* enum kms_usage mask */
        uint32_t owner;
        int64_t created;
        enum kms_key_state state;
        uint32_t primary_version;
        uint32_t version_count;
        int64_t primary_created; /* creation time of the primary version */
        uint64_t rotate_every;      /* seconds, 0: none */
        uint64_t rotate_after_uses; /* 0: none */
        uint32_t keep_versions;     /* 0: keep all */
        int64_t destroy_at;         /* 0: none scheduled */
        uint64_t primary_uses;      /* stored uses of the primary version */
        struct kms_key_version_record *versions; /* only when asked for */
        size_t n_versions;
};

/* Open (and create or migrate) the database at path. */
int kms_store_open(const char *path, struct kms_store **ret);
void kms_store_close(struct kms_store *s);

/* Read every table but the audit log through (SQLite's quick_check, per
 * table: keys, versions, session bindings, audit keys, TPM blobs): 0 if
 * they are sound, else KMS_E_STORE (or another store code) with a sentence
 * naming the table and the problem in errbuf. For start-up, before
 * anything reads the keys. */
int kms_store_check(struct kms_store *s, char *errbuf, size_t errlen);

/* A sentence for a code a store function returned on this thread: disk
 * full, read-only, busy, corrupt, an I/O error... (KMS_E_STORE says which
 * SQLite failure it was). Never NULL; static or thread-local storage. */
const char *kms_store_strerror(int r);

/* Caps on keys: all live keys, and for an owner other than root its live
 * keys and its names (destroyed keys' tombstones included). 0: no cap. */
enum kms_key_limit {
        KMS_KEY_LIMIT_NONE,
        KMS_KEY_LIMIT_KEYS,
        KMS_KEY_LIMIT_OWNER_KEYS,
        KMS_KEY_LIMIT_OWNER_NAMES,
};
struct kms_key_limits {
        size_t max_keys;
        size_t max_owner_keys;
        size_t max_owner_names;
};

/* Does one more key of owner fit the limits? 0 if so; -EDQUOT with the
 * cap it hits and the count there in *ret_limit and *ret_count if not. */
int kms_store_key_limits_check(struct kms_store *s, const struct kms_key_limits *lim, int64_t owner,
                               enum kms_key_limit *ret_limit, size_t *ret_count);

/* Insert a key with its first version in one transaction. key->id,
 * primary_version and version_count are set by the store. -EEXIST if the
 * name is taken (a tombstone counts). With lim, the limits are checked in
 * the same transaction (so concurrent creates cannot pass them together):
 * -EDQUOT as kms_store_key_limits_check() says, nothing inserted. */
int kms_store_key_insert(struct kms_store *s, const struct kms_key_record *key,
                         const struct kms_key_version_record *v1, const struct kms_key_limits *lim,
                         enum kms_key_limit *ret_limit, size_t *ret_count);

/* One key by name, with its versions (ascending) if with_versions. The
 * caller frees with kms_key_record_free(). */
int kms_store_key_get(struct kms_store *s, const char *name, bool with_versions, struct kms_key_record **ret);

/* The key (without versions) and one of its versions (0: primary), in one
 * query: the signing hot path. ret_version->spki is owned by the caller
 * (free it); pass want_spki=false to skip loading it. */
int kms_store_key_get_version(struct kms_store *s, const char *name, uint32_t version, bool want_spki,
                              struct kms_key_record *ret_key, struct kms_key_version_record *ret_version);

/* All keys sorted by name, without versions. */
int kms_store_key_list(struct kms_store *s, bool include_destroyed, struct kms_key_record **ret, size_t *ret_n);
/* The keys the scheduler may have work for, without versions: those with
 * a scheduled destruction, and active keys with a rotation setting. */
int kms_store_key_list_scheduled(struct kms_store *s, struct kms_key_record **ret, size_t *ret_n);

/* One page of keys for a list, in name order: the names > after (""
 * from the first), of owner only if owner >= 0, destroyed keys only if
 * include_destroyed, only keys with a revoked version if revoked_only.
 * The walk is one indexed query; max_rows (0: no bound) is its SQL LIMIT.
 * filter(name, owner, userdata) returns true to take a key; the walk
 * stops once want keys were taken. On success *ret holds the taken keys
 * (the caller frees it; NULL if none) and *ret_n their number. */
struct kms_key_page {
        const char *after;
        int64_t owner; /* -1: every owner */
        bool include_destroyed;
        bool revoked_only;
        size_t want;
        size_t max_rows;
};
struct kms_key_page_entry {
        int64_t id;
        char name[KMS_MAX_KEY_NAME + 1];
        uint32_t owner;
};
int kms_store_key_page(struct kms_store *s, const struct kms_key_page *q,
                       bool (*filter)(const char *name, uint32_t owner, void *userdata), void *userdata,
                       struct kms_key_page_entry **ret, size_t *ret_n);
/* The revoked versions of key_id in ascending order (with their SPKI);
 * the caller frees them with kms_key_versions_free(). */
int kms_store_versions_revoked(struct kms_store *s, int64_t key_id, struct kms_key_version_record **ret,
                               size_t *ret_n);
void kms_key_versions_free(struct kms_key_version_record *v, size_t n);
/* The owner of the key named name (destroyed keys too); -ENOENT if none. */
int kms_store_key_owner(struct kms_store *s, const char *name, uid_t *ret);
/* One audit record (docs/audit.md). */
struct kms_audit_row {
        uint64_t seq;
        int64_t time_ms;
        char kind[24];
        uint32_t uid;
        int32_t pid;
        char exe[256];
        char operation[40];
        char key[KMS_MAX_KEY_NAME + 1];
        uint32_t version;
        char result[40];
        char details[512];
        uint8_t prev[32];
        uint8_t hash[32];
        uint8_t sig[KMS_MAX_SIGNATURE_BYTES]; /* checkpoints */
        size_t sig_len;
};

/* The newest record's seq and hash; seq 0 and a zero hash if none. */
int kms_store_audit_head(struct kms_store *s, uint64_t *ret_seq, uint8_t ret_hash[32]);
/* Insert rows in one transaction (all or nothing), and delete the pending
 * records with id <= pending_upto in it (0: none). */
int kms_store_audit_append(struct kms_store *s, const struct kms_audit_row *rows, size_t n, int64_t pending_upto);
/* Call cb for the rows with from <= seq <= to (to 0: no bound), in order,
 * at most limit of them; cb returns < 0 to stop. */
int kms_store_audit_read(struct kms_store *s, uint64_t from, uint64_t to, size_t limit,
                         int (*cb)(const struct kms_audit_row *row, void *userdata), void *userdata);
/* The first seq with time_ms >= since_ms (0 if none). */
int kms_store_audit_seq_since(struct kms_store *s, int64_t since_ms, uint64_t *ret);
/* The audit keys, oldest first: number, backend id, SPKI. */
struct kms_audit_key {
        uint32_t no;
        uint8_t id[KMS_KEY_ID_BYTES];
        uint8_t spki[256];
        size_t spki_len;
};
int kms_store_audit_keys(struct kms_store *s, struct kms_audit_key **ret, size_t *ret_n);
int kms_store_audit_key_add(struct kms_store *s, const struct kms_audit_key *k);

/* The audit records of changes, committed in the change's transaction
 * (time_ms, kind ... details of row; seq, prev, hash are not set yet) and
 * chained into the audit table by the writer: pending_read gives the
 * oldest (at most max, into rows, with the largest id in *ret_upto);
 * kms_store_audit_append(..., upto) deletes them with the chained rows. */
int kms_store_audit_pending_add(struct kms_store *s, const struct kms_audit_row *row);
int kms_store_audit_pending_read(struct kms_store *s, struct kms_audit_row *rows, size_t max, size_t *ret_n,
                                 int64_t *ret_upto);

/* The object journal: the id of an object kmsd is about to make in
 * backend, committed before the object exists (journal_add), removed in
 * the transaction that records its version (key_insert and version_add
 * do it) or once the object is gone (journal_remove). journal_has: 1 if
 * id is recorded for backend, 0 if not. */
int kms_store_journal_add(struct kms_store *s, const char *backend, const uint8_t id[KMS_KEY_ID_BYTES],
                          const char *label, int64_t created);
int kms_store_journal_remove(struct kms_store *s, const uint8_t id[KMS_KEY_ID_BYTES]);
int kms_store_journal_has(struct kms_store *s, const char *backend, const uint8_t id[KMS_KEY_ID_BYTES]);
/* Forget every entry of backend (reconciliation, once it has handled the
 * objects that exist: the rest never came to be). */
int kms_store_journal_clear(struct kms_store *s, const char *backend);

/* Record that a session used this key schedule binding in this role;
 * -EEXIST if one already did (those keys must never be used again). */
int kms_store_session_binding_add(struct kms_store *s, const uint8_t *binding, size_t len, int role, int64_t created);
int kms_store_key_count(struct kms_store *s, bool include_destroyed, size_t *ret);
/* Keys of one owner (owner < 0: all). */
int kms_store_key_count_owner(struct kms_store *s, bool include_destroyed, int64_t owner, size_t *ret);

/* Set the state of the key alone (disable, enable), only if it is
 * `from` now: -ENOENT for no such key, KMS_E_STATE when its state is not
 * `from` (compare-and-set). */
int kms_store_key_set_state(struct kms_store *s, const char *name, enum kms_key_state from,
                            enum kms_key_state state);

/* Mark a key destroyed: the key and every version not revoked become
 * destroyed, the scheduled destruction is cleared. The backend objects
 * go after this (metadata first). */
int kms_store_key_destroy(struct kms_store *s, const char *name);

/* Rotation settings (only of an active or disabled key: KMS_E_STATE
 * otherwise); destroy_at (0 clears; not of a destroyed key). */
int kms_store_key_set_settings(struct kms_store *s, const char *name, uint64_t rotate_every,
                               uint64_t rotate_after_uses, uint32_t keep_versions);
int kms_store_key_set_destroy_at(struct kms_store *s, const char *name, int64_t destroy_at);

/* Add version v (state active) to key_id and make it primary, in one
 * transaction, if the primary is still expected_primary and the key is
 * active or disabled: KMS_E_STATE otherwise, -EEXIST if that version
 * number exists already. */
int kms_store_version_add(struct kms_store *s, int64_t key_id, uint32_t expected_primary,
                          const struct kms_key_version_record *v);

/* Revoke version (0: every version not yet revoked or destroyed). The key
 * itself becomes revoked when no active or lost version remains. -ENOENT if
 * nothing matched. */
int kms_store_version_revoke(struct kms_store *s, int64_t key_id, uint32_t version, int64_t at, const char *reason,
                             const char *note);

/* Set one version's state (destroyed when trimmed, lost when its object
 * is gone); only of an active or lost version (-ENOENT otherwise). */
int kms_store_version_set_state(struct kms_store *s, int64_t key_id, uint32_t version, enum kms_key_state state);

/* Group several writes (and the reads they depend on) into one
 * transaction: BEGIN IMMEDIATE takes the database's write lock at once,
 * so what is read in it cannot change before the commit. Every write
 * function below joins an open transaction instead of opening its own.
 * Both commits roll back when the commit fails; kms_store_commit_change()
 * also bumps the store generation (for a change of what a key may do;
 * kms_store_commit() is for use counts). */
int kms_store_begin(struct kms_store *s);
int kms_store_commit(struct kms_store *s);
int kms_store_commit_change(struct kms_store *s);
void kms_store_rollback(struct kms_store *s);
bool kms_store_in_transaction(struct kms_store *s);

/* Add n to the use counter of a version. */
int kms_store_version_add_uses(struct kms_store *s, int64_t key_id, uint32_t version, uint64_t n);
/* The stored use count of a version (-ENOENT if none). */
int kms_store_version_uses(struct kms_store *s, int64_t key_id, uint32_t version, uint64_t *ret);

/* A process-wide counter that every committed write changing a key's
 * state, versions or usages bumps (after the commit). Caches of store
 * data remember it from before their read and are stale once it moved. */
uint64_t kms_store_generation(void);

void kms_key_version_record_clear(struct kms_key_version_record *v);
void kms_key_record_free(struct kms_key_record *k);
void kms_key_records_free(struct kms_key_record *k, size_t n);
