/* Session key schedule, envelope format v1, seal and open; see
 * kms-session-crypto.h and docs/sessions.md. */
#include "kms-session-crypto.h"

#include <assert.h>
#include <limits.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "kms-hkdf.h"

#define LABEL_BYTES (sizeof(KMS_SESSION_KDF_LABEL)) /* the label and its 0x00 */
#define OKM_BYTES (2 * KMS_SESSION_KEY_BYTES + KMS_SESSION_BINDING_BYTES)

/* The one block a session holds in the secure heap. */
struct kms_session_secrets {
        uint8_t send_key[KMS_SESSION_KEY_BYTES];
        uint8_t recv_key[KMS_SESSION_KEY_BYTES];
};
static_assert(sizeof(struct kms_session_secrets) == KMS_SESSION_SECURE_BYTES, "secure block size");
static_assert(KMS_SESSION_MAX_REORDER_WINDOW < 64, "the replay bitmap is one uint64_t");
static_assert(KMS_SESSION_MAX_PLAINTEXT_CEILING + KMS_ENVELOPE_OVERHEAD < INT_MAX, "EVP takes int lengths");
static_assert(KMS_SESSION_MAX_AAD_BYTES < INT_MAX, "EVP takes int lengths");

struct kms_session_crypto {
        enum kms_session_role role;
        enum kms_session_direction send_dir, recv_dir;
        struct kms_session_secrets *secrets; /* OPENSSL_secure_zalloc */
        uint8_t binding[KMS_SESSION_BINDING_BYTES];
        struct kms_session_crypto_params params;
        uint64_t created_ms, expires_ms;
        uint64_t sent;      /* last sequence number reserved by seal */
        uint64_t received;  /* envelopes accepted by open */
        uint64_t highest;   /* newest sequence number accepted, 0 if none */
        uint64_t seen_bits; /* bit i: highest - i was accepted (bit 0 = highest) */
};

static void put_be32(uint8_t *p, uint32_t v)
{
        for (int i = 3; i >= 0; i--, v >>= 8)
                p[i] = (uint8_t)v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
        for (int i = 7; i >= 0; i--, v >>= 8)
                p[i] = (uint8_t)v;
}

static uint64_t get_be64(const uint8_t *p)
{
        uint64_t v = 0;

        for (int i = 0; i < 8; i++)
                v = v << 8 | p[i];
        return v;
}

const char *kms_session_role_to_string(enum kms_session_role r)
{
        switch (r) {
        case KMS_SESSION_INITIATOR: return "initiator";
        case KMS_SESSION_RESPONDER: return "responder";
        default: return NULL;
        }
}

enum kms_session_role kms_session_role_from_string(const char *s)
{
        if (!s)
                return KMS_SESSION_ROLE_INVALID;
        if (strcmp(s, "initiator") == 0)
                return KMS_SESSION_INITIATOR;
        if (strcmp(s, "responder") == 0)
                return KMS_SESSION_RESPONDER;
        return KMS_SESSION_ROLE_INVALID;
}

/* true if spki is exactly one DER SEQUENCE (tag, definite length, body
 * filling the buffer). DER values are self-delimiting, so two of them
 * concatenated can be split only one way: that is all the salt needs. */
static bool is_one_der_sequence(const uint8_t *spki, size_t len)
{
        size_t hdr, body = 0;

        if (!spki || len < 2 || len > KMS_SESSION_MAX_SPKI_BYTES || spki[0] != 0x30)
                return false;
        if (spki[1] < 0x80) {
                hdr = 2;
                body = spki[1];
        } else {
                size_t n = spki[1] & 0x7f;

                /* KMS_SESSION_MAX_SPKI_BYTES needs at most 2 length bytes. */
                if (n == 0 || n > 2 || n > len - 2)
                        return false;
                for (size_t i = 0; i < n; i++)
                        body = body << 8 | spki[2 + i];
                hdr = 2 + n;
        }
        return body == len - hdr;
}

static int spki_pair_salt(const uint8_t *spki_i, size_t spki_i_len, const uint8_t *spki_r, size_t spki_r_len,
                          uint8_t salt[32])
{
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        unsigned n = 0;
        int r = -ENOMEM;

        if (!ctx)
                return -ENOMEM;
        if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 && EVP_DigestUpdate(ctx, spki_i, spki_i_len) == 1 &&
            EVP_DigestUpdate(ctx, spki_r, spki_r_len) == 1 && EVP_DigestFinal_ex(ctx, salt, &n) == 1 && n == 32)
                r = 0;
        EVP_MD_CTX_free(ctx);
        return r;
}

