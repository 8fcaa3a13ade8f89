/* The key dictionary as kmsctl reads and prints it; see key.h. */
#include "key.h"

#include <errno.h>
#include <inttypes.h>
#include <pwd.h>
#include <string.h>
#include <time.h>

#include "bus.h"
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
                {"version", "u", &v.version, true},         {"state", "s", &v.state, true},
                {"created", "x", &v.created, true},         {"backend_id", "s", &v.backend_id, true},
                {"fingerprint", "s", &v.fingerprint, true}, {"uses", "t", &v.uses, true},
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
                {"versions", "aa{sv}", &versions, with_versions},
        };
        int r;

        r = kmsctl_dict_read(it, fields, ELEMENTSOF(fields));
        if (r >= 0)
                r = key_read_usages(&usages, &k);
        if (r >= 0 && with_versions) {
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

void kmsctl_key_json(struct kmsctl_json *j, const struct kmsctl_key *k)
{
        kmsctl_json_begin_object(j);
        kmsctl_json_key(j, "name");
        kmsctl_json_string(j, k->name);
        kmsctl_json_key(j, "algorithm");
        kmsctl_json_string(j, k->algorithm);
        kmsctl_json_key(j, "backend");
        kmsctl_json_string(j, k->backend);
        kmsctl_json_key(j, "state");
        kmsctl_json_string(j, k->state);
        kmsctl_json_key(j, "owner");
        kmsctl_json_uint(j, k->owner);
        kmsctl_json_key(j, "usages");
        kmsctl_json_begin_array(j);
        for (size_t i = 0; i < k->n_usages; i++)
                kmsctl_json_string(j, k->usages[i]);
        kmsctl_json_end_array(j);
        json_time(j, "created", k->created);
        kmsctl_json_key(j, "primary_version");
        kmsctl_json_uint(j, k->primary_version);
        kmsctl_json_key(j, "version_count");
        kmsctl_json_uint(j, k->version_count);
        if (k->has_versions) {
                kmsctl_json_key(j, "versions");
                kmsctl_json_begin_array(j);
                for (size_t i = 0; i < k->n_versions; i++) {
                        const struct kmsctl_key_version *v = &k->versions[i];

                        kmsctl_json_begin_object(j);
                        kmsctl_json_key(j, "version");
                        kmsctl_json_uint(j, v->version);
                        kmsctl_json_key(j, "state");
                        kmsctl_json_string(j, v->state);
                        json_time(j, "created", v->created);
                        kmsctl_json_key(j, "backend_id");
                        kmsctl_json_string(j, v->backend_id);
                        kmsctl_json_key(j, "fingerprint");
                        kmsctl_json_string(j, v->fingerprint);
                        kmsctl_json_key(j, "uses");
                        kmsctl_json_uint(j, v->uses);
                        kmsctl_json_end_object(j);
                }
                kmsctl_json_end_array(j);
        }
        kmsctl_json_end_object(j);
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
