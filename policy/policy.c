/* The access policy: rule files, decisions; see kms-policy.h and
 * docs/policy.md. */
#include "kms-policy.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <grp.h>
#include <pwd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kms-ini.h"
#include "kms-util.h"

static const char *const op_names[_KMS_OP_MAX] = {
        [KMS_OP_CREATE] = "create",   [KMS_OP_READ] = "read",       [KMS_OP_SIGN] = "sign",
        [KMS_OP_VERIFY] = "verify",   [KMS_OP_DERIVE] = "derive",   [KMS_OP_DECRYPT] = "decrypt",
        [KMS_OP_SESSION] = "session", [KMS_OP_ROTATE] = "rotate",   [KMS_OP_REVOKE] = "revoke",
        [KMS_OP_DISABLE] = "disable", [KMS_OP_DESTROY] = "destroy", [KMS_OP_AUDIT] = "audit",
        [KMS_OP_ADMIN] = "admin",     [KMS_OP_STATUS] = "status",
};

const char *kms_operation_to_string(enum kms_operation op)
{
        return op >= 0 && op < _KMS_OP_MAX ? op_names[op] : "unknown";
}

enum kms_operation kms_operation_from_string(const char *s)
{
        for (int i = 0; i < _KMS_OP_MAX; i++)
                if (s && strcmp(s, op_names[i]) == 0)
                        return (enum kms_operation)i;
        return KMS_OP_INVALID;
}

int kms_operations_parse(const char *s, unsigned *ret_mask, const char **ret_bad)
{
        static __thread char bad[32];
        unsigned mask = 0;

        while (*s) {
                size_t n;
                char word[32];
                enum kms_operation op;

                s += strspn(s, ", \t");
                n = strcspn(s, ", \t");
                if (n == 0)
                        break;
                snprintf(word, sizeof(word), "%.*s", (int)n, s);
                if (n >= sizeof(word) || (op = kms_operation_from_string(word)) == KMS_OP_INVALID) {
                        snprintf(bad, sizeof(bad), "%.*s", (int)n, s);
                        if (ret_bad)
                                *ret_bad = bad;
                        return -EINVAL;
                }
                mask |= KMS_OP_BIT(op);
                s += n;
        }
        *ret_mask = mask;
        return 0;
}

void kms_operations_format(unsigned mask, char *buf, size_t len)
{
        size_t off = 0;

        if (len == 0)
                return;
        buf[0] = '\0';
        for (int i = 0; i < _KMS_OP_MAX; i++)
                if (mask & KMS_OP_BIT(i)) {
                        int n = snprintf(buf + off, len - off, "%s%s", off ? "," : "", op_names[i]);
                        if (n < 0 || (size_t)n >= len - off)
                                return;
                        off += (size_t)n;
                }
}

int kms_caller_resolve_groups(struct kms_caller *c)
{
        struct passwd pw, *res = NULL;
        size_t size = 4096;
        char *buf = NULL;
        int n = KMS_MAX_CALLER_GROUPS, r;

        c->n_gids = 0;
        c->groups_incomplete = false;
        for (;;) {
                char *grown = realloc(buf, size);

                if (!grown) {
                        r = ENOMEM;
                        break;
                }
                buf = grown;
                r = getpwuid_r(c->uid, &pw, buf, size, &res);
                if (r != ERANGE || size >= 1024 * 1024)
                        break;
                size *= 2;
        }
        if (r != 0) {
                /* Not "no such account": the lookup itself failed. */
                c->groups_incomplete = true;
                free(buf);
                return -r;
        }
        if (!res) {
                free(buf);
                return 0; /* no account: no groups */
        }
        if (getgrouplist(pw.pw_name, pw.pw_gid, c->gids, &n) < 0) {
                c->groups_incomplete = true;
                n = KMS_MAX_CALLER_GROUPS;
        }
        c->n_gids = (unsigned)n;
        free(buf);
        return 0;
}

/* ---- the loaded policy -------------------------------------------------- */

enum subject_type { SUBJ_UID, SUBJ_GID, SUBJ_OWNER, SUBJ_ANY };

