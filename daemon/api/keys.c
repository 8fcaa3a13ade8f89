/* The keys domain of org.kmsd.KeyManager1: CreateKey, ListKeys,
 * DescribeKey, GetPublicKey, SetKeyOptions and AttestKey (docs/dbus-api.md). */
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "kms-error.h"
#include "kms-log.h"
#include "lifecycle.h"

#define fail kms_errorf /* printf into errmsg, return the code */

/* Rotation settings; min 1 at create, 0 (clear) allowed for SetKeyOptions. */
static int option_settings_min(struct kms_request *req, const char *key, DBusMessageIter *var, uint64_t min,
                               char *errmsg, size_t errlen)
{
        uint64_t v;
        int r;

        if (strcmp(key, "rotate_every") == 0) {
                r = kms_opt_u64(var, key, min, &req->rotate_every, errmsg, errlen);
                req->rotate_every_set = r >= 0;
                return r;
        }
        if (strcmp(key, "rotate_after_uses") == 0) {
                r = kms_opt_u64(var, key, min, &req->rotate_after_uses, errmsg, errlen);
                req->rotate_after_uses_set = r >= 0;
                return r;
        }
        if (strcmp(key, "keep_versions") == 0) {
                dbus_uint32_t u;

                r = kms_opt_expect(var, DBUS_TYPE_UINT32, "u", key, errmsg, errlen);
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

                r = kms_opt_string(var, key, &b, errmsg, errlen);
                if (r < 0)
                        return r;
                if (strcmp(b, "pkcs11") != 0 && strcmp(b, "tpm") != 0)
                        return fail(errmsg, errlen, -EINVAL, "unknown backend '%.32s' (pkcs11, tpm)", b);
                snprintf(req->backend_name, sizeof(req->backend_name), "%s", b);
                return 0;
        }
        if (strcmp(key, "owner") == 0) {
                dbus_uint32_t v;

                r = kms_opt_expect(var, DBUS_TYPE_UINT32, "u", key, errmsg, errlen);
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
        bool b;
        int r;

        if (strcmp(key, "all") == 0) {
                r = kms_opt_bool(var, key, &b, errmsg, errlen);
                if (r < 0)
                        return r;
                req->include_destroyed = b;
                return 0;
        }
        return kms_opt_page(req, key, var, errmsg, errlen);
}

/* The bounds of [limits] in kmsd.conf on the settings a request sets: a
 * period below min_rotate_every, or more versions than max_versions_kept,
 * would let one owner fill the token and keep the workers generating
 * keys. 0 (SetKeyOptions: none, keep all) passes; keep_versions 0 is held
 * to max_versions_kept by the trim itself. */
static int check_limits(const struct kms_daemon *d, const struct kms_request *req, char *errmsg, size_t errlen)
{
        if (req->rotate_every_set && req->rotate_every != 0 && req->rotate_every < d->cfg.min_rotate_every)
                return fail(errmsg, errlen, -EINVAL,
                            "option 'rotate_every' = %llu s is below the minimum of %llu s (kmsd.conf: [limits] "
                            "min_rotate_every)",
                            (unsigned long long)req->rotate_every, (unsigned long long)d->cfg.min_rotate_every);
        if (req->keep_versions_set && req->keep_versions > d->cfg.max_versions_kept)
                return fail(errmsg, errlen, -EINVAL,
                            "option 'keep_versions' = %u is above the maximum of %u (kmsd.conf: [limits] "
                            "max_versions_kept)",
                            (unsigned)req->keep_versions, d->cfg.max_versions_kept);
        return 0;
}

static int parse_create(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen)
{
        DBusMessageIter it;
        const char *alg;
        int r;

        dbus_message_iter_init(req->msg, &it);
        r = kms_arg_name(&it, req, errmsg, errlen);
        if (r < 0)
                return r;
        dbus_message_iter_get_basic(&it, &alg);
        dbus_message_iter_next(&it);
        req->algorithm = kms_algorithm_from_string(alg);
        if (req->algorithm == KMS_ALG_INVALID)
                return fail(errmsg, errlen, -EINVAL, "unknown algorithm '%.32s' (%s)", alg, kms_algorithm_list());
        req->usages = KMS_USAGE_SIGN;
        r = kms_arg_options(&it, "CreateKey", option_create, req, errmsg, errlen);
        if (r < 0)
                return r;
        r = check_limits(d, req, errmsg, errlen);
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
        req->limit = KMS_LIST_DEFAULT_LIMIT;
        return kms_arg_options(&it, "ListKeys", option_list, req, errmsg, errlen);
}

static int parse_name_only(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen)
{
        DBusMessageIter it;

        dbus_message_iter_init(req->msg, &it);
        return kms_arg_name(&it, req, errmsg, errlen);
}

static int parse_public(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen)
{
        DBusMessageIter it;
        dbus_uint32_t v;
        int r;

        dbus_message_iter_init(req->msg, &it);
        r = kms_arg_name(&it, req, errmsg, errlen);
        if (r < 0)
                return r;
        dbus_message_iter_get_basic(&it, &v);
        req->version = v;
        return 0;
}

static int parse_set_key(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen)
{
        int r = kms_arg_name_options(req, option_set_key, errmsg, errlen);

        if (r < 0)
                return r;
        return check_limits(d, req, errmsg, errlen);
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
        size_t count = 0;
        int r;

        key.owner = req->owner_set ? req->owner : req->caller.uid;
        /* Before the token's work; again, authoritatively, in the insert's
         * transaction, where concurrent creates cannot pass together. */
        r = kms_store_key_limits_check(w->store, &limits, key.owner, &limit, &count);
        if (r == -EDQUOT)
                return quota_fail(limit, key.owner, count, errmsg, errlen);
        if (r < 0)
                return kms_api_store_fail(r, req, errmsg, errlen);
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
                return kms_api_store_fail(r, req, errmsg, errlen);

        /* The token first, the metadata second: a crash in between leaves
         * an orphan object (in the object journal, so reconciliation
         * removes it), never metadata without a key. */
        r = kms_lifecycle_generate(w, req->backend, req->algorithm, req->usages, req->name, &v1, errmsg, errlen);
        if (r < 0)
                return r;

        snprintf(key.name, sizeof(key.name), "%s", req->name);
        key.algorithm = req->algorithm;
        snprintf(key.backend, sizeof(key.backend), "%s", ops->name);
        key.usages = req->usages;
        key.created = v1.created = kms_now_unix();
        key.state = KMS_KEY_ACTIVE;
        key.rotate_every = req->rotate_every;
        key.rotate_after_uses = req->rotate_after_uses;
        key.keep_versions = req->keep_versions;
        req->audit_version = 1;
        snprintf(req->audit_details, sizeof(req->audit_details), "%s backend=%s owner=%u",
                 kms_algorithm_to_string(req->algorithm), ops->name, (unsigned)key.owner);
        /* The key and its record in one commit. */
        r = kms_store_begin(w->store);
        if (r >= 0)
                r = kms_store_key_insert(w->store, &key, &v1, &limits, &limit, &count);
        if (r >= 0)
                r = kms_change_record_request(w, req);
        if (r >= 0)
                r = kms_store_commit_change(w->store);
        else
                kms_store_rollback(w->store);
        if (r < 0) {
                req->audit_committed = false;
                kms_lifecycle_discard(w, req->backend, req->name, &v1);
                kms_key_version_record_clear(&v1);
                if (r == -EEXIST)
                        return fail(errmsg, errlen, r, "a key named '%s' already exists", req->name);
                if (r == -EDQUOT)
                        return quota_fail(limit, key.owner, count, errmsg, errlen);
                return kms_api_store_fail(r, req, errmsg, errlen);
        }
        kms_key_version_record_clear(&v1);
        log_info("created key '%s' (%s) for uid %u", req->name, kms_algorithm_to_string(req->algorithm),
                 (unsigned)key.owner);
        kms_signal_key_created(d, req->name, 1);

        return kms_reply_key(w, req, ret, errmsg, errlen);
}

/* One page of the keys the caller may read (kms_api_list_page), each
 * read as one key row: no versions. */
static int run_list(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg, size_t errlen)
{
        _cleanup_(freep) struct kms_key_page_entry *page = NULL;
        DBusMessageIter it, arr;
        size_t n = 0;
        int r;

        r = kms_api_list_page(w, req, req->include_destroyed, false, &page, &n);
        if (r < 0)
                return kms_api_store_fail(r, req, errmsg, errlen);
        r = kms_reply_new(req, ret, &it);
        if (r >= 0 && !dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "a{sv}", &arr))
                r = -ENOMEM;
        for (size_t i = 0; r >= 0 && i < n; i++) {
                struct kms_key_record *k = NULL;

                /* Keys are never deleted (a destroyed one keeps its row). */
                r = kms_store_key_get(w->store, page[i].name, false, &k);
                if (r < 0) {
                        r = kms_api_store_fail(r == -ENOENT ? KMS_E_STORE : r, req, errmsg, errlen);
                        break;
                }
                if (!kms_append_key(&arr, k, false))
                        r = -ENOMEM;
                kms_key_record_free(k);
        }
        if (r >= 0 && !dbus_message_iter_close_container(&it, &arr))
                r = -ENOMEM;
        return r;
}

