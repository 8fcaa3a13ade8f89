/* Logging for kmsd: stderr (with level prefixes) or syslog. Library-like
 * code logs only at debug level; daemon/ logs once, at the boundary.
 * Never pass a secret (PIN, key, plaintext) to these functions.
 *
 * Every line is escaped before it is written (kms_log_escape): callers
 * put key names, option values and session ids into messages, and those
 * come from whoever is on the bus. A control character in them must not
 * start a new line that reads like one of kmsd's own. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <syslog.h>

#include "kms-util.h"

enum kms_log_target {
        KMS_LOG_STDERR,
        KMS_LOG_SYSLOG,
};

void kms_log_setup(enum kms_log_target target, int max_level, const char *ident);
/* "debug", "info", "notice", "warning", "err": a syslog level or -1. */
int kms_log_level_from_string(const char *s);
bool kms_log_enabled(int level);
void kms_log(int level, const char *fmt, ...) _printf_(2, 3);

/* s with every byte below 0x20 and 0x7f written as \xNN (lower-case
 * hex), into out (always NUL-terminated when outlen > 0). An escape is
 * never cut in half: when out is too small the text ends before it.
 * Returns the length written. Other bytes, backslashes and UTF-8
 * included, are copied as they are. */
size_t kms_log_escape(const char *s, char *out, size_t outlen);

/* A token bucket: at most burst events at once, then per_s a second.
 * Starts full. The caller keeps it and serialises calls on it. */
struct kms_log_ratelimit {
        uint64_t milli_tokens; /* tokens × 1000, so 2/s refills without rounding */
        uint64_t last_ms;      /* when it was last refilled */
        bool used;             /* false: never taken from, so full */
};

/* Take one token at now_ms (a monotonic clock in milliseconds): true if
 * there was one, false if the event should be suppressed. */
bool kms_log_ratelimit_take(struct kms_log_ratelimit *rl, unsigned burst, unsigned per_s, uint64_t now_ms);
/* True if rl would be full at now_ms (nothing taken that has not been
 * refilled): forgetting it then changes nothing. */
bool kms_log_ratelimit_full(const struct kms_log_ratelimit *rl, unsigned burst, unsigned per_s, uint64_t now_ms);

#define log_debug(...) do { if (kms_log_enabled(LOG_DEBUG)) kms_log(LOG_DEBUG, __VA_ARGS__); } while (0)
#define log_info(...) kms_log(LOG_INFO, __VA_ARGS__)
#define log_notice(...) kms_log(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...) kms_log(LOG_WARNING, __VA_ARGS__)
#define log_error(...) kms_log(LOG_ERR, __VA_ARGS__)
