/* The sessions domain: OpenSession, Seal, OpenEnvelope, CloseSession and
 * ListSessions (docs/sessions.md). The session table is ../session.c. */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "api.h"
#include "kms-error.h"
#include "kms-log.h"
#include "kms-session-crypto.h"
#include "lifecycle.h"
#include "peer.h"

#define fail kms_errorf /* printf into errmsg, return the code */

static int option_session(struct kms_request *req, const char *key, DBusMessageIter *var, char *errmsg, size_t errlen)
{
        if (strcmp(key, "context") == 0)
                return kms_opt_bytes(var, key, KMS_SESSION_MAX_CONTEXT_BYTES, &req->context, &req->context_len, errmsg,
                                    errlen);
        if (strcmp(key, "max_messages") == 0)
                return kms_opt_number(var, key, DBUS_TYPE_UINT32, 1, KMS_SESSION_MAX_MESSAGES_CEILING, &req->max_messages,
                                  errmsg, errlen);
        if (strcmp(key, "ttl") == 0)
                return kms_opt_number(var, key, DBUS_TYPE_UINT64, 1, KMS_SESSION_MAX_TTL_MS / 1000, &req->ttl, errmsg,
                                  errlen);
        return -ENOENT;
}

static int parse_open_session(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen)
{
        DBusMessageIter it;
        const char *role;
        int r;

        dbus_message_iter_init(req->msg, &it);
        r = kms_arg_name(&it, req, errmsg, errlen);
        if (r < 0)
                return r;
        kms_arg_bytes(&it, &req->peer, &req->peer_len);
        if (req->peer_len == 0 || req->peer_len > KMS_SESSION_MAX_SPKI_BYTES)
                return fail(errmsg, errlen, -EINVAL,
                            "the peer's public key must be one DER SubjectPublicKeyInfo of at most %u bytes, not %zu",
                            KMS_SESSION_MAX_SPKI_BYTES, req->peer_len);
        dbus_message_iter_get_basic(&it, &role);
        dbus_message_iter_next(&it);
        req->role = kms_session_role_from_string(role);
        if (req->role == KMS_SESSION_ROLE_INVALID)
                return fail(errmsg, errlen, -EINVAL, "role '%.32s' is not initiator or responder", role);
        return kms_arg_options(&it, dbus_message_get_member(req->msg), option_session, req, errmsg, errlen);
}

static bool append_session_info(DBusMessageIter *it, const struct kms_session *s,
                                const struct kms_session_crypto_info *info)
{
        DBusMessageIter dict;

        return dbus_message_iter_open_container(it, DBUS_TYPE_ARRAY, "{sv}", &dict) &&
               kms_dict_add_str(&dict, "id", s->id) && kms_dict_add_str(&dict, "key", s->key_name) &&
               kms_dict_add_u32(&dict, "version", s->key_version) &&
               kms_dict_add_str(&dict, "role", kms_session_role_to_string(info->role)) &&
               kms_dict_add_str(&dict, "peer_fingerprint", s->peer_fingerprint) &&
               kms_dict_add_i64(&dict, "created", (int64_t)(info->created_ms / 1000)) &&
               kms_dict_add_i64(&dict, "expires", (int64_t)(info->expires_ms / 1000)) &&
               kms_dict_add_u64(&dict, "max_messages", info->max_messages) && kms_dict_add_u64(&dict, "sent", info->sent) &&
               kms_dict_add_hex(&dict, "binding", info->binding, sizeof(info->binding)) &&
               kms_dict_add_u64(&dict, "received", info->received) && dbus_message_iter_close_container(it, &dict);
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

        r = kms_api_derive_prepare(w, req, &k, &v, point, &point_len, &peer_spki, &peer_spki_len, errmsg, errlen);
        if (r < 0)
                return r;
        r = kms_api_derive_secret(w, req, &k, &v, point, point_len, z, &z_len, errmsg, errlen);
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
                        r = kms_api_store_fail(r, req, errmsg, errlen);
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
        r = kms_reply_new(req, ret, &it);
        if (r >= 0 && !(dbus_message_iter_append_basic(&it, DBUS_TYPE_STRING, &(const char *){ s->id }) &&
                        append_session_info(&it, s, &info)))
                r = -ENOMEM;
        kms_sessions_put(&d->sessions, s);
        return r;
}

