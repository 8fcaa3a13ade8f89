/* Unit tests for daemon/config.c: the built-in defaults, a full file, the
 * comment rules of docs/configuration.md, and every kind of error naming
 * "file:line:". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "kms-util.h"

/* The defaults docs/configuration.md shows. */
static void test_defaults(void **state)
{
        struct kms_config c = { 0 };

        assert_int_equal(kms_config_init(&c), 0);
        assert_string_equal(c.bus, "system");
        assert_string_equal(c.state_dir, "/var/lib/kmsd");
        assert_int_equal(c.workers, 4);
        assert_int_equal(c.log_level, LOG_INFO);
        assert_int_equal(c.log_target, KMS_LOG_STDERR);
        assert_int_equal(c.max_message_bytes, 1048576);
        assert_int_equal(c.max_pending, 1024);
        assert_int_equal(c.max_keys, 100000);
        assert_int_equal(c.min_rotate_every, 3600);
        assert_int_equal(c.max_versions_kept, 100);
        assert_non_null(c.pkcs11_module);
        assert_string_equal(c.pkcs11_module, "/usr/lib/softhsm/libsofthsm2.so");
        assert_non_null(c.token_label);
        assert_string_equal(c.token_label, "kmsd");
        assert_null(c.token_serial);
        kms_config_free(&c);
}

/* Load text over the defaults; on failure the message is in err. */
static int load(struct kms_config *c, const char *text, char *err, size_t errlen)
{
        assert_int_equal(kms_config_init(c), 0);
        err[0] = '\0';
        return kms_config_load_string(c, text, "test.conf", err, errlen);
}

static void test_full_file(void **state)
{
        static const char text[] = "# kmsd test configuration\n"
                                   "[daemon]\n"
                                   "bus = unix:path=/tmp/kmsd-test/bus\n"
                                   "state_dir = /tmp/kmsd-test/state\n"
                                   "workers = 8\n"
                                   "log_level = debug\n"
                                   "log_target = syslog\n"
                                   "\n"
                                   "[limits]\n"
                                   "max_message_bytes = 4096\n"
                                   "max_pending = 16\n"
                                   "max_keys = 10\n"
                                   "min_rotate_every = 60\n"
                                   "max_versions_kept = 7\n"
                                   "\n"
                                   "[pkcs11]\n"
                                   "module = /opt/hsm/lib.so\n"
                                   "token_label = other\n"
                                   "pin_file = /etc/kmsd/test-pin\n";
        struct kms_config c;
        char err[512];

        assert_int_equal(load(&c, text, err, sizeof(err)), 0);
        /* The address keeps its own '='. */
        assert_string_equal(c.bus, "unix:path=/tmp/kmsd-test/bus");
        assert_string_equal(c.state_dir, "/tmp/kmsd-test/state");
        assert_int_equal(c.workers, 8);
        assert_int_equal(c.log_level, LOG_DEBUG);
        assert_int_equal(c.log_target, KMS_LOG_SYSLOG);
        assert_int_equal(c.max_message_bytes, 4096);
        assert_int_equal(c.max_pending, 16);
        assert_int_equal(c.max_keys, 10);
        assert_int_equal(c.min_rotate_every, 60);
        assert_int_equal(c.max_versions_kept, 7);
        assert_string_equal(c.pkcs11_module, "/opt/hsm/lib.so");
        assert_string_equal(c.token_label, "other");
        assert_null(c.token_serial);
        assert_string_equal(c.pin_file, "/etc/kmsd/test-pin");
        kms_config_free(&c);
}

static void test_partial_keeps_defaults(void **state)
{
        struct kms_config c;
        char err[512];

        assert_int_equal(load(&c, "[daemon]\nworkers = 2\n", err, sizeof(err)), 0);
        assert_int_equal(c.workers, 2);
        assert_string_equal(c.bus, "system");
        assert_int_equal(c.max_pending, 1024);
        kms_config_free(&c);

        /* An empty file is all defaults. */
        assert_int_equal(load(&c, "", err, sizeof(err)), 0);
        assert_int_equal(c.workers, 4);
        kms_config_free(&c);
}

static void test_inline_comments(void **state)
{
        static const char text[] = "[daemon]   # the daemon\n"
                                   "bus = session              # system | session | address\n"
                                   "state_dir = /tmp/x # holds kmsd.db\n"
                                   "workers = 8   # threads\n"
                                   "log_level = notice ; semicolon comment\n"
                                   "; whole-line comment\n"
                                   "# another\n"
                                   "[limits]\n"
                                   "max_pending = 100 #tight\n"
                                   "[pkcs11]\n"
                                   "token_serial = 0123456789abcdef   # instead of token_label\n";
        struct kms_config c;
        char err[512];

        if (load(&c, text, err, sizeof(err)) != 0)
                fail_msg("inline comments refused: %s", err);
        assert_string_equal(c.bus, "session");
        assert_string_equal(c.state_dir, "/tmp/x");
        assert_int_equal(c.workers, 8);
        assert_int_equal(c.log_level, LOG_NOTICE);
        assert_int_equal(c.max_pending, 100);
        assert_string_equal(c.token_serial, "0123456789abcdef");
        kms_config_free(&c);
}

