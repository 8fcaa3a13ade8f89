/* The API of org.kmsd.KeyManager1, one file per domain (keys.c,
 * signing.c, derive.c, lifecycle.c, sessions.c, audit.c, policy.c,
 * status.c). Each file holds its argument parsers (bus thread), its
 * handlers (worker) and its slice of the method table; api.c hands the
 * slices to the core's registry at start. This header is what the domain
 * files share: the slices, and the helpers of helpers.c.
 *
 * The API uses the core (daemon.h: the request, the pool, the store, the
 * audit log, the signals); the core never calls into this folder. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <dbus/dbus.h>

#include "daemon.h"
#include "kms-error.h"
#include "kms-util.h"
#include "peer.h"

/* The slices (one per domain file) and the one call that registers them
 * all; a member declared twice is an error (-EEXIST, errbuf names both
 * domains). */
extern const struct kms_method_slice kms_api_keys, kms_api_signing, kms_api_derive, kms_api_lifecycle,
        kms_api_sessions, kms_api_audit, kms_api_policy, kms_api_status;
int kms_api_register(struct kms_registry *reg, char *errbuf, size_t errlen);

/* ---- arguments (bus thread) ------------------------------------------------
 * The method's signature was checked against its table entry before its
 * parser runs, so the readers need not check types of positional
 * arguments; options (a{sv}) are checked one by one. Every reader writes a
 * sentence that quotes the bad value to errmsg and returns a negative
 * errno. */

/* A key name (s): checked and copied to req->name. */
int kms_arg_name(DBusMessageIter *it, struct kms_request *req, char *errmsg, size_t errlen);
/* A byte array (ay): *ret points into the message ("" when empty). */
int kms_arg_bytes(DBusMessageIter *it, const uint8_t **ret, size_t *ret_len);
/* data of n bytes against max_message_bytes (-EMSGSIZE, LimitExceeded). */
int kms_arg_data_size(struct kms_daemon *d, size_t n, const char *what, char *errmsg, size_t errlen);

/* Called for each option; -ENOENT means "not an option of this method". */
typedef int (*kms_option_fn)(struct kms_request *req, const char *key, DBusMessageIter *var, char *errmsg,
                             size_t errlen);
/* The a{sv} at it, each entry through fn (NULL: the method takes none);
 * at most KMS_MAX_OPTIONS entries; an unknown key is InvalidArgs naming
 * it and member. */
int kms_arg_options(DBusMessageIter *it, const char *member, kms_option_fn fn, struct kms_request *req, char *errmsg,
                    size_t errlen);
/* (s name, a{sv} options) with the method's option reader. */
int kms_arg_name_options(struct kms_request *req, kms_option_fn fn, char *errmsg, size_t errlen);
/* A method without arguments (its empty signature was checked). */
int kms_arg_none(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen);

/* The variant's type must be type (sig names it in the message). */
int kms_opt_expect(DBusMessageIter *var, int type, const char *sig, const char *key, char *errmsg, size_t errlen);
/* An s (*ret points into the message) and a b. */
int kms_opt_string(DBusMessageIter *var, const char *key, const char **ret, char *errmsg, size_t errlen);
int kms_opt_bool(DBusMessageIter *var, const char *key, bool *ret, char *errmsg, size_t errlen);
/* A u (type DBUS_TYPE_UINT32) or t (DBUS_TYPE_UINT64) in min..max. */
int kms_opt_number(DBusMessageIter *var, const char *key, int type, uint64_t min, uint64_t max, uint64_t *ret,
                   char *errmsg, size_t errlen);
int kms_opt_u32(DBusMessageIter *var, const char *key, uint32_t min, uint32_t max, uint32_t *ret, char *errmsg,
                size_t errlen);
/* A t in min..INT64_MAX/2. */
int kms_opt_u64(DBusMessageIter *var, const char *key, uint64_t min, uint64_t *ret, char *errmsg, size_t errlen);
/* An ay of at most max bytes; *ret points into the message. */
int kms_opt_bytes(DBusMessageIter *var, const char *key, size_t max, const uint8_t **ret, size_t *ret_len,
                  char *errmsg, size_t errlen);
/* The option reader of methods whose one option is "version" (u, >= 1). */
int kms_opt_version(struct kms_request *req, const char *key, DBusMessageIter *var, char *errmsg, size_t errlen);
/* The paging options of ListKeys and ListRevoked: "limit" (u,
 * 1..KMS_LIST_MAX_LIMIT) into req->limit, "after" (s, "" or a key name)
 * into req->list_after. The parser sets req->limit's default first. */
