/* The cryptographic core of kmsd's sessions: the key schedule that turns
 * an ECDH shared secret into two directional AES-256-GCM keys, envelope
 * format v1, and the per-session state that seals and opens envelopes
 * with sequence numbers, timestamps, limits and an expiry.
 *
 * No D-Bus, no token and no clock: every call that needs the time takes
 * now_ms (Unix time in milliseconds), so the caller decides what "now" is
 * and tests are deterministic. docs/sessions.md is the specification (byte
 * layouts, rules, a worked test vector); tests/vectors/session-v1.txt
 * holds the vector's bytes.
 *
 * Keys live in OpenSSL's secure heap (see kms-secure-heap.h: the daemon
 * must initialise it at start-up). AES key schedules exist only during a
 * seal or open call; every transient copy of a secret is wiped.
 *
 * A struct kms_session_crypto has no lock: the caller serialises the calls
 * on one session. Different sessions may be used from different threads.
 *
 * KEY REUSE. The keys depend only on (Z, the two public keys, the
 * context). With long-term keys on both sides Z never changes, so two
 * sessions between the same two keys with the same context get the SAME
 * keys and restart at sequence number 1: AES-GCM nonces repeat (which
 * breaks confidentiality and integrity) and envelopes of the first session
 * open in the second. The caller must make the context unique per session,
 * e.g. by refusing a session whose (binding, role) it has used before; see
 * docs/sessions.md, "Key reuse". */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kms-util.h"

/* Errors of this module, with the suggested bus error after the arrow.
 * EXPIRED, INTEGRITY, REPLAY, REORDERED and STALE use errno values that no
 * other part of kmsd returns, so kms_error_to_bus_name() can map each one
 * by itself. EXHAUSTED and MALFORMED share theirs with kmsd's other limits
 * (LimitExceeded) and bad input (InvalidArgument): a session handler that
 * wants SessionExpired for EXHAUSTED maps it itself. Besides these:
 * -EINVAL (bad argument), -EMSGSIZE (plaintext, AAD or envelope over its
 * cap → LimitExceeded), -ENOBUFS (output buffer too small), -ENOMEM (out of
 * memory, or libcrypto failed). */
#define KMS_E_SESSION_EXPIRED (-ETIME)     /* now ≥ expiry → SessionExpired */
#define KMS_E_SESSION_EXHAUSTED (-EDQUOT)  /* max_messages reached in this direction → SessionExpired */
#define KMS_E_SESSION_MALFORMED (-EBADMSG) /* not a v1 envelope from the peer → InvalidArgument */
#define KMS_E_SESSION_INTEGRITY (-EILSEQ)  /* GCM tag does not verify → Integrity */
#define KMS_E_SESSION_REPLAY (-ENOTUNIQ)   /* sequence number already accepted → Replay */
#define KMS_E_SESSION_REORDERED (-ECHRNG)  /* behind the newest, outside the reordering window → Replay */
#define KMS_E_SESSION_STALE (-ESTALE)      /* timestamp too old or too far ahead → Stale */

/* Sizes of envelope format v1 (docs/sessions.md). */
#define KMS_ENVELOPE_VERSION 1u
#define KMS_ENVELOPE_HEADER_BYTES 18u /* version 1, direction 1, seq 8, timestamp 8 */
#define KMS_ENVELOPE_TAG_BYTES 16u
#define KMS_ENVELOPE_OVERHEAD (KMS_ENVELOPE_HEADER_BYTES + KMS_ENVELOPE_TAG_BYTES)
#define KMS_SESSION_NONCE_BYTES 12u
#define KMS_SESSION_KEY_BYTES 32u
#define KMS_SESSION_BINDING_BYTES 32u
/* HKDF info = this label, one 0x00 byte, then the context. */
#define KMS_SESSION_KDF_LABEL "kmsd session v1"

/* Caps on what a caller can make a session hold or process. */
#define KMS_SESSION_MAX_SECRET_BYTES 128u /* Z (P-521: 66) */
#define KMS_SESSION_MAX_SPKI_BYTES 2048u
#define KMS_SESSION_MAX_CONTEXT_BYTES 256u
#define KMS_SESSION_MAX_AAD_BYTES (64u * 1024u)
/* Ceilings for the parameters below. 65536 messages of 16 MiB are 2^36
 * AES blocks per key, inside AES-GCM's usual safety margin. */
#define KMS_SESSION_MAX_MESSAGES_CEILING 65536u
#define KMS_SESSION_MAX_PLAINTEXT_CEILING (16u * 1024u * 1024u)
#define KMS_SESSION_MAX_TTL_MS (30ull * 24 * 3600 * 1000)
#define KMS_SESSION_MAX_WINDOW_MS (24ull * 3600 * 1000) /* stale_ms, skew_ms */
#define KMS_SESSION_MAX_REORDER_WINDOW 63u