struct subject {
        enum subject_type type;
        uint32_t id;
};

struct rule {
        char *name;
        char *file;
        unsigned line;
        unsigned keys_line; /* where its keys line is, 0 if none */
        bool allow;
        bool have_subjects, have_ops, have_keys, have_effect;
        struct subject *subjects;
        size_t n_subjects;
        unsigned ops;
        char **keys;
        size_t n_keys;
        char *subjects_text, *ops_text, *keys_text;
};

struct kms_policy {
        atomic_uint refs;
        struct rule *rules;
        size_t n_rules;
        char *admin_group;
        bool have_admin_gid;
        gid_t admin_gid;
        unsigned owner_rights;
};

static void rule_free(struct rule *r)
{
        free(r->name);
        free(r->file);
        free(r->subjects);
        for (size_t i = 0; i < r->n_keys; i++)
                free(r->keys[i]);
        free(r->keys);
        free(r->subjects_text);
        free(r->ops_text);
        free(r->keys_text);
}

static void policy_free(struct kms_policy *p)
{
        for (size_t i = 0; i < p->n_rules; i++)
                rule_free(&p->rules[i]);
        free(p->rules);
        free(p->admin_group);
        free(p);
}

struct kms_policy *kms_policy_ref(struct kms_policy *p)
{
        if (p)
                atomic_fetch_add(&p->refs, 1);
        return p;
}

void kms_policy_unref(struct kms_policy *p)
{
        if (p && atomic_fetch_sub(&p->refs, 1) == 1)
                policy_free(p);
}

static int policy_new(const struct kms_policy_settings *st, struct kms_policy **ret)
{
        struct kms_policy *p = calloc(1, sizeof(*p));

        if (!p)
                return -ENOMEM;
        atomic_init(&p->refs, 1);
        p->owner_rights = st->owner_rights;
        p->admin_group = strdup(st->admin_group ? st->admin_group : "");
        if (!p->admin_group) {
                free(p);
                return -ENOMEM;
        }
        if (*p->admin_group) {
                struct group gr, *res = NULL;
                char buf[4096];

                /* A missing admin group is not an error: root is admin, and
                 * the group may be created later (the next reload sees it). */
                if (getgrnam_r(p->admin_group, &gr, buf, sizeof(buf), &res) == 0 && res) {
                        p->admin_gid = gr.gr_gid;
                        p->have_admin_gid = true;
                }
        }
        *ret = p;
        return 0;
}

/* ---- parsing ------------------------------------------------------------ */

struct parse_ctx {
        struct kms_policy *p;
        struct kms_ini_source *src;
        const char *file;
        char msg[256];
        struct rule *cur; /* the rule being read, last in p->rules */
};

static bool valid_rule_name(const char *s, size_t len)
{
        if (len == 0 || len > 64)
                return false;
        for (size_t i = 0; i < len; i++)
                if (!isalnum((unsigned char)s[i]) && !strchr("._-", s[i]))
                        return false;
        return true;
}

/* A glob over key names: key-name characters and * ? [ ] ! ^ -, with
 * brackets closed. */
static const char *glob_problem(const char *g)
{
        bool in_bracket = false;

        if (!*g)
                return "empty pattern";
        if (strlen(g) > 256)
                return "pattern longer than 256 characters";
        for (const char *c = g; *c; c++) {
                if (in_bracket) {
                        if (*c == ']' && c[-1] != '[' && !(c[-1] == '!' && c[-2] == '[') &&
                            !(c[-1] == '^' && c[-2] == '['))
                                in_bracket = false;
                        else if (!isalnum((unsigned char)*c) && !strchr("._/-!^]", *c))
                                return "a character that no key name has inside [...]";
                        continue;
                }
                if (*c == '[')
                        in_bracket = true;
                else if (*c == ']')
                        return "']' without '['";
                else if (!isalnum((unsigned char)*c) && !strchr("._/-*?", *c))
                        return "a character that no key name has (names use A-Z a-z 0-9 . _ / -)";
        }
        return in_bracket ? "'[' without ']'" : NULL;
}

