/* What the kmsctl session commands share: the session id argument, the
 * session dictionary of OpenSession and ListSessions (docs/dbus-api.md) as
 * kmsctl reads and prints it, the hints printed after session errors, and
 * the body of session seal and session open-envelope, which differ only
 * in which side of the envelope is secret. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <dbus/dbus.h>

#include "json.h"
#include "kmsctl.h"

/* Strings point into the reply message, which must outlive this. */
struct kmsctl_session_info {
        const char *id;
        const char *key;
        uint32_t version;
        const char *role;
        const char *peer_fingerprint;
        int64_t created; /* Unix seconds */
        int64_t expires;
        uint64_t max_messages; /* per direction */
        uint64_t sent;
        uint64_t received;
};

/* Sentences printed after kmsd's session errors (kmsctl_bus_call hints). */
extern const char *const kmsctl_session_hints[];

/* kmsctl_parse_args() for the commands whose one argument is a session
 * id, which must have the form kmsd gives it (a usage error otherwise). */
int kmsctl_session_parse_id_args(const struct kmsctl_command *cmd, int argc, char **argv, const struct option *options,
                                 int (*handle)(int opt, const char *arg, void *userdata), void *userdata,
                                 char **ret_id);

/* Read the session dictionary at it. Returns 0 or a negative errno
 * (printed). */
int kmsctl_session_info_read(DBusMessageIter *it, struct kmsctl_session_info *ret);

/* The session as one JSON object; times in ISO 8601 UTC. */
void kmsctl_session_info_json(struct kmsctl_json *j, const struct kmsctl_session_info *s);

/* The body of session seal (seal = true: Seal, the input is the secret
 * plaintext) and session open-envelope (OpenEnvelope, the output is).
 * Returns an exit status. */
int kmsctl_session_transfer_main(const struct kmsctl_command *cmd, int argc, char **argv, bool seal);
