/* The policy parser and the decision function (policy/policy.c): rule
 * order, globs, groups, owner rights, default deny, admins, and the
 * file:line of every refusal; rules of global operations and their keys
 * line; what a denied caller is told; owner, mode and links of the policy
 * folder and files. Also the two pieces of common/kms-log.c that guard
 * kmsd's log from callers: escaping and the token bucket. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "kms-log.h"
#include "kms-policy.h"

static const struct kms_policy_settings settings = {
        .admin_group = "",
        .owner_rights = KMS_OWNER_RIGHTS_DEFAULT,
};

static struct kms_policy *load(const char *text)
{
        struct kms_policy *p = NULL;
        char err[512] = "";

        if (kms_policy_load_string(&settings, text, "test.conf", &p, err, sizeof(err)) < 0)
                fail_msg("policy refused: %s", err);
        return p;
}

/* Refused with exactly this "test.conf:LINE: ..." prefix. */
static void refused(const char *text, const char *expect)
{
        struct kms_policy *p = NULL;
        char err[512] = "";

        assert_int_equal(kms_policy_load_string(&settings, text, "test.conf", &p, err, sizeof(err)), -EINVAL);
        assert_null(p);
        if (strncmp(err, expect, strlen(expect)) != 0)
                fail_msg("expected '%s...', got '%s'", expect, err);
}

static struct kms_caller caller(uid_t uid, gid_t gid)
{
        struct kms_caller c = {.uid = uid, .pid = 42, .n_gids = 1};

        c.gids[0] = gid;
        return c;
}

static bool allowed(const struct kms_policy *p, uid_t uid, gid_t gid, enum kms_operation op, const char *key,
                    uid_t owner, char *why, size_t len)
{
        struct kms_caller c = caller(uid, gid);
        struct kms_decision d;
        bool r = kms_policy_decide(p, &c, op, key, owner, &d);

        if (why)
                snprintf(why, len, "%s", d.why);
        return r;
}

static void test_default_deny(void **state)
{
        struct kms_policy *p = load("");
        char why[KMS_POLICY_WHY_MAX];

        (void)state;
        for (int op = 0; op < _KMS_OP_MAX; op++)
                assert_false(allowed(p, 1000, 1000, op, "chat/bob", 1001, why, sizeof(why)));
        assert_string_equal(why, "no rule matched: denied by default");
        /* Not about a key: denied too. */
        assert_false(allowed(p, 1000, 1000, KMS_OP_STATUS, NULL, KMS_NO_OWNER, NULL, 0));
        kms_policy_unref(p);
}

static void test_owner_rights(void **state)
{
        struct kms_policy *p = load("");
        char why[KMS_POLICY_WHY_MAX];

        (void)state;
        assert_true(allowed(p, 1000, 1000, KMS_OP_SIGN, "chat/alice", 1000, why, sizeof(why)));
        assert_string_equal(why, "owner of the key (owner_rights in kmsd.conf)");
        assert_true(allowed(p, 1000, 1000, KMS_OP_DESTROY, "chat/alice", 1000, NULL, 0));
        /* Not create (no key yet), audit, admin, status. */
        assert_false(allowed(p, 1000, 1000, KMS_OP_CREATE, "chat/alice", 1000, NULL, 0));
        assert_false(allowed(p, 1000, 1000, KMS_OP_ADMIN, "chat/alice", 1000, NULL, 0));
        assert_false(allowed(p, 1000, 1000, KMS_OP_AUDIT, "chat/alice", 1000, NULL, 0));
        /* No such key: nobody owns it. */
        assert_false(allowed(p, 1000, 1000, KMS_OP_SIGN, "chat/alice", KMS_NO_OWNER, NULL, 0));
        kms_policy_unref(p);

        /* owner_rights narrowed in kmsd.conf. */
        {
                struct kms_policy_settings st = settings;
                char err[256];

                st.owner_rights = KMS_OP_BIT(KMS_OP_READ);
                assert_int_equal(kms_policy_load_string(&st, "", "x", &p, err, sizeof(err)), 0);
                assert_true(allowed(p, 1000, 1000, KMS_OP_READ, "k", 1000, NULL, 0));
                assert_false(allowed(p, 1000, 1000, KMS_OP_SIGN, "k", 1000, NULL, 0));
                kms_policy_unref(p);
        }
}

