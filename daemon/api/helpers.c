/* What several API domains share: readers for the arguments and a{sv}
 * options of a request (bus thread), builders for replies and the key
 * dictionary of docs/dbus-api.md, and the worker-side steps every key
 * operation starts with (load the key, pick its backend, name a store
 * failure). One copy each; see api.h. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "api.h"
#include "kms-error.h"
#include "kms-log.h"

#define fail kms_errorf /* printf into errmsg, return the code */

int kms_arg_name(DBusMessageIter *it, struct kms_request *req, char *errmsg, size_t errlen)
{
        const char *name, *why = NULL;

        dbus_message_iter_get_basic(it, &name);
        dbus_message_iter_next(it);
        if (kms_key_name_check(name, &why) < 0)
                return fail(errmsg, errlen, -EINVAL, "invalid key name '%.140s': %s", name, why);
        snprintf(req->name, sizeof(req->name), "%s", name);
        return 0;
}

int kms_arg_bytes(DBusMessageIter *it, const uint8_t **ret, size_t *ret_len)
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

int kms_opt_expect(DBusMessageIter *var, int type, const char *sig, const char *key, char *errmsg, size_t errlen)
{
        if (dbus_message_iter_get_arg_type(var) != type)
                return fail(errmsg, errlen, -EINVAL, "option '%s' must be of type '%s'", key, sig);
        return 0;
}

