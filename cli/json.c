/* Streaming JSON writer for kmsctl --json; see json.h. */
#include "json.h"

#include <inttypes.h>

void kmsctl_json_init(struct kmsctl_json *j, FILE *f)
{
        *j = (struct kmsctl_json){.f = f, .first = true};
}

/* Separator before a value or key: a comma unless it is the first thing
 * in its container or the value of a key just written. */
static void json_prefix(struct kmsctl_json *j)
{
        if (!j->first && !j->after_key)
                fputc(',', j->f);
        j->first = false;
        j->after_key = false;
}

static void json_open(struct kmsctl_json *j, char c)
{
        json_prefix(j);
        fputc(c, j->f);
        j->depth++;
        j->first = true;
}

static void json_close(struct kmsctl_json *j, char c)
{
        fputc(c, j->f);
        j->first = false;
        if (j->depth > 0 && --j->depth == 0)
                fputc('\n', j->f); /* the document is complete */
}

void kmsctl_json_begin_object(struct kmsctl_json *j)
{
        json_open(j, '{');
}

void kmsctl_json_end_object(struct kmsctl_json *j)
{
        json_close(j, '}');
}

void kmsctl_json_begin_array(struct kmsctl_json *j)
{
        json_open(j, '[');
}

void kmsctl_json_end_array(struct kmsctl_json *j)
{
        json_close(j, ']');
}

void kmsctl_json_key(struct kmsctl_json *j, const char *key)
{
        json_prefix(j);
        kmsctl_json_write_string(j->f, key);
        fputc(':', j->f);
        j->after_key = true;
}

void kmsctl_json_string(struct kmsctl_json *j, const char *s)
{
        json_prefix(j);
        if (s)
                kmsctl_json_write_string(j->f, s);
        else
                fputs("null", j->f);
}

void kmsctl_json_uint(struct kmsctl_json *j, uint64_t v)
{
        json_prefix(j);
        fprintf(j->f, "%" PRIu64, v);
}

void kmsctl_json_int(struct kmsctl_json *j, int64_t v)
{
        json_prefix(j);
        fprintf(j->f, "%" PRId64, v);
}

void kmsctl_json_bool(struct kmsctl_json *j, bool v)
{
        json_prefix(j);
        fputs(v ? "true" : "false", j->f);
}

void kmsctl_json_null(struct kmsctl_json *j)
{
        json_prefix(j);
        fputs("null", j->f);
}

/* Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF), or 0 if there is none. */
static size_t utf8_sequence_length(const unsigned char *s)
{
        unsigned char c = s[0];

        if (c < 0x80)
                return 1;
        if (c >= 0xc2 && c <= 0xdf)
                return (s[1] & 0xc0) == 0x80 ? 2 : 0;
        if (c >= 0xe0 && c <= 0xef) {
                unsigned char lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;

                return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 ? 3 : 0;
        }
        if (c >= 0xf0 && c <= 0xf4) {
                unsigned char lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;

                return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 && (s[3] & 0xc0) == 0x80 ? 4 : 0;
        }
        return 0;
}

/* The two-character escape RFC 8259 has for c, or NULL. */
static const char *short_escape(unsigned char c)
{
        switch (c) {
        case '"': return "\\\"";
        case '\\': return "\\\\";
        case '\b': return "\\b";
        case '\f': return "\\f";
        case '\n': return "\\n";
        case '\r': return "\\r";
        case '\t': return "\\t";
        default: return NULL;
        }
}

void kmsctl_json_write_string(FILE *f, const char *s)
{
        const unsigned char *p = (const unsigned char *)s;

        fputc('"', f);
        while (*p) {
                const char *esc;
                size_t n;

                esc = short_escape(*p);
                if (esc) {
                        fputs(esc, f);
                        p++;
                        continue;
                }
                if (*p < 0x20 || *p == 0x7f) {
                        fprintf(f, "\\u%04x", *p);
                        p++;
                        continue;
                }
                /* The checks stop at a NUL, so a sequence cut short by the
                 * end of the string is invalid, never read past. */
                n = utf8_sequence_length(p);
                if (n == 0) {
                        fputs("\\ufffd", f);
                        p++;
                        continue;
                }
                fwrite(p, 1, n, f);
                p += n;
        }
        fputc('"', f);
}

void kmsctl_json_field_string(struct kmsctl_json *j, const char *key, const char *s)
{
        kmsctl_json_key(j, key);
        kmsctl_json_string(j, s);
}

void kmsctl_json_field_uint(struct kmsctl_json *j, const char *key, uint64_t v)
{
        kmsctl_json_key(j, key);
        kmsctl_json_uint(j, v);
}

void kmsctl_json_field_int(struct kmsctl_json *j, const char *key, int64_t v)
{
        kmsctl_json_key(j, key);
        kmsctl_json_int(j, v);
}

void kmsctl_json_field_bool(struct kmsctl_json *j, const char *key, bool v)
{
        kmsctl_json_key(j, key);
        kmsctl_json_bool(j, v);
}
