/* OpenSSL's secure heap, where kmsd keeps session keys: an mmap'd arena
 * that is mlock'ed (not swapped), excluded from core dumps
 * (MADV_DONTDUMP) and guarded by no-access pages.
 *
 * The daemon calls kms_secure_heap_init() once at start-up, before any
 * thread starts and before the first session is opened. Without it,
 * OPENSSL_secure_malloc() silently falls back to plain malloc(): the code
 * keeps working, but keys are then ordinary heap memory that may be
 * swapped or dumped. Once the heap is initialised, an allocation that does
 * not fit fails (NULL) rather than falling back, so size it for the
 * maximum number of sessions (kms-session-crypto.h gives the bytes one
 * session takes). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* Smallest block the heap hands out; every allocation is rounded up to a
 * power of two of at least this. */
#define KMS_SECURE_HEAP_MIN_BLOCK 16u
/* Bounds on the arena size (a power of two). */
#define KMS_SECURE_HEAP_MIN_SIZE (4u * 1024u)
#define KMS_SECURE_HEAP_MAX_SIZE (256u * 1024u * 1024u)

/* Initialise the secure heap with an arena of size bytes (a power of two
 * in [KMS_SECURE_HEAP_MIN_SIZE, KMS_SECURE_HEAP_MAX_SIZE]).
 *
 * Returns 0 when the arena is initialised and locked in memory; 1 when it
 * is initialised but mlock() or madvise() failed (RLIMIT_MEMLOCK too low:
 * keys may reach swap; the caller should warn and may go on); -EINVAL for
 * a bad size; -EALREADY if the heap is already initialised (nothing
 * changed); -ENOMEM if OpenSSL could not set it up (keys would then land
 * in plain malloc). */
int kms_secure_heap_init(size_t size);

/* true once kms_secure_heap_init() has succeeded in this process. */
bool kms_secure_heap_active(void);
