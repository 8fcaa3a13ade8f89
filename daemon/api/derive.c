/* Derivation and decryption: Derive (ECDH in the backend, then HKDF) and
 * Decrypt (RSA-OAEP), whose replies carry secrets and are wiped when
 * freed. The ECDH steps are shared with OpenSession (sessions.c). */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "api.h"
#include "kms-error.h"
#include "kms-hkdf.h"
#include "kms-log.h"
#include "kms-session-crypto.h"
#include "lifecycle.h"
#include "peer.h"

#define fail kms_errorf /* printf into errmsg, return the code */

#define KMS_MAX_KDF_SALT 1024u

#define KMS_MAX_DERIVE_LENGTH 1024u

static int option_derive(struct kms_request *req, const char *key, DBusMessageIter *var, char *errmsg, size_t errlen)
{
        if (strcmp(key, "salt") == 0)
                return kms_opt_bytes(var, key, KMS_MAX_KDF_SALT, &req->salt, &req->salt_len, errmsg, errlen);
        if (strcmp(key, "info") == 0)
                return kms_opt_bytes(var, key, KMS_HKDF_MAX_INFO, &req->info, &req->info_len, errmsg, errlen);
        if (strcmp(key, "length") == 0)
                return kms_opt_u32(var, key, 1, KMS_MAX_DERIVE_LENGTH, &req->length, errmsg, errlen);
        return -ENOENT;
}

static int parse_derive(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen)
{
        DBusMessageIter it;
        int r;

        req->length = 32;
        dbus_message_iter_init(req->msg, &it);
        r = kms_arg_name(&it, req, errmsg, errlen);
        if (r < 0)
                return r;
        kms_arg_bytes(&it, &req->peer, &req->peer_len);
        if (req->peer_len == 0 || req->peer_len > KMS_SESSION_MAX_SPKI_BYTES)
                return fail(errmsg, errlen, -EINVAL,
                            "the peer's public key must be one DER SubjectPublicKeyInfo of at most %u bytes, not %zu",
                            KMS_SESSION_MAX_SPKI_BYTES, req->peer_len);
        r = kms_arg_options(&it, dbus_message_get_member(req->msg), option_derive, req, errmsg, errlen);
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
int kms_api_derive_prepare(struct kms_worker *w, struct kms_request *req, struct kms_key_record *k,
                           struct kms_key_version_record *v, uint8_t point[KMS_MAX_EC_POINT_BYTES],
                           size_t *point_len, uint8_t **ret_spki, size_t *ret_spki_len, char *errmsg, size_t errlen)
{
        const char *why = NULL;
        int r;

        /* Shared until the reply is queued: no revocation in between. */
        (void)kms_key_lock(w->daemon, req, req->name, false);
        r = kms_api_load_version(w, req, 0, ret_spki != NULL, k, v, errmsg, errlen);
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

int kms_api_derive_secret(struct kms_worker *w, struct kms_request *req, const struct kms_key_record *k,
                          const struct kms_key_version_record *v, const uint8_t *point, size_t point_len,
                          uint8_t z[KMS_MAX_ECDH_SECRET_BYTES], size_t *z_len, char *errmsg, size_t errlen)
{
        const struct kms_backend_ops *ops = NULL;
        struct kms_backend_worker *bw = NULL;
        int r = kms_api_key_backend(w, k, &ops, &bw, errmsg, errlen);

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

        r = kms_api_derive_prepare(w, req, &k, &v, point, &point_len, NULL, NULL, errmsg, errlen);
        if (r < 0)
                return r;
        used = v.version;
        req->audit_version = v.version;
        snprintf(req->audit_details, sizeof(req->audit_details), "length=%u", req->length);
        r = kms_api_derive_secret(w, req, &k, &v, point, point_len, z, &z_len, errmsg, errlen);
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
                r = kms_reply_new(req, ret, &it);
        /* The reply carries the derived bytes to the caller (that is what
         * Derive is for); the message is freed, not logged. */
        if (r >= 0 && !(kms_append_bytes(&it, out, req->length) &&
                        dbus_message_iter_append_basic(&it, DBUS_TYPE_UINT32, &used)))
                r = -ENOMEM;
        if (r >= 0)
                kms_api_wipe_on_free(*ret);
        OPENSSL_secure_clear_free(out, req->length);
        return r;
}

static int parse_decrypt(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen)
{
        DBusMessageIter it;
        int r;

        dbus_message_iter_init(req->msg, &it);
        r = kms_arg_name(&it, req, errmsg, errlen);
        if (r < 0)
                return r;
        kms_arg_bytes(&it, &req->data, &req->data_len);
        if (req->data_len == 0 || req->data_len > KMS_MAX_RSA_BYTES)
                return fail(errmsg, errlen, -EINVAL, "the ciphertext is %zu bytes; an RSA ciphertext is the modulus size",
                            req->data_len);
        return kms_arg_options(&it, dbus_message_get_member(req->msg), kms_opt_version, req, errmsg, errlen);
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

        (void)kms_key_lock(w->daemon, req, req->name, false);
        r = kms_api_load_version(w, req, req->version, false, &k, &v, errmsg, errlen);
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
                r = kms_api_key_backend(w, &k, &ops, &bw, errmsg, errlen);
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
                r = kms_reply_new(req, ret, &it);
        if (r >= 0 && !(kms_append_bytes(&it, out, out_len) && dbus_message_iter_append_basic(&it, DBUS_TYPE_UINT32, &used)))
                r = -ENOMEM;
        if (r >= 0)
                kms_api_wipe_on_free(*ret);
        if (out)
                OPENSSL_secure_clear_free(out, KMS_MAX_RSA_BYTES);
        return r;
}

static const struct kms_method derive_methods[] = {
        { "Derive", "saya{sv}", KMS_OP_DERIVE, KMS_SCOPE_KEY, parse_derive, run_derive },
        { "Decrypt", "saya{sv}", KMS_OP_DECRYPT, KMS_SCOPE_KEY, parse_decrypt, run_decrypt },
};

const struct kms_method_slice kms_api_derive = { "derive", derive_methods, ELEMENTSOF(derive_methods) };
