/* The method table of org.kmsd.KeyManager1 and its handlers. Each method
 * has a parse step (bus thread: arguments → struct kms_request, with the
 * bad value quoted on error), an access decision on the bus thread
 * (access.c, from the method's operation and scope), and a run step
 * (worker: load the key, act, reply). docs/dbus-api.md is the reference. */
#include <pthread.h>
#include <pwd.h>
#include <stdarg.h>

#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

#include "daemon.h"
#include "kms-bus.h"
#include "kms-error.h"
#include "kms-hkdf.h"
#include "kms-log.h"
#include "kms-session-crypto.h"
#include "peer.h"
#include "lifecycle.h"

#define fail kms_errorf

/* ---- parsing (bus thread) ---------------------------------------------- */

static int parse_name(DBusMessageIter *it, struct kms_request *req, char *errmsg, size_t errlen)
{
        const char *name, *why = NULL;

        dbus_message_iter_get_basic(it, &name);
        dbus_message_iter_next(it);
        if (kms_key_name_check(name, &why) < 0)
                return fail(errmsg, errlen, -EINVAL, "invalid key name '%.140s': %s", name, why);
        snprintf(req->name, sizeof(req->name), "%s", name);
        return 0;
}

static int parse_bytes(DBusMessageIter *it, const uint8_t **ret, size_t *ret_len)
{
        DBusMessageIter sub;
        int n = 0;

        dbus_message_iter_recurse(it, &sub);
        dbus_message_iter_get_fixed_array(&sub, ret, &n);
        dbus_message_iter_next(it);
        *ret_len = n > 0 ? (size_t)n : 0;
        if (n == 0)
                *ret = (const uint8_t *)"";
        return 0;
}

/* Called for each option; -ENOENT means "not an option of this method". */
typedef int (*option_fn)(struct kms_request *req, const char *key, DBusMessageIter *var, char *errmsg, size_t errlen);

static int expect_type(DBusMessageIter *var, int type, const char *sig, const char *key, char *errmsg, size_t errlen)
{
        if (dbus_message_iter_get_arg_type(var) != type)
                return fail(errmsg, errlen, -EINVAL, "option '%s' must be of type '%s'", key, sig);
        return 0;
}

static int parse_options(DBusMessageIter *it, const char *member, option_fn fn, struct kms_request *req, char *errmsg,
                         size_t errlen)
{
        DBusMessageIter dict;
        unsigned n = 0;

        dbus_message_iter_recurse(it, &dict);
        dbus_message_iter_next(it);
        while (dbus_message_iter_get_arg_type(&dict) == DBUS_TYPE_DICT_ENTRY) {
                DBusMessageIter entry, var;
                const char *key;
                int r;

                if (++n > KMS_MAX_OPTIONS)
                        return fail(errmsg, errlen, -E2BIG, "more than %u options", KMS_MAX_OPTIONS);
                dbus_message_iter_recurse(&dict, &entry);
                dbus_message_iter_get_basic(&entry, &key);
                dbus_message_iter_next(&entry);
                dbus_message_iter_recurse(&entry, &var);
                r = fn ? fn(req, key, &var, errmsg, errlen) : -ENOENT;
                if (r == -ENOENT)
                        return fail(errmsg, errlen, -EINVAL, "unknown option '%.64s' for %s", key, member);
                if (r < 0)
                        return r;
                dbus_message_iter_next(&dict);
        }
        return 0;
}

static int option_sign(struct kms_request *req, const char *key, DBusMessageIter *var, char *errmsg, size_t errlen)
{
        const char *s;
        int r;

        if (strcmp(key, "hash") == 0) {
                r = expect_type(var, DBUS_TYPE_STRING, "s", key, errmsg, errlen);
                if (r < 0)
                        return r;
                dbus_message_iter_get_basic(var, &s);
                req->hash = kms_hash_from_string(s);
                if (req->hash == KMS_HASH_INVALID)
                        return fail(errmsg, errlen, -EINVAL, "unknown hash '%.32s' (sha256, sha384, sha512)", s);
                req->hash_set = true;
                return 0;
        }
        if (strcmp(key, "padding") == 0) {
                r = expect_type(var, DBUS_TYPE_STRING, "s", key, errmsg, errlen);
                if (r < 0)
                        return r;
                dbus_message_iter_get_basic(var, &s);
                req->padding = kms_padding_from_string(s);
                if (req->padding != KMS_PAD_PKCS1 && req->padding != KMS_PAD_PSS)
                        return fail(errmsg, errlen, -EINVAL, "unknown padding '%.32s' (pkcs1, pss)", s);
                req->padding_set = true;
                return 0;
        }
        return -ENOENT;
}

static int option_verify(struct kms_request *req, const char *key, DBusMessageIter *var, char *errmsg, size_t errlen)
{
        int r;

        if (strcmp(key, "version") == 0) {
                dbus_uint32_t v;

                r = expect_type(var, DBUS_TYPE_UINT32, "u", key, errmsg, errlen);
                if (r < 0)
                        return r;
                dbus_message_iter_get_basic(var, &v);
                req->version = v;
                return 0;
        }
        return option_sign(req, key, var, errmsg, errlen);
}

static int option_number(DBusMessageIter *var, const char *key, int type, uint64_t min, uint64_t max, uint64_t *ret,
                         char *errmsg, size_t errlen)
{
        dbus_uint64_t v64 = 0;
        dbus_uint32_t v32 = 0;
        int r = expect_type(var, type, type == DBUS_TYPE_UINT32 ? "u" : "t", key, errmsg, errlen);

        if (r < 0)
                return r;
        if (type == DBUS_TYPE_UINT32) {
                dbus_message_iter_get_basic(var, &v32);
                v64 = v32;
        } else
                dbus_message_iter_get_basic(var, &v64);
        if (v64 < min || v64 > max)
                return fail(errmsg, errlen, -EINVAL, "option '%s' = %llu is not in %llu..%llu", key,
                            (unsigned long long)v64, (unsigned long long)min, (unsigned long long)max);
        *ret = v64;
        return 0;
}

static int option_u32(DBusMessageIter *var, const char *key, uint32_t min, uint32_t max, uint32_t *ret, char *errmsg,
                      size_t errlen)
{
        uint64_t v;
        int r = option_number(var, key, DBUS_TYPE_UINT32, min, max, &v, errmsg, errlen);

        if (r >= 0)
                *ret = (uint32_t)v;
        return r;
}

static int option_u64(DBusMessageIter *var, const char *key, uint64_t min, uint64_t *ret, char *errmsg, size_t errlen)
{
        return option_number(var, key, DBUS_TYPE_UINT64, min, (uint64_t)INT64_MAX / 2, ret, errmsg, errlen);
}

/* Rotation settings; min 1 at create, 0 (clear) allowed for SetKeyOptions. */
static int option_settings_min(struct kms_request *req, const char *key, DBusMessageIter *var, uint64_t min,
                               char *errmsg, size_t errlen)
{
        uint64_t v;
        int r;

        if (strcmp(key, "rotate_every") == 0) {
                r = option_u64(var, key, min, &req->rotate_every, errmsg, errlen);
                req->rotate_every_set = r >= 0;
                return r;
        }
        if (strcmp(key, "rotate_after_uses") == 0) {
                r = option_u64(var, key, min, &req->rotate_after_uses, errmsg, errlen);
                req->rotate_after_uses_set = r >= 0;
                return r;
        }
        if (strcmp(key, "keep_versions") == 0) {
                dbus_uint32_t u;

                r = expect_type(var, DBUS_TYPE_UINT32, "u", key, errmsg, errlen);
                if (r < 0)
                        return r;
                dbus_message_iter_get_basic(var, &u);
                v = u;
                if (v < min || v > KMS_MAX_VERSIONS)
                        return fail(errmsg, errlen, -EINVAL, "option 'keep_versions' = %u is out of range (%llu..%u)",
                                    (unsigned)u, (unsigned long long)min, KMS_MAX_VERSIONS);
                req->keep_versions = u;
                req->keep_versions_set = true;
                return 0;
        }
        return -ENOENT;
}

static int option_settings(struct kms_request *req, const char *key, DBusMessageIter *var, char *errmsg, size_t errlen)
{
        return option_settings_min(req, key, var, 1, errmsg, errlen);
}

static int option_set_key(struct kms_request *req, const char *key, DBusMessageIter *var, char *errmsg, size_t errlen)
{
        return option_settings_min(req, key, var, 0, errmsg, errlen);
}

static int option_destroy(struct kms_request *req, const char *key, DBusMessageIter *var, char *errmsg, size_t errlen)
{
        if (strcmp(key, "after") == 0)
                return option_u64(var, key, 1, &req->after, errmsg, errlen);
        return -ENOENT;
}

static int option_revoke(struct kms_request *req, const char *key, DBusMessageIter *var, char *errmsg, size_t errlen)
{
        const char *s;
        dbus_bool_t b;
        int r;

        if (strcmp(key, "reason") == 0) {
                r = expect_type(var, DBUS_TYPE_STRING, "s", key, errmsg, errlen);
                if (r < 0)
                        return r;
                dbus_message_iter_get_basic(var, &s);
                req->reason = kms_revoke_reason_from_string(s);
                if (req->reason == KMS_REVOKE_INVALID)
                        return fail(errmsg, errlen, -EINVAL,
                                    "unknown revocation reason '%.32s' (compromised, superseded, retired)", s);
                return 0;
        }
        if (strcmp(key, "note") == 0) {
                r = expect_type(var, DBUS_TYPE_STRING, "s", key, errmsg, errlen);
                if (r < 0)
                        return r;
                dbus_message_iter_get_basic(var, &s);
                if (strlen(s) > KMS_MAX_REVOKE_NOTE)
                        return fail(errmsg, errlen, -EINVAL, "the note is longer than %u bytes", KMS_MAX_REVOKE_NOTE);
                snprintf(req->note, sizeof(req->note), "%s", s);
                return 0;
        }
        if (strcmp(key, "no_replace") == 0) {
                r = expect_type(var, DBUS_TYPE_BOOLEAN, "b", key, errmsg, errlen);
                if (r < 0)
                        return r;
                dbus_message_iter_get_basic(var, &b);
                req->no_replace = b;
                return 0;
        }
        if (strcmp(key, "version") == 0)
                return option_verify(req, key, var, errmsg, errlen);
        return -ENOENT;
}

static int option_create(struct kms_request *req, const char *key, DBusMessageIter *var, char *errmsg, size_t errlen)
{
        int r;

        if (strcmp(key, "usages") == 0) {
                DBusMessageIter arr;

                if (dbus_message_iter_get_arg_type(var) != DBUS_TYPE_ARRAY ||
                    dbus_message_iter_get_element_type(var) != DBUS_TYPE_STRING)
                        return fail(errmsg, errlen, -EINVAL, "option 'usages' must be of type 'as'");
                req->usages = 0;
                dbus_message_iter_recurse(var, &arr);
                while (dbus_message_iter_get_arg_type(&arr) == DBUS_TYPE_STRING) {
                        const char *s;
                        enum kms_usage u;

                        dbus_message_iter_get_basic(&arr, &s);
                        u = kms_usage_from_string(s);
                        if (!u)
                                return fail(errmsg, errlen, -EINVAL, "unknown usage '%.32s' (sign, derive, decrypt)", s);
                        req->usages |= u;
                        dbus_message_iter_next(&arr);
                }
                if (!req->usages)
                        return fail(errmsg, errlen, -EINVAL, "option 'usages' is empty");
                return 0;
        }
        r = option_settings(req, key, var, errmsg, errlen);
        if (r != -ENOENT)
                return r;
        if (strcmp(key, "backend") == 0) {
                const char *b;

                r = expect_type(var, DBUS_TYPE_STRING, "s", key, errmsg, errlen);
                if (r < 0)
                        return r;
                dbus_message_iter_get_basic(var, &b);
                if (strcmp(b, "pkcs11") != 0 && strcmp(b, "tpm") != 0)
                        return fail(errmsg, errlen, -EINVAL, "unknown backend '%.32s' (pkcs11, tpm)", b);
                snprintf(req->backend_name, sizeof(req->backend_name), "%s", b);
                return 0;
        }
        if (strcmp(key, "owner") == 0) {
                dbus_uint32_t v;

                r = expect_type(var, DBUS_TYPE_UINT32, "u", key, errmsg, errlen);
                if (r < 0)
                        return r;
                dbus_message_iter_get_basic(var, &v);
                if (v == (dbus_uint32_t)-1)
                        return fail(errmsg, errlen, -EINVAL, "owner %u is not a valid uid", (unsigned)v);
                req->owner = (uid_t)v;
                req->owner_set = true;
                return 0;
        }
        return -ENOENT;
}

static int option_list(struct kms_request *req, const char *key, DBusMessageIter *var, char *errmsg, size_t errlen)
{
        dbus_bool_t b;
        int r;

        if (strcmp(key, "all") == 0) {
                r = expect_type(var, DBUS_TYPE_BOOLEAN, "b", key, errmsg, errlen);
                if (r < 0)
                        return r;
                dbus_message_iter_get_basic(var, &b);
                req->include_destroyed = b;
                return 0;
        }
        return -ENOENT;
}

