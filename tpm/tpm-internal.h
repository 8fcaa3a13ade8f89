/* Internals of the TPM 2.0 backend shared by its files. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <sqlite3.h>
#include <tss2/tss2_esys.h>
#include <tss2/tss2_tctildr.h>

#include "kms-backend.h"
#include "kms-tpm.h"

/* Caps on what the backend holds. */
#define KMS_TPM_MAX_CACHED_KEYS 64u /* loaded child keys, whatever the TPM says */
#define KMS_TPM_MAX_AUTH 64u        /* TPM2B_AUTH: the largest digest */
#define KMS_TPM_MAX_AUTH_FILE 256u  /* "hex:" and 64 bytes in hex fit */
#define KMS_TPM_MAX_BLOB 4096u      /* one marshalled TPM2B_PUBLIC or TPM2B_PRIVATE */
#define KMS_TPM_RECONNECT_MS 1000u  /* at most one connection attempt per second */

/* A child key loaded in the TPM, in the LRU list (most recent first). */
struct kms_tpm_key {
        uint8_t id[KMS_KEY_ID_BYTES];
        ESYS_TR handle;
        enum kms_algorithm alg;
        TPMA_OBJECT attributes;
        struct kms_tpm_key *prev, *next;
};

/* The loaded keys, at most cap of them: the TPM's transient slots less
 * the one the SRK holds (swtpm and the kernel's resource manager have
 * three). Lowered when the TPM runs out of object memory with fewer. */
struct kms_tpm_lru {
        struct kms_tpm_key *head, *tail;
        size_t n, cap;
};

struct kms_tpm {
        struct kms_backend base;

        /* Guards everything below down to the database: the ESYS context
         * is not thread-safe and the TPM does one command at a time, so
         * every TPM call holds it. PKCS#11 workers never take it. */
        pthread_mutex_t lock;
        char *tcti;
        char *owner_auth_file;
        TSS2_TCTI_CONTEXT *tcti_ctx;
        ESYS_CONTEXT *esys;
        ESYS_TR srk;
        /* A salted HMAC session bound to nothing, salted with the SRK:
         * TPM2_ECDH_ZGen and TPM2_RSA_Decrypt run in it with response
         * encryption, so Z and the plaintext cross the bus encrypted.
         * ESYS_TR_NONE if the TPM could not start one (password then). */
        ESYS_TR session;
        bool connected;
        bool broken;            /* the last call lost the TPM or its objects: reconnect */
        uint64_t next_try_ms;   /* monotonic time of the next connection attempt */
        unsigned transient_min; /* TPM_PT_HR_TRANSIENT_MIN */
        struct kms_tpm_lru lru;
        struct kms_backend_info info;
        char last_error[128]; /* why the TPM is unavailable, for info() */

        /* The blob table, on a connection of its own. Lock order: lock,
         * then db_lock. */
        pthread_mutex_t db_lock;
        sqlite3 *db;
};

/* What the core knows as struct kms_backend_worker: every worker shares
 * the one ESYS context. */
struct kms_tpm_worker {
        struct kms_tpm *t;
};

/* TSS2_RC → negative errno; logs Tss2_RC_Decode(rc) at debug level with
 * what. Marks t broken for a lost connection or a TPM reset (the
 * handles are gone), so the caller reconnects and retries once. */
int kms_tpm_rc_to_errno(struct kms_tpm *t, TSS2_RC rc, const char *what);
/* The TPM format-one/format-zero code without handle, parameter or
 * session numbers (TPM2_RC_VALUE for TPM2_RC_VALUE + TPM2_RC_P +
 * TPM2_RC_1), or 0 for an error of another layer (TCTI, ESYS). */
TSS2_RC kms_tpm_rc_base(TSS2_RC rc);

/* The session for an operation whose response is secret: the encrypting
 * session if there is one, else the password session. */
ESYS_TR kms_tpm_secret_session(struct kms_tpm *t);

/* Connection (context.c), all with t->lock held. ensure_connected returns
 * 0 when the TPM is usable, else KMS_E_BACKEND (or another negative errno)
 * and the reason in t->last_error. disconnect flushes what is loaded if
 * the TPM is still there, and frees the contexts. */
int kms_tpm_ensure_connected(struct kms_tpm *t);
void kms_tpm_disconnect(struct kms_tpm *t);
/* Current TPM_PT_HR_TRANSIENT_AVAIL, or a negative errno. */
int kms_tpm_transient_avail(struct kms_tpm *t, unsigned *ret);
/* Transient object handles in the TPM now (TPM2_CAP_HANDLES), for tests. */
int kms_tpm_transient_count(struct kms_tpm *t, unsigned *ret);

/* The LRU of loaded keys (handle-cache.c), t->lock held. */
struct kms_tpm_key *kms_tpm_lru_find(struct kms_tpm *t, const uint8_t id[KMS_KEY_ID_BYTES]);
void kms_tpm_lru_push(struct kms_tpm *t, struct kms_tpm_key *k);
/* Flush the least recently used key; false if none is loaded. */
bool kms_tpm_lru_evict_tail(struct kms_tpm *t);
/* Flush (if flush) and forget key id / every key. */
void kms_tpm_lru_drop(struct kms_tpm *t, const uint8_t id[KMS_KEY_ID_BYTES]);
void kms_tpm_lru_clear(struct kms_tpm *t, bool flush);

