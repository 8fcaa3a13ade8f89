/* kmsctl's side of the bus: which bus to use (--bus, --bus-address,
 * $KMSD_BUS_ADDRESS), one call helper that turns every failure into a
 * message and an exit status, and helpers to write option dictionaries and
 * read kmsd's reply dictionaries. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <dbus/dbus.h>

#include "kms-util.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(DBusMessage *, dbus_message_unref);

#define KMSCTL_DEFAULT_TIMEOUT_SEC 120u /* RSA-4096 generation in SoftHSM is slow */
#define KMSCTL_MAX_TIMEOUT_SEC 86400u

/* Handle a global option (KMSCTL_OPT_BUS, _BUS_ADDRESS, _TIMEOUT). Returns
 * 0, or -EINVAL after printing what is wrong. The last of --bus and
 * --bus-address given wins. */
int kmsctl_bus_option(int opt, const char *arg);

/* A new method call on kmsd's object and interface, with *ret_it set to
 * append its arguments. NULL only when out of
 * memory (kmsctl then has nothing better to do than fail). */
DBusMessage *kmsctl_bus_new_call(const char *method, DBusMessageIter *ret_it);

/* Send m to kmsd and wait for the reply (connecting on first use). On
 * success stores the reply, whose signature has been checked against
 * reply_signature, in *ret_reply and returns KMS_EXIT_OK. Otherwise prints
 * "kmsctl: <message> (<error name>)" (or how to reach kmsd when it is not
 * on the bus) and returns the exit status for the error.
 *
 * hints is NULL or a NULL-terminated list of pairs {error name, sentence}:
 * the sentence is printed after the error when the name matches. */
int kmsctl_bus_call(DBusMessage *m, const char *reply_signature, const char *const *hints, DBusMessage **ret_reply);

/* Connect (if not yet) and ask the bus to route the messages that rule
 * (a D-Bus match rule) selects to kmsctl. Returns an exit status; the
 * failure is printed. */
int kmsctl_bus_add_match(const char *rule);

/* The open connection (after kmsctl_bus_add_match() or a successful
 * kmsctl_bus_call()), or NULL. Owned by bus.c. */
DBusConnection *kmsctl_bus_connection(void);

/* Close the connection, if one was opened. */
void kmsctl_bus_close(void);

/* Appending arguments. Each returns 0 or -ENOMEM. */
int kmsctl_append_string(DBusMessageIter *it, const char *s);
int kmsctl_append_u32(DBusMessageIter *it, uint32_t u);
int kmsctl_append_bytes(DBusMessageIter *it, const void *data, size_t len);

/* One entry of an options dictionary (a{sv}); entries with set == false
 * are left out, so the daemon applies its default. */
struct kmsctl_bus_option {
        const char *key;
        int type; /* DBUS_TYPE_STRING, _UINT32, _UINT64, _BOOLEAN, _ARRAY for "as", _BYTE for "ay" */
        bool set;
        union {
                const char *s;
                uint32_t u;
                uint64_t t;
                dbus_bool_t b;
                const char *const *strv; /* NULL-terminated */
                struct {
                        const void *data;
                        size_t len;
                } bytes; /* "ay"; data may be NULL when len is 0 */
        };
};

int kmsctl_append_options(DBusMessageIter *it, const struct kmsctl_bus_option *options, size_t n);

/* One field kmsctl wants from a reply dictionary (a{sv}). signature is
 * the variant's exact signature; ret points to a const char * ("s"),
 * uint32_t ("u"), int64_t ("x"), uint64_t ("t"), dbus_bool_t ("b") or, for
 * a container signature such as "as", a DBusMessageIter that is set to
 * the variant's contents. Strings and iterators point into the message.
 * found is written by kmsctl_dict_read(). */
struct kmsctl_dict_field {
        const char *key;
        const char *signature;
        void *ret;
        bool required;
        bool found;
};

/* Read the a{sv} at it into fields. Keys kmsctl does not know are skipped
 * (a newer kmsd may add some). Returns 0, or -EBADMSG after printing which
 * key is missing or has the wrong type, or -ENOMEM. */
int kmsctl_dict_read(DBusMessageIter *it, struct kmsctl_dict_field *fields, size_t n_fields);

/* Check that it is at an array whose elements have element_signature and
 * open it into *ret_sub. Returns 0 or -EBADMSG (printed). */
int kmsctl_array_open(DBusMessageIter *it, const char *element_signature, DBusMessageIter *ret_sub);

/* The run function of a listing command, `kmsctl CMD [--json]`: calls
 * method (empty options) for an aa{sv} and hands the array to print. */
struct kmsctl_command;
int kmsctl_list_main(const struct kmsctl_command *cmd, int argc, char **argv, const char *method,
                     const char *const *hints, int (*print)(DBusMessageIter *list, bool json));
