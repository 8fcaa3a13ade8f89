/* Unit tests for cli/jsonl.c, the strict flat-object JSON Lines reader
 * behind `kmsctl audit verify`: escapes (\uXXXX with surrogate pairs, the
 * short ones), numbers, booleans, and everything it must refuse. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "jsonl.h"

static int parse(const char *s, struct kmsctl_jsonl_object *o, char *err)
{
        return kmsctl_jsonl_parse(s, strlen(s), o, err, KMSCTL_JSONL_ERROR_MAX);
}

/* s must parse into one member "k" whose string value is want (want_len
 * bytes). */
static void check_string(const char *s, const char *want, size_t want_len)
{
        struct kmsctl_jsonl_object o;
        const struct kmsctl_jsonl_member *m;
        char err[KMSCTL_JSONL_ERROR_MAX];
        int r = parse(s, &o, err);

        if (r != 0)
                fail_msg("'%s' did not parse: %s", s, err);
        assert_int_equal(o.n_members, 1);
        m = kmsctl_jsonl_get(&o, "k");
        assert_non_null(m);
        assert_int_equal(m->type, KMSCTL_JSONL_STRING);
        assert_int_equal(m->string_len, want_len);
        assert_memory_equal(m->string, want, want_len);
        assert_int_equal(m->string[want_len], '\0');
        kmsctl_jsonl_object_done(&o);
}

/* s must be refused with a message that contains what. */
static void check_error(const char *s, size_t len, const char *what)
{
        struct kmsctl_jsonl_object o;
        char err[KMSCTL_JSONL_ERROR_MAX];
        int r;

        o.n_members = 99;
        r = kmsctl_jsonl_parse(s, len, &o, err, sizeof(err));
        if (r != -EBADMSG)
                fail_msg("'%.*s' gave %d, expected -EBADMSG", (int)len, s, r);
        assert_int_equal(o.n_members, 0);
        if (!strstr(err, what))
                fail_msg("'%.*s': message '%s' does not contain '%s'", (int)len, s, err, what);
        assert_int_equal(strncmp(err, "column ", 7), 0);
}

#define EXPECT_ERROR(s, what) check_error(s, strlen(s), what)

static void test_record(void **state)
{
        const char *line =
                "{\"seq\":1,\"time\":\"2026-11-26T01:02:03.456Z\",\"kind\":\"request\",\"uid\":1000,\"pid\":4242,"
                "\"exe\":\"/usr/bin/kmsctl\",\"operation\":\"CreateKey\",\"key\":\"chat/alice\",\"version\":1,"
                "\"result\":\"ok\",\"details\":\"ec-p256\",\"prev\":\"00\",\"redacted\":false}";
        struct kmsctl_jsonl_object o;
        const struct kmsctl_jsonl_member *m;
        char err[KMSCTL_JSONL_ERROR_MAX];

        assert_int_equal(parse(line, &o, err), 0);
        assert_int_equal(o.n_members, 13);
        m = kmsctl_jsonl_get(&o, "seq");
        assert_non_null(m);
        assert_int_equal(m->type, KMSCTL_JSONL_NUMBER);
        assert_true(m->is_uint);
        assert_int_equal(m->uint, 1);
        m = kmsctl_jsonl_get(&o, "uid");
        assert_int_equal(m->uint, 1000);
        m = kmsctl_jsonl_get(&o, "exe");
        assert_string_equal(m->string, "/usr/bin/kmsctl");
        m = kmsctl_jsonl_get(&o, "redacted");
        assert_int_equal(m->type, KMSCTL_JSONL_BOOL);
        assert_false(m->boolean);
        assert_null(kmsctl_jsonl_get(&o, "signature"));
        assert_null(kmsctl_jsonl_get(&o, NULL));
        kmsctl_jsonl_object_done(&o);
        assert_int_equal(o.n_members, 0);
        kmsctl_jsonl_object_done(&o); /* twice is fine */
        kmsctl_jsonl_object_done(NULL);
}

