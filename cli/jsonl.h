/* A strict reader for JSON Lines files whose every line is one flat JSON
 * object (RFC 8259) with string, number or boolean values: what
 * `kmsctl audit export` writes and `kmsctl audit verify` reads back.
 * Anything else (nested objects or arrays, null, duplicate keys, invalid
 * UTF-8, raw control characters, trailing bytes) is refused with a message
 * that names the column, so a verifier never guesses at what a line
 * means. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* At most this many members per object: an audit record has 13. */
#define KMSCTL_JSONL_MAX_MEMBERS 32u
/* Longest line accepted, in bytes. A record's longest field (details) is
 * far shorter; a longer line is not an audit record. */
#define KMSCTL_JSONL_MAX_LINE (1024u * 1024u)
/* Room for a parse error message. */
#define KMSCTL_JSONL_ERROR_MAX 128u

enum kmsctl_jsonl_type {
        KMSCTL_JSONL_STRING,
        KMSCTL_JSONL_NUMBER,
        KMSCTL_JSONL_BOOL,
};

struct kmsctl_jsonl_member {
        char *key; /* decoded, NUL-terminated */
        enum kmsctl_jsonl_type type;
        /* STRING: the decoded value as UTF-8 (never holds a NUL: \u0000 is
         * refused). NUMBER: the literal as written. */
        char *string;
        size_t string_len;
        /* NUMBER: true when the literal is a plain unsigned integer (no
         * sign, fraction or exponent) that fits in uint64_t; its value. */
        bool is_uint;
        uint64_t uint;
        bool boolean; /* BOOL */
};

struct kmsctl_jsonl_object {
        struct kmsctl_jsonl_member members[KMSCTL_JSONL_MAX_MEMBERS];
        size_t n_members;
};

/* Parse line[0..len) (no NUL needed; a trailing "\r" or other JSON
 * whitespace is fine) as exactly one flat object into *ret, which the
 * caller frees with kmsctl_jsonl_object_done(). Returns 0; -EBADMSG with
 * err (err_size bytes, may be 0) holding "column N: what is wrong"; or
 * -ENOMEM. On failure *ret holds no members and needs no freeing. */
int kmsctl_jsonl_parse(const char *line, size_t len, struct kmsctl_jsonl_object *ret, char *err, size_t err_size);

/* Free the members of o (o itself is the caller's); NULL is fine. */
void kmsctl_jsonl_object_done(struct kmsctl_jsonl_object *o);

/* The member named key, or NULL. */
const struct kmsctl_jsonl_member *kmsctl_jsonl_get(const struct kmsctl_jsonl_object *o, const char *key);