static void test_root_is_admin(void **state)
{
        struct kms_policy *p = load("[no-root]\nsubjects = uid:0\noperations = sign\nkeys = *\neffect = deny\n");
        char why[KMS_POLICY_WHY_MAX];

        (void)state;
        assert_true(allowed(p, 0, 0, KMS_OP_SIGN, "chat/bob", 1001, why, sizeof(why)));
        assert_string_equal(why, "admin: uid 0");
        assert_true(allowed(p, 0, 0, KMS_OP_ADMIN, NULL, KMS_NO_OWNER, NULL, 0));
        kms_policy_unref(p);
}

static void test_admin_group(void **state)
{
        struct kms_policy_settings st = settings;
        struct kms_policy *p = NULL;
        struct kms_caller c = caller(1000, 1000);
        struct kms_decision d;
        char err[256];

        (void)state;
        /* "root" exists as a group on every Linux. */
        st.admin_group = "root";
        assert_int_equal(kms_policy_load_string(&st, "", "x", &p, err, sizeof(err)), 0);
        assert_string_equal(kms_policy_admin_group(p), "root");
        assert_false(kms_policy_decide(p, &c, KMS_OP_SIGN, "k", 5, &d));
        c.gids[c.n_gids++] = 0;
        assert_true(kms_policy_decide(p, &c, KMS_OP_SIGN, "k", 5, &d));
        assert_string_equal(d.why, "admin: member of group root");
        assert_true(kms_policy_is_admin(p, &c));
        kms_policy_unref(p);

        /* A group that does not exist: only root is admin, no error. */
        st.admin_group = "no-such-group-kmsd-test";
        assert_int_equal(kms_policy_load_string(&st, "", "x", &p, err, sizeof(err)), 0);
        assert_string_equal(kms_policy_admin_group(p), "");
        kms_policy_unref(p);
}

static const char chat_app[] = "# the messaging app\n"
                               "[chat-app]\n"
                               "subjects = uid:1000, gid:2000\n"
                               "operations = sign,derive,session,read\n"
                               "keys = chat/*\n";

static void test_rule_grants_exactly(void **state)
{
        struct kms_policy *p = load(chat_app);
        char why[KMS_POLICY_WHY_MAX];

        (void)state;
        assert_true(allowed(p, 1000, 1000, KMS_OP_SIGN, "chat/bob", 1001, why, sizeof(why)));
        assert_string_equal(why, "rule [chat-app] (test.conf:2, effect allow)");
        assert_true(allowed(p, 1000, 1000, KMS_OP_DERIVE, "chat/bob", 1001, NULL, 0));
        /* '*' crosses '/'. */
        assert_true(allowed(p, 1000, 1000, KMS_OP_READ, "chat/team/bob", 1001, NULL, 0));
        /* Other operations, other keys, other users: no. */
        assert_false(allowed(p, 1000, 1000, KMS_OP_DESTROY, "chat/bob", 1001, NULL, 0));
        assert_false(allowed(p, 1000, 1000, KMS_OP_SIGN, "mail/bob", 1001, NULL, 0));
        assert_false(allowed(p, 1000, 1000, KMS_OP_SIGN, "chat", 1001, NULL, 0));
        assert_false(allowed(p, 1002, 1002, KMS_OP_SIGN, "chat/bob", 1001, NULL, 0));
        /* The group, through any of the caller's groups. */
        assert_true(allowed(p, 1003, 2000, KMS_OP_SIGN, "chat/bob", 1001, NULL, 0));
        {
                struct kms_caller c = caller(1004, 1004);
                c.gids[c.n_gids++] = 3000;
                c.gids[c.n_gids++] = 2000;
                assert_true(kms_policy_decide(p, &c, KMS_OP_SESSION, "chat/x", 1, NULL));
        }
        kms_policy_unref(p);
}

/* Groups that could not all be read: a deny rule on a group must not fail
 * open, so such a caller (not root) is denied whatever allows it. */
