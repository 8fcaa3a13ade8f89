/* kmsctl key attest NAME (--out FILE | --out-dir DIR) [--nonce HEX]
 * [--version N]: AttestKey. The TPM certifies the key with kmsd's
 * attestation key (TPM2_Certify); what it answers is written so that
 * openssl and a few lines of python can check it without kmsd
 * (docs/tpm.md):
 *   --out FILE  one JSON object: format "kmsd-attestation-1", key,
 *               version, and in lower-case hex nonce, attest (the signed
 *               TPMS_ATTEST), signature (ECDSA-SHA-256, DER), key_name
 *               (0x000b || SHA-256 of key_public), key_public (the key's
 *               TPMT_PUBLIC); ak_pem is the attestation key as PEM.
 *   --out-dir DIR  the same as files: attest.bin, attest.sig, ak.pem,
 *               key.name, key.public, nonce.bin.
 * Without --nonce a random 32-byte nonce is used. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "bus.h"
#include "io.h"
#include "json.h"
#include "kms-backend.h"
#include "kms-util.h"
#include "kmsctl.h"

#define ATTEST_DEFAULT_NONCE_BYTES 32u

struct attest_args {
        const char *out;
        const char *out_dir;
        const char *nonce_hex;
        bool has_version;
        uint32_t version;
};

static int handle_option(int opt, const char *arg, void *userdata)
{
        struct attest_args *a = userdata;

        switch (opt) {
        case 'o': a->out = arg; return 0;
        case 'd': a->out_dir = arg; return 0;
        case 'n': a->nonce_hex = arg; return 0;
        case 'v': a->has_version = true; return kmsctl_parse_version(arg, &a->version);
        default: return -EINVAL;
        }
}

/* One byte array of the reply. */
struct blob {
        const uint8_t *data;
        int len;
};

/* The attestation key's SubjectPublicKeyInfo as PEM, newly allocated
 * (NUL-terminated), or NULL after printing why. */
static char *spki_to_pem(const struct blob *spki)
{
        const unsigned char *p = spki->data;
        EVP_PKEY *pkey = d2i_PUBKEY(NULL, &p, spki->len);
        BIO *bio = NULL;
        char *pem = NULL, *data;
        long len;

        if (!pkey || p != spki->data + spki->len) {
                fprintf(stderr, "kmsctl: kmsd sent an attestation key that is not a SubjectPublicKeyInfo\n");
                goto out;
        }
        bio = BIO_new(BIO_s_mem());
        if (!bio || PEM_write_bio_PUBKEY(bio, pkey) != 1) {
                fprintf(stderr, "kmsctl: cannot encode the attestation key as PEM\n");
                goto out;
        }
        len = BIO_get_mem_data(bio, &data);
        pem = strndup(data, (size_t)len);
        if (!pem)
                kmsctl_log_oom();
out:
        BIO_free(bio);
        EVP_PKEY_free(pkey);
        return pem;
}

static int json_hex(struct kmsctl_json *j, const char *key, const uint8_t *data, size_t len)
{
        _cleanup_(freep) char *hex = kms_hex_encode(data, len);

        if (!hex)
                return -ENOMEM;
        kmsctl_json_field_string(j, key, hex);
        return 0;
}

static int write_json(const char *path, const char *name, uint32_t used, const uint8_t *nonce, size_t nonce_len,
                      const struct blob *attest, const struct blob *sig, const char *ak_pem,
                      const struct blob *key_name, const struct blob *key_public)
{
        _cleanup_(freep) char *buf = NULL;
        size_t len = 0;
        struct kmsctl_json j;
        FILE *f = open_memstream(&buf, &len);
        int r;

        if (!f) {
                kmsctl_log_oom();
                return -ENOMEM;
        }
        kmsctl_json_init(&j, f);
        kmsctl_json_begin_object(&j);
        kmsctl_json_field_string(&j, "format", "kmsd-attestation-1");
        kmsctl_json_field_string(&j, "key", name);
        kmsctl_json_field_uint(&j, "version", used);
        r = json_hex(&j, "nonce", nonce, nonce_len);
        if (r == 0)
                r = json_hex(&j, "attest", attest->data, (size_t)attest->len);
        if (r == 0)
                r = json_hex(&j, "signature", sig->data, (size_t)sig->len);
        if (r == 0)
                kmsctl_json_field_string(&j, "ak_pem", ak_pem);
        if (r == 0)
                r = json_hex(&j, "key_name", key_name->data, (size_t)key_name->len);
        if (r == 0)
                r = json_hex(&j, "key_public", key_public->data, (size_t)key_public->len);
        kmsctl_json_end_object(&j);
        fputc('\n', f);
        if (ferror(f))
                r = -ENOMEM;
        if (fclose(f) != 0)
                r = -ENOMEM;
        if (r < 0) {
                kmsctl_log_oom();
                return r;
        }
        return kmsctl_write_file(path, buf, len, false);
}

/* DIR/file. */
static int write_in_dir(const char *dir, const char *file, const void *data, size_t len, bool binary)
{
        char path[4096];

        if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, file) >= sizeof(path)) {
                fprintf(stderr, "kmsctl: the path %s/%s is too long\n", dir, file);
                return -ENAMETOOLONG;
        }
        return kmsctl_write_file(path, data, len, binary);
}

