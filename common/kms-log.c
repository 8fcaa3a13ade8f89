/* Logging; see kms-log.h. */
#include "kms-log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

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

void kms_log(int level, const char *fmt, ...)
{
        static const char *const prefix[] = { "emerg", "alert", "crit", "error", "warning", "notice", "info", "debug" };
        char buf[1024];
        va_list ap;

        if (!kms_log_enabled(level))
                return;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        if (log_target == KMS_LOG_SYSLOG) {
                syslog(level, "%s", buf);
                return;
        }
        pthread_mutex_lock(&log_lock);
        fprintf(stderr, "kmsd[%s]: %s\n", prefix[level & 7], buf);
        pthread_mutex_unlock(&log_lock);
}
