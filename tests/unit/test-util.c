/* Unit tests for common/kms-util.c (number parsing, hex) and
 * common/kms-error.c (errno → bus error name → kmsctl exit code). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "kms-bus.h"
#include "kms-error.h"
#include "kms-util.h"

static void expect_u64_fails(const char *s, uint64_t min, uint64_t max, int err)
{
        uint64_t v = 0xdeadbeef;
        int r = kms_parse_u64(s, min, max, &v);

        if (r != err)
                fail_msg("kms_parse_u64(\"%s\", %ju, %ju) = %d, expected %d", s ? s : "(null)", (uintmax_t)min,
                         (uintmax_t)max, r, err);
        assert_int_equal(v, 0xdeadbeef);
}

static void test_parse_u64(void **state)
{
        uint64_t v = 1;

        assert_int_equal(kms_parse_u64("0", 0, UINT64_MAX, &v), 0);
        assert_int_equal(v, 0);
        assert_int_equal(kms_parse_u64("42", 0, UINT64_MAX, &v), 0);
        assert_int_equal(v, 42);
        assert_int_equal(kms_parse_u64("007", 0, 10, &v), 0);
        assert_int_equal(v, 7);
        assert_int_equal(kms_parse_u64("18446744073709551615", 0, UINT64_MAX, &v), 0);
        assert_true(v == UINT64_MAX);
        /* Bounds are inclusive. */
        assert_int_equal(kms_parse_u64("1", 1, 64, &v), 0);
        assert_int_equal(v, 1);
        assert_int_equal(kms_parse_u64("64", 1, 64, &v), 0);
        assert_int_equal(v, 64);

        expect_u64_fails("", 0, UINT64_MAX, -EINVAL);
        expect_u64_fails(NULL, 0, UINT64_MAX, -EINVAL);
        expect_u64_fails("-1", 0, UINT64_MAX, -EINVAL);
        expect_u64_fails("+1", 0, UINT64_MAX, -EINVAL);
        expect_u64_fails("12x", 0, UINT64_MAX, -EINVAL);
        expect_u64_fails(" 1", 0, UINT64_MAX, -EINVAL);
        expect_u64_fails("1 ", 0, UINT64_MAX, -EINVAL);
        expect_u64_fails("\t1", 0, UINT64_MAX, -EINVAL);
        expect_u64_fails("0x10", 0, UINT64_MAX, -EINVAL);
        expect_u64_fails("1e3", 0, UINT64_MAX, -EINVAL);
        expect_u64_fails("1.0", 0, UINT64_MAX, -EINVAL);
        expect_u64_fails("abc", 0, UINT64_MAX, -EINVAL);
        expect_u64_fails("18446744073709551616", 0, UINT64_MAX, -ERANGE); /* 2^64 */
        expect_u64_fails("99999999999999999999999", 0, UINT64_MAX, -ERANGE);
        expect_u64_fails("0", 1, 64, -ERANGE);
        expect_u64_fails("65", 1, 64, -ERANGE);
        expect_u64_fails("1023", 1024, 67108864, -ERANGE);
}

static void test_hex_encode(void **state)
{
        static const uint8_t bytes[] = { 0x00, 0x01, 0x7f, 0x80, 0xab, 0xff };
        _cleanup_(freep) char *hex = NULL, *empty = NULL;

        hex = kms_hex_encode(bytes, sizeof(bytes));
        assert_non_null(hex);
        assert_string_equal(hex, "00017f80abff");
        empty = kms_hex_encode(bytes, 0);
        assert_non_null(empty);
        assert_string_equal(empty, "");
        assert_null(kms_hex_encode(bytes, SIZE_MAX)); /* would overflow the length */
}

static void expect_hex_fails(const char *s)
{
        uint8_t sentinel;
        uint8_t *out = &sentinel;
        size_t len = 0x5a5a;

        if (kms_hex_decode(s, &out, &len) != -EINVAL)
                fail_msg("hex \"%s\" accepted", s);
        assert_ptr_equal(out, &sentinel);
        assert_int_equal(len, 0x5a5a);
}

static void test_hex_decode(void **state)
{
        static const uint8_t want[] = { 0x00, 0x01, 0x7f, 0x80, 0xab, 0xff };
        uint8_t *out = NULL;
        size_t len = 99;

        assert_int_equal(kms_hex_decode("00017f80abff", &out, &len), 0);
        assert_int_equal(len, sizeof(want));
        assert_memory_equal(out, want, sizeof(want));
        free(out);
        out = NULL;
        assert_int_equal(kms_hex_decode("00017F80ABFF", &out, &len), 0);
        assert_int_equal(len, sizeof(want));
        assert_memory_equal(out, want, sizeof(want));
        free(out);
        out = NULL;

        /* Empty is zero bytes, not an error. */
        assert_int_equal(kms_hex_decode("", &out, &len), 0);
        assert_int_equal(len, 0);
        free(out);

        /* Round trip of every byte value. */
        {
                uint8_t all[256];
                _cleanup_(freep) char *hex = NULL;
                _cleanup_(freep) uint8_t *back = NULL;
                size_t back_len = 0;

                for (size_t i = 0; i < sizeof(all); i++)
                        all[i] = (uint8_t)i;
                hex = kms_hex_encode(all, sizeof(all));
                assert_non_null(hex);
                assert_int_equal(strlen(hex), 512);
                assert_int_equal(kms_hex_decode(hex, &back, &back_len), 0);
                assert_int_equal(back_len, sizeof(all));
                assert_memory_equal(back, all, sizeof(all));
        }

        expect_hex_fails("0");
        expect_hex_fails("abc");
        expect_hex_fails("0g");
        expect_hex_fails("g0");
        expect_hex_fails("zz");
        expect_hex_fails(" 00");
        expect_hex_fails("00 ");
        expect_hex_fails("0x00");
        expect_hex_fails("-1");
        expect_hex_fails("00\n");
        expect_hex_fails("\xc3\xa9");
}

