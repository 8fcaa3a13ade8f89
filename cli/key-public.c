/* kmsctl key public NAME [--version N] [--der] [--out FILE]: GetPublicKey,
 * written as PEM ("-----BEGIN PUBLIC KEY-----") or DER
 * SubjectPublicKeyInfo. */
#include <stdio.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "bus.h"
#include "io.h"
#include "kmsctl.h"

struct public_args {
        uint32_t version; /* 0: primary */
        bool der;
        const char *out;
};

static int handle_option(int opt, const char *arg, void *userdata)
{
        struct public_args *a = userdata;

        switch (opt) {
        case 'v': return kmsctl_parse_version(arg, &a->version);
        case 'd': a->der = true; return 0;
        case 'o': a->out = arg; return 0;
        default: return -EINVAL;
        }
}

/* Write spki to path as DER or PEM, after checking that it is exactly one
 * SubjectPublicKeyInfo. Returns 0 or a negative errno (printed). */
static int write_spki(const char *path, const uint8_t *spki, size_t len, bool der)
{
        const unsigned char *p = spki;
        EVP_PKEY *pkey;
        BIO *bio = NULL;
        char *pem;
        long pem_len;
        int r = -EBADMSG;

        pkey = d2i_PUBKEY(NULL, &p, (long)len);
        if (!pkey || p != spki + len) {
                fprintf(stderr, "kmsctl: kmsd sent a public key that is not a SubjectPublicKeyInfo\n");
                goto out;
        }
        if (der) {
                r = kmsctl_write_file(path, spki, len, true);
                goto out;
        }
        bio = BIO_new(BIO_s_mem());
        if (!bio || PEM_write_bio_PUBKEY(bio, pkey) != 1) {
                fprintf(stderr, "kmsctl: cannot encode the public key as PEM\n");
                r = -ENOMEM;
                goto out;
        }
        pem_len = BIO_get_mem_data(bio, &pem);
        r = kmsctl_write_file(path, pem, (size_t)pem_len, false);
out:
        BIO_free(bio);
        EVP_PKEY_free(pkey);
        return r;
}

int kmsctl_key_public_main(const struct kmsctl_command *cmd, int argc, char **argv)
{
        static const struct option options[] = {
                {"version", required_argument, NULL, 'v'},
                {"der", no_argument, NULL, 'd'},
                {"out", required_argument, NULL, 'o'},
                {},
        };
        struct public_args a = {};
        _cleanup_(dbus_message_unrefp) DBusMessage *m = NULL, *reply = NULL;
        DBusMessageIter it;
        const uint8_t *spki;
        int spki_len;
        uint32_t used;
        char *name;
        int r;

        r = kmsctl_parse_key_args(cmd, argc, argv, options, handle_option, &a, &name);
        if (r != KMSCTL_CONTINUE)
                return r;

        m = kmsctl_bus_new_call("GetPublicKey", &it);
        if (!m || kmsctl_append_string(&it, name) < 0 || kmsctl_append_u32(&it, a.version) < 0)
                return kmsctl_log_oom();
        r = kmsctl_bus_call(m, "ayu", NULL, &reply);
        if (r != KMS_EXIT_OK)
                return r;
        if (!dbus_message_get_args(reply, NULL, DBUS_TYPE_ARRAY, DBUS_TYPE_BYTE, &spki, &spki_len, DBUS_TYPE_UINT32,
                                   &used, DBUS_TYPE_INVALID))
                return kmsctl_log_oom();

        return write_spki(a.out, spki, (size_t)spki_len, a.der) < 0 ? KMS_EXIT_FAILURE : KMS_EXIT_OK;
}
