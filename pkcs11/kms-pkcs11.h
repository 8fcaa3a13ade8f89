/* The PKCS#11 backend: load a Cryptoki module through p11-kit, find the
 * token, log in with the PIN from a file, and serve the backend table
 * (common/kms-backend.h). */
#pragma once

#include <stddef.h>

#include "kms-backend.h"

struct kms_pkcs11_config {
        const char *module;       /* path of the Cryptoki module */
        const char *token_label;  /* token to use, by label ... */
        const char *token_serial; /* ... or by serial (wins if both set) */
        const char *pin_file;     /* file holding the user PIN */
};

/* Load the module, find the token and log in. The PIN file must be a
 * regular file not readable or writable by group or others; its content
 * (one line; a trailing newline is dropped) is wiped from memory after
 * C_Login. On failure returns a negative errno and writes a sentence an
 * operator can act on to errbuf (never the PIN). */
int kms_pkcs11_open(const struct kms_pkcs11_config *cfg, struct kms_backend **ret, char *errbuf, size_t errlen);

/* Read a PIN file with the permission checks above. *ret is a
 * NUL-terminated string the caller wipes and frees (kms_freezero). */
int kms_pkcs11_read_pin(const char *path, char **ret, size_t *ret_len, char *errbuf, size_t errlen);