static int check_data_size(struct kms_daemon *d, size_t n, const char *what, char *errmsg, size_t errlen)
{
        if (n > d->cfg.max_message_bytes)
                return fail(errmsg, errlen, -EMSGSIZE,
                            "%s is %zu bytes, more than the limit of %llu (max_message_bytes); sign a digest "
                            "instead (SignDigest, kmsctl sign --prehash)",
                            what, n, (unsigned long long)d->cfg.max_message_bytes);
        return 0;
}

static int parse_create(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen)
{
        DBusMessageIter it;
        const char *alg;
        int r;

        dbus_message_iter_init(req->msg, &it);
        r = parse_name(&it, req, errmsg, errlen);
        if (r < 0)
                return r;
        dbus_message_iter_get_basic(&it, &alg);
        dbus_message_iter_next(&it);
        req->algorithm = kms_algorithm_from_string(alg);
        if (req->algorithm == KMS_ALG_INVALID)
                return fail(errmsg, errlen, -EINVAL, "unknown algorithm '%.32s' (%s)", alg, kms_algorithm_list());
        req->usages = KMS_USAGE_SIGN;
        r = parse_options(&it, "CreateKey", option_create, req, errmsg, errlen);
        if (r < 0)
                return r;
        req->backend = req->backend_name[0] ? kms_backend_index(d, req->backend_name) : 0;
        if (req->backend < 0)
                return fail(errmsg, errlen, -EINVAL,
                            "backend '%s' is not enabled in this kmsd (kmsd.conf: [%s] enable = yes)", req->backend_name,
                            req->backend_name);
        if (req->usages & ~kms_algorithm_usages(req->algorithm)) {
                unsigned bad = req->usages & ~kms_algorithm_usages(req->algorithm);
                return fail(errmsg, errlen, -EINVAL, "usage '%s' is not possible with %s keys",
                            kms_usage_to_string(bad & KMS_USAGE_SIGN     ? KMS_USAGE_SIGN
                                                : bad & KMS_USAGE_DERIVE ? KMS_USAGE_DERIVE
                                                                         : KMS_USAGE_DECRYPT),
                            alg);
        }
        return 0;
}

static int parse_list(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen)
{
        DBusMessageIter it;

        dbus_message_iter_init(req->msg, &it);
        return parse_options(&it, "ListKeys", option_list, req, errmsg, errlen);
}

static int parse_name_only(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen)
{
        DBusMessageIter it;

        dbus_message_iter_init(req->msg, &it);
        return parse_name(&it, req, errmsg, errlen);
}

static int parse_public(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen)
{
        DBusMessageIter it;
        dbus_uint32_t v;
        int r;

        dbus_message_iter_init(req->msg, &it);
        r = parse_name(&it, req, errmsg, errlen);
        if (r < 0)
                return r;
        dbus_message_iter_get_basic(&it, &v);
        req->version = v;
        return 0;
}

static int parse_sign(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen)
{
        DBusMessageIter it;
        int r;

        dbus_message_iter_init(req->msg, &it);
        r = parse_name(&it, req, errmsg, errlen);
        if (r < 0)
                return r;
        parse_bytes(&it, &req->data, &req->data_len);
        req->payload_bytes = req->data_len;
        r = check_data_size(d, req->data_len, "the data", errmsg, errlen);
        if (r < 0)
                return r;
        return parse_options(&it, dbus_message_get_member(req->msg), option_sign, req, errmsg, errlen);
}

static int parse_sign_digest(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen)
{
        int r = parse_sign(d, req, errmsg, errlen);

        if (r < 0)
                return r;
        /* The length check against the hash needs the key's default hash
         * when none is given, so it runs in the worker; this bound keeps
         * obviously wrong input off the queue. */
        if (req->data_len > 64)
                return fail(errmsg, errlen, -EINVAL, "a digest of %zu bytes is longer than any supported hash",
                            req->data_len);
        return 0;
}

static int parse_verify(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen)
{
        DBusMessageIter it;
        int r;

        dbus_message_iter_init(req->msg, &it);
        r = parse_name(&it, req, errmsg, errlen);
        if (r < 0)
                return r;
        parse_bytes(&it, &req->data, &req->data_len);
        parse_bytes(&it, &req->sig, &req->sig_len);
        req->payload_bytes = req->data_len + req->sig_len;
        r = check_data_size(d, req->data_len, "the data", errmsg, errlen);
        if (r < 0)
                return r;
        /* An oversized signature simply does not verify (valid = false). */
        return parse_options(&it, "Verify", option_verify, req, errmsg, errlen);
}

static int parse_destroy(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen)
{
        DBusMessageIter it;
        int r;

        dbus_message_iter_init(req->msg, &it);
        r = parse_name(&it, req, errmsg, errlen);
        if (r < 0)
                return r;
        return parse_options(&it, "DestroyKey", option_destroy, req, errmsg, errlen);
}

/* (s name, a{sv} options) with the option parser of the method. */
static int parse_name_and_options(struct kms_request *req, option_fn fn, char *errmsg, size_t errlen)
{
        DBusMessageIter it;
        int r;

        dbus_message_iter_init(req->msg, &it);
        r = parse_name(&it, req, errmsg, errlen);
        if (r < 0)
                return r;
        return parse_options(&it, dbus_message_get_member(req->msg), fn, req, errmsg, errlen);
}

static int parse_no_options(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen)
{
        return parse_name_and_options(req, NULL, errmsg, errlen);
}

static int parse_set_key(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen)
{
        return parse_name_and_options(req, option_set_key, errmsg, errlen);
}

static int parse_revoke(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen)
{
        int r;

        req->reason = KMS_REVOKE_INVALID;
        r = parse_name_and_options(req, option_revoke, errmsg, errlen);
        if (r >= 0 && req->reason == KMS_REVOKE_INVALID)
                return fail(errmsg, errlen, -EINVAL, "RevokeKey needs the option 'reason' (compromised, superseded, retired)");
        return r;
}

static int parse_list_revoked(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen)
{
        DBusMessageIter it;

        dbus_message_iter_init(req->msg, &it);
        return parse_options(&it, "ListRevoked", NULL, req, errmsg, errlen);
}

static int parse_none(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen)
{
        return 0;
}

/* CheckPolicy(s user, s key, s operation): user is a name, "uid:N" or a
 * number; key may be "" for operations that are not about one key. */
static int parse_check_policy(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen)
{
        const char *user, *op;
        DBusMessageIter it;
        uint64_t v;

        dbus_message_iter_init(req->msg, &it);
        dbus_message_iter_get_basic(&it, &user);
        dbus_message_iter_next(&it);
        if (!*user || strlen(user) >= sizeof(req->check_user))
                return fail(errmsg, errlen, -EINVAL, "user must be a user name, uid:N or a number");
        if (kms_parse_u64(strncmp(user, "uid:", 4) == 0 ? user + 4 : user, 0, UINT32_MAX - 1, &v) >= 0) {
                req->check_uid = (uid_t)v;
                req->check_uid_set = true;
        } else if (strncmp(user, "uid:", 4) == 0)
                return fail(errmsg, errlen, -EINVAL, "'%.64s' is not uid:N", user);
        snprintf(req->check_user, sizeof(req->check_user), "%s", user);
        if (dbus_message_iter_get_arg_type(&it) == DBUS_TYPE_STRING) {
                const char *key;

                dbus_message_iter_get_basic(&it, &key);
                if (*key) {
                        int r = parse_name(&it, req, errmsg, errlen);
                        if (r < 0)
                                return r;
                } else
                        dbus_message_iter_next(&it);
        }
        dbus_message_iter_get_basic(&it, &op);
        req->check_op = kms_operation_from_string(op);
        if (req->check_op == KMS_OP_INVALID)
                return fail(errmsg, errlen, -EINVAL,
                            "unknown operation '%.64s' (create, read, sign, verify, derive, decrypt, session, rotate, "
                            "revoke, disable, destroy, audit, admin, status)",
                            op);
        return 0;
}

/* ---- replies ------------------------------------------------------------ */

static bool dict_add(DBusMessageIter *dict, const char *key, int type, const char *sig, const void *value)
{
        DBusMessageIter entry, var;

        return dbus_message_iter_open_container(dict, DBUS_TYPE_DICT_ENTRY, NULL, &entry) &&
               dbus_message_iter_append_basic(&entry, DBUS_TYPE_STRING, &key) &&
               dbus_message_iter_open_container(&entry, DBUS_TYPE_VARIANT, sig, &var) &&
               dbus_message_iter_append_basic(&var, type, value) && dbus_message_iter_close_container(&entry, &var) &&
               dbus_message_iter_close_container(dict, &entry);
}

/* Strings from files, devices and the store may be any bytes; libdbus
 * aborts on invalid UTF-8, so those get '?' for the bad bytes. */
static bool dict_add_str(DBusMessageIter *dict, const char *key, const char *v)
{
        char *copy;
        bool ok;

        if (!v)
                v = "";
        if (dbus_validate_utf8(v, NULL))
                return dict_add(dict, key, DBUS_TYPE_STRING, "s", &v);
        copy = strdup(v);
        if (!copy)
                return false;
        kms_utf8_sanitize(copy);
        ok = dict_add(dict, key, DBUS_TYPE_STRING, "s", &(const char *){ copy });
        free(copy);
        return ok;
}

static bool dict_add_bool(DBusMessageIter *dict, const char *key, bool v)
{
        dbus_bool_t b = v;

        return dict_add(dict, key, DBUS_TYPE_BOOLEAN, "b", &b);
}

static bool append_hex(DBusMessageIter *dict, const char *key, const uint8_t *p, size_t n)
{
        _cleanup_(freep) char *hex = kms_hex_encode(p, n);

        return hex && dict_add_str(dict, key, hex);
}

static bool dict_add_u32(DBusMessageIter *dict, const char *key, uint32_t v)
{
        dbus_uint32_t x = v;
        return dict_add(dict, key, DBUS_TYPE_UINT32, "u", &x);
}

static bool dict_add_u64(DBusMessageIter *dict, const char *key, uint64_t v)
{
        dbus_uint64_t x = v;
        return dict_add(dict, key, DBUS_TYPE_UINT64, "t", &x);
}

static bool dict_add_i64(DBusMessageIter *dict, const char *key, int64_t v)
{
        dbus_int64_t x = v;
        return dict_add(dict, key, DBUS_TYPE_INT64, "x", &x);
}

static bool dict_add_usages(DBusMessageIter *dict, unsigned usages)
{
        DBusMessageIter entry, var, arr;
        const char *key = "usages";
        bool ok;

        ok = dbus_message_iter_open_container(dict, DBUS_TYPE_DICT_ENTRY, NULL, &entry) &&
             dbus_message_iter_append_basic(&entry, DBUS_TYPE_STRING, &key) &&
             dbus_message_iter_open_container(&entry, DBUS_TYPE_VARIANT, "as", &var) &&
             dbus_message_iter_open_container(&var, DBUS_TYPE_ARRAY, "s", &arr);
        for (unsigned u = KMS_USAGE_SIGN; ok && u <= KMS_USAGE_DECRYPT; u <<= 1)
                if (usages & u) {
                        const char *s = kms_usage_to_string(u);
                        ok = dbus_message_iter_append_basic(&arr, DBUS_TYPE_STRING, &s);
                }
        return ok && dbus_message_iter_close_container(&var, &arr) && dbus_message_iter_close_container(&entry, &var) &&
               dbus_message_iter_close_container(dict, &entry);
}

static bool append_version(DBusMessageIter *arr, const struct kms_key_version_record *v)
{
        DBusMessageIter dict;
        _cleanup_(freep) char *id = kms_hex_encode(v->backend_id, KMS_KEY_ID_BYTES);
        _cleanup_(freep) char *fp = kms_spki_fingerprint(v->spki, v->spki_len);

        return id && fp && dbus_message_iter_open_container(arr, DBUS_TYPE_ARRAY, "{sv}", &dict) &&
               dict_add_u32(&dict, "version", v->version) &&
               dict_add_str(&dict, "state", kms_key_state_to_string(v->state)) &&
               dict_add_i64(&dict, "created", v->created) && dict_add_str(&dict, "backend_id", id) &&
               dict_add_str(&dict, "fingerprint", fp) && dict_add_u64(&dict, "uses", v->uses) &&
               dict_add_i64(&dict, "revoked_at", v->revoked_at) &&
               dict_add_str(&dict, "revoke_reason", v->revoke_reason) &&
               dict_add_str(&dict, "revoke_note", v->revoke_note) && dbus_message_iter_close_container(arr, &dict);
}

