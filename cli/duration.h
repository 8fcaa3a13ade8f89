/* Durations for kmsctl: the strict parser behind --rotate-every and
 * --after ("90s", "5m", "12h", "30d", "1d12h"), and the two ways kmsctl
 * prints a number of seconds. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Longest duration kmsctl accepts: 100 years, far beyond any sensible
 * rotation period, and small enough that now + it fits every time type. */
#define KMSCTL_MAX_DURATION_SEC (36500ull * 86400ull)

/* Parse s as one or more <digits><unit> groups with the units s, m, h, d
 * in decreasing order, each at most once, no spaces or signs ("1d12h",
 * not "12h1d" or "1d 12h"); the sum must lie in 1..KMSCTL_MAX_DURATION_SEC.
 * option names the option in the message ("--rotate-every"). Returns 0
 * and writes *ret, or -EINVAL after printing a message that quotes s. */
int kmsctl_parse_duration(const char *option, const char *s, uint64_t *ret);

/* Seconds as the parser takes them back: "1d12h", "90s" -> "1m30s",
 * "0s" for 0. */
#define KMSCTL_DURATION_MAX 48u
const char *kmsctl_format_duration(uint64_t sec, char *buf, size_t size);

/* Seconds for a person: "3d 4h 5min 6s", leaving out leading zero
 * units (kmsctl status's uptime). */
const char *kmsctl_format_duration_long(uint64_t sec, char *buf, size_t size);
