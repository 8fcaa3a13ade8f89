/* kmsctl status [--json]: GetStatus. */
#include <inttypes.h>
#include <stdio.h>

#include "bus.h"
#include "json.h"
#include "kmsctl.h"

struct status {
        const char *version, *backend, *token_label, *token_serial, *token_manufacturer, *token_model;
        uint32_t keys, workers, max_message_bytes, pending;
        uint64_t uptime;
};

static int handle_option(int opt, const char *arg, void *userdata)
{
        bool *json = userdata;

        if (opt != 'j')
                return -EINVAL;
        *json = true;
        return 0;
}

/* "3d 4h 5min 6s", leaving out leading zero units. */
static const char *format_duration(uint64_t s, char *buf, size_t size)
{
        uint64_t d = s / 86400, h = s / 3600 % 24, m = s / 60 % 60, sec = s % 60;

        if (d)
                snprintf(buf, size, "%" PRIu64 "d %" PRIu64 "h %" PRIu64 "min %" PRIu64 "s", d, h, m, sec);
        else if (h)
                snprintf(buf, size, "%" PRIu64 "h %" PRIu64 "min %" PRIu64 "s", h, m, sec);
        else if (m)
                snprintf(buf, size, "%" PRIu64 "min %" PRIu64 "s", m, sec);
        else
                snprintf(buf, size, "%" PRIu64 "s", sec);
        return buf;
}

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
        kmsctl_json_key(&j, "version");
        kmsctl_json_string(&j, s->version);
        kmsctl_json_key(&j, "backend");
        kmsctl_json_string(&j, s->backend);
        kmsctl_json_key(&j, "token_label");
        kmsctl_json_string(&j, s->token_label);
        kmsctl_json_key(&j, "token_serial");
        kmsctl_json_string(&j, s->token_serial);
        kmsctl_json_key(&j, "token_manufacturer");
        kmsctl_json_string(&j, s->token_manufacturer);
        kmsctl_json_key(&j, "token_model");
        kmsctl_json_string(&j, s->token_model);
        kmsctl_json_key(&j, "keys");
        kmsctl_json_uint(&j, s->keys);
        kmsctl_json_key(&j, "uptime");
        kmsctl_json_uint(&j, s->uptime);
        kmsctl_json_key(&j, "workers");
        kmsctl_json_uint(&j, s->workers);
        kmsctl_json_key(&j, "pending");
        kmsctl_json_uint(&j, s->pending);
        kmsctl_json_key(&j, "max_message_bytes");
        kmsctl_json_uint(&j, s->max_message_bytes);
        kmsctl_json_end_object(&j);
}

static void print_text(const struct status *s)
{
        char uptime[64], size[32];

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
               format_duration(s->uptime, uptime, sizeof(uptime)), s->workers, s->pending, s->max_message_bytes,
               format_size(s->max_message_bytes, size, sizeof(size)));
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
        };
        DBusMessageIter it;
        bool json = false;
        int r;

        r = kmsctl_parse_args(cmd, argc, argv, options, handle_option, &json, 0, NULL);
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
        if (json)
                print_json(&s);
        else
                print_text(&s);
        return KMS_EXIT_OK;
}
