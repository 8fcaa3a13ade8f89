/* Logging; see kms-log.h. */
#include "kms-log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* A formatted message before escaping, and after: each byte can become
 * four ("\xNN"). */
#define KMS_LOG_LINE_MAX 1024
#define KMS_LOG_ESCAPED_MAX (4 * KMS_LOG_LINE_MAX)

static enum kms_log_target log_target = KMS_LOG_STDERR;
static int log_max_level = LOG_INFO;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void kms_log_setup(enum kms_log_target target, int max_level, const char *ident)
{
        log_target = target;
        log_max_level = max_level;
        if (target == KMS_LOG_SYSLOG)
                openlog(ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

int kms_log_level_from_string(const char *s)
{
        static const struct {
                const char *name;
                int level;
        } levels[] = {
                { "debug", LOG_DEBUG },     { "info", LOG_INFO }, { "notice", LOG_NOTICE },
                { "warning", LOG_WARNING }, { "err", LOG_ERR },   { "error", LOG_ERR },
        };
        for (size_t i = 0; s && i < ELEMENTSOF(levels); i++)
                if (strcmp(s, levels[i].name) == 0)
                        return levels[i].level;
        return -1;
}

bool kms_log_enabled(int level)
{
        return level <= log_max_level;
}

size_t kms_log_escape(const char *s, char *out, size_t outlen)
{
        static const char hex[] = "0123456789abcdef";
        size_t o = 0;

        if (outlen == 0)
                return 0;
        for (; *s; s++) {
                unsigned char ch = (unsigned char)*s;

                if (ch < 0x20 || ch == 0x7f) {
                        if (outlen - o < 5)
                                break;
                        out[o++] = '\\';
                        out[o++] = 'x';
                        out[o++] = hex[ch >> 4];
                        out[o++] = hex[ch & 0xf];
                } else {
                        if (outlen - o < 2)
                                break;
                        out[o++] = (char)ch;
                }
        }
        out[o] = '\0';
        return o;
}

void kms_log(int level, const char *fmt, ...)
{
        static const char *const prefix[] = { "emerg", "alert", "crit", "error", "warning", "notice", "info", "debug" };
        char buf[KMS_LOG_LINE_MAX], line[KMS_LOG_ESCAPED_MAX];
        va_list ap;

        if (!kms_log_enabled(level))
                return;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        /* Whatever the message quotes stays on this one line. */
        kms_log_escape(buf, line, sizeof(line));
        if (log_target == KMS_LOG_SYSLOG) {
                syslog(level, "%s", line);
                return;
        }
        pthread_mutex_lock(&log_lock);
        fprintf(stderr, "kmsd[%s]: %s\n", prefix[level & 7], line);
        pthread_mutex_unlock(&log_lock);
}

/* Refill for the time since the last call. Elapsed time is capped before
 * it is multiplied, so a long idle period cannot overflow. */
static uint64_t ratelimit_level(const struct kms_log_ratelimit *rl, unsigned burst, unsigned per_s, uint64_t now_ms)
{
        const uint64_t cap = (uint64_t)burst * 1000u;
        uint64_t elapsed, level;

        if (!rl->used)
                return cap;
        elapsed = now_ms > rl->last_ms ? now_ms - rl->last_ms : 0;
        if (per_s == 0)
                return rl->milli_tokens;
        if (elapsed >= cap) /* per_s >= 1 refills at least 1 milli-token a ms */
                return cap;
        level = rl->milli_tokens + elapsed * per_s;
        return level > cap ? cap : level;
}

bool kms_log_ratelimit_take(struct kms_log_ratelimit *rl, unsigned burst, unsigned per_s, uint64_t now_ms)
{
        uint64_t level = ratelimit_level(rl, burst, per_s, now_ms);
        bool ok = level >= 1000u;

        rl->milli_tokens = ok ? level - 1000u : level;
        if (!rl->used || now_ms > rl->last_ms)
                rl->last_ms = now_ms;
        rl->used = true;
        return ok;
}

bool kms_log_ratelimit_full(const struct kms_log_ratelimit *rl, unsigned burst, unsigned per_s, uint64_t now_ms)
{
        return ratelimit_level(rl, burst, per_s, now_ms) >= (uint64_t)burst * 1000u;
}
