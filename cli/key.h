/* The key dictionary of docs/dbus-api.md (CreateKey, DescribeKey,
 * ListKeys) as kmsctl reads it, and the ways it prints one: JSON, times
 * in ISO 8601 UTC, owners by name. Shared by the key subcommands. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <dbus/dbus.h>

#include "json.h"

#define KMSCTL_MAX_USAGES 8u

struct kmsctl_key_version {
        uint32_t version;
        const char *state;
        int64_t created;
        const char *backend_id;
        const char *fingerprint;
        uint64_t uses;
};

/* Strings point into the reply message, which must outlive this. */
struct kmsctl_key {
        const char *name;
        const char *algorithm;
        const char *backend;
        const char *state;
        uint32_t owner;
        const char *usages[KMSCTL_MAX_USAGES];
        size_t n_usages;
        int64_t created;
        uint32_t primary_version;
        uint32_t version_count;
        bool has_versions;
        struct kmsctl_key_version *versions; /* owned */
        size_t n_versions;
};

/* Read the key dictionary at it. with_versions: the dictionary must have
 * "versions" (DescribeKey, CreateKey); otherwise it is ignored. Returns 0
 * or a negative errno (printed); on success free with kmsctl_key_done(). */
int kmsctl_key_read(DBusMessageIter *it, bool with_versions, struct kmsctl_key *ret);
void kmsctl_key_done(struct kmsctl_key *k);

/* The version with number v, or NULL. */
const struct kmsctl_key_version *kmsctl_key_find_version(const struct kmsctl_key *k, uint32_t v);

/* The key as one JSON object, with "versions" when it has them. */
void kmsctl_key_json(struct kmsctl_json *j, const struct kmsctl_key *k);

/* "2024-05-01T12:00:00Z" into buf (at least KMSCTL_TIME_MAX bytes). */
#define KMSCTL_TIME_MAX 32u
const char *kmsctl_format_time(int64_t t, char *buf, size_t size);

/* "alice" for a uid with a passwd entry, else the number, into buf. */
#define KMSCTL_USER_MAX 64u
const char *kmsctl_format_user(uint32_t uid, char *buf, size_t size);

/* Call DescribeKey for name and read the reply into *ret (with versions).
 * The strings in *ret point into *ret_reply, which the caller unrefs after
 * kmsctl_key_done(). Returns an exit status (KMS_EXIT_OK on success; the
 * error is printed otherwise). */
int kmsctl_key_describe(const char *name, DBusMessage **ret_reply, struct kmsctl_key *ret);