static int run_describe(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg, size_t errlen)
{
        return kms_reply_key(w, req, ret, errmsg, errlen);
}

static int run_public(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg, size_t errlen)
{
        struct kms_key_record k;
        struct kms_key_version_record v;
        DBusMessageIter it;
        dbus_uint32_t used;
        int r;

        r = kms_api_load_version(w, req, req->version, true, &k, &v, errmsg, errlen);
        if (r < 0)
                return r;
        r = kms_api_check_usable(&k, errmsg, errlen);
        if (r >= 0)
                r = kms_reply_new(req, ret, &it);
        used = v.version;
        req->audit_version = v.version;
        if (r >= 0 && !(kms_append_bytes(&it, v.spki, v.spki_len) &&
                        dbus_message_iter_append_basic(&it, DBUS_TYPE_UINT32, &used)))
                r = -ENOMEM;
        kms_key_version_record_clear(&v);
        return r;
}

static int run_set_key(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg, size_t errlen)
{
        int r = kms_lifecycle_set_options(w, req, errmsg, errlen);

        if (r < 0)
                return r;
        return kms_reply_key(w, req, ret, errmsg, errlen);
}

/* AttestKey (s name, ay nonce, a{sv} options{version u}): the nonce is
 * at most KMS_MAX_ATTEST_NONCE_BYTES; the only option is the version, as
 * for Decrypt. */
