/* Logging for kmsd: stderr (with level prefixes) or syslog. Library-like
 * code logs only at debug level; daemon/ logs once, at the boundary.
 * Never pass a secret (PIN, key, plaintext) to these functions. */
#pragma once

#include <stdbool.h>
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

#define log_debug(...) do { if (kms_log_enabled(LOG_DEBUG)) kms_log(LOG_DEBUG, __VA_ARGS__); } while (0)
#define log_info(...) kms_log(LOG_INFO, __VA_ARGS__)
#define log_notice(...) kms_log(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...) kms_log(LOG_WARNING, __VA_ARGS__)
#define log_error(...) kms_log(LOG_ERR, __VA_ARGS__)
