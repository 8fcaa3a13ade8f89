/* Files for kmsctl: reading inputs ("-" is stdin) with a size cap,
 * hashing inputs of any size, and writing signatures and public keys.
 * Every function prints its own message on failure. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <dbus/dbus.h>

#include "kms-key.h"

/* Read all of path ("-": standard input) into a new buffer. Returns 0, or
 * -EFBIG when it holds more than max bytes, or another negative errno;
 * the message names the file. *ret is malloc()ed (never NULL on success,
 * even for an empty file). */
int kmsctl_read_file(const char *path, size_t max, uint8_t **ret, size_t *ret_len);
/* The same for a secret (a plaintext): no copy is left in freed memory
 * while reading. Free the result with kms_freezero(*ret, *ret_len). */
int kmsctl_read_secret_file(const char *path, size_t max, uint8_t **ret, size_t *ret_len);

/* Read a public key file, PEM ("BEGIN PUBLIC KEY") or DER
 * SubjectPublicKeyInfo, into a new malloc()ed buffer holding its DER
 * SubjectPublicKeyInfo (re-encoded, so always canonical). Returns 0,
 * -EINVAL when the file holds no public key (a usage error), or another
 * negative errno. */
int kmsctl_read_public_key(const char *path, uint8_t **ret, size_t *ret_len);

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
/* Write a secret (derived bytes, a plaintext) to the file path, never to
 * standard output or a terminal. The file is created with mode 0600; an
 * existing regular file must belong to the caller, is made 0600 before
 * it is truncated, and is removed again when the write fails. data is
 * wiped afterwards, success or not (it may point into a D-Bus reply: the
 * reply's copy is then wiped). Returns 0 or a negative errno (printed). */
int kmsctl_write_secret_file(const char *path, void *data, size_t len);

/* The end of derive and decrypt: read the reply (ay secret, u
 * used_version), write the secret to path with kmsctl_write_secret_file()
 * (which wipes it in the reply), then print {"name", "version", "length",
 * json_file_key: path} with json, or "<verb> N bytes with NAME version V
 * into PATH" on standard error. Returns an exit status. */
int kmsctl_secret_reply_finish(DBusMessage *reply, const char *name, const char *path, bool json,
                               const char *json_file_key, const char *verb);

const char *kmsctl_printable(const char *s, char *buf, size_t size);
