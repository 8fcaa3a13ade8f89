/* Reading inputs and writing outputs for kmsctl; see io.h. */
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

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

int kmsctl_read_file(const char *path, size_t max, uint8_t **ret, size_t *ret_len)
{
        _cleanup_(freep) uint8_t *buf = NULL;
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
                        p = realloc(buf, ncap);
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
        close_input(fd);
        return r;
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

const char *kmsctl_printable(const char *s, char *buf, size_t size)
{
        size_t n = 0;

        for (; s && *s && n + 1 < size; s++, n++)
                buf[n] = (unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s;
        buf[n] = '\0';
        return buf;
}
