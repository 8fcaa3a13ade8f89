/* kmsctl decrypt NAME --in FILE|- --out FILE [--version N] [--json]:
 * Decrypt. RSA-OAEP with SHA-256 (MGF1-SHA-256, no label) inside the
 * token, as `openssl pkeyutl -encrypt -pkeyopt rsa_padding_mode:oaep
 * -pkeyopt rsa_oaep_md:sha256` wraps; the plaintext goes to a 0600 file
 * and is wiped here. */
#include <stdio.h>
#include <string.h>

#include "bus.h"
#include "io.h"
#include "kms-bus.h"
#include "kmsctl.h"

/* An RSA-4096 ciphertext is 512 bytes; a file far bigger is not one. */
#define DECRYPT_MAX_CIPHERTEXT_BYTES (64u * 1024u)

struct decrypt_args {
        const char *in;
        const char *out;
        bool has_version;
        uint32_t version;
        bool json;
};

static int handle_option(int opt, const char *arg, void *userdata)
{
        struct decrypt_args *a = userdata;

        switch (opt) {
        case 'i': a->in = arg; return 0;
        case 'o': a->out = arg; return 0;
        case 'v': a->has_version = true; return kmsctl_parse_version(arg, &a->version);
        case 'j': a->json = true; return 0;
        default: return -EINVAL;
        }
}

static const char *const decrypt_hints[] = {
        KMS_ERROR_INTEGRITY,
        "the ciphertext was not made with this key version's public key (RSA-OAEP, SHA-256), or it was "
        "changed; --version N picks an older version.",
        NULL,
};

int kmsctl_decrypt_main(const struct kmsctl_command *cmd, int argc, char **argv)
{
        static const struct option options[] = {
                {"in", required_argument, NULL, 'i'},
                {"out", required_argument, NULL, 'o'},
                {"version", required_argument, NULL, 'v'},
                {"json", no_argument, NULL, 'j'},
                {},
        };
        struct decrypt_args a = {};
        _cleanup_(dbus_message_unrefp) DBusMessage *m = NULL, *reply = NULL;
        _cleanup_(freep) uint8_t *data = NULL;
        size_t data_len = 0;
        DBusMessageIter it;
        char *name;
        int r;

        r = kmsctl_parse_key_args(cmd, argc, argv, options, handle_option, &a, &name);
        if (r != KMSCTL_CONTINUE)
                return r;
        if (!a.in)
                return kmsctl_usage_error(cmd, "--in FILE is required ('-' reads standard input)");
        if (!a.out || strcmp(a.out, "-") == 0)
                return kmsctl_usage_error(cmd, "--out FILE is required: the plaintext goes to a file only (mode 0600)");
        if (kmsctl_read_file(a.in, DECRYPT_MAX_CIPHERTEXT_BYTES, &data, &data_len) < 0)
                return KMS_EXIT_FAILURE;

        const struct kmsctl_bus_option opts[] = {
                {.key = "version", .type = DBUS_TYPE_UINT32, .set = a.has_version, .u = a.version},
        };
        m = kmsctl_bus_new_call("Decrypt", &it);
        if (!m || kmsctl_append_string(&it, name) < 0 || kmsctl_append_bytes(&it, data, data_len) < 0 ||
            kmsctl_append_options(&it, opts, ELEMENTSOF(opts)) < 0)
                return kmsctl_log_oom();
        r = kmsctl_bus_call(m, "ayu", decrypt_hints, &reply);
        if (r != KMS_EXIT_OK)
                return r;
        return kmsctl_secret_reply_finish(reply, name, a.out, a.json, "plaintext_file", "decrypted");
}
