/* Strict flat-object JSON Lines reader; see jsonl.h. The input is
 * untrusted (an export anyone may have edited): every byte is read
 * through the cursor below, which never looks past len. */
#include "jsonl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kms-util.h"

struct cursor {
        const unsigned char *p;
        size_t len;
        size_t off;
        char *err;
        size_t err_size;
};

static int fail(struct cursor *c, const char *fmt, ...) _printf_(2, 3);
static int fail(struct cursor *c, const char *fmt, ...)
{
        va_list ap;
        int n;

        if (c->err_size == 0)
                return -EBADMSG;
        n = snprintf(c->err, c->err_size, "column %zu: ", c->off + 1);
        if (n >= 0 && (size_t)n < c->err_size) {
                va_start(ap, fmt);
                vsnprintf(c->err + n, c->err_size - (size_t)n, fmt, ap);
                va_end(ap);
        }
        return -EBADMSG;
}

static bool at_end(const struct cursor *c)
{
        return c->off >= c->len;
}

/* The byte at the cursor, or -1 at the end. */
static int peek(const struct cursor *c)
{
        return at_end(c) ? -1 : c->p[c->off];
}

static void skip_space(struct cursor *c)
{
        while (!at_end(c) &&
               (c->p[c->off] == ' ' || c->p[c->off] == '\t' || c->p[c->off] == '\r' || c->p[c->off] == '\n'))
                c->off++;
}

/* Consume the literal word (true, false) if it is next. */
static bool take_word(struct cursor *c, const char *word)
{
        size_t n = strlen(word);

        if (c->len - c->off < n || memcmp(c->p + c->off, word, n) != 0)
                return false;
        c->off += n;
        return true;
}

/* Length of the well-formed UTF-8 sequence at p (avail bytes left): RFC
 * 3629, no overlong forms, no surrogates, nothing above U+10FFFF. 0 if
 * there is none. */
static size_t utf8_length(const unsigned char *p, size_t avail)
{
        unsigned char b = p[0];

        if (b < 0x80)
                return 1;
        if (b >= 0xc2 && b <= 0xdf)
                return avail >= 2 && (p[1] & 0xc0) == 0x80 ? 2 : 0;
        if (b >= 0xe0 && b <= 0xef) {
                unsigned char lo = b == 0xe0 ? 0xa0 : 0x80, hi = b == 0xed ? 0x9f : 0xbf;

                return avail >= 3 && p[1] >= lo && p[1] <= hi && (p[2] & 0xc0) == 0x80 ? 3 : 0;
        }
        if (b >= 0xf0 && b <= 0xf4) {
                unsigned char lo = b == 0xf0 ? 0x90 : 0x80, hi = b == 0xf4 ? 0x8f : 0xbf;

                return avail >= 4 && p[1] >= lo && p[1] <= hi && (p[2] & 0xc0) == 0x80 && (p[3] & 0xc0) == 0x80 ? 4 : 0;
        }
        return 0;
}

/* Append code point cp (valid, not a surrogate) to out as UTF-8. */
static size_t utf8_put(char *out, uint32_t cp)
{
        if (cp < 0x80) {
                out[0] = (char)cp;
                return 1;
        }
        if (cp < 0x800) {
                out[0] = (char)(0xc0 | cp >> 6);
                out[1] = (char)(0x80 | (cp & 0x3f));
                return 2;
        }
        if (cp < 0x10000) {
                out[0] = (char)(0xe0 | cp >> 12);
                out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
                out[2] = (char)(0x80 | (cp & 0x3f));
                return 3;
        }
        out[0] = (char)(0xf0 | cp >> 18);
        out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
        out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
        out[3] = (char)(0x80 | (cp & 0x3f));
        return 4;
}

/* Read the four hex digits after "\u". Returns 0 or -EBADMSG. */
static int read_hex4(struct cursor *c, uint32_t *ret)
{
        uint32_t v = 0;

        if (c->len - c->off < 4)
                return fail(c, "\\u needs four hex digits");
        for (unsigned i = 0; i < 4; i++) {
                unsigned char h = c->p[c->off];

                v <<= 4;
                if (h >= '0' && h <= '9')
                        v |= (uint32_t)(h - '0');
                else if (h >= 'a' && h <= 'f')
                        v |= (uint32_t)(h - 'a' + 10);
                else if (h >= 'A' && h <= 'F')
                        v |= (uint32_t)(h - 'A' + 10);
                else
                        return fail(c, "\\u needs four hex digits");
                c->off++;
        }
        *ret = v;
        return 0;
}

