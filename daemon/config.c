/* kmsd.conf parsing with libinih; see config.h and docs/configuration.md. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "kms-ini.h"

#include "kms-bus.h"
#include "kms-key.h"
#include "kms-policy.h"
#include "kms-util.h"

struct parse_ctx {
        struct kms_config *c;
        char msg[256];
};

static int set_string(char **dst, const char *value)
{
        char *v = strdup(value);

        if (!v)
                return -ENOMEM;
        free(*dst);
        *dst = v;
        return 0;
}

static int set_u64(struct parse_ctx *ctx, const char *key, const char *value, uint64_t min, uint64_t max,
                   uint64_t *ret)
{
        int r = kms_parse_u64(value, min, max, ret);

        if (r < 0)
                snprintf(ctx->msg, sizeof(ctx->msg), "%s = '%s' is not a number in %llu..%llu", key, value,
                         (unsigned long long)min, (unsigned long long)max);
        return r;
}

/* inih calls this once per name=value; returning 0 stops the parse and
 * ini_parse() reports the line. */
static int handler(void *user, const char *section, const char *name, const char *value)
{
        struct parse_ctx *ctx = user;
        struct kms_config *c = ctx->c;
        uint64_t v;
        int r = 0;

#define IS(s, n) (strcmp(section, s) == 0 && strcmp(name, n) == 0)
        if (IS("daemon", "bus")) {
                if (!*value) {
                        snprintf(ctx->msg, sizeof(ctx->msg), "bus must be system, session or a D-Bus address");
                        return 0;
                }
                r = set_string(&c->bus, value);
        } else if (IS("daemon", "state_dir")) {
                if (!*value) {
                        snprintf(ctx->msg, sizeof(ctx->msg), "state_dir must not be empty");
                        return 0;
                }
                r = set_string(&c->state_dir, value);
        } else if (IS("daemon", "workers")) {
                r = set_u64(ctx, name, value, 1, KMS_MAX_WORKERS, &v);
                if (r >= 0)
                        c->workers = (unsigned)v;
        } else if (IS("daemon", "log_level")) {
                int l = kms_log_level_from_string(value);
                if (l < 0) {
                        snprintf(ctx->msg, sizeof(ctx->msg),
                                 "log_level = '%s' is not one of debug, info, notice, warning, err", value);
                        return 0;
                }
                c->log_level = l;
        } else if (IS("daemon", "log_target")) {
                if (strcmp(value, "stderr") == 0)
                        c->log_target = KMS_LOG_STDERR;
                else if (strcmp(value, "syslog") == 0)
                        c->log_target = KMS_LOG_SYSLOG;
                else {
                        snprintf(ctx->msg, sizeof(ctx->msg), "log_target = '%s' is not stderr or syslog", value);
                        return 0;
                }
        } else if (IS("limits", "max_message_bytes")) {
                r = set_u64(ctx, name, value, 1024, KMS_MAX_MESSAGE_BYTES_CEILING, &v);
                if (r >= 0)
                        c->max_message_bytes = v;
        } else if (IS("limits", "max_pending")) {
                r = set_u64(ctx, name, value, 1, KMS_MAX_PENDING_CEILING, &v);
                if (r >= 0)
                        c->max_pending = (unsigned)v;
        } else if (IS("limits", "session_stale_seconds")) {
                r = set_u64(ctx, name, value, 1, 86400, &v);
                if (r >= 0)
                        c->session_stale_seconds = (unsigned)v;
        } else if (IS("limits", "session_skew_seconds")) {
                r = set_u64(ctx, name, value, 0, 86400, &v);
                if (r >= 0)
                        c->session_skew_seconds = (unsigned)v;
        } else if (IS("limits", "max_keys")) {
                r = set_u64(ctx, name, value, 1, KMS_MAX_KEYS, &v);
                if (r >= 0)
                        c->max_keys = (unsigned)v;
        } else if (IS("limits", "min_rotate_every")) {
                r = set_u64(ctx, name, value, 1, KMS_MIN_ROTATE_EVERY_CEILING, &v);
                if (r >= 0)
                        c->min_rotate_every = v;
        } else if (IS("limits", "max_versions_kept")) {
                r = set_u64(ctx, name, value, 1, KMS_MAX_VERSIONS, &v);
                if (r >= 0)
                        c->max_versions_kept = (unsigned)v;
        } else if (IS("pkcs11", "module")) {
                r = set_string(&c->pkcs11_module, value);
        } else if (IS("pkcs11", "token_label")) {
                r = set_string(&c->token_label, value);
        } else if (IS("pkcs11", "token_serial")) {
                r = set_string(&c->token_serial, value);
        } else if (IS("pkcs11", "pin_file")) {
                if (*value)
                        r = set_string(&c->pin_file, value);
                else {
                        free(c->pin_file);
                        c->pin_file = NULL;
                }
        } else if (IS("policy", "dir")) {
                r = set_string(&c->policy_dir, value);
        } else if (IS("policy", "admin_group")) {
                r = set_string(&c->admin_group, value);
        } else if (IS("policy", "owner_rights")) {
                const char *bad = NULL;
                unsigned mask = 0;

                if (kms_operations_parse(value, &mask, &bad) < 0) {
                        snprintf(ctx->msg, sizeof(ctx->msg), "owner_rights: unknown operation '%s'", bad);
                        return 0;
                }
                c->owner_rights = mask;
        } else if (IS("audit", "failure")) {
                if (strcmp(value, "closed") == 0)
                        c->audit_failure_open = false;
                else if (strcmp(value, "open") == 0)
                        c->audit_failure_open = true;
                else {
                        snprintf(ctx->msg, sizeof(ctx->msg), "failure = '%s' is not closed or open", value);
                        return 0;
                }
        } else if (IS("audit", "syslog")) {
                if (strcmp(value, "yes") == 0 || strcmp(value, "true") == 0)
                        c->audit_syslog = true;
                else if (strcmp(value, "no") == 0 || strcmp(value, "false") == 0)
                        c->audit_syslog = false;
                else {
                        snprintf(ctx->msg, sizeof(ctx->msg), "syslog = '%s' is not yes or no", value);
                        return 0;
                }
        } else if (IS("audit", "checkpoint_records")) {
                r = set_u64(ctx, name, value, 1, 1000000, &v);
                if (r >= 0)
                        c->audit_checkpoint_records = (unsigned)v;
        } else if (IS("audit", "checkpoint_seconds")) {
                r = set_u64(ctx, name, value, 1, 86400, &v);
                if (r >= 0)
                        c->audit_checkpoint_seconds = (unsigned)v;
        } else if (IS("tpm", "enable")) {
                if (strcmp(value, "yes") == 0 || strcmp(value, "true") == 0)
                        c->tpm_enable = true;
                else if (strcmp(value, "no") == 0 || strcmp(value, "false") == 0)
                        c->tpm_enable = false;
                else {
                        snprintf(ctx->msg, sizeof(ctx->msg), "enable = '%s' is not yes or no", value);
                        return 0;
                }
        } else if (IS("tpm", "tcti")) {
                if (!*value) {
                        snprintf(ctx->msg, sizeof(ctx->msg), "tcti must not be empty (device:/dev/tpmrm0, swtpm:...)");
                        return 0;
                }
                r = set_string(&c->tpm_tcti, value);
        } else if (IS("tpm", "owner_auth_file")) {
                if (*value)
                        r = set_string(&c->tpm_owner_auth_file, value);
                else {
                        free(c->tpm_owner_auth_file);
                        c->tpm_owner_auth_file = NULL;
                }
        } else if (strcmp(section, "daemon") != 0 && strcmp(section, "limits") != 0 &&
                   strcmp(section, "pkcs11") != 0 && strcmp(section, "policy") != 0 && strcmp(section, "tpm") != 0 &&
                   strcmp(section, "audit") != 0) {
                snprintf(ctx->msg, sizeof(ctx->msg), "unknown section [%s]", section);
                return 0;
        } else {
                snprintf(ctx->msg, sizeof(ctx->msg), "unknown key '%s' in section [%s]", name, section);
                return 0;
        }
#undef IS
        if (r == -ENOMEM)
                snprintf(ctx->msg, sizeof(ctx->msg), "out of memory");
        return r < 0 ? 0 : 1;
}

