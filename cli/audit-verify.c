/* kmsctl audit verify FILE [--pubkey PEM]... [--first-seq N] [--last-seq N]:
 * check an export offline,
 * exactly as docs/audit.md's "Verifying" says, with nothing but the file
 * and the audit public keys; no bus.
 *
 * The file is read once, line by line; only the line before is kept. The
 * first problem ends the check: it is printed naming the seq and the line
 * and classed as altered, deleted, inserted, reordered, forged or
 * truncated. To tell a reordering from a deletion (a seq is missing here:
 * does it come later?) and an insertion from an alteration (a prev does
 * not match: does the next line repeat this seq?), the lines after the
 * problem are read ahead; nothing after the first problem is judged.
 *
 * What the file alone cannot show (an export that starts late, or one cut
 * back to an earlier checkpoint) --first-seq and --last-seq check against
 * what the operator kept: the seq the export must start at, and the
 * checkpoint seq `kmsctl audit export` printed.
 *
 * Exit status: 0 intact, 1 broken (or not an export), 2 usage (options,
 * an unreadable FILE or public key). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "audit.h"
#include "io.h"
#include "jsonl.h"
#include "kms-util.h"
#include "kmsctl.h"

/* At most this many audit public keys (one per key the token lost). */
#define VERIFY_MAX_KEYS 64u
/* A public key file is small; a file of all of them too. */
#define VERIFY_MAX_KEY_FILE (1024u * 1024u)

static const char zero_hash[] = "0000000000000000000000000000000000000000000000000000000000000000";

struct audit_key {
        EVP_PKEY *pkey;
        char fingerprint[KMSCTL_AUDIT_HASH_HEX + 1];
};

struct verify_args {
        const char *pubkey_files[VERIFY_MAX_KEYS];
        size_t n_pubkey_files;
        uint64_t first_seq; /* 0: any */
        uint64_t last_seq;  /* 0: any */
};

struct verify_state {
        struct audit_key keys[VERIFY_MAX_KEYS];
        size_t n_keys;
        const struct verify_args *args;
        FILE *f;
        char *line; /* getline() buffer */
        size_t line_cap;
        uint64_t line_no;

        /* The line before the one being checked. */
        bool have_prev;
        uint64_t first_seq;
        uint64_t prev_seq;
        uint64_t prev_line;
        char prev_hash[KMSCTL_AUDIT_HASH_HEX + 1];
        bool prev_is_signed_checkpoint;

        uint64_t n_lines, n_stubs, n_checkpoints;
};

static int handle_option(int opt, const char *arg, void *userdata)
{
        struct verify_args *a = userdata;

        if (opt == 'f' || opt == 'l') {
                uint64_t *v = opt == 'f' ? &a->first_seq : &a->last_seq;

                if (kms_parse_u64(arg, 1, INT64_MAX, v) < 0) {
                        fprintf(stderr, "kmsctl: --%s-seq '%s' is not a seq (a whole number from 1)\n",
                                opt == 'f' ? "first" : "last", arg);
                        return -EINVAL;
                }
                return 0;
        }
        if (opt != 'p')
                return -EINVAL;
        if (a->n_pubkey_files >= VERIFY_MAX_KEYS) {
                fprintf(stderr, "kmsctl: at most %u --pubkey options\n", VERIFY_MAX_KEYS);
                return -E2BIG;
        }
        a->pubkey_files[a->n_pubkey_files++] = arg;
        return 0;
}

static bool is_lower_hex(const char *s, size_t len)
{
        return strlen(s) == len && strspn(s, "0123456789abcdef") == len;
}

/* ---------------------------------------------------------------- keys */

/* Is pk an EC key on P-256? */
static bool is_p256(EVP_PKEY *pk)
{
        char group[64];
        size_t n = 0;

        return EVP_PKEY_is_a(pk, "EC") &&
               EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), &n) == 1 &&
               strcmp(group, "prime256v1") == 0;
}