/* Append the key dictionary (a{sv}) of docs/dbus-api.md. */
static bool append_key(DBusMessageIter *it, const struct kms_key_record *k, bool with_versions)
{
        DBusMessageIter dict;
        bool ok;

        ok = dbus_message_iter_open_container(it, DBUS_TYPE_ARRAY, "{sv}", &dict) &&
             dict_add_str(&dict, "name", k->name) &&
             dict_add_str(&dict, "algorithm", kms_algorithm_to_string(k->algorithm)) &&
             dict_add_str(&dict, "backend", k->backend) && dict_add_str(&dict, "state", kms_key_state_to_string(k->state)) &&
             dict_add_u32(&dict, "owner", k->owner) && dict_add_usages(&dict, k->usages) &&
             dict_add_i64(&dict, "created", k->created) && dict_add_u32(&dict, "primary_version", k->primary_version) &&
             dict_add_u32(&dict, "version_count", k->version_count) &&
             dict_add_u64(&dict, "rotate_every", k->rotate_every) &&
             dict_add_u64(&dict, "rotate_after_uses", k->rotate_after_uses) &&
             dict_add_u32(&dict, "keep_versions", k->keep_versions) &&
             dict_add_i64(&dict, "next_rotation",
                          k->rotate_every && k->state == KMS_KEY_ACTIVE && k->primary_created > 0
                                  ? k->primary_created + (int64_t)k->rotate_every
                                  : 0) &&
             dict_add_i64(&dict, "destroy_at", k->destroy_at);
        if (ok && with_versions) {
                DBusMessageIter entry, var, arr;
                const char *key = "versions";

                ok = dbus_message_iter_open_container(&dict, DBUS_TYPE_DICT_ENTRY, NULL, &entry) &&
                     dbus_message_iter_append_basic(&entry, DBUS_TYPE_STRING, &key) &&
                     dbus_message_iter_open_container(&entry, DBUS_TYPE_VARIANT, "aa{sv}", &var) &&
                     dbus_message_iter_open_container(&var, DBUS_TYPE_ARRAY, "a{sv}", &arr);
                for (size_t i = 0; ok && i < k->n_versions; i++)
                        ok = append_version(&arr, &k->versions[i]);
                ok = ok && dbus_message_iter_close_container(&var, &arr) &&
                     dbus_message_iter_close_container(&entry, &var) && dbus_message_iter_close_container(&dict, &entry);
        }
        return ok && dbus_message_iter_close_container(it, &dict);
}

static bool append_bytes(DBusMessageIter *it, const uint8_t *data, size_t len)
{
        DBusMessageIter sub;

        return dbus_message_iter_open_container(it, DBUS_TYPE_ARRAY, "y", &sub) &&
               dbus_message_iter_append_fixed_array(&sub, DBUS_TYPE_BYTE, &data, (int)len) &&
               dbus_message_iter_close_container(it, &sub);
}

static int new_reply(struct kms_request *req, DBusMessage **ret, DBusMessageIter *it)
{
        DBusMessage *m = dbus_message_new_method_return(req->msg);

        if (!m)
                return -ENOMEM;
        dbus_message_iter_init_append(m, it);
        *ret = m;
        return 0;
}

/* ---- running (worker) --------------------------------------------------- */

static int store_fail(int r, const struct kms_request *req, char *errmsg, size_t errlen)
{
        if (r == -ENOENT)
                return fail(errmsg, errlen, r, "no key named '%s'", req->name);
        return fail(errmsg, errlen, r, "the metadata store failed: %s", strerror(-r));
}

/* Lists show only what the caller may see: the bus thread let the list
 * through, the worker decides per key under the same policy. */
static bool may(const struct kms_request *req, enum kms_operation op, const struct kms_key_record *k)
{
        return kms_policy_decide(req->policy, &req->caller, op, k->name, k->owner, NULL);
}

static int check_usable(const struct kms_key_record *k, char *errmsg, size_t errlen)
{
        if (k->state == KMS_KEY_DESTROYED)
                return fail(errmsg, errlen, KMS_E_DESTROYED, "key '%s' was destroyed", k->name);
        return 0;
}

/* The EDQUOT error of a create that hit a cap on keys. */
static int quota_fail(enum kms_key_limit limit, uint32_t owner, size_t count, char *errmsg, size_t errlen)
{
        switch (limit) {
        case KMS_KEY_LIMIT_OWNER_KEYS:
                return fail(errmsg, errlen, -EDQUOT, "uid %u owns %zu keys, the limit per owner", (unsigned)owner,
                            count);
        case KMS_KEY_LIMIT_OWNER_NAMES:
                return fail(errmsg, errlen, -EDQUOT,
                            "uid %u has used %zu key names (destroyed ones included), the limit per owner",
                            (unsigned)owner, count);
        default:
                return fail(errmsg, errlen, -EDQUOT, "kmsd holds %zu keys, the limit (max_keys)", count);
        }
}

static int run_create(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg, size_t errlen)
{
        struct kms_daemon *d = w->daemon;
        const struct kms_backend_ops *ops = d->backends[req->backend]->ops;
        struct kms_backend_worker *bw = w->backends[req->backend];
        struct kms_key_record key = { 0 }, *stored = NULL;
        struct kms_key_version_record v1 = { .version = 1 };
        /* Per-owner caps, so one user cannot use up the keys (or, with
         * tombstones, the names and the disk) of everyone else. */
        const struct kms_key_limits limits = {
                .max_keys = d->cfg.max_keys,
                .max_owner_keys = KMS_MAX_KEYS_PER_OWNER,
                .max_owner_names = KMS_MAX_KEY_NAMES_PER_OWNER,
        };
        enum kms_key_limit limit = KMS_KEY_LIMIT_NONE;
        char label[KMS_MAX_KEY_NAME + 32];
        DBusMessageIter it;
        size_t count = 0;
        int r;

        key.owner = req->owner_set ? req->owner : req->caller.uid;
        /* Before the token's work; again, authoritatively, in the insert's
         * transaction, where concurrent creates cannot pass together. */
        r = kms_store_key_limits_check(w->store, &limits, key.owner, &limit, &count);
        if (r == -EDQUOT)
                return quota_fail(limit, key.owner, count, errmsg, errlen);
        if (r < 0)
                return store_fail(r, req, errmsg, errlen);
        r = kms_store_key_get(w->store, req->name, false, &stored);
        if (r >= 0) {
                bool gone = stored->state == KMS_KEY_DESTROYED;
                kms_key_record_free(stored);
                return fail(errmsg, errlen, -EEXIST,
                            gone ? "the name '%s' belonged to a destroyed key and cannot be reused"
                                 : "a key named '%s' already exists",
                            req->name);
        }
        if (r != -ENOENT)
                return store_fail(r, req, errmsg, errlen);

        /* The token first, the metadata second: a crash in between leaves
         * an orphan object, never metadata without a key. */
        snprintf(label, sizeof(label), "kmsd:%s#%u", req->name, v1.version);
        r = kms_generation_begin(d, errmsg, errlen);
        if (r < 0)
                return r;
        r = ops->generate(bw, req->algorithm, req->usages, label, v1.backend_id, &v1.spki, &v1.spki_len);
        kms_generation_end(d);
        if (r < 0) {
                char why[256];

                return fail(errmsg, errlen, r, "the %s could not generate the %s key: %s", kms_backend_noun(ops->name),
                            kms_algorithm_to_string(req->algorithm),
                            kms_backend_explain(d, ops->name, r, why, sizeof(why)));
        }

        snprintf(key.name, sizeof(key.name), "%s", req->name);
        key.algorithm = req->algorithm;
        snprintf(key.backend, sizeof(key.backend), "%s", ops->name);
        key.usages = req->usages;
        key.created = v1.created = kms_now_unix();
        key.state = KMS_KEY_ACTIVE;
        key.rotate_every = req->rotate_every;
        key.rotate_after_uses = req->rotate_after_uses;
        key.keep_versions = req->keep_versions;
        r = kms_store_key_insert(w->store, &key, &v1, &limits, &limit, &count);
        if (r < 0) {
                int r2 = ops->destroy(bw, v1.backend_id);
                if (r2 < 0)
                        log_error("key '%s': could not remove the new token object after a failed create: %s",
                                  req->name, strerror(-r2));
                kms_key_version_record_clear(&v1);
                if (r == -EEXIST)
                        return fail(errmsg, errlen, r, "a key named '%s' already exists", req->name);
                if (r == -EDQUOT)
                        return quota_fail(limit, key.owner, count, errmsg, errlen);
                return store_fail(r, req, errmsg, errlen);
        }
        kms_key_version_record_clear(&v1);
        log_info("created key '%s' (%s) for uid %u", req->name, kms_algorithm_to_string(req->algorithm),
                 (unsigned)key.owner);
        req->audit_version = 1;
        snprintf(req->audit_details, sizeof(req->audit_details), "%s backend=%s owner=%u",
                 kms_algorithm_to_string(req->algorithm), ops->name, (unsigned)key.owner);
        kms_bus_emit(d, KMS_SIGNAL_KEY_CREATED, DBUS_TYPE_STRING, &(const char *){ req->name }, DBUS_TYPE_UINT32,
                     &(dbus_uint32_t){ 1 }, DBUS_TYPE_INVALID);

        r = kms_store_key_get(w->store, req->name, true, &stored);
        if (r < 0)
                return store_fail(r, req, errmsg, errlen);
        r = new_reply(req, ret, &it);
        if (r >= 0 && !append_key(&it, stored, true))
                r = -ENOMEM;
        kms_key_record_free(stored);
        return r;
}

static int run_list(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg, size_t errlen)
{
        struct kms_key_record *keys = NULL;
        DBusMessageIter it, arr;
        size_t n = 0;
        int r;

        r = kms_store_key_list(w->store, req->include_destroyed, &keys, &n);
        if (r < 0)
                return store_fail(r, req, errmsg, errlen);
        r = new_reply(req, ret, &it);
        if (r >= 0 && !dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "a{sv}", &arr))
                r = -ENOMEM;
        for (size_t i = 0; r >= 0 && i < n; i++)
                if (may(req, KMS_OP_READ, &keys[i]) && !append_key(&arr, &keys[i], false))
                        r = -ENOMEM;
        if (r >= 0 && !dbus_message_iter_close_container(&it, &arr))
                r = -ENOMEM;
        kms_key_records_free(keys, n);
        return r;
}

static int run_describe(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg, size_t errlen)
{
        struct kms_key_record *k = NULL;
        DBusMessageIter it;
        int r;

        r = kms_store_key_get(w->store, req->name, true, &k);
        if (r < 0)
                return store_fail(r, req, errmsg, errlen);
        r = new_reply(req, ret, &it);
        if (r >= 0 && !append_key(&it, k, true))
                r = -ENOMEM;
        kms_key_record_free(k);
        return r;
}

/* Load key and version (0: primary) with the messages a caller needs. */
static int load_version(struct kms_worker *w, const struct kms_request *req, uint32_t version, bool want_spki,
                        struct kms_key_record *ret_key, struct kms_key_version_record *ret_v, char *errmsg,
                        size_t errlen)
{
        int r = kms_store_key_get_version(w->store, req->name, version, want_spki, ret_key, ret_v);

        if (r == -ENOENT && version != 0) {
                struct kms_key_record *k = NULL;

                if (kms_store_key_get(w->store, req->name, false, &k) >= 0) {
                        r = fail(errmsg, errlen, -ENOENT, "key '%s' has no version %u (it has %u)", req->name,
                                 version, k->version_count);
                        kms_key_record_free(k);
                        return r;
                }
        }
        if (r < 0)
                return store_fail(r, req, errmsg, errlen);
        return 0;
}

static int run_public(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg, size_t errlen)
{
        struct kms_key_record k;
        struct kms_key_version_record v;
        DBusMessageIter it;
        dbus_uint32_t used;
        int r;

        r = load_version(w, req, req->version, true, &k, &v, errmsg, errlen);
        if (r < 0)
                return r;
        r = check_usable(&k, errmsg, errlen);
        if (r >= 0)
                r = new_reply(req, ret, &it);
        used = v.version;
        req->audit_version = v.version;
        if (r >= 0 && !(append_bytes(&it, v.spki, v.spki_len) &&
                        dbus_message_iter_append_basic(&it, DBUS_TYPE_UINT32, &used)))
                r = -ENOMEM;
        kms_key_version_record_clear(&v);
        return r;
}

/* Resolve hash and padding for key k from the request's options. */
static int resolve_scheme(const struct kms_request *req, const struct kms_key_record *k, enum kms_hash *ret_hash,
                          enum kms_padding *ret_pad, char *errmsg, size_t errlen)
{
        *ret_hash = req->hash_set ? req->hash : kms_algorithm_default_hash(k->algorithm);
        if (kms_algorithm_is_ec(k->algorithm)) {
                if (req->padding_set)
                        return fail(errmsg, errlen, -EINVAL, "padding '%s' applies to RSA keys; '%s' is %s",
                                    kms_padding_to_string(req->padding), k->name, kms_algorithm_to_string(k->algorithm));
                *ret_pad = KMS_PAD_NONE;
        } else
                *ret_pad = req->padding_set ? req->padding : KMS_PAD_PKCS1;
        return 0;
}

/* The backend a key lives in, for this worker. */
static int key_backend(struct kms_worker *w, const struct kms_key_record *k, const struct kms_backend_ops **ret_ops,
                       struct kms_backend_worker **ret_bw, char *errmsg, size_t errlen)
{
        int b = kms_backend_index(w->daemon, k->backend);

        if (b < 0)
                return fail(errmsg, errlen, KMS_E_BACKEND,
                            "key '%s' is in the %s backend, which this kmsd is not configured for", k->name, k->backend);
        *ret_ops = w->daemon->backends[b]->ops;
        *ret_bw = w->backends[b];
        return 0;
}

