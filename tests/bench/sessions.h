/* kmsd-bench's session load test; see sessions.c. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Hold n_sessions open in kmsd (pairs on key_a and key_b, both EC keys
 * with the derive usage, spki_* their public keys), run threads clients
 * sealing and opening for seconds, print figures (with kmsd's RSS when
 * kmsd_pid > 0) and close them. 0, or a negative errno on any error. */
int bench_sessions(const char *bus_address, const char *key_a, const uint8_t *spki_a, size_t spki_a_len,
                   const char *key_b, const uint8_t *spki_b, size_t spki_b_len, unsigned n_sessions, unsigned threads,
                   unsigned seconds, long kmsd_pid);
