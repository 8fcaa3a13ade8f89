/* The audit domain: AuditCheckpoint, ExportAudit and GetAuditKeys
 * (docs/audit.md). The writer is ../audit.c. */
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "kms-error.h"
#include "kms-log.h"

#define fail kms_errorf /* printf into errmsg, return the code */

#define KMS_AUDIT_PAGE_DEFAULT 1000u

#define KMS_AUDIT_PAGE_MAX 5000u

static int option_audit(struct kms_request *req, const char *key, DBusMessageIter *var, char *errmsg, size_t errlen)
{
        int r;

        if (strcmp(key, "from_seq") == 0)
                return kms_opt_number(var, key, DBUS_TYPE_UINT64, 0, INT64_MAX, &req->from_seq, errmsg, errlen);
        if (strcmp(key, "to_seq") == 0)
                return kms_opt_number(var, key, DBUS_TYPE_UINT64, 0, INT64_MAX, &req->to_seq, errmsg, errlen);
        if (strcmp(key, "since") == 0 || strcmp(key, "until") == 0) {
                dbus_int64_t t;

                r = kms_opt_expect(var, DBUS_TYPE_INT64, "x", key, errmsg, errlen);
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

                r = kms_opt_string(var, key, &name, errmsg, errlen);
                if (r < 0)
                        return r;
                if (kms_key_name_check(name, &why) < 0)
                        return fail(errmsg, errlen, -EINVAL, "invalid key name '%.140s': %s", name, why);
                snprintf(req->name, sizeof(req->name), "%s", name);
                return 0;
        }
        if (strcmp(key, "last") == 0 || strcmp(key, "limit") == 0)
                return kms_opt_u32(var, key, 1, KMS_AUDIT_PAGE_MAX, key[1] == 'a' ? &req->last : &req->limit, errmsg,
                                  errlen);
        return -ENOENT;
}

/* The store failed under an audit method: say how (corrupt, disk full,
 * read-only...), not only that it did. */
static int audit_store_fail(int r, char *errmsg, size_t errlen)
{
        return fail(errmsg, errlen, r, "the audit log cannot be read: %s", kms_store_strerror(r));
}

static int parse_export_audit(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen)
{
        DBusMessageIter it;

        dbus_message_iter_init(req->msg, &it);
        return kms_arg_options(&it, "ExportAudit", option_audit, req, errmsg, errlen);
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
        DBusMessageIter dict = DBUS_MESSAGE_ITER_INIT_CLOSED;
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
        ok = kms_dict_add_u64(&dict, "seq", row->seq);
        if (hide)
                /* Left out on purpose: a stub keeps the chain checkable. */
                ok = ok && kms_dict_add_bool(&dict, "redacted", true) && kms_dict_add_hex(&dict, "prev", row->prev, 32) &&
                     kms_audit_body_hash(row, body) >= 0 && kms_dict_add_hex(&dict, "body", body, 32);
        else {
                kms_audit_format_time(row->time_ms, when, sizeof(when));
                ok = ok && kms_dict_add_str(&dict, "time", when) && kms_dict_add_str(&dict, "kind", row->kind) &&
                     kms_dict_add_u32(&dict, "uid", row->uid) && kms_dict_add_u32(&dict, "pid", (uint32_t)row->pid) &&
                     kms_dict_add_str(&dict, "exe", row->exe) && kms_dict_add_str(&dict, "operation", row->operation) &&
                     kms_dict_add_str(&dict, "key", row->key) && kms_dict_add_u32(&dict, "version", row->version) &&
                     kms_dict_add_str(&dict, "result", row->result) && kms_dict_add_str(&dict, "details", row->details) &&
                     kms_dict_add_hex(&dict, "prev", row->prev, 32) &&
                     (row->sig_len == 0 || kms_dict_add_hex(&dict, "signature", row->sig, row->sig_len));
        }
        if (!ok || !dbus_message_iter_close_container(c->arr, &dict)) {
                dbus_message_iter_abandon_container_if_open(c->arr, &dict);
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
        DBusMessageIter it, arr = DBUS_MESSAGE_ITER_INIT_CLOSED;
        struct export_ctx c = { .req = req, .arr = &arr };
        dbus_uint64_t n64;
        int r;

        r = kms_store_audit_head(w->store, &head, hash);
        if (r < 0)
                return audit_store_fail(r, errmsg, errlen);
        if (to == 0 || to > head)
                to = head;
        if (req->last)
                from = to >= req->last ? to - req->last + 1 : 1;
        else if (from == 0 && req->since_ms) {
                r = kms_store_audit_seq_since(w->store, req->since_ms, &from);
                if (r < 0)
                        return audit_store_fail(r, errmsg, errlen);
                if (from == 0)
                        from = to + 1; /* nothing that recent */
        }
        if (from == 0)
                from = 1;
        r = kms_reply_new(req, ret, &it);
        if (r < 0)
                return r;
        if (!dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "a{sv}", &arr)) {
                r = fail(errmsg, errlen, -ENOMEM, "out of memory");
                goto fail;
        }
        if (from <= to && to > 0) {
                r = kms_store_audit_read(w->store, from, to, limit, export_one, &c);
                if (c.oom)
                        r = fail(errmsg, errlen, -ENOMEM, "out of memory");
                else if (r < 0)
                        r = audit_store_fail(r, errmsg, errlen);
                if (r < 0)
                        goto fail;
        }
        if (c.n == limit && c.last_seq < to)
                next = c.last_seq + 1;
        n64 = next;
        if (!dbus_message_iter_close_container(&it, &arr) || !dbus_message_iter_append_basic(&it, DBUS_TYPE_UINT64, &n64)) {
                r = fail(errmsg, errlen, -ENOMEM, "out of memory");
                goto fail;
        }
        snprintf(req->audit_details, sizeof(req->audit_details), "seq %llu..%llu, %zu record(s)",
                 (unsigned long long)from, (unsigned long long)(c.n ? c.last_seq : from), c.n);
        return 0;
fail:
        /* An open container holds the signature libdbus allocated for it,
         * which unreffing the message does not free: abandon it first.
         * The half-built reply is freed here, not left to the caller. */
        dbus_message_iter_abandon_container_if_open(&it, &arr);
        dbus_message_unref(*ret);
        *ret = NULL;
        return r;
}