static int run_sign(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg, size_t errlen)
{
        struct kms_daemon *d = w->daemon;
        bool prehashed = strcmp(req->method->member, "SignDigest") == 0;
        const struct kms_backend_ops *ops = NULL;
        struct kms_backend_worker *bw = NULL;
        struct kms_key_record k;
        struct kms_key_version_record v;
        enum kms_hash h;
        enum kms_padding pad;
        uint8_t digest[64], sig[KMS_MAX_SIGNATURE_BYTES];
        size_t sig_len = 0;
        DBusMessageIter it;
        dbus_uint32_t used;
        int r;

        r = kms_key_cache_get_primary(&d->key_cache, w->store, req->name, &k, &v);
        if (r < 0)
                return store_fail(r, req, errmsg, errlen);
        r = kms_lifecycle_check_use(&k, &v, true, errmsg, errlen);
        if (r < 0)
                return r;
        if (!(k.usages & KMS_USAGE_SIGN))
                return fail(errmsg, errlen, -EINVAL, "key '%s' does not have the sign usage", req->name);
        r = resolve_scheme(req, &k, &h, &pad, errmsg, errlen);
        if (r < 0)
                return r;
        if (prehashed) {
                if (req->data_len != kms_hash_length(h))
                        return fail(errmsg, errlen, -EINVAL, "a %s digest is %zu bytes, not %zu", kms_hash_to_string(h),
                                    kms_hash_length(h), req->data_len);
                memcpy(digest, req->data, req->data_len);
        } else if (kms_hash_compute(h, req->data, req->data_len, digest) < 0)
                return fail(errmsg, errlen, -ENOMEM, "cannot hash the data");

        r = key_backend(w, &k, &ops, &bw, errmsg, errlen);
        if (r < 0)
                return r;
        r = ops->sign(bw, v.backend_id, k.algorithm, h, pad, digest, kms_hash_length(h), sig, &sig_len);
        if (r < 0) {
                char why[256];

                return fail(errmsg, errlen, r == -ENOENT ? KMS_E_BACKEND : r, "the %s could not sign with key '%s' version %u: %s",
                            kms_backend_noun(k.backend), req->name, v.version,
                            kms_backend_explain(d, k.backend, r, why, sizeof(why)));
        }
        {
                bool due = false;

                kms_usage_add(&d->usage, k.id, v.version, v.uses, &due, k.rotate_after_uses);
                /* The use that reaches the limit queues one rotation; the
                 * signatures in flight meanwhile still use this version. */
                if (due && kms_internal_submit(d, "UsageRotate", k.name, v.version) < 0)
                        log_warning("key '%s': use limit reached but the rotation could not be queued", k.name);
        }

        used = v.version;
        req->audit_version = v.version;
        snprintf(req->audit_details, sizeof(req->audit_details), "hash=%s%s%s", kms_hash_to_string(h),
                 kms_algorithm_is_rsa(k.algorithm) ? " padding=" : "",
                 kms_algorithm_is_rsa(k.algorithm) ? kms_padding_to_string(pad) : "");
        r = new_reply(req, ret, &it);
        if (r >= 0 && !(append_bytes(&it, sig, sig_len) &&
                        dbus_message_iter_append_basic(&it, DBUS_TYPE_UINT32, &used)))
                r = -ENOMEM;
        return r;
}

static int run_verify(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg, size_t errlen)
{
        struct kms_key_record k;
        struct kms_key_version_record v;
        enum kms_hash h;
        enum kms_padding pad;
        DBusMessageIter it;
        dbus_uint32_t used;
        dbus_bool_t valid;
        int r;

        r = load_version(w, req, req->version, true, &k, &v, errmsg, errlen);
        if (r < 0)
                return r;
        r = kms_lifecycle_check_use(&k, &v, false, errmsg, errlen);
        if (r >= 0)
                r = resolve_scheme(req, &k, &h, &pad, errmsg, errlen);
        if (r >= 0) {
                r = kms_signature_verify(v.spki, v.spki_len, k.algorithm, h, pad, req->data, req->data_len, req->sig,
                                         req->sig_len);
                if (r < 0)
                        fail(errmsg, errlen, r, "cannot verify with key '%s' version %u", req->name, v.version);
        }
        if (r >= 0) {
                valid = r == 1;
                used = v.version;
                req->audit_version = v.version;
                snprintf(req->audit_details, sizeof(req->audit_details), "valid=%s", valid ? "yes" : "no");
                r = new_reply(req, ret, &it);
                if (r >= 0 && !(dbus_message_iter_append_basic(&it, DBUS_TYPE_BOOLEAN, &valid) &&
                                dbus_message_iter_append_basic(&it, DBUS_TYPE_UINT32, &used)))
                        r = -ENOMEM;
        }
        kms_key_version_record_clear(&v);
        return r;
}

static int run_destroy(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg, size_t errlen)
{
        struct kms_key_record *k = NULL;
        DBusMessageIter it;
        char by[64];
        int r;

        r = kms_store_key_get(w->store, req->name, false, &k);
        if (r < 0)
                return store_fail(r, req, errmsg, errlen);
        r = check_usable(k, errmsg, errlen);
        if (r >= 0 && req->after) {
                int64_t at = kms_now_unix() + (int64_t)req->after;

                r = kms_store_key_set_destroy_at(w->store, req->name, at);
                if (r < 0)
                        store_fail(r, req, errmsg, errlen);
                else
                        log_info("key '%s' scheduled for destruction in %llu s by uid %u", req->name,
                                 (unsigned long long)req->after, (unsigned)req->caller.uid);
        } else if (r >= 0) {
                snprintf(by, sizeof(by), "at the request of uid %u", (unsigned)req->caller.uid);
                r = kms_lifecycle_destroy(w, req->name, by, errmsg, errlen);
        }
        kms_key_record_free(k);
        if (r < 0)
                return r;
        return new_reply(req, ret, &it);
}

/* Load the key for a state change (the bus thread has decided access). */
static int load_for_change(struct kms_worker *w, struct kms_request *req, bool with_versions,
                           struct kms_key_record **ret, char *errmsg, size_t errlen)
{
        struct kms_key_record *k = NULL;
        int r;

        r = kms_store_key_get(w->store, req->name, with_versions, &k);
        if (r < 0)
                return store_fail(r, req, errmsg, errlen);
        *ret = k;
        return 0;
}

static int reply_u32(struct kms_request *req, DBusMessage **ret, uint32_t v)
{
        DBusMessageIter it;
        dbus_uint32_t x = v;
        int r = new_reply(req, ret, &it);

        if (r >= 0 && !dbus_message_iter_append_basic(&it, DBUS_TYPE_UINT32, &x))
                r = -ENOMEM;
        return r;
}

static int run_rotate(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg, size_t errlen)
{
        struct kms_key_record *k = NULL;
        uint32_t version = 0;
        int r;

        r = load_for_change(w, req, false, &k, errmsg, errlen);
        if (r < 0)
                return r;
        kms_key_record_free(k);
        r = kms_lifecycle_rotate(w, req->name, 0, &version, errmsg, errlen);
        req->audit_version = version;
        if (r < 0)
                return r;
        return reply_u32(req, ret, version);
}

static int run_revoke(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg, size_t errlen)
{
        struct kms_key_record *k = NULL;
        uint32_t primary = 0;
        int r;

        r = load_for_change(w, req, true, &k, errmsg, errlen);
        if (r < 0)
                return r;
        r = kms_lifecycle_revoke(w, k, req->version, !req->no_replace, req->reason, req->note, &primary, errmsg, errlen);
        req->audit_version = req->version;
        snprintf(req->audit_details, sizeof(req->audit_details), "reason=%s", kms_revoke_reason_to_string(req->reason));
        kms_key_record_free(k);
        if (r < 0)
                return r;
        return reply_u32(req, ret, primary);
}

static int run_list_revoked(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg,
                            size_t errlen)
{
        struct kms_key_record *keys = NULL;
        DBusMessageIter it, arr;
        size_t n = 0;
        int r;

        r = kms_store_key_list(w->store, true, &keys, &n);
        if (r < 0)
                return store_fail(r, req, errmsg, errlen);
        r = new_reply(req, ret, &it);
        if (r >= 0 && !dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "a{sv}", &arr))
                r = -ENOMEM;
        for (size_t i = 0; r >= 0 && i < n; i++) {
                struct kms_key_record *k = NULL;

                if (!may(req, KMS_OP_READ, &keys[i]) || kms_store_key_get(w->store, keys[i].name, true, &k) < 0)
                        continue;
                for (size_t j = 0; r >= 0 && j < k->n_versions; j++) {
                        const struct kms_key_version_record *v = &k->versions[j];
                        _cleanup_(freep) char *fp = NULL;
                        DBusMessageIter dict;

                        if (v->state != KMS_KEY_REVOKED)
                                continue;
                        fp = kms_spki_fingerprint(v->spki, v->spki_len);
                        if (!fp || !dbus_message_iter_open_container(&arr, DBUS_TYPE_ARRAY, "{sv}", &dict) ||
                            !dict_add_str(&dict, "name", k->name) || !dict_add_u32(&dict, "version", v->version) ||
                            !dict_add_i64(&dict, "revoked_at", v->revoked_at) ||
                            !dict_add_str(&dict, "reason", v->revoke_reason) ||
                            !dict_add_str(&dict, "note", v->revoke_note) || !dict_add_str(&dict, "fingerprint", fp) ||
                            !dbus_message_iter_close_container(&arr, &dict))
                                r = -ENOMEM;
                }
                kms_key_record_free(k);
        }
        if (r >= 0 && !dbus_message_iter_close_container(&it, &arr))
                r = -ENOMEM;
        kms_key_records_free(keys, n);
        return r;
}

static int run_enable_disable(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg,
                              size_t errlen)
{
        bool enable = strcmp(req->method->member, "EnableKey") == 0;
        enum kms_key_state from = enable ? KMS_KEY_DISABLED : KMS_KEY_ACTIVE;
        struct kms_key_record *k = NULL;
        DBusMessageIter it;
        int r;

        r = load_for_change(w, req, false, &k, errmsg, errlen);
        if (r < 0)
                return r;
        if (k->state != from)
                r = fail(errmsg, errlen, KMS_E_STATE, "key '%s' is %s; only %s keys can be %s", req->name,
                         kms_key_state_to_string(k->state), kms_key_state_to_string(from),
                         enable ? "enabled" : "disabled");
        kms_key_record_free(k);
        if (r < 0)
                return r;
        r = kms_store_key_set_state(w->store, req->name, enable ? KMS_KEY_ACTIVE : KMS_KEY_DISABLED);
        if (r < 0)
                return store_fail(r, req, errmsg, errlen);
        log_info("key '%s' %s by uid %u", req->name, enable ? "enabled" : "disabled", (unsigned)req->caller.uid);
        return new_reply(req, ret, &it);
}

static int run_cancel_destroy(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg,
                              size_t errlen)
{
        struct kms_key_record *k = NULL;
        DBusMessageIter it;
        int r;

        r = load_for_change(w, req, false, &k, errmsg, errlen);
        if (r < 0)
                return r;
        if (k->destroy_at == 0)
                r = fail(errmsg, errlen, KMS_E_STATE, "no destruction of key '%s' is scheduled", req->name);
        kms_key_record_free(k);
        if (r < 0)
                return r;
        r = kms_store_key_set_destroy_at(w->store, req->name, 0);
        if (r < 0)
                return store_fail(r, req, errmsg, errlen);
        log_info("scheduled destruction of key '%s' cancelled by uid %u", req->name, (unsigned)req->caller.uid);
        return new_reply(req, ret, &it);
}

static int run_set_key(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg, size_t errlen)
{
        struct kms_key_record *k = NULL;
        DBusMessageIter it;
        int r;

        r = load_for_change(w, req, false, &k, errmsg, errlen);
        if (r < 0)
                return r;
        if (k->state == KMS_KEY_DESTROYED || k->state == KMS_KEY_REVOKED)
                r = fail(errmsg, errlen, KMS_E_STATE, "key '%s' is %s", req->name, kms_key_state_to_string(k->state));
        else
                r = kms_store_key_set_settings(w->store, req->name,
                                               req->rotate_every_set ? req->rotate_every : k->rotate_every,
                                               req->rotate_after_uses_set ? req->rotate_after_uses : k->rotate_after_uses,
                                               req->keep_versions_set ? req->keep_versions : k->keep_versions);
        kms_key_record_free(k);
        if (r < 0)
                return r == KMS_E_STATE ? r : store_fail(r, req, errmsg, errlen);
        if (req->keep_versions_set)
                kms_lifecycle_trim(w, req->name);
        r = kms_store_key_get(w->store, req->name, true, &k);
        if (r < 0)
                return store_fail(r, req, errmsg, errlen);
        r = new_reply(req, ret, &it);
        if (r >= 0 && !append_key(&it, k, true))
                r = -ENOMEM;
        kms_key_record_free(k);
        return r;
}

/* Internal requests (msg == NULL) queued by the scheduler and the use
 * counter; they run as kmsd itself. */
static int run_internal_rotate(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg,
                               size_t errlen)
{
        uint32_t version = 0;

        return kms_lifecycle_rotate(w, req->name, req->expected_primary, &version, errmsg, errlen);
}

