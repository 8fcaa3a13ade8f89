/* A small streaming JSON writer for --json: one document per run, compact,
 * written to a FILE (stdout). Commas and nesting are tracked here, strings
 * are escaped per RFC 8259 and invalid UTF-8 becomes U+FFFD, so whatever
 * the daemon or the command line hands over the output always parses.
 * Write errors show up in ferror(f), which main() checks at exit. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct kmsctl_json {
        FILE *f;
        unsigned depth;
        bool first;     /* nothing written yet in the open container */
        bool after_key; /* a key was written; its value comes next */
};

void kmsctl_json_init(struct kmsctl_json *j, FILE *f);
void kmsctl_json_begin_object(struct kmsctl_json *j);
void kmsctl_json_end_object(struct kmsctl_json *j);
void kmsctl_json_begin_array(struct kmsctl_json *j);
void kmsctl_json_end_array(struct kmsctl_json *j);
void kmsctl_json_key(struct kmsctl_json *j, const char *key);
void kmsctl_json_string(struct kmsctl_json *j, const char *s);
void kmsctl_json_uint(struct kmsctl_json *j, uint64_t v);
void kmsctl_json_int(struct kmsctl_json *j, int64_t v);
void kmsctl_json_bool(struct kmsctl_json *j, bool v);
void kmsctl_json_null(struct kmsctl_json *j);
/* A key and its value in one call. */
void kmsctl_json_field_string(struct kmsctl_json *j, const char *key, const char *s);
void kmsctl_json_field_uint(struct kmsctl_json *j, const char *key, uint64_t v);
void kmsctl_json_field_int(struct kmsctl_json *j, const char *key, int64_t v);
void kmsctl_json_field_bool(struct kmsctl_json *j, const char *key, bool v);

/* Write s as a JSON string literal (with the quotes) to f. */
void kmsctl_json_write_string(FILE *f, const char *s);
