/* Unit tests for kms_key_name_check(): the names kmsd accepts and the
 * sentence it gives for each one it refuses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "kms-key.h"
#include "kms-util.h"

static void test_valid(void **state)
{
        static const char *const names[] = {
                "chat/alice", "a", "a.b-c_d/e", "A/B/C", "x.y", "a.b", "0", "a-/b_",
                ".hidden", "a/.b", "a./b",
        };
        char max[KMS_MAX_KEY_NAME + 1];

        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                const char *why = "untouched";

                if (kms_key_name_check(names[i], &why) != 0)
                        fail_msg("valid name \"%s\" refused: %s", names[i], why);
                /* why is an error output: written only on failure. */
                assert_string_equal(why, "untouched");
                assert_int_equal(kms_key_name_check(names[i], NULL), 0);
        }

        memset(max, 'k', KMS_MAX_KEY_NAME);
        max[KMS_MAX_KEY_NAME] = '\0';
        assert_int_equal(strlen(max), 128);
        assert_int_equal(kms_key_name_check(max, NULL), 0);
}

static void expect_invalid(const char *name)
{
        const char *why = NULL;

        if (kms_key_name_check(name, &why) != -EINVAL)
                fail_msg("invalid name \"%s\" accepted", name ? name : "(null)");
        if (!why || !*why)
                fail_msg("no reason given for refusing \"%s\"", name ? name : "(null)");
        /* A refusal without a place for the reason must not crash. */
        assert_int_equal(kms_key_name_check(name, NULL), -EINVAL);
}

static void test_invalid(void **state)
{
        static const char *const names[] = {
                "", "/a", "a/", "a//b", "a/../b", "..", ".", "a/./b", "x..y", "has space", "st*r", "q?", "br[",
                "a/..", "../a", "./a", "a/.", "/", "//", "tab\tx", "nl\n", "back\\slash", "colon:x", "semi;x",
                "quote\"", "dollar$", "tilde~", "plus+", "at@x", "pct%", "caf\xc3\xa9", "\xff", "\x7f",
        };

        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                expect_invalid(names[i]);
        expect_invalid(NULL);
}

static void test_too_long(void **state)
{
        char name[KMS_MAX_KEY_NAME + 2];
        const char *why = NULL;

        memset(name, 'k', KMS_MAX_KEY_NAME + 1);
        name[KMS_MAX_KEY_NAME + 1] = '\0';
        assert_int_equal(strlen(name), 129);
        assert_int_equal(kms_key_name_check(name, &why), -EINVAL);
        assert_non_null(why);
        assert_non_null(strstr(why, "128"));

        /* 128 characters with a bad one at the end is still refused. */
        name[KMS_MAX_KEY_NAME] = '\0';
        name[KMS_MAX_KEY_NAME - 1] = '*';
        expect_invalid(name);
}

static void test_reasons(void **state)
{
        const char *why = NULL;

        assert_int_equal(kms_key_name_check("", &why), -EINVAL);
        assert_non_null(strstr(why, "empty"));
        assert_int_equal(kms_key_name_check("/a", &why), -EINVAL);
        assert_non_null(strstr(why, "'/'"));
        assert_int_equal(kms_key_name_check("a//b", &why), -EINVAL);
        assert_non_null(strstr(why, "//"));
        assert_int_equal(kms_key_name_check("has space", &why), -EINVAL);
        assert_non_null(strstr(why, "[A-Za-z0-9._/-]"));
        assert_int_equal(kms_key_name_check("a/../b", &why), -EINVAL);
        assert_non_null(strstr(why, ".."));
        assert_int_equal(kms_key_name_check("x..y", &why), -EINVAL);
        assert_non_null(strstr(why, ".."));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_valid),
                cmocka_unit_test(test_invalid),
                cmocka_unit_test(test_too_long),
                cmocka_unit_test(test_reasons),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