#define KMS_SESSION_DEFAULT_TTL_MS (24ull * 3600 * 1000)
#define KMS_SESSION_DEFAULT_MAX_MESSAGES 100u
#define KMS_SESSION_DEFAULT_STALE_MS (5ull * 60 * 1000)
#define KMS_SESSION_DEFAULT_SKEW_MS (60ull * 1000)
#define KMS_SESSION_DEFAULT_MAX_PLAINTEXT (1024u * 1024u)
#define KMS_SESSION_DEFAULT_REORDER_WINDOW 0u

/* What one session takes from the secure heap (its two keys, in one
 * block); size the heap as sessions × this, plus slack. */
#define KMS_SESSION_SECURE_BYTES 64u

enum kms_session_role {
        KMS_SESSION_INITIATOR = 0,
        KMS_SESSION_RESPONDER = 1,
        _KMS_SESSION_ROLE_MAX,
        KMS_SESSION_ROLE_INVALID = -1,
};

/* The direction byte of an envelope (and the first 4 nonce bytes). */
enum kms_session_direction {
        KMS_SESSION_I2R = 0, /* initiator → responder */
        KMS_SESSION_R2I = 1, /* responder → initiator */
};

/* "initiator" / "responder"; from_string returns KMS_SESSION_ROLE_INVALID
 * for anything else (exact match). */
const char *kms_session_role_to_string(enum kms_session_role r);
enum kms_session_role kms_session_role_from_string(const char *s);

/* Output of the key schedule. binding is not secret: it names this key
 * pair (equal on both sides, different for any other Z, key pair, order
 * or context) so that peers can compare it and the daemon can refuse to
 * use one key pair twice. The caller wipes the struct (OPENSSL_cleanse). */
struct kms_session_keys {
        uint8_t i2r[KMS_SESSION_KEY_BYTES];
        uint8_t r2i[KMS_SESSION_KEY_BYTES];
        uint8_t binding[KMS_SESSION_BINDING_BYTES];
};

/* The key schedule (docs/sessions.md, "Key schedule"):
 *   salt = SHA-256(spki_initiator || spki_responder)
 *   info = "kmsd session v1" || 0x00 || context
 *   okm  = HKDF-SHA256(ikm = z, salt, info, 96 bytes)
 *   i2r = okm[0..32), r2i = okm[32..64), binding = okm[64..96)
 * Each SPKI must be one DER SEQUENCE filling its buffer exactly (so the
 * concatenation is unambiguous); the curve and point are the caller's to
 * check. z is 1..KMS_SESSION_MAX_SECRET_BYTES, context 0..
 * KMS_SESSION_MAX_CONTEXT_BYTES (NULL if 0). Returns 0, -EINVAL or -ENOMEM;
 * *ret is written only on success. The caller keeps and wipes z. */
int kms_session_crypto_derive(const uint8_t *z, size_t z_len, const uint8_t *spki_initiator, size_t spki_initiator_len,
                              const uint8_t *spki_responder, size_t spki_responder_len, const uint8_t *context,
                              size_t context_len, struct kms_session_keys *ret);

/* The GCM nonce of an envelope: direction as 4 bytes big-endian, then seq
 * as 8 bytes big-endian. */
void kms_session_crypto_nonce(enum kms_session_direction dir, uint64_t seq, uint8_t ret[KMS_SESSION_NONCE_BYTES]);

/* The fields of an envelope's header. */
struct kms_envelope_header {
        uint8_t version;
        uint8_t direction;
        uint64_t seq;
        uint64_t timestamp_ms;
};

/* Parse the header of an envelope of len bytes: len ≥ KMS_ENVELOPE_OVERHEAD,
 * version 1, direction 0 or 1, seq ≥ 1. Returns 0 or
 * KMS_E_SESSION_MALFORMED (-EINVAL for NULL); *ret only on success. The
 * fields are NOT authenticated by this call: use them for log lines
 * ("claimed seq"), never for decisions. */
int kms_session_crypto_parse_header(const uint8_t *env, size_t len, struct kms_envelope_header *ret);

/* Envelope size for a plaintext of plain_len bytes (SIZE_MAX on overflow). */
size_t kms_session_crypto_envelope_size(size_t plain_len);

struct kms_session_crypto_params {
        uint64_t ttl_ms;         /* lifetime from creation, 1..KMS_SESSION_MAX_TTL_MS */
        uint64_t max_messages;   /* per direction, sealed and opened, 1..KMS_SESSION_MAX_MESSAGES_CEILING */
        uint64_t stale_ms;       /* oldest timestamp accepted: now - stale_ms, 1..KMS_SESSION_MAX_WINDOW_MS */
        uint64_t skew_ms;        /* newest timestamp accepted: now + skew_ms, 0..KMS_SESSION_MAX_WINDOW_MS */
        size_t max_plaintext;    /* bytes, 0..KMS_SESSION_MAX_PLAINTEXT_CEILING */
        unsigned reorder_window; /* 0: only seq > newest; n: also an unseen seq ≥ newest - n; ≤ 63 */
};