static void test_short_escapes(void **state)
{
        check_string("{\"k\":\"a\\\"b\"}", "a\"b", 3);
        check_string("{\"k\":\"a\\\\b\"}", "a\\b", 3);
        check_string("{\"k\":\"a\\/b\"}", "a/b", 3);
        check_string("{\"k\":\"\\b\\f\\n\\r\\t\"}", "\b\f\n\r\t", 5);
        check_string("{\"k\":\"\"}", "", 0);
        /* Raw UTF-8 and DEL pass through as they are. */
        check_string("{\"k\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91\x7f\"}",
                     "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91\x7f", 15);
}

static void test_unicode_escapes(void **state)
{
        check_string("{\"k\":\"\\u0041\"}", "A", 1);
        check_string("{\"k\":\"\\u0001\\u001f\\u007f\"}", "\x01\x1f\x7f", 3);
        check_string("{\"k\":\"\\u00e9\"}", "\xc3\xa9", 2);
        check_string("{\"k\":\"\\u00E9\"}", "\xc3\xa9", 2);
        check_string("{\"k\":\"\\u20ac\"}", "\xe2\x82\xac", 3);
        check_string("{\"k\":\"\\uffff\"}", "\xef\xbf\xbf", 3);
        /* U+1F511 as a surrogate pair, upper and lower case hex. */
        check_string("{\"k\":\"\\ud83d\\udd11\"}", "\xf0\x9f\x94\x91", 4);
        check_string("{\"k\":\"\\uD83D\\uDD11\"}", "\xf0\x9f\x94\x91", 4);
        /* The lowest and highest pairs. */
        check_string("{\"k\":\"\\ud800\\udc00\"}", "\xf0\x90\x80\x80", 4);
        check_string("{\"k\":\"\\udbff\\udfff\"}", "\xf4\x8f\xbf\xbf", 4);

        EXPECT_ERROR("{\"k\":\"\\ud83d\"}", "not followed by a low one");
        EXPECT_ERROR("{\"k\":\"\\ud83dx\"}", "not followed by a low one");
        EXPECT_ERROR("{\"k\":\"\\ud83d\\u0041\"}", "not a low surrogate");
        EXPECT_ERROR("{\"k\":\"\\ud83d\\ud83d\"}", "not a low surrogate");
        EXPECT_ERROR("{\"k\":\"\\udd11\"}", "lone low surrogate");
        EXPECT_ERROR("{\"k\":\"\\u0000\"}", "NUL");
        EXPECT_ERROR("{\"k\":\"\\u12\"}", "four hex digits");
        EXPECT_ERROR("{\"k\":\"\\u12g4\"}", "four hex digits");
        EXPECT_ERROR("{\"k\":\"\\u", "four hex digits");
}

static void test_string_errors(void **state)
{
        EXPECT_ERROR("{\"k\":\"a\\x41\"}", "unknown escape '\\x'");
        EXPECT_ERROR("{\"k\":\"a\\'\"}", "unknown escape");
        EXPECT_ERROR("{\"k\":\"a\\", "unterminated escape");
        EXPECT_ERROR("{\"k\":\"abc", "unterminated string");
        EXPECT_ERROR("{\"k\":\"a\tb\"}", "control character 0x09");
        EXPECT_ERROR("{\"k\":\"a\nb\"}", "control character 0x0a");
        /* Invalid UTF-8: a lone continuation byte, an overlong form, a
         * surrogate encoded directly, a sequence cut by the quote. */
        EXPECT_ERROR("{\"k\":\"\x80\"}", "invalid UTF-8");
        EXPECT_ERROR("{\"k\":\"\xc0\xaf\"}", "invalid UTF-8");
        EXPECT_ERROR("{\"k\":\"\xed\xa0\x80\"}", "invalid UTF-8");
        EXPECT_ERROR("{\"k\":\"\xe2\x82\"}", "invalid UTF-8");
        EXPECT_ERROR("{\"k\":\"\xf5\x80\x80\x80\"}", "invalid UTF-8");
        /* A NUL byte in the line is a control character, not an end. */
        check_error("{\"k\":\"a\0b\"}", 10, "control character 0x00");
        /* A multi-byte sequence cut by the end of the buffer. */
        check_error("{\"k\":\"\xe2\x82", 8, "invalid UTF-8");
}

