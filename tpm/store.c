/* The TPM backend's blobs: one row per child key in the table tpm_keys of
 * kmsd's database, on a connection of the backend's own. The public and
 * private areas are TPM2B_PUBLIC and TPM2B_PRIVATE marshalled with
 * tss2-mu (the private area is encrypted by the SRK, so it is of use only
 * in this TPM under this owner seed); never a saved context, which a TPM
 * reset would make worthless. Deleted rows are overwritten in the file
 * (secure_delete). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>

#include "kms-error.h"
#include "kms-log.h"
#include "kms-util.h"
#include "tpm-internal.h"

static const char schema[] = "CREATE TABLE IF NOT EXISTS tpm_keys ("
                             "id BLOB PRIMARY KEY, "
                             "label TEXT NOT NULL, "
                             "public BLOB NOT NULL, "
                             "private BLOB NOT NULL, "
                             "created INTEGER NOT NULL)";

/* The attestation key: one row, made on the first AttestKey. */
static const char schema_ak[] = "CREATE TABLE IF NOT EXISTS tpm_attestation_key ("
                                "slot INTEGER PRIMARY KEY CHECK (slot = 1), "
                                "public BLOB NOT NULL, "
                                "private BLOB NOT NULL, "
                                "created INTEGER NOT NULL)";

/* SQLite result → negative errno; logs the SQLite message at debug level. */
static int db_error(struct kms_tpm *t, int rc, const char *what)
{
        log_debug("tpm: sqlite: %s: %s (%d)", what, t->db ? sqlite3_errmsg(t->db) : sqlite3_errstr(rc), rc);
        switch (rc & 0xff) {
        case SQLITE_BUSY:
        case SQLITE_LOCKED: return -EBUSY;
        case SQLITE_NOMEM: return -ENOMEM;
        case SQLITE_FULL: return -ENOSPC;
        case SQLITE_READONLY: return -EROFS;
        default: return KMS_E_STORE;
        }
}

static int exec(struct kms_tpm *t, const char *sql)
{
        int rc = sqlite3_exec(t->db, sql, NULL, NULL, NULL);

        return rc == SQLITE_OK ? 0 : db_error(t, rc, sql);
}

