/* Small helpers shared by every part of kmsd: cleanup attributes in the
 * systemd style, wiping, checked number parsing and hex. Nothing here
 * logs or touches global state. */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

/* Hand ownership on: returns the pointer and clears the variable so the
 * cleanup attribute no longer frees it. */
#define TAKE_PTR(p)                                                            \
        ({                                                                     \
                __typeof__(p) _ptr_ = (p);                                     \
                (p) = NULL;                                                    \
                _ptr_;                                                         \
        })

#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)                                \
        static inline void func##p(type *p)                                    \
        {                                                                      \
                if (*p)                                                        \
                        func(*p);                                              \
        }

static inline void freep(void *p)
{
        free(*(void **)p);
}

static inline void closep(int *fd)
{
        if (*fd >= 0)
                close(*fd);
}

/* A heap buffer that is wiped before it is freed. */
struct kms_secret {
        uint8_t *data;
        size_t len;
};

void kms_secret_free(struct kms_secret *s);

/* Wipe and free len bytes at p; NULL is fine. */
void kms_freezero(void *p, size_t len);

/* Parse a decimal unsigned integer that must be the whole string and lie
 * in [min, max]. Returns 0 or -EINVAL / -ERANGE; *ret untouched on error. */
int kms_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *ret);

/* Lower-case hex of len bytes into a newly allocated string (NULL on
 * allocation failure). */
char *kms_hex_encode(const uint8_t *data, size_t len);
/* Replace every byte of s that is not part of a valid UTF-8 sequence with
 * '?', in place: strings that go into D-Bus messages must be valid UTF-8
 * (libdbus aborts otherwise), and a "%.32s" may cut a character in half.
 * Returns true if anything changed. */
bool kms_utf8_sanitize(char *s);

/* Decode exactly the hex string s (even length, [0-9a-fA-F]); returns 0,
 * -EINVAL or -ENOMEM. */
int kms_hex_decode(const char *s, uint8_t **ret, size_t *ret_len);

/* Current wall-clock time in Unix seconds and monotonic milliseconds. */
int64_t kms_now_unix(void);
/* Wall-clock time in milliseconds since the epoch. */
uint64_t kms_now_unix_ms(void);
uint64_t kms_now_mono_ms(void);