/* A rule without a keys line grants its (global) operations whatever
 * the key: the same as "keys = *", which is how it is shown. */
static int rule_default_keys(struct rule *r)
{
        r->keys = calloc(1, sizeof(*r->keys));
        if (!r->keys)
                return -ENOMEM;
        r->keys[0] = strdup("*");
        r->keys_text = strdup("*");
        if (!r->keys[0] || !r->keys_text)
                return -ENOMEM;
        r->n_keys = 1;
        return 0;
}

/* Check that the rule just finished has everything. keys may be left out
 * only when every operation is global (admin, audit, status); with such
 * operations a pattern other than "*" is refused: it would read as a
 * limit ("admin on team/STAR") that kmsd does not apply. */
static int rule_complete(struct parse_ctx *ctx)
{
        struct rule *r = ctx->cur;
        bool keys_needed;

        if (!r)
                return 0;
        keys_needed = !r->have_ops || (r->ops & ~KMS_OPS_GLOBAL) != 0;
        if (!r->have_subjects || !r->have_ops || (keys_needed && !r->have_keys)) {
                snprintf(ctx->msg, sizeof(ctx->msg), "rule [%s] needs subjects, operations and keys (missing: %s%s%s)",
                         r->name, r->have_subjects ? "" : "subjects ", r->have_ops ? "" : "operations ",
                         r->have_keys ? "" : "keys");
                ctx->src->bad_line = (int)r->line;
                return -1;
        }
        if (!keys_needed && r->have_keys && !(r->n_keys == 1 && strcmp(r->keys[0], "*") == 0)) {
                snprintf(ctx->msg, sizeof(ctx->msg),
                         "rule [%s] grants only %s, which are not about one key: 'keys = %.64s' would not limit "
                         "them; leave keys out (or write keys = *)",
                         r->name, r->ops_text ? r->ops_text : "global operations", r->keys_text ? r->keys_text : "");
                ctx->src->bad_line = (int)r->keys_line;
                return -1;
        }
        if (!r->have_keys && rule_default_keys(r) < 0) {
                snprintf(ctx->msg, sizeof(ctx->msg), "out of memory");
                ctx->src->bad_line = (int)r->line;
                return -1;
        }
        return 0;
}

static int on_section(void *userdata, const char *name, size_t len, int line, char *msg, size_t msglen)
{
        struct parse_ctx *ctx = userdata;
        struct kms_policy *p = ctx->p;
        struct rule *rules, *r;

        if (rule_complete(ctx) < 0)
                return -1; /* msg is ctx->msg: already written */
        if (!valid_rule_name(name, len)) {
                snprintf(msg, msglen, "rule name [%.*s]: use 1 to 64 of A-Z a-z 0-9 . _ -", (int)len, name);
                return -1;
        }
        for (size_t i = 0; i < p->n_rules; i++)
                if (strlen(p->rules[i].name) == len && memcmp(p->rules[i].name, name, len) == 0) {
                        snprintf(msg, msglen, "rule [%.*s] is already defined at %s:%u", (int)len, name,
                                 p->rules[i].file, p->rules[i].line);
                        return -1;
                }
        rules = realloc(p->rules, (p->n_rules + 1) * sizeof(*rules));
        if (!rules) {
                snprintf(msg, msglen, "out of memory");
                return -1;
        }
        p->rules = rules;
        r = &rules[p->n_rules];
        memset(r, 0, sizeof(*r));
        r->allow = true;
        r->line = (unsigned)line;
        r->name = strndup(name, len);
        r->file = strdup(ctx->file);
        p->n_rules++;
        ctx->cur = r;
        if (!r->name || !r->file) {
                snprintf(msg, msglen, "out of memory");
                return -1;
        }
        return 0;
}

