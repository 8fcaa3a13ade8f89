/* The key dictionary as kmsctl reads and prints it; see key.h. */
#include "key.h"

#include <errno.h>
#include <inttypes.h>
#include <pwd.h>
#include <string.h>
#include <time.h>

#include "bus.h"
#include "duration.h"
#include "kms-key.h"
#include "kmsctl.h"

static int key_read_usages(DBusMessageIter *it, struct kmsctl_key *k)
{
        DBusMessageIter a;
        int r;

        r = kmsctl_array_open(it, "s", &a);
        if (r < 0)
                return r;
        for (; dbus_message_iter_get_arg_type(&a) == DBUS_TYPE_STRING; dbus_message_iter_next(&a)) {
                if (k->n_usages >= KMSCTL_MAX_USAGES) {
                        fprintf(stderr, "kmsctl: kmsd's reply has more than %u usages\n", KMSCTL_MAX_USAGES);
                        return -EBADMSG;
                }
                dbus_message_iter_get_basic(&a, &k->usages[k->n_usages++]);
        }
        return 0;
}

static int key_read_version(DBusMessageIter *it, struct kmsctl_key_version *ret)
{
        struct kmsctl_key_version v = {};
        struct kmsctl_dict_field fields[] = {
                {"version", "u", &v.version, true},          {"state", "s", &v.state, true},
                {"created", "x", &v.created, true},          {"backend_id", "s", &v.backend_id, true},
                {"fingerprint", "s", &v.fingerprint, true},  {"uses", "t", &v.uses, true},
                {"revoked_at", "x", &v.revoked_at, false},   {"revoke_reason", "s", &v.revoke_reason, false},
                {"revoke_note", "s", &v.revoke_note, false},
        };
        int r;

        r = kmsctl_dict_read(it, fields, ELEMENTSOF(fields));
        if (r < 0)
                return r;
        *ret = v;
        return 0;
}

static int key_read_versions(DBusMessageIter *it, struct kmsctl_key *k)
{
        DBusMessageIter a;
        int r;

        r = kmsctl_array_open(it, "a{sv}", &a);
        if (r < 0)
                return r;
        for (; dbus_message_iter_get_arg_type(&a) == DBUS_TYPE_ARRAY; dbus_message_iter_next(&a)) {
                struct kmsctl_key_version *p;

                if (k->n_versions >= KMS_MAX_VERSIONS) {
                        fprintf(stderr, "kmsctl: kmsd's reply has more than %u versions\n", KMS_MAX_VERSIONS);
                        return -EBADMSG;
                }
                p = realloc(k->versions, (k->n_versions + 1) * sizeof(*p));
                if (!p) {
                        fprintf(stderr, "kmsctl: out of memory\n");
                        return -ENOMEM;
                }
                k->versions = p;
                r = key_read_version(&a, &k->versions[k->n_versions]);
                if (r < 0)
                        return r;
                k->n_versions++;
        }
        return 0;
}

int kmsctl_key_read(DBusMessageIter *it, bool with_versions, struct kmsctl_key *ret)
{
        struct kmsctl_key k = {};
        DBusMessageIter usages, versions;
        struct kmsctl_dict_field fields[] = {
                {"name", "s", &k.name, true},
                {"algorithm", "s", &k.algorithm, true},
                {"backend", "s", &k.backend, true},
                {"state", "s", &k.state, true},
                {"owner", "u", &k.owner, true},
                {"usages", "as", &usages, true},
                {"created", "x", &k.created, true},
                {"primary_version", "u", &k.primary_version, true},
                {"version_count", "u", &k.version_count, true},
                {"rotate_every", "t", &k.rotate_every, false},
                {"rotate_after_uses", "t", &k.rotate_after_uses, false},
                {"keep_versions", "u", &k.keep_versions, false},
                {"next_rotation", "x", &k.next_rotation, false},
                {"destroy_at", "x", &k.destroy_at, false},
                {"versions", "aa{sv}", &versions, with_versions},
        };
        int r;

        r = kmsctl_dict_read(it, fields, ELEMENTSOF(fields));
        if (r >= 0)
                r = key_read_usages(&usages, &k);
        /* Read "versions" whenever kmsd sends it (SetKeyOptions may). */
        if (r >= 0 && fields[ELEMENTSOF(fields) - 1].found) {
                k.has_versions = true;
                r = key_read_versions(&versions, &k);
        }
        if (r < 0) {
                kmsctl_key_done(&k);
                return r;
        }
        *ret = k;
        return 0;
}

