/* What the store's files (store.c, store-keys.c, store-audit.c) share and
 * nobody else sees: the connection, its prepared statements, and the
 * helpers that translate SQLite results at the edge. */
#pragma once

#include <sqlite3.h>

#include "store.h"

enum stmt_id {
        STMT_KEY_GET,
        STMT_KEY_GET_VERSION,
        STMT_VERSIONS_OF,
        STMT_KEY_INSERT,
        STMT_VERSION_INSERT,
        STMT_KEY_LIST,
        STMT_KEY_COUNT,
        STMT_KEY_LIST_SCHEDULED,
        STMT_KEY_PAGE,
        STMT_KEY_PAGE_OWNER,
        STMT_REVOKED_PAGE,
        STMT_REVOKED_PAGE_OWNER,
        STMT_VERSIONS_REVOKED_OF,
        STMT_KEY_MARK_REVOKED,
        STMT_KEY_SET_STATE,
        STMT_VERSION_ADD_USES,
        STMT_VERSION_USES,
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
        STMT_AUDIT_PENDING_ADD,
        STMT_AUDIT_PENDING_READ,
        STMT_AUDIT_PENDING_DELETE,
        STMT_JOURNAL_ADD,
        STMT_JOURNAL_REMOVE,
        STMT_JOURNAL_HAS,
        STMT_JOURNAL_CLEAR,
        _STMT_MAX,
};

/* The columns of KEY_COLUMNS (store.c), read by read_key(). */
#define KEY_NCOLUMNS 16

struct kms_store {
        sqlite3 *db;
        sqlite3_stmt *stmt[_STMT_MAX];
};

/* The prepared statement id, reset and unbound; NULL if it cannot be
 * prepared (logged at debug level). */
sqlite3_stmt *kms_store_stmt(struct kms_store *s, enum stmt_id id);
/* An SQLite result code as a negative errno (what: for the debug log). */
int kms_store_sql_err(struct kms_store *s, int rc, const char *what);
int kms_store_exec(struct kms_store *s, const char *sql);
/* Run one prepared statement with the binds already made; the number of
 * rows it changed goes to *ret_changes if not NULL. */
int kms_store_step_done(struct kms_store *s, sqlite3_stmt *st, const char *what, int *ret_changes);
/* A write's own transaction when none is open (*ret_own true), or a part
 * of the caller's (BEGIN IMMEDIATE ... kms_store_commit()). txn_end
 * commits or rolls back what txn_begin opened, and returns r (or the
 * commit's error); inside the caller's transaction it only returns r. */
int kms_store_txn_begin(struct kms_store *s, bool *ret_own);
int kms_store_txn_end(struct kms_store *s, bool own, int r);
/* A text column into dst (cut to len), a blob column into dst (empty if
 * longer than cap). */
void kms_store_copy_text(char *dst, size_t len, sqlite3_stmt *st, int col);
void kms_store_copy_blob(uint8_t *dst, size_t cap, size_t *ret_len, sqlite3_stmt *st, int col);