static int parse_subjects(struct parse_ctx *ctx, struct rule *r, const char *value)
{
        const char *s = value;

        while (*s) {
                char word[300], buf[4096];
                struct subject subj = {0};
                struct subject *grown;
                size_t n;
                uint64_t v;

                s += strspn(s, ", \t");
                n = strcspn(s, ", \t");
                if (n == 0)
                        break;
                if (n >= sizeof(word)) {
                        snprintf(ctx->msg, sizeof(ctx->msg), "subject too long");
                        return -1;
                }
                memcpy(word, s, n);
                word[n] = '\0';
                s += n;
                if (strcmp(word, "owner") == 0)
                        subj.type = SUBJ_OWNER;
                else if (strcmp(word, "any") == 0)
                        subj.type = SUBJ_ANY;
                else if (strncmp(word, "user:", 5) == 0) {
                        struct passwd pw, *res = NULL;

                        if (getpwnam_r(word + 5, &pw, buf, sizeof(buf), &res) != 0 || !res) {
                                snprintf(ctx->msg, sizeof(ctx->msg), "unknown user '%.64s'", word + 5);
                                return -1;
                        }
                        subj.type = SUBJ_UID;
                        subj.id = pw.pw_uid;
                } else if (strncmp(word, "group:", 6) == 0) {
                        struct group gr, *res = NULL;

                        if (getgrnam_r(word + 6, &gr, buf, sizeof(buf), &res) != 0 || !res) {
                                snprintf(ctx->msg, sizeof(ctx->msg), "unknown group '%.64s'", word + 6);
                                return -1;
                        }
                        subj.type = SUBJ_GID;
                        subj.id = gr.gr_gid;
                } else if (strncmp(word, "uid:", 4) == 0 || strncmp(word, "gid:", 4) == 0) {
                        if (kms_parse_u64(word + 4, 0, UINT32_MAX - 1, &v) < 0) {
                                snprintf(ctx->msg, sizeof(ctx->msg), "'%.64s': not a number after %.4s", word, word);
                                return -1;
                        }
                        subj.type = word[0] == 'u' ? SUBJ_UID : SUBJ_GID;
                        subj.id = (uint32_t)v;
                } else {
                        snprintf(ctx->msg, sizeof(ctx->msg),
                                 "unknown subject '%.64s' (user:NAME, group:NAME, uid:N, gid:N, owner, any)", word);
                        return -1;
                }
                grown = realloc(r->subjects, (r->n_subjects + 1) * sizeof(*grown));
                if (!grown) {
                        snprintf(ctx->msg, sizeof(ctx->msg), "out of memory");
                        return -1;
                }
                r->subjects = grown;
                r->subjects[r->n_subjects++] = subj;
        }
        if (r->n_subjects == 0) {
                snprintf(ctx->msg, sizeof(ctx->msg), "subjects is empty");
                return -1;
        }
        return 0;
}

static int parse_keys(struct parse_ctx *ctx, struct rule *r, const char *value)
{
        const char *s = value;

        while (*s) {
                char **grown, *g;
                const char *why;
                size_t n;

                s += strspn(s, ", \t");
                n = strcspn(s, ", \t");
                if (n == 0)
                        break;
                g = strndup(s, n);
                if (!g) {
                        snprintf(ctx->msg, sizeof(ctx->msg), "out of memory");
                        return -1;
                }
                s += n;
                why = glob_problem(g);
                if (why) {
                        snprintf(ctx->msg, sizeof(ctx->msg), "key pattern '%.64s': %s", g, why);
                        free(g);
                        return -1;
                }
                grown = realloc(r->keys, (r->n_keys + 1) * sizeof(*grown));
                if (!grown) {
                        free(g);
                        snprintf(ctx->msg, sizeof(ctx->msg), "out of memory");
                        return -1;
                }
                r->keys = grown;
                r->keys[r->n_keys++] = g;
        }
        if (r->n_keys == 0) {
                snprintf(ctx->msg, sizeof(ctx->msg), "keys is empty");
                return -1;
        }
        return 0;
}

