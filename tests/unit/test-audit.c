/* The audit record's canonical form (daemon/audit.c, docs/audit.md): field
 * order, escaping, time format, and the hash of a known record, so that a
 * third-party verifier written from the documentation agrees with kmsd. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "audit.h"
#include "kms-error.h"
#include "store.h"

static void fill(struct kms_audit_row *r)
{
        memset(r, 0, sizeof(*r));
        r->seq = 42;
        r->time_ms = 1795654930123; /* 2026-11-26T01:02:10.123Z */
        strcpy(r->kind, "request");
        r->uid = 1000;
        r->pid = 4242;
        strcpy(r->exe, "/usr/bin/kmsctl");
        strcpy(r->operation, "Sign");
        strcpy(r->key, "chat/alice");
        r->version = 2;
        strcpy(r->result, "ok");
        strcpy(r->details, "hash=sha256");
        memset(r->prev, 0xab, 32);
}

static void test_canonical(void **state)
{
        struct kms_audit_row r;
        char buf[4096];
        const char *want = "kmsd-audit-v1\t42\t2026-11-26T01:02:10.123Z\trequest\t1000\t4242\t/usr/bin/kmsctl\tSign\t"
                           "chat/alice\t2\tok\thash=sha256";

        (void)state;
        fill(&r);
        assert_int_equal(kms_audit_canonical(&r, buf, sizeof(buf)), (int)strlen(want));
        assert_string_equal(buf, want);
}

static void test_escaping(void **state)
{
        struct kms_audit_row r;
        char buf[4096];

        (void)state;
        fill(&r);
        strcpy(r.details, "a\\b\tc\nd\re\x01" "f\x7fg");
        strcpy(r.key, "");
        r.version = 0;
        assert_true(kms_audit_canonical(&r, buf, sizeof(buf)) > 0);
        assert_non_null(strstr(buf, "\tSign\t\t0\tok\ta\\\\b\\tc\\nd\\re\\x01f\\x7fg"));
        /* The separators stay the only TABs: 12 fields. */
        {
                int tabs = 0;
                for (const char *p = buf; *p; p++)
                        tabs += *p == '\t';
                assert_int_equal(tabs, 11);
        }
}

/* hash = SHA-256(prev || SHA-256(canonical)), checked against OpenSSL's
 * one-shot digest of the concatenation. */
static void test_hash(void **state)
{
        struct kms_audit_row r;
        uint8_t body[32], hash[32], want[32], msg[64];
        char buf[4096];
        unsigned int n = 0;
        int len;

        (void)state;
        fill(&r);
        len = kms_audit_canonical(&r, buf, sizeof(buf));
        assert_true(len > 0);
        assert_int_equal(kms_audit_body_hash(&r, body), 0);
        EVP_Digest(buf, (size_t)len, want, &n, EVP_sha256(), NULL);
        assert_memory_equal(body, want, 32);
        kms_audit_link_hash(r.prev, body, hash);
        memcpy(msg, r.prev, 32);
        memcpy(msg + 32, body, 32);
        EVP_Digest(msg, sizeof(msg), want, &n, EVP_sha256(), NULL);
        assert_memory_equal(hash, want, 32);
        /* prev matters */
        r.prev[0] ^= 1;
        kms_audit_link_hash(r.prev, body, want);
        assert_memory_not_equal(hash, want, 32);
}

static void test_too_small(void **state)
{
        struct kms_audit_row r;
        char buf[32];

        (void)state;
        fill(&r);
        assert_int_equal(kms_audit_canonical(&r, buf, sizeof(buf)), -ENOBUFS);
}

static void test_result_names(void **state)
{
        (void)state;
        assert_string_equal(kms_audit_result_name(0), "ok");
        assert_string_equal(kms_audit_result_name(-EACCES), "denied");
        assert_string_equal(kms_audit_result_name(-ENOENT), "NotFound");
        assert_string_equal(kms_audit_result_name(KMS_E_REPLAY), "Replay");
        assert_string_equal(kms_audit_result_name(KMS_E_AUDIT), "AuditFailure");
}

static void test_time(void **state)
{
        char buf[40];

        (void)state;
        kms_audit_format_time(0, buf, sizeof(buf));
        assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
        kms_audit_format_time(1795654930009, buf, sizeof(buf));
        assert_string_equal(buf, "2026-11-26T01:02:10.009Z");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_canonical), cmocka_unit_test(test_escaping), cmocka_unit_test(test_hash),
                cmocka_unit_test(test_too_small),
                cmocka_unit_test(test_result_names), cmocka_unit_test(test_time),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