static void test_groups_incomplete(void **state)
{
        struct kms_policy *p = load("[all]\nsubjects = any\noperations = sign\nkeys = *\n");
        struct kms_caller c = caller(1000, 1000);
        struct kms_decision d;

        (void)state;
        assert_true(kms_policy_decide(p, &c, KMS_OP_SIGN, "k", 1000, &d));
        c.groups_incomplete = true;
        assert_false(kms_policy_decide(p, &c, KMS_OP_SIGN, "k", 1000, &d));
        assert_non_null(strstr(d.why, "groups could not all be read"));
        c.uid = 0;
        assert_true(kms_policy_decide(p, &c, KMS_OP_SIGN, "k", 1000, &d));
        kms_policy_unref(p);
}

static void test_first_match_wins(void **state)
{
        struct kms_policy *p = load("[no-secret]\n"
                                    "subjects = any\n"
                                    "operations = sign\n"
                                    "keys = chat/secret\n"
                                    "effect = deny\n"
                                    "\n"
                                    "[chat]\n"
                                    "subjects = uid:1000\n"
                                    "operations = sign\n"
                                    "keys = chat/*\n");
        char why[KMS_POLICY_WHY_MAX];

        (void)state;
        assert_false(allowed(p, 1000, 1000, KMS_OP_SIGN, "chat/secret", 1001, why, sizeof(why)));
        assert_string_equal(why, "rule [no-secret] (test.conf:1, effect deny)");
        assert_true(allowed(p, 1000, 1000, KMS_OP_SIGN, "chat/other", 1001, why, sizeof(why)));
        assert_string_equal(why, "rule [chat] (test.conf:7, effect allow)");
        /* A deny rule overrides the owner's default rights. */
        assert_false(allowed(p, 1001, 1001, KMS_OP_SIGN, "chat/secret", 1001, NULL, 0));
        kms_policy_unref(p);
}

static void test_owner_subject_and_globs(void **state)
{
        struct kms_policy *p = load("[own-audit]\n"
                                    "subjects = owner\n"
                                    "operations = audit\n"
                                    "keys = *\n"
                                    "[svc]\n"
                                    "subjects = user:nobody\n"
                                    "operations = decrypt verify\n"
                                    "keys = svc/unwrap-? svc/[ab]* svc/[!x]z\n"
                                    "[ops]\n"
                                    "subjects = uid:1500\n"
                                    "operations = status admin\n"
                                    "keys = *\n");

        (void)state;
        assert_true(allowed(p, 1000, 1000, KMS_OP_AUDIT, "any/key", 1000, NULL, 0));
        assert_false(allowed(p, 1000, 1000, KMS_OP_AUDIT, "any/key", 1001, NULL, 0));
        assert_true(allowed(p, 65534, 65534, KMS_OP_DECRYPT, "svc/unwrap-1", 0, NULL, 0));
        assert_false(allowed(p, 65534, 65534, KMS_OP_DECRYPT, "svc/unwrap-12", 0, NULL, 0));
        assert_true(allowed(p, 65534, 65534, KMS_OP_VERIFY, "svc/beta", 0, NULL, 0));
        assert_false(allowed(p, 65534, 65534, KMS_OP_VERIFY, "svc/cat", 0, NULL, 0));
        assert_true(allowed(p, 65534, 65534, KMS_OP_VERIFY, "svc/yz", 0, NULL, 0));
        assert_false(allowed(p, 65534, 65534, KMS_OP_VERIFY, "svc/xz", 0, NULL, 0));
        /* Requests not about a key: the keys line is not consulted. */
        assert_true(allowed(p, 1500, 1500, KMS_OP_STATUS, NULL, KMS_NO_OWNER, NULL, 0));
        assert_true(allowed(p, 1500, 1500, KMS_OP_ADMIN, NULL, KMS_NO_OWNER, NULL, 0));
        assert_false(allowed(p, 1000, 1000, KMS_OP_STATUS, NULL, KMS_NO_OWNER, NULL, 0));
        kms_policy_unref(p);
}

/* kms_policy_reach: an upper bound of what kms_policy_decide can allow,
 * from the rules alone (lists filter in their query by it). */