static void test_numbers(void **state)
{
        static const struct {
                const char *lit;
                bool is_uint;
                uint64_t v;
        } ok[] = {
                {"0", true, 0},
                {"7", true, 7},
                {"4294967295", true, 4294967295u},
                {"18446744073709551615", true, UINT64_MAX},
                {"18446744073709551616", false, 0}, /* valid JSON, too big for uint64 */
                {"-1", false, 0},
                {"-0", false, 0},
                {"1.5", false, 0},
                {"1.0", false, 0},
                {"1e3", false, 0},
                {"1E+3", false, 0},
                {"2e-3", false, 0},
                {"-0.25e10", false, 0},
        };
        char line[64], err[KMSCTL_JSONL_ERROR_MAX];
        struct kmsctl_jsonl_object o;

        for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
                const struct kmsctl_jsonl_member *m;

                snprintf(line, sizeof(line), "{\"n\":%s}", ok[i].lit);
                if (parse(line, &o, err) != 0)
                        fail_msg("'%s' did not parse: %s", line, err);
                m = kmsctl_jsonl_get(&o, "n");
                assert_int_equal(m->type, KMSCTL_JSONL_NUMBER);
                assert_string_equal(m->string, ok[i].lit);
                if (m->is_uint != ok[i].is_uint)
                        fail_msg("'%s': is_uint %d", ok[i].lit, m->is_uint);
                assert_true(m->uint == ok[i].v);
                kmsctl_jsonl_object_done(&o);
        }

        EXPECT_ERROR("{\"n\":01}", "leading zero");
        EXPECT_ERROR("{\"n\":-01}", "leading zero");
        EXPECT_ERROR("{\"n\":+1}", "expected a value");
        EXPECT_ERROR("{\"n\":-}", "expected a digit");
        EXPECT_ERROR("{\"n\":1.}", "after '.'");
        EXPECT_ERROR("{\"n\":.5}", "expected a value");
        EXPECT_ERROR("{\"n\":1e}", "exponent");
        EXPECT_ERROR("{\"n\":1e+}", "exponent");
        EXPECT_ERROR("{\"n\":0x10}", "expected ',' or '}'");
        EXPECT_ERROR("{\"n\":12a}", "expected ',' or '}'");
        EXPECT_ERROR("{\"n\":NaN}", "expected a value");
        EXPECT_ERROR("{\"n\":Infinity}", "expected a value");
}

static void test_structure(void **state)
{
        struct kmsctl_jsonl_object o;
        char err[KMSCTL_JSONL_ERROR_MAX];

        /* Whitespace between tokens, a trailing CR (CRLF files). */
        assert_int_equal(parse(" { \"a\" : true , \"b\" :\tfalse } \r", &o, err), 0);
        assert_int_equal(o.n_members, 2);
        assert_true(kmsctl_jsonl_get(&o, "a")->boolean);
        assert_false(kmsctl_jsonl_get(&o, "b")->boolean);
        kmsctl_jsonl_object_done(&o);
        assert_int_equal(parse("{}", &o, err), 0);
        assert_int_equal(o.n_members, 0);
        /* Escapes in keys are decoded. */
        assert_int_equal(parse("{\"s\\u0065q\":1}", &o, err), 0);
        assert_non_null(kmsctl_jsonl_get(&o, "seq"));
        kmsctl_jsonl_object_done(&o);

        EXPECT_ERROR("", "expected '{'");
        EXPECT_ERROR("   ", "expected '{'");
        EXPECT_ERROR("[1]", "expected '{'");
        EXPECT_ERROR("\"x\"", "expected '{'");
        EXPECT_ERROR("{", "expected a key");
        EXPECT_ERROR("{\"a\"}", "expected ':'");
        EXPECT_ERROR("{\"a\":}", "expected a value");
        EXPECT_ERROR("{\"a\":", "end of the line");
        EXPECT_ERROR("{\"a\":1", "expected ',' or '}'");
        EXPECT_ERROR("{\"a\":1,}", "expected a key");
        EXPECT_ERROR("{a:1}", "expected a key");
        EXPECT_ERROR("{'a':1}", "expected a key");
        EXPECT_ERROR("{\"a\":1}{}", "unexpected bytes after the object");
        EXPECT_ERROR("{\"a\":1} x", "unexpected bytes after the object");
        EXPECT_ERROR("{\"a\":null}", "null");
        EXPECT_ERROR("{\"a\":{}}", "nested");
        EXPECT_ERROR("{\"a\":[1]}", "nested");
        EXPECT_ERROR("{\"a\":tru}", "expected a value");
        EXPECT_ERROR("{\"a\":True}", "expected a value");
        EXPECT_ERROR("{\"a\":1,\"a\":2}", "duplicate key \"a\"");
        EXPECT_ERROR("{\"a\":1,\"\\u0061\":2}", "duplicate key");
        /* The column points at the problem. */
        EXPECT_ERROR("{\"a\":1,\"a\":2}", "column 8:");
        EXPECT_ERROR("{\"a\":nul}", "column 6:");
}

