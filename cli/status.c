/* kmsctl status [--json]: GetStatus. */
#include <inttypes.h>
#include <stdio.h>

#include "bus.h"
#include "duration.h"
#include "json.h"
#include "kmsctl.h"

struct status {
        const char *version, *backend, *token_label, *token_serial, *token_manufacturer, *token_model;
        uint32_t keys, workers, max_message_bytes, pending;
        uint64_t uptime;
        /* the TPM, when kmsd has one */
        const char *tpm_label, *tpm_manufacturer, *tpm_model, *tpm_firmware, *tpm_why;
        uint32_t tpm_free, tpm_max;
        dbus_bool_t tpm_available;
        bool have_tpm;
};

/* "1 MiB" when it is a whole number of KiB or MiB, else "". */
static const char *format_size(uint32_t n, char *buf, size_t size)
{
        if (n >= 1024u * 1024u && n % (1024u * 1024u) == 0)
                snprintf(buf, size, " (%" PRIu32 " MiB)", n / (1024u * 1024u));
        else if (n >= 1024u && n % 1024u == 0)
                snprintf(buf, size, " (%" PRIu32 " KiB)", n / 1024u);
        else
                buf[0] = '\0';
        return buf;
}

static void print_json(const struct status *s)
{
        struct kmsctl_json j;

        kmsctl_json_init(&j, stdout);
        kmsctl_json_begin_object(&j);
        kmsctl_json_field_string(&j, "version", s->version);
        kmsctl_json_field_string(&j, "backend", s->backend);
        kmsctl_json_field_string(&j, "token_label", s->token_label);
        kmsctl_json_field_string(&j, "token_serial", s->token_serial);
        kmsctl_json_field_string(&j, "token_manufacturer", s->token_manufacturer);
        kmsctl_json_field_string(&j, "token_model", s->token_model);
        kmsctl_json_field_uint(&j, "keys", s->keys);
        kmsctl_json_field_uint(&j, "uptime", s->uptime);
        kmsctl_json_field_uint(&j, "workers", s->workers);
        kmsctl_json_field_uint(&j, "pending", s->pending);
        kmsctl_json_field_uint(&j, "max_message_bytes", s->max_message_bytes);
        if (s->have_tpm) {
                kmsctl_json_key(&j, "tpm");
                kmsctl_json_begin_object(&j);
                kmsctl_json_field_string(&j, "tcti", s->tpm_label);
                kmsctl_json_field_bool(&j, "available", s->tpm_available);
                kmsctl_json_field_string(&j, "unavailable_why", s->tpm_why);
                kmsctl_json_field_string(&j, "manufacturer", s->tpm_manufacturer);
                kmsctl_json_field_string(&j, "model", s->tpm_model);
                kmsctl_json_field_string(&j, "firmware", s->tpm_firmware);
                kmsctl_json_field_uint(&j, "transient_free", s->tpm_free);
                kmsctl_json_field_uint(&j, "transient_max", s->tpm_max);
                kmsctl_json_end_object(&j);
        }
        kmsctl_json_end_object(&j);
}

static void print_text(const struct status *s)
{
        char uptime[KMSCTL_DURATION_MAX + 16], size[32];

        printf("Version:            %s\n"
               "Backend:            %s\n"
               "Token label:        %s\n"
               "Token serial:       %s\n"
               "Token manufacturer: %s\n"
               "Token model:        %s\n"
               "Keys:               %" PRIu32 "\n"
               "Uptime:             %s\n"
               "Workers:            %" PRIu32 "\n"
               "Pending:            %" PRIu32 "\n"
               "Max message bytes:  %" PRIu32 "%s\n",
               s->version, s->backend, s->token_label, s->token_serial, s->token_manufacturer, s->token_model, s->keys,
               kmsctl_format_duration_long(s->uptime, uptime, sizeof(uptime)), s->workers, s->pending,
               s->max_message_bytes, format_size(s->max_message_bytes, size, sizeof(size)));
        if (s->have_tpm) {
                if (s->tpm_available)
                        printf("TPM:                %s, %s, firmware %s (%s)\n"
                               "TPM transient slots: %" PRIu32 " free of %" PRIu32 "\n",
                               s->tpm_manufacturer, s->tpm_model, s->tpm_firmware, s->tpm_label, s->tpm_free,
                               s->tpm_max);
                else
                        printf("TPM:                unavailable (%s): %s\n", s->tpm_label, s->tpm_why);
        }
}

int kmsctl_status_main(const struct kmsctl_command *cmd, int argc, char **argv)
{
        static const struct option options[] = {
                {"json", no_argument, NULL, 'j'},
                {},
        };
        _cleanup_(dbus_message_unrefp) DBusMessage *m = NULL, *reply = NULL;
        struct status s = {};
        struct kmsctl_dict_field fields[] = {
                {"version", "s", &s.version, true},
                {"backend", "s", &s.backend, true},
                {"token_label", "s", &s.token_label, true},
                {"token_serial", "s", &s.token_serial, true},
                {"token_manufacturer", "s", &s.token_manufacturer, true},
                {"token_model", "s", &s.token_model, true},
                {"keys", "u", &s.keys, true},
                {"uptime", "t", &s.uptime, true},
                {"workers", "u", &s.workers, true},
                {"max_message_bytes", "u", &s.max_message_bytes, true},
                {"pending", "u", &s.pending, true},
                {"tpm_label", "s", &s.tpm_label, false},
                {"tpm_manufacturer", "s", &s.tpm_manufacturer, false},
                {"tpm_model", "s", &s.tpm_model, false},
                {"tpm_firmware", "s", &s.tpm_firmware, false},
                {"tpm_transient_free", "u", &s.tpm_free, false},
                {"tpm_transient_max", "u", &s.tpm_max, false},
                {"tpm_available", "b", &s.tpm_available, false},
                {"tpm_unavailable_why", "s", &s.tpm_why, false},
        };
        DBusMessageIter it;
        bool json = false;
        int r;

        r = kmsctl_parse_args(cmd, argc, argv, options, kmsctl_json_option, &json, 0, NULL);
        if (r != KMSCTL_CONTINUE)
                return r;

        m = kmsctl_bus_new_call("GetStatus", &it);
        if (!m)
                return kmsctl_log_oom();
        r = kmsctl_bus_call(m, "a{sv}", NULL, &reply);
        if (r != KMS_EXIT_OK)
                return r;
        dbus_message_iter_init(reply, &it);
        if (kmsctl_dict_read(&it, fields, ELEMENTSOF(fields)) < 0)
                return KMS_EXIT_FAILURE;
        s.have_tpm = fields[ELEMENTSOF(fields) - 2].found;
        if (json)
                print_json(&s);
        else
                print_text(&s);
        return KMS_EXIT_OK;
}
