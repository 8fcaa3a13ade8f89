/* Reading inputs and writing outputs for kmsctl; see io.h. */
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "json.h"
#include "kms-error.h"
#include "kms-util.h"

#define READ_CHUNK (64u * 1024u)

static bool is_stdio(const char *path)
{
        return !path || strcmp(path, "-") == 0;
}

/* Open path for reading ("-": standard input, not to be closed). Returns
 * the fd or a negative errno (printed). */
static int open_input(const char *path)
{
        int fd;

        if (is_stdio(path))
                return STDIN_FILENO;
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                fprintf(stderr, "kmsctl: cannot open '%s': %s\n", path, strerror(errno));
                return -errno;
        }
        return fd;
}

static void close_input(int fd)
{
        if (fd != STDIN_FILENO)
                close(fd);
}

static const char *input_name(const char *path)
{
        return is_stdio(path) ? "standard input" : path;
}

/* read() that retries on EINTR; returns bytes read, 0 at the end, or a
 * negative errno (printed). */
static ssize_t read_some(int fd, const char *path, void *buf, size_t n)
{
        ssize_t k;

        do
                k = read(fd, buf, n);
        while (k < 0 && errno == EINTR);
        if (k < 0) {
                fprintf(stderr, "kmsctl: cannot read %s: %s\n", input_name(path), strerror(errno));
                return -errno;
        }
        return k;
}

static int too_big(const char *path, size_t max)
{
        if (max % (1024u * 1024u) == 0)
                fprintf(stderr, "kmsctl: %s is larger than %zu MiB\n", input_name(path), max / (1024u * 1024u));
        else
                fprintf(stderr, "kmsctl: %s is larger than %zu bytes\n", input_name(path), max);
        return -EFBIG;
}

/* Grow buf from cap to ncap bytes, of which len are used. A secret buffer
 * is copied and the old one wiped, so no stray copy is left in freed
 * memory (realloc() may move it without wiping). Returns the new buffer or
 * NULL (buf is then still valid). */
static uint8_t *grow(uint8_t *buf, size_t len, size_t ncap, bool secret)
{
        uint8_t *p;

        if (!secret)
                return realloc(buf, ncap);
        p = malloc(ncap);
        if (p && buf) {
                memcpy(p, buf, len);
                kms_freezero(buf, len);
        }
        return p;
}

static int read_input(const char *path, size_t max, bool secret, uint8_t **ret, size_t *ret_len)
{
        uint8_t *buf = NULL;
        size_t len = 0, cap = 0;
        struct stat st;
        int fd, r = 0;

        fd = open_input(path);
        if (fd < 0)
                return fd;
        /* Refuse a big regular file before reading any of it. */
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size > max) {
                r = too_big(path, max);
                goto out;
        }
        for (;;) {
                ssize_t k;

                if (len == cap) {
                        /* Room for one byte past max, to tell "exactly max" from "more". */
                        size_t ncap = cap == 0 ? READ_CHUNK : cap * 2;
                        uint8_t *p;

                        if (ncap > max + 1)
                                ncap = max + 1;
                        if (ncap <= cap) {
                                r = too_big(path, max);
                                goto out;
                        }
                        p = grow(buf, len, ncap, secret);
                        if (!p) {
                                fprintf(stderr, "kmsctl: out of memory\n");
                                r = -ENOMEM;
                                goto out;
                        }
                        buf = p;
                        cap = ncap;
                }
                k = read_some(fd, path, buf + len, cap - len);
                if (k < 0) {
                        r = (int)k;
                        goto out;
                }
                if (k == 0)
                        break;
                len += (size_t)k;
                if (len > max) {
                        r = too_big(path, max);
                        goto out;
                }
        }
        if (!buf) { /* empty input: still hand out a buffer */
                buf = malloc(1);
                if (!buf) {
                        r = -ENOMEM;
                        goto out;
                }
        }
        *ret = TAKE_PTR(buf);
        *ret_len = len;
out:
        kms_freezero(buf, len); /* NULL after success */
        close_input(fd);
        return r;
}

int kmsctl_read_file(const char *path, size_t max, uint8_t **ret, size_t *ret_len)
{
        return read_input(path, max, false, ret, ret_len);
}

int kmsctl_read_secret_file(const char *path, size_t max, uint8_t **ret, size_t *ret_len)
{
        return read_input(path, max, true, ret, ret_len);
}

