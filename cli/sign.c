/* kmsctl sign NAME --in FILE|- --out FILE|- [--hash H] [--padding P]
 * [--prehash] [--json]: Sign, or SignDigest with --prehash (kmsctl hashes
 * the input itself, streaming, so its size is not limited). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "bus.h"
#include "io.h"
#include "json.h"
#include "key.h"
#include "kms-bus.h"
#include "kmsctl.h"

struct sign_args {
        const char *in;
        const char *out;
        bool has_hash;
        enum kms_hash hash;
        bool has_padding;
        enum kms_padding padding;
        bool prehash;
        bool json;
};

static int handle_option(int opt, const char *arg, void *userdata)
{
        struct sign_args *a = userdata;

        switch (opt) {
        case 'i': a->in = arg; return 0;
        case 'o': a->out = arg; return 0;
        case 'H': a->has_hash = true; return kmsctl_parse_hash(arg, &a->hash);
        case 'p': a->has_padding = true; return kmsctl_parse_padding(arg, &a->padding);
        case 'P': a->prehash = true; return 0;
        case 'j': a->json = true; return 0;
        default: return -EINVAL;
        }
}

#define PREHASH_HINT "add --prehash to sign a digest of it instead"

static const char *const sign_hints[] = {
        KMS_ERROR_LIMIT_EXCEEDED,
        "the input is larger than kmsd's max_message_bytes (see kmsctl status); " PREHASH_HINT ".",
        "org.freedesktop.DBus.Error.LimitsExceeded",
        "the input is larger than the bus allows in one message; " PREHASH_HINT ".",
        NULL,
};

/* The hash kmsd uses for name when none is given: the key's default. */
static int default_hash(const char *name, enum kms_hash *ret)
{
        _cleanup_(dbus_message_unrefp) DBusMessage *reply = NULL;
        enum kms_algorithm alg;
        struct kmsctl_key k;
        int r;

        r = kmsctl_key_describe(name, &reply, &k);
        if (r != KMS_EXIT_OK)
                return r;
        alg = kms_algorithm_from_string(k.algorithm);
        if (alg == KMS_ALG_INVALID) {
                fprintf(stderr, "kmsctl: key '%s' has algorithm '%s', which kmsctl does not know; pass --hash\n", name,
                        k.algorithm);
                r = KMS_EXIT_FAILURE;
        } else
                *ret = kms_algorithm_default_hash(alg);
        kmsctl_key_done(&k);
        return r;
}

/* Build the Sign or SignDigest call: the data or digest, and the options. */
static DBusMessage *new_sign_call(const char *name, const struct sign_args *a, const uint8_t *data, size_t len)
{
        const struct kmsctl_bus_option opts[] = {
                {.key = "hash", .type = DBUS_TYPE_STRING, .set = a->has_hash, .s = kms_hash_to_string(a->hash)},
                {.key = "padding",
                 .type = DBUS_TYPE_STRING,
                 .set = a->has_padding,
                 .s = kms_padding_to_string(a->padding)},
        };
        DBusMessage *m;
        DBusMessageIter it;

        m = kmsctl_bus_new_call(a->prehash ? "SignDigest" : "Sign", &it);
        if (m && (kmsctl_append_string(&it, name) < 0 || kmsctl_append_bytes(&it, data, len) < 0 ||
                  kmsctl_append_options(&it, opts, ELEMENTSOF(opts)) < 0)) {
                dbus_message_unref(m);
                m = NULL;
        }
        return m;
}

int kmsctl_sign_main(const struct kmsctl_command *cmd, int argc, char **argv)
{
        static const struct option options[] = {
                {"in", required_argument, NULL, 'i'},
                {"out", required_argument, NULL, 'o'},
                {"hash", required_argument, NULL, 'H'},
                {"padding", required_argument, NULL, 'p'},
                {"prehash", no_argument, NULL, 'P'},
                {"json", no_argument, NULL, 'j'},
                {},
        };
        struct sign_args a = {.hash = KMS_HASH_INVALID, .padding = KMS_PAD_INVALID};
        _cleanup_(dbus_message_unrefp) DBusMessage *m = NULL, *reply = NULL;
        _cleanup_(freep) uint8_t *data = NULL;
        uint8_t digest[64]; /* the longest, sha512 */
        const uint8_t *sig;
        size_t len = 0;
        uint32_t used;
        int sig_len;
        char *name;
        int r;

        r = kmsctl_parse_key_args(cmd, argc, argv, options, handle_option, &a, &name);
        if (r != KMSCTL_CONTINUE)
                return r;
        if (!a.in)
                return kmsctl_usage_error(cmd, "--in FILE is required ('-' reads standard input)");
        if (!a.out)
                return kmsctl_usage_error(cmd, "--out FILE is required");
        if (a.json && strcmp(a.out, "-") == 0)
                return kmsctl_usage_error(cmd, "--json prints to standard output, so --out must name a file");

        if (a.prehash) {
                if (!a.has_hash) {
                        r = default_hash(name, &a.hash);
                        if (r != KMS_EXIT_OK)
                                return r;
                        a.has_hash = true; /* the digest's hash must travel with it */
                }
                if (kmsctl_hash_file(a.in, a.hash, digest) < 0)
                        return KMS_EXIT_FAILURE;
                m = new_sign_call(name, &a, digest, kms_hash_length(a.hash));
        } else {
                r = kmsctl_read_file(a.in, KMSCTL_MAX_INPUT_BYTES, &data, &len);
                if (r == -EFBIG)
                        fprintf(stderr, "kmsctl: %s.\n", PREHASH_HINT);
                if (r < 0)
                        return KMS_EXIT_FAILURE;
                m = new_sign_call(name, &a, data, len);
        }
        if (!m)
                return kmsctl_log_oom();
        r = kmsctl_bus_call(m, "ayu", sign_hints, &reply);
        if (r != KMS_EXIT_OK)
                return r;
        if (!dbus_message_get_args(reply, NULL, DBUS_TYPE_ARRAY, DBUS_TYPE_BYTE, &sig, &sig_len, DBUS_TYPE_UINT32,
                                   &used, DBUS_TYPE_INVALID))
                return kmsctl_log_oom();
        if (kmsctl_write_file(a.out, sig, (size_t)sig_len, true) < 0)
                return KMS_EXIT_FAILURE;

        if (a.json) {
                struct kmsctl_json j;

                kmsctl_json_init(&j, stdout);
                kmsctl_json_begin_object(&j);
                kmsctl_json_field_string(&j, "name", name);
                kmsctl_json_field_uint(&j, "version", used);
                kmsctl_json_field_string(&j, "signature_file", a.out);
                kmsctl_json_end_object(&j);
        } else
                fprintf(stderr, "signed with %s version %" PRIu32 "\n", name, used);
        return KMS_EXIT_OK;
}