static void test_bounds(void **state)
{
        static const struct {
                const char *text;
                bool ok;
        } cases[] = {
                { "[daemon]\nworkers = 1\n", true },
                { "[daemon]\nworkers = 64\n", true },
                { "[daemon]\nworkers = 0\n", false },
                { "[daemon]\nworkers = 65\n", false },
                { "[daemon]\nworkers = -1\n", false },
                { "[daemon]\nworkers = 18446744073709551617\n", false },
                { "[limits]\nmax_message_bytes = 1024\n", true },
                { "[limits]\nmax_message_bytes = 67108864\n", true },
                { "[limits]\nmax_message_bytes = 1023\n", false },
                { "[limits]\nmax_message_bytes = 67108865\n", false },
                { "[limits]\nmax_pending = 0\n", false },
                { "[limits]\nmax_pending = 65537\n", false },
                { "[limits]\nmax_keys = 0\n", false },
                { "[limits]\nmax_keys = 100001\n", false },
                { "[limits]\nmin_rotate_every = 1\n", true },
                { "[limits]\nmin_rotate_every = 31536000\n", true },
                { "[limits]\nmin_rotate_every = 0\n", false },
                { "[limits]\nmin_rotate_every = 31536001\n", false },
                { "[limits]\nmax_versions_kept = 1\n", true },
                { "[limits]\nmax_versions_kept = 10000\n", true },
                { "[limits]\nmax_versions_kept = 0\n", false },
                { "[limits]\nmax_versions_kept = 10001\n", false },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct kms_config c;
                char err[512];
                int r = load(&c, cases[i].text, err, sizeof(err));

                if (cases[i].ok && r != 0)
                        fail_msg("refused: %s (%s)", cases[i].text, err);
                if (!cases[i].ok) {
                        if (r != -EINVAL)
                                fail_msg("accepted (r=%d): %s", r, cases[i].text);
                        if (!strstr(err, "test.conf:2:"))
                                fail_msg("message \"%s\" does not name test.conf:2: for %s", err, cases[i].text);
                }
                kms_config_free(&c);
        }
}

