/* The lifecycle domain: RotateKey, RevokeKey, ListRevoked, DisableKey,
 * EnableKey, DestroyKey and CancelDestroy, and the internal requests the
 * scheduler and the use counter queue (ScheduledRotate, UsageRotate,
 * ScheduledDestroy). The operations themselves are in ../lifecycle.c. */
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "kms-error.h"
#include "kms-log.h"
#include "lifecycle.h"

#define fail kms_errorf /* printf into errmsg, return the code */

static int option_destroy(struct kms_request *req, const char *key, DBusMessageIter *var, char *errmsg, size_t errlen)
{
        if (strcmp(key, "after") == 0)
                return kms_opt_u64(var, key, 1, &req->after, errmsg, errlen);
        return -ENOENT;
}

static int option_revoke(struct kms_request *req, const char *key, DBusMessageIter *var, char *errmsg, size_t errlen)
{
        const char *s;
        bool b;
        int r;

        if (strcmp(key, "reason") == 0) {
                r = kms_opt_string(var, key, &s, errmsg, errlen);
                if (r < 0)
                        return r;
                req->reason = kms_revoke_reason_from_string(s);
                if (req->reason == KMS_REVOKE_INVALID)
                        return fail(errmsg, errlen, -EINVAL,
                                    "unknown revocation reason '%.32s' (compromised, superseded, retired)", s);
                return 0;
        }
        if (strcmp(key, "note") == 0) {
                r = kms_opt_string(var, key, &s, errmsg, errlen);
                if (r < 0)
                        return r;
                if (strlen(s) > KMS_MAX_REVOKE_NOTE)
                        return fail(errmsg, errlen, -EINVAL, "the note is longer than %u bytes", KMS_MAX_REVOKE_NOTE);
                snprintf(req->note, sizeof(req->note), "%s", s);
                return 0;
        }
        if (strcmp(key, "no_replace") == 0) {
                r = kms_opt_bool(var, key, &b, errmsg, errlen);
                if (r < 0)
                        return r;
                req->no_replace = b;
                return 0;
        }
        if (strcmp(key, "version") == 0)
                return kms_opt_u32(var, key, 0, UINT32_MAX, &req->version, errmsg, errlen);
        return -ENOENT;
}

static int parse_destroy(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen)
{
        DBusMessageIter it;
        int r;

        dbus_message_iter_init(req->msg, &it);
        r = kms_arg_name(&it, req, errmsg, errlen);
        if (r < 0)
                return r;
        return kms_arg_options(&it, "DestroyKey", option_destroy, req, errmsg, errlen);
}

static int parse_no_options(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen)
{
        return kms_arg_name_options(req, NULL, errmsg, errlen);
}

static int parse_revoke(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen)
{
        int r;

        req->reason = KMS_REVOKE_INVALID;
        r = kms_arg_name_options(req, option_revoke, errmsg, errlen);
        if (r >= 0 && req->reason == KMS_REVOKE_INVALID)
                return fail(errmsg, errlen, -EINVAL, "RevokeKey needs the option 'reason' (compromised, superseded, retired)");
        return r;
}

static int parse_list_revoked(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen)
{
        DBusMessageIter it;

        dbus_message_iter_init(req->msg, &it);
        req->limit = KMS_LIST_DEFAULT_LIMIT;
        return kms_arg_options(&it, "ListRevoked", kms_opt_page, req, errmsg, errlen);
}

static int run_destroy(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg, size_t errlen)
{
        DBusMessageIter it;
        char by[64];
        int r;

        if (req->after) {
                int64_t at = kms_now_unix() + (int64_t)req->after;

                snprintf(req->audit_details, sizeof(req->audit_details), "scheduled in %llu s",
                         (unsigned long long)req->after);
                r = kms_lifecycle_schedule_destroy(w, req, at, errmsg, errlen);
        } else {
                snprintf(by, sizeof(by), "at the request of uid %u", (unsigned)req->caller.uid);
                r = kms_lifecycle_destroy(w, req, false, by, errmsg, errlen);
        }
        if (r < 0)
                return r;
        return kms_reply_new(req, ret, &it);
}

static int run_rotate(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg, size_t errlen)
{
        uint32_t version = 0;
        int r;

        r = kms_lifecycle_rotate(w, req, 0, &version, errmsg, errlen);
        if (r < 0)
                return r;
        return kms_reply_u32(req, ret, version);
}

static int run_revoke(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg, size_t errlen)
{
        uint32_t primary = 0;
        int r;

        req->audit_version = req->version;
        snprintf(req->audit_details, sizeof(req->audit_details), "reason=%s", kms_revoke_reason_to_string(req->reason));
        r = kms_lifecycle_revoke(w, req, req->version, !req->no_replace, req->reason, req->note, &primary, errmsg,
                                 errlen);
        if (r < 0)
                return r;
        return kms_reply_u32(req, ret, primary);
}

/* The revoked versions of one page of keys (kms_api_list_page over the
 * keys that have any). A key's revocations are never split between
 * replies: keys are added whole until the reply holds req->limit entries
 * or more, so a reply with fewer is the last. */