int kms_opt_page(struct kms_request *req, const char *key, DBusMessageIter *var, char *errmsg, size_t errlen);

/* ---- replies ---------------------------------------------------------------
 * Each returns false when libdbus is out of memory. Strings that are not
 * valid UTF-8 (from files, devices, the store) get '?' for the bad bytes:
 * libdbus aborts on invalid UTF-8. */

bool kms_dict_add_str(DBusMessageIter *dict, const char *key, const char *v);
bool kms_dict_add_bool(DBusMessageIter *dict, const char *key, bool v);
bool kms_dict_add_u32(DBusMessageIter *dict, const char *key, uint32_t v);
bool kms_dict_add_u64(DBusMessageIter *dict, const char *key, uint64_t v);
bool kms_dict_add_i64(DBusMessageIter *dict, const char *key, int64_t v);
/* The bytes as lower-case hex, a string entry. */
bool kms_dict_add_hex(DBusMessageIter *dict, const char *key, const uint8_t *p, size_t n);
/* The key dictionary (a{sv}) of docs/dbus-api.md, with its versions
 * ("versions": aa{sv}) when with_versions. */
bool kms_append_key(DBusMessageIter *it, const struct kms_key_record *k, bool with_versions);
bool kms_append_bytes(DBusMessageIter *it, const uint8_t *data, size_t len);
/* A method return for req in *ret, it set up to append to it. */
int kms_reply_new(struct kms_request *req, DBusMessage **ret, DBusMessageIter *it);
/* A method return carrying the key dictionary of req->name with its
 * versions, as the store has it now. */
int kms_reply_key(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg, size_t errlen);
/* A method return carrying one u. */
int kms_reply_u32(struct kms_request *req, DBusMessage **ret, uint32_t v);
/* Wipe the first byte array of m when libdbus frees m: for replies that
 * carry a secret and for requests that carry a plaintext. */
void kms_api_wipe_on_free(DBusMessage *m);

/* ---- worker steps ---------------------------------------------------------- */

/* A store error as the caller's error: NotFound naming req->name, or the
 * store's failure. */
int kms_api_store_fail(int r, const struct kms_request *req, char *errmsg, size_t errlen);
/* One page of a list (ListKeys, ListRevoked): at most req->limit keys
 * named after req->list_after that req's caller may read, in name order
 * (*ret, the caller frees it). The policy's reach for the caller picks
 * the query: nothing for a caller who may read no key, the caller's own
 * keys by the owner index when only owner rights can allow, every key
 * (LIMIT req->limit) for an admin; each key is then decided for `read`
 * under the policy the bus thread decided the request by. Store errors
 * as the store returns them. */
int kms_api_list_page(struct kms_worker *w, const struct kms_request *req, bool include_destroyed, bool revoked_only,
                      struct kms_key_page_entry **ret, size_t *ret_n);
/* KeyDestroyed for a destroyed key, else 0. */
int kms_api_check_usable(const struct kms_key_record *k, char *errmsg, size_t errlen);
/* Key and version (0: primary) of req->name; NotFound names the versions
 * the key has. The caller clears *ret_v. */
int kms_api_load_version(struct kms_worker *w, const struct kms_request *req, uint32_t version, bool want_spki,
                         struct kms_key_record *ret_key, struct kms_key_version_record *ret_v, char *errmsg,
                         size_t errlen);
/* The backend k lives in, and this worker's context for it. */
int kms_api_key_backend(struct kms_worker *w, const struct kms_key_record *k, const struct kms_backend_ops **ret_ops,
                        struct kms_backend_worker **ret_bw, char *errmsg, size_t errlen);

/* derive.c, for OpenSession: the primary version of an EC key with the
 * derive usage, usable, and req->peer checked against its curve (its
 * point in point; its canonical DER in *ret_spki when that is not NULL,
 * freed with OPENSSL_free). On failure v is cleared. */
int kms_api_derive_prepare(struct kms_worker *w, struct kms_request *req, struct kms_key_record *k,
                           struct kms_key_version_record *v, uint8_t point[KMS_MAX_EC_POINT_BYTES], size_t *point_len, uint8_t **ret_spki,
                           size_t *ret_spki_len, char *errmsg, size_t errlen);
/* The ECDH secret of k's version v with point, computed in the backend. */
int kms_api_derive_secret(struct kms_worker *w, struct kms_request *req, const struct kms_key_record *k,
                          const struct kms_key_version_record *v, const uint8_t *point, size_t point_len,
                          uint8_t z[KMS_MAX_ECDH_SECRET_BYTES],
                          size_t *z_len, char *errmsg, size_t errlen);