/* Take pk (consumed) as one of the audit keys. Returns 0 or -EINVAL
 * (printed). */
static int add_key(struct verify_state *s, EVP_PKEY *pk, const char *path)
{
        unsigned char *der = NULL;
        int n;

        if (!is_p256(pk)) {
                fprintf(stderr, "kmsctl: '%s' holds a public key that is not EC P-256; audit keys are ec-p256\n", path);
                EVP_PKEY_free(pk);
                return -EINVAL;
        }
        if (s->n_keys >= VERIFY_MAX_KEYS) {
                fprintf(stderr, "kmsctl: more than %u audit public keys\n", VERIFY_MAX_KEYS);
                EVP_PKEY_free(pk);
                return -E2BIG;
        }
        n = i2d_PUBKEY(pk, &der);
        if (n <= 0 || kmsctl_audit_sha256_hex(der, (size_t)n, s->keys[s->n_keys].fingerprint) < 0) {
                OPENSSL_free(der);
                EVP_PKEY_free(pk);
                fprintf(stderr, "kmsctl: cannot encode the public key in '%s'\n", path);
                return -ENOMEM;
        }
        OPENSSL_free(der);
        s->keys[s->n_keys++].pkey = pk;
        return 0;
}

/* Every public key in path: one or more PEM "PUBLIC KEY" blocks (what
 * kmsctl audit pubkey --all writes), or one DER SubjectPublicKeyInfo. */
static int load_keys(struct verify_state *s, const char *path)
{
        _cleanup_(freep) uint8_t *file = NULL;
        size_t len = 0, before = s->n_keys;
        EVP_PKEY *pk;
        int r;

        r = kmsctl_read_file(path, VERIFY_MAX_KEY_FILE, &file, &len);
        if (r < 0)
                return r;
        if (memmem(file, len, "-----BEGIN ", 11)) {
                BIO *bio = BIO_new_mem_buf(file, (int)len);

                if (!bio)
                        return -ENOMEM;
                while ((pk = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL))) {
                        r = add_key(s, pk, path);
                        if (r < 0)
                                break;
                }
                BIO_free(bio);
                ERR_clear_error();
                if (r < 0)
                        return r;
        } else {
                const unsigned char *p = file;

                pk = d2i_PUBKEY(NULL, &p, (long)len);
                ERR_clear_error();
                if (pk && p != file + len) {
                        EVP_PKEY_free(pk);
                        pk = NULL;
                }
                if (pk) {
                        r = add_key(s, pk, path);
                        if (r < 0)
                                return r;
                }
        }
        if (s->n_keys == before) {
                fprintf(stderr, "kmsctl: '%s' holds no public key (PEM \"BEGIN PUBLIC KEY\" or DER)\n", path);
                return -EINVAL;
        }
        return 0;
}

static const struct audit_key *find_key(const struct verify_state *s, const char *fingerprint)
{
        for (size_t i = 0; i < s->n_keys; i++)
                if (strcmp(s->keys[i].fingerprint, fingerprint) == 0)
                        return &s->keys[i];
        return NULL;
}

/* Does sig (DER) verify over msg with key (ECDSA with SHA-256)? */
static bool signature_verifies(const struct audit_key *key, const uint8_t *sig, size_t sig_len, const uint8_t *msg,
                               size_t msg_len)
{
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        bool ok;

        ok = ctx && EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, key->pkey) == 1 &&
             EVP_DigestVerify(ctx, sig, sig_len, msg, msg_len) == 1;
        EVP_MD_CTX_free(ctx);
        ERR_clear_error();
        return ok;
}

/* ---------------------------------------------------------------- lines */

/* Read the next line into s->line without its end ("\n"). Returns 1, 0 at
 * the end of the file, or -errno (printed). */