static void test_error_names(void **state)
{
        static const struct {
                int r;
                const char *name;
                int exit_code;
        } map[] = {
                { -ENOENT, KMS_ERROR_NOT_FOUND, KMS_EXIT_NOT_FOUND },
                { -EEXIST, KMS_ERROR_ALREADY_EXISTS, KMS_EXIT_FAILURE },
                { -EINVAL, KMS_ERROR_INVALID_ARGUMENT, KMS_EXIT_FAILURE },
                { -EOPNOTSUPP, KMS_ERROR_INVALID_ARGUMENT, KMS_EXIT_FAILURE },
                { -EBADMSG, KMS_ERROR_INVALID_ARGUMENT, KMS_EXIT_FAILURE },
                { -EACCES, KMS_ERROR_ACCESS_DENIED, KMS_EXIT_DENIED },
                { -EPERM, KMS_ERROR_ACCESS_DENIED, KMS_EXIT_DENIED },
                { KMS_E_REVOKED, KMS_ERROR_KEY_REVOKED, KMS_EXIT_FAILURE },
                { KMS_E_DISABLED, KMS_ERROR_KEY_DISABLED, KMS_EXIT_FAILURE },
                { KMS_E_DESTROYED, KMS_ERROR_KEY_DESTROYED, KMS_EXIT_FAILURE },
                { -E2BIG, KMS_ERROR_LIMIT_EXCEEDED, KMS_EXIT_FAILURE },
                { -EMSGSIZE, KMS_ERROR_LIMIT_EXCEEDED, KMS_EXIT_FAILURE },
                { -EDQUOT, KMS_ERROR_LIMIT_EXCEEDED, KMS_EXIT_FAILURE },
                { -EBUSY, KMS_ERROR_BUSY, KMS_EXIT_FAILURE },
                { -EAGAIN, KMS_ERROR_BUSY, KMS_EXIT_FAILURE },
                { KMS_E_BACKEND, KMS_ERROR_BACKEND, KMS_EXIT_FAILURE },
                { KMS_E_STORE, KMS_ERROR_STORE, KMS_EXIT_FAILURE },
                { -ENOSPC, KMS_ERROR_STORE, KMS_EXIT_FAILURE },
                { -EROFS, KMS_ERROR_STORE, KMS_EXIT_FAILURE },
                { -ESHUTDOWN, KMS_ERROR_SHUTTING_DOWN, KMS_EXIT_FAILURE },
                /* Anything unknown is a bug: Internal, never NULL. */
                { -ENOMEM, KMS_ERROR_INTERNAL, KMS_EXIT_FAILURE },
                { -EFAULT, KMS_ERROR_INTERNAL, KMS_EXIT_FAILURE },
                { 0, KMS_ERROR_INTERNAL, KMS_EXIT_FAILURE },
                { 1, KMS_ERROR_INTERNAL, KMS_EXIT_FAILURE },
                { -99999, KMS_ERROR_INTERNAL, KMS_EXIT_FAILURE },
        };

        for (size_t i = 0; i < ELEMENTSOF(map); i++) {
                const char *name = kms_error_to_bus_name(map[i].r);

                assert_non_null(name);
                if (strcmp(name, map[i].name) != 0)
                        fail_msg("errno %d mapped to %s, expected %s", map[i].r, name, map[i].name);
                assert_int_equal(strncmp(name, KMS_ERROR_PREFIX, strlen(KMS_ERROR_PREFIX)), 0);
                assert_int_equal(kms_error_exit_code(name), map[i].exit_code);
        }
}

static void test_exit_codes(void **state)
{
        assert_int_equal(kms_error_exit_code(NULL), KMS_EXIT_FAILURE);
        assert_int_equal(kms_error_exit_code(""), KMS_EXIT_FAILURE);
        assert_int_equal(kms_error_exit_code("org.freedesktop.DBus.Error.AccessDenied"), KMS_EXIT_DENIED);
        assert_int_equal(kms_error_exit_code("org.freedesktop.DBus.Error.ServiceUnknown"), KMS_EXIT_FAILURE);
        assert_int_equal(kms_error_exit_code("org.freedesktop.DBus.Error.UnknownMethod"), KMS_EXIT_FAILURE);
        /* Prefixes and case differences are not the real name. */
        assert_int_equal(kms_error_exit_code(KMS_ERROR_PREFIX "NotFoundX"), KMS_EXIT_FAILURE);
        assert_int_equal(kms_error_exit_code(KMS_ERROR_PREFIX "notfound"), KMS_EXIT_FAILURE);
        assert_int_equal(kms_error_exit_code(KMS_ERROR_PREFIX "AccessDenie"), KMS_EXIT_FAILURE);
        assert_int_equal(kms_error_exit_code(KMS_ERROR_NOT_FOUND), KMS_EXIT_NOT_FOUND);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_u64),   cmocka_unit_test(test_hex_encode),
                cmocka_unit_test(test_hex_decode),  cmocka_unit_test(test_error_names),
                cmocka_unit_test(test_exit_codes),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
