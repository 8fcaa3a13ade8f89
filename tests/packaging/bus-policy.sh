#!/usr/bin/env bash
# The packaged system bus policy (packaging/dbus/org.kmsd.KeyManager1.conf)
# on a private dbus-daemon configured like the system bus: kmsd, running as
# a throwaway system user that stands in for "kmsd", owns
# org.kmsd.KeyManager1; the user nobody can call its methods but does not
# receive its signals (they name keys); root and a member of a throwaway
# group that stands in for "kmsd-admin" do; nobody can own neither that
# name nor anything else; root cannot own the name either; the kmsd user
# cannot own other names.
#
# The policy copy differs from the packaged file in the user and admin
# group names only. Needs root (to create and remove the throwaway users
# and group); stops exactly the processes it started, by pid, and removes
# the users and groups.
# Environment (from ctest): KMSD_BIN, KMSCTL_BIN.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

pkg_require dbus-daemon dbus-send dbus-monitor busctl setpriv useradd userdel softhsm2-util od timeout \
        /usr/lib/softhsm/libsofthsm2.so
: "${KMSD_BIN:?run this test through ctest}"
: "${KMSCTL_BIN:?run this test through ctest}"
if [[ $(id -u) -ne 0 ]]; then
        # Not a missing tool, but this test cannot run at all without root;
        # scripts/test and CI run as root.
        echo "SKIP: bus-policy needs root to create a throwaway system user"
        exit 77
fi
pkg_start
chmod 755 "$PKG_T" # the test user and nobody reach the bus socket here

NAME=org.kmsd.KeyManager1
OBJ=/org/kmsd/KeyManager1
POLICY=$PKG_SRC/packaging/dbus/$NAME.conf
ADDR=unix:path=$PKG_T/bus.sock
AS_NOBODY=(setpriv --reuid=nobody --regid=nogroup --clear-groups --)
getent passwd nobody >/dev/null && getent group nogroup >/dev/null || die "this system has no user nobody / group nogroup"

# ---------------------------------------------------------------- test user
KUSER=kmsdt$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
getent passwd "$KUSER" >/dev/null && die "user $KUSER exists already"
useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$KUSER" ||
        die "useradd $KUSER failed"
# Removed at exit, after kmsd (which runs as it) is stopped.
pkg_on_exit "userdel '$KUSER' >/dev/null 2>&1 || echo 'bus-policy: userdel $KUSER failed' >&2"
KUID=$(id -u "$KUSER")
AS_KMSD=(setpriv --reuid="$KUSER" --regid="$KUSER" --clear-groups --)
echo "throwaway user $KUSER (uid $KUID)"
# The admin group and one member (not root), created before the bus reads
# its configuration.
AGROUP=${KUSER}a
AUSER=${KUSER}m
groupadd --system "$AGROUP" || die "groupadd $AGROUP failed"
pkg_on_exit "groupdel '$AGROUP' >/dev/null 2>&1 || echo 'bus-policy: groupdel $AGROUP failed' >&2"
useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin -G "$AGROUP" "$AUSER" ||
        die "useradd $AUSER failed"
pkg_on_exit "userdel '$AUSER' >/dev/null 2>&1 || echo 'bus-policy: userdel $AUSER failed' >&2"
AS_ADMIN=(setpriv --reuid="$AUSER" --regid="$AUSER" --init-groups --)
echo "throwaway admin group $AGROUP, member $AUSER"

# The binaries must be reachable by the test user and by nobody.
mkdir -m 755 "$PKG_T/bin"
cp "$KMSD_BIN" "$PKG_T/bin/kmsd"
cp "$KMSCTL_BIN" "$PKG_T/bin/kmsctl"
chmod 755 "$PKG_T/bin/kmsd" "$PKG_T/bin/kmsctl"

# ---------------------------------------------------------------- token, config
K=$PKG_T/kmsd
mkdir -m 700 "$K" "$K/tokens" "$K/state"
cat >"$K/softhsm2.conf" <<EOF2
directories.tokendir = $K/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
EOF2
(umask 077; od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$K/pin"; od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$K/so-pin")
cat >"$K/kmsd.conf" <<EOF2
[daemon]
state_dir = $K/state
log_target = stderr

[pkcs11]
module = /usr/lib/softhsm/libsofthsm2.so
token_label = kmsd
pin_file = $K/pin