static int read_line(struct verify_state *s, const char *path, size_t *ret_len)
{
        ssize_t n;

        errno = 0;
        n = getline(&s->line, &s->line_cap, s->f);
        if (n < 0) {
                if (ferror(s->f)) {
                        fprintf(stderr, "kmsctl: cannot read '%s': %s\n", path, strerror(errno));
                        return -EIO;
                }
                return 0;
        }
        if (n > 0 && s->line[n - 1] == '\n')
                n--;
        s->line_no++;
        *ret_len = (size_t)n;
        return 1;
}

/* An unsigned number field at most max. */
static bool get_uint(const struct kmsctl_jsonl_object *o, const char *key, uint64_t max, uint64_t *ret, char *why,
                     size_t why_size)
{
        const struct kmsctl_jsonl_member *m = kmsctl_jsonl_get(o, key);

        if (!m) {
                snprintf(why, why_size, "no \"%s\"", key);
                return false;
        }
        if (m->type != KMSCTL_JSONL_NUMBER || !m->is_uint || m->uint > max) {
                snprintf(why, why_size, "\"%s\" is not a whole number from 0 to %" PRIu64, key, max);
                return false;
        }
        *ret = m->uint;
        return true;
}

static bool get_string(const struct kmsctl_jsonl_object *o, const char *key, const char **ret, char *why,
                       size_t why_size)
{
        const struct kmsctl_jsonl_member *m = kmsctl_jsonl_get(o, key);

        if (!m) {
                snprintf(why, why_size, "no \"%s\"", key);
                return false;
        }
        if (m->type != KMSCTL_JSONL_STRING) {
                snprintf(why, why_size, "\"%s\" is not a string", key);
                return false;
        }
        *ret = m->string;
        return true;
}

/* "2026-11-26T01:02:03.456Z", by its shape. */
static bool is_record_time(const char *t)
{
        static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";

        if (strlen(t) != sizeof(shape) - 1)
                return false;
        for (size_t i = 0; shape[i]; i++)
                if (shape[i] == 'd' ? !(t[i] >= '0' && t[i] <= '9') : t[i] != shape[i])
                        return false;
        return true;
}

/* The first member of o whose name is not in names, or NULL. */
static const char *unknown_member(const struct kmsctl_jsonl_object *o, const char *const *names, size_t n_names)
{
        for (size_t i = 0; i < o->n_members; i++) {
                bool known = false;

                for (size_t k = 0; k < n_names && !known; k++)
                        known = strcmp(o->members[i].key, names[k]) == 0;
                if (!known)
                        return o->members[i].key;
        }
        return NULL;
}

/* The record or stub in o, checked against "What a record holds". The
 * strings point into o. Returns true, or false with why. */