void kmsctl_key_done(struct kmsctl_key *k)
{
        free(k->versions);
        k->versions = NULL;
        k->n_versions = 0;
}

const struct kmsctl_key_version *kmsctl_key_find_version(const struct kmsctl_key *k, uint32_t v)
{
        for (size_t i = 0; i < k->n_versions; i++)
                if (k->versions[i].version == v)
                        return &k->versions[i];
        return NULL;
}

static void json_time(struct kmsctl_json *j, const char *key, int64_t t)
{
        char buf[KMSCTL_TIME_MAX];

        kmsctl_json_key(j, key);
        kmsctl_json_string(j, kmsctl_format_time(t, buf, sizeof(buf)));
}

/* A time where 0 means "none": null then. */
static void json_time_or_null(struct kmsctl_json *j, const char *key, int64_t t)
{
        if (t != 0)
                json_time(j, key, t);
        else {
                kmsctl_json_key(j, key);
                kmsctl_json_null(j);
        }
}

/* A string where "" (or absent) means "none": null then. */
static void json_string_or_null(struct kmsctl_json *j, const char *key, const char *s)
{
        kmsctl_json_key(j, key);
        if (s && *s)
                kmsctl_json_string(j, s);
        else
                kmsctl_json_null(j);
}

static void json_version(struct kmsctl_json *j, const struct kmsctl_key_version *v)
{
        kmsctl_json_begin_object(j);
        kmsctl_json_field_uint(j, "version", v->version);
        kmsctl_json_field_string(j, "state", v->state);
        json_time(j, "created", v->created);
        kmsctl_json_field_string(j, "backend_id", v->backend_id);
        kmsctl_json_field_string(j, "fingerprint", v->fingerprint);
        kmsctl_json_field_uint(j, "uses", v->uses);
        json_time_or_null(j, "revoked_at", v->revoked_at);
        json_string_or_null(j, "revoke_reason", v->revoke_reason);
        json_string_or_null(j, "revoke_note", v->revoke_note);
        kmsctl_json_end_object(j);
}

void kmsctl_key_json(struct kmsctl_json *j, const struct kmsctl_key *k)
{
        kmsctl_json_begin_object(j);
        kmsctl_json_field_string(j, "name", k->name);
        kmsctl_json_field_string(j, "algorithm", k->algorithm);
        kmsctl_json_field_string(j, "backend", k->backend);
        kmsctl_json_field_string(j, "state", k->state);
        kmsctl_json_field_uint(j, "owner", k->owner);
        kmsctl_json_key(j, "usages");
        kmsctl_json_begin_array(j);
        for (size_t i = 0; i < k->n_usages; i++)
                kmsctl_json_string(j, k->usages[i]);
        kmsctl_json_end_array(j);
        json_time(j, "created", k->created);
        kmsctl_json_field_uint(j, "primary_version", k->primary_version);
        kmsctl_json_field_uint(j, "version_count", k->version_count);
        kmsctl_json_field_uint(j, "rotate_every", k->rotate_every);
        kmsctl_json_field_uint(j, "rotate_after_uses", k->rotate_after_uses);
        kmsctl_json_field_uint(j, "keep_versions", k->keep_versions);
        json_time_or_null(j, "next_rotation", k->next_rotation);
        json_time_or_null(j, "destroy_at", k->destroy_at);
        if (k->has_versions) {
                kmsctl_json_key(j, "versions");
                kmsctl_json_begin_array(j);
                for (size_t i = 0; i < k->n_versions; i++)
                        json_version(j, &k->versions[i]);
                kmsctl_json_end_array(j);
        }
        kmsctl_json_end_object(j);
}

const char *kmsctl_key_format_rotation(const struct kmsctl_key *k, char *buf, size_t size)
{
        char d[KMSCTL_DURATION_MAX];
        size_t n = 0;

        buf[0] = '\0';
        if (k->rotate_every == 0 && k->rotate_after_uses == 0)
                snprintf(buf, size, "none");
        if (k->rotate_every != 0)
                n = (size_t)snprintf(buf, size, "every %s", kmsctl_format_duration(k->rotate_every, d, sizeof(d)));
        if (k->rotate_after_uses != 0 && n < size)
                snprintf(buf + n, size - n, "%safter %" PRIu64 " use%s", n ? ", " : "", k->rotate_after_uses,
                         k->rotate_after_uses == 1 ? "" : "s");
        return buf;
}

