/* kmsctl monitor [--json] [--count N] (also: kmsctl key watch): print
 * kmsd's signals (KeyCreated, KeyRotated, KeyRevoked, KeyDestroyed) one
 * line each as they arrive, flushing after every line so a pipe sees them
 * at once. Runs until SIGINT or SIGTERM (exit 0), until --count signals
 * were printed (exit 0), or until the bus goes away (exit 1).
 *
 * The match rule names kmsd's well-known name as sender, so the bus
 * delivers the signals of whichever process owns it: monitor keeps
 * working across kmsd restarts. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "bus.h"
#include "io.h"
#include "json.h"
#include "kms-bus.h"
#include "kmsctl.h"

#define MONITOR_MATCH_RULE "type='signal',sender='" KMS_BUS_NAME "',interface='" KMS_BUS_INTERFACE "'"

struct monitor_args {
        bool json;
        uint64_t count; /* 0: no limit */
};

/* One signal's arguments; version 0 and reason NULL when it has none. */
struct monitor_event {
        const char *signal;
        const char *name;
        uint32_t version;
        const char *reason;
};

static int handle_option(int opt, const char *arg, void *userdata)
{
        struct monitor_args *a = userdata;

        switch (opt) {
        case 'j': a->json = true; return 0;
        case 'c': return kmsctl_parse_number("--count", arg, 1, UINT32_MAX, &a->count);
        default: return -EINVAL;
        }
}

/* Read the arguments of a kmsd signal into *ret. Returns 1 for a signal
 * kmsctl knows, 0 for one it does not (a newer kmsd's, or wrong
 * arguments: skipped with a warning). */
static int event_read(DBusMessage *m, struct monitor_event *ret)
{
        struct monitor_event e = {.signal = dbus_message_get_member(m)};
        bool ok;

        if (!e.signal)
                return 0;
        if (strcmp(e.signal, KMS_SIGNAL_KEY_CREATED) == 0 || strcmp(e.signal, KMS_SIGNAL_KEY_ROTATED) == 0)
                ok = dbus_message_get_args(m, NULL, DBUS_TYPE_STRING, &e.name, DBUS_TYPE_UINT32, &e.version,
                                           DBUS_TYPE_INVALID) &&
                     dbus_message_has_signature(m, "su");
        else if (strcmp(e.signal, KMS_SIGNAL_KEY_REVOKED) == 0)
                ok = dbus_message_get_args(m, NULL, DBUS_TYPE_STRING, &e.name, DBUS_TYPE_UINT32, &e.version,
                                           DBUS_TYPE_STRING, &e.reason, DBUS_TYPE_INVALID) &&
                     dbus_message_has_signature(m, "sus");
        else if (strcmp(e.signal, KMS_SIGNAL_KEY_DESTROYED) == 0)
                ok = dbus_message_get_args(m, NULL, DBUS_TYPE_STRING, &e.name, DBUS_TYPE_INVALID) &&
                     dbus_message_has_signature(m, "s");
        else
                return 0; /* a signal from a newer kmsd */
        if (!ok) {
                fprintf(stderr, "kmsctl: ignoring %s with unexpected arguments '%s'\n", e.signal,
                        dbus_message_get_signature(m));
                return 0;
        }
        *ret = e;
        return 1;
}

static void event_print(const struct monitor_event *e, bool json)
{
        char name[KMSCTL_PRINTABLE_MAX], reason[KMSCTL_PRINTABLE_MAX];

        if (json) {
                struct kmsctl_json j;

                kmsctl_json_init(&j, stdout);
                kmsctl_json_begin_object(&j);
                kmsctl_json_field_string(&j, "signal", e->signal);
                kmsctl_json_field_string(&j, "name", e->name);
                if (strcmp(e->signal, KMS_SIGNAL_KEY_DESTROYED) != 0) {
                        kmsctl_json_field_uint(&j, "version", e->version);
                }
                if (e->reason) {
                        kmsctl_json_field_string(&j, "reason", e->reason);
                }
                kmsctl_json_end_object(&j); /* ends the line */
        } else {
                printf("%s %s", e->signal, kmsctl_printable(e->name, name, sizeof(name)));
                if (strcmp(e->signal, KMS_SIGNAL_KEY_DESTROYED) != 0)
                        printf(" version=%" PRIu32, e->version);
                if (e->reason)
                        printf(" reason=%s", kmsctl_printable(e->reason, reason, sizeof(reason)));
                putchar('\n');
        }
}