int kms_session_crypto_derive(const uint8_t *z, size_t z_len, const uint8_t *spki_initiator, size_t spki_initiator_len,
                              const uint8_t *spki_responder, size_t spki_responder_len, const uint8_t *context,
                              size_t context_len, struct kms_session_keys *ret)
{
        uint8_t salt[32], info[LABEL_BYTES + KMS_SESSION_MAX_CONTEXT_BYTES], okm[OKM_BYTES];
        int r;

        if (!ret || !z || z_len == 0 || z_len > KMS_SESSION_MAX_SECRET_BYTES)
                return -EINVAL;
        if (!is_one_der_sequence(spki_initiator, spki_initiator_len) ||
            !is_one_der_sequence(spki_responder, spki_responder_len))
                return -EINVAL;
        if ((!context && context_len > 0) || context_len > KMS_SESSION_MAX_CONTEXT_BYTES)
                return -EINVAL;

        r = spki_pair_salt(spki_initiator, spki_initiator_len, spki_responder, spki_responder_len, salt);
        if (r < 0)
                return r;
        memcpy(info, KMS_SESSION_KDF_LABEL, LABEL_BYTES); /* with its terminating 0x00 */
        if (context_len > 0)
                memcpy(info + LABEL_BYTES, context, context_len);

        r = kms_hkdf_sha256(z, z_len, salt, sizeof(salt), info, LABEL_BYTES + context_len, okm, sizeof(okm));
        if (r < 0)
                return r;
        memcpy(ret->i2r, okm, KMS_SESSION_KEY_BYTES);
        memcpy(ret->r2i, okm + KMS_SESSION_KEY_BYTES, KMS_SESSION_KEY_BYTES);
        memcpy(ret->binding, okm + 2 * KMS_SESSION_KEY_BYTES, KMS_SESSION_BINDING_BYTES);
        OPENSSL_cleanse(okm, sizeof(okm));
        return 0;
}

void kms_session_crypto_nonce(enum kms_session_direction dir, uint64_t seq, uint8_t ret[KMS_SESSION_NONCE_BYTES])
{
        put_be32(ret, (uint32_t)dir);
        put_be64(ret + 4, seq);
}

/* Header layout: version, direction, seq (BE64), timestamp (BE64). */
static void header_write(uint8_t h[KMS_ENVELOPE_HEADER_BYTES], enum kms_session_direction dir, uint64_t seq,
                         uint64_t timestamp_ms)
{
        h[0] = KMS_ENVELOPE_VERSION;
        h[1] = (uint8_t)dir;
        put_be64(h + 2, seq);
        put_be64(h + 10, timestamp_ms);
}

int kms_session_crypto_parse_header(const uint8_t *env, size_t len, struct kms_envelope_header *ret)
{
        struct kms_envelope_header h;

        if (!env || !ret)
                return -EINVAL;
        if (len < KMS_ENVELOPE_OVERHEAD)
                return KMS_E_SESSION_MALFORMED;
        h.version = env[0];
        h.direction = env[1];
        h.seq = get_be64(env + 2);
        h.timestamp_ms = get_be64(env + 10);
        if (h.version != KMS_ENVELOPE_VERSION || h.direction > KMS_SESSION_R2I || h.seq == 0)
                return KMS_E_SESSION_MALFORMED;
        *ret = h;
        return 0;
}

size_t kms_session_crypto_envelope_size(size_t plain_len)
{
        if (plain_len > SIZE_MAX - KMS_ENVELOPE_OVERHEAD)
                return SIZE_MAX;
        return plain_len + KMS_ENVELOPE_OVERHEAD;
}

void kms_session_crypto_params_init(struct kms_session_crypto_params *ret)
{
        *ret = (struct kms_session_crypto_params){
                .ttl_ms = KMS_SESSION_DEFAULT_TTL_MS,
                .max_messages = KMS_SESSION_DEFAULT_MAX_MESSAGES,
                .stale_ms = KMS_SESSION_DEFAULT_STALE_MS,
                .skew_ms = KMS_SESSION_DEFAULT_SKEW_MS,
                .max_plaintext = KMS_SESSION_DEFAULT_MAX_PLAINTEXT,
                .reorder_window = KMS_SESSION_DEFAULT_REORDER_WINDOW,
        };
}