static int write_dir(const char *dir, const uint8_t *nonce, size_t nonce_len, const struct blob *attest,
                     const struct blob *sig, const char *ak_pem, const struct blob *key_name,
                     const struct blob *key_public)
{
        struct stat st;

        /* An existing directory is used as it is. */
        if (mkdir(dir, 0755) < 0) {
                int e = errno;

                if (e == EEXIST)
                        e = stat(dir, &st) < 0 ? errno : S_ISDIR(st.st_mode) ? 0 : ENOTDIR;
                if (e != 0) {
                        fprintf(stderr, "kmsctl: cannot make the directory %s: %s\n", dir, strerror(e));
                        return -e;
                }
        }
        if (write_in_dir(dir, "attest.bin", attest->data, (size_t)attest->len, true) < 0 ||
            write_in_dir(dir, "attest.sig", sig->data, (size_t)sig->len, true) < 0 ||
            write_in_dir(dir, "ak.pem", ak_pem, strlen(ak_pem), false) < 0 ||
            write_in_dir(dir, "key.name", key_name->data, (size_t)key_name->len, true) < 0 ||
            write_in_dir(dir, "key.public", key_public->data, (size_t)key_public->len, true) < 0 ||
            write_in_dir(dir, "nonce.bin", nonce, nonce_len, true) < 0)
                return -EIO;
        return 0;
}

int kmsctl_key_attest_main(const struct kmsctl_command *cmd, int argc, char **argv)
{
        static const struct option options[] = {
                {"out", required_argument, NULL, 'o'},
                {"out-dir", required_argument, NULL, 'd'},
                {"nonce", required_argument, NULL, 'n'},
                {"version", required_argument, NULL, 'v'},
                {},
        };
        struct attest_args a = {};
        _cleanup_(dbus_message_unrefp) DBusMessage *m = NULL, *reply = NULL;
        _cleanup_(freep) uint8_t *nonce = NULL;
        _cleanup_(freep) char *ak_pem = NULL;
        size_t nonce_len = 0;
        struct blob attest, sig, ak_spki, key_name, key_public;
        DBusMessageIter it;
        uint32_t used;
        char *name;
        int r;

        r = kmsctl_parse_key_args(cmd, argc, argv, options, handle_option, &a, &name);
        if (r != KMSCTL_CONTINUE)
                return r;
        if (!a.out && !a.out_dir)
                return kmsctl_usage_error(cmd, "--out FILE or --out-dir DIR is required");
        if (a.nonce_hex) {
                if (a.nonce_hex[0] == '\0') {
                        nonce = malloc(1);
                        if (!nonce)
                                return kmsctl_log_oom();
                } else if (kms_hex_decode(a.nonce_hex, &nonce, &nonce_len) < 0)
                        return kmsctl_usage_error(cmd, "--nonce '%.80s' is not hex", a.nonce_hex);
                if (nonce_len > KMS_MAX_ATTEST_NONCE_BYTES)
                        return kmsctl_usage_error(cmd, "--nonce is %zu bytes; at most %u are allowed", nonce_len,
                                                  KMS_MAX_ATTEST_NONCE_BYTES);
        } else {
                nonce_len = ATTEST_DEFAULT_NONCE_BYTES;
                nonce = malloc(nonce_len);
                if (!nonce)
                        return kmsctl_log_oom();
                if (RAND_bytes(nonce, (int)nonce_len) != 1) {
                        fprintf(stderr, "kmsctl: cannot make a random nonce\n");
                        return KMS_EXIT_FAILURE;
                }
        }

        const struct kmsctl_bus_option opts[] = {
                {.key = "version", .type = DBUS_TYPE_UINT32, .set = a.has_version, .u = a.version},
        };
        m = kmsctl_bus_new_call("AttestKey", &it);
        if (!m || kmsctl_append_string(&it, name) < 0 || kmsctl_append_bytes(&it, nonce, nonce_len) < 0 ||
            kmsctl_append_options(&it, opts, ELEMENTSOF(opts)) < 0)
                return kmsctl_log_oom();
        r = kmsctl_bus_call(m, "ayayayayayu", NULL, &reply);
        if (r != KMS_EXIT_OK)
                return r;
        if (!dbus_message_get_args(reply, NULL, DBUS_TYPE_ARRAY, DBUS_TYPE_BYTE, &attest.data, &attest.len,
                                   DBUS_TYPE_ARRAY, DBUS_TYPE_BYTE, &sig.data, &sig.len, DBUS_TYPE_ARRAY,
                                   DBUS_TYPE_BYTE, &ak_spki.data, &ak_spki.len, DBUS_TYPE_ARRAY, DBUS_TYPE_BYTE,
                                   &key_name.data, &key_name.len, DBUS_TYPE_ARRAY, DBUS_TYPE_BYTE, &key_public.data,
                                   &key_public.len, DBUS_TYPE_UINT32, &used, DBUS_TYPE_INVALID))
                return kmsctl_log_oom();
        ak_pem = spki_to_pem(&ak_spki);
        if (!ak_pem)
                return KMS_EXIT_FAILURE;

        if (a.out && write_json(a.out, name, used, nonce, nonce_len, &attest, &sig, ak_pem, &key_name, &key_public) < 0)
                return KMS_EXIT_FAILURE;
        if (a.out_dir && write_dir(a.out_dir, nonce, nonce_len, &attest, &sig, ak_pem, &key_name, &key_public) < 0)
                return KMS_EXIT_FAILURE;
        fprintf(stderr, "attested %s version %u (TPM2_Certify, %zu-byte nonce)\n", name, used, nonce_len);
        return KMS_EXIT_OK;
}