void kmsctl_key_print_lifecycle(const struct kmsctl_key *k)
{
        char rot[KMSCTL_ROTATION_MAX], t[KMSCTL_TIME_MAX];

        printf("Rotation:        %s\n", kmsctl_key_format_rotation(k, rot, sizeof(rot)));
        printf("Next rotation:   %s\n", k->next_rotation ? kmsctl_format_time(k->next_rotation, t, sizeof(t)) : "-");
        if (k->keep_versions)
                printf("Keep versions:   %" PRIu32 "\n", k->keep_versions);
        else
                printf("Keep versions:   all\n");
        if (k->destroy_at)
                printf("Destruction:     scheduled for %s\n", kmsctl_format_time(k->destroy_at, t, sizeof(t)));
}

const char *kmsctl_format_time(int64_t t, char *buf, size_t size)
{
        time_t tt = (time_t)t;
        struct tm tm;

        if ((int64_t)tt != t || !gmtime_r(&tt, &tm) || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
                snprintf(buf, size, "@%" PRId64, t); /* out of range: the raw number */
        return buf;
}

const char *kmsctl_format_user(uint32_t uid, char *buf, size_t size)
{
        struct passwd *pw = getpwuid((uid_t)uid);

        if (pw && pw->pw_name && strlen(pw->pw_name) < size)
                snprintf(buf, size, "%s", pw->pw_name);
        else
                snprintf(buf, size, "%" PRIu32, uid);
        return buf;
}

int kmsctl_key_describe(const char *name, DBusMessage **ret_reply, struct kmsctl_key *ret)
{
        _cleanup_(dbus_message_unrefp) DBusMessage *m = NULL, *reply = NULL;
        DBusMessageIter it;
        int r;

        m = kmsctl_bus_new_call("DescribeKey", &it);
        if (!m || kmsctl_append_string(&it, name) < 0)
                return kmsctl_log_oom();
        r = kmsctl_bus_call(m, "a{sv}", NULL, &reply);
        if (r != KMS_EXIT_OK)
                return r;
        dbus_message_iter_init(reply, &it);
        if (kmsctl_key_read(&it, true, ret) < 0)
                return KMS_EXIT_FAILURE;
        *ret_reply = TAKE_PTR(reply);
        return KMS_EXIT_OK;
}

int kmsctl_key_call(const char *method, const char *name, const struct kmsctl_bus_option *options, size_t n_options,
                    const char *reply_signature, DBusMessage **ret_reply)
{
        _cleanup_(dbus_message_unrefp) DBusMessage *m = NULL;
        DBusMessageIter it;

        m = kmsctl_bus_new_call(method, &it);
        if (!m || kmsctl_append_string(&it, name) < 0 || kmsctl_append_options(&it, options, n_options) < 0)
                return kmsctl_log_oom();
        return kmsctl_bus_call(m, reply_signature, NULL, ret_reply);
}

int kmsctl_key_call_read(const char *method, const char *name, const struct kmsctl_bus_option *options,
                         size_t n_options, DBusMessage **ret_reply, struct kmsctl_key *ret)
{
        _cleanup_(dbus_message_unrefp) DBusMessage *reply = NULL;
        DBusMessageIter it;
        int r;

        r = kmsctl_key_call(method, name, options, n_options, "a{sv}", &reply);
        if (r != KMS_EXIT_OK)
                return r;
        dbus_message_iter_init(reply, &it);
        if (kmsctl_key_read(&it, false, ret) < 0)
                return KMS_EXIT_FAILURE;
        *ret_reply = TAKE_PTR(reply);
        return KMS_EXIT_OK;
}

static int no_option(int opt, const char *arg, void *userdata)
{
        (void)opt, (void)arg, (void)userdata;
        return -EINVAL; /* getopt only hands over options in the table, which is empty */
}

int kmsctl_key_simple_main(const struct kmsctl_command *cmd, int argc, char **argv, const char *method,
                           const char *done)
{
        static const struct option options[] = {{}};
        _cleanup_(dbus_message_unrefp) DBusMessage *reply = NULL;
        char *name;
        int r;

        r = kmsctl_parse_key_args(cmd, argc, argv, options, no_option, NULL, &name);
        if (r != KMSCTL_CONTINUE)
                return r;
        r = kmsctl_key_call(method, name, NULL, 0, "", &reply);
        if (r != KMS_EXIT_OK)
                return r;
        printf("%s %s\n", done, name);
        return KMS_EXIT_OK;
}