static void test_reach(void **state)
{
        struct kms_policy_settings st = settings;
        struct kms_policy *p = load(chat_app);
        struct kms_caller c = caller(1000, 1000);
        char err[256];

        (void)state;
        /* uid 1000 is named by a rule granting read: other owners' keys. */
        assert_int_equal(kms_policy_reach(p, &c, KMS_OP_READ), KMS_REACH_SOME);
        /* Only the owner's rights grant destroy. */
        assert_int_equal(kms_policy_reach(p, &c, KMS_OP_DESTROY), KMS_REACH_OWN);
        /* Nobody is granted audit. */
        assert_int_equal(kms_policy_reach(p, &c, KMS_OP_AUDIT), KMS_REACH_NONE);
        /* Through a group. */
        c = caller(1003, 2000);
        assert_int_equal(kms_policy_reach(p, &c, KMS_OP_READ), KMS_REACH_SOME);
        /* A uid no rule names: its own keys. */
        c = caller(1002, 1002);
        assert_int_equal(kms_policy_reach(p, &c, KMS_OP_READ), KMS_REACH_OWN);
        /* Root: everything; incomplete groups: nothing. */
        c = caller(0, 0);
        assert_int_equal(kms_policy_reach(p, &c, KMS_OP_READ), KMS_REACH_ALL);
        c = caller(1000, 1000);
        c.groups_incomplete = true;
        assert_int_equal(kms_policy_reach(p, &c, KMS_OP_READ), KMS_REACH_NONE);
        assert_int_equal(kms_policy_reach(p, &c, KMS_OP_INVALID), KMS_REACH_NONE);
        kms_policy_unref(p);

        /* Without owner rights, a rule with the subject "owner" is what
         * grants the own keys; deny rules grant nothing. */
        st.owner_rights = 0;
        assert_int_equal(kms_policy_load_string(&st,
                                                "[deny]\nsubjects = uid:1000\noperations = read\nkeys = *\n"
                                                "effect = deny\n",
                                                "x", &p, err, sizeof(err)),
                         0);
        c = caller(1000, 1000);
        assert_int_equal(kms_policy_reach(p, &c, KMS_OP_READ), KMS_REACH_NONE);
        kms_policy_unref(p);
        assert_int_equal(kms_policy_load_string(&st, "[own]\nsubjects = owner\noperations = read\nkeys = *\n", "x",
                                                &p, err, sizeof(err)),
                         0);
        assert_int_equal(kms_policy_reach(p, &c, KMS_OP_READ), KMS_REACH_OWN);
        assert_false(allowed(p, 1000, 1000, KMS_OP_READ, "k", 1001, NULL, 0));
        kms_policy_unref(p);
        assert_int_equal(kms_policy_load_string(&st, "[all]\nsubjects = any\noperations = read\nkeys = pub/*\n",
                                                "x", &p, err, sizeof(err)),
                         0);
        assert_int_equal(kms_policy_reach(p, &c, KMS_OP_READ), KMS_REACH_SOME);
        kms_policy_unref(p);
        /* The admin group: everything. */
        st.admin_group = "root";
        assert_int_equal(kms_policy_load_string(&st, "", "x", &p, err, sizeof(err)), 0);
        c.gids[c.n_gids++] = 0;
        assert_int_equal(kms_policy_reach(p, &c, KMS_OP_READ), KMS_REACH_ALL);
        kms_policy_unref(p);
}

static void test_rule_info(void **state)
{
        struct kms_policy *p = load(chat_app);
        struct kms_policy_rule_info ri;

        (void)state;
        assert_int_equal(kms_policy_n_rules(p), 1);
        kms_policy_rule_info(p, 0, &ri);
        assert_string_equal(ri.name, "chat-app");
        assert_string_equal(ri.file, "test.conf");
        assert_int_equal(ri.line, 2);
        assert_true(ri.allow);
        assert_string_equal(ri.subjects, "uid:1000 gid:2000");
        assert_string_equal(ri.operations, "read,sign,derive,session");
        assert_string_equal(ri.keys, "chat/*");
        kms_policy_unref(p);
}