/* The blob table (store.c). Each takes t->db_lock. */
int kms_tpm_store_open(struct kms_tpm *t, const char *path, char *errbuf, size_t errlen);
void kms_tpm_store_close(struct kms_tpm *t);
int kms_tpm_store_put(struct kms_tpm *t, const uint8_t id[KMS_KEY_ID_BYTES], const char *label, const TPM2B_PUBLIC *pub,
                      const TPM2B_PRIVATE *priv);
/* -ENOENT if there is no row for id. */
int kms_tpm_store_get(struct kms_tpm *t, const uint8_t id[KMS_KEY_ID_BYTES], TPM2B_PUBLIC *ret_pub,
                      TPM2B_PRIVATE *ret_priv);
/* Deleting a missing row succeeds. */
int kms_tpm_store_delete(struct kms_tpm *t, const uint8_t id[KMS_KEY_ID_BYTES]);
/* 1 if the row exists, 0 if not. */
int kms_tpm_store_exists(struct kms_tpm *t, const uint8_t id[KMS_KEY_ID_BYTES]);
int kms_tpm_store_enumerate(struct kms_tpm *t, const char *prefix,
                            void (*cb)(const uint8_t id[KMS_KEY_ID_BYTES], const char *label, void *userdata),
                            void *userdata);

/* The algorithm of a public area kmsd could have made, or KMS_ALG_INVALID. */
enum kms_algorithm kms_tpm_public_algorithm(const TPMT_PUBLIC *p);

/* Shared by keys.c and attest.c, t->lock held where a TPM is used. */
/* Copy a big-endian number of at most len bytes into out, left-padded
 * with zeros to exactly len bytes; -1 if it is longer. */
int kms_tpm_pad_left(const uint8_t *in, size_t in_len, uint8_t *out, size_t len);
/* The SubjectPublicKeyInfo DER of a public area of algorithm alg (*ret
 * is the caller's). */
int kms_tpm_spki_from_public(const TPMT_PUBLIC *p, enum kms_algorithm alg, uint8_t **ret, size_t *ret_len);
/* After rc from a call that needs a free object slot: true if the TPM
 * was out of object memory and a key was flushed to make room. */
bool kms_tpm_made_room(struct kms_tpm *t, TSS2_RC rc);
/* The loaded key of id: from the LRU, else loaded from its blobs in
 * tpm_keys (load_key) or from the blobs given (load_blobs, for the
 * attestation key). -ENOENT if tpm_keys has no row for id. */
int kms_tpm_load_key(struct kms_tpm *t, const uint8_t id[KMS_KEY_ID_BYTES], struct kms_tpm_key **ret);
int kms_tpm_load_blobs(struct kms_tpm *t, const uint8_t id[KMS_KEY_ID_BYTES], const TPM2B_PUBLIC *pub,
                       const TPM2B_PRIVATE *priv, struct kms_tpm_key **ret);

/* The attestation key's blobs (store.c, table tpm_attestation_key, one
 * row). put keeps a row that is there already; get: -ENOENT if none. */
int kms_tpm_store_ak_put(struct kms_tpm *t, const TPM2B_PUBLIC *pub, const TPM2B_PRIVATE *priv);
int kms_tpm_store_ak_get(struct kms_tpm *t, TPM2B_PUBLIC *ret_pub, TPM2B_PRIVATE *ret_priv);

/* TPM2_Certify of a key by the attestation key (attest.c), as in struct
 * kms_backend_ops. */
int kms_tpm_attest(struct kms_backend_worker *w, const uint8_t id[KMS_KEY_ID_BYTES], const uint8_t *nonce,
                   size_t nonce_len, uint8_t **ret_attest, size_t *ret_attest_len, uint8_t **ret_sig,
                   size_t *ret_sig_len, uint8_t **ret_ak_spki, size_t *ret_ak_spki_len, uint8_t **ret_key_name,
                   size_t *ret_key_name_len, uint8_t **ret_key_public, size_t *ret_key_public_len);

/* Key operations (keys.c), as in struct kms_backend_ops. */
int kms_tpm_generate(struct kms_backend_worker *w, enum kms_algorithm alg, unsigned usages, const char *label,
                     uint8_t ret_id[KMS_KEY_ID_BYTES], uint8_t **ret_spki, size_t *ret_spki_len);
int kms_tpm_sign(struct kms_backend_worker *w, const uint8_t id[KMS_KEY_ID_BYTES], enum kms_algorithm alg,
                 enum kms_hash h, enum kms_padding pad, const uint8_t *digest, size_t digest_len,
                 uint8_t sig[KMS_MAX_SIGNATURE_BYTES], size_t *ret_sig_len);
int kms_tpm_derive(struct kms_backend_worker *w, const uint8_t id[KMS_KEY_ID_BYTES], enum kms_algorithm alg,
                   const uint8_t *peer_point, size_t peer_point_len, uint8_t *ret_secret, size_t *ret_secret_len);
int kms_tpm_decrypt(struct kms_backend_worker *w, const uint8_t id[KMS_KEY_ID_BYTES], enum kms_algorithm alg,
                    const uint8_t *in, size_t in_len, uint8_t *out, size_t *out_len);
int kms_tpm_destroy(struct kms_backend_worker *w, const uint8_t id[KMS_KEY_ID_BYTES]);
int kms_tpm_exists(struct kms_backend_worker *w, const uint8_t id[KMS_KEY_ID_BYTES]);
int kms_tpm_enumerate(struct kms_backend_worker *w, const char *prefix,
                      void (*cb)(const uint8_t id[KMS_KEY_ID_BYTES], const char *label, void *userdata),
                      void *userdata);

extern const struct kms_backend_ops kms_tpm_ops;