static int run_internal_destroy(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg,
                                size_t errlen)
{
        struct kms_key_record *k = NULL;
        int r;

        r = kms_store_key_get(w->store, req->name, false, &k);
        if (r < 0)
                return store_fail(r, req, errmsg, errlen);
        /* Still scheduled, and due? It may have been cancelled meanwhile. */
        r = k->destroy_at != 0 && k->destroy_at <= kms_now_unix() && k->state != KMS_KEY_DESTROYED;
        kms_key_record_free(k);
        if (!r) {
                snprintf(req->audit_details, sizeof(req->audit_details),
                         "not destroyed: no longer due (cancelled or rescheduled)");
                return 0;
        }
        return kms_lifecycle_destroy(w, req->name, "scheduled destruction", errmsg, errlen);
}

static const struct kms_method internal_methods[] = {
        { "ScheduledRotate", "", KMS_OP_ROTATE, KMS_SCOPE_NONE, NULL, run_internal_rotate },
        { "UsageRotate", "", KMS_OP_ROTATE, KMS_SCOPE_NONE, NULL, run_internal_rotate },
        { "ScheduledDestroy", "", KMS_OP_DESTROY, KMS_SCOPE_NONE, NULL, run_internal_destroy },
};

int kms_internal_submit(struct kms_daemon *d, const char *member, const char *name, uint32_t expected_primary)
{
        const struct kms_method *m = NULL;
        struct kms_request *req;
        int r;

        for (size_t i = 0; i < ELEMENTSOF(internal_methods); i++)
                if (strcmp(internal_methods[i].member, member) == 0)
                        m = &internal_methods[i];
        if (!m)
                return -EINVAL;
        req = calloc(1, sizeof(*req));
        if (!req)
                return -ENOMEM;
        req->method = m;
        req->caller = (struct kms_caller){ .uid = getuid(), .pid = getpid() };
        snprintf(req->name, sizeof(req->name), "%s", name);
        req->expected_primary = expected_primary;
        r = kms_pool_submit(&d->pool, req, d->cfg.max_pending);
        if (r < 0)
                kms_request_free(req);
        return r;
}

static int run_status(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg, size_t errlen)
{
        struct kms_daemon *d = w->daemon;
        struct kms_backend_info info = { 0 };
        DBusMessageIter it, dict;
        size_t count = 0;
        int r;

        r = kms_store_key_count(w->store, false, &count);
        if (r < 0)
                return store_fail(r, req, errmsg, errlen);
        (void)d->backends[0]->ops->info(d->backends[0], &info);
        r = new_reply(req, ret, &it);
        if (r >= 0 &&
            !(dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "{sv}", &dict) &&
              dict_add_str(&dict, "version", KMS_VERSION) && dict_add_str(&dict, "backend", d->backends[0]->ops->name) &&
              dict_add_str(&dict, "token_label", info.label) && dict_add_str(&dict, "token_serial", info.serial) &&
              dict_add_str(&dict, "token_manufacturer", info.manufacturer) &&
              dict_add_str(&dict, "token_model", info.model) && dict_add_u32(&dict, "keys", (uint32_t)count) &&
              dict_add_u64(&dict, "uptime", (kms_now_mono_ms() - d->started_ms) / 1000u) &&
              dict_add_u32(&dict, "workers", d->pool.n_workers) &&
              dict_add_u32(&dict, "max_message_bytes", (uint32_t)d->cfg.max_message_bytes) &&
              dict_add_u32(&dict, "pending", kms_pool_pending(&d->pool))))
                r = -ENOMEM;
        /* The other backends (the TPM), each as <name>_<field>. */
        for (unsigned b = 1; r >= 0 && b < d->n_backends; b++) {
                struct kms_backend_info bi = { 0 };
                const char *name = d->backends[b]->ops->name;
                char k[9][48];

                (void)d->backends[b]->ops->info(d->backends[b], &bi);
                snprintf(k[0], sizeof(k[0]), "%s_label", name);
                snprintf(k[1], sizeof(k[1]), "%s_manufacturer", name);
                snprintf(k[2], sizeof(k[2]), "%s_model", name);
                snprintf(k[3], sizeof(k[3]), "%s_serial", name);
                snprintf(k[4], sizeof(k[4]), "%s_firmware", name);
                snprintf(k[5], sizeof(k[5]), "%s_transient_free", name);
                snprintf(k[6], sizeof(k[6]), "%s_transient_max", name);
                snprintf(k[7], sizeof(k[7]), "%s_available", name);
                snprintf(k[8], sizeof(k[8]), "%s_unavailable_why", name);
                if (!(dict_add_str(&dict, k[0], bi.label) && dict_add_str(&dict, k[1], bi.manufacturer) &&
                      dict_add_str(&dict, k[2], bi.model) && dict_add_str(&dict, k[3], bi.serial) &&
                      dict_add_str(&dict, k[4], bi.firmware) && dict_add_u32(&dict, k[5], bi.transient_free) &&
                      dict_add_u32(&dict, k[6], bi.transient_max) && dict_add_bool(&dict, k[7], !bi.unavailable) &&
                      dict_add_str(&dict, k[8], bi.unavailable_why)))
                        r = -ENOMEM;
        }
        if (r >= 0 && !dbus_message_iter_close_container(&it, &dict))
                r = -ENOMEM;
        return r;
}

/* ---- Derive, Decrypt, sessions ------------------------------------------ */

/* Secrets in D-Bus messages (a derived key, a decrypted plaintext): the
 * first byte array of m is wiped when libdbus lets go of the message,
 * after it was sent (or, for a request, after it was answered). libdbus
 * calls a message's data-slot free functions before it frees or caches
 * the message's buffers. What the socket layer copied is the kernel's. */
struct wipe_span {
        void *p;
        size_t n;
};

static dbus_int32_t wipe_slot = -1;
static pthread_once_t wipe_once = PTHREAD_ONCE_INIT;

static void wipe_slot_init(void)
{
        if (!dbus_message_allocate_data_slot(&wipe_slot))
                wipe_slot = -1;
}

static void wipe_span_free(void *data)
{
        struct wipe_span *w = data;

        OPENSSL_cleanse(w->p, w->n);
        free(w);
}

static void wipe_on_free(DBusMessage *m)
{
        DBusMessageIter it, sub;
        struct wipe_span *w;
        const uint8_t *p = NULL;
        int n = 0;

        pthread_once(&wipe_once, wipe_slot_init);
        if (!m || wipe_slot < 0 || !dbus_message_iter_init(m, &it))
                return;
        while (dbus_message_iter_get_arg_type(&it) != DBUS_TYPE_INVALID &&
               !(dbus_message_iter_get_arg_type(&it) == DBUS_TYPE_ARRAY &&
                 dbus_message_iter_get_element_type(&it) == DBUS_TYPE_BYTE))
                dbus_message_iter_next(&it);
        if (dbus_message_iter_get_arg_type(&it) != DBUS_TYPE_ARRAY)
                return;
        dbus_message_iter_recurse(&it, &sub);
        dbus_message_iter_get_fixed_array(&sub, &p, &n);
        if (n <= 0 || !(w = malloc(sizeof(*w))))
                return;
        w->p = (void *)p;
        w->n = (size_t)n;
        if (!dbus_message_set_data(m, wipe_slot, w, wipe_span_free))
                wipe_span_free(w);
}

#define KMS_MAX_KDF_SALT 1024u
#define KMS_MAX_DERIVE_LENGTH 1024u

static int option_bytes(DBusMessageIter *var, const char *key, size_t max, const uint8_t **ret, size_t *ret_len,
                        char *errmsg, size_t errlen)
{
        int r = expect_type(var, DBUS_TYPE_ARRAY, "ay", key, errmsg, errlen);

        if (r < 0)
                return r;
        if (dbus_message_iter_get_element_type(var) != DBUS_TYPE_BYTE)
                return fail(errmsg, errlen, -EINVAL, "option '%s' must be of type 'ay'", key);
        parse_bytes(var, ret, ret_len);
        if (*ret_len > max)
                return fail(errmsg, errlen, -EMSGSIZE, "option '%s' is %zu bytes; at most %zu", key, *ret_len, max);
        return 0;
}

static int option_derive(struct kms_request *req, const char *key, DBusMessageIter *var, char *errmsg, size_t errlen)
{
        if (strcmp(key, "salt") == 0)
                return option_bytes(var, key, KMS_MAX_KDF_SALT, &req->salt, &req->salt_len, errmsg, errlen);
        if (strcmp(key, "info") == 0)
                return option_bytes(var, key, KMS_HKDF_MAX_INFO, &req->info, &req->info_len, errmsg, errlen);
        if (strcmp(key, "length") == 0)
                return option_u32(var, key, 1, KMS_MAX_DERIVE_LENGTH, &req->length, errmsg, errlen);
        return -ENOENT;
}

static int parse_derive(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen)
{
        DBusMessageIter it;
        int r;

        req->length = 32;
        dbus_message_iter_init(req->msg, &it);
        r = parse_name(&it, req, errmsg, errlen);
        if (r < 0)
                return r;
        parse_bytes(&it, &req->peer, &req->peer_len);
        if (req->peer_len == 0 || req->peer_len > KMS_SESSION_MAX_SPKI_BYTES)
                return fail(errmsg, errlen, -EINVAL, "the peer's public key must be a DER SubjectPublicKeyInfo");
        r = parse_options(&it, dbus_message_get_member(req->msg), option_derive, req, errmsg, errlen);
        if (r < 0)
                return r;
        /* The session key schedule is HKDF over the same ECDH secret with
         * this info prefix: a Derive with it would hand out the AES keys of
         * sessions (someone else's, with only the derive right). */
        if (req->info_len >= sizeof(KMS_SESSION_KDF_LABEL) &&
            memcmp(req->info, KMS_SESSION_KDF_LABEL, sizeof(KMS_SESSION_KDF_LABEL)) == 0)
                return fail(errmsg, errlen, -EINVAL,
                            "info may not start with \"" KMS_SESSION_KDF_LABEL "\" and a NUL byte: that is the session "
                            "key schedule's own label");
        return 0;
}

/* The primary version of an EC key with the derive usage, usable, and the
 * peer's point checked against its curve. */
static int load_for_derive(struct kms_worker *w, struct kms_request *req, struct kms_key_record *k,
                           struct kms_key_version_record *v, uint8_t point[KMS_MAX_EC_POINT_BYTES],
                           size_t *point_len, uint8_t **ret_spki, size_t *ret_spki_len, char *errmsg, size_t errlen)
{
        const char *why = NULL;
        int r;

        r = load_version(w, req, 0, ret_spki != NULL, k, v, errmsg, errlen);
        if (r < 0)
                return r;
        r = kms_lifecycle_check_use(k, v, true, errmsg, errlen);
        if (r < 0)
                goto fail;
        if (!(k->usages & KMS_USAGE_DERIVE) || !kms_algorithm_is_ec(k->algorithm)) {
                r = fail(errmsg, errlen, -EINVAL, "key '%s' does not have the derive usage (an EC key created with --usage derive)",
                         req->name);
                goto fail;
        }
        r = kms_peer_key_check(req->peer, req->peer_len, k->algorithm, point, point_len, ret_spki, ret_spki_len, &why);
        if (r < 0) {
                log_notice("uid %u pid %d: peer key for '%s' refused: %s", (unsigned)req->caller.uid,
                           (int)req->caller.pid, req->name, why);
                req->audit_kind = "peer_key_invalid";
                r = fail(errmsg, errlen, r, "%s", why);
                goto fail;
        }
        return 0;
fail:
        kms_key_version_record_clear(v);
        return r;
}

static int backend_derive(struct kms_worker *w, struct kms_request *req, const struct kms_key_record *k,
                          const struct kms_key_version_record *v, const uint8_t *point, size_t point_len,
                          uint8_t z[KMS_MAX_ECDH_SECRET_BYTES], size_t *z_len, char *errmsg, size_t errlen)
{
        const struct kms_backend_ops *ops = NULL;
        struct kms_backend_worker *bw = NULL;
        int r = key_backend(w, k, &ops, &bw, errmsg, errlen);

        if (r < 0)
                return r;
        r = ops->derive(bw, v->backend_id, k->algorithm, point, point_len, z, z_len);
        if (r < 0) {
                char why[256];

                return fail(errmsg, errlen, r == -ENOENT ? KMS_E_BACKEND : r,
                            "the %s could not derive with key '%s' version %u: %s", kms_backend_noun(k->backend),
                            req->name, v->version, kms_backend_explain(w->daemon, k->backend, r, why, sizeof(why)));
        }
        return 0;
}

static int run_derive(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg, size_t errlen)
{
        struct kms_key_record k;
        struct kms_key_version_record v;
        uint8_t point[KMS_MAX_EC_POINT_BYTES], z[KMS_MAX_ECDH_SECRET_BYTES], *out = NULL;
        size_t point_len = 0, z_len = 0;
        DBusMessageIter it;
        dbus_uint32_t used;
        int r;

        r = load_for_derive(w, req, &k, &v, point, &point_len, NULL, NULL, errmsg, errlen);
        if (r < 0)
                return r;
        used = v.version;
        req->audit_version = v.version;
        snprintf(req->audit_details, sizeof(req->audit_details), "length=%u", req->length);
        r = backend_derive(w, req, &k, &v, point, point_len, z, &z_len, errmsg, errlen);
        kms_key_version_record_clear(&v);
        if (r < 0)
                return r;
        out = OPENSSL_secure_malloc(req->length);
        if (!out)
                r = fail(errmsg, errlen, -ENOMEM, "out of memory");
        else if (kms_hkdf_sha256(z, z_len, req->salt, req->salt_len, req->info, req->info_len, out, req->length) < 0)
                r = fail(errmsg, errlen, -ENOMEM, "HKDF failed");
        OPENSSL_cleanse(z, sizeof(z));
        if (r >= 0)
                r = new_reply(req, ret, &it);
        /* The reply carries the derived bytes to the caller (that is what
         * Derive is for); the message is freed, not logged. */
        if (r >= 0 && !(append_bytes(&it, out, req->length) &&
                        dbus_message_iter_append_basic(&it, DBUS_TYPE_UINT32, &used)))
                r = -ENOMEM;
        if (r >= 0)
                wipe_on_free(*ret);
        OPENSSL_secure_clear_free(out, req->length);
        return r;
}

