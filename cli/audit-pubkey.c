/* kmsctl audit pubkey [--all] [--out FILE]: GetAuditKeys, the public keys
 * that verify the audit checkpoints, as PEM: the newest, or all of them
 * oldest first (a file audit verify --pubkey takes as it is). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "audit.h"
#include "bus.h"
#include "io.h"
#include "kmsctl.h"

struct pubkey_args {
        bool all;
        const char *out;
};

static int handle_option(int opt, const char *arg, void *userdata)
{
        struct pubkey_args *a = userdata;

        switch (opt) {
        case 'a': a->all = true; return 0;
        case 'o': a->out = arg; return 0;
        default: return -EINVAL;
        }
}

/* Append the key at element (an "ay" of GetAuditKeys' reply, a DER
 * SubjectPublicKeyInfo) to bio as PEM, after checking that it is exactly
 * one. Returns 0 or -EBADMSG (printed). */
static int append_pem(BIO *bio, DBusMessageIter *element)
{
        DBusMessageIter bytes;
        const unsigned char *spki, *p;
        EVP_PKEY *pk;
        int len, r = 0;

        dbus_message_iter_recurse(element, &bytes);
        dbus_message_iter_get_fixed_array(&bytes, &spki, &len);
        p = spki;

        pk = d2i_PUBKEY(NULL, &p, (long)len);
        if (!pk || p != spki + len) {
                fprintf(stderr, "kmsctl: kmsd sent an audit key that is not a SubjectPublicKeyInfo\n");
                r = -EBADMSG;
        } else if (PEM_write_bio_PUBKEY(bio, pk) != 1) {
                fprintf(stderr, "kmsctl: cannot encode the audit key as PEM\n");
                r = -ENOMEM;
        }
        EVP_PKEY_free(pk);
        ERR_clear_error();
        return r;
}

int kmsctl_audit_pubkey_main(const struct kmsctl_command *cmd, int argc, char **argv)
{
        static const struct option options[] = {
                {"all", no_argument, NULL, 'a'},
                {"out", required_argument, NULL, 'o'},
                {},
        };
        struct pubkey_args a = {0};
        _cleanup_(dbus_message_unrefp) DBusMessage *m = NULL, *reply = NULL;
        DBusMessageIter it, keys, newest;
        BIO *bio = NULL;
        char *pem;
        long pem_len;
        size_t n = 0;
        int r;

        r = kmsctl_parse_args(cmd, argc, argv, options, handle_option, &a, 0, NULL);
        if (r != KMSCTL_CONTINUE)
                return r;
        m = kmsctl_bus_new_call("GetAuditKeys", &it);
        if (!m)
                return kmsctl_log_oom();
        r = kmsctl_bus_call(m, "aay", kmsctl_audit_hints, &reply);
        if (r != KMS_EXIT_OK)
                return r;
        dbus_message_iter_init(reply, &it);
        if (kmsctl_array_open(&it, "ay", &keys) < 0)
                return KMS_EXIT_FAILURE;
        bio = BIO_new(BIO_s_mem());
        if (!bio)
                return kmsctl_log_oom();
        for (; dbus_message_iter_get_arg_type(&keys) == DBUS_TYPE_ARRAY; dbus_message_iter_next(&keys)) {
                newest = keys;
                n++;
                if (a.all && append_pem(bio, &keys) < 0) {
                        r = KMS_EXIT_FAILURE;
                        goto out;
                }
        }
        if (n == 0) {
                fprintf(stderr, "kmsctl: kmsd has no audit key yet\n");
                r = KMS_EXIT_FAILURE;
                goto out;
        }
        if (!a.all && append_pem(bio, &newest) < 0) {
                r = KMS_EXIT_FAILURE;
                goto out;
        }
        pem_len = BIO_get_mem_data(bio, &pem);
        r = kmsctl_write_file(a.out, pem, (size_t)pem_len, false) < 0 ? KMS_EXIT_FAILURE : KMS_EXIT_OK;
out:
        BIO_free(bio);
        return r;
}