/* The value with runs of blanks and commas made one ", " or " ". */
static char *normalise(const char *value, const char *sep)
{
        size_t len = strlen(value) * 2 + 1, off = 0;
        char *out = malloc(len);
        const char *s = value;

        if (!out)
                return NULL;
        out[0] = '\0';
        while (*s) {
                size_t n;

                s += strspn(s, ", \t");
                n = strcspn(s, ", \t");
                if (n == 0)
                        break;
                off += (size_t)snprintf(out + off, len - off, "%s%.*s", off ? sep : "", (int)n, s);
                s += n;
        }
        return out;
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
        struct parse_ctx *ctx = user;
        struct rule *r = ctx->cur;
        const char *bad = NULL;

        (void)section;
        if (!r) {
                snprintf(ctx->msg, sizeof(ctx->msg), "'%s' outside a rule: start one with [rule-name]", name);
                return 0;
        }
        if (strcmp(name, "subjects") == 0) {
                if (r->have_subjects)
                        goto twice;
                r->have_subjects = true;
                if (parse_subjects(ctx, r, value) < 0 || !(r->subjects_text = normalise(value, " ")))
                        return 0;
        } else if (strcmp(name, "operations") == 0) {
                if (r->have_ops)
                        goto twice;
                r->have_ops = true;
                if (kms_operations_parse(value, &r->ops, &bad) < 0) {
                        snprintf(ctx->msg, sizeof(ctx->msg), "unknown operation '%s' (one of %s)", bad,
                                 "create, read, sign, verify, derive, decrypt, session, rotate, revoke, disable, "
                                 "destroy, audit, admin, status");
                        return 0;
                }
                if (r->ops == 0) {
                        snprintf(ctx->msg, sizeof(ctx->msg), "operations is empty");
                        return 0;
                }
                r->ops_text = malloc(256);
                if (!r->ops_text)
                        return 0;
                kms_operations_format(r->ops, r->ops_text, 256);
        } else if (strcmp(name, "keys") == 0) {
                if (r->have_keys)
                        goto twice;
                r->have_keys = true;
                r->keys_line = (unsigned)ctx->src->line;
                if (parse_keys(ctx, r, value) < 0 || !(r->keys_text = normalise(value, " ")))
                        return 0;
        } else if (strcmp(name, "effect") == 0) {
                if (r->have_effect)
                        goto twice;
                r->have_effect = true;
                if (strcmp(value, "allow") == 0)
                        r->allow = true;
                else if (strcmp(value, "deny") == 0)
                        r->allow = false;
                else {
                        snprintf(ctx->msg, sizeof(ctx->msg), "effect = '%.64s' is not allow or deny", value);
                        return 0;
                }
        } else {
                snprintf(ctx->msg, sizeof(ctx->msg),
                         "unknown key '%.64s' in rule [%s] (subjects, operations, keys, effect)", name, r->name);
                return 0;
        }
        return 1;
twice:
        snprintf(ctx->msg, sizeof(ctx->msg), "'%s' given twice in rule [%s]", name, r->name);
        return 0;
}

static int parse_source(struct kms_policy *p, struct kms_ini_source *src, const char *file, char *errbuf, size_t errlen)
{
        struct parse_ctx ctx = {.p = p, .src = src, .file = file};
        int line;

        src->msg = ctx.msg;
        src->msglen = sizeof(ctx.msg);
        src->on_section = on_section;
        src->userdata = &ctx;
        line = kms_ini_parse(src, handler, &ctx);
        if (line == 0 && rule_complete(&ctx) < 0)
                line = src->bad_line;
        if (line == 0)
                return 0;
        if (line == -2) {
                snprintf(errbuf, errlen, "%s: out of memory", file);
                return -ENOMEM;
        }
        if (line < 0) {
                snprintf(errbuf, errlen, "%s: cannot read", file);
                return -EIO;
        }
        snprintf(errbuf, errlen, "%s:%d: %s", file, line,
                 ctx.msg[0] ? ctx.msg : "syntax error (expected key = value or [rule-name])");
        return -EINVAL;
}

int kms_policy_load_string(const struct kms_policy_settings *settings, const char *text, const char *name,
                           struct kms_policy **ret, char *errbuf, size_t errlen)
{
        struct kms_ini_source src = {.text = text};
        struct kms_policy *p;
        int r;

        r = policy_new(settings, &p);
        if (r < 0)
                return r;
        r = parse_source(p, &src, name, errbuf, errlen);
        if (r < 0) {
                policy_free(p);
                return r;
        }
        *ret = p;
        return 0;
}