/* Each bad file is an error whose message names the right line. */
static void test_errors_name_line(void **state)
{
        static const struct {
                const char *text;
                const char *where;
        } cases[] = {
                { "[daemon]\nworkers = 4\nbogus_key = 1\n", "test.conf:3:" },
                { "# c\n\n[daemon]\nworkers = abc\n", "test.conf:4:" },
                { "[daemon]\nworkers = 4x\n", "test.conf:2:" },
                { "[daemon]\nworkers = \n", "test.conf:2:" },
                { "[daemon]\n\n\n\nworkers = 0\n", "test.conf:5:" },
                { "[daemon]\nworkers = 65\n", "test.conf:2:" },
                { "[daemon]\nlog_level = verbose\n", "test.conf:2:" },
                { "[daemon]\nlog_level = INFO\n", "test.conf:2:" },
                { "[daemon]\nlog_target = journal\n", "test.conf:2:" },
                { "[limits]\nmax_pending = many\n", "test.conf:2:" },
                { "[pkcs11]\nmodule = /x.so\npin = 1234\n", "test.conf:3:" },
                /* A key from another section is unknown here. */
                { "[limits]\nworkers = 4\n", "test.conf:2:" },
                /* A key before any section. */
                { "workers = 4\n", "test.conf:1:" },
                /* A line that is not INI. */
                { "[daemon]\nworkers 4\n", "test.conf:2:" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct kms_config c;
                char err[512];
                int r = load(&c, cases[i].text, err, sizeof(err));

                if (r >= 0)
                        fail_msg("accepted: \"%s\"", cases[i].text);
                if (!strstr(err, cases[i].where))
                        fail_msg("message \"%s\" lacks \"%s\" for \"%s\"", err, cases[i].where, cases[i].text);
                /* The message is a sentence after the place. */
                assert_true(strlen(err) > strlen(cases[i].where) + 2);
                kms_config_free(&c);
        }
}

static void expect_error_at(const char *text, const char *where)
{
        struct kms_config c;
        char err[512];

        if (load(&c, text, err, sizeof(err)) >= 0)
                fail_msg("accepted: \"%s\"", text);
        if (!strstr(err, where))
                fail_msg("message \"%s\" lacks \"%s\" for \"%s\"", err, where, text);
        kms_config_free(&c);
}

/* The line of an unknown section is the line of its header; and an
 * unknown section is an error even when it holds no keys. */
static void test_unknown_section(void **state)
{
        expect_error_at("[daemon]\nworkers = 4\n[nosuch]\nkey = 1\n", "test.conf:3:");
        expect_error_at("[daemon]\nworkers = 4\n[nosuch]\n", "test.conf:3:");
        expect_error_at("[nosuch]\n[daemon]\nworkers = 4\n", "test.conf:1:");
}

/* What the unknown-section message names at the least: the section. */
static void test_unknown_section_named(void **state)
{
        struct kms_config c;
        char err[512];

        assert_int_equal(load(&c, "[daemon]\nworkers = 4\n[nosuch]\nkey = 1\n", err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "nosuch"));
        assert_non_null(strstr(err, "test.conf:"));
        kms_config_free(&c);
}

static void test_bad_value_quoted(void **state)
{
        struct kms_config c;
        char err[512];

        assert_int_equal(load(&c, "[daemon]\nlog_level = verbose\n", err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "verbose"));
        kms_config_free(&c);
        assert_int_equal(load(&c, "[daemon]\nworkers = 65\n", err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "65"));
        kms_config_free(&c);
        assert_int_equal(load(&c, "[daemon]\nbogus_key = 1\n", err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "bogus_key"));
        kms_config_free(&c);
}

static void test_small_errbuf(void **state)
{
        struct kms_config c;
        char err[8];

        /* A message longer than the buffer is cut, never overflows. */
        memset(err, 'x', sizeof(err));
        assert_int_equal(kms_config_init(&c), 0);
        assert_int_equal(kms_config_load_string(&c, "[daemon]\nworkers = 0\n", "a-rather-long-name.conf", err,
                                                sizeof(err)),
                         -EINVAL);
        assert_non_null(memchr(err, '\0', sizeof(err)));
        kms_config_free(&c);
}

static void test_token_serial(void **state)
{
        struct kms_config c;
        char err[512];

        assert_int_equal(load(&c, "[pkcs11]\ntoken_serial = 0123456789abcdef\n", err, sizeof(err)), 0);
        assert_string_equal(c.token_serial, "0123456789abcdef");
        kms_config_free(&c);
}

/* docs/configuration.md: "When pin_file is not set, kmsd reads
 * $CREDENTIALS_DIRECTORY/pin"; config.h: pin_file NULL means that. So
 * the default, and a file that does not set it, leave it NULL. */
static void test_pin_file_unset(void **state)
{
        struct kms_config c;
        char err[512];

        assert_int_equal(kms_config_init(&c), 0);
        if (c.pin_file)
                fail_msg("default pin_file is \"%s\", expected unset (NULL: $CREDENTIALS_DIRECTORY/pin)",
                         c.pin_file);
        kms_config_free(&c);

        assert_int_equal(load(&c, "[pkcs11]\ntoken_label = t\n", err, sizeof(err)), 0);
        assert_null(c.pin_file);
        kms_config_free(&c);

        /* Set, then set to empty: unset again. */
        assert_int_equal(load(&c, "[pkcs11]\npin_file = /x/pin\n", err, sizeof(err)), 0);
        assert_string_equal(c.pin_file, "/x/pin");
        assert_int_equal(kms_config_load_string(&c, "[pkcs11]\npin_file =\n", "second.conf", err, sizeof(err)), 0);
        assert_null(c.pin_file);
        kms_config_free(&c);
}

static void test_load_file(void **state)
{
        char dir[] = "/tmp/kmsd-test-config.XXXXXX";
        char path[256], missing[256], err[512];
        struct kms_config c;
        FILE *f;

        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/kmsd.conf", dir);
        snprintf(missing, sizeof(missing), "%s/missing.conf", dir);
        f = fopen(path, "we");
        assert_non_null(f);
        fputs("[daemon]\nworkers = 3\n\n[limits]\nmax_keys = 0\n", f);
        fclose(f);

        assert_int_equal(kms_config_init(&c), 0);
        assert_int_equal(kms_config_load(&c, path, err, sizeof(err)), -EINVAL);
        {
                char where[300];
                snprintf(where, sizeof(where), "%s:5:", path);
                if (!strstr(err, where))
                        fail_msg("message \"%s\" lacks \"%s\"", err, where);
        }
        kms_config_free(&c);

        f = fopen(path, "we");
        assert_non_null(f);
        fputs("[daemon]\nworkers = 3\n", f);
        fclose(f);
        assert_int_equal(kms_config_init(&c), 0);
        assert_int_equal(kms_config_load(&c, path, err, sizeof(err)), 0);
        assert_int_equal(c.workers, 3);
        kms_config_free(&c);

        assert_int_equal(kms_config_init(&c), 0);
        err[0] = '\0';
        assert_int_equal(kms_config_load(&c, missing, err, sizeof(err)), -ENOENT);
        assert_non_null(strstr(err, missing));
        kms_config_free(&c);

        assert_int_equal(unlink(path), 0);
        assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_defaults),        cmocka_unit_test(test_full_file),
                cmocka_unit_test(test_partial_keeps_defaults), cmocka_unit_test(test_inline_comments),
                cmocka_unit_test(test_bounds),          cmocka_unit_test(test_errors_name_line),
                cmocka_unit_test(test_bad_value_quoted), cmocka_unit_test(test_small_errbuf),
                cmocka_unit_test(test_token_serial),    cmocka_unit_test(test_load_file),
                cmocka_unit_test(test_pin_file_unset),  cmocka_unit_test(test_unknown_section),
                cmocka_unit_test(test_unknown_section_named),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
