/* kmsctl session open NAME --peer FILE --role initiator|responder
 * [--max-messages N] [--ttl D] [--context TEXT | --context-hex HEX]
 * [--json]: OpenSession. Prints the new session's id on standard output
 * (its expiry on standard error), or the whole session with --json. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "bus.h"
#include "duration.h"
#include "io.h"
#include "json.h"
#include "key.h"
#include "kms-session-crypto.h"
#include "session.h"

struct open_args {
        const char *peer;
        const char *role;
        bool has_max_messages;
        uint32_t max_messages;
        bool has_ttl;
        uint64_t ttl; /* seconds */
        const char *context_text;
        uint8_t *context_hex; /* owned */
        size_t context_hex_len;
        bool has_context_hex;
        bool json;
};

static int handle_option(int opt, const char *arg, void *userdata)
{
        struct open_args *a = userdata;
        uint64_t v;

        switch (opt) {
        case 'p': a->peer = arg; return 0;
        case 'r':
                if (strcmp(arg, "initiator") != 0 && strcmp(arg, "responder") != 0) {
                        fprintf(stderr, "kmsctl: --role is initiator or responder, not '%s'\n", arg);
                        return -EINVAL;
                }
                a->role = arg;
                return 0;
        case 'm':
                if (kmsctl_parse_number("--max-messages", arg, 1, KMS_SESSION_MAX_MESSAGES_CEILING, &v) < 0)
                        return -EINVAL;
                a->has_max_messages = true;
                a->max_messages = (uint32_t)v;
                return 0;
        case 't':
                if (kmsctl_parse_duration("--ttl", arg, &v) < 0)
                        return -EINVAL;
                if (v > KMS_SESSION_MAX_TTL_MS / 1000) {
                        fprintf(stderr, "kmsctl: --ttl %s is longer than a session may live (30d)\n", arg);
                        return -EINVAL;
                }
                a->has_ttl = true;
                a->ttl = v;
                return 0;
        case 'c':
                if (strlen(arg) > KMS_SESSION_MAX_CONTEXT_BYTES) {
                        fprintf(stderr, "kmsctl: --context is %zu bytes; at most %u\n", strlen(arg),
                                KMS_SESSION_MAX_CONTEXT_BYTES);
                        return -EINVAL;
                }
                a->context_text = arg;
                return 0;
        case 'C':
                free(a->context_hex);
                a->context_hex = NULL;
                if (kms_hex_decode(arg, &a->context_hex, &a->context_hex_len) < 0 ||
                    a->context_hex_len > KMS_SESSION_MAX_CONTEXT_BYTES) {
                        fprintf(stderr, "kmsctl: --context-hex takes up to %u bytes as hex digits, not '%.80s'\n",
                                KMS_SESSION_MAX_CONTEXT_BYTES, arg);
                        return -EINVAL;
                }
                a->has_context_hex = true;
                return 0;
        case 'j': a->json = true; return 0;
        default: return -EINVAL;
        }
}

/* The OpenSession call: name, the peer's SPKI, the role and the options
 * given. */
static DBusMessage *new_open_call(const char *name, const struct open_args *a, const uint8_t *peer, size_t peer_len)
{
        const void *context = a->has_context_hex ? (const void *)a->context_hex : a->context_text;
        size_t context_len = a->has_context_hex ? a->context_hex_len : a->context_text ? strlen(a->context_text) : 0;
        const struct kmsctl_bus_option opts[] = {
                {.key = "context",
                 .type = DBUS_TYPE_BYTE,
                 .set = a->has_context_hex || a->context_text,
                 .bytes = {context, context_len}},
                {.key = "max_messages", .type = DBUS_TYPE_UINT32, .set = a->has_max_messages, .u = a->max_messages},
                {.key = "ttl", .type = DBUS_TYPE_UINT64, .set = a->has_ttl, .t = a->ttl},
        };
        DBusMessageIter it;
        DBusMessage *m = kmsctl_bus_new_call("OpenSession", &it);

        if (m && (kmsctl_append_string(&it, name) < 0 || kmsctl_append_bytes(&it, peer, peer_len) < 0 ||
                  kmsctl_append_string(&it, a->role) < 0 || kmsctl_append_options(&it, opts, ELEMENTSOF(opts)) < 0)) {
                dbus_message_unref(m);
                m = NULL;
        }
        return m;
}

static int print_session(DBusMessage *reply, bool json)
{
        struct kmsctl_session_info s;
        DBusMessageIter it;
        const char *id;
        char t[KMSCTL_TIME_MAX];

        dbus_message_iter_init(reply, &it);
        dbus_message_iter_get_basic(&it, &id);
        dbus_message_iter_next(&it);
        if (kmsctl_session_info_read(&it, &s) < 0)
                return KMS_EXIT_FAILURE;
        if (json) {
                struct kmsctl_json j;

                kmsctl_json_init(&j, stdout);
                kmsctl_session_info_json(&j, &s);
                return KMS_EXIT_OK;
        }
        /* The id alone on standard output, for ID=$(kmsctl session open ...). */
        printf("%s\n", id);
        fprintf(stderr, "session on %s version %" PRIu32 " as %s, expires %s or after %" PRIu64 " messages each way\n",
                s.key, s.version, s.role, kmsctl_format_time(s.expires, t, sizeof(t)), s.max_messages);
        return KMS_EXIT_OK;
}

int kmsctl_session_open_main(const struct kmsctl_command *cmd, int argc, char **argv)
{
        static const struct option options[] = {
                {"peer", required_argument, NULL, 'p'},
                {"role", required_argument, NULL, 'r'},
                {"max-messages", required_argument, NULL, 'm'},
                {"ttl", required_argument, NULL, 't'},
                {"context", required_argument, NULL, 'c'},
                {"context-hex", required_argument, NULL, 'C'},
                {"json", no_argument, NULL, 'j'},
                {},
        };
        struct open_args a = {};
        _cleanup_(dbus_message_unrefp) DBusMessage *m = NULL, *reply = NULL;
        _cleanup_(freep) uint8_t *peer = NULL;
        size_t peer_len = 0;
        char *name;
        int r;

        r = kmsctl_parse_key_args(cmd, argc, argv, options, handle_option, &a, &name);
        if (r != KMSCTL_CONTINUE)
                goto out;
        if (!a.peer)
                r = kmsctl_usage_error(cmd, "--peer FILE is required (the peer's public key, PEM or DER)");
        else if (!a.role)
                r = kmsctl_usage_error(cmd, "--role initiator|responder is required (the two sides take one each)");
        else if (a.context_text && a.has_context_hex)
                r = kmsctl_usage_error(cmd, "--context and --context-hex exclude each other");
        if (r != KMSCTL_CONTINUE)
                goto out;
        r = kmsctl_read_public_key(a.peer, &peer, &peer_len);
        if (r < 0) {
                r = r == -EINVAL ? KMS_EXIT_USAGE : KMS_EXIT_FAILURE;
                goto out;
        }
        m = new_open_call(name, &a, peer, peer_len);
        if (!m) {
                r = kmsctl_log_oom();
                goto out;
        }
        r = kmsctl_bus_call(m, "sa{sv}", kmsctl_session_hints, &reply);
        if (r == KMS_EXIT_OK)
                r = print_session(reply, a.json);
out:
        free(a.context_hex);
        return r;
}