static bool record_from_object(const struct kmsctl_jsonl_object *o, struct kmsctl_audit_record *rec, char *why,
                               size_t why_size)
{
        static const char *const record_fields[] = {"seq",     "time",      "kind",     "uid",     "pid",
                                                    "exe",     "operation", "key",      "version", "result",
                                                    "details", "prev",      "signature"};
        static const char *const stub_fields[] = {"seq", "redacted", "prev", "body"};
        const struct kmsctl_jsonl_member *redacted = kmsctl_jsonl_get(o, "redacted");
        struct kmsctl_audit_record v = {0};
        const char *unknown;
        uint64_t u;

        if (!get_uint(o, "seq", UINT64_MAX, &v.seq, why, why_size))
                return false;
        if (v.seq == 0) {
                snprintf(why, why_size, "\"seq\" is 0");
                return false;
        }
        if (redacted) {
                unknown = unknown_member(o, stub_fields, ELEMENTSOF(stub_fields));
                if (unknown) {
                        snprintf(why, why_size, "a stub with the field \"%.40s\"", unknown);
                        return false;
                }
                if (redacted->type != KMSCTL_JSONL_BOOL || !redacted->boolean) {
                        snprintf(why, why_size, "\"redacted\" is not true");
                        return false;
                }
                if (!get_string(o, "prev", &v.prev, why, why_size) || !get_string(o, "body", &v.body, why, why_size))
                        return false;
                if (!is_lower_hex(v.prev, KMSCTL_AUDIT_HASH_HEX)) {
                        snprintf(why, why_size, "\"prev\" is not 64 lower-case hex digits");
                        return false;
                }
                if (!is_lower_hex(v.body, KMSCTL_AUDIT_HASH_HEX)) {
                        snprintf(why, why_size, "\"body\" is not 64 lower-case hex digits");
                        return false;
                }
                v.redacted = true;
                *rec = v;
                return true;
        }
        unknown = unknown_member(o, record_fields, ELEMENTSOF(record_fields));
        if (unknown) {
                snprintf(why, why_size, "unknown field \"%.40s\"", unknown);
                return false;
        }
        if (!get_string(o, "time", &v.time, why, why_size) || !get_string(o, "kind", &v.kind, why, why_size) ||
            !get_uint(o, "uid", UINT32_MAX, &u, why, why_size))
                return false;
        v.uid = (uint32_t)u;
        if (!get_uint(o, "pid", UINT32_MAX, &u, why, why_size))
                return false;
        v.pid = (uint32_t)u;
        if (!get_string(o, "exe", &v.exe, why, why_size) || !get_string(o, "operation", &v.operation, why, why_size) ||
            !get_string(o, "key", &v.key, why, why_size) || !get_uint(o, "version", UINT32_MAX, &u, why, why_size))
                return false;
        v.version = (uint32_t)u;
        if (!get_string(o, "result", &v.result, why, why_size) ||
            !get_string(o, "details", &v.details, why, why_size) || !get_string(o, "prev", &v.prev, why, why_size))
                return false;
        if (!is_record_time(v.time)) {
                snprintf(why, why_size, "\"time\" is not like 2026-11-26T01:02:03.456Z");
                return false;
        }
        if (!is_lower_hex(v.prev, KMSCTL_AUDIT_HASH_HEX)) {
                snprintf(why, why_size, "\"prev\" is not 64 lower-case hex digits");
                return false;
        }
        if (kmsctl_jsonl_get(o, "signature")) {
                if (!get_string(o, "signature", &v.signature, why, why_size))
                        return false;
                if (strcmp(v.kind, "checkpoint") != 0) {
                        snprintf(why, why_size, "a \"signature\" on a record of kind \"%.40s\"", v.kind);
                        return false;
                }
                if (v.signature[0] == '\0' || !is_lower_hex(v.signature, strlen(v.signature)) ||
                    strlen(v.signature) % 2 != 0) {
                        snprintf(why, why_size, "\"signature\" is not lower-case hex");
                        return false;
                }
        }
        *rec = v;
        return true;
}

/* The seq of the next line, for looking ahead. Returns 1, 0 at the end,
 * or -1 for a line that is not a record (the look-ahead stops there). */
static int next_seq(struct verify_state *s, const char *path, uint64_t *ret)
{
        struct kmsctl_jsonl_object o;
        const struct kmsctl_jsonl_member *m;
        size_t len;
        int r;

        r = read_line(s, path, &len);
        if (r <= 0)
                return r < 0 ? -1 : 0;
        if (kmsctl_jsonl_parse(s->line, len, &o, NULL, 0) < 0)
                return -1;
        m = kmsctl_jsonl_get(&o, "seq");
        r = m && m->type == KMSCTL_JSONL_NUMBER && m->is_uint ? 1 : -1;
        if (r > 0)
                *ret = m->uint;
        kmsctl_jsonl_object_done(&o);
        return r;
}

/* seq jumped from s->prev_seq to seq at the current line: a deletion, or
 * the first sign of a reordering (a missing seq comes later, after a
 * step back). Prints which and returns KMS_EXIT_FAILURE. */