static void test_limits(void **state)
{
        struct kmsctl_jsonl_object o;
        char err[KMSCTL_JSONL_ERROR_MAX], line[1024];
        size_t n = 0;
        char *big;

        /* Exactly the cap of members, then one more. */
        n += (size_t)snprintf(line + n, sizeof(line) - n, "{");
        for (unsigned i = 0; i < KMSCTL_JSONL_MAX_MEMBERS; i++)
                n += (size_t)snprintf(line + n, sizeof(line) - n, "%s\"k%u\":%u", i ? "," : "", i, i);
        snprintf(line + n, sizeof(line) - n, "}");
        assert_int_equal(parse(line, &o, err), 0);
        assert_int_equal(o.n_members, KMSCTL_JSONL_MAX_MEMBERS);
        kmsctl_jsonl_object_done(&o);
        snprintf(line + n, sizeof(line) - n, ",\"more\":1}");
        EXPECT_ERROR(line, "more than");

        /* A line over the length cap is refused before it is read. */
        big = malloc(KMSCTL_JSONL_MAX_LINE + 2);
        assert_non_null(big);
        memset(big, ' ', KMSCTL_JSONL_MAX_LINE + 1);
        memcpy(big, "{}", 2);
        check_error(big, KMSCTL_JSONL_MAX_LINE + 1, "longer than");
        assert_int_equal(kmsctl_jsonl_parse(big, KMSCTL_JSONL_MAX_LINE, &o, err, sizeof(err)), 0);
        free(big);
}

static void test_bad_arguments(void **state)
{
        struct kmsctl_jsonl_object o;
        char err[KMSCTL_JSONL_ERROR_MAX];

        assert_int_equal(kmsctl_jsonl_parse("{}", 2, NULL, err, sizeof(err)), -EINVAL);
        assert_int_equal(kmsctl_jsonl_parse(NULL, 0, &o, err, sizeof(err)), -EBADMSG);
        assert_int_equal(o.n_members, 0);
        /* No room for a message is fine. */
        assert_int_equal(kmsctl_jsonl_parse("{", 1, &o, NULL, 0), -EBADMSG);
        /* A short buffer gets a cut message, still terminated. */
        assert_int_equal(kmsctl_jsonl_parse("{\"a\":null}", 10, &o, err, 12), -EBADMSG);
        assert_int_equal(strlen(err), 11);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_record),          cmocka_unit_test(test_short_escapes),
                cmocka_unit_test(test_unicode_escapes), cmocka_unit_test(test_string_errors),
                cmocka_unit_test(test_numbers),         cmocka_unit_test(test_structure),
                cmocka_unit_test(test_limits),          cmocka_unit_test(test_bad_arguments),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