static int conf_filter(const struct dirent *e)
{
        size_t n = strlen(e->d_name);

        return e->d_name[0] != '.' && n > 5 && strcmp(e->d_name + n - 5, ".conf") == 0;
}

/* The policy decides who may use every key, so only root (or the user
 * kmsd runs as, for an instance of its own) may write it: the folder and
 * each file must belong to one of them and be closed to writes by group
 * and others. st is from fstat() on the opened descriptor, so it is the
 * object that will be read, not whatever the path names by then. */
static int check_owner_mode(const struct stat *st, const char *path, const char *what, char *errbuf, size_t errlen)
{
        uid_t self = getuid();

        if (st->st_uid != 0 && st->st_uid != self) {
                snprintf(errbuf, errlen, "%s: the policy %s is owned by uid %u; it must be owned by root%s", path,
                         what, (unsigned)st->st_uid, self != 0 ? " or by the user kmsd runs as" : "");
                return -EPERM;
        }
        if (st->st_mode & (S_IWGRP | S_IWOTH)) {
                snprintf(errbuf, errlen, "%s: the policy %s has mode %04o, writable by %s; make it writable by its owner only (chmod go-w)",
                         path, what, (unsigned)(st->st_mode & 07777),
                         (st->st_mode & S_IWGRP) && (st->st_mode & S_IWOTH) ? "group and others"
                         : (st->st_mode & S_IWGRP)                          ? "its group"
                                                                            : "others");
                return -EPERM;
        }
        return 0;
}

/* Open the policy folder without following a link at its last component;
 * -ENOENT when it does not exist. */
static int open_policy_dir(const char *dir, int *ret_fd, char *errbuf, size_t errlen)
{
        struct stat st;
        int fd, r;

        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) {
                r = -errno;
                if (r == -ENOENT)
                        return r;
                /* O_DIRECTORY | O_NOFOLLOW on a link: ENOTDIR or ELOOP. */
                if (r == -ELOOP || (r == -ENOTDIR && lstat(dir, &st) == 0 && S_ISLNK(st.st_mode))) {
                        snprintf(errbuf, errlen,
                                 "%s: the policy folder is a symbolic link; kmsd does not follow it (set [policy] dir "
                                 "to the real folder)",
                                 dir);
                        return -ELOOP;
                }
                snprintf(errbuf, errlen, "%s: cannot open the policy folder: %s", dir, strerror(-r));
                return r;
        }
        if (fstat(fd, &st) < 0) {
                r = -errno;
                snprintf(errbuf, errlen, "%s: cannot stat the policy folder: %s", dir, strerror(-r));
                close(fd);
                return r;
        }
        r = check_owner_mode(&st, dir, "folder", errbuf, errlen);
        if (r < 0) {
                close(fd);
                return r;
        }
        *ret_fd = fd;
        return 0;
}

/* Open one policy file, name relative to the folder's descriptor: no link
 * followed, nothing but a regular file (O_NONBLOCK so that a FIFO cannot
 * hang the reload), owner and mode checked on what was opened. */
static int open_policy_file(int dirfd, const char *name, const char *path, FILE **ret, char *errbuf, size_t errlen)
{
        struct stat st;
        FILE *f;
        int fd, r;

        fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) {
                r = -errno;
                if (r == -ELOOP)
                        snprintf(errbuf, errlen,
                                 "%s: is a symbolic link; kmsd does not follow links in the policy folder (copy the "
                                 "file there instead)",
                                 path);
                else
                        snprintf(errbuf, errlen, "%s: cannot open: %s", path, strerror(-r));
                return r;
        }
        if (fstat(fd, &st) < 0) {
                r = -errno;
                snprintf(errbuf, errlen, "%s: cannot stat: %s", path, strerror(-r));
                close(fd);
                return r;
        }
        if (!S_ISREG(st.st_mode)) {
                snprintf(errbuf, errlen, "%s: not a regular file", path);
                close(fd);
                return -EPERM;
        }
        r = check_owner_mode(&st, path, "file", errbuf, errlen);
        if (r < 0) {
                close(fd);
                return r;
        }
        f = fdopen(fd, "re");
        if (!f) {
                r = -errno;
                close(fd);
                snprintf(errbuf, errlen, "%s: cannot open: %s", path, strerror(-r));
                return r;
        }
        *ret = f;
        return 0;
}