int kms_config_init(struct kms_config *c)
{
        memset(c, 0, sizeof(*c));
        c->workers = 4;
        c->log_level = LOG_INFO;
        c->log_target = KMS_LOG_STDERR;
        c->max_message_bytes = KMS_DEFAULT_MAX_MESSAGE_BYTES;
        c->max_pending = 1024;
        c->max_keys = KMS_MAX_KEYS;
        c->min_rotate_every = KMS_DEFAULT_MIN_ROTATE_EVERY;
        c->max_versions_kept = KMS_DEFAULT_MAX_VERSIONS_KEPT;
        c->bus = strdup("system");
        c->state_dir = strdup("/var/lib/kmsd");
        c->pkcs11_module = strdup("/usr/lib/softhsm/libsofthsm2.so");
        c->token_label = strdup("kmsd");
        c->policy_dir = strdup("/etc/kmsd/policy.d");
        c->admin_group = strdup("kmsd-admin");
        c->owner_rights = KMS_OWNER_RIGHTS_DEFAULT;
        c->tpm_tcti = strdup("device:/dev/tpmrm0");
        c->audit_syslog = true;
        c->session_stale_seconds = 300;
        c->session_skew_seconds = 60;
        c->audit_checkpoint_records = 1000;
        c->audit_checkpoint_seconds = 60;
        /* pin_file stays NULL: the systemd credential 'pin' then. */
        if (!c->bus || !c->state_dir || !c->pkcs11_module || !c->token_label || !c->policy_dir || !c->admin_group ||
            !c->tpm_tcti) {
                kms_config_free(c);
                return -ENOMEM;
        }
        return 0;
}