static int option_decrypt(struct kms_request *req, const char *key, DBusMessageIter *var, char *errmsg, size_t errlen)
{
        if (strcmp(key, "version") == 0)
                return option_u32(var, key, 1, UINT32_MAX, &req->version, errmsg, errlen);
        return -ENOENT;
}

static int parse_decrypt(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen)
{
        DBusMessageIter it;
        int r;

        dbus_message_iter_init(req->msg, &it);
        r = parse_name(&it, req, errmsg, errlen);
        if (r < 0)
                return r;
        parse_bytes(&it, &req->data, &req->data_len);
        if (req->data_len == 0 || req->data_len > KMS_MAX_RSA_BYTES)
                return fail(errmsg, errlen, -EINVAL, "the ciphertext is %zu bytes; an RSA ciphertext is the modulus size",
                            req->data_len);
        return parse_options(&it, dbus_message_get_member(req->msg), option_decrypt, req, errmsg, errlen);
}

static int run_decrypt(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg, size_t errlen)
{
        const struct kms_backend_ops *ops = NULL;
        struct kms_backend_worker *bw = NULL;
        struct kms_key_record k;
        struct kms_key_version_record v;
        uint8_t *out = NULL;
        size_t out_len = 0;
        DBusMessageIter it;
        dbus_uint32_t used;
        int r;

        r = load_version(w, req, req->version, false, &k, &v, errmsg, errlen);
        if (r < 0)
                return r;
        r = kms_lifecycle_check_use(&k, &v, true, errmsg, errlen);
        if (r >= 0 && (!(k.usages & KMS_USAGE_DECRYPT) || !kms_algorithm_is_rsa(k.algorithm)))
                r = fail(errmsg, errlen, -EINVAL, "key '%s' does not have the decrypt usage (an RSA key created with --usage decrypt)",
                         req->name);
        if (r >= 0 && req->data_len != kms_algorithm_size(k.algorithm))
                r = fail(errmsg, errlen, -EINVAL, "the ciphertext is %zu bytes; key '%s' (%s) takes %zu", req->data_len,
                         req->name, kms_algorithm_to_string(k.algorithm), kms_algorithm_size(k.algorithm));
        if (r >= 0 && !(out = OPENSSL_secure_malloc(KMS_MAX_RSA_BYTES)))
                r = fail(errmsg, errlen, -ENOMEM, "out of memory");
        if (r >= 0)
                r = key_backend(w, &k, &ops, &bw, errmsg, errlen);
        if (r >= 0) {
                r = ops->decrypt(bw, v.backend_id, k.algorithm, req->data, req->data_len, out, &out_len);
                if (r == -EBADMSG)
                        r = fail(errmsg, errlen, KMS_E_INTEGRITY,
                                 "the ciphertext does not decrypt with key '%s' version %u (RSA-OAEP, SHA-256)", req->name,
                                 v.version);
                else if (r < 0) {
                        char why[256];

                        r = fail(errmsg, errlen, r == -ENOENT ? KMS_E_BACKEND : r,
                                 "the %s could not decrypt with key '%s' version %u: %s", kms_backend_noun(k.backend),
                                 req->name, v.version, kms_backend_explain(w->daemon, k.backend, r, why, sizeof(why)));
                }
        }
        used = v.version;
        req->audit_version = v.version;
        kms_key_version_record_clear(&v);
        if (r >= 0)
                r = new_reply(req, ret, &it);
        if (r >= 0 && !(append_bytes(&it, out, out_len) && dbus_message_iter_append_basic(&it, DBUS_TYPE_UINT32, &used)))
                r = -ENOMEM;
        if (r >= 0)
                wipe_on_free(*ret);
        if (out)
                OPENSSL_secure_clear_free(out, KMS_MAX_RSA_BYTES);
        return r;
}

/* AttestKey (s name, ay nonce, a{sv} options{version u}): the nonce is
 * at most KMS_MAX_ATTEST_NONCE_BYTES; the only option is the version, as
 * for Decrypt. */
static int parse_attest(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen)
{
        DBusMessageIter it;
        int r;

        dbus_message_iter_init(req->msg, &it);
        r = parse_name(&it, req, errmsg, errlen);
        if (r < 0)
                return r;
        parse_bytes(&it, &req->data, &req->data_len);
        req->payload_bytes = req->data_len;
        if (req->data_len > KMS_MAX_ATTEST_NONCE_BYTES)
                return fail(errmsg, errlen, -EINVAL, "the nonce is %zu bytes; at most %u are allowed", req->data_len,
                            KMS_MAX_ATTEST_NONCE_BYTES);
        return parse_options(&it, dbus_message_get_member(req->msg), option_decrypt, req, errmsg, errlen);
}

/* The backend's attestation of the key version (TPM2_Certify by the TPM
 * backend's attestation key). Keys of a backend without attest (PKCS#11)
 * are refused with InvalidArgument. */
static int run_attest(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg, size_t errlen)
{
        const struct kms_backend_ops *ops = NULL;
        struct kms_backend_worker *bw = NULL;
        struct kms_key_record k;
        struct kms_key_version_record v;
        _cleanup_(freep) uint8_t *attest = NULL, *sig = NULL, *ak_spki = NULL, *key_name = NULL, *key_public = NULL;
        size_t attest_len = 0, sig_len = 0, ak_spki_len = 0, key_name_len = 0, key_public_len = 0;
        DBusMessageIter it;
        dbus_uint32_t used;
        int r;

        r = load_version(w, req, req->version, false, &k, &v, errmsg, errlen);
        if (r < 0)
                return r;
        r = kms_lifecycle_check_use(&k, &v, true, errmsg, errlen);
        if (r >= 0)
                r = key_backend(w, &k, &ops, &bw, errmsg, errlen);
        if (r >= 0 && !ops->attest)
                r = fail(errmsg, errlen, -EINVAL,
                         "key '%s' is in the %s backend, which cannot attest keys; only TPM keys (--backend tpm) can be "
                         "attested",
                         req->name, k.backend);
        if (r >= 0) {
                r = ops->attest(bw, v.backend_id, req->data, req->data_len, &attest, &attest_len, &sig, &sig_len,
                                &ak_spki, &ak_spki_len, &key_name, &key_name_len, &key_public, &key_public_len);
                if (r < 0) {
                        char why[256];

                        r = fail(errmsg, errlen, r == -ENOENT ? KMS_E_BACKEND : r,
                                 "the %s could not attest key '%s' version %u: %s", kms_backend_noun(k.backend),
                                 req->name, v.version, kms_backend_explain(w->daemon, k.backend, r, why, sizeof(why)));
                }
        }
        used = v.version;
        req->audit_version = v.version;
        kms_key_version_record_clear(&v);
        if (r < 0)
                return r;
        snprintf(req->audit_details, sizeof(req->audit_details), "nonce_bytes=%zu", req->data_len);
        r = new_reply(req, ret, &it);
        if (r >= 0 && !(append_bytes(&it, attest, attest_len) && append_bytes(&it, sig, sig_len) &&
                        append_bytes(&it, ak_spki, ak_spki_len) && append_bytes(&it, key_name, key_name_len) &&
                        append_bytes(&it, key_public, key_public_len) &&
                        dbus_message_iter_append_basic(&it, DBUS_TYPE_UINT32, &used)))
                r = -ENOMEM;
        return r;
}

static int option_session(struct kms_request *req, const char *key, DBusMessageIter *var, char *errmsg, size_t errlen)
{
        if (strcmp(key, "context") == 0)
                return option_bytes(var, key, KMS_SESSION_MAX_CONTEXT_BYTES, &req->context, &req->context_len, errmsg,
                                    errlen);
        if (strcmp(key, "max_messages") == 0)
                return option_number(var, key, DBUS_TYPE_UINT32, 1, KMS_SESSION_MAX_MESSAGES_CEILING, &req->max_messages,
                                  errmsg, errlen);
        if (strcmp(key, "ttl") == 0)
                return option_number(var, key, DBUS_TYPE_UINT64, 1, KMS_SESSION_MAX_TTL_MS / 1000, &req->ttl, errmsg,
                                  errlen);
        return -ENOENT;
}

static int parse_open_session(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen)
{
        DBusMessageIter it;
        const char *role;
        int r;

        dbus_message_iter_init(req->msg, &it);
        r = parse_name(&it, req, errmsg, errlen);
        if (r < 0)
                return r;
        parse_bytes(&it, &req->peer, &req->peer_len);
        if (req->peer_len == 0 || req->peer_len > KMS_SESSION_MAX_SPKI_BYTES)
                return fail(errmsg, errlen, -EINVAL, "the peer's public key must be a DER SubjectPublicKeyInfo");
        dbus_message_iter_get_basic(&it, &role);
        dbus_message_iter_next(&it);
        req->role = kms_session_role_from_string(role);
        if (req->role == KMS_SESSION_ROLE_INVALID)
                return fail(errmsg, errlen, -EINVAL, "role '%.32s' is not initiator or responder", role);
        return parse_options(&it, dbus_message_get_member(req->msg), option_session, req, errmsg, errlen);
}

static bool append_session_info(DBusMessageIter *it, const struct kms_session *s,
                                const struct kms_session_crypto_info *info)
{
        DBusMessageIter dict;

        return dbus_message_iter_open_container(it, DBUS_TYPE_ARRAY, "{sv}", &dict) &&
               dict_add_str(&dict, "id", s->id) && dict_add_str(&dict, "key", s->key_name) &&
               dict_add_u32(&dict, "version", s->key_version) &&
               dict_add_str(&dict, "role", kms_session_role_to_string(info->role)) &&
               dict_add_str(&dict, "peer_fingerprint", s->peer_fingerprint) &&
               dict_add_i64(&dict, "created", (int64_t)(info->created_ms / 1000)) &&
               dict_add_i64(&dict, "expires", (int64_t)(info->expires_ms / 1000)) &&
               dict_add_u64(&dict, "max_messages", info->max_messages) && dict_add_u64(&dict, "sent", info->sent) &&
               append_hex(&dict, "binding", info->binding, sizeof(info->binding)) &&
               dict_add_u64(&dict, "received", info->received) && dbus_message_iter_close_container(it, &dict);
}