static int run_audit_checkpoint(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg,
                                size_t errlen)
{
        DBusMessageIter it;
        dbus_uint64_t seq = 0;
        int r = kms_audit_checkpoint(w->daemon, &seq);

        if (r < 0)
                return fail(errmsg, errlen, r, "the audit log cannot be written: no checkpoint");
        r = kms_reply_new(req, ret, &it);
        if (r >= 0 && !dbus_message_iter_append_basic(&it, DBUS_TYPE_UINT64, &seq))
                r = -ENOMEM;
        snprintf(req->audit_details, sizeof(req->audit_details), "checkpoint seq %llu", (unsigned long long)seq);
        return r;
}

static int run_get_audit_keys(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg,
                              size_t errlen)
{
        struct kms_audit_key *keys = NULL;
        DBusMessageIter it, arr = DBUS_MESSAGE_ITER_INIT_CLOSED;
        size_t n = 0;
        int r = kms_store_audit_keys(w->store, &keys, &n);

        if (r < 0)
                return audit_store_fail(r, errmsg, errlen);
        r = kms_reply_new(req, ret, &it);
        if (r >= 0 && !dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "ay", &arr))
                r = -ENOMEM;
        for (size_t i = 0; r >= 0 && i < n; i++)
                if (!kms_append_bytes(&arr, keys[i].spki, keys[i].spki_len))
                        r = -ENOMEM;
        if (r >= 0 && !dbus_message_iter_close_container(&it, &arr))
                r = -ENOMEM;
        free(keys);
        if (r < 0 && *ret) {
                /* As in run_export_audit: abandon, then free the reply. */
                dbus_message_iter_abandon_container_if_open(&it, &arr);
                dbus_message_unref(*ret);
                *ret = NULL;
                return fail(errmsg, errlen, r, "out of memory");
        }
        return r;
}

static const struct kms_method audit_methods[] = {
        { "AuditCheckpoint", "", KMS_OP_AUDIT, KMS_SCOPE_GLOBAL, kms_arg_none, run_audit_checkpoint },
        { "ExportAudit", "a{sv}", KMS_OP_AUDIT, KMS_SCOPE_GLOBAL, parse_export_audit, run_export_audit },
        { "GetAuditKeys", "", KMS_OP_AUDIT, KMS_SCOPE_GLOBAL, kms_arg_none, run_get_audit_keys },
};

const struct kms_method_slice kms_api_audit = { "audit", audit_methods, ELEMENTSOF(audit_methods) };
