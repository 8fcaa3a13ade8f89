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

#include "bus.h"
#include "json.h"
#include "kmsctl.h"

#define KMSCTL_MAX_USAGES 8u

struct kmsctl_key_version {
        uint32_t version;
        const char *state;
        int64_t created;
        const char *backend_id;
        const char *fingerprint;
        uint64_t uses;
        int64_t revoked_at;        /* 0: not revoked */
        const char *revoke_reason; /* "" when not revoked */
        const char *revoke_note;
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
        /* Lifecycle settings; 0 means none (and for keep_versions: all).
         * An older kmsd leaves them out, which reads as 0. */
        uint64_t rotate_every;
        uint64_t rotate_after_uses;
        uint32_t keep_versions;
        int64_t next_rotation;
        int64_t destroy_at;
        bool has_versions;
        struct kmsctl_key_version *versions; /* owned */
        size_t n_versions;
};

/* Read the key dictionary at it. with_versions: the dictionary must have
 * "versions" (DescribeKey, CreateKey); otherwise they are read if present. Returns 0
 * or a negative errno (printed); on success free with kmsctl_key_done(). */
int kmsctl_key_read(DBusMessageIter *it, bool with_versions, struct kmsctl_key *ret);
void kmsctl_key_done(struct kmsctl_key *k);

/* The version with number v, or NULL. */
const struct kmsctl_key_version *kmsctl_key_find_version(const struct kmsctl_key *k, uint32_t v);

/* The key as one JSON object, with "versions" when it has them. */
void kmsctl_key_json(struct kmsctl_json *j, const struct kmsctl_key *k);

/* "every 30d, after 100000 uses", "every 12h", "none" into buf. */
#define KMSCTL_ROTATION_MAX 96u
const char *kmsctl_key_format_rotation(const struct kmsctl_key *k, char *buf, size_t size);

/* The rotation settings, next rotation and scheduled destruction as
 * "Label:   value" lines, aligned with key show's. */
void kmsctl_key_print_lifecycle(const struct kmsctl_key *k);

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

/* Call method(s name, a{sv} options), the shape of every lifecycle
 * method, and check the reply against reply_signature. Returns an exit
 * status; on success *ret_reply holds the reply. */
int kmsctl_key_call(const char *method, const char *name, const struct kmsctl_bus_option *options, size_t n_options,
                    const char *reply_signature, DBusMessage **ret_reply);

/* Call method(s name, a{sv} options) and read the key dictionary it
 * returns (SetKeyOptions), with versions if it has them. As
 * kmsctl_key_describe() otherwise. */
int kmsctl_key_call_read(const char *method, const char *name, const struct kmsctl_bus_option *options,
                         size_t n_options, DBusMessage **ret_reply, struct kmsctl_key *ret);

/* The body of the commands that take only NAME and call one
 * method(s name, a{sv}) -> () (key disable, enable, cancel-destroy):
 * parse, call, print "<done> NAME". Returns an exit status. */
int kmsctl_key_simple_main(const struct kmsctl_command *cmd, int argc, char **argv, const char *method,
                           const char *done);