static int run_open_session(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg,
                            size_t errlen)
{
        struct kms_daemon *d = w->daemon;
        struct kms_key_record k;
        struct kms_key_version_record v;
        struct kms_session_crypto_params params;
        struct kms_session_crypto *crypto = NULL;
        struct kms_session_crypto_info info;
        struct kms_session *s = NULL;
        uint8_t point[KMS_MAX_EC_POINT_BYTES], z[KMS_MAX_ECDH_SECRET_BYTES], *peer_spki = NULL;
        size_t point_len = 0, z_len = 0, peer_spki_len = 0;
        char id[KMS_SESSION_ID_STRING_SIZE];
        _cleanup_(freep) char *fp = NULL;
        uint64_t now = kms_now_unix_ms();
        DBusMessageIter it;
        int r;

        r = load_for_derive(w, req, &k, &v, point, &point_len, &peer_spki, &peer_spki_len, errmsg, errlen);
        if (r < 0)
                return r;
        r = backend_derive(w, req, &k, &v, point, point_len, z, &z_len, errmsg, errlen);
        if (r >= 0) {
                kms_session_crypto_params_init(&params);
                if (req->ttl)
                        params.ttl_ms = req->ttl * 1000;
                if (req->max_messages)
                        params.max_messages = req->max_messages;
                /* Sessions cap a message at 16 MiB whatever max_message_bytes allows. */
                params.max_plaintext = d->cfg.max_message_bytes < KMS_SESSION_MAX_PLAINTEXT_CEILING
                                               ? d->cfg.max_message_bytes
                                               : KMS_SESSION_MAX_PLAINTEXT_CEILING;
                params.stale_ms = (uint64_t)d->cfg.session_stale_seconds * 1000u;
                params.skew_ms = (uint64_t)d->cfg.session_skew_seconds * 1000u;
                r = kms_session_crypto_new(req->role, z, z_len, v.spki, v.spki_len, peer_spki, peer_spki_len,
                                           req->context, req->context_len, &params, now, &crypto);
                if (r < 0)
                        r = fail(errmsg, errlen, r, "cannot set up the session: %s", kms_session_crypto_strerror(r));
        }
        OPENSSL_cleanse(z, sizeof(z));
        if (r >= 0)
                kms_session_crypto_get_info(crypto, &info);
        fp = peer_spki ? kms_spki_fingerprint(peer_spki, peer_spki_len) : NULL;
        if (r >= 0 && !fp)
                r = fail(errmsg, errlen, -ENOMEM, "out of memory");
        if (r >= 0) {
                r = kms_sessions_add(&d->sessions, req->caller.uid, k.name, v.version, fp, crypto, now, id);
                crypto = NULL; /* the table took it, or freed it */
                if (r == -EDQUOT)
                        r = fail(errmsg, errlen, r, "too many sessions open (%u in all, %u per user); close some",
                                 KMS_MAX_SESSIONS, KMS_MAX_SESSIONS_PER_UID);
                else if (r < 0)
                        r = fail(errmsg, errlen, r, "cannot add the session: %s", strerror(-r));
        }
        if (r >= 0) {
                /* The same two keys and context give the same AES keys:
                 * refuse them a second time, or GCM nonces would repeat. */
                r = kms_store_session_binding_add(w->store, info.binding, sizeof(info.binding), req->role,
                                                  (int64_t)(now / 1000));
                if (r == -EEXIST)
                        r = fail(errmsg, errlen, -EEXIST,
                                 "key '%s' already had a session as %s with this peer and this context; the keys would "
                                 "repeat: give a context never used before (for example a conversation id and a "
                                 "counter, or random bytes sent to the peer)",
                                 req->name, kms_session_role_to_string(req->role));
                else if (r < 0)
                        r = store_fail(r, req, errmsg, errlen);
                /* Recorded only once the session exists (a refusal at the
                 * cap leaves the context unused), and undone if not. */
                if (r < 0)
                        (void)kms_sessions_close(&d->sessions, id, req->caller.uid);
        }
        kms_session_crypto_free(crypto);
        OPENSSL_free(peer_spki);
        kms_key_version_record_clear(&v);
        if (r < 0)
                return r;
        snprintf(req->session_id, sizeof(req->session_id), "%s", id);
        req->audit_version = v.version;
        snprintf(req->audit_details, sizeof(req->audit_details), "role=%s peer=%s", kms_session_role_to_string(req->role),
                 fp);
        log_info("session opened by uid %u on key '%s' version %u (%s, peer %s)", (unsigned)req->caller.uid,
                 req->name, v.version, kms_session_role_to_string(req->role), fp);
        r = kms_sessions_get(&d->sessions, id, req->caller.uid, &s);
        if (r >= 0 && !s->crypto) {
                kms_sessions_put(&d->sessions, s);
                r = -ENOENT;
        }
        if (r < 0)
                return fail(errmsg, errlen, KMS_E_NO_SESSION, "the session was closed at once");
        kms_session_crypto_get_info(s->crypto, &info);
        r = new_reply(req, ret, &it);
        if (r >= 0 && !(dbus_message_iter_append_basic(&it, DBUS_TYPE_STRING, &(const char *){ s->id }) &&
                        append_session_info(&it, s, &info)))
                r = -ENOMEM;
        kms_sessions_put(&d->sessions, s);
        return r;
}

static int option_aad(struct kms_request *req, const char *key, DBusMessageIter *var, char *errmsg, size_t errlen)
{
        if (strcmp(key, "aad") == 0)
                return option_bytes(var, key, KMS_SESSION_MAX_AAD_BYTES, &req->aad, &req->aad_len, errmsg, errlen);
        return -ENOENT;
}

static int parse_session_id(DBusMessageIter *it, struct kms_request *req, char *errmsg, size_t errlen)
{
        const char *id;

        dbus_message_iter_get_basic(it, &id);
        dbus_message_iter_next(it);
        if (kms_session_id_parse(id, NULL) < 0)
                return fail(errmsg, errlen, -EINVAL, "'%.40s' is not a session id (a lower-case UUID)", id);
        snprintf(req->session_id, sizeof(req->session_id), "%s", id);
        return 0;
}

static int parse_seal_open(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen)
{
        bool seal = strcmp(dbus_message_get_member(req->msg), "Seal") == 0;
        DBusMessageIter it;
        size_t plain;
        int r;

        /* A Seal request carries a plaintext: wiped when freed, whatever
         * becomes of the request from here on. */
        if (seal)
                wipe_on_free(req->msg);
        dbus_message_iter_init(req->msg, &it);
        r = parse_session_id(&it, req, errmsg, errlen);
        if (r < 0)
                return r;
        parse_bytes(&it, &req->data, &req->data_len);
        req->payload_bytes = req->data_len;
        plain = seal ? req->data_len : req->data_len > KMS_ENVELOPE_OVERHEAD ? req->data_len - KMS_ENVELOPE_OVERHEAD : 0;
        if (plain > d->cfg.max_message_bytes)
                return fail(errmsg, errlen, -EMSGSIZE, "the %s is %zu bytes, more than the limit of %llu (max_message_bytes)",
                            seal ? "plaintext" : "envelope's plaintext", plain, (unsigned long long)d->cfg.max_message_bytes);
        return parse_options(&it, dbus_message_get_member(req->msg), option_aad, req, errmsg, errlen);
}

static int parse_close_session(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen)
{
        DBusMessageIter it;

        dbus_message_iter_init(req->msg, &it);
        return parse_session_id(&it, req, errmsg, errlen);
}

/* An unknown session id (SessionNotFound), or another user's (AccessDenied,
 * logged: it is someone trying ids). */
static int no_session(int r, struct kms_request *req, char *errmsg, size_t errlen)
{
        if (r == -EPERM) {
                req->audit_kind = "session_foreign";
                log_notice("denied: uid %u pid %d %s session %s: the session belongs to another user",
                           (unsigned)req->caller.uid, (int)req->caller.pid, req->method->member, req->session_id);
                return fail(errmsg, errlen, -EACCES, "session %s belongs to another user", req->session_id);
        }
        log_info("uid %u pid %d: %s on unknown session %s", (unsigned)req->caller.uid, (int)req->caller.pid,
                 req->method->member, req->session_id);
        return fail(errmsg, errlen, KMS_E_NO_SESSION, "no session %s (closed, expired long ago, or never opened)",
                    req->session_id);
}

/* A session code as a bus error with a sentence. */
static int session_fail(int r, const struct kms_request *req, char *errmsg, size_t errlen)
{
        int code = r == KMS_E_SESSION_EXHAUSTED ? KMS_E_EXPIRED : r;

        log_info("session %s of uid %u pid %d: %s refused: %s", req->session_id, (unsigned)req->caller.uid,
                 (int)req->caller.pid, req->method->member, kms_session_crypto_strerror(r));
        return fail(errmsg, errlen, code, "session %s: %s", req->session_id, kms_session_crypto_strerror(r));
}

static int run_seal_open(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg, size_t errlen)
{
        struct kms_daemon *d = w->daemon;
        bool seal = strcmp(req->method->member, "Seal") == 0;
        struct kms_session *s = NULL;
        struct kms_key_record k;
        struct kms_key_version_record v;
        size_t out_size, out_len = 0;
        uint8_t *out = NULL;
        DBusMessageIter it;
        int r;

        r = kms_sessions_get(&d->sessions, req->session_id, req->caller.uid, &s);
        if (r < 0)
                return no_session(r, req, errmsg, errlen);
        if (!s->crypto) {
                kms_sessions_put(&d->sessions, s);
                log_info("uid %u pid %d: %s on expired session %s", (unsigned)req->caller.uid, (int)req->caller.pid,
                         req->method->member, req->session_id);
                return fail(errmsg, errlen, KMS_E_EXPIRED, "session %s has expired; open a new one", req->session_id);
        }
        /* A session ends with its key: revoked, disabled, destroyed. */
        r = kms_store_key_get_version(w->store, s->key_name, s->key_version, false, &k, &v);
        if (r < 0)
                r = store_fail(r, req, errmsg, errlen);
        else {
                r = kms_lifecycle_check_use(&k, &v, true, errmsg, errlen);
                kms_key_version_record_clear(&v);
        }
        out_size = seal ? kms_session_crypto_envelope_size(req->data_len)
                        : (req->data_len > KMS_ENVELOPE_OVERHEAD ? req->data_len - KMS_ENVELOPE_OVERHEAD : 0);
        /* Up to max_message_bytes: ordinary heap (the D-Bus messages hold
         * the same bytes there anyway), wiped before it is freed. */
        if (r >= 0 && out_size > 0 && !(out = OPENSSL_malloc(out_size)))
                r = fail(errmsg, errlen, -ENOMEM, "out of memory");
        if (r >= 0) {
                uint64_t now = kms_now_unix_ms();

                r = seal ? kms_session_crypto_seal(s->crypto, now, req->data, req->data_len, req->aad, req->aad_len, out,
                                                   out_size, &out_len)
                         : kms_session_crypto_open(s->crypto, now, req->data, req->data_len, req->aad, req->aad_len,
                                                   out, out_size, &out_len);
                if (r < 0)
                        r = session_fail(r, req, errmsg, errlen);
        }
        kms_sessions_put(&d->sessions, s);
        if (r >= 0)
                r = new_reply(req, ret, &it);
        if (r >= 0 && !append_bytes(&it, out, out_len))
                r = -ENOMEM;
        /* The plaintext of an OpenEnvelope reply (a Seal request's is
         * wiped whatever the outcome: parse_seal_open). */
        if (r >= 0 && !seal)
                wipe_on_free(*ret);
        OPENSSL_clear_free(out, out_size);
        return r;
}

static int run_close_session(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg,
                             size_t errlen)
{
        DBusMessageIter it;

        int r = kms_sessions_close(&w->daemon->sessions, req->session_id, req->caller.uid);

        if (r < 0)
                return no_session(r, req, errmsg, errlen);
        return new_reply(req, ret, &it);
}

struct list_ctx {
        DBusMessageIter *arr;
        bool oom;
};

static void list_one(const struct kms_session *s, const struct kms_session_crypto_info *info, void *userdata)
{
        struct list_ctx *c = userdata;

        if (!c->oom && !append_session_info(c->arr, s, info))
                c->oom = true;
}

static int parse_list_sessions(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen)
{
        DBusMessageIter it;

        dbus_message_iter_init(req->msg, &it);
        return parse_options(&it, "ListSessions", NULL, req, errmsg, errlen);
}

static int run_list_sessions(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg,
                             size_t errlen)
{
        DBusMessageIter it, arr;
        struct list_ctx c = { .arr = &arr };
        int r = new_reply(req, ret, &it);

        if (r < 0 || !dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "a{sv}", &arr))
                return -ENOMEM;
        kms_sessions_foreach(&w->daemon->sessions, req->caller.uid, list_one, &c);
        if (c.oom || !dbus_message_iter_close_container(&it, &arr))
                return -ENOMEM;
        return 0;
}

/* ---- audit -------------------------------------------------------------- */

#define KMS_AUDIT_PAGE_DEFAULT 1000u
#define KMS_AUDIT_PAGE_MAX 5000u

static int option_audit(struct kms_request *req, const char *key, DBusMessageIter *var, char *errmsg, size_t errlen)
{
        int r;

        if (strcmp(key, "from_seq") == 0)
                return option_number(var, key, DBUS_TYPE_UINT64, 0, INT64_MAX, &req->from_seq, errmsg, errlen);
        if (strcmp(key, "to_seq") == 0)
                return option_number(var, key, DBUS_TYPE_UINT64, 0, INT64_MAX, &req->to_seq, errmsg, errlen);
        if (strcmp(key, "since") == 0 || strcmp(key, "until") == 0) {
                dbus_int64_t t;

                r = expect_type(var, DBUS_TYPE_INT64, "x", key, errmsg, errlen);
                if (r < 0)
                        return r;
                dbus_message_iter_get_basic(var, &t);
                if (t < 0)
                        return fail(errmsg, errlen, -EINVAL, "option '%s' must be Unix milliseconds", key);
                *(key[0] == 's' ? &req->since_ms : &req->until_ms) = t;
                return 0;
        }
        if (strcmp(key, "key") == 0) {
                const char *name, *why = NULL;

                r = expect_type(var, DBUS_TYPE_STRING, "s", key, errmsg, errlen);
                if (r < 0)
                        return r;
                dbus_message_iter_get_basic(var, &name);
                if (kms_key_name_check(name, &why) < 0)
                        return fail(errmsg, errlen, -EINVAL, "invalid key name '%.140s': %s", name, why);
                snprintf(req->name, sizeof(req->name), "%s", name);
                return 0;
        }
        if (strcmp(key, "last") == 0 || strcmp(key, "limit") == 0)
                return option_u32(var, key, 1, KMS_AUDIT_PAGE_MAX, key[1] == 'a' ? &req->last : &req->limit, errmsg,
                                  errlen);
        return -ENOENT;
}

static int parse_export_audit(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen)
{
        DBusMessageIter it;

        dbus_message_iter_init(req->msg, &it);
        return parse_options(&it, "ExportAudit", option_audit, req, errmsg, errlen);
}

struct export_ctx {
        struct kms_request *req;
        DBusMessageIter *arr;
        uint64_t last_seq;
        size_t n;
        bool oom;
};