/* After "\u": the code point, combining a surrogate pair. */
static int read_unicode_escape(struct cursor *c, uint32_t *ret)
{
        uint32_t hi, lo;
        int r;

        r = read_hex4(c, &hi);
        if (r < 0)
                return r;
        if (hi >= 0xdc00 && hi <= 0xdfff)
                return fail(c, "lone low surrogate \\u%04x", (unsigned)hi);
        if (hi < 0xd800 || hi > 0xdbff) {
                if (hi == 0)
                        return fail(c, "\\u0000 (NUL) in a string");
                *ret = hi;
                return 0;
        }
        if (c->len - c->off < 2 || c->p[c->off] != '\\' || c->p[c->off + 1] != 'u')
                return fail(c, "high surrogate \\u%04x not followed by a low one", (unsigned)hi);
        c->off += 2;
        r = read_hex4(c, &lo);
        if (r < 0)
                return r;
        if (lo < 0xdc00 || lo > 0xdfff)
                return fail(c, "high surrogate \\u%04x followed by \\u%04x, not a low surrogate", (unsigned)hi,
                            (unsigned)lo);
        *ret = 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
        return 0;
}

/* A string literal at the cursor (which is at its opening quote), decoded
 * into a new NUL-terminated buffer. */
static int read_string(struct cursor *c, char **ret, size_t *ret_len)
{
        _cleanup_(freep) char *out = NULL;
        size_t n = 0, start;
        int r;

        if (peek(c) != '"')
                return fail(c, "expected a string");
        c->off++;
        start = c->off;
        /* Decoded text is never longer than the literal. */
        out = malloc(c->len - start + 1);
        if (!out)
                return -ENOMEM;
        for (;;) {
                unsigned char b;
                size_t k;

                if (at_end(c))
                        return fail(c, "unterminated string");
                b = c->p[c->off];
                if (b == '"') {
                        c->off++;
                        break;
                }
                if (b < 0x20)
                        return fail(c, "control character 0x%02x in a string (must be escaped)", b);
                if (b != '\\') {
                        k = utf8_length(c->p + c->off, c->len - c->off);
                        if (k == 0)
                                return fail(c, "invalid UTF-8 in a string");
                        memcpy(out + n, c->p + c->off, k);
                        n += k;
                        c->off += k;
                        continue;
                }
                c->off++;
                if (at_end(c))
                        return fail(c, "unterminated escape");
                b = c->p[c->off++];
                switch (b) {
                case '"': out[n++] = '"'; break;
                case '\\': out[n++] = '\\'; break;
                case '/': out[n++] = '/'; break;
                case 'b': out[n++] = '\b'; break;
                case 'f': out[n++] = '\f'; break;
                case 'n': out[n++] = '\n'; break;
                case 'r': out[n++] = '\r'; break;
                case 't': out[n++] = '\t'; break;
                case 'u': {
                        uint32_t cp = 0;

                        r = read_unicode_escape(c, &cp);
                        if (r < 0)
                                return r;
                        /* Six or twelve input bytes make at most four. */
                        n += utf8_put(out + n, cp);
                        break;
                }
                default: c->off--; return fail(c, "unknown escape '\\%c'", b >= 0x20 && b < 0x7f ? b : '?');
                }
        }
        out[n] = '\0';
        *ret = TAKE_PTR(out);
        *ret_len = n;
        return 0;
}

/* A number literal (RFC 8259 grammar) at the cursor. */
static int read_number(struct cursor *c, struct kmsctl_jsonl_member *m)
{
        size_t start = c->off;
        bool plain = true, overflow = false;
        uint64_t v = 0;
        char *lit;

        if (peek(c) == '-') {
                plain = false;
                c->off++;
        }
        if (peek(c) == '0') {
                c->off++;
                if (peek(c) >= '0' && peek(c) <= '9')
                        return fail(c, "number with a leading zero");
        } else if (peek(c) >= '1' && peek(c) <= '9') {
                while (peek(c) >= '0' && peek(c) <= '9') {
                        unsigned d = (unsigned)(peek(c) - '0');

                        if (v > (UINT64_MAX - d) / 10)
                                overflow = true;
                        else
                                v = v * 10 + d;
                        c->off++;
                }
        } else
                return fail(c, "expected a digit");
        if (peek(c) == '.') {
                plain = false;
                c->off++;
                if (!(peek(c) >= '0' && peek(c) <= '9'))
                        return fail(c, "expected a digit after '.'");
                while (peek(c) >= '0' && peek(c) <= '9')
                        c->off++;
        }
        if (peek(c) == 'e' || peek(c) == 'E') {
                plain = false;
                c->off++;
                if (peek(c) == '+' || peek(c) == '-')
                        c->off++;
                if (!(peek(c) >= '0' && peek(c) <= '9'))
                        return fail(c, "expected a digit in the exponent");
                while (peek(c) >= '0' && peek(c) <= '9')
                        c->off++;
        }
        lit = strndup((const char *)c->p + start, c->off - start);
        if (!lit)
                return -ENOMEM;
        m->type = KMSCTL_JSONL_NUMBER;
        m->string = lit;
        m->string_len = c->off - start;
        m->is_uint = plain && !overflow;
        m->uint = m->is_uint ? v : 0;
        return 0;
}

