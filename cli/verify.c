/* kmsctl verify NAME --in FILE|- --sig FILE [--version N] [--hash H]
 * [--padding P] [--json]: Verify. Exit status 0 when the signature
 * verifies, 1 when it does not. */
#include <inttypes.h>
#include <stdio.h>

#include "bus.h"
#include "io.h"
#include "json.h"
#include "kms-bus.h"
#include "kmsctl.h"

struct verify_args {
        const char *in;
        const char *sig;
        bool has_version;
        uint32_t version;
        bool has_hash;
        enum kms_hash hash;
        bool has_padding;
        enum kms_padding padding;
        bool json;
};

static int handle_option(int opt, const char *arg, void *userdata)
{
        struct verify_args *a = userdata;

        switch (opt) {
        case 'i': a->in = arg; return 0;
        case 's': a->sig = arg; return 0;
        case 'v': a->has_version = true; return kmsctl_parse_version(arg, &a->version);
        case 'H': a->has_hash = true; return kmsctl_parse_hash(arg, &a->hash);
        case 'p': a->has_padding = true; return kmsctl_parse_padding(arg, &a->padding);
        case 'j': a->json = true; return 0;
        default: return -EINVAL;
        }
}

static const char *const verify_hints[] = {
        KMS_ERROR_LIMIT_EXCEEDED,
        "the input is larger than kmsd's max_message_bytes; verify it locally with the public key: "
        "kmsctl key public NAME --out pub.pem; openssl dgst -sha256 -verify pub.pem -signature SIG FILE",
        NULL,
};

int kmsctl_verify_main(const struct kmsctl_command *cmd, int argc, char **argv)
{
        static const struct option options[] = {
                {"in", required_argument, NULL, 'i'},
                {"sig", required_argument, NULL, 's'},
                {"version", required_argument, NULL, 'v'},
                {"hash", required_argument, NULL, 'H'},
                {"padding", required_argument, NULL, 'p'},
                {"json", no_argument, NULL, 'j'},
                {},
        };
        struct verify_args a = {.hash = KMS_HASH_INVALID, .padding = KMS_PAD_INVALID};
        _cleanup_(dbus_message_unrefp) DBusMessage *m = NULL, *reply = NULL;
        _cleanup_(freep) uint8_t *data = NULL, *sig = NULL;
        size_t data_len = 0, sig_len = 0;
        DBusMessageIter it;
        dbus_bool_t valid;
        uint32_t used;
        char *name;
        int r;

        r = kmsctl_parse_key_args(cmd, argc, argv, options, handle_option, &a, &name);
        if (r != KMSCTL_CONTINUE)
                return r;
        if (!a.in)
                return kmsctl_usage_error(cmd, "--in FILE is required ('-' reads standard input)");
        if (!a.sig)
                return kmsctl_usage_error(cmd, "--sig FILE is required");

        if (kmsctl_read_file(a.sig, KMSCTL_MAX_SIGNATURE_FILE_BYTES, &sig, &sig_len) < 0 ||
            kmsctl_read_file(a.in, KMSCTL_MAX_INPUT_BYTES, &data, &data_len) < 0)
                return KMS_EXIT_FAILURE;

        const struct kmsctl_bus_option opts[] = {
                {.key = "version", .type = DBUS_TYPE_UINT32, .set = a.has_version, .u = a.version},
                {.key = "hash", .type = DBUS_TYPE_STRING, .set = a.has_hash, .s = kms_hash_to_string(a.hash)},
                {.key = "padding",
                 .type = DBUS_TYPE_STRING,
                 .set = a.has_padding,
                 .s = kms_padding_to_string(a.padding)},
        };
        m = kmsctl_bus_new_call("Verify", &it);
        if (!m || kmsctl_append_string(&it, name) < 0 || kmsctl_append_bytes(&it, data, data_len) < 0 ||
            kmsctl_append_bytes(&it, sig, sig_len) < 0 || kmsctl_append_options(&it, opts, ELEMENTSOF(opts)) < 0)
                return kmsctl_log_oom();
        r = kmsctl_bus_call(m, "bu", verify_hints, &reply);
        if (r != KMS_EXIT_OK)
                return r;
        if (!dbus_message_get_args(reply, NULL, DBUS_TYPE_BOOLEAN, &valid, DBUS_TYPE_UINT32, &used, DBUS_TYPE_INVALID))
                return kmsctl_log_oom();

        if (a.json) {
                struct kmsctl_json j;

                kmsctl_json_init(&j, stdout);
                kmsctl_json_begin_object(&j);
                kmsctl_json_field_string(&j, "name", name);
                kmsctl_json_field_uint(&j, "version", used);
                kmsctl_json_field_bool(&j, "valid", valid);
                kmsctl_json_end_object(&j);
        } else if (valid)
                printf("Verified OK (%s version %" PRIu32 ")\n", name, used);
        else
                fprintf(stderr, "Verification FAILURE (%s version %" PRIu32 ")\n", name, used);
        return valid ? KMS_EXIT_OK : KMS_EXIT_FAILURE;
}