int kms_tpm_store_open(struct kms_tpm *t, const char *path, char *errbuf, size_t errlen)
{
        int rc, r;

        rc = sqlite3_open_v2(path, &t->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
        if (rc != SQLITE_OK) {
                if (errbuf && errlen)
                        snprintf(errbuf, errlen, "cannot open the database %s for the TPM key blobs: %s", path,
                                 t->db ? sqlite3_errmsg(t->db) : sqlite3_errstr(rc));
                r = db_error(t, rc, "sqlite3_open_v2");
                kms_tpm_store_close(t);
                return r;
        }
        sqlite3_busy_timeout(t->db, 5000);
        r = exec(t, "PRAGMA journal_mode = WAL");
        if (r == 0)
                r = exec(t, "PRAGMA synchronous = FULL");
        if (r == 0)
                r = exec(t, "PRAGMA secure_delete = ON");
        if (r == 0)
                r = exec(t, schema);
        if (r == 0)
                r = exec(t, schema_ak);
        if (r < 0) {
                if (errbuf && errlen)
                        snprintf(errbuf, errlen, "cannot set up the table tpm_keys in %s: %s", path,
                                 sqlite3_errmsg(t->db));
                kms_tpm_store_close(t);
        }
        return r;
}

void kms_tpm_store_close(struct kms_tpm *t)
{
        if (t->db)
                sqlite3_close_v2(t->db);
        t->db = NULL;
}

int kms_tpm_store_put(struct kms_tpm *t, const uint8_t id[KMS_KEY_ID_BYTES], const char *label, const TPM2B_PUBLIC *pub,
                      const TPM2B_PRIVATE *priv)
{
        uint8_t pub_buf[sizeof(TPM2B_PUBLIC)], priv_buf[sizeof(TPM2B_PRIVATE)];
        size_t pub_len = 0, priv_len = 0;
        sqlite3_stmt *st = NULL;
        TSS2_RC rc;
        int r;

        rc = Tss2_MU_TPM2B_PUBLIC_Marshal(pub, pub_buf, sizeof(pub_buf), &pub_len);
        if (rc == TSS2_RC_SUCCESS)
                rc = Tss2_MU_TPM2B_PRIVATE_Marshal(priv, priv_buf, sizeof(priv_buf), &priv_len);
        if (rc != TSS2_RC_SUCCESS) {
                log_debug("tpm: marshalling a key's blobs: %s", Tss2_RC_Decode(rc));
                return KMS_E_BACKEND;
        }
        pthread_mutex_lock(&t->db_lock);
        r = sqlite3_prepare_v2(t->db,
                               "INSERT INTO tpm_keys (id, label, public, private, created) VALUES (?, ?, ?, ?, ?)", -1,
                               &st, NULL);
        if (r != SQLITE_OK) {
                r = db_error(t, r, "prepare INSERT");
                goto out;
        }
        if (sqlite3_bind_blob(st, 1, id, KMS_KEY_ID_BYTES, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_text(st, 2, label, -1, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_blob(st, 3, pub_buf, (int)pub_len, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_blob(st, 4, priv_buf, (int)priv_len, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_int64(st, 5, kms_now_unix()) != SQLITE_OK) {
                r = db_error(t, sqlite3_errcode(t->db), "bind INSERT");
                goto out;
        }
        r = sqlite3_step(st);
        r = r == SQLITE_DONE ? 0 : db_error(t, r, "INSERT INTO tpm_keys");
out:
        sqlite3_finalize(st);
        pthread_mutex_unlock(&t->db_lock);
        return r;
}

/* Step st (prepared, bound; db_lock held) for one row of (public,
 * private) blobs and unmarshal them: exactly one structure in each blob,
 * nothing after it. -ENOENT without a row. Finalizes st. */
static int read_blobs(struct kms_tpm *t, sqlite3_stmt *st, const char *what, TPM2B_PUBLIC *ret_pub,
                      TPM2B_PRIVATE *ret_priv)
{
        TPM2B_PUBLIC pub = {0};
        TPM2B_PRIVATE priv = {0};
        int r = sqlite3_step(st);

        if (r == SQLITE_DONE)
                r = -ENOENT;
        else if (r != SQLITE_ROW)
                r = db_error(t, r, what);
        else {
                const uint8_t *a = sqlite3_column_blob(st, 0), *b = sqlite3_column_blob(st, 1);
                size_t alen = (size_t)sqlite3_column_bytes(st, 0), blen = (size_t)sqlite3_column_bytes(st, 1);
                size_t aoff = 0, boff = 0;

                if (!a || !b || alen > KMS_TPM_MAX_BLOB || blen > KMS_TPM_MAX_BLOB ||
                    Tss2_MU_TPM2B_PUBLIC_Unmarshal(a, alen, &aoff, &pub) != TSS2_RC_SUCCESS || aoff != alen ||
                    Tss2_MU_TPM2B_PRIVATE_Unmarshal(b, blen, &boff, &priv) != TSS2_RC_SUCCESS || boff != blen) {
                        log_debug("tpm: %s: the blobs do not unmarshal", what);
                        r = KMS_E_STORE;
                } else {
                        *ret_pub = pub;
                        *ret_priv = priv;
                        r = 0;
                }
        }
        sqlite3_finalize(st);
        return r;
}

/* Prepare sql (db_lock held) with the key id bound to its one parameter.
 * On failure *ret is NULL and the error is logged as what. */
static int prepare_by_id(struct kms_tpm *t, const char *sql, const uint8_t id[KMS_KEY_ID_BYTES], const char *what,
                         sqlite3_stmt **ret)
{
        sqlite3_stmt *st = NULL;
        int r;

        *ret = NULL;
        r = sqlite3_prepare_v2(t->db, sql, -1, &st, NULL);
        if (r != SQLITE_OK)
                return db_error(t, r, what);
        if (sqlite3_bind_blob(st, 1, id, KMS_KEY_ID_BYTES, SQLITE_STATIC) != SQLITE_OK) {
                r = db_error(t, sqlite3_errcode(t->db), what);
                sqlite3_finalize(st);
                return r;
        }
        *ret = st;
        return 0;
}

int kms_tpm_store_get(struct kms_tpm *t, const uint8_t id[KMS_KEY_ID_BYTES], TPM2B_PUBLIC *ret_pub,
                      TPM2B_PRIVATE *ret_priv)
{
        sqlite3_stmt *st = NULL;
        int r;

        pthread_mutex_lock(&t->db_lock);
        r = prepare_by_id(t, "SELECT public, private FROM tpm_keys WHERE id = ?", id, "prepare SELECT", &st);
        if (r == 0)
                r = read_blobs(t, st, "SELECT FROM tpm_keys", ret_pub, ret_priv);
        pthread_mutex_unlock(&t->db_lock);
        return r;
}

int kms_tpm_store_delete(struct kms_tpm *t, const uint8_t id[KMS_KEY_ID_BYTES])
{
        sqlite3_stmt *st = NULL;
        int r;

        pthread_mutex_lock(&t->db_lock);
        r = prepare_by_id(t, "DELETE FROM tpm_keys WHERE id = ?", id, "prepare DELETE", &st);
        if (r < 0)
                goto out;
        r = sqlite3_step(st);
        r = r == SQLITE_DONE ? 0 : db_error(t, r, "DELETE FROM tpm_keys");
        if (r == 0 && sqlite3_changes(t->db) > 0) {
                /* secure_delete zeroed the page; move it into the database
                 * and truncate the WAL so the old frames go too. Best
                 * effort: a reader of kmsd's may hold the WAL. */
                sqlite3_finalize(st);
                st = NULL;
                if (sqlite3_wal_checkpoint_v2(t->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL) != SQLITE_OK)
                        log_debug("tpm: WAL checkpoint after a delete: %s", sqlite3_errmsg(t->db));
        }
out:
        sqlite3_finalize(st);
        pthread_mutex_unlock(&t->db_lock);
        return r;
}

int kms_tpm_store_exists(struct kms_tpm *t, const uint8_t id[KMS_KEY_ID_BYTES])
{
        sqlite3_stmt *st = NULL;
        int r;

        pthread_mutex_lock(&t->db_lock);
        r = prepare_by_id(t, "SELECT 1 FROM tpm_keys WHERE id = ?", id, "prepare SELECT 1", &st);
        if (r < 0)
                goto out;
        r = sqlite3_step(st);
        r = r == SQLITE_ROW ? 1 : r == SQLITE_DONE ? 0 : db_error(t, r, "SELECT 1 FROM tpm_keys");
out:
        sqlite3_finalize(st);
        pthread_mutex_unlock(&t->db_lock);
        return r;
}

struct found_key {
        uint8_t id[KMS_KEY_ID_BYTES];
        char *label;
};

int kms_tpm_store_enumerate(struct kms_tpm *t, const char *prefix,
                            void (*cb)(const uint8_t id[KMS_KEY_ID_BYTES], const char *label, void *userdata),
                            void *userdata)
{
        struct found_key *found = NULL;
        size_t n = 0, cap = 0;
        sqlite3_stmt *st = NULL;
        int r;

        /* Collect first, call back after: the callback may use the
         * backend, and must not run with db_lock held. */
        pthread_mutex_lock(&t->db_lock);
        r = sqlite3_prepare_v2(t->db,
                               "SELECT id, label FROM tpm_keys WHERE substr(label, 1, length(?1)) = ?1 ORDER BY rowid",
                               -1, &st, NULL);
        if (r != SQLITE_OK) {
                r = db_error(t, r, "prepare SELECT id, label");
                goto out;
        }
        if (sqlite3_bind_text(st, 1, prefix, -1, SQLITE_STATIC) != SQLITE_OK) {
                r = db_error(t, sqlite3_errcode(t->db), "bind SELECT id, label");
                goto out;
        }
        while ((r = sqlite3_step(st)) == SQLITE_ROW) {
                const void *id = sqlite3_column_blob(st, 0);
                const char *label = (const char *)sqlite3_column_text(st, 1);

                if (!id || sqlite3_column_bytes(st, 0) != KMS_KEY_ID_BYTES || !label)
                        continue; /* not a row this backend wrote */
                if (n == cap) {
                        size_t ncap = cap ? 2 * cap : 64;
                        struct found_key *nf = reallocarray(found, ncap, sizeof(*found));

                        if (!nf) {
                                r = -ENOMEM;
                                goto out;
                        }
                        found = nf;
                        cap = ncap;
                }
                found[n].label = strdup(label);
                if (!found[n].label) {
                        r = -ENOMEM;
                        goto out;
                }
                memcpy(found[n].id, id, KMS_KEY_ID_BYTES);
                n++;
        }
        r = r == SQLITE_DONE ? 0 : db_error(t, r, "SELECT id, label FROM tpm_keys");
out:
        sqlite3_finalize(st);
        pthread_mutex_unlock(&t->db_lock);
        for (size_t i = 0; i < n; i++) {
                if (r == 0)
                        cb(found[i].id, found[i].label, userdata);
                free(found[i].label);
        }
        free(found);
        return r;
}

/* ---------------------------------------------------------------- the AK */

int kms_tpm_store_ak_put(struct kms_tpm *t, const TPM2B_PUBLIC *pub, const TPM2B_PRIVATE *priv)
{
        uint8_t pub_buf[sizeof(TPM2B_PUBLIC)], priv_buf[sizeof(TPM2B_PRIVATE)];
        size_t pub_len = 0, priv_len = 0;
        sqlite3_stmt *st = NULL;
        TSS2_RC rc;
        int r;

        rc = Tss2_MU_TPM2B_PUBLIC_Marshal(pub, pub_buf, sizeof(pub_buf), &pub_len);
        if (rc == TSS2_RC_SUCCESS)
                rc = Tss2_MU_TPM2B_PRIVATE_Marshal(priv, priv_buf, sizeof(priv_buf), &priv_len);
        if (rc != TSS2_RC_SUCCESS) {
                log_debug("tpm: marshalling the attestation key's blobs: %s", Tss2_RC_Decode(rc));
                return KMS_E_BACKEND;
        }
        pthread_mutex_lock(&t->db_lock);
        /* OR IGNORE: a row that is there already stays the AK. */
        r = sqlite3_prepare_v2(t->db,
                               "INSERT OR IGNORE INTO tpm_attestation_key (slot, public, private, created) "
                               "VALUES (1, ?, ?, ?)",
                               -1, &st, NULL);
        if (r != SQLITE_OK) {
                r = db_error(t, r, "prepare INSERT AK");
                goto out;
        }
        if (sqlite3_bind_blob(st, 1, pub_buf, (int)pub_len, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_blob(st, 2, priv_buf, (int)priv_len, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_int64(st, 3, kms_now_unix()) != SQLITE_OK) {
                r = db_error(t, sqlite3_errcode(t->db), "bind INSERT AK");
                goto out;
        }
        r = sqlite3_step(st);
        r = r == SQLITE_DONE ? 0 : db_error(t, r, "INSERT INTO tpm_attestation_key");
out:
        sqlite3_finalize(st);
        pthread_mutex_unlock(&t->db_lock);
        return r;
}

int kms_tpm_store_ak_get(struct kms_tpm *t, TPM2B_PUBLIC *ret_pub, TPM2B_PRIVATE *ret_priv)
{
        sqlite3_stmt *st = NULL;
        int r;

        pthread_mutex_lock(&t->db_lock);
        r = sqlite3_prepare_v2(t->db, "SELECT public, private FROM tpm_attestation_key WHERE slot = 1", -1, &st, NULL);
        if (r != SQLITE_OK)
                r = db_error(t, r, "prepare SELECT AK");
        else
                r = read_blobs(t, st, "SELECT FROM tpm_attestation_key", ret_pub, ret_priv);
        pthread_mutex_unlock(&t->db_lock);
        return r;
}