static int read_value(struct cursor *c, struct kmsctl_jsonl_member *m)
{
        int b = peek(c);

        switch (b) {
        case '"': m->type = KMSCTL_JSONL_STRING; return read_string(c, &m->string, &m->string_len);
        case 't':
        case 'f':
                if (take_word(c, "true") || take_word(c, "false")) {
                        m->type = KMSCTL_JSONL_BOOL;
                        m->boolean = b == 't';
                        return 0;
                }
                return fail(c, "expected a value");
        case 'n': return fail(c, "null is not accepted here");
        case '{':
        case '[': return fail(c, "nested objects and arrays are not accepted here");
        case -1: return fail(c, "expected a value, found the end of the line");
        default:
                if (b == '-' || (b >= '0' && b <= '9'))
                        return read_number(c, m);
                return fail(c, "expected a value");
        }
}

static void member_done(struct kmsctl_jsonl_member *m)
{
        free(m->key);
        free(m->string);
        *m = (struct kmsctl_jsonl_member){0};
}

void kmsctl_jsonl_object_done(struct kmsctl_jsonl_object *o)
{
        if (!o)
                return;
        for (size_t i = 0; i < o->n_members; i++)
                member_done(&o->members[i]);
        o->n_members = 0;
}

const struct kmsctl_jsonl_member *kmsctl_jsonl_get(const struct kmsctl_jsonl_object *o, const char *key)
{
        for (size_t i = 0; o && key && i < o->n_members; i++)
                if (strcmp(o->members[i].key, key) == 0)
                        return &o->members[i];
        return NULL;
}

static int parse_object(struct cursor *c, struct kmsctl_jsonl_object *o)
{
        size_t key_len;
        int r;

        skip_space(c);
        if (peek(c) != '{')
                return fail(c, "expected '{'");
        c->off++;
        skip_space(c);
        if (peek(c) == '}') {
                c->off++;
                goto tail;
        }
        for (;;) {
                struct kmsctl_jsonl_member *m;
                size_t key_off;

                if (o->n_members >= KMSCTL_JSONL_MAX_MEMBERS)
                        return fail(c, "more than %u members", KMSCTL_JSONL_MAX_MEMBERS);
                m = &o->members[o->n_members];
                key_off = c->off;
                if (peek(c) != '"')
                        return fail(c, "expected a key (a string)");
                r = read_string(c, &m->key, &key_len);
                if (r < 0)
                        return r;
                o->n_members++; /* from here on freed with the object */
                if (kmsctl_jsonl_get(o, m->key) != m) {
                        c->off = key_off;
                        return fail(c, "duplicate key \"%.40s\"", m->key);
                }
                skip_space(c);
                if (peek(c) != ':')
                        return fail(c, "expected ':'");
                c->off++;
                skip_space(c);
                r = read_value(c, m);
                if (r < 0)
                        return r;
                skip_space(c);
                if (peek(c) == ',') {
                        c->off++;
                        skip_space(c);
                        continue;
                }
                if (peek(c) == '}') {
                        c->off++;
                        break;
                }
                return fail(c, "expected ',' or '}'");
        }
tail:
        skip_space(c);
        if (!at_end(c))
                return fail(c, "unexpected bytes after the object");
        return 0;
}

int kmsctl_jsonl_parse(const char *line, size_t len, struct kmsctl_jsonl_object *ret, char *err, size_t err_size)
{
        struct cursor c = {.p = (const unsigned char *)line, .len = len, .err = err, .err_size = err_size};
        struct kmsctl_jsonl_object o = {0};
        int r;

        if (err_size > 0)
                err[0] = '\0';
        if (!ret)
                return -EINVAL;
        ret->n_members = 0;
        if (!line)
                return fail(&c, "no input");
        if (len > KMSCTL_JSONL_MAX_LINE)
                return fail(&c, "line longer than %u bytes", KMSCTL_JSONL_MAX_LINE);
        r = parse_object(&c, &o);
        if (r < 0) {
                kmsctl_jsonl_object_done(&o);
                return r;
        }
        *ret = o;
        return 0;
}
