/* The default access rules (policy/policy.c): root may do everything; a
 * key's owner may use and change it; anyone may read and verify; only
 * root may create a key for another owner. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "kms-policy.h"

static const struct {
        uid_t caller, owner;
        enum kms_operation op;
        int expected;
} cases[] = {
        /* root */
        { 0, 1000, KMS_OP_SIGN, 0 },
        { 0, 1000, KMS_OP_DESTROY, 0 },
        { 0, 1000, KMS_OP_CREATE, 0 },
        { 0, 1000, KMS_OP_REVOKE, 0 },
        /* owner */
        { 1000, 1000, KMS_OP_SIGN, 0 },
        { 1000, 1000, KMS_OP_DESTROY, 0 },
        { 1000, 1000, KMS_OP_ROTATE, 0 },
        { 1000, 1000, KMS_OP_REVOKE, 0 },
        { 1000, 1000, KMS_OP_DISABLE, 0 },
        { 1000, 1000, KMS_OP_CREATE, 0 },
        /* someone else */
        { 1001, 1000, KMS_OP_SIGN, -EACCES },
        { 1001, 1000, KMS_OP_DESTROY, -EACCES },
        { 1001, 1000, KMS_OP_ROTATE, -EACCES },
        { 1001, 1000, KMS_OP_REVOKE, -EACCES },
        { 1001, 1000, KMS_OP_DISABLE, -EACCES },
        { 1001, 1000, KMS_OP_CREATE, -EACCES }, /* create for another owner */
        { 1001, 0, KMS_OP_SIGN, -EACCES },      /* root's key */
        /* reading is open */
        { 1001, 1000, KMS_OP_READ, 0 },
        { 1001, 1000, KMS_OP_VERIFY, 0 },
        { 1001, 1000, KMS_OP_STATUS, 0 },
};

static void test_table(void **state)
{
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct kms_caller c = { .uid = cases[i].caller, .pid = 42 };
                const char *why = NULL;
                int r = kms_policy_check(&c, cases[i].op, cases[i].owner, &why);

                if (r != cases[i].expected)
                        fail_msg("case %zu: uid %u %s on a key of uid %u: got %d, expected %d", i,
                                 (unsigned)cases[i].caller, kms_operation_to_string(cases[i].op),
                                 (unsigned)cases[i].owner, r, cases[i].expected);
                if (r < 0)
                        assert_non_null(why); /* a denial always says why */
        }
}

static void test_null_caller(void **state)
{
        assert_int_equal(kms_policy_check(NULL, KMS_OP_READ, 0, NULL), -EINVAL);
}

static void test_unknown_operation(void **state)
{
        struct kms_caller c = { .uid = 1000 };
        const char *why = NULL;

        assert_int_equal(kms_policy_check(&c, (enum kms_operation)_KMS_OP_MAX, 1000, &why), -EACCES);
        assert_non_null(why);
        assert_string_equal(kms_operation_to_string((enum kms_operation)_KMS_OP_MAX), "unknown");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_table),
                cmocka_unit_test(test_null_caller),
                cmocka_unit_test(test_unknown_operation),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