/* SIGINT and SIGTERM as an fd, so one poll() waits for them and the bus.
 * Blocked signals are queued even when the shell started us with them
 * ignored (a background job's SIGINT). Returns the fd or -errno. */
static int signals_open(void)
{
        sigset_t mask;
        int fd;

        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return -errno;
        fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        return fd < 0 ? -errno : fd;
}

/* Print the signals queued on conn. Returns 1 to go on, 0 when --count is
 * reached, -EPIPE when the bus went away, -EIO when stdout failed. */
static int drain(DBusConnection *conn, const struct monitor_args *a, uint64_t *seen)
{
        DBusMessage *m;

        while ((m = dbus_connection_pop_message(conn))) {
                struct monitor_event e;
                int k = 0;

                if (dbus_message_is_signal(m, DBUS_INTERFACE_LOCAL, "Disconnected")) {
                        dbus_message_unref(m);
                        return -EPIPE;
                }
                if (dbus_message_get_type(m) == DBUS_MESSAGE_TYPE_SIGNAL &&
                    dbus_message_has_interface(m, KMS_BUS_INTERFACE))
                        k = event_read(m, &e);
                if (k > 0) {
                        event_print(&e, a->json);
                        (*seen)++;
                }
                dbus_message_unref(m);
                if (k > 0 && (fflush(stdout) != 0 || ferror(stdout)))
                        return -EIO;
                if (a->count && *seen >= a->count)
                        return 0;
        }
        return 1;
}

int kmsctl_monitor_main(const struct kmsctl_command *cmd, int argc, char **argv)
{
        static const struct option options[] = {
                {"json", no_argument, NULL, 'j'},
                {"count", required_argument, NULL, 'c'},
                {},
        };
        struct monitor_args a = {};
        _cleanup_(closep) int sfd = -1;
        DBusConnection *conn;
        uint64_t seen = 0;
        int r, bus_fd;

        r = kmsctl_parse_args(cmd, argc, argv, options, handle_option, &a, 0, NULL);
        if (r != KMSCTL_CONTINUE)
                return r;

        sfd = signals_open();
        if (sfd < 0) {
                fprintf(stderr, "kmsctl: cannot watch for SIGINT and SIGTERM: %s\n", strerror(-sfd));
                return KMS_EXIT_FAILURE;
        }
        r = kmsctl_bus_add_match(MONITOR_MATCH_RULE);
        if (r != KMS_EXIT_OK)
                return r;
        conn = kmsctl_bus_connection();
        if (!dbus_connection_get_unix_fd(conn, &bus_fd)) {
                fprintf(stderr, "kmsctl: the bus connection has no file descriptor to wait on\n");
                return KMS_EXIT_FAILURE;
        }

        for (;;) {
                struct pollfd p[2] = {
                        {.fd = bus_fd, .events = POLLIN},
                        {.fd = sfd, .events = POLLIN},
                };

                /* Read what the socket holds (without waiting) and handle
                 * it; messages may already be queued from add_match. */
                if (!dbus_connection_read_write(conn, 0))
                        r = -EPIPE;
                else
                        r = drain(conn, &a, &seen);
                if (r == 1 && dbus_connection_get_dispatch_status(conn) == DBUS_DISPATCH_DATA_REMAINS)
                        continue;
                if (r == 0)
                        return KMS_EXIT_OK;
                if (r == -EIO)
                        return KMS_EXIT_FAILURE; /* main() reports the write error */
                if (r == -EPIPE) {
                        (void)drain(conn, &a, &seen); /* what arrived before the end */
                        fprintf(stderr, "kmsctl: the bus connection was closed\n");
                        return KMS_EXIT_FAILURE;
                }
                if (poll(p, ELEMENTSOF(p), -1) < 0 && errno != EINTR) {
                        fprintf(stderr, "kmsctl: poll: %s\n", strerror(errno));
                        return KMS_EXIT_FAILURE;
                }
                if (p[1].revents & POLLIN)
                        return KMS_EXIT_OK;
        }
}
