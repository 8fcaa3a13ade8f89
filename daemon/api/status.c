/* The status domain: GetStatus (docs/dbus-api.md). */
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "kms-log.h"

static int run_status(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg, size_t errlen)
{
        struct kms_daemon *d = w->daemon;
        struct kms_backend_info info = { 0 };
        DBusMessageIter it, dict;
        size_t count = 0;
        int r;

        r = kms_store_key_count(w->store, false, &count);
        if (r < 0)
                return kms_api_store_fail(r, req, errmsg, errlen);
        (void)d->backends[0]->ops->info(d->backends[0], &info);
        r = kms_reply_new(req, ret, &it);
        if (r >= 0 &&
            !(dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "{sv}", &dict) &&
              kms_dict_add_str(&dict, "version", KMS_VERSION) && kms_dict_add_str(&dict, "backend", d->backends[0]->ops->name) &&
              kms_dict_add_str(&dict, "token_label", info.label) && kms_dict_add_str(&dict, "token_serial", info.serial) &&
              kms_dict_add_str(&dict, "token_manufacturer", info.manufacturer) &&
              kms_dict_add_str(&dict, "token_model", info.model) && kms_dict_add_u32(&dict, "keys", (uint32_t)count) &&
              kms_dict_add_u64(&dict, "uptime", (kms_now_mono_ms() - d->started_ms) / 1000u) &&
              kms_dict_add_u32(&dict, "workers", d->pool.n_workers) &&
              kms_dict_add_u32(&dict, "max_message_bytes", (uint32_t)d->cfg.max_message_bytes) &&
              kms_dict_add_u32(&dict, "pending", kms_pool_pending(&d->pool))))
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
                if (!(kms_dict_add_str(&dict, k[0], bi.label) && kms_dict_add_str(&dict, k[1], bi.manufacturer) &&
                      kms_dict_add_str(&dict, k[2], bi.model) && kms_dict_add_str(&dict, k[3], bi.serial) &&
                      kms_dict_add_str(&dict, k[4], bi.firmware) && kms_dict_add_u32(&dict, k[5], bi.transient_free) &&
                      kms_dict_add_u32(&dict, k[6], bi.transient_max) && kms_dict_add_bool(&dict, k[7], !bi.unavailable) &&
                      kms_dict_add_str(&dict, k[8], bi.unavailable_why)))
                        r = -ENOMEM;
        }
        if (r >= 0 && !dbus_message_iter_close_container(&it, &dict))
                r = -ENOMEM;
        return r;
}

static const struct kms_method status_methods[] = {
        { "GetStatus", "", KMS_OP_STATUS, KMS_SCOPE_GLOBAL, kms_arg_none, run_status },
};

const struct kms_method_slice kms_api_status = { "status", status_methods, ELEMENTSOF(status_methods) };
