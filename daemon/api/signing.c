/* Signing and verification: Sign, SignDigest and Verify (docs/dbus-api.md). */
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "kms-error.h"
#include "kms-log.h"
#include "lifecycle.h"

#define fail kms_errorf /* printf into errmsg, return the code */

static int option_sign(struct kms_request *req, const char *key, DBusMessageIter *var, char *errmsg, size_t errlen)
{
        const char *s;
        int r;

        if (strcmp(key, "hash") == 0) {
                r = kms_opt_string(var, key, &s, errmsg, errlen);
                if (r < 0)
                        return r;
                req->hash = kms_hash_from_string(s);
                if (req->hash == KMS_HASH_INVALID)
                        return fail(errmsg, errlen, -EINVAL, "unknown hash '%.32s' (sha256, sha384, sha512)", s);
                req->hash_set = true;
                return 0;
        }
        if (strcmp(key, "padding") == 0) {
                r = kms_opt_string(var, key, &s, errmsg, errlen);
                if (r < 0)
                        return r;
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
        if (strcmp(key, "version") == 0)
                return kms_opt_u32(var, key, 0, UINT32_MAX, &req->version, errmsg, errlen);
        return option_sign(req, key, var, errmsg, errlen);
}

static int parse_sign(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen)
{
        DBusMessageIter it;
        int r;

        dbus_message_iter_init(req->msg, &it);
        r = kms_arg_name(&it, req, errmsg, errlen);
        if (r < 0)
                return r;
        kms_arg_bytes(&it, &req->data, &req->data_len);
        req->payload_bytes = req->data_len;
        r = kms_arg_data_size(d, req->data_len, "the data", errmsg, errlen);
        if (r < 0)
                return r;
        return kms_arg_options(&it, dbus_message_get_member(req->msg), option_sign, req, errmsg, errlen);
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
        r = kms_arg_name(&it, req, errmsg, errlen);
        if (r < 0)
                return r;
        kms_arg_bytes(&it, &req->data, &req->data_len);
        kms_arg_bytes(&it, &req->sig, &req->sig_len);
        req->payload_bytes = req->data_len + req->sig_len;
        r = kms_arg_data_size(d, req->data_len, "the data", errmsg, errlen);
        if (r < 0)
                return r;
        /* Longer than any signature kmsd's keys make (RSA-4096): refused
         * before it is queued, so it cannot take the queue's memory. */
        if (req->sig_len > KMS_MAX_SIGNATURE_BYTES)
                return fail(errmsg, errlen, -EMSGSIZE,
                            "the signature is %zu bytes; no key of kmsd makes one longer than %u", req->sig_len,
                            KMS_MAX_SIGNATURE_BYTES);
        return kms_arg_options(&it, "Verify", option_verify, req, errmsg, errlen);
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

        /* Shared until the reply is queued: a revocation waits for this
         * signature, and no signature starts after it (keylock.c). */
        (void)kms_key_lock(d, req, req->name, false);
        r = kms_key_cache_get_primary(&d->key_cache, w->store, req->name, &k, &v);
        if (r < 0)
                return kms_api_store_fail(r, req, errmsg, errlen);
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

        r = kms_api_key_backend(w, &k, &ops, &bw, errmsg, errlen);
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

                kms_usage_add(&d->usage, w->store, k.id, v.version, &due, k.rotate_after_uses);
                /* The use that reaches the limit queues one rotation; the
                 * signatures in flight meanwhile still use this version.
                 * If it cannot be queued, the next use tries again (and
                 * the scheduler checks the counts as well). */
                if (due && kms_pool_submit_internal(d, "UsageRotate", k.name, v.version) < 0) {
                        kms_usage_limit_retry(&d->usage, k.id, v.version);
                        log_warning("key '%s': use limit reached but the rotation could not be queued; retrying",
                                    k.name);
                }
        }

        used = v.version;
        req->audit_version = v.version;
        snprintf(req->audit_details, sizeof(req->audit_details), "hash=%s%s%s", kms_hash_to_string(h),
                 kms_algorithm_is_rsa(k.algorithm) ? " padding=" : "",
                 kms_algorithm_is_rsa(k.algorithm) ? kms_padding_to_string(pad) : "");
        r = kms_reply_new(req, ret, &it);
        if (r >= 0 && !(kms_append_bytes(&it, sig, sig_len) &&
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

        r = kms_api_load_version(w, req, req->version, true, &k, &v, errmsg, errlen);
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
                r = kms_reply_new(req, ret, &it);
                if (r >= 0 && !(dbus_message_iter_append_basic(&it, DBUS_TYPE_BOOLEAN, &valid) &&
                                dbus_message_iter_append_basic(&it, DBUS_TYPE_UINT32, &used)))
                        r = -ENOMEM;
        }
        kms_key_version_record_clear(&v);
        return r;
}

static const struct kms_method signing_methods[] = {
        { "Sign", "saya{sv}", KMS_OP_SIGN, KMS_SCOPE_KEY, parse_sign, run_sign },
        { "SignDigest", "saya{sv}", KMS_OP_SIGN, KMS_SCOPE_KEY, parse_sign_digest, run_sign },
        { "Verify", "sayaya{sv}", KMS_OP_VERIFY, KMS_SCOPE_KEY, parse_verify, run_verify },
};

const struct kms_method_slice kms_api_signing = { "signing", signing_methods, ELEMENTSOF(signing_methods) };