static int report_gap(struct verify_state *s, const char *path, uint64_t seq)
{
        uint64_t missing_first = s->prev_seq + 1, missing_last = seq - 1, last = seq, next;
        uint64_t gap_line = s->line_no;

        while (next_seq(s, path, &next) > 0) {
                if (next <= last) {
                        if (next >= missing_first && next <= missing_last) {
                                printf("line %" PRIu64 ": seq %" PRIu64 " after seq %" PRIu64 ": reordered\n",
                                       s->line_no, next, last);
                                return KMS_EXIT_FAILURE;
                        }
                        break;
                }
                last = next;
        }
        if (missing_first == missing_last)
                printf("record seq %" PRIu64 " missing after line %" PRIu64 ": deleted\n", missing_first, gap_line - 1);
        else
                printf("records seq %" PRIu64 "..%" PRIu64 " missing after line %" PRIu64 ": deleted\n", missing_first,
                       missing_last, gap_line - 1);
        return KMS_EXIT_FAILURE;
}

/* Rules 2 and 3: seq goes up by one, prev is the hash of the line
 * before (for a stub as for a record). Returns KMS_EXIT_OK or
 * KMS_EXIT_FAILURE (printed). */
static int check_link(struct verify_state *s, const char *path, const struct kmsctl_audit_record *rec)
{
        uint64_t next;

        if (!s->have_prev) {
                if (s->args->first_seq > 0 && rec->seq != s->args->first_seq) {
                        printf("the export starts at seq %" PRIu64 ", not at seq %" PRIu64 " (--first-seq): %s\n",
                               rec->seq, s->args->first_seq,
                               rec->seq > s->args->first_seq ? "records before it are missing, cut at the front"
                                                             : "it starts earlier than expected");
                        return KMS_EXIT_FAILURE;
                }
                if (rec->seq == 1 && strcmp(rec->prev, zero_hash) != 0) {
                        printf("record seq 1 (line %" PRIu64 "): altered — its prev is not 64 zeros\n", s->line_no);
                        return KMS_EXIT_FAILURE;
                }
                return KMS_EXIT_OK;
        }
        if (rec->seq > s->prev_seq && rec->seq - s->prev_seq > 1)
                return report_gap(s, path, rec->seq);
        if (rec->seq == s->prev_seq || (rec->seq < s->prev_seq && rec->seq >= s->first_seq)) {
                printf("line %" PRIu64 ": seq %" PRIu64 " again: inserted\n", s->line_no, rec->seq);
                return KMS_EXIT_FAILURE;
        }
        if (rec->seq < s->prev_seq) {
                printf("line %" PRIu64 ": seq %" PRIu64 " after seq %" PRIu64 ": reordered\n", s->line_no, rec->seq,
                       s->prev_seq);
                return KMS_EXIT_FAILURE;
        }
        if (strcmp(rec->prev, s->prev_hash) == 0)
                return KMS_EXIT_OK;
        /* A record slipped in before the real one with the same seq? */
        if (next_seq(s, path, &next) > 0 && next == rec->seq) {
                printf("line %" PRIu64 ": seq %" PRIu64 " again: inserted\n", s->line_no, next);
                return KMS_EXIT_FAILURE;
        }
        printf("record seq %" PRIu64 " (line %" PRIu64 "): altered — its hash does not match the prev of seq %" PRIu64
               "\n",
               s->prev_seq, s->prev_line, rec->seq);
        return KMS_EXIT_FAILURE;
}

/* "records=N key=FINGERPRINT" with N the checkpoint's own seq: the
 * fingerprint into ret. */
static bool checkpoint_details(const struct kmsctl_audit_record *rec, char ret[static KMSCTL_AUDIT_HASH_HEX + 1])
{
        char want[64];
        size_t n;

        n = (size_t)snprintf(want, sizeof(want), "records=%" PRIu64 " key=", rec->seq);
        if (strncmp(rec->details, want, n) != 0 || !is_lower_hex(rec->details + n, KMSCTL_AUDIT_HASH_HEX))
                return false;
        memcpy(ret, rec->details + n, KMSCTL_AUDIT_HASH_HEX + 1);
        return true;
}