[policy]
dir = $K/policy.d
EOF2
# The bus lets anyone call; kmsd decides, by its own policy: this one lets
# any user ask for the status and create keys under bus/.
mkdir -p "$K/policy.d"
cat >"$K/policy.d/bus-test.conf" <<EOF2
[bus-test]
subjects = any
operations = status, create
keys = bus/*
EOF2
chown -R "$KUSER:$KUSER" "$K"
SOFTHSM2_CONF=$K/softhsm2.conf "${AS_KMSD[@]}" softhsm2-util --init-token --free --label kmsd \
        --so-pin "$(cat "$K/so-pin")" --pin "$(cat "$K/pin")" >"$PKG_T/softhsm.log" 2>&1 ||
        die "softhsm2-util --init-token as $KUSER failed: $(cat "$PKG_T/softhsm.log")"

# ---------------------------------------------------------------- bus
# The default policy of dbus 1.14's system.conf, our policy file (user
# substituted) included after it, as /usr/share/dbus-1/system.d/ is.
grep -c 'user="kmsd"' "$POLICY" | grep -qx 1 || die "$POLICY must name user=\"kmsd\" exactly once"
grep -c 'group="kmsd-admin"' "$POLICY" | grep -qx 1 || die "$POLICY must name group=\"kmsd-admin\" exactly once"
sed -e "s/user=\"kmsd\"/user=\"$KUSER\"/" -e "s/group=\"kmsd-admin\"/group=\"$AGROUP\"/" "$POLICY" >"$PKG_T/policy.conf"
cat >"$PKG_T/bus.conf" <<EOF2
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>$ADDR</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Peer"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus" send_member="UpdateActivationEnvironment"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Debug.Stats"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.systemd1.Activator"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.systemd1.Activator"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
  <include>$PKG_T/policy.conf</include>
</busconfig>
EOF2
: >"$PKG_T/bus.address"
dbus-daemon --config-file="$PKG_T/bus.conf" --nofork --nopidfile --print-address=3 \
        3>"$PKG_T/bus.address" </dev/null >"$PKG_T/dbus.log" 2>&1 &
BUS_PID=$!
pkg_track "$BUS_PID"
for ((i = 0; i < 100; i++)); do
        [[ -s "$PKG_T/bus.address" ]] && break
        pkg_alive "$BUS_PID" || break
        sleep 0.1
done
[[ -s "$PKG_T/bus.address" ]] || die "dbus-daemon did not start: $(cat "$PKG_T/dbus.log")"
# (A container may refuse the fd limit dbus-daemon asks for; that is not
# about the configuration.)
if grep -v 'Failed to set fd limit' "$PKG_T/dbus.log" | grep -qi 'unknown\|invalid\|parse\|not allowed'; then
        fail "dbus-daemon complains about the configuration: $(cat "$PKG_T/dbus.log")"
else
        pass "dbus-daemon accepts the system-like configuration with the kmsd policy"
fi

# request_name [COMMAND PREFIX...] NAME: RequestName(NAME, DO_NOT_QUEUE)
# on a new connection, run through the prefix (setpriv ... as someone).
request_name() {
        local name=${*: -1}
        timeout -k 5 20 "${@:1:$#-1}" dbus-send --bus="$ADDR" --print-reply --dest=org.freedesktop.DBus \
                /org/freedesktop/DBus org.freedesktop.DBus.RequestName "string:$name" uint32:4 2>&1
}
DENIED_OWN='AccessDenied.*not allowed to own'


# ---------------------------------------------------------------- kmsd
# (In an ASan build, ctest's ASAN_OPTIONS make kmsd exit 99 on a leak.)
SOFTHSM2_CONF=$K/softhsm2.conf \
        "${AS_KMSD[@]}" "$PKG_T/bin/kmsd" --config "$K/kmsd.conf" --bus-address "$ADDR" \
        </dev/null >"$PKG_T/kmsd.log" 2>&1 &
KMSD_PID=$!
pkg_track "$KMSD_PID"
up=0
for ((i = 0; i < 150; i++)); do
        pkg_alive "$KMSD_PID" || break
        if timeout 5 busctl --address="$ADDR" status "$NAME" >/dev/null 2>&1; then
                up=1
                break
        fi
        sleep 0.2
done
((up)) || die "kmsd (as $KUSER) did not take $NAME: $(cat "$PKG_T/kmsd.log")"
pass "kmsd running as $KUSER owns $NAME"
owner_uid=$(dbus-send --bus="$ADDR" --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
        org.freedesktop.DBus.GetConnectionUnixUser "string:$NAME" 2>&1 | awk '/uint32/ { print $2 }')
expect_eq "the owner's uid is the kmsd user's" "$KUID" "$owner_uid"

# ---------------------------------------------------------------- nobody calls
if out=$(timeout 30 "${AS_NOBODY[@]}" busctl --address="$ADDR" call "$NAME" "$OBJ" "$NAME" GetStatus 2>&1); then
        pass "nobody calls GetStatus: ${out:0:80}..."
else
        fail "nobody cannot call GetStatus: $out"
fi
if out=$(timeout 30 "${AS_NOBODY[@]}" busctl --address="$ADDR" call "$NAME" "$OBJ" \
        org.freedesktop.DBus.Introspectable Introspect 2>&1) && grep -q "$NAME" <<<"$out"; then
        pass "nobody introspects kmsd"
else
        fail "nobody cannot introspect kmsd: ${out:0:300}"
fi
if out=$(timeout 30 "${AS_NOBODY[@]}" "$PKG_T/bin/kmsctl" --bus-address "$ADDR" status 2>&1); then
        pass "nobody runs kmsctl status"
else
        fail "kmsctl status as nobody: $out"
fi

# ---------------------------------------------------------------- who gets signals
# kmsd's signals name keys, so the bus delivers them to root and the admin
# group only. nobody subscribes with dbus-monitor (which, refused as a
# monitor, falls back to a match rule and says NameAcquired when it is
# ready); root and the admin subscribe with kmsctl monitor, an ordinary
# match rule (root's dbus-monitor would be a monitor, which no receive rule
# restricts).
: >"$PKG_T/monitor.log"
"${AS_NOBODY[@]}" dbus-monitor --address "$ADDR" "type='signal',sender='$NAME'" \
        </dev/null >"$PKG_T/monitor.log" 2>&1 &
MON_PID=$!
pkg_track "$MON_PID"
"$PKG_T/bin/kmsctl" --bus-address "$ADDR" monitor </dev/null >"$PKG_T/monitor-root.log" 2>&1 &
MON_ROOT_PID=$!
pkg_track "$MON_ROOT_PID"
"${AS_ADMIN[@]}" "$PKG_T/bin/kmsctl" --bus-address "$ADDR" monitor </dev/null >"$PKG_T/monitor-admin.log" 2>&1 &
MON_ADMIN_PID=$!
pkg_track "$MON_ADMIN_PID"
for ((i = 0; i < 50; i++)); do
        grep -q 'NameAcquired\|NameLost\|member=' "$PKG_T/monitor.log" && break
        sleep 0.1
done
sleep 0.5
if out=$(timeout 60 "${AS_NOBODY[@]}" "$PKG_T/bin/kmsctl" --bus-address "$ADDR" key create bus/nobody \
        --algorithm ec-p256 2>&1); then
        pass "nobody creates a key of its own"
else
        fail "nobody cannot create a key: $out"
fi
for ((i = 0; i < 100; i++)); do
        grep -q 'bus/nobody' "$PKG_T/monitor-root.log" && grep -q 'bus/nobody' "$PKG_T/monitor-admin.log" && break
        sleep 0.1
done
if grep -q "KeyCreated.*bus/nobody\|bus/nobody.*KeyCreated\|created.*bus/nobody" "$PKG_T/monitor-root.log"; then
        pass "root receives KeyCreated: $(grep -m1 'bus/nobody' "$PKG_T/monitor-root.log")"
else
        fail "root did not receive KeyCreated: $(head -c 1500 "$PKG_T/monitor-root.log")"
fi
if grep -q "bus/nobody" "$PKG_T/monitor-admin.log"; then
        pass "a member of the admin group receives KeyCreated: $(grep -m1 'bus/nobody' "$PKG_T/monitor-admin.log")"
else
        fail "the admin group member did not receive KeyCreated: $(head -c 1500 "$PKG_T/monitor-admin.log")"
fi
sleep 0.5 # the same broadcast reached every subscriber the bus allows by now
if grep -q 'NameAcquired' "$PKG_T/monitor.log" && ! grep -q "member=KeyCreated\|bus/nobody" "$PKG_T/monitor.log"; then
        pass "nobody, subscribed, does not receive KeyCreated (not even for its own key)"
else
        fail "nobody's subscription: $(head -c 1500 "$PKG_T/monitor.log")"
fi
pkg_stop "$MON_PID"
pkg_stop "$MON_ROOT_PID"
pkg_stop "$MON_ADMIN_PID"

# ---------------------------------------------------------------- nobody owns nothing
for n in "$NAME" org.kmsd.KeyManager1.Other com.example.Anything; do
        out=$(request_name "${AS_NOBODY[@]}" "$n")
        if grep -Eq "$DENIED_OWN" <<<"$out"; then
                pass "nobody may not own $n"
        else
                fail "nobody's RequestName($n) was not refused: $out"
        fi
done
out=$(request_name env "$NAME")
if grep -Eq "$DENIED_OWN" <<<"$out"; then
        pass "root may not own $NAME"
else
        fail "root's RequestName($NAME) was not refused: $out"
fi
out=$(request_name "${AS_KMSD[@]}" org.kmsd.KeyManager1.Other)
if grep -Eq "$DENIED_OWN" <<<"$out"; then
        pass "the kmsd user may not own other names"
else
        fail "the kmsd user's RequestName(org.kmsd.KeyManager1.Other) was not refused: $out"
fi
# The kmsd user may request the name: on a second connection, while kmsd
# holds it, the answer is 3 (EXISTS, as DO_NOT_QUEUE was given), not a
# refusal.
out=$(request_name "${AS_KMSD[@]}" "$NAME")
if grep -q 'uint32 3' <<<"$out"; then
        pass "the kmsd user may request $NAME (EXISTS while kmsd holds it)"
else
        fail "the kmsd user's second RequestName($NAME): $out"
fi

pkg_stop "$KMSD_PID"
expect_eq "kmsd exits 0 on SIGTERM" "0" "$PKG_STOP_RC"
if grep -Eq 'ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:' "$PKG_T/kmsd.log"; then
        fail "sanitizer report in kmsd's log: $(grep -E -m3 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$PKG_T/kmsd.log")"
fi
pkg_finish