static bool params_valid(const struct kms_session_crypto_params *p)
{
        return p->ttl_ms >= 1 && p->ttl_ms <= KMS_SESSION_MAX_TTL_MS && p->max_messages >= 1 &&
               p->max_messages <= KMS_SESSION_MAX_MESSAGES_CEILING && p->stale_ms >= 1 &&
               p->stale_ms <= KMS_SESSION_MAX_WINDOW_MS && p->skew_ms <= KMS_SESSION_MAX_WINDOW_MS &&
               p->max_plaintext <= KMS_SESSION_MAX_PLAINTEXT_CEILING &&
               p->reorder_window <= KMS_SESSION_MAX_REORDER_WINDOW;
}

void kms_session_crypto_free(struct kms_session_crypto *s)
{
        if (!s)
                return;
        OPENSSL_secure_clear_free(s->secrets, sizeof(*s->secrets));
        OPENSSL_clear_free(s, sizeof(*s));
}

int kms_session_crypto_new(enum kms_session_role role, const uint8_t *z, size_t z_len, const uint8_t *spki_local,
                           size_t spki_local_len, const uint8_t *spki_peer, size_t spki_peer_len,
                           const uint8_t *context, size_t context_len, const struct kms_session_crypto_params *params,
                           uint64_t now_ms, struct kms_session_crypto **ret)
{
        struct kms_session_crypto_params p;
        struct kms_session_keys keys;
        struct kms_session_crypto *s = NULL;
        bool initiator = role == KMS_SESSION_INITIATOR;
        int r;

        if (!ret || (role != KMS_SESSION_INITIATOR && role != KMS_SESSION_RESPONDER))
                return -EINVAL;
        if (params)
                p = *params;
        else
                kms_session_crypto_params_init(&p);
        if (!params_valid(&p) || now_ms > UINT64_MAX - p.ttl_ms)
                return -EINVAL;

        r = kms_session_crypto_derive(z, z_len, initiator ? spki_local : spki_peer,
                                      initiator ? spki_local_len : spki_peer_len, initiator ? spki_peer : spki_local,
                                      initiator ? spki_peer_len : spki_local_len, context, context_len, &keys);
        if (r < 0)
                return r;

        s = OPENSSL_zalloc(sizeof(*s));
        if (!s) {
                r = -ENOMEM;
                goto out;
        }
        s->secrets = OPENSSL_secure_zalloc(sizeof(*s->secrets));
        if (!s->secrets) {
                r = -ENOMEM;
                goto out;
        }
        s->role = role;
        s->send_dir = initiator ? KMS_SESSION_I2R : KMS_SESSION_R2I;
        s->recv_dir = initiator ? KMS_SESSION_R2I : KMS_SESSION_I2R;
        memcpy(s->secrets->send_key, initiator ? keys.i2r : keys.r2i, KMS_SESSION_KEY_BYTES);
        memcpy(s->secrets->recv_key, initiator ? keys.r2i : keys.i2r, KMS_SESSION_KEY_BYTES);
        memcpy(s->binding, keys.binding, sizeof(s->binding));
        s->params = p;
        s->created_ms = now_ms;
        s->expires_ms = now_ms + p.ttl_ms;
        *ret = TAKE_PTR(s);
        r = 0;
out:
        OPENSSL_cleanse(&keys, sizeof(keys));
        kms_session_crypto_free(s);
        return r;
}

bool kms_session_crypto_expired(const struct kms_session_crypto *s, uint64_t now_ms)
{
        return now_ms >= s->expires_ms;
}

void kms_session_crypto_get_info(const struct kms_session_crypto *s, struct kms_session_crypto_info *ret)
{
        *ret = (struct kms_session_crypto_info){
                .role = s->role,
                .created_ms = s->created_ms,
                .expires_ms = s->expires_ms,
                .max_messages = s->params.max_messages,
                .sent = s->sent,
                .received = s->received,
                .highest_received = s->highest,
        };
        memcpy(ret->binding, s->binding, sizeof(ret->binding));
}

