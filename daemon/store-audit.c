/* The store: the audit table, the audit keys and the session bindings; see
 * store.h and docs/audit.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kms-error.h"
#include "kms-log.h"
#include "kms-util.h"
#include "store-internal.h"

void kms_store_copy_text(char *dst, size_t len, sqlite3_stmt *st, int col)
{
        const unsigned char *t = sqlite3_column_text(st, col);

        snprintf(dst, len, "%s", t ? (const char *)t : "");
}

void kms_store_copy_blob(uint8_t *dst, size_t cap, size_t *ret_len, sqlite3_stmt *st, int col)
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
        sqlite3_stmt *st = kms_store_stmt(s, STMT_AUDIT_HEAD);
        int rc;

        if (!st)
                return KMS_E_STORE;
        *ret_seq = 0;
        memset(ret_hash, 0, 32);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                *ret_seq = (uint64_t)sqlite3_column_int64(st, 0);
                kms_store_copy_blob(ret_hash, 32, NULL, st, 1);
        }
        sqlite3_reset(st);
        return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : kms_store_sql_err(s, rc, "audit head");
}

int kms_store_audit_append(struct kms_store *s, const struct kms_audit_row *rows, size_t n, int64_t pending_upto)
{
        int r = kms_store_exec(s, "BEGIN IMMEDIATE");

        if (r < 0)
                return r;
        if (pending_upto > 0) {
                sqlite3_stmt *st = kms_store_stmt(s, STMT_AUDIT_PENDING_DELETE);

                if (!st)
                        r = KMS_E_STORE;
                else {
                        sqlite3_bind_int64(st, 1, pending_upto);
                        r = kms_store_step_done(s, st, "audit pending delete", NULL);
                }
        }
        for (size_t i = 0; i < n && r >= 0; i++) {
                const struct kms_audit_row *a = &rows[i];
                sqlite3_stmt *st = kms_store_stmt(s, STMT_AUDIT_INSERT);

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
                r = kms_store_step_done(s, st, "audit insert", NULL);
        }
        if (r < 0) {
                (void)kms_store_exec(s, "ROLLBACK");
                return r;
        }
        r = kms_store_exec(s, "COMMIT");
        if (r < 0)
                (void)kms_store_exec(s, "ROLLBACK");
        return r;
}

int kms_store_audit_pending_add(struct kms_store *s, const struct kms_audit_row *a)
{
        sqlite3_stmt *st = kms_store_stmt(s, STMT_AUDIT_PENDING_ADD);
        bool own;
        int r;

        if (!st)
                return KMS_E_STORE;
        r = kms_store_txn_begin(s, &own);
        if (r < 0)
                return r;
        sqlite3_bind_int64(st, 1, a->time_ms);
        sqlite3_bind_text(st, 2, a->kind, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, a->uid);
        sqlite3_bind_int64(st, 4, a->pid);
        sqlite3_bind_text(st, 5, a->exe, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 6, a->operation, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 7, a->key, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 8, a->version);
        sqlite3_bind_text(st, 9, a->result, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 10, a->details, -1, SQLITE_STATIC);
        r = kms_store_step_done(s, st, "audit pending add", NULL);
        return kms_store_txn_end(s, own, r);
}

int kms_store_audit_pending_read(struct kms_store *s, struct kms_audit_row *rows, size_t max, size_t *ret_n,
                                 int64_t *ret_upto)
{
        sqlite3_stmt *st = kms_store_stmt(s, STMT_AUDIT_PENDING_READ);
        size_t n = 0;
        int64_t upto = 0;
        int rc = SQLITE_DONE;

        *ret_n = 0;
        *ret_upto = 0;
        if (!st)
                return KMS_E_STORE;
        sqlite3_bind_int64(st, 1, (sqlite3_int64)max);
        while (n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
                struct kms_audit_row *row = &rows[n++];

                memset(row, 0, sizeof(*row));
                upto = sqlite3_column_int64(st, 0);
                row->time_ms = sqlite3_column_int64(st, 1);
                kms_store_copy_text(row->kind, sizeof(row->kind), st, 2);
                row->uid = (uint32_t)sqlite3_column_int64(st, 3);
                row->pid = (int32_t)sqlite3_column_int64(st, 4);
                kms_store_copy_text(row->exe, sizeof(row->exe), st, 5);
                kms_store_copy_text(row->operation, sizeof(row->operation), st, 6);
                kms_store_copy_text(row->key, sizeof(row->key), st, 7);
                row->version = (uint32_t)sqlite3_column_int64(st, 8);
                kms_store_copy_text(row->result, sizeof(row->result), st, 9);
                kms_store_copy_text(row->details, sizeof(row->details), st, 10);
        }
        if (n < max && rc != SQLITE_DONE) {
                sqlite3_reset(st);
                return kms_store_sql_err(s, rc, "audit pending read");
        }
        sqlite3_reset(st);
        *ret_n = n;
        *ret_upto = upto;
        return 0;
}

int kms_store_audit_read(struct kms_store *s, uint64_t from, uint64_t to, size_t limit,
                         int (*cb)(const struct kms_audit_row *row, void *userdata), void *userdata)
{
        sqlite3_stmt *st = kms_store_stmt(s, STMT_AUDIT_READ);
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
                kms_store_copy_text(row->kind, sizeof(row->kind), st, 2);
                row->uid = (uint32_t)sqlite3_column_int64(st, 3);
                row->pid = (int32_t)sqlite3_column_int64(st, 4);
                kms_store_copy_text(row->exe, sizeof(row->exe), st, 5);
                kms_store_copy_text(row->operation, sizeof(row->operation), st, 6);
                kms_store_copy_text(row->key, sizeof(row->key), st, 7);
                row->version = (uint32_t)sqlite3_column_int64(st, 8);
                kms_store_copy_text(row->result, sizeof(row->result), st, 9);
                kms_store_copy_text(row->details, sizeof(row->details), st, 10);
                kms_store_copy_blob(row->prev, 32, NULL, st, 11);
                kms_store_copy_blob(row->hash, 32, NULL, st, 12);
                kms_store_copy_blob(row->sig, sizeof(row->sig), &row->sig_len, st, 13);
                r = cb(row, userdata);
                if (r < 0)
                        break;
        }
        if (r >= 0 && rc != SQLITE_ROW && rc != SQLITE_DONE)
                r = kms_store_sql_err(s, rc, "audit read");
        sqlite3_reset(st);
        free(row);
        return r < 0 ? r : 0;
}

int kms_store_audit_seq_since(struct kms_store *s, int64_t since_ms, uint64_t *ret)
{
        sqlite3_stmt *st = kms_store_stmt(s, STMT_AUDIT_SINCE);
        int rc;

        if (!st)
                return KMS_E_STORE;
        sqlite3_bind_int64(st, 1, since_ms);
        rc = sqlite3_step(st);
        *ret = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(st, 0) : 0;
        sqlite3_reset(st);
        return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : kms_store_sql_err(s, rc, "audit since");
}

int kms_store_audit_keys(struct kms_store *s, struct kms_audit_key **ret, size_t *ret_n)
{
        sqlite3_stmt *st = kms_store_stmt(s, STMT_AUDIT_KEYS);
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
                kms_store_copy_blob(keys[n].id, KMS_KEY_ID_BYTES, NULL, st, 1);
                kms_store_copy_blob(keys[n].spki, sizeof(keys[n].spki), &keys[n].spki_len, st, 2);
                n++;
        }
        sqlite3_reset(st);
        if (rc != SQLITE_DONE) {
                free(keys);
                return kms_store_sql_err(s, rc, "audit keys");
        }
        *ret = keys;
        *ret_n = n;
        return 0;
}

int kms_store_audit_key_add(struct kms_store *s, const struct kms_audit_key *k)
{
        sqlite3_stmt *st = kms_store_stmt(s, STMT_AUDIT_KEY_ADD);

        if (!st)
                return KMS_E_STORE;
        sqlite3_bind_int64(st, 1, k->no);
        sqlite3_bind_blob(st, 2, k->id, KMS_KEY_ID_BYTES, SQLITE_STATIC);
        sqlite3_bind_blob(st, 3, k->spki, (int)k->spki_len, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, kms_now_unix());
        return kms_store_step_done(s, st, "audit key", NULL);
}

int kms_store_session_binding_add(struct kms_store *s, const uint8_t *binding, size_t len, int role, int64_t created)
{
        sqlite3_stmt *st = kms_store_stmt(s, STMT_BINDING_ADD);

        if (!st)
                return KMS_E_STORE;
        sqlite3_bind_blob(st, 1, binding, (int)len, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, role);
        sqlite3_bind_int64(st, 3, created);
        return kms_store_step_done(s, st, "session binding", NULL);
}