/* Rule 4 for a checkpoint: its signature (ECDSA P-256 with SHA-256 over
 * the 64 bytes prev || body) verifies with the key its details name,
 * which is one of the given keys. msg is prev || body. Without keys only
 * the shape is checked. */
static int check_checkpoint(struct verify_state *s, const struct kmsctl_audit_record *rec, const uint8_t msg[64])
{
        _cleanup_(freep) uint8_t *sig = NULL;
        char fingerprint[KMSCTL_AUDIT_HASH_HEX + 1];
        const struct audit_key *key;
        size_t sig_len = 0;

        if (!rec->signature) {
                printf("checkpoint seq %" PRIu64 " (line %" PRIu64 "): no signature: forged\n", rec->seq, s->line_no);
                return KMS_EXIT_FAILURE;
        }
        if (!checkpoint_details(rec, fingerprint)) {
                printf("checkpoint seq %" PRIu64 " (line %" PRIu64 "): its details are not 'records=%" PRIu64
                       " key=FINGERPRINT': forged\n",
                       rec->seq, s->line_no, rec->seq);
                return KMS_EXIT_FAILURE;
        }
        s->n_checkpoints++;
        if (s->n_keys == 0)
                return KMS_EXIT_OK;
        if (kms_hex_decode(rec->signature, &sig, &sig_len) < 0)
                return kmsctl_log_oom(); /* the shape was checked */
        key = find_key(s, fingerprint);
        if (!key) {
                for (size_t i = 0; i < s->n_keys; i++)
                        if (signature_verifies(&s->keys[i], sig, sig_len, msg, 64)) {
                                printf("checkpoint seq %" PRIu64 " (line %" PRIu64
                                       "): signed with key %s but its details name key %s: forged\n",
                                       rec->seq, s->line_no, s->keys[i].fingerprint, fingerprint);
                                return KMS_EXIT_FAILURE;
                        }
                printf("checkpoint seq %" PRIu64 " (line %" PRIu64
                       "): signed by key %s, which is none of the given public keys: forged\n",
                       rec->seq, s->line_no, fingerprint);
                return KMS_EXIT_FAILURE;
        }
        if (!signature_verifies(key, sig, sig_len, msg, 64)) {
                printf("checkpoint seq %" PRIu64 " (line %" PRIu64 "): signature does not verify: forged\n", rec->seq,
                       s->line_no);
                return KMS_EXIT_FAILURE;
        }
        return KMS_EXIT_OK;
}

/* One line: parse, link, hash, checkpoint. */
static int check_line(struct verify_state *s, const char *path, size_t len)
{
        struct kmsctl_jsonl_object o;
        struct kmsctl_audit_record rec;
        char why[KMSCTL_JSONL_ERROR_MAX + 64], body[KMSCTL_AUDIT_HASH_HEX + 1], hash[KMSCTL_AUDIT_HASH_HEX + 1];
        uint8_t msg[64];
        int r;

        r = kmsctl_jsonl_parse(s->line, len, &o, why, sizeof(why));
        if (r == -ENOMEM)
                return kmsctl_log_oom();
        if (r < 0 || !record_from_object(&o, &rec, why, sizeof(why))) {
                printf("line %" PRIu64 ": %s: not an audit record\n", s->line_no, why);
                kmsctl_jsonl_object_done(&o);
                return KMS_EXIT_FAILURE;
        }
        r = check_link(s, path, &rec);
        if (r != KMS_EXIT_OK)
                goto out;
        /* body: a stub's given one, a record's from its fields; hash =
         * SHA-256(prev || body). prev and body are 64 hex digits here. */
        if (kmsctl_audit_body_hex(&rec, body) < 0 || kmsctl_audit_link_message(rec.prev, body, msg) < 0 ||
            kmsctl_audit_sha256_hex(msg, sizeof(msg), hash) < 0) {
                r = kmsctl_log_oom();
                goto out;
        }
        if (rec.redacted)
                s->n_stubs++;
        else if (kmsctl_audit_is_checkpoint(&rec)) {
                r = check_checkpoint(s, &rec, msg);
                if (r != KMS_EXIT_OK)
                        goto out;
        }
        if (!s->have_prev)
                s->first_seq = rec.seq;
        s->have_prev = true;
        s->prev_seq = rec.seq;
        s->prev_line = s->line_no;
        s->prev_is_signed_checkpoint = kmsctl_audit_is_checkpoint(&rec) && rec.signature;
        memcpy(s->prev_hash, hash, sizeof(hash));
        s->n_lines++;
out:
        kmsctl_jsonl_object_done(&o);
        return r;
}