int kms_policy_load(const struct kms_policy_settings *settings, struct kms_policy **ret, char *errbuf, size_t errlen)
{
        struct dirent **names = NULL;
        struct kms_policy *p;
        int n = 0, r, dirfd = -1;

        r = policy_new(settings, &p);
        if (r < 0)
                return r;
        if (settings->dir && *settings->dir) {
                r = open_policy_dir(settings->dir, &dirfd, errbuf, errlen);
                if (r == -ENOENT)
                        r = 0; /* no folder: no rules */
                else if (r < 0) {
                        policy_free(p);
                        return r;
                } else {
                        n = scandirat(dirfd, ".", &names, conf_filter, alphasort);
                        if (n < 0) {
                                r = -errno;
                                snprintf(errbuf, errlen, "%s: cannot read the policy folder: %s", settings->dir,
                                         strerror(errno));
                                close(dirfd);
                                policy_free(p);
                                return r;
                        }
                }
        }
        for (int i = 0; i < n && r >= 0; i++) {
                char path[4096];
                struct kms_ini_source src = {0};

                snprintf(path, sizeof(path), "%s/%s", settings->dir, names[i]->d_name);
                r = open_policy_file(dirfd, names[i]->d_name, path, &src.f, errbuf, errlen);
                if (r < 0)
                        break;
                r = parse_source(p, &src, path, errbuf, errlen);
                fclose(src.f);
        }
        for (int i = 0; i < n; i++)
                free(names[i]);
        free(names);
        if (dirfd >= 0)
                close(dirfd);
        if (r < 0) {
                policy_free(p);
                return r;
        }
        *ret = p;
        return 0;
}

/* ---- decisions ---------------------------------------------------------- */

static bool in_group(const struct kms_caller *c, gid_t g)
{
        for (unsigned i = 0; i < c->n_gids; i++)
                if (c->gids[i] == g)
                        return true;
        return false;
}

bool kms_policy_is_admin(const struct kms_policy *p, const struct kms_caller *c)
{
        return c->uid == 0 || (p && p->have_admin_gid && in_group(c, p->admin_gid));
}

static bool subject_matches(const struct subject *s, const struct kms_caller *c, uid_t owner)
{
        switch (s->type) {
        case SUBJ_UID: return c->uid == (uid_t)s->id;
        case SUBJ_GID: return in_group(c, (gid_t)s->id);
        case SUBJ_OWNER: return owner != KMS_NO_OWNER && c->uid == owner;
        case SUBJ_ANY: return true;
        }
        return false;
}

static bool rule_matches(const struct rule *r, const struct kms_caller *c, enum kms_operation op, const char *key,
                         uid_t owner)
{
        bool ok = false;

        if (!(r->ops & KMS_OP_BIT(op)))
                return false;
        for (size_t i = 0; i < r->n_subjects && !ok; i++)
                ok = subject_matches(&r->subjects[i], c, owner);
        if (!ok || !key)
                return ok;
        /* A star matches slashes too: "chat/STAR" covers chat/team/alice. */
        for (size_t i = 0; i < r->n_keys; i++)
                if (fnmatch(r->keys[i], key, 0) == 0)
                        return true;
        return false;
}