static void test_parse_errors(void **state)
{
        (void)state;
        refused("[r]\nsubjects = any\noperations = sign\nkeys = *\ncolour = blue\n",
                "test.conf:5: unknown key 'colour'");
        refused("[r]\nsubjects = any\noperations = sign, fly\nkeys = *\n", "test.conf:3: unknown operation 'fly'");
        refused("[r]\nsubjects = user:no-such-user-kmsd\noperations = sign\nkeys = *\n",
                "test.conf:2: unknown user 'no-such-user-kmsd'");
        refused("[r]\nsubjects = group:no-such-group-kmsd\noperations = sign\nkeys = *\n",
                "test.conf:2: unknown group 'no-such-group-kmsd'");
        refused("[r]\nsubjects = everyone\noperations = sign\nkeys = *\n", "test.conf:2: unknown subject 'everyone'");
        refused("[r]\nsubjects = uid:abc\noperations = sign\nkeys = *\n", "test.conf:2: 'uid:abc': not a number");
        refused("[r]\nsubjects = any\noperations = sign\nkeys = chat/[ab\n",
                "test.conf:4: key pattern 'chat/[ab': '['");
        refused("[r]\nsubjects = any\noperations = sign\nkeys = chat/a]\n", "test.conf:4: key pattern 'chat/a]'");
        refused("[r]\nsubjects = any\noperations = sign\nkeys = chat/a b$\n", "test.conf:4: key pattern 'b$'");
        refused("[r]\nsubjects = any\noperations = sign\nkeys = *\neffect = maybe\n", "test.conf:5: effect = 'maybe'");
        refused("[r]\nsubjects = any\nsubjects = any\n", "test.conf:3: 'subjects' given twice");
        /* Incomplete rules are reported at their section line, also the last. */
        refused("[r]\nsubjects = any\noperations = sign\n\n[s]\n", "test.conf:1: rule [r] needs");
        refused("[r]\nsubjects = any\noperations = sign\nkeys = *\n[s]\n", "test.conf:5: rule [s] needs");
        refused("subjects = any\n", "test.conf:1: 'subjects' outside a rule");
        refused("[bad name]\n", "test.conf:1: rule name [bad name]");
        refused("[r]\nsubjects = any\noperations = sign\nkeys = *\n[r]\n", "test.conf:5: rule [r] is already defined");
        refused("[r]\nsubjects any\n", "test.conf:2: syntax error");
}

static void test_load_dir(void **state)
{
        char dir[] = "/tmp/kms-policy-XXXXXX", path[256], err[512];
        struct kms_policy_settings st = settings;
        struct kms_policy *p = NULL, *old;
        FILE *f;

        (void)state;
        assert_non_null(mkdtemp(dir));
        st.dir = dir;
        snprintf(path, sizeof(path), "%s/20-chat.conf", dir);
        f = fopen(path, "w");
        assert_non_null(f);
        fputs(chat_app, f);
        fclose(f);
        assert_int_equal(chmod(path, 0644), 0); /* whatever the umask: not group-writable */
        snprintf(path, sizeof(path), "%s/10-deny.conf", dir);
        f = fopen(path, "w");
        assert_non_null(f);
        fputs("[deny-bob]\nsubjects = uid:1000\noperations = sign\nkeys = chat/bob\neffect = deny\n", f);
        fclose(f);
        assert_int_equal(chmod(path, 0644), 0);
        snprintf(path, sizeof(path), "%s/notes.txt", dir); /* not a .conf: ignored */
        f = fopen(path, "w");
        assert_non_null(f);
        fputs("garbage\n", f);
        fclose(f);

        assert_int_equal(kms_policy_load(&st, &p, err, sizeof(err)), 0);
        assert_int_equal(kms_policy_n_rules(p), 2);
        /* 10-deny.conf comes first. */
        assert_false(allowed(p, 1000, 1000, KMS_OP_SIGN, "chat/bob", 1, NULL, 0));
        assert_true(allowed(p, 1000, 1000, KMS_OP_SIGN, "chat/eve", 1, NULL, 0));

        /* A broken file: refused with its name and line, nothing returned;
         * the caller keeps the old policy. */
        old = p;
        p = NULL;
        snprintf(path, sizeof(path), "%s/30-broken.conf", dir);
        f = fopen(path, "w");
        assert_non_null(f);
        fputs("[x]\nsubjects = any\noperations = sing\nkeys = *\n", f);
        fclose(f);
        assert_int_equal(chmod(path, 0644), 0);
        assert_int_equal(kms_policy_load(&st, &p, err, sizeof(err)), -EINVAL);
        assert_null(p);
        assert_non_null(strstr(err, "30-broken.conf:3: unknown operation 'sing'"));
        assert_true(allowed(old, 1000, 1000, KMS_OP_SIGN, "chat/eve", 1, NULL, 0));
        kms_policy_unref(old);
        unlink(path);
        snprintf(path, sizeof(path), "%s/10-deny.conf", dir);
        unlink(path);
        snprintf(path, sizeof(path), "%s/20-chat.conf", dir);
        unlink(path);
        snprintf(path, sizeof(path), "%s/notes.txt", dir);
        unlink(path);
        rmdir(dir);

        /* A missing folder: no rules, no error. */
        assert_int_equal(kms_policy_load(&st, &p, err, sizeof(err)), 0);
        assert_int_equal(kms_policy_n_rules(p), 0);
        kms_policy_unref(p);
}