static int export_one(const struct kms_audit_row *row, void *userdata)
{
        struct export_ctx *c = userdata;
        struct kms_request *req = c->req;
        DBusMessageIter dict;
        /* Checkpoints are always shown: they carry the signatures. */
        bool hide = strcmp(row->kind, "checkpoint") != 0 &&
                    ((req->until_ms && row->time_ms > req->until_ms) || (req->name[0] && strcmp(row->key, req->name) != 0));
        char when[40];
        uint8_t body[32];
        bool ok;

        c->last_seq = row->seq;
        c->n++;
        if (!dbus_message_iter_open_container(c->arr, DBUS_TYPE_ARRAY, "{sv}", &dict)) {
                c->oom = true;
                return -ENOMEM;
        }
        ok = dict_add_u64(&dict, "seq", row->seq);
        if (hide)
                /* Left out on purpose: a stub keeps the chain checkable. */
                ok = ok && dict_add_bool(&dict, "redacted", true) && append_hex(&dict, "prev", row->prev, 32) &&
                     kms_audit_body_hash(row, body) >= 0 && append_hex(&dict, "body", body, 32);
        else {
                kms_audit_format_time(row->time_ms, when, sizeof(when));
                ok = ok && dict_add_str(&dict, "time", when) && dict_add_str(&dict, "kind", row->kind) &&
                     dict_add_u32(&dict, "uid", row->uid) && dict_add_u32(&dict, "pid", (uint32_t)row->pid) &&
                     dict_add_str(&dict, "exe", row->exe) && dict_add_str(&dict, "operation", row->operation) &&
                     dict_add_str(&dict, "key", row->key) && dict_add_u32(&dict, "version", row->version) &&
                     dict_add_str(&dict, "result", row->result) && dict_add_str(&dict, "details", row->details) &&
                     append_hex(&dict, "prev", row->prev, 32) &&
                     (row->sig_len == 0 || append_hex(&dict, "signature", row->sig, row->sig_len));
        }
        if (!ok || !dbus_message_iter_close_container(c->arr, &dict)) {
                c->oom = true;
                return -ENOMEM;
        }
        return 0;
}

static int run_export_audit(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg,
                            size_t errlen)
{
        uint32_t limit = req->limit ? req->limit : KMS_AUDIT_PAGE_DEFAULT;
        uint64_t from = req->from_seq, to = req->to_seq, head = 0, next = 0;
        uint8_t hash[32];
        DBusMessageIter it, arr;
        struct export_ctx c = { .req = req, .arr = &arr };
        dbus_uint64_t n64;
        int r;

        r = kms_store_audit_head(w->store, &head, hash);
        if (r < 0)
                return store_fail(r, req, errmsg, errlen);
        if (to == 0 || to > head)
                to = head;
        if (req->last)
                from = to >= req->last ? to - req->last + 1 : 1;
        else if (from == 0 && req->since_ms) {
                r = kms_store_audit_seq_since(w->store, req->since_ms, &from);
                if (r < 0)
                        return store_fail(r, req, errmsg, errlen);
                if (from == 0)
                        from = to + 1; /* nothing that recent */
        }
        if (from == 0)
                from = 1;
        r = new_reply(req, ret, &it);
        if (r < 0 || !dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "a{sv}", &arr))
                return -ENOMEM;
        if (from <= to && to > 0) {
                r = kms_store_audit_read(w->store, from, to, limit, export_one, &c);
                if (c.oom)
                        return -ENOMEM;
                if (r < 0)
                        return store_fail(r, req, errmsg, errlen);
        }
        if (c.n == limit && c.last_seq < to)
                next = c.last_seq + 1;
        n64 = next;
        if (!dbus_message_iter_close_container(&it, &arr) || !dbus_message_iter_append_basic(&it, DBUS_TYPE_UINT64, &n64))
                return -ENOMEM;
        snprintf(req->audit_details, sizeof(req->audit_details), "seq %llu..%llu, %zu record(s)",
                 (unsigned long long)from, (unsigned long long)(c.n ? c.last_seq : from), c.n);
        return 0;
}

static int run_audit_checkpoint(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg,
                                size_t errlen)
{
        DBusMessageIter it;
        dbus_uint64_t seq = 0;
        int r = kms_audit_checkpoint(w->daemon, &seq);

        if (r < 0)
                return fail(errmsg, errlen, r, "the audit log cannot be written: no checkpoint");
        r = new_reply(req, ret, &it);
        if (r >= 0 && !dbus_message_iter_append_basic(&it, DBUS_TYPE_UINT64, &seq))
                r = -ENOMEM;
        snprintf(req->audit_details, sizeof(req->audit_details), "checkpoint seq %llu", (unsigned long long)seq);
        return r;
}

static int run_get_audit_keys(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg,
                              size_t errlen)
{
        struct kms_audit_key *keys = NULL;
        DBusMessageIter it, arr;
        size_t n = 0;
        int r = kms_store_audit_keys(w->store, &keys, &n);

        if (r < 0)
                return store_fail(r, req, errmsg, errlen);
        r = new_reply(req, ret, &it);
        if (r >= 0 && !dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "ay", &arr))
                r = -ENOMEM;
        for (size_t i = 0; r >= 0 && i < n; i++)
                if (!append_bytes(&arr, keys[i].spki, keys[i].spki_len))
                        r = -ENOMEM;
        if (r >= 0 && !dbus_message_iter_close_container(&it, &arr))
                r = -ENOMEM;
        free(keys);
        return r;
}

static int run_get_policy(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg,
                          size_t errlen)
{
        const struct kms_policy *p = req->policy;
        DBusMessageIter it, dict, arr;
        char rights[256];
        int r;

        kms_operations_format(kms_policy_owner_rights(p), rights, sizeof(rights));
        r = new_reply(req, ret, &it);
        if (r >= 0 && !(dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "{sv}", &dict) &&
                        dict_add_str(&dict, "dir", w->daemon->cfg.policy_dir) &&
                        dict_add_str(&dict, "admin_group", w->daemon->cfg.admin_group) &&
                        dict_add_bool(&dict, "admin_group_exists", *kms_policy_admin_group(p) != '\0') &&
                        dict_add_str(&dict, "owner_rights", rights) &&
                        dbus_message_iter_close_container(&it, &dict) &&
                        dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "a{sv}", &arr)))
                r = -ENOMEM;
        for (size_t i = 0; r >= 0 && i < kms_policy_n_rules(p); i++) {
                struct kms_policy_rule_info ri;

                kms_policy_rule_info(p, i, &ri);
                if (!(dbus_message_iter_open_container(&arr, DBUS_TYPE_ARRAY, "{sv}", &dict) &&
                      dict_add_str(&dict, "name", ri.name) && dict_add_str(&dict, "file", ri.file) &&
                      dict_add_u32(&dict, "line", ri.line) &&
                      dict_add_str(&dict, "effect", ri.allow ? "allow" : "deny") &&
                      dict_add_str(&dict, "subjects", ri.subjects) && dict_add_str(&dict, "operations", ri.operations) &&
                      dict_add_str(&dict, "keys", ri.keys) && dbus_message_iter_close_container(&arr, &dict)))
                        r = -ENOMEM;
        }
        if (r >= 0 && !dbus_message_iter_close_container(&it, &arr))
                r = -ENOMEM;
        return r;
}

static int run_check_policy(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg,
                            size_t errlen)
{
        struct kms_caller who = { .pid = 0 };
        struct kms_decision dec;
        uid_t owner = KMS_NO_OWNER;
        const char *key = req->name[0] ? req->name : NULL;
        DBusMessageIter it;
        dbus_bool_t allow;
        char why[KMS_POLICY_WHY_MAX + 64];
        int r;

        if (req->check_uid_set)
                who.uid = req->check_uid;
        else {
                struct passwd pw, *res = NULL;
                char buf[4096];

                if (getpwnam_r(req->check_user, &pw, buf, sizeof(buf), &res) != 0 || !res)
                        return fail(errmsg, errlen, -ENOENT, "no user named '%s'", req->check_user);
                who.uid = pw.pw_uid;
        }
        (void)kms_caller_resolve_groups(&who);
        if (key) {
                r = kms_store_key_owner(w->store, key, &owner);
                if (r < 0 && r != -ENOENT)
                        return store_fail(r, req, errmsg, errlen);
        }
        allow = kms_policy_decide(req->policy, &who, req->check_op, key, owner, &dec);
        snprintf(why, sizeof(why), "%s%s", dec.why, key && owner == KMS_NO_OWNER ? " (no such key yet)" : "");
        kms_utf8_sanitize(why); /* a file name from the policy folder, cut at its limit */
        r = new_reply(req, ret, &it);
        if (r >= 0 && !(dbus_message_iter_append_basic(&it, DBUS_TYPE_BOOLEAN, &allow) &&
                        dbus_message_iter_append_basic(&it, DBUS_TYPE_STRING, &(const char *){ why })))
                r = -ENOMEM;
        return r;
}

static int run_reload_policy(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg,
                             size_t errlen)
{
        char err[KMS_ERRMSG_MAX - 64];
        int r = kms_access_reload(w->daemon, err, sizeof(err));

        if (r < 0)
                return fail(errmsg, errlen, r, "policy not reloaded, the old policy stays in force: %s", err);
        return reply_u32(req, ret, (uint32_t)r);
}

static const struct kms_method methods[] = {
        { "CreateKey", "ssa{sv}", KMS_OP_CREATE, KMS_SCOPE_CREATE, parse_create, run_create },
        { "ListKeys", "a{sv}", KMS_OP_READ, KMS_SCOPE_FILTER, parse_list, run_list },
        { "DescribeKey", "s", KMS_OP_READ, KMS_SCOPE_KEY, parse_name_only, run_describe },
        { "GetPublicKey", "su", KMS_OP_READ, KMS_SCOPE_KEY, parse_public, run_public },
        { "Sign", "saya{sv}", KMS_OP_SIGN, KMS_SCOPE_KEY, parse_sign, run_sign },
        { "SignDigest", "saya{sv}", KMS_OP_SIGN, KMS_SCOPE_KEY, parse_sign_digest, run_sign },
        { "Verify", "sayaya{sv}", KMS_OP_VERIFY, KMS_SCOPE_KEY, parse_verify, run_verify },
        { "DestroyKey", "sa{sv}", KMS_OP_DESTROY, KMS_SCOPE_KEY, parse_destroy, run_destroy },
        { "RotateKey", "sa{sv}", KMS_OP_ROTATE, KMS_SCOPE_KEY, parse_no_options, run_rotate },
        { "RevokeKey", "sa{sv}", KMS_OP_REVOKE, KMS_SCOPE_KEY, parse_revoke, run_revoke },
        { "ListRevoked", "a{sv}", KMS_OP_READ, KMS_SCOPE_FILTER, parse_list_revoked, run_list_revoked },
        { "DisableKey", "sa{sv}", KMS_OP_DISABLE, KMS_SCOPE_KEY, parse_no_options, run_enable_disable },
        { "EnableKey", "sa{sv}", KMS_OP_DISABLE, KMS_SCOPE_KEY, parse_no_options, run_enable_disable },
        { "CancelDestroy", "sa{sv}", KMS_OP_DESTROY, KMS_SCOPE_KEY, parse_no_options, run_cancel_destroy },
        { "SetKeyOptions", "sa{sv}", KMS_OP_ROTATE, KMS_SCOPE_KEY, parse_set_key, run_set_key },
        { "Derive", "saya{sv}", KMS_OP_DERIVE, KMS_SCOPE_KEY, parse_derive, run_derive },
        { "Decrypt", "saya{sv}", KMS_OP_DECRYPT, KMS_SCOPE_KEY, parse_decrypt, run_decrypt },
        { "AttestKey", "saya{sv}", KMS_OP_READ, KMS_SCOPE_KEY, parse_attest, run_attest },
        { "OpenSession", "saysa{sv}", KMS_OP_SESSION, KMS_SCOPE_KEY, parse_open_session, run_open_session },
        { "Seal", "saya{sv}", KMS_OP_SESSION, KMS_SCOPE_SESSION, parse_seal_open, run_seal_open },
        { "OpenEnvelope", "saya{sv}", KMS_OP_SESSION, KMS_SCOPE_SESSION, parse_seal_open, run_seal_open },
        { "CloseSession", "s", KMS_OP_SESSION, KMS_SCOPE_OWN_SESSION, parse_close_session, run_close_session },
        { "ListSessions", "a{sv}", KMS_OP_SESSION, KMS_SCOPE_FILTER, parse_list_sessions, run_list_sessions },
        { "GetStatus", "", KMS_OP_STATUS, KMS_SCOPE_GLOBAL, parse_none, run_status },
        { "AuditCheckpoint", "", KMS_OP_AUDIT, KMS_SCOPE_GLOBAL, parse_none, run_audit_checkpoint },
        { "ExportAudit", "a{sv}", KMS_OP_AUDIT, KMS_SCOPE_GLOBAL, parse_export_audit, run_export_audit },
        { "GetAuditKeys", "", KMS_OP_AUDIT, KMS_SCOPE_GLOBAL, parse_none, run_get_audit_keys },
        { "GetPolicy", "", KMS_OP_ADMIN, KMS_SCOPE_GLOBAL, parse_none, run_get_policy },
        { "CheckPolicy", "sss", KMS_OP_ADMIN, KMS_SCOPE_GLOBAL, parse_check_policy, run_check_policy },
        { "ReloadPolicy", "", KMS_OP_ADMIN, KMS_SCOPE_GLOBAL, parse_none, run_reload_policy },
};

const struct kms_method *kms_method_find(const char *member)
{
        for (size_t i = 0; i < ELEMENTSOF(methods); i++)
                if (strcmp(methods[i].member, member) == 0)
                        return &methods[i];
        return NULL;
}
