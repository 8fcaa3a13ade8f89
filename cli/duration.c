/* Durations for kmsctl; see duration.h. */
#include "duration.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>

static const struct {
        char unit;
        uint64_t seconds;
} units[] = {
        {'d', 86400},
        {'h', 3600},
        {'m', 60},
        {'s', 1},
};

/* Index in units[] of c, or -1. */
static int unit_index(char c)
{
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
                if (units[i].unit == c)
                        return (int)i;
        return -1;
}

static int bad_duration(const char *option, const char *s, const char *why)
{
        fprintf(stderr,
                "kmsctl: %s: invalid duration '%s': %s (use numbers with the units s, m, h, d, "
                "largest first: 90s, 5m, 12h, 30d, 1d12h)\n",
                option, s, why);
        return -EINVAL;
}

int kmsctl_parse_duration(const char *option, const char *s, uint64_t *ret)
{
        const char *p = s;
        uint64_t total = 0;
        int last = -1; /* index of the previous group's unit */

        if (!*s)
                return bad_duration(option, s, "it is empty");
        while (*p) {
                uint64_t n = 0;
                const char *digits = p;
                int u;

                for (; *p >= '0' && *p <= '9'; p++) {
                        /* Bounded by the maximum, so n never overflows. */
                        n = n * 10 + (uint64_t)(*p - '0');
                        if (n > KMSCTL_MAX_DURATION_SEC)
                                return bad_duration(option, s, "it is too long (at most 36500d)");
                }
                if (p == digits)
                        return bad_duration(option, s,
                                            unit_index(*p) >= 0 ? "a number must come before each unit"
                                                                : "only digits and the units s, m, h, d may appear");
                if (!*p)
                        return bad_duration(option, s, "a number lacks its unit");
                u = unit_index(*p);
                if (u < 0)
                        return bad_duration(option, s, "unknown unit");
                if (u <= last)
                        return bad_duration(option, s, "units must each appear once, largest first");
                last = u;
                p++;
                if (n > (KMSCTL_MAX_DURATION_SEC - total) / units[u].seconds)
                        return bad_duration(option, s, "it is too long (at most 36500d)");
                total += n * units[u].seconds;
        }
        if (total == 0)
                return bad_duration(option, s, "it must be at least 1s");
        *ret = total;
        return 0;
}

const char *kmsctl_format_duration(uint64_t sec, char *buf, size_t size)
{
        size_t n = 0;

        buf[0] = '\0';
        if (sec == 0) {
                snprintf(buf, size, "0s");
                return buf;
        }
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]) && n < size; i++) {
                uint64_t q = sec / units[i].seconds;

                if (q == 0)
                        continue;
                sec -= q * units[i].seconds;
                n += (size_t)snprintf(buf + n, size - n, "%" PRIu64 "%c", q, units[i].unit);
        }
        return buf;
}

const char *kmsctl_format_duration_long(uint64_t s, char *buf, size_t size)
{
        uint64_t d = s / 86400, h = s / 3600 % 24, m = s / 60 % 60, sec = s % 60;

        if (d)
                snprintf(buf, size, "%" PRIu64 "d %" PRIu64 "h %" PRIu64 "min %" PRIu64 "s", d, h, m, sec);
        else if (h)
                snprintf(buf, size, "%" PRIu64 "h %" PRIu64 "min %" PRIu64 "s", h, m, sec);
        else if (m)
                snprintf(buf, size, "%" PRIu64 "min %" PRIu64 "s", m, sec);
        else
                snprintf(buf, size, "%" PRIu64 "s", sec);
        return buf;
}