int kmsctl_hash_file(const char *path, enum kms_hash h, uint8_t *ret)
{
        uint8_t buf[READ_CHUNK];
        const EVP_MD *md = EVP_get_digestbyname(kms_hash_to_string(h));
        EVP_MD_CTX *ctx = NULL;
        unsigned n = 0;
        int fd, r = -ENOMEM;

        if (!md)
                return -EINVAL;
        fd = open_input(path);
        if (fd < 0)
                return fd;
        ctx = EVP_MD_CTX_new();
        if (!ctx || EVP_DigestInit_ex(ctx, md, NULL) != 1)
                goto out;
        for (;;) {
                ssize_t k = read_some(fd, path, buf, sizeof(buf));

                if (k < 0) {
                        r = (int)k;
                        goto out;
                }
                if (k == 0)
                        break;
                if (EVP_DigestUpdate(ctx, buf, (size_t)k) != 1)
                        goto out;
        }
        if (EVP_DigestFinal_ex(ctx, ret, &n) != 1 || n != kms_hash_length(h))
                goto out;
        r = 0;
out:
        if (r == -ENOMEM)
                fprintf(stderr, "kmsctl: cannot compute the %s digest of %s\n", kms_hash_to_string(h),
                        input_name(path));
        EVP_MD_CTX_free(ctx);
        close_input(fd);
        return r;
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
        while (len > 0) {
                ssize_t k = write(fd, p, len);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += k;
                len -= (size_t)k;
        }
        return 0;
}

int kmsctl_write_file(const char *path, const void *data, size_t len, bool binary)
{
        struct stat st;
        bool regular;
        int fd, r;

        if (is_stdio(path)) {
                if (binary && isatty(STDOUT_FILENO)) {
                        fprintf(stderr, "kmsctl: refusing to write binary data to a terminal; use --out FILE\n");
                        return -EINVAL;
                }
                fflush(stdout); /* keep order with what stdio already holds */
                r = write_all(STDOUT_FILENO, data, len);
                if (r < 0)
                        fprintf(stderr, "kmsctl: cannot write to standard output: %s\n", strerror(-r));
                return r;
        }

        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0644);
        if (fd < 0) {
                r = -errno;
                fprintf(stderr, "kmsctl: cannot create '%s': %s\n", path, strerror(errno));
                return r;
        }
        regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
        r = write_all(fd, data, len);
        if (close(fd) < 0 && r == 0)
                r = -errno;
        if (r < 0) {
                fprintf(stderr, "kmsctl: cannot write '%s': %s\n", path, strerror(-r));
                if (regular)
                        unlink(path); /* no truncated signature or key left behind */
        }
        return r;
}

static int write_secret(const char *path, const void *data, size_t len)
{
        struct stat st;
        bool regular;
        int fd, r;

        if (is_stdio(path)) {
                fprintf(stderr, "kmsctl: secrets are written to a file only; give --out FILE\n");
                return -EINVAL;
        }
        /* Not O_TRUNC: an existing file is checked before its contents go. */
        fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
        if (fd < 0) {
                r = -errno;
                fprintf(stderr, "kmsctl: cannot create '%s': %s\n", path, strerror(errno));
                return r;
        }
        if (fstat(fd, &st) < 0) {
                r = -errno;
                fprintf(stderr, "kmsctl: cannot stat '%s': %s\n", path, strerror(errno));
                goto out;
        }
        regular = S_ISREG(st.st_mode);
        if (isatty(fd)) {
                fprintf(stderr, "kmsctl: refusing to write a secret to the terminal '%s'\n", path);
                r = -EINVAL;
                goto out;
        }
        if (regular && st.st_uid != geteuid()) {
                /* Its owner could have it open already, or chmod it back. */
                fprintf(stderr, "kmsctl: refusing to write a secret into '%s', which belongs to uid %u\n", path,
                        (unsigned)st.st_uid);
                r = -EPERM;
                goto out;
        }
        if (regular && (st.st_mode & 077) != 0 && fchmod(fd, 0600) < 0) {
                r = -errno;
                fprintf(stderr, "kmsctl: cannot make '%s' private (mode 0600): %s\n", path, strerror(errno));
                goto out;
        }
        if (regular && ftruncate(fd, 0) < 0) {
                r = -errno;
                fprintf(stderr, "kmsctl: cannot truncate '%s': %s\n", path, strerror(errno));
                goto out;
        }
        r = write_all(fd, data, len);
        if (close(fd) < 0 && r == 0)
                r = -errno;
        fd = -1;
        if (r < 0) {
                fprintf(stderr, "kmsctl: cannot write '%s': %s\n", path, strerror(-r));
                if (regular)
                        unlink(path); /* no partial secret left behind */
        }
out:
        if (fd >= 0)
                close(fd);
        return r;
}

