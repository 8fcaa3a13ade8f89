/* Readiness and reload notifications to the service manager (sd_notify).
 * Every function is a no-op that returns 0 when kmsd does not run under
 * systemd (NOTIFY_SOCKET unset), so callers need no special case. */
#pragma once

/* kmsd owns its bus name and serves requests: "READY=1". Also sent after a
 * reload has finished (successfully or not), which ends the reload for
 * systemd. Returns 0, or a negative errno if the message could not be sent. */
int kms_notify_ready(void);

/* kmsd starts re-reading its configuration (SIGHUP): "RELOADING=1" with
 * the CLOCK_MONOTONIC time. Must be followed by kms_notify_ready() when the
 * reload is over. Returns 0 or a negative errno. */
int kms_notify_reloading(void);

/* kmsd begins to shut down: "STOPPING=1". Returns 0 or a negative errno. */
int kms_notify_stopping(void);
