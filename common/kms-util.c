/* Small helpers shared by every part of kmsd; see kms-util.h. */
#include "kms-util.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#include <openssl/crypto.h>

void kms_freezero(void *p, size_t len)
{
        if (!p)
                return;
        OPENSSL_cleanse(p, len);
        free(p);
}

void kms_secret_free(struct kms_secret *s)
{
        if (!s)
                return;
        kms_freezero(s->data, s->len);
        s->data = NULL;
        s->len = 0;
}

int kms_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *ret)
{
        char *end = NULL;
        unsigned long long v;

        if (!s || !*s || !isdigit((unsigned char)s[0]))
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        if (errno != 0 || !end || *end != '\0')
                return -EINVAL;
        if (v < min || v > max)
                return -ERANGE;
        *ret = v;
        return 0;
}

char *kms_hex_encode(const uint8_t *data, size_t len)
{
        static const char digits[] = "0123456789abcdef";
        char *out;

        if (len > (SIZE_MAX - 1) / 2)
                return NULL;
        out = malloc(len * 2 + 1);
        if (!out)
                return NULL;
        for (size_t i = 0; i < len; i++) {
                out[2 * i] = digits[data[i] >> 4];
                out[2 * i + 1] = digits[data[i] & 0xf];
        }
        out[len * 2] = '\0';
        return out;
}

static int hexval(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

int kms_hex_decode(const char *s, uint8_t **ret, size_t *ret_len)
{
        size_t n;
        uint8_t *out;

        if (!s || !ret || !ret_len)
                return -EINVAL;
        n = strlen(s);
        if (n % 2 != 0)
                return -EINVAL;
        out = malloc(n / 2 ? n / 2 : 1);
        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < n / 2; i++) {
                int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
                if (hi < 0 || lo < 0) {
                        free(out);
                        return -EINVAL;
                }
                out[i] = (uint8_t)(hi << 4 | lo);
        }
        *ret = out;
        *ret_len = n / 2;
        return 0;
}

int64_t kms_now_unix(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec;
}

uint64_t kms_now_unix_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t kms_now_mono_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

bool kms_utf8_sanitize(char *s)
{
        unsigned char *p = (unsigned char *)s;
        bool changed = false;

        while (*p) {
                unsigned n, cp;

                if (*p < 0x80) {
                        p++;
                        continue;
                }
                if ((*p & 0xe0) == 0xc0) {
                        n = 1;
                        cp = *p & 0x1f;
                } else if ((*p & 0xf0) == 0xe0) {
                        n = 2;
                        cp = *p & 0x0f;
                } else if ((*p & 0xf8) == 0xf0) {
                        n = 3;
                        cp = *p & 0x07;
                } else
                        goto bad;
                for (unsigned i = 1; i <= n; i++) {
                        if ((p[i] & 0xc0) != 0x80)
                                goto bad;
                        cp = (cp << 6) | (p[i] & 0x3f);
                }
                /* Overlong forms, surrogates and beyond U+10FFFF are invalid. */
                if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
                    (cp >= 0xd800 && cp <= 0xdfff))
                        goto bad;
                p += n + 1;
                continue;
        bad:
                *p++ = '?';
                changed = true;
        }
        return changed;
}
