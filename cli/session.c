/* Shared by the kmsctl session commands; see session.h. */
#include "session.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "bus.h"
#include "io.h"
#include "key.h"
#include "kms-bus.h"
#include "kms-session-crypto.h"
#include "kms-session-id.h"

const char *const kmsctl_session_hints[] = {
        KMS_ERROR_SESSION_NOT_FOUND,
        "sessions live in kmsd's memory only: it was closed, expired a while ago, or kmsd restarted "
        "(kmsctl session list shows yours).",
        KMS_ERROR_SESSION_EXPIRED,
        "the session is past its --ttl or has used its --max-messages; open a new one with a new context.",
        KMS_ERROR_ALREADY_EXISTS,
        "these two keys already had a session in this role with this context, and the same keys must "
        "never be used twice: pass a context never used before (--context or --context-hex, e.g. a "
        "conversation id and a counter).",
        KMS_ERROR_REPLAY,
        "the envelope, or a later one of the same sender, was opened before.",
        KMS_ERROR_STALE,
        "the envelope's timestamp is too old, or too far ahead of this clock.",
        KMS_ERROR_INTEGRITY,
        "the envelope was changed, belongs to another session, or the --aad differs from the sender's.",
        NULL,
};

int kmsctl_session_parse_id_args(const struct kmsctl_command *cmd, int argc, char **argv, const struct option *options,
                                 int (*handle)(int opt, const char *arg, void *userdata), void *userdata, char **ret_id)
{
        int r = kmsctl_parse_args(cmd, argc, argv, options, handle, userdata, 1, ret_id);

        if (r != KMSCTL_CONTINUE)
                return r;
        if (kms_session_id_parse(*ret_id, NULL) < 0)
                return kmsctl_usage_error(
                        cmd, "'%.64s' is not a session id (a lower-case UUID, as session open prints)", *ret_id);
        return KMSCTL_CONTINUE;
}

int kmsctl_session_info_read(DBusMessageIter *it, struct kmsctl_session_info *ret)
{
        struct kmsctl_session_info s = {};
        struct kmsctl_dict_field fields[] = {
                {"id", "s", &s.id, true},
                {"key", "s", &s.key, true},
                {"version", "u", &s.version, true},
                {"role", "s", &s.role, true},
                {"peer_fingerprint", "s", &s.peer_fingerprint, true},
                {"created", "x", &s.created, true},
                {"expires", "x", &s.expires, true},
                {"max_messages", "t", &s.max_messages, true},
                {"sent", "t", &s.sent, true},
                {"received", "t", &s.received, true},
        };
        int r = kmsctl_dict_read(it, fields, ELEMENTSOF(fields));

        if (r < 0)
                return r;
        *ret = s;
        return 0;
}

void kmsctl_session_info_json(struct kmsctl_json *j, const struct kmsctl_session_info *s)
{
        char t[KMSCTL_TIME_MAX];

        kmsctl_json_begin_object(j);
        kmsctl_json_field_string(j, "id", s->id);
        kmsctl_json_field_string(j, "key", s->key);
        kmsctl_json_field_uint(j, "version", s->version);
        kmsctl_json_field_string(j, "role", s->role);
        kmsctl_json_field_string(j, "peer_fingerprint", s->peer_fingerprint);
        kmsctl_json_field_string(j, "created", kmsctl_format_time(s->created, t, sizeof(t)));
        kmsctl_json_field_string(j, "expires", kmsctl_format_time(s->expires, t, sizeof(t)));
        kmsctl_json_field_uint(j, "max_messages", s->max_messages);
        kmsctl_json_field_uint(j, "sent", s->sent);
        kmsctl_json_field_uint(j, "received", s->received);
        kmsctl_json_end_object(j);
}

struct transfer_args {
        const char *in;
        const char *out;
        const char *aad;
};

static int handle_option(int opt, const char *arg, void *userdata)
{
        struct transfer_args *a = userdata;

        switch (opt) {
        case 'i': a->in = arg; return 0;
        case 'o': a->out = arg; return 0;
        case 'a':
                if (strlen(arg) > KMS_SESSION_MAX_AAD_BYTES) {
                        fprintf(stderr, "kmsctl: --aad is %zu bytes; at most %u\n", strlen(arg),
                                KMS_SESSION_MAX_AAD_BYTES);
                        return -EINVAL;
                }
                a->aad = arg;
                return 0;
        default: return -EINVAL;
        }
}