static int run_list_revoked(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg,
                            size_t errlen)
{
        _cleanup_(freep) struct kms_key_page_entry *page = NULL;
        DBusMessageIter it, arr;
        size_t n = 0, entries = 0;
        int r;

        r = kms_api_list_page(w, req, true, true, &page, &n);
        if (r < 0)
                return kms_api_store_fail(r, req, errmsg, errlen);
        r = kms_reply_new(req, ret, &it);
        if (r >= 0 && !dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "a{sv}", &arr))
                r = -ENOMEM;
        for (size_t i = 0; r >= 0 && i < n && entries < req->limit; i++) {
                struct kms_key_version_record *v = NULL;
                size_t nv = 0;

                r = kms_store_versions_revoked(w->store, page[i].id, &v, &nv);
                if (r < 0) {
                        r = kms_api_store_fail(r, req, errmsg, errlen);
                        break;
                }
                for (size_t j = 0; r >= 0 && j < nv; j++) {
                        _cleanup_(freep) char *fp = kms_spki_fingerprint(v[j].spki, v[j].spki_len);
                        DBusMessageIter dict;

                        if (!fp || !dbus_message_iter_open_container(&arr, DBUS_TYPE_ARRAY, "{sv}", &dict) ||
                            !kms_dict_add_str(&dict, "name", page[i].name) ||
                            !kms_dict_add_u32(&dict, "version", v[j].version) ||
                            !kms_dict_add_i64(&dict, "revoked_at", v[j].revoked_at) ||
                            !kms_dict_add_str(&dict, "reason", v[j].revoke_reason) ||
                            !kms_dict_add_str(&dict, "note", v[j].revoke_note) ||
                            !kms_dict_add_str(&dict, "fingerprint", fp) ||
                            !dbus_message_iter_close_container(&arr, &dict))
                                r = -ENOMEM;
                        entries++;
                }
                kms_key_versions_free(v, nv);
        }
        if (r >= 0 && !dbus_message_iter_close_container(&it, &arr))
                r = -ENOMEM;
        return r;
}

static int run_enable_disable(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg,
                              size_t errlen)
{
        DBusMessageIter it;
        int r = kms_lifecycle_set_state(w, req, strcmp(req->method->member, "EnableKey") == 0, errmsg, errlen);

        if (r < 0)
                return r;
        return kms_reply_new(req, ret, &it);
}

static int run_cancel_destroy(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg,
                              size_t errlen)
{
        DBusMessageIter it;
        int r = kms_lifecycle_schedule_destroy(w, req, 0, errmsg, errlen);

        if (r < 0)
                return r;
        return kms_reply_new(req, ret, &it);
}

/* Internal requests (msg == NULL) queued by the scheduler and the use
 * counter; they run as kmsd itself. */
static int run_internal_rotate(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg,
                               size_t errlen)
{
        uint32_t version = 0;
        int r = kms_lifecycle_rotate(w, req, req->expected_primary, &version, errmsg, errlen);

        /* The scheduler counts its rotations out and back (scheduler.c). */
        kms_scheduler_done(w->daemon, req->name, r >= 0);
        return r;
}

static int run_internal_destroy(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg,
                                size_t errlen)
{
        int r = kms_lifecycle_destroy(w, req, true, "scheduled destruction", errmsg, errlen);

        kms_scheduler_done(w->daemon, req->name, r >= 0);
        return r;
}

static const struct kms_method lifecycle_methods[] = {
        { "DestroyKey", "sa{sv}", KMS_OP_DESTROY, KMS_SCOPE_KEY, parse_destroy, run_destroy },
        { "RotateKey", "sa{sv}", KMS_OP_ROTATE, KMS_SCOPE_KEY, parse_no_options, run_rotate },
        { "RevokeKey", "sa{sv}", KMS_OP_REVOKE, KMS_SCOPE_KEY, parse_revoke, run_revoke },
        { "ListRevoked", "a{sv}", KMS_OP_READ, KMS_SCOPE_FILTER, parse_list_revoked, run_list_revoked },
        { "DisableKey", "sa{sv}", KMS_OP_DISABLE, KMS_SCOPE_KEY, parse_no_options, run_enable_disable },
        { "EnableKey", "sa{sv}", KMS_OP_DISABLE, KMS_SCOPE_KEY, parse_no_options, run_enable_disable },
        { "CancelDestroy", "sa{sv}", KMS_OP_DESTROY, KMS_SCOPE_KEY, parse_no_options, run_cancel_destroy },
        { "ScheduledRotate", "", KMS_OP_ROTATE, KMS_SCOPE_NONE, NULL, run_internal_rotate },
        { "UsageRotate", "", KMS_OP_ROTATE, KMS_SCOPE_NONE, NULL, run_internal_rotate },
        { "ScheduledDestroy", "", KMS_OP_DESTROY, KMS_SCOPE_NONE, NULL, run_internal_destroy },
};

const struct kms_method_slice kms_api_lifecycle = { "lifecycle", lifecycle_methods, ELEMENTSOF(lifecycle_methods) };
