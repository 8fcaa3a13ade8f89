/* sd_notify(3) messages for systemd: READY=1 once the bus name is owned,
 * RELOADING=1 ... READY=1 around a SIGHUP reload, STOPPING=1 at shutdown.
 * The unit (packaging/systemd/kmsd.service) is Type=dbus with
 * NotifyAccess=main, so systemd takes these from the main process only. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "notify.h"

/* Sends one notification. sd_notify() returns > 0 when sent, 0 when there
 * is no NOTIFY_SOCKET, < 0 (negative errno) on failure; the first two are
 * success for the caller. The environment is read with secure_getenv so a
 * setuid context never follows a caller-supplied socket. */
static int notify(const char *state)
{
        int r;

        if (!secure_getenv("NOTIFY_SOCKET"))
                return 0;
        r = sd_notify(0, state);
        return r < 0 ? r : 0;
}

int kms_notify_ready(void)
{
        return notify("READY=1\nSTATUS=Serving org.kmsd.KeyManager1");
}

int kms_notify_reloading(void)
{
        struct timespec ts;
        char state[128];
        int n;

        /* MONOTONIC_USEC lets systemd (>= 253, Type=notify-reload) tell
         * this reload from an earlier one; older versions ignore it. */
        if (clock_gettime(CLOCK_MONOTONIC, &ts) < 0)
                return -errno;
        n = snprintf(state, sizeof(state), "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=Reloading",
                     (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000ULL);
        if (n < 0 || (size_t)n >= sizeof(state))
                return -EINVAL;
        return notify(state);
}

int kms_notify_stopping(void)
{
        return notify("STOPPING=1\nSTATUS=Stopping");
}
