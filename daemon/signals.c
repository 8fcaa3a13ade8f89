/* The one emitter of org.kmsd.KeyManager1's signals. Each function builds
 * its signal with the arguments the introspection XML declares and sends
 * it from the calling thread (kms_bus_send). docs/dbus-api.md lists them. */
#include <stdarg.h>

#include "daemon.h"
#include "kms-bus.h"

static void emit(struct kms_daemon *d, const char *member, int first_type, ...)
{
        DBusMessage *m = dbus_message_new_signal(KMS_BUS_PATH, KMS_BUS_INTERFACE, member);
        va_list ap;
        bool ok;

        if (!m)
                return;
        va_start(ap, first_type);
        ok = dbus_message_append_args_valist(m, first_type, ap);
        va_end(ap);
        if (ok)
                kms_bus_send(d, m);
        dbus_message_unref(m);
}

void kms_signal_key_created(struct kms_daemon *d, const char *name, uint32_t version)
{
        dbus_uint32_t v = version;

        emit(d, KMS_SIGNAL_KEY_CREATED, DBUS_TYPE_STRING, &name, DBUS_TYPE_UINT32, &v, DBUS_TYPE_INVALID);
}

void kms_signal_key_rotated(struct kms_daemon *d, const char *name, uint32_t version)
{
        dbus_uint32_t v = version;

        emit(d, KMS_SIGNAL_KEY_ROTATED, DBUS_TYPE_STRING, &name, DBUS_TYPE_UINT32, &v, DBUS_TYPE_INVALID);
}

void kms_signal_key_revoked(struct kms_daemon *d, const char *name, uint32_t version, const char *reason)
{
        dbus_uint32_t v = version;

        emit(d, KMS_SIGNAL_KEY_REVOKED, DBUS_TYPE_STRING, &name, DBUS_TYPE_UINT32, &v, DBUS_TYPE_STRING, &reason,
             DBUS_TYPE_INVALID);
}

void kms_signal_key_destroyed(struct kms_daemon *d, const char *name)
{
        emit(d, KMS_SIGNAL_KEY_DESTROYED, DBUS_TYPE_STRING, &name, DBUS_TYPE_INVALID);
}
