/* Names on the bus shared by kmsd and kmsctl: the well-known name, object
 * path, interface, error names and the option keys of the wire format.
 * docs/dbus-api.md is the reference for callers; keep the two in step. */
#pragma once

#define KMS_BUS_NAME      "org.kmsd.KeyManager1"
#define KMS_BUS_PATH      "/org/kmsd/KeyManager1"
#define KMS_BUS_INTERFACE "org.kmsd.KeyManager1"

/* Every error kmsd returns on the bus; one line each, so the set is easy to
 * audit. kmsctl maps them to exit codes (kms_error_exit_code()). */
#define KMS_ERROR_PREFIX          "org.kmsd.KeyManager1.Error."
#define KMS_ERROR_NOT_FOUND       KMS_ERROR_PREFIX "NotFound"
#define KMS_ERROR_ALREADY_EXISTS  KMS_ERROR_PREFIX "AlreadyExists"
#define KMS_ERROR_INVALID_ARGUMENT KMS_ERROR_PREFIX "InvalidArgument"
#define KMS_ERROR_ACCESS_DENIED   KMS_ERROR_PREFIX "AccessDenied"
#define KMS_ERROR_KEY_REVOKED     KMS_ERROR_PREFIX "KeyRevoked"
#define KMS_ERROR_KEY_DISABLED    KMS_ERROR_PREFIX "KeyDisabled"
#define KMS_ERROR_KEY_DESTROYED   KMS_ERROR_PREFIX "KeyDestroyed"
#define KMS_ERROR_INVALID_STATE   KMS_ERROR_PREFIX "InvalidState"
#define KMS_ERROR_LIMIT_EXCEEDED  KMS_ERROR_PREFIX "LimitExceeded"
#define KMS_ERROR_BUSY            KMS_ERROR_PREFIX "Busy"
#define KMS_ERROR_BACKEND         KMS_ERROR_PREFIX "Backend"
#define KMS_ERROR_STORE           KMS_ERROR_PREFIX "Store"
#define KMS_ERROR_INTERNAL        KMS_ERROR_PREFIX "Internal"
#define KMS_ERROR_SHUTTING_DOWN   KMS_ERROR_PREFIX "ShuttingDown"
#define KMS_ERROR_POLICY_INVALID  KMS_ERROR_PREFIX "PolicyInvalid"
#define KMS_ERROR_AUDIT_FAILURE   KMS_ERROR_PREFIX "AuditFailure"
#define KMS_ERROR_SESSION_NOT_FOUND KMS_ERROR_PREFIX "SessionNotFound"
#define KMS_ERROR_SESSION_EXPIRED KMS_ERROR_PREFIX "SessionExpired"
#define KMS_ERROR_REPLAY          KMS_ERROR_PREFIX "Replay"
#define KMS_ERROR_STALE           KMS_ERROR_PREFIX "Stale"
#define KMS_ERROR_INTEGRITY       KMS_ERROR_PREFIX "IntegrityFailure"

/* Signals. */
#define KMS_SIGNAL_KEY_CREATED    "KeyCreated"   /* (s name, u version) */
#define KMS_SIGNAL_KEY_DESTROYED  "KeyDestroyed" /* (s name) */
#define KMS_SIGNAL_KEY_ROTATED    "KeyRotated"   /* (s name, u version) */
#define KMS_SIGNAL_KEY_REVOKED    "KeyRevoked"   /* (s name, u version, s reason) */

/* Environment variable kmsctl reads when neither --bus nor --bus-address is
 * given; scripts/run prints a line that sets it. */
#define KMS_ENV_BUS_ADDRESS "KMSD_BUS_ADDRESS"

/* Upper bound for one D-Bus message kmsd accepts (the configured
 * max_message_bytes may be lower, never higher). */
#define KMS_MAX_MESSAGE_BYTES_CEILING (64u * 1024u * 1024u)
/* Default limit on the data of one Sign/Verify request. */
#define KMS_DEFAULT_MAX_MESSAGE_BYTES (1024u * 1024u)