int kmsctl_write_secret_file(const char *path, void *data, size_t len)
{
        int r = write_secret(path, data, len);

        OPENSSL_cleanse(data, len);
        return r;
}

int kmsctl_secret_reply_finish(DBusMessage *reply, const char *name, const char *path, bool json,
                               const char *json_file_key, const char *verb)
{
        const uint8_t *secret;
        int len;
        uint32_t used;

        if (!dbus_message_get_args(reply, NULL, DBUS_TYPE_ARRAY, DBUS_TYPE_BYTE, &secret, &len, DBUS_TYPE_UINT32, &used,
                                   DBUS_TYPE_INVALID)) {
                fprintf(stderr, "kmsctl: out of memory\n");
                return KMS_EXIT_FAILURE;
        }
        /* The only copy kmsctl holds is in the reply: written, then wiped
         * there. */
        if (kmsctl_write_secret_file(path, (uint8_t *)secret, (size_t)len) < 0)
                return KMS_EXIT_FAILURE;
        if (json) {
                struct kmsctl_json j;

                kmsctl_json_init(&j, stdout);
                kmsctl_json_begin_object(&j);
                kmsctl_json_field_string(&j, "name", name);
                kmsctl_json_field_uint(&j, "version", used);
                kmsctl_json_field_uint(&j, "length", (uint64_t)len);
                kmsctl_json_field_string(&j, json_file_key, path);
                kmsctl_json_end_object(&j);
        } else
                fprintf(stderr, "%s %d bytes with %s version %" PRIu32 " into %s\n", verb, len, name, used, path);
        return KMS_EXIT_OK;
}

/* Largest public key file kmsctl reads: an RSA-16384 PEM is under 4 KiB. */
#define PUBLIC_KEY_FILE_MAX (64u * 1024u)

int kmsctl_read_public_key(const char *path, uint8_t **ret, size_t *ret_len)
{
        _cleanup_(freep) uint8_t *file = NULL;
        const unsigned char *p;
        size_t len = 0;
        EVP_PKEY *pk = NULL;
        uint8_t *der = NULL, *q;
        int n, r;

        r = kmsctl_read_file(path, PUBLIC_KEY_FILE_MAX, &file, &len);
        if (r < 0)
                return r;
        if (memmem(file, len, "-----BEGIN ", 11)) {
                BIO *bio = BIO_new_mem_buf(file, (int)len);

                if (!bio)
                        return -ENOMEM;
                pk = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
                BIO_free(bio);
                if (!pk && memmem(file, len, "PRIVATE KEY-----", 16)) {
                        fprintf(stderr,
                                "kmsctl: '%s' holds a private key; give the peer's public key "
                                "(openssl pkey -in KEY -pubout)\n",
                                path);
                        ERR_clear_error();
                        return -EINVAL;
                }
        } else {
                p = file;
                pk = d2i_PUBKEY(NULL, &p, (long)len);
                if (pk && p != file + len) {
                        EVP_PKEY_free(pk);
                        pk = NULL;
                }
        }
        ERR_clear_error();
        if (!pk) {
                fprintf(stderr,
                        "kmsctl: '%s' is not a public key (PEM \"BEGIN PUBLIC KEY\" or DER SubjectPublicKeyInfo)\n",
                        path);
                return -EINVAL;
        }
        /* Re-encode: the canonical DER, whatever the file's form. */
        n = i2d_PUBKEY(pk, NULL);
        if (n > 0 && (der = malloc((size_t)n))) {
                q = der;
                n = i2d_PUBKEY(pk, &q);
        }
        EVP_PKEY_free(pk);
        if (n <= 0 || !der) {
                free(der);
                fprintf(stderr, "kmsctl: cannot encode the public key in '%s'\n", path);
                return -ENOMEM;
        }
        *ret = der;
        *ret_len = (size_t)n;
        return 0;
}

const char *kmsctl_printable(const char *s, char *buf, size_t size)
{
        size_t n = 0;

        for (; s && *s && n + 1 < size; s++, n++)
                buf[n] = (unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s;
        buf[n] = '\0';
        return buf;
}