static int option_aad(struct kms_request *req, const char *key, DBusMessageIter *var, char *errmsg, size_t errlen)
{
        if (strcmp(key, "aad") == 0)
                return kms_opt_bytes(var, key, KMS_SESSION_MAX_AAD_BYTES, &req->aad, &req->aad_len, errmsg, errlen);
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
                kms_api_wipe_on_free(req->msg);
        dbus_message_iter_init(req->msg, &it);
        r = parse_session_id(&it, req, errmsg, errlen);
        if (r < 0)
                return r;
        kms_arg_bytes(&it, &req->data, &req->data_len);
        req->payload_bytes = req->data_len;
        plain = seal ? req->data_len : req->data_len > KMS_ENVELOPE_OVERHEAD ? req->data_len - KMS_ENVELOPE_OVERHEAD : 0;
        if (plain > d->cfg.max_message_bytes)
                return fail(errmsg, errlen, -EMSGSIZE, "the %s is %zu bytes, more than the limit of %llu (max_message_bytes)",
                            seal ? "plaintext" : "envelope's plaintext", plain, (unsigned long long)d->cfg.max_message_bytes);
        return kms_arg_options(&it, dbus_message_get_member(req->msg), option_aad, req, errmsg, errlen);
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
        (void)kms_key_lock(d, req, s->key_name, false);
        r = kms_store_key_get_version(w->store, s->key_name, s->key_version, false, &k, &v);
        if (r < 0)
                r = kms_api_store_fail(r, req, errmsg, errlen);
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
                r = kms_reply_new(req, ret, &it);
        if (r >= 0 && !kms_append_bytes(&it, out, out_len))
                r = -ENOMEM;
        /* The plaintext of an OpenEnvelope reply (a Seal request's is
         * wiped whatever the outcome: parse_seal_open). */
        if (r >= 0 && !seal)
                kms_api_wipe_on_free(*ret);
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
        return kms_reply_new(req, ret, &it);
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
        return kms_arg_options(&it, "ListSessions", NULL, req, errmsg, errlen);
}

static int run_list_sessions(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg,
                             size_t errlen)
{
        DBusMessageIter it, arr;
        struct list_ctx c = { .arr = &arr };
        int r = kms_reply_new(req, ret, &it);

        if (r < 0 || !dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "a{sv}", &arr))
                return -ENOMEM;
        kms_sessions_foreach(&w->daemon->sessions, req->caller.uid, list_one, &c);
        if (c.oom || !dbus_message_iter_close_container(&it, &arr))
                return -ENOMEM;
        return 0;
}

static const struct kms_method sessions_methods[] = {
        { "OpenSession", "saysa{sv}", KMS_OP_SESSION, KMS_SCOPE_KEY, parse_open_session, run_open_session },
        { "Seal", "saya{sv}", KMS_OP_SESSION, KMS_SCOPE_SESSION, parse_seal_open, run_seal_open },
        { "OpenEnvelope", "saya{sv}", KMS_OP_SESSION, KMS_SCOPE_SESSION, parse_seal_open, run_seal_open },
        { "CloseSession", "s", KMS_OP_SESSION, KMS_SCOPE_OWN_SESSION, parse_close_session, run_close_session },
        { "ListSessions", "a{sv}", KMS_OP_SESSION, KMS_SCOPE_FILTER, parse_list_sessions, run_list_sessions },
};

const struct kms_method_slice kms_api_sessions = { "sessions", sessions_methods, ELEMENTSOF(sessions_methods) };