static int parse_attest(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen)
{
        DBusMessageIter it;
        int r;

        dbus_message_iter_init(req->msg, &it);
        r = kms_arg_name(&it, req, errmsg, errlen);
        if (r < 0)
                return r;
        kms_arg_bytes(&it, &req->data, &req->data_len);
        req->payload_bytes = req->data_len;
        if (req->data_len > KMS_MAX_ATTEST_NONCE_BYTES)
                return fail(errmsg, errlen, -EINVAL, "the nonce is %zu bytes; at most %u are allowed", req->data_len,
                            KMS_MAX_ATTEST_NONCE_BYTES);
        return kms_arg_options(&it, dbus_message_get_member(req->msg), kms_opt_version, req, errmsg, errlen);
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

        (void)kms_key_lock(w->daemon, req, req->name, false);
        r = kms_api_load_version(w, req, req->version, false, &k, &v, errmsg, errlen);
        if (r < 0)
                return r;
        r = kms_lifecycle_check_use(&k, &v, true, errmsg, errlen);
        if (r >= 0)
                r = kms_api_key_backend(w, &k, &ops, &bw, errmsg, errlen);
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
        r = kms_reply_new(req, ret, &it);
        if (r >= 0 && !(kms_append_bytes(&it, attest, attest_len) && kms_append_bytes(&it, sig, sig_len) &&
                        kms_append_bytes(&it, ak_spki, ak_spki_len) && kms_append_bytes(&it, key_name, key_name_len) &&
                        kms_append_bytes(&it, key_public, key_public_len) &&
                        dbus_message_iter_append_basic(&it, DBUS_TYPE_UINT32, &used)))
                r = -ENOMEM;
        return r;
}

static const struct kms_method keys_methods[] = {
        { "CreateKey", "ssa{sv}", KMS_OP_CREATE, KMS_SCOPE_CREATE, parse_create, run_create },
        { "ListKeys", "a{sv}", KMS_OP_READ, KMS_SCOPE_FILTER, parse_list, run_list },
        { "DescribeKey", "s", KMS_OP_READ, KMS_SCOPE_KEY, parse_name_only, run_describe },
        { "GetPublicKey", "su", KMS_OP_READ, KMS_SCOPE_KEY, parse_public, run_public },
        { "SetKeyOptions", "sa{sv}", KMS_OP_ROTATE, KMS_SCOPE_KEY, parse_set_key, run_set_key },
        { "AttestKey", "saya{sv}", KMS_OP_READ, KMS_SCOPE_KEY, parse_attest, run_attest },
};

const struct kms_method_slice kms_api_keys = { "keys", keys_methods, ELEMENTSOF(keys_methods) };