/* Fill *ret with the defaults above. */
void kms_session_crypto_params_init(struct kms_session_crypto_params *ret);

struct kms_session_crypto;

/* Create a session for one side. role says which of the two public keys
 * is the initiator's: for KMS_SESSION_INITIATOR spki_local is, for
 * KMS_SESSION_RESPONDER spki_peer is. Derives the keys as
 * kms_session_crypto_derive() does and keeps the two this side needs in
 * the secure heap. params NULL means the defaults; the session expires at
 * now_ms + ttl_ms.
 *
 * Returns 0 and the new session in *ret, or -EINVAL (bad argument or
 * parameter), -ENOMEM (out of memory, secure heap full, libcrypto). The
 * caller keeps and wipes z. */
int kms_session_crypto_new(enum kms_session_role role, const uint8_t *z, size_t z_len, const uint8_t *spki_local,
                           size_t spki_local_len, const uint8_t *spki_peer, size_t spki_peer_len,
                           const uint8_t *context, size_t context_len, const struct kms_session_crypto_params *params,
                           uint64_t now_ms, struct kms_session_crypto **ret);

/* Wipe the keys and free the session; NULL is fine. */
void kms_session_crypto_free(struct kms_session_crypto *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct kms_session_crypto *, kms_session_crypto_free)

/* Seal plain (plain_len bytes, NULL if 0) with the optional aad (NULL if
 * aad_len is 0) into out, which must hold kms_session_crypto_envelope_size
 * (plain_len) bytes; *ret_len gets the envelope's length. The envelope
 * carries the next sequence number and now_ms as its timestamp. out must
 * not overlap plain or aad.
 *
 * Returns 0, -EINVAL, -EMSGSIZE (plaintext or AAD too large), -ENOBUFS,
 * KMS_E_SESSION_EXPIRED, KMS_E_SESSION_EXHAUSTED (nothing changes), or
 * -ENOMEM. A sequence number, once reserved, is never used again, even if
 * libcrypto fails afterwards; on any failure out is zeroed and *ret_len
 * untouched. */
int kms_session_crypto_seal(struct kms_session_crypto *s, uint64_t now_ms, const uint8_t *plain, size_t plain_len,
                            const uint8_t *aad, size_t aad_len, uint8_t *out, size_t out_size, size_t *ret_len);

/* Open the envelope env (env_len bytes) sealed by the peer with the same
 * aad, writing the plaintext (env_len - KMS_ENVELOPE_OVERHEAD bytes) to
 * out and its length to *ret_len. out may be NULL if out_size is 0.
 *
 * The tag is verified before any rule that reads the header's sequence
 * number or timestamp, so a Replay, Reordered or Stale verdict is about an
 * envelope the peer really sealed. Returns 0 or, checked in this order:
 * -EINVAL, -EMSGSIZE (AAD or envelope too large), KMS_E_SESSION_EXPIRED,
 * KMS_E_SESSION_EXHAUSTED (already max_messages accepted),
 * KMS_E_SESSION_MALFORMED (short, unknown version, direction not the
 * peer's, seq 0), -ENOBUFS, KMS_E_SESSION_INTEGRITY,
 * KMS_E_SESSION_EXHAUSTED (seq > max_messages), KMS_E_SESSION_REPLAY,
 * KMS_E_SESSION_REORDERED, KMS_E_SESSION_STALE, -ENOMEM.
 *
 * A failure changes nothing in the session: out is zeroed, *ret_len
 * untouched, and the next good envelope still opens. */
int kms_session_crypto_open(struct kms_session_crypto *s, uint64_t now_ms, const uint8_t *env, size_t env_len,
                            const uint8_t *aad, size_t aad_len, uint8_t *out, size_t out_size, size_t *ret_len);

/* true if the session has expired at now_ms (for the sweeper). */
bool kms_session_crypto_expired(const struct kms_session_crypto *s, uint64_t now_ms);

/* What the daemon shows in `session list`; nothing secret. */
struct kms_session_crypto_info {
        enum kms_session_role role;
        uint64_t created_ms;
        uint64_t expires_ms;
        uint64_t max_messages;
        uint64_t sent;             /* sequence numbers used by seal (= the last one) */
        uint64_t received;         /* envelopes accepted by open */
        uint64_t highest_received; /* newest sequence number accepted, 0 if none */
        uint8_t binding[KMS_SESSION_BINDING_BYTES];
};

void kms_session_crypto_get_info(const struct kms_session_crypto *s, struct kms_session_crypto_info *ret);

/* A sentence for a code this module returns, for log lines and bus error
 * messages (never NULL). */
const char *kms_session_crypto_strerror(int r);