static bool known_section(const char *name, size_t len)
{
        static const char *const sections[] = { "daemon", "limits", "pkcs11", "policy", "tpm", "audit" };

        for (size_t i = 0; i < ELEMENTSOF(sections); i++)
                if (strlen(sections[i]) == len && memcmp(sections[i], name, len) == 0)
                        return true;
        return false;
}

/* inih would notice an unknown [section] only at its first key (or never,
 * if it is empty); refuse it on its own line. */
static int on_section(void *userdata, const char *name, size_t len, int line, char *msg, size_t msglen)
{
        (void)userdata;
        (void)line;
        if (known_section(name, len))
                return 0;
        snprintf(msg, msglen, "unknown section [%.*s]", (int)len, name);
        return -1;
}

static int finish(struct parse_ctx *ctx, int line, const char *name, char *errbuf, size_t errlen)
{
        if (line == 0)
                return 0;
        if (line == -1) {
                snprintf(errbuf, errlen, "%s: cannot open: %s", name, strerror(errno));
                return -ENOENT;
        }
        if (line == -2) {
                snprintf(errbuf, errlen, "%s: out of memory", name);
                return -ENOMEM;
        }
        snprintf(errbuf, errlen, "%s:%d: %s", name, line, ctx->msg[0] ? ctx->msg : "syntax error (expected key = value or [section])");
        return -EINVAL;
}

static int parse(struct kms_config *c, struct kms_ini_source *src, const char *name, char *errbuf, size_t errlen)
{
        struct parse_ctx ctx = { .c = c };

        src->msg = ctx.msg;
        src->msglen = sizeof(ctx.msg);
        src->on_section = on_section;
        return finish(&ctx, kms_ini_parse(src, handler, &ctx), name, errbuf, errlen);
}

int kms_config_load(struct kms_config *c, const char *path, char *errbuf, size_t errlen)
{
        struct kms_ini_source src = { 0 };
        int r;

        src.f = fopen(path, "re");
        if (!src.f) {
                r = -errno;
                snprintf(errbuf, errlen, "%s: cannot open: %s", path, strerror(errno));
                return r;
        }
        r = parse(c, &src, path, errbuf, errlen);
        fclose(src.f);
        return r;
}

int kms_config_load_string(struct kms_config *c, const char *text, const char *name, char *errbuf, size_t errlen)
{
        struct kms_ini_source src = { .text = text };

        return parse(c, &src, name, errbuf, errlen);
}

void kms_config_free(struct kms_config *c)
{
        if (!c)
                return;
        free(c->bus);
        free(c->state_dir);
        free(c->pkcs11_module);
        free(c->token_label);
        free(c->token_serial);
        free(c->pin_file);
        free(c->policy_dir);
        free(c->admin_group);
        free(c->tpm_tcti);
        free(c->tpm_owner_auth_file);
        memset(c, 0, sizeof(*c));
}