/* admin, audit and status are not about one key: a rule granting only
 * those needs no keys line, and one other than "*" is refused at the keys
 * line, because it would read as a limit that does not apply. */
static void test_global_rules(void **state)
{
        struct kms_policy *p;
        struct kms_policy_rule_info ri;

        (void)state;
        p = load("[ops]\nsubjects = uid:1500\noperations = status, audit\n"
                 "[team-admin]\nsubjects = uid:1600\noperations = admin\nkeys = *\n");
        assert_int_equal(kms_policy_n_rules(p), 2);
        kms_policy_rule_info(p, 0, &ri);
        assert_string_equal(ri.keys, "*"); /* shown as what it means */
        assert_true(allowed(p, 1500, 1500, KMS_OP_STATUS, NULL, KMS_NO_OWNER, NULL, 0));
        assert_true(allowed(p, 1500, 1500, KMS_OP_AUDIT, NULL, KMS_NO_OWNER, NULL, 0));
        assert_false(allowed(p, 1500, 1500, KMS_OP_ADMIN, NULL, KMS_NO_OWNER, NULL, 0));
        assert_true(allowed(p, 1600, 1600, KMS_OP_ADMIN, NULL, KMS_NO_OWNER, NULL, 0));
        kms_policy_unref(p);

        refused("[team-admin]\nsubjects = uid:1600\noperations = admin\nkeys = team/*\n",
                "test.conf:4: rule [team-admin] grants only admin, which are not about one key: 'keys = team/*' "
                "would not limit them");
        /* Reported at the keys line wherever it is in the rule, also for a
         * rule that is not the last. */
        refused("[a]\nsubjects = any\nkeys = prod/* *\noperations = status audit\n[b]\nsubjects = any\n"
                "operations = status\n",
                "test.conf:3: rule [a] grants only audit,status");
        /* Any other operation needs its keys line, as before. */
        refused("[r]\nsubjects = any\noperations = admin, create\n", "test.conf:1: rule [r] needs subjects, operations "
                                                                    "and keys (missing: keys)");
        /* Mixed: the keys line limits the key operations. */
        p = load("[mixed]\nsubjects = uid:1600\noperations = status, create\nkeys = team/*\n");
        assert_true(allowed(p, 1600, 1600, KMS_OP_CREATE, "team/x", KMS_NO_OWNER, NULL, 0));
        assert_false(allowed(p, 1600, 1600, KMS_OP_CREATE, "prod/x", KMS_NO_OWNER, NULL, 0));
        assert_true(allowed(p, 1600, 1600, KMS_OP_STATUS, NULL, KMS_NO_OWNER, NULL, 0));
        kms_policy_unref(p);
}

/* A denied caller learns the rule's name; the log and admins get its file
 * and line too. */
static void test_why_caller(void **state)
{
        struct kms_policy *p = load("[no-secret]\nsubjects = any\noperations = sign\nkeys = chat/secret\n"
                                    "effect = deny\n");
        struct kms_caller c = caller(1000, 1000);
        struct kms_decision d;

        (void)state;
        assert_false(kms_policy_decide(p, &c, KMS_OP_SIGN, "chat/secret", 1000, &d));
        assert_string_equal(d.why, "rule [no-secret] (test.conf:1, effect deny)");
        assert_string_equal(d.why_caller, "rule [no-secret] (effect deny)");
        assert_null(strstr(d.why_caller, "test.conf"));
        assert_false(kms_policy_decide(p, &c, KMS_OP_SIGN, "chat/other", 1001, &d));
        assert_string_equal(d.why_caller, "no rule matched: denied by default");
        assert_true(kms_policy_decide(p, &c, KMS_OP_SIGN, "chat/other", 1000, &d));
        assert_string_equal(d.why_caller, d.why);
        kms_policy_unref(p);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
        FILE *f = fopen(path, "w");

        assert_non_null(f);
        fputs(text, f);
        fclose(f);
        assert_int_equal(chmod(path, mode), 0);
}