/* One AES-256-GCM operation. The cipher context (which holds the expanded
 * key) lives only for this call; EVP_CIPHER_CTX_free wipes it.
 *
 * Encrypt (enc = 1): in → out, tag written to tag. Decrypt (enc = 0):
 * in → out, tag checked; returns KMS_E_SESSION_INTEGRITY if it does not
 * verify. Other libcrypto failures: -ENOMEM. out is the caller's to wipe
 * on failure. */
static int gcm_crypt(int enc, const uint8_t key[KMS_SESSION_KEY_BYTES], const uint8_t nonce[KMS_SESSION_NONCE_BYTES],
                     const uint8_t *header, const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t len,
                     uint8_t *out, uint8_t tag[KMS_ENVELOPE_TAG_BYTES])
{
        EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
        uint8_t final[16]; /* GCM's final step writes nothing; out may be NULL */
        int n = 0, r = -ENOMEM;

        if (!ctx)
                return -ENOMEM;
        if (EVP_CipherInit_ex2(ctx, EVP_aes_256_gcm(), key, nonce, enc, NULL) != 1)
                goto out;
        /* AAD = header || caller's AAD. */
        if (EVP_CipherUpdate(ctx, NULL, &n, header, KMS_ENVELOPE_HEADER_BYTES) != 1)
                goto out;
        if (aad_len > 0 && EVP_CipherUpdate(ctx, NULL, &n, aad, (int)aad_len) != 1)
                goto out;
        if (len > 0 && (EVP_CipherUpdate(ctx, out, &n, in, (int)len) != 1 || (size_t)n != len))
                goto out;
        if (enc) {
                if (EVP_CipherFinal_ex(ctx, final, &n) != 1 || n != 0 ||
                    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, KMS_ENVELOPE_TAG_BYTES, tag) != 1)
                        goto out;
        } else {
                if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, KMS_ENVELOPE_TAG_BYTES, tag) != 1)
                        goto out;
                if (EVP_CipherFinal_ex(ctx, final, &n) != 1) {
                        r = KMS_E_SESSION_INTEGRITY;
                        goto out;
                }
        }
        r = 0;
out:
        EVP_CIPHER_CTX_free(ctx);
        return r;
}

int kms_session_crypto_seal(struct kms_session_crypto *s, uint64_t now_ms, const uint8_t *plain, size_t plain_len,
                            const uint8_t *aad, size_t aad_len, uint8_t *out, size_t out_size, size_t *ret_len)
{
        uint8_t nonce[KMS_SESSION_NONCE_BYTES];
        size_t env_len;
        uint64_t seq;
        int r;

        if (!s || !out || !ret_len || (!plain && plain_len > 0) || (!aad && aad_len > 0))
                return -EINVAL;
        if (plain_len > s->params.max_plaintext || aad_len > KMS_SESSION_MAX_AAD_BYTES)
                return -EMSGSIZE;
        if (kms_session_crypto_expired(s, now_ms))
                return KMS_E_SESSION_EXPIRED;
        if (s->sent >= s->params.max_messages)
                return KMS_E_SESSION_EXHAUSTED;
        env_len = kms_session_crypto_envelope_size(plain_len);
        if (out_size < env_len)
                return -ENOBUFS;

        /* Reserve the sequence number before the key is used, so that it
         * is never used twice, whatever happens below. */
        seq = ++s->sent;
        header_write(out, s->send_dir, seq, now_ms);
        kms_session_crypto_nonce(s->send_dir, seq, nonce);
        r = gcm_crypt(1, s->secrets->send_key, nonce, out, aad, aad_len, plain, plain_len,
                      out + KMS_ENVELOPE_HEADER_BYTES, out + KMS_ENVELOPE_HEADER_BYTES + plain_len);
        if (r < 0) {
                OPENSSL_cleanse(out, env_len);
                return r;
        }
        *ret_len = env_len;
        return 0;
}

/* The replay rules on an authenticated sequence number (docs/sessions.md,
 * "Replay, reordering, staleness"). Pure: returns the verdict only. */
static int check_seq(const struct kms_session_crypto *s, uint64_t seq)
{
        uint64_t behind;

        if (seq > s->params.max_messages)
                return KMS_E_SESSION_EXHAUSTED;
        if (seq > s->highest)
                return 0;
        behind = s->highest - seq;
        if (behind < 64 && (s->seen_bits >> behind) & 1)
                return KMS_E_SESSION_REPLAY;
        if (behind <= s->params.reorder_window) /* ≤ 63, so its bit was looked at above */
                return 0;
        return KMS_E_SESSION_REORDERED;
}