bool kms_policy_decide(const struct kms_policy *p, const struct kms_caller *c, enum kms_operation op, const char *key,
                       uid_t owner, struct kms_decision *ret)
{
        struct kms_decision d = {0};

        const struct rule *decider = NULL;

        if (op < 0 || op >= _KMS_OP_MAX) {
                snprintf(d.why, sizeof(d.why), "unknown operation");
        } else if (c->uid == 0) {
                d.allow = true;
                snprintf(d.why, sizeof(d.why), "admin: uid 0");
        } else if (c->groups_incomplete) {
                snprintf(d.why, sizeof(d.why),
                         "the caller's groups could not all be read (more than %d, or the user database failed): "
                         "denied",
                         KMS_MAX_CALLER_GROUPS);
        } else if (p && p->have_admin_gid && in_group(c, p->admin_gid)) {
                d.allow = true;
                snprintf(d.why, sizeof(d.why), "admin: member of group %s", p->admin_group);
        } else {
                bool decided = false;

                for (size_t i = 0; p && i < p->n_rules && !decided; i++) {
                        const struct rule *r = &p->rules[i];

                        if (!rule_matches(r, c, op, key, owner))
                                continue;
                        decided = true;
                        decider = r;
                        d.allow = r->allow;
                        snprintf(d.why, sizeof(d.why), "rule [%s] (%s:%u, effect %s)", r->name, r->file, r->line,
                                 r->allow ? "allow" : "deny");
                }
                if (!decided && owner != KMS_NO_OWNER && c->uid == owner && key && p &&
                    (p->owner_rights & KMS_OP_BIT(op))) {
                        decided = true;
                        d.allow = true;
                        snprintf(d.why, sizeof(d.why), "owner of the key (owner_rights in kmsd.conf)");
                }
                if (!decided)
                        snprintf(d.why, sizeof(d.why), "no rule matched: denied by default");
        }
        /* Where the policy lives and how it is laid out is the admins'
         * business; the caller learns which rule to ask about. */
        if (decider)
                snprintf(d.why_caller, sizeof(d.why_caller), "rule [%s] (effect %s)", decider->name,
                         decider->allow ? "allow" : "deny");
        else
                memcpy(d.why_caller, d.why, sizeof(d.why_caller));
        if (ret)
                *ret = d;
        return d.allow;
}

enum kms_policy_reach kms_policy_reach(const struct kms_policy *p, const struct kms_caller *c, enum kms_operation op)
{
        bool own = false;

        /* The order of kms_policy_decide(): root, incomplete groups, the
         * admin group, the rules, the owner. */
        if (op < 0 || op >= _KMS_OP_MAX)
                return KMS_REACH_NONE;
        if (c->uid == 0)
                return KMS_REACH_ALL;
        if (c->groups_incomplete)
                return KMS_REACH_NONE;
        if (p && p->have_admin_gid && in_group(c, p->admin_gid))
                return KMS_REACH_ALL;
        for (size_t i = 0; p && i < p->n_rules; i++) {
                const struct rule *r = &p->rules[i];

                if (!r->allow || !(r->ops & KMS_OP_BIT(op)))
                        continue;
                for (size_t j = 0; j < r->n_subjects; j++) {
                        const struct subject *s = &r->subjects[j];

                        /* "owner" matches only the caller's own keys; any
                         * other subject that matches the caller may match
                         * another owner's key. */
                        if (s->type == SUBJ_OWNER)
                                own = true;
                        else if (subject_matches(s, c, KMS_NO_OWNER))
                                return KMS_REACH_SOME;
                }
        }
        if (own || (p && (p->owner_rights & KMS_OP_BIT(op))))
                return KMS_REACH_OWN;
        return KMS_REACH_NONE;
}

size_t kms_policy_n_rules(const struct kms_policy *p)
{
        return p ? p->n_rules : 0;
}

void kms_policy_rule_info(const struct kms_policy *p, size_t i, struct kms_policy_rule_info *ret)
{
        const struct rule *r = &p->rules[i];

        *ret = (struct kms_policy_rule_info){
                .name = r->name,
                .file = r->file,
                .line = r->line,
                .allow = r->allow,
                .subjects = r->subjects_text ? r->subjects_text : "",
                .operations = r->ops_text ? r->ops_text : "",
                .keys = r->keys_text ? r->keys_text : "",
        };
}

const char *kms_policy_admin_group(const struct kms_policy *p)
{
        return p && p->have_admin_gid ? p->admin_group : "";
}

unsigned kms_policy_owner_rights(const struct kms_policy *p)
{
        return p ? p->owner_rights : 0;
}
