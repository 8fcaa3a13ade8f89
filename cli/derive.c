/* kmsctl derive NAME --peer FILE [--salt HEX] [--info TEXT] [--length N]
 * --out FILE [--json]: Derive. ECDH inside the token between the key's
 * primary version and the peer's public key, then HKDF-SHA256 in kmsd;
 * the derived bytes go to a 0600 file and are wiped here. */
#include <stdio.h>
#include <string.h>

#include "bus.h"
#include "io.h"
#include "kmsctl.h"

/* kmsd's limits (Derive in docs/dbus-api.md): checked here too, so a bad
 * value is a usage error that names the option. */
#define DERIVE_MAX_LENGTH 1024u
#define DERIVE_MAX_SALT 1024u
#define DERIVE_MAX_INFO 1024u

struct derive_args {
        const char *peer;
        const char *out;
        uint8_t *salt; /* owned */
        size_t salt_len;
        bool has_salt;
        const char *info;
        bool has_length;
        uint32_t length;
        bool json;
};

static int handle_option(int opt, const char *arg, void *userdata)
{
        struct derive_args *a = userdata;
        uint64_t v;

        switch (opt) {
        case 'p': a->peer = arg; return 0;
        case 'o': a->out = arg; return 0;
        case 's':
                free(a->salt);
                a->salt = NULL;
                if (kms_hex_decode(arg, &a->salt, &a->salt_len) < 0 || a->salt_len > DERIVE_MAX_SALT) {
                        fprintf(stderr, "kmsctl: --salt takes up to %u bytes as hex digits, not '%.80s'\n",
                                DERIVE_MAX_SALT, arg);
                        return -EINVAL;
                }
                a->has_salt = true;
                return 0;
        case 'I':
                if (strlen(arg) > DERIVE_MAX_INFO) {
                        fprintf(stderr, "kmsctl: --info is %zu bytes; at most %u\n", strlen(arg), DERIVE_MAX_INFO);
                        return -EINVAL;
                }
                a->info = arg;
                return 0;
        case 'l':
                if (kmsctl_parse_number("--length", arg, 1, DERIVE_MAX_LENGTH, &v) < 0)
                        return -EINVAL;
                a->has_length = true;
                a->length = (uint32_t)v;
                return 0;
        case 'j': a->json = true; return 0;
        default: return -EINVAL;
        }
}

/* The Derive call: name, the peer's SPKI, and the options given. */
static DBusMessage *new_derive_call(const char *name, const struct derive_args *a, const uint8_t *peer, size_t peer_len)
{
        const struct kmsctl_bus_option opts[] = {
                {.key = "salt", .type = DBUS_TYPE_BYTE, .set = a->has_salt, .bytes = {a->salt, a->salt_len}},
                {.key = "info",
                 .type = DBUS_TYPE_BYTE,
                 .set = a->info != NULL,
                 .bytes = {a->info, a->info ? strlen(a->info) : 0}},
                {.key = "length", .type = DBUS_TYPE_UINT32, .set = a->has_length, .u = a->length},
        };
        DBusMessageIter it;
        DBusMessage *m = kmsctl_bus_new_call("Derive", &it);

        if (m && (kmsctl_append_string(&it, name) < 0 || kmsctl_append_bytes(&it, peer, peer_len) < 0 ||
                  kmsctl_append_options(&it, opts, ELEMENTSOF(opts)) < 0)) {
                dbus_message_unref(m);
                m = NULL;
        }
        return m;
}

int kmsctl_derive_main(const struct kmsctl_command *cmd, int argc, char **argv)
{
        static const struct option options[] = {
                {"peer", required_argument, NULL, 'p'},
                {"salt", required_argument, NULL, 's'},
                {"info", required_argument, NULL, 'I'},
                {"length", required_argument, NULL, 'l'},
                {"out", required_argument, NULL, 'o'},
                {"json", no_argument, NULL, 'j'},
                {},
        };
        struct derive_args a = {};
        _cleanup_(dbus_message_unrefp) DBusMessage *m = NULL, *reply = NULL;
        _cleanup_(freep) uint8_t *peer = NULL;
        size_t peer_len = 0;
        char *name;
        int r;

        r = kmsctl_parse_key_args(cmd, argc, argv, options, handle_option, &a, &name);
        if (r != KMSCTL_CONTINUE)
                goto out;
        if (!a.peer) {
                r = kmsctl_usage_error(cmd, "--peer FILE is required (the peer's public key, PEM or DER)");
                goto out;
        }
        if (!a.out || strcmp(a.out, "-") == 0) {
                r = kmsctl_usage_error(cmd, "--out FILE is required: the derived bytes go to a file only (mode 0600)");
                goto out;
        }
        r = kmsctl_read_public_key(a.peer, &peer, &peer_len);
        if (r < 0) {
                r = r == -EINVAL ? KMS_EXIT_USAGE : KMS_EXIT_FAILURE;
                goto out;
        }
        m = new_derive_call(name, &a, peer, peer_len);
        if (!m) {
                r = kmsctl_log_oom();
                goto out;
        }
        r = kmsctl_bus_call(m, "ayu", NULL, &reply);
        if (r != KMS_EXIT_OK)
                goto out;
        r = kmsctl_secret_reply_finish(reply, name, a.out, a.json, "secret_file", "derived");
out:
        free(a.salt); /* not secret: the salt is public in HKDF */
        return r;
}