/* Load st's folder; expect r and an error containing both strings. */
static void load_refused(const struct kms_policy_settings *st, int r, const char *s1, const char *s2)
{
        struct kms_policy *p = NULL;
        char err[512] = "";

        assert_int_equal(kms_policy_load(st, &p, err, sizeof(err)), r);
        assert_null(p);
        if (!strstr(err, s1) || !strstr(err, s2))
                fail_msg("expected '%s' and '%s' in '%s'", s1, s2, err);
}

/* Only root (or kmsd's own uid) may write the policy: a folder or file
 * that group or others can write, that another uid owns, a link, or a
 * FIFO is refused, naming the path and why. */
static void test_load_dir_permissions(void **state)
{
        char dir[] = "/tmp/kms-policy-XXXXXX", path[256], path2[256], link_dir[300];
        struct kms_policy_settings st = settings;
        struct kms_policy *p = NULL;
        char err[512];

        (void)state;
        assert_non_null(mkdtemp(dir));
        st.dir = dir;
        snprintf(path, sizeof(path), "%s/50-ok.conf", dir);
        write_file(path, "[ok]\nsubjects = any\noperations = status\nkeys = *\n", 0644);
        assert_int_equal(kms_policy_load(&st, &p, err, sizeof(err)), 0);
        kms_policy_unref(p);

        /* The folder: group- or world-writable. */
        assert_int_equal(chmod(dir, 0775), 0);
        load_refused(&st, -EPERM, dir, "the policy folder has mode 0775, writable by its group");
        assert_int_equal(chmod(dir, 0757), 0);
        load_refused(&st, -EPERM, dir, "writable by others");
        assert_int_equal(chmod(dir, 0755), 0);

        /* A file: group-writable (even one that parses). */
        assert_int_equal(chmod(path, 0664), 0);
        load_refused(&st, -EPERM, path, "the policy file has mode 0664, writable by its group; make it writable by its owner only");
        assert_int_equal(chmod(path, 0646), 0);
        load_refused(&st, -EPERM, path, "writable by others");
        assert_int_equal(chmod(path, 0644), 0);

        /* A symbolic link in the folder, even to a good file. */
        snprintf(path2, sizeof(path2), "%s/60-link.conf", dir);
        assert_int_equal(symlink(path, path2), 0);
        load_refused(&st, -ELOOP, path2, "is a symbolic link; kmsd does not follow links");
        unlink(path2);

        /* A FIFO is no policy file, and must not hang the load. */
        assert_int_equal(mkfifo(path2, 0644), 0);
        load_refused(&st, -EPERM, path2, "not a regular file");
        unlink(path2);

        /* The folder itself through a link. */
        snprintf(link_dir, sizeof(link_dir), "%s-link", dir);
        assert_int_equal(symlink(dir, link_dir), 0);
        st.dir = link_dir;
        load_refused(&st, -ELOOP, link_dir, "the policy folder is a symbolic link");
        unlink(link_dir);
        st.dir = dir;

        /* Owned by another uid (needs root to give it away). */
        if (getuid() == 0) {
                assert_int_equal(chown(path, 65534, 65534), 0);
                load_refused(&st, -EPERM, path, "the policy file is owned by uid 65534; it must be owned by root");
                assert_int_equal(chown(path, 0, 0), 0);
                assert_int_equal(chown(dir, 65534, 65534), 0);
                load_refused(&st, -EPERM, dir, "the policy folder is owned by uid 65534");
                assert_int_equal(chown(dir, 0, 0), 0);
        }
        assert_int_equal(kms_policy_load(&st, &p, err, sizeof(err)), 0);
        assert_int_equal(kms_policy_n_rules(p), 1);
        kms_policy_unref(p);
        unlink(path);
        rmdir(dir);
}

