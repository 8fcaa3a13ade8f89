/* Files for kmsctl: reading inputs ("-" is stdin) with a size cap,
 * hashing inputs of any size, and writing signatures and public keys.
 * Every function prints its own message on failure. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kms-key.h"

/* Read all of path ("-": standard input) into a new buffer. Returns 0, or
 * -EFBIG when it holds more than max bytes, or another negative errno;
 * the message names the file. *ret is malloc()ed (never NULL on success,
 * even for an empty file). */
int kmsctl_read_file(const char *path, size_t max, uint8_t **ret, size_t *ret_len);

/* Digest all of path ("-": standard input) with h, streaming, whatever its
 * size. ret must hold kms_hash_length(h) bytes. Returns 0 or a negative
 * errno. */
int kmsctl_hash_file(const char *path, enum kms_hash h, uint8_t *ret);

/* Write data to path (NULL or "-": standard output), creating it with
 * mode 0644 (less the umask) or truncating it. A failed write removes the
 * regular file it truncated, so no half signature is left behind. When
 * binary is set, standard output must not be a terminal. Returns 0 or a
 * negative errno. */
int kmsctl_write_file(const char *path, const void *data, size_t len, bool binary);

/* s with control characters (a terminal's escape sequences) replaced by
 * '?', cut to fit buf, for text that came from someone else (a revocation
 * note) on its way to a terminal. Returns buf. */
#define KMSCTL_PRINTABLE_MAX 512u
const char *kmsctl_printable(const char *s, char *buf, size_t size);
