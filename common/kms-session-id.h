/* Session ids: 16 bytes from OpenSSL's private DRBG, shown as an
 * RFC 4122 version 4 UUID (122 random bits, lower-case canonical form,
 * e.g. "0b6f6a3e-5c1d-4b8e-9a7f-2d3c4b5a6978"). An id names a session; it
 * is not a secret credential (the daemon also checks the caller's uid). */
#pragma once

#include <stdint.h>

#define KMS_SESSION_ID_BYTES 16u
/* 36 characters and the terminating NUL. */
#define KMS_SESSION_ID_STRING_SIZE 37u

/* Write a new random id to ret (NUL-terminated). Returns 0 or -EIO if the
 * random generator failed (ret is then an empty string). */
int kms_session_id_new(char ret[KMS_SESSION_ID_STRING_SIZE]);

/* Accept exactly the canonical form kms_session_id_new() writes: 36
 * characters, lower-case hex, dashes at 8, 13, 18 and 23, version nibble
 * 4, variant bits 10. Anything else, upper case included, is -EINVAL, so
 * that one session has one spelling. On success writes the 16 bytes to
 * ret_bytes unless it is NULL. */
int kms_session_id_parse(const char *s, uint8_t ret_bytes[KMS_SESSION_ID_BYTES]);