/* Nothing a caller puts into a log message can start a new line. */
static void test_log_escape(void **state)
{
        char out[64];

        (void)state;
        assert_int_equal(kms_log_escape("plain text, UTF-8 \xc3\xa9 and \\ too", out, sizeof(out)),
                         strlen("plain text, UTF-8 \xc3\xa9 and \\ too"));
        assert_string_equal(out, "plain text, UTF-8 \xc3\xa9 and \\ too");
        kms_log_escape("x\ndenied: uid 0\r\t\x1b[1m\x7f.", out, sizeof(out));
        assert_string_equal(out, "x\\x0adenied: uid 0\\x0d\\x09\\x1b[1m\\x7f.");
        assert_null(strchr(out, '\n'));
        /* Too small: stops before an escape rather than cutting it. */
        assert_int_equal(kms_log_escape("ab\ncd", out, 6), 2);
        assert_string_equal(out, "ab");
        assert_int_equal(kms_log_escape("ab\ncd", out, 7), 6);
        assert_string_equal(out, "ab\\x0a");
        assert_int_equal(kms_log_escape("abc", out, 1), 0);
        assert_string_equal(out, "");
        assert_int_equal(kms_log_escape("abc", out, 0), 0);
}

/* The token bucket behind the refusal limit: burst 20, then 2 a second. */
static void test_log_ratelimit(void **state)
{
        struct kms_log_ratelimit rl = {0};
        uint64_t t = 1000000;
        unsigned ok = 0;

        (void)state;
        assert_true(kms_log_ratelimit_full(&rl, 20, 2, t));
        for (int i = 0; i < 4000; i++)
                ok += kms_log_ratelimit_take(&rl, 20, 2, t);
        assert_int_equal(ok, 20);
        assert_false(kms_log_ratelimit_full(&rl, 20, 2, t));
        /* 499 ms: not yet one token; 500 ms: one. */
        assert_false(kms_log_ratelimit_take(&rl, 20, 2, t + 499));
        assert_true(kms_log_ratelimit_take(&rl, 20, 2, t + 500));
        assert_false(kms_log_ratelimit_take(&rl, 20, 2, t + 500));
        /* 10 s later: full again (20), no more. */
        t += 10500;
        assert_true(kms_log_ratelimit_full(&rl, 20, 2, t));
        ok = 0;
        for (int i = 0; i < 100; i++)
                ok += kms_log_ratelimit_take(&rl, 20, 2, t);
        assert_int_equal(ok, 20);
        /* A clock that goes back refills nothing; a huge gap does not
         * overflow. */
        assert_false(kms_log_ratelimit_take(&rl, 20, 2, t - 5000));
        assert_true(kms_log_ratelimit_take(&rl, 20, 2, UINT64_MAX / 2));
}

static void test_operations(void **state)
{
        unsigned mask = 0;
        const char *bad = NULL;
        char buf[256];

        (void)state;
        for (int op = 0; op < _KMS_OP_MAX; op++)
                assert_int_equal(kms_operation_from_string(kms_operation_to_string(op)), op);
        assert_int_equal(kms_operation_from_string("fly"), KMS_OP_INVALID);
        assert_int_equal(kms_operations_parse(" sign,derive  session ", &mask, &bad), 0);
        assert_int_equal(mask, KMS_OP_BIT(KMS_OP_SIGN) | KMS_OP_BIT(KMS_OP_DERIVE) | KMS_OP_BIT(KMS_OP_SESSION));
        kms_operations_format(mask, buf, sizeof(buf));
        assert_string_equal(buf, "sign,derive,session");
        assert_int_equal(kms_operations_parse("sign,nope", &mask, &bad), -EINVAL);
        assert_string_equal(bad, "nope");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_default_deny),
                cmocka_unit_test(test_owner_rights),
                cmocka_unit_test(test_root_is_admin),
                cmocka_unit_test(test_admin_group),
                cmocka_unit_test(test_rule_grants_exactly),
                cmocka_unit_test(test_groups_incomplete),
                cmocka_unit_test(test_first_match_wins),
                cmocka_unit_test(test_owner_subject_and_globs),
                cmocka_unit_test(test_reach),
                cmocka_unit_test(test_rule_info),
                cmocka_unit_test(test_parse_errors),
                cmocka_unit_test(test_load_dir),
                cmocka_unit_test(test_global_rules),
                cmocka_unit_test(test_why_caller),
                cmocka_unit_test(test_load_dir_permissions),
                cmocka_unit_test(test_log_escape),
                cmocka_unit_test(test_log_ratelimit),
                cmocka_unit_test(test_operations),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
