/* The method registry (daemon/registry.c) and the API's table
 * (daemon/api/): every method of the introspection XML that kmsd serves is
 * registered with the same input signature and nothing else is; a member
 * declared twice, or a malformed entry, is refused at start; internal
 * requests cannot be reached from the bus. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "api/api.h"
#include "registry.h"

extern const char *const kms_introspect_xml;

static int run_stub(struct kms_worker *w, struct kms_request *req, DBusMessage **ret, char *errmsg, size_t errlen)
{
        return 0;
}

static int parse_stub(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen)
{
        return 0;
}

static void test_api_registers(void **state)
{
        struct kms_registry reg = { .n = 0 };
        char err[256] = "";

        assert_int_equal(kms_api_register(&reg, err, sizeof(err)), 0);
        assert_true(reg.n >= 30);
        assert_non_null(kms_registry_find(&reg, "Sign"));
        assert_string_equal(kms_registry_find(&reg, "Sign")->signature, "saya{sv}");
        assert_null(kms_registry_find(&reg, "NoSuchMethod"));
        /* Internal requests are not bus methods, and bus methods are not
         * internal requests. */
        assert_null(kms_registry_find(&reg, "ScheduledRotate"));
        assert_non_null(kms_registry_find_internal(&reg, "ScheduledRotate"));
        assert_non_null(kms_registry_find_internal(&reg, "UsageRotate"));
        assert_non_null(kms_registry_find_internal(&reg, "ScheduledDestroy"));
        assert_null(kms_registry_find_internal(&reg, "Sign"));
        /* The whole API a second time: every member is a duplicate. */
        assert_int_equal(kms_api_register(&reg, err, sizeof(err)), -EEXIST);
        assert_non_null(strstr(err, "is declared by domain"));
}

static void test_duplicates_refused(void **state)
{
        static const struct kms_method a[] = { { "Frob", "s", KMS_OP_READ, KMS_SCOPE_KEY, parse_stub, run_stub } };
        static const struct kms_method twice[] = {
                { "Twiddle", "s", KMS_OP_READ, KMS_SCOPE_KEY, parse_stub, run_stub },
                { "Twiddle", "", KMS_OP_READ, KMS_SCOPE_GLOBAL, parse_stub, run_stub },
        };
        const struct kms_method_slice one = { "one", a, 1 }, other = { "other", a, 1 }, dup = { "dup", twice, 2 };
        struct kms_registry reg = { .n = 0 };
        char err[256] = "";

        assert_int_equal(kms_registry_add(&reg, &one, err, sizeof(err)), 0);
        assert_int_equal(kms_registry_add(&reg, &other, err, sizeof(err)), -EEXIST);
        assert_string_equal(err, "method Frob is declared by domain one and again by other");
        assert_int_equal(kms_registry_add(&reg, &dup, err, sizeof(err)), -EEXIST);
        assert_string_equal(err, "method Twiddle is declared twice by domain dup");
        /* Nothing of a refused slice was added. */
        assert_int_equal(reg.n, 1);
        assert_null(kms_registry_find(&reg, "Twiddle"));
}

static void test_malformed_refused(void **state)
{
        static const struct kms_method bad_sig[] = { { "A", "a{", KMS_OP_READ, KMS_SCOPE_KEY, parse_stub, run_stub } };
        static const struct kms_method no_parse[] = { { "B", "s", KMS_OP_READ, KMS_SCOPE_KEY, NULL, run_stub } };
        static const struct kms_method no_run[] = { { "C", "s", KMS_OP_READ, KMS_SCOPE_KEY, parse_stub, NULL } };
        static const struct kms_method internal_args[] = { { "D", "s", KMS_OP_ROTATE, KMS_SCOPE_NONE, NULL, run_stub } };
        const struct kms_method_slice slices[] = {
                { "x", bad_sig, 1 }, { "x", no_parse, 1 }, { "x", no_run, 1 }, { "x", internal_args, 1 }
        };
        struct kms_registry reg = { .n = 0 };
        char err[256];

        for (size_t i = 0; i < sizeof(slices) / sizeof(slices[0]); i++) {
                err[0] = '\0';
                assert_int_equal(kms_registry_add(&reg, &slices[i], err, sizeof(err)), -EINVAL);
                assert_non_null(strstr(err, "malformed"));
        }
        assert_int_equal(reg.n, 0);
}

/* The input signature of each <method> of org.kmsd.KeyManager1 in the
 * XML, in order: "Name sig" per line into out. */
static size_t xml_methods(const char *xml, char names[][64], char sigs[][64], size_t max)
{
        const char *p = strstr(xml, "<interface name=\"org.kmsd.KeyManager1\">");
        const char *end = p ? strstr(p, "</interface>") : NULL;
        size_t n = 0;

        assert_non_null(p);
        assert_non_null(end);
        while ((p = strstr(p, "<method name=\"")) && p < end && n < max) {
                const char *q = p + strlen("<method name=\""), *close = strstr(q, "</method>");
                size_t len = strcspn(q, "\"");

                assert_true(len < 64);
                memcpy(names[n], q, len);
                names[n][len] = '\0';
                sigs[n][0] = '\0';
                for (const char *a = strstr(q, "<arg "); a && a < close; a = strstr(a + 1, "<arg ")) {
                        const char *t = strstr(a, "type=\""), *dir = strstr(a, "direction=\"in\"");
                        const char *gt = strchr(a, '>');

                        if (dir && dir < gt) {
                                size_t tl = strcspn(t + 6, "\"");

                                assert_true(strlen(sigs[n]) + tl < 64);
                                strncat(sigs[n], t + 6, tl);
                        }
                }
                n++;
                p = close;
        }
        return n;
}

static void test_table_matches_introspection(void **state)
{
        static char names[KMS_MAX_METHODS][64], sigs[KMS_MAX_METHODS][64];
        struct kms_registry reg = { .n = 0 };
        char err[256];
        size_t n, bus_methods = 0;

        assert_int_equal(kms_api_register(&reg, err, sizeof(err)), 0);
        n = xml_methods(kms_introspect_xml, names, sigs, KMS_MAX_METHODS);
        assert_true(n >= 30);
        for (size_t i = 0; i < n; i++) {
                const struct kms_method *m = kms_registry_find(&reg, names[i]);

                if (!m)
                        fail_msg("method %s of the introspection XML is not in the registry", names[i]);
                if (strcmp(m->signature, sigs[i]) != 0)
                        fail_msg("method %s: the XML says (%s), the table (%s)", names[i], sigs[i], m->signature);
        }
        for (size_t i = 0; i < reg.n; i++) {
                bool listed = false;

                if (reg.methods[i]->scope == KMS_SCOPE_NONE)
                        continue;
                bus_methods++;
                for (size_t j = 0; j < n && !listed; j++)
                        listed = strcmp(names[j], reg.methods[i]->member) == 0;
                if (!listed)
                        fail_msg("method %s (domain %s) is not in the introspection XML", reg.methods[i]->member,
                                 reg.domains[i]);
        }
        assert_int_equal(bus_methods, n);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_api_registers),
                cmocka_unit_test(test_duplicates_refused),
                cmocka_unit_test(test_malformed_refused),
                cmocka_unit_test(test_table_matches_introspection),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