static int check_timestamp(const struct kms_session_crypto *s, uint64_t now_ms, uint64_t ts)
{
        if (now_ms >= s->params.stale_ms && ts < now_ms - s->params.stale_ms)
                return KMS_E_SESSION_STALE;
        if (now_ms <= UINT64_MAX - s->params.skew_ms && ts > now_ms + s->params.skew_ms)
                return KMS_E_SESSION_STALE;
        return 0;
}

/* Record an accepted sequence number (check_seq() said 0). */
static void accept_seq(struct kms_session_crypto *s, uint64_t seq)
{
        if (seq > s->highest) {
                uint64_t shift = seq - s->highest;

                s->seen_bits = shift >= 64 ? 0 : s->seen_bits << shift;
                s->seen_bits |= 1;
                s->highest = seq;
        } else {
                s->seen_bits |= UINT64_C(1) << (s->highest - seq);
        }
        s->received++;
}

int kms_session_crypto_open(struct kms_session_crypto *s, uint64_t now_ms, const uint8_t *env, size_t env_len,
                            const uint8_t *aad, size_t aad_len, uint8_t *out, size_t out_size, size_t *ret_len)
{
        struct kms_envelope_header h;
        uint8_t nonce[KMS_SESSION_NONCE_BYTES], tag[KMS_ENVELOPE_TAG_BYTES];
        size_t ct_len;
        int r;

        if (!s || !env || !ret_len || (!out && out_size > 0) || (!aad && aad_len > 0))
                return -EINVAL;
        if (aad_len > KMS_SESSION_MAX_AAD_BYTES || env_len > KMS_ENVELOPE_OVERHEAD + s->params.max_plaintext)
                return -EMSGSIZE;
        if (kms_session_crypto_expired(s, now_ms))
                return KMS_E_SESSION_EXPIRED;
        if (s->received >= s->params.max_messages)
                return KMS_E_SESSION_EXHAUSTED;
        r = kms_session_crypto_parse_header(env, env_len, &h);
        if (r < 0)
                return r;
        if (h.direction != s->recv_dir) /* e.g. one of our own envelopes, reflected */
                return KMS_E_SESSION_MALFORMED;
        ct_len = env_len - KMS_ENVELOPE_OVERHEAD;
        if (out_size < ct_len)
                return -ENOBUFS;

        kms_session_crypto_nonce(s->recv_dir, h.seq, nonce);
        memcpy(tag, env + KMS_ENVELOPE_HEADER_BYTES + ct_len, sizeof(tag));
        r = gcm_crypt(0, s->secrets->recv_key, nonce, env, aad, aad_len, env + KMS_ENVELOPE_HEADER_BYTES, ct_len, out,
                      tag);
        if (r == 0)
                r = check_seq(s, h.seq);
        if (r == 0)
                r = check_timestamp(s, now_ms, h.timestamp_ms);
        if (r < 0) {
                if (ct_len > 0)
                        OPENSSL_cleanse(out, ct_len);
                return r;
        }

        /* Only an envelope that passed every check moves the state. */
        accept_seq(s, h.seq);
        *ret_len = ct_len;
        return 0;
}

const char *kms_session_crypto_strerror(int r)
{
        switch (r) {
        case 0: return "success";
        case -EINVAL: return "invalid argument";
        case -EMSGSIZE: return "plaintext, AAD or envelope larger than the session allows";
        case -ENOBUFS: return "output buffer too small";
        case -ENOMEM: return "out of memory or libcrypto failure";
        case KMS_E_SESSION_EXPIRED: return "the session has expired";
        case KMS_E_SESSION_EXHAUSTED: return "the session's message limit in this direction is reached";
        case KMS_E_SESSION_MALFORMED:
                return "not a version 1 envelope from the peer (too short, unknown version, "
                       "wrong direction or sequence number 0)";
        case KMS_E_SESSION_INTEGRITY:
                return "the envelope does not verify (tampered, another session's, or different AAD)";
        case KMS_E_SESSION_REPLAY: return "the envelope's sequence number was already accepted (replay)";
        case KMS_E_SESSION_REORDERED:
                return "the envelope's sequence number is behind the newest accepted one and outside the "
                       "reordering window (reordered or replayed)";
        case KMS_E_SESSION_STALE: return "the envelope's timestamp is too old or too far in the future";
        default: return "unknown error";
        }
}