static int verify_file(struct verify_state *s, const char *path)
{
        size_t len;
        int r;

        for (;;) {
                r = read_line(s, path, &len);
                if (r < 0)
                        return KMS_EXIT_FAILURE;
                if (r == 0)
                        break;
                r = check_line(s, path, len);
                if (r != KMS_EXIT_OK)
                        return r;
        }
        if (s->n_lines == 0) {
                printf("the export holds no records\n");
                return KMS_EXIT_FAILURE;
        }
        /* Rule 5; a checkpoint here has passed check_checkpoint(). */
        if (!s->prev_is_signed_checkpoint) {
                printf("the export does not end with a signed checkpoint: truncated, or its last checkpoint removed\n");
                return KMS_EXIT_FAILURE;
        }
        if (s->args->last_seq > 0 && s->prev_seq < s->args->last_seq) {
                printf("the export ends with checkpoint seq %" PRIu64 ", before seq %" PRIu64
                       " (--last-seq): records after it are missing, cut back to an earlier checkpoint\n",
                       s->prev_seq, s->args->last_seq);
                return KMS_EXIT_FAILURE;
        }
        if (s->n_stubs > 0)
                printf("%" PRIu64 " records (%" PRIu64 " stubs), chain intact, ", s->n_lines, s->n_stubs);
        else
                printf("%" PRIu64 " records, chain intact, ", s->n_lines);
        if (s->n_keys > 0)
                printf("%" PRIu64 " checkpoints verified\n", s->n_checkpoints);
        else {
                printf("%" PRIu64 " checkpoints not checked (no --pubkey)\n", s->n_checkpoints);
                fprintf(stderr, "kmsctl: without --pubkey only the chain was checked: whoever can edit the file can "
                                "rebuild a chain; give the audit public key (kmsctl audit pubkey) to check the "
                                "checkpoints' signatures\n");
        }
        return KMS_EXIT_OK;
}

int kmsctl_audit_verify_main(const struct kmsctl_command *cmd, int argc, char **argv)
{
        static const struct option options[] = {
                {"pubkey", required_argument, NULL, 'p'},
                {"first-seq", required_argument, NULL, 'f'},
                {"last-seq", required_argument, NULL, 'l'},
                {},
        };
        struct verify_args a = {0};
        struct verify_state s = {.args = &a};
        char *path;
        int r;

        r = kmsctl_parse_args(cmd, argc, argv, options, handle_option, &a, 1, &path);
        if (r != KMSCTL_CONTINUE)
                return r;
        for (size_t i = 0; i < a.n_pubkey_files; i++)
                if (load_keys(&s, a.pubkey_files[i]) < 0) {
                        r = KMS_EXIT_USAGE;
                        goto out;
                }
        s.f = strcmp(path, "-") == 0 ? stdin : fopen(path, "re");
        if (!s.f) {
                fprintf(stderr, "kmsctl: cannot open '%s': %s\n", path, strerror(errno));
                r = KMS_EXIT_USAGE;
                goto out;
        }
        r = verify_file(&s, path);
out:
        if (s.f && s.f != stdin)
                fclose(s.f);
        free(s.line);
        for (size_t i = 0; i < s.n_keys; i++)
                EVP_PKEY_free(s.keys[i].pkey);
        return r;
}