int kms_arg_options(DBusMessageIter *it, const char *member, kms_option_fn fn, struct kms_request *req, char *errmsg,
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

int kms_opt_string(DBusMessageIter *var, const char *key, const char **ret, char *errmsg, size_t errlen)
{
        int r = kms_opt_expect(var, DBUS_TYPE_STRING, "s", key, errmsg, errlen);

        if (r >= 0)
                dbus_message_iter_get_basic(var, ret);
        return r;
}

int kms_opt_bool(DBusMessageIter *var, const char *key, bool *ret, char *errmsg, size_t errlen)
{
        dbus_bool_t b = FALSE;
        int r = kms_opt_expect(var, DBUS_TYPE_BOOLEAN, "b", key, errmsg, errlen);

        if (r >= 0) {
                dbus_message_iter_get_basic(var, &b);
                *ret = b;
        }
        return r;
}

int kms_opt_number(DBusMessageIter *var, const char *key, int type, uint64_t min, uint64_t max, uint64_t *ret,
                   char *errmsg, size_t errlen)
{
        dbus_uint64_t v64 = 0;
        dbus_uint32_t v32 = 0;
        int r = kms_opt_expect(var, type, type == DBUS_TYPE_UINT32 ? "u" : "t", key, errmsg, errlen);

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

int kms_opt_u32(DBusMessageIter *var, const char *key, uint32_t min, uint32_t max, uint32_t *ret, char *errmsg,
                size_t errlen)
{
        uint64_t v = 0;
        int r = kms_opt_number(var, key, DBUS_TYPE_UINT32, min, max, &v, errmsg, errlen);

        if (r >= 0)
                *ret = (uint32_t)v;
        return r;
}

int kms_opt_u64(DBusMessageIter *var, const char *key, uint64_t min, uint64_t *ret, char *errmsg, size_t errlen)
{
        return kms_opt_number(var, key, DBUS_TYPE_UINT64, min, (uint64_t)INT64_MAX / 2, ret, errmsg, errlen);
}

int kms_opt_bytes(DBusMessageIter *var, const char *key, size_t max, const uint8_t **ret, size_t *ret_len,
                  char *errmsg, size_t errlen)
{
        int r = kms_opt_expect(var, DBUS_TYPE_ARRAY, "ay", key, errmsg, errlen);

        if (r < 0)
                return r;
        if (dbus_message_iter_get_element_type(var) != DBUS_TYPE_BYTE)
                return fail(errmsg, errlen, -EINVAL, "option '%s' must be of type 'ay'", key);
        kms_arg_bytes(var, ret, ret_len);
        if (*ret_len > max)
                return fail(errmsg, errlen, -EMSGSIZE, "option '%s' is %zu bytes; at most %zu", key, *ret_len, max);
        return 0;
}

int kms_opt_version(struct kms_request *req, const char *key, DBusMessageIter *var, char *errmsg, size_t errlen)
{
        if (strcmp(key, "version") == 0)
                return kms_opt_u32(var, key, 1, UINT32_MAX, &req->version, errmsg, errlen);
        return -ENOENT;
}

int kms_opt_page(struct kms_request *req, const char *key, DBusMessageIter *var, char *errmsg, size_t errlen)
{
        const char *s, *why = NULL;
        int r;

        if (strcmp(key, "limit") == 0)
                return kms_opt_u32(var, key, 1, KMS_LIST_MAX_LIMIT, &req->limit, errmsg, errlen);
        if (strcmp(key, "after") != 0)
                return -ENOENT;
        r = kms_opt_string(var, key, &s, errmsg, errlen);
        if (r < 0)
                return r;
        if (*s && kms_key_name_check(s, &why) < 0)
                return fail(errmsg, errlen, -EINVAL, "option 'after' = '%.140s' is not a key name: %s", s, why);
        snprintf(req->list_after, sizeof(req->list_after), "%s", s);
        return 0;
}

int kms_arg_data_size(struct kms_daemon *d, size_t n, const char *what, char *errmsg, size_t errlen)
{
        if (n > d->cfg.max_message_bytes)
                return fail(errmsg, errlen, -EMSGSIZE,
                            "%s is %zu bytes, more than the limit of %llu (max_message_bytes); sign a digest "
                            "instead (SignDigest, kmsctl sign --prehash)",
                            what, n, (unsigned long long)d->cfg.max_message_bytes);
        return 0;
}

/* (s name, a{sv} options) with the option parser of the method. */
int kms_arg_name_options(struct kms_request *req, kms_option_fn fn, char *errmsg, size_t errlen)
{
        DBusMessageIter it;
        int r;

        dbus_message_iter_init(req->msg, &it);
        r = kms_arg_name(&it, req, errmsg, errlen);
        if (r < 0)
                return r;
        return kms_arg_options(&it, dbus_message_get_member(req->msg), fn, req, errmsg, errlen);
}

int kms_arg_none(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen)
{
        return 0;
}

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
bool kms_dict_add_str(DBusMessageIter *dict, const char *key, const char *v)
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

bool kms_dict_add_bool(DBusMessageIter *dict, const char *key, bool v)
{
        dbus_bool_t b = v;

        return dict_add(dict, key, DBUS_TYPE_BOOLEAN, "b", &b);
}

bool kms_dict_add_hex(DBusMessageIter *dict, const char *key, const uint8_t *p, size_t n)
{
        _cleanup_(freep) char *hex = kms_hex_encode(p, n);

        return hex && kms_dict_add_str(dict, key, hex);
}

bool kms_dict_add_u32(DBusMessageIter *dict, const char *key, uint32_t v)
{
        dbus_uint32_t x = v;
        return dict_add(dict, key, DBUS_TYPE_UINT32, "u", &x);
}

bool kms_dict_add_u64(DBusMessageIter *dict, const char *key, uint64_t v)
{
        dbus_uint64_t x = v;
        return dict_add(dict, key, DBUS_TYPE_UINT64, "t", &x);
}

bool kms_dict_add_i64(DBusMessageIter *dict, const char *key, int64_t v)
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
               kms_dict_add_u32(&dict, "version", v->version) &&
               kms_dict_add_str(&dict, "state", kms_key_state_to_string(v->state)) &&
               kms_dict_add_i64(&dict, "created", v->created) && kms_dict_add_str(&dict, "backend_id", id) &&
               kms_dict_add_str(&dict, "fingerprint", fp) && kms_dict_add_u64(&dict, "uses", v->uses) &&
               kms_dict_add_i64(&dict, "revoked_at", v->revoked_at) &&
               kms_dict_add_str(&dict, "revoke_reason", v->revoke_reason) &&
               kms_dict_add_str(&dict, "revoke_note", v->revoke_note) && dbus_message_iter_close_container(arr, &dict);
}

/* Append the key dictionary (a{sv}) of docs/dbus-api.md. */
bool kms_append_key(DBusMessageIter *it, const struct kms_key_record *k, bool with_versions)
{
        DBusMessageIter dict;
        bool ok;

        ok = dbus_message_iter_open_container(it, DBUS_TYPE_ARRAY, "{sv}", &dict) &&
             kms_dict_add_str(&dict, "name", k->name) &&
             kms_dict_add_str(&dict, "algorithm", kms_algorithm_to_string(k->algorithm)) &&
             kms_dict_add_str(&dict, "backend", k->backend) && kms_dict_add_str(&dict, "state", kms_key_state_to_string(k->state)) &&
             kms_dict_add_u32(&dict, "owner", k->owner) && dict_add_usages(&dict, k->usages) &&
             kms_dict_add_i64(&dict, "created", k->created) && kms_dict_add_u32(&dict, "primary_version", k->primary_version) &&
             kms_dict_add_u32(&dict, "version_count", k->version_count) &&
             kms_dict_add_u64(&dict, "rotate_every", k->rotate_every) &&
             kms_dict_add_u64(&dict, "rotate_after_uses", k->rotate_after_uses) &&
             kms_dict_add_u32(&dict, "keep_versions", k->keep_versions) &&
             kms_dict_add_i64(&dict, "next_rotation",
                          k->rotate_every && k->state == KMS_KEY_ACTIVE && k->primary_created > 0
                                  ? k->primary_created + (int64_t)k->rotate_every
                                  : 0) &&
             kms_dict_add_i64(&dict, "destroy_at", k->destroy_at);
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

bool kms_append_bytes(DBusMessageIter *it, const uint8_t *data, size_t len)
{
        DBusMessageIter sub;

        return dbus_message_iter_open_container(it, DBUS_TYPE_ARRAY, "y", &sub) &&
               dbus_message_iter_append_fixed_array(&sub, DBUS_TYPE_BYTE, &data, (int)len) &&
               dbus_message_iter_close_container(it, &sub);
}

int kms_reply_new(struct kms_request *req, DBusMessage **ret, DBusMessageIter *it)
{
        DBusMessage *m = dbus_message_new_method_return(req->msg);

        if (!m)
                return -ENOMEM;
        dbus_message_iter_init_append(m, it);
        *ret = m;
        return 0;
}

int kms_reply_key(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg, size_t errlen)
{
        struct kms_key_record *k = NULL;
        DBusMessageIter it;
        int r;

        r = kms_store_key_get(w->store, req->name, true, &k);
        if (r < 0)
                return kms_api_store_fail(r, req, errmsg, errlen);
        r = kms_reply_new(req, ret, &it);
        if (r >= 0 && !kms_append_key(&it, k, true))
                r = -ENOMEM;
        kms_key_record_free(k);
        return r;
}

int kms_reply_u32(struct kms_request *req, DBusMessage **ret, uint32_t v)
{
        DBusMessageIter it;
        dbus_uint32_t x = v;
        int r = kms_reply_new(req, ret, &it);

        if (r >= 0 && !dbus_message_iter_append_basic(&it, DBUS_TYPE_UINT32, &x))
                r = -ENOMEM;
        return r;
}

int kms_api_store_fail(int r, const struct kms_request *req, char *errmsg, size_t errlen)
{
        if (r == -ENOENT)
                return fail(errmsg, errlen, r, "no key named '%s'", req->name);
        return fail(errmsg, errlen, r, "the metadata store failed: %s", kms_store_strerror(r));
}

/* Lists show only what the caller may see: the bus thread let the list
 * through, the worker decides per key under the same policy. */
static bool may_read(const char *name, uint32_t owner, void *userdata)
{
        const struct kms_request *req = userdata;

        return kms_policy_decide(req->policy, &req->caller, KMS_OP_READ, name, (uid_t)owner, NULL);
}

int kms_api_list_page(struct kms_worker *w, const struct kms_request *req, bool include_destroyed, bool revoked_only,
                      struct kms_key_page_entry **ret, size_t *ret_n)
{
        struct kms_key_page q = {
                .after = req->list_after,
                .owner = -1,
                .include_destroyed = include_destroyed,
                .revoked_only = revoked_only,
                .want = req->limit,
        };

        /* The cost of a call follows what the caller may see, not how
         * many keys there are: a caller without rights on other owners'
         * keys reads only the index entries of its own. A caller whom a
         * rule lets read some of other owners' keys reads names until
         * its page is full: stopping early would tell it how many keys
         * it may not read lie between (docs/dbus-api.md, ListKeys). */
        switch (kms_policy_reach(req->policy, &req->caller, KMS_OP_READ)) {
        case KMS_REACH_NONE:
                *ret = NULL;
                *ret_n = 0;
                return 0;
        case KMS_REACH_OWN: q.owner = req->caller.uid; break;
        case KMS_REACH_ALL: q.max_rows = req->limit; break;
        case KMS_REACH_SOME: break;
        }
        return kms_store_key_page(w->store, &q, may_read, (void *)req, ret, ret_n);
}

int kms_api_check_usable(const struct kms_key_record *k, char *errmsg, size_t errlen)
{
        if (k->state == KMS_KEY_DESTROYED)
                return fail(errmsg, errlen, KMS_E_DESTROYED, "key '%s' was destroyed", k->name);
        return 0;
}

/* Load key and version (0: primary) with the messages a caller needs. */
int kms_api_load_version(struct kms_worker *w, const struct kms_request *req, uint32_t version, bool want_spki,
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
                return kms_api_store_fail(r, req, errmsg, errlen);
        return 0;
}

/* The backend a key lives in, for this worker. */
int kms_api_key_backend(struct kms_worker *w, const struct kms_key_record *k, const struct kms_backend_ops **ret_ops,
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

void kms_api_wipe_on_free(DBusMessage *m)
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