/* Wipe the byte array that is argument index (0-based) of m: the copy of
 * a plaintext that libdbus marshalled into a message kmsctl built. */
static void wipe_message_bytes(DBusMessage *m, int index)
{
        DBusMessageIter it, sub;
        uint8_t *p = NULL;
        int n = 0;

        if (!m || !dbus_message_iter_init(m, &it))
                return;
        for (int i = 0; i < index; i++)
                if (!dbus_message_iter_next(&it))
                        return;
        if (dbus_message_iter_get_arg_type(&it) != DBUS_TYPE_ARRAY ||
            dbus_message_iter_get_element_type(&it) != DBUS_TYPE_BYTE)
                return;
        dbus_message_iter_recurse(&it, &sub);
        dbus_message_iter_get_fixed_array(&sub, &p, &n);
        if (p && n > 0)
                OPENSSL_cleanse(p, (size_t)n);
}

int kmsctl_session_transfer_main(const struct kmsctl_command *cmd, int argc, char **argv, bool seal)
{
        static const struct option options[] = {
                {"in", required_argument, NULL, 'i'},
                {"out", required_argument, NULL, 'o'},
                {"aad", required_argument, NULL, 'a'},
                {},
        };
        struct transfer_args a = {};
        _cleanup_(dbus_message_unrefp) DBusMessage *m = NULL, *reply = NULL;
        uint8_t *data = NULL, *result;
        size_t data_len = 0;
        int result_len, r;
        DBusMessageIter it;
        char *id;

        r = kmsctl_session_parse_id_args(cmd, argc, argv, options, handle_option, &a, &id);
        if (r != KMSCTL_CONTINUE)
                return r;
        if (!a.in)
                return kmsctl_usage_error(cmd, "--in FILE is required ('-' reads standard input)");
        if (!a.out)
                return kmsctl_usage_error(cmd, "--out FILE is required%s",
                                          seal ? " ('-': standard output)" : " (mode 0600)");
        if (!seal && strcmp(a.out, "-") == 0)
                return kmsctl_usage_error(cmd, "--out FILE is required: the plaintext goes to a file only (mode 0600)");
        r = seal ? kmsctl_read_secret_file(a.in, KMSCTL_MAX_INPUT_BYTES, &data, &data_len)
                 : kmsctl_read_file(a.in, KMSCTL_MAX_INPUT_BYTES, &data, &data_len);
        if (r < 0)
                return KMS_EXIT_FAILURE;

        const struct kmsctl_bus_option opts[] = {
                {.key = "aad",
                 .type = DBUS_TYPE_BYTE,
                 .set = a.aad != NULL,
                 .bytes = {a.aad, a.aad ? strlen(a.aad) : 0}},
        };
        m = kmsctl_bus_new_call(seal ? "Seal" : "OpenEnvelope", &it);
        if (!m || kmsctl_append_string(&it, id) < 0 || kmsctl_append_bytes(&it, data, data_len) < 0 ||
            kmsctl_append_options(&it, opts, ELEMENTSOF(opts)) < 0)
                r = kmsctl_log_oom();
        else
                r = kmsctl_bus_call(m, "ay", kmsctl_session_hints, &reply);
        if (seal) {
                kms_freezero(data, data_len);
                wipe_message_bytes(m, 1);
        } else
                free(data);
        if (r != KMS_EXIT_OK)
                return r;
        if (!dbus_message_get_args(reply, NULL, DBUS_TYPE_ARRAY, DBUS_TYPE_BYTE, &result, &result_len,
                                   DBUS_TYPE_INVALID))
                return kmsctl_log_oom();
        if (seal)
                r = kmsctl_write_file(a.out, result, (size_t)result_len, true);
        else
                r = kmsctl_write_secret_file(a.out, result, (size_t)result_len); /* and wiped in the reply */
        if (r < 0)
                return KMS_EXIT_FAILURE;
        if (seal)
                fprintf(stderr, "sealed %zu bytes into a %d-byte envelope\n", data_len, result_len);
        else
                fprintf(stderr, "opened a %zu-byte envelope: %d bytes into %s\n", data_len, result_len, a.out);
        return KMS_EXIT_OK;
}
