# Sourced by kmsd's integration tests (tests/integration/*.sh).
#
# kms_harness_start builds a private world in a temporary folder: a SoftHSMv2
# token with random PINs, a kmsd.conf, a dbus-daemon listening on a unix
# socket, and kmsd itself; it exports KMSD_BUS_ADDRESS and SOFTHSM2_CONF.
# kms_harness_stop (also run from the EXIT trap) stops exactly the processes
# it started, by pid, checks kmsd's log for sanitizer reports and removes the
# folder. Nothing here stops a process by name or uses a network port.
#
# Environment (set by ctest, see tests/CMakeLists.txt):
#   KMSD_BIN, KMSCTL_BIN    the binaries under test
#   KMS_EXTRA_CONFIG        extra lines appended to kmsd.conf (set before start)
#   KMS_ADMIN_GROUP         [policy] admin_group (default: none, only root);
#                           policy files go in $KMS_T/policy.d
#   KMS_KEEP_TMP=1          keep the temporary folder (debugging)
#
# Results: pass/fail count checks; kms_finish prints the tally and exits
# 0 only if every check passed and nothing was reported by a sanitizer.

KMS_PKCS11_MODULE=${KMS_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
KMS_TOKEN_LABEL=kmsd
KMS_T=""
KMS_DBUS_PID=""
KMS_KMSD_PID=""
KMS_KMSD_RC=""
KMS_PASSED=0
KMS_FAILED=0
KMS_STOPPED=0
KMS_EXTRA_CONFIG=${KMS_EXTRA_CONFIG:-}
KMS_TEST_NAME=$(basename "${0:-test}" .sh)
KMS_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KMS_SANITIZER_RE='ERROR: AddressSanitizer|runtime error:|LeakSanitizer'

if [[ -x /usr/bin/python3 ]]; then
        KMS_PYTHON=/usr/bin/python3
else
        KMS_PYTHON=python3
fi

# ---------------------------------------------------------------- results

pass() {
        KMS_PASSED=$((KMS_PASSED + 1))
        echo "ok - $*"
}

fail() {
        KMS_FAILED=$((KMS_FAILED + 1))
        echo "FAIL - $*" >&2
}

# A failure after which the test cannot go on.
die() {
        fail "$*"
        exit 1
}

# Exit 77 (ctest: skipped) when a tool the test needs is not installed.
# scripts/deps installs all of them, so CI never skips.
kms_require() {
        local t
        for t in "$@"; do
                if ! command -v "$t" >/dev/null 2>&1 && [[ ! -e "$t" ]]; then
                        echo "SKIP: $KMS_TEST_NAME needs '$t', which is not installed (scripts/deps installs it)"
                        exit 77
                fi
        done
}

# run CMD...: runs a command with stdout/stderr captured in $KMS_OUT/$KMS_ERR
# and its exit code in $KMS_RC; never trips set -e.
KMS_OUT=""
KMS_ERR=""
KMS_RC=0
run() {
        KMS_OUT=$KMS_T/last.out
        KMS_ERR=$KMS_T/last.err
        KMS_RC=0
        "$@" >"$KMS_OUT" 2>"$KMS_ERR" || KMS_RC=$?
        return 0
}

# check DESC CMD...: passes when CMD exits 0.
check() {
        local desc=$1
        shift
        run "$@"
        if ((KMS_RC == 0)); then
                pass "$desc"
        else
                fail "$desc: '$*' exited $KMS_RC"
                kms__show_output
        fi
}

# expect_fail CODE ERROR_NAME CMD...: CMD must exit with CODE and its stderr
# must mention ERROR_NAME (e.g. InvalidArgument); ERROR_NAME may be an
# extended regex ("InvalidArgument|invalid"). Leaves output in KMS_OUT/ERR.
expect_fail() {
        local code=$1 name=$2
        shift 2
        local cmd="$*"
        ((${#cmd} <= 160)) || cmd="${cmd:0:160}..."
        run "$@"
        if ((KMS_RC != code)); then
                fail "'$cmd': expected exit $code ($name), got $KMS_RC"
                kms__show_output
        elif [[ -n "$name" ]] && ! grep -Eq -- "$name" "$KMS_ERR"; then
                fail "'$cmd': exit $code as expected, but stderr does not mention '$name'"
                kms__show_output
        else
                pass "'$cmd' -> exit $code${name:+, $name}: $(head -c 300 "$KMS_ERR" | tr '\n' ' ')"
        fi
}

# expect_eq DESC EXPECTED GOT
expect_eq() {
        if [[ "$2" == "$3" ]]; then
                pass "$1 ($3)"
        else
                fail "$1: expected '$2', got '$3'"
        fi
}

kms__show_output() {
        if [[ -s "$KMS_OUT" ]]; then
                echo "  stdout: $(head -c 1500 "$KMS_OUT")" >&2
        fi
        if [[ -s "$KMS_ERR" ]]; then
                echo "  stderr: $(head -c 1500 "$KMS_ERR")" >&2
        fi
}

# ---------------------------------------------------------------- tools

# kmsctl ARGS...: the kmsctl under test, bounded in time, its stderr also
# scanned for sanitizer reports (an ASan build of kmsctl reports on stderr).
kmsctl() {
        local errf rc=0
        errf=$(mktemp "$KMS_T/kmsctl-err.XXXXXX")
        timeout -k 5 "${KMS_KMSCTL_TIMEOUT:-120}" "$KMSCTL_BIN" "$@" 2>"$errf" || rc=$?
        if grep -Eq "$KMS_SANITIZER_RE" "$errf"; then
                {
                        echo "=== sanitizer report from: kmsctl $*"
                        cat "$errf"
                } >>"$KMS_T/kmsctl-sanitizer.log"
        fi
        if ((rc == 124)); then
                echo "kmsctl $*: timed out" >>"$errf"
        fi
        cat "$errf" >&2
        rm -f "$errf"
        return "$rc"
}

# busctl on the private bus.
kms_busctl() {
        timeout -k 5 60 busctl --address="$KMSD_BUS_ADDRESS" "$@"
}

# kms_call METHOD SIGNATURE JSON_ARGS...: raw call through tests/lib/kmsbus.py
# (prints the reply as JSON; on error "ERROR <name>: <message>" on stderr).
kms_call() {
        timeout -k 5 150 "$KMS_PYTHON" "$KMS_LIB_DIR/kmsbus.py" "$@"
}

# pkcs11-tool logged in to the test token.
kms_p11tool() {
        timeout -k 5 60 pkcs11-tool --module "$KMS_PKCS11_MODULE" \
                --token-label "$KMS_TOKEN_LABEL" --login --pin "$(cat "$KMS_T/pin")" "$@"
}

# Number of objects (private, public, secret, data) in the token.
kms_p11_object_count() {
        local out
        out=$(kms_p11tool --list-objects 2>/dev/null) || {
                echo "pkcs11-tool --list-objects failed" >&2
                echo -1
                return 0
        }
        kms_p11_count_objects "" <<<"$out"
}

# kms_p11_count_objects TYPE: from `pkcs11-tool --list-objects` output on
# stdin, the objects whose first line matches TYPE ("" for all, or e.g.
# "Private Key Object"), leaving out kmsd's own audit key (kmsd-audit#N),
# which every kmsd has from its first start.
kms_p11_count_objects() {
        awk -v type="$1" '
                /Object;/ { if (n) c += keep; n = 1; keep = (type == "" || index($0, type) > 0) }
                /label:/ && /kmsd-audit#/ { keep = 0 }
                END { if (n) c += keep; print c + 0 }'
}

# Keys kmsd counts as not destroyed (GetStatus "keys").
kms_status_keys() {
        kms_status_field keys
}

kms_status_field() {
        local out
        out=$(kms_call GetStatus "") || {
                echo "GetStatus failed" >&2
                echo -1
                return 0
        }
        "$KMS_PYTHON" -c 'import json,sys; print(json.loads(sys.argv[1])[0][sys.argv[2]])' "$out" "$1"
}

# kms_json FILE EXPR: evaluate a Python expression over the JSON document
# d = json.load(FILE) and print the result (lists/dicts as JSON).
kms_json() {
        "$KMS_PYTHON" - "$1" "$2" <<'PY'
import json, sys
with open(sys.argv[1]) as f:
    d = json.load(f)
r = eval(sys.argv[2])
print(json.dumps(r) if isinstance(r, (dict, list)) else r)
PY
}

# Random PIN: 32 hex digits from the kernel's CSPRNG.
kms_random_pin() {
        od -An -N16 -tx1 /dev/urandom | tr -d ' \n'
}

# ---------------------------------------------------------------- test bodies
# Short helpers that several tests use in their own checks.

# hex: standard input as lower-case hex on one line, no newline.
hex() { od -An -v -tx1 | tr -d ' \n'; }

# hkdf IKM_HEX SALT_HEX INFO_HEX LENGTH: openssl's HKDF-SHA256 as
# lower-case hex; an empty SALT_HEX or INFO_HEX leaves the option out
# (HKDF's defaults).
hkdf() {
        local opts=(-keylen "$4" -kdfopt digest:SHA256 -kdfopt "hexkey:$1")
        [[ -z "$2" ]] || opts+=(-kdfopt "hexsalt:$2")
        [[ -z "$3" ]] || opts+=(-kdfopt "hexinfo:$3")
        openssl kdf "${opts[@]}" HKDF | tr -d ':\n' | tr 'A-F' 'a-f'
}

# flip FILE OFFSET OUT: FILE with the byte at OFFSET (negative: from the
# end) XORed with 0x01.
flip() {
        "$KMS_PYTHON" - "$1" "$2" "$3" <<'PY'
import sys
d = bytearray(open(sys.argv[1], "rb").read())
d[int(sys.argv[2])] ^= 1
open(sys.argv[3], "wb").write(d)
PY
}

# as_user USER ARGS...: kmsctl ARGS as USER, with the groups of USER's
# account (setpriv --init-groups), so the process and the account agree.
# Files kmsctl writes need a folder USER may write to. A sanitizer report
# goes to kmsctl-sanitizer.log, as for kmsctl.
as_user() {
        local user=$1 errf rc=0
        shift
        errf=$(mktemp "$KMS_T/as-user.XXXXXX")
        timeout -k 5 120 setpriv --reuid="$user" --regid="$(id -g "$user")" --init-groups \
                env KMSD_BUS_ADDRESS="$KMSD_BUS_ADDRESS" ASAN_OPTIONS="${ASAN_OPTIONS:-}" \
                "$KMSCTL_BIN" "$@" 2>"$errf" || rc=$?
        if grep -Eq "$KMS_SANITIZER_RE" "$errf"; then
                cat "$errf" >>"$KMS_T/kmsctl-sanitizer.log"
        fi
        cat "$errf" >&2
        rm -f "$errf"
        return "$rc"
}
as_nobody() { as_user nobody "$@"; }

# ---------------------------------------------------------------- processes

# Is PID a live (not zombie) process?
kms__alive() {
        local pid=$1 stat
        [[ -n "$pid" ]] || return 1
        stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
        stat=${stat##*) }
        [[ "${stat%% *}" != Z ]]
}

# kms__stop_pid PID NAME TIMEOUT: SIGTERM PID, wait up to TIMEOUT seconds,
# then SIGKILL it. Sets KMS_STOP_RC to its exit status (137 if killed) and
# KMS_STOP_SECS to how long it took.
KMS_STOP_RC=0
KMS_STOP_SECS=0
kms__stop_pid() {
        local pid=$1 name=$2 limit=$3 i=0 start
        KMS_STOP_RC=0
        start=$(date +%s)
        [[ -n "$pid" ]] || return 0
        kill -TERM "$pid" 2>/dev/null || true
        while kms__alive "$pid" && ((i < limit * 10)); do
                sleep 0.1
                i=$((i + 1))
        done
        if kms__alive "$pid"; then
                echo "harness: $name (pid $pid) still running ${limit}s after SIGTERM; SIGKILL" >&2
                kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || KMS_STOP_RC=$?
        KMS_STOP_SECS=$(($(date +%s) - start))
}

kms__write_softhsm_conf() {
        cat >"$KMS_T/softhsm2.conf" <<EOF
directories.tokendir = $KMS_T/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
EOF
}

kms__write_bus_conf() {
        local allow_users=""
        # Let other uids connect (a session-type bus admits only its owner).
        [[ -z "${KMS_BUS_ALLOW_ALL_USERS:-}" ]] || allow_users='<allow user="*"/>'
        cat >"$KMS_T/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=$KMS_T/bus.sock</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">$allow_users
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
EOF
}

# Writes $KMS_T/kmsd.conf; $KMS_EXTRA_CONFIG is appended verbatim (it may
# open [limits] or other sections; it must not repeat the keys below,
# except [limits] min_rotate_every: the later line wins).
kms_write_config() {
        cat >"$KMS_T/kmsd.conf" <<EOF
# kmsd.conf written by tests/lib/harness.sh
[daemon]
state_dir = $KMS_T/state
log_level = ${KMS_LOG_LEVEL:-info}
log_target = stderr

[limits]
# Tests rotate keys every few seconds; kmsd's default minimum is an hour.
min_rotate_every = 1

[pkcs11]
module = $KMS_PKCS11_MODULE
token_label = $KMS_TOKEN_LABEL
pin_file = $KMS_T/pin

[policy]
dir = $KMS_T/policy.d
admin_group = ${KMS_ADMIN_GROUP:-}
EOF
        mkdir -p "$KMS_T/policy.d"
        if [[ -n "$KMS_EXTRA_CONFIG" ]]; then
                printf '\n%s\n' "$KMS_EXTRA_CONFIG" >>"$KMS_T/kmsd.conf"
        fi
}

kms__start_bus() {
        local i
        kms__write_bus_conf
        : >"$KMS_T/bus.address"
        : >"$KMS_T/bus.pid"
        dbus-daemon --config-file="$KMS_T/bus.conf" --nofork --nopidfile \
                --print-address=3 --print-pid=4 \
                3>"$KMS_T/bus.address" 4>"$KMS_T/bus.pid" \
                </dev/null >>"$KMS_T/dbus.log" 2>&1 &
        KMS_DBUS_PID=$!
        for ((i = 0; i < 100; i++)); do
                if [[ -s "$KMS_T/bus.pid" ]] && [[ -s "$KMS_T/bus.address" ]]; then
                        break
                fi
                kms__alive "$KMS_DBUS_PID" || break
                sleep 0.1
        done
        KMSD_BUS_ADDRESS=$(head -n1 "$KMS_T/bus.address")
        if [[ -z "$KMSD_BUS_ADDRESS" ]]; then
                cat "$KMS_T/dbus.log" >&2
                die "dbus-daemon did not start"
        fi
        if [[ "$(head -n1 "$KMS_T/bus.pid")" != "$KMS_DBUS_PID" ]]; then
                die "dbus-daemon reports pid $(cat "$KMS_T/bus.pid"), expected $KMS_DBUS_PID"
        fi
        export KMSD_BUS_ADDRESS
}

# kms_start_kmsd [EXTRA ARGS...]: starts kmsd in the background (log in
# $KMS_T/kmsd.log) and waits until `kmsctl status` answers.
kms_start_kmsd() {
        echo "=== kmsd start $(date +%T)" >>"$KMS_T/kmsd.log"
        SOFTHSM2_CONF=$KMS_T/softhsm2.conf "$KMSD_BIN" --config "$KMS_T/kmsd.conf" \
                --bus-address "$KMSD_BUS_ADDRESS" "$@" </dev/null >>"$KMS_T/kmsd.log" 2>&1 &
        KMS_KMSD_PID=$!
        KMS_KMSD_RC=""
        kms_wait_ready
}

kms_wait_ready() {
        local deadline=$((SECONDS + ${KMS_READY_TIMEOUT:-20}))
        while ((SECONDS < deadline)); do
                if ! kms__alive "$KMS_KMSD_PID"; then
                        local rc=0
                        wait "$KMS_KMSD_PID" 2>/dev/null || rc=$?
                        KMS_KMSD_PID=""
                        echo "--- kmsd.log" >&2
                        cat "$KMS_T/kmsd.log" >&2
                        die "kmsd exited with $rc before it answered 'kmsctl status'"
                fi
                if KMS_KMSCTL_TIMEOUT=5 kmsctl status >/dev/null 2>&1; then
                        return 0
                fi
                sleep 0.2
        done
        echo "--- kmsd.log" >&2
        cat "$KMS_T/kmsd.log" >&2
        die "kmsd did not answer 'kmsctl status' within ${KMS_READY_TIMEOUT:-20}s"
}

# kms_stop_kmsd [TIMEOUT]: SIGTERM kmsd and wait; KMS_KMSD_RC gets its exit
# status. A non-zero status is a failure (ASan reports leaks with 99).
kms_stop_kmsd() {
        [[ -n "$KMS_KMSD_PID" ]] || return 0
        kms__stop_pid "$KMS_KMSD_PID" kmsd "${1:-20}"
        KMS_KMSD_PID=""
        KMS_KMSD_RC=$KMS_STOP_RC
        echo "=== kmsd stopped $(date +%T), exit $KMS_KMSD_RC" >>"$KMS_T/kmsd.log"
        if ((KMS_KMSD_RC != 0)); then
                fail "kmsd exited with status $KMS_KMSD_RC after SIGTERM (expected 0)"
        fi
}

kms_restart_kmsd() {
        kms_stop_kmsd
        kms_start_kmsd "$@"
}

# Starts the whole world. Call once, near the top of a test.
kms_harness_start() {
        : "${KMSD_BIN:?KMSD_BIN is not set: run this test through ctest}"
        : "${KMSCTL_BIN:?KMSCTL_BIN is not set: run this test through ctest}"
        kms_require dbus-daemon softhsm2-util timeout od "$KMS_PYTHON" "$KMS_PKCS11_MODULE"
        [[ -x "$KMSD_BIN" ]] || die "KMSD_BIN=$KMSD_BIN is not executable"
        [[ -x "$KMSCTL_BIN" ]] || die "KMSCTL_BIN=$KMSCTL_BIN is not executable"
        # Tests cd into their folder: make the paths absolute.
        KMSD_BIN=$(realpath "$KMSD_BIN")
        KMSCTL_BIN=$(realpath "$KMSCTL_BIN")
        if [[ -n "${KMS_P11_PROBE:-}" && -e "$KMS_P11_PROBE" ]]; then
                KMS_P11_PROBE=$(realpath "$KMS_P11_PROBE")
        fi

        local base=${TMPDIR:-/tmp}
        # A unix socket path must fit in sun_path (108 bytes).
        ((${#base} < 60)) || base=/tmp
        KMS_T=$(mktemp -d "$base/kmsd-it.XXXXXXXX")
        trap kms__on_exit EXIT
        trap 'exit 130' INT
        trap 'exit 143' TERM
        chmod 700 "$KMS_T"
        # Tests that run clients as another user (KMS_BUS_ALLOW_ALL_USERS)
        # need to reach the bus socket; the token and state stay 0700.
        [[ -z "${KMS_BUS_ALLOW_ALL_USERS:-}" ]] || chmod 711 "$KMS_T"
        mkdir -m 700 "$KMS_T/tokens" "$KMS_T/state"

        kms__write_softhsm_conf
        export SOFTHSM2_CONF=$KMS_T/softhsm2.conf
        (
                umask 077
                kms_random_pin >"$KMS_T/so-pin"
                kms_random_pin >"$KMS_T/pin"
        )
        if ! softhsm2-util --init-token --free --label "$KMS_TOKEN_LABEL" \
                --so-pin "$(cat "$KMS_T/so-pin")" --pin "$(cat "$KMS_T/pin")" \
                >"$KMS_T/softhsm-init.log" 2>&1; then
                cat "$KMS_T/softhsm-init.log" >&2
                die "softhsm2-util --init-token failed"
        fi
        kms_write_config
        kms__start_bus
        kms_start_kmsd
        echo "harness: kmsd pid $KMS_KMSD_PID, dbus-daemon pid $KMS_DBUS_PID, folder $KMS_T"
}

# ---------------------------------------------------------------- peers

# A second world beside the first, for tests between two kmsd instances:
# kms_peer_start NAME builds $KMS_T/NAME with its own SoftHSMv2 token, its
# own dbus-daemon and its own kmsd; kms_peer NAME CMD... runs CMD (kmsctl,
# usually) against that instance. kms_harness_stop stops the peers too.
declare -A KMS_PEER_T=() KMS_PEER_ADDR=() KMS_PEER_DBUS=() KMS_PEER_KMSD=()
kms_peer_start() {
        local name=$1 t=$KMS_T dbus=$KMS_DBUS_PID kmsd=$KMS_KMSD_PID addr=$KMSD_BUS_ADDRESS
        KMS_T=$t/$name
        mkdir -m 700 "$KMS_T" "$KMS_T/tokens" "$KMS_T/state"
        kms__write_softhsm_conf
        (
                umask 077
                kms_random_pin >"$KMS_T/so-pin"
                kms_random_pin >"$KMS_T/pin"
        )
        SOFTHSM2_CONF=$KMS_T/softhsm2.conf softhsm2-util --init-token --free --label "$KMS_TOKEN_LABEL" \
                --so-pin "$(cat "$KMS_T/so-pin")" --pin "$(cat "$KMS_T/pin")" >"$KMS_T/softhsm-init.log" 2>&1 ||
                die "softhsm2-util --init-token for $name failed: $(cat "$KMS_T/softhsm-init.log")"
        kms_write_config
        kms__start_bus
        KMS_PEER_DBUS[$name]=$KMS_DBUS_PID
        kms_start_kmsd
        KMS_PEER_KMSD[$name]=$KMS_KMSD_PID
        KMS_PEER_ADDR[$name]=$KMSD_BUS_ADDRESS
        KMS_PEER_T[$name]=$KMS_T
        echo "harness: peer $name: kmsd pid $KMS_KMSD_PID, dbus-daemon pid $KMS_DBUS_PID, folder $KMS_T"
        KMS_T=$t KMS_DBUS_PID=$dbus KMS_KMSD_PID=$kmsd
        KMSD_BUS_ADDRESS=$addr
        export KMSD_BUS_ADDRESS
}

kms_peer() {
        local name=$1
        shift
        KMSD_BUS_ADDRESS=${KMS_PEER_ADDR[$name]:?no peer $name} "$@"
}

kms__stop_peers() {
        local name
        for name in "${!KMS_PEER_T[@]}"; do
                if [[ -n "${KMS_PEER_KMSD[$name]}" ]]; then
                        kms__stop_pid "${KMS_PEER_KMSD[$name]}" "kmsd ($name)" 20
                        KMS_PEER_KMSD[$name]=""
                        ((KMS_STOP_RC == 0)) || fail "kmsd ($name) exited with status $KMS_STOP_RC after SIGTERM"
                fi
                if [[ -n "${KMS_PEER_DBUS[$name]}" ]]; then
                        kms__stop_pid "${KMS_PEER_DBUS[$name]}" "dbus-daemon ($name)" 10
                        KMS_PEER_DBUS[$name]=""
                fi
                if grep -Eq "$KMS_SANITIZER_RE" "${KMS_PEER_T[$name]}/kmsd.log" 2>/dev/null; then
                        fail "sanitizer report in the log of kmsd ($name)"
                        grep -E -A 40 "$KMS_SANITIZER_RE" "${KMS_PEER_T[$name]}/kmsd.log" | head -n 200 >&2
                fi
        done
}

# Stops what kms_harness_start started, checks for sanitizer reports and
# removes the folder. Safe to call twice.
kms_harness_stop() {
        ((KMS_STOPPED == 0)) || return 0
        KMS_STOPPED=1
        [[ -n "$KMS_T" ]] || return 0
        kms__stop_peers
        kms_stop_kmsd
        if [[ -n "$KMS_DBUS_PID" ]]; then
                kms__stop_pid "$KMS_DBUS_PID" dbus-daemon 10
                KMS_DBUS_PID=""
        fi
        kms_check_sanitizers
        if ((KMS_FAILED > 0)) && [[ -s "$KMS_T/kmsd.log" ]]; then
                echo "--- last 150 lines of kmsd.log" >&2
                tail -n 150 "$KMS_T/kmsd.log" >&2
        fi
        if [[ "${KMS_KEEP_TMP:-0}" == 1 ]]; then
                echo "harness: kept $KMS_T" >&2
        else
                rm -rf -- "$KMS_T"
        fi
}

kms_check_sanitizers() {
        if [[ -f "$KMS_T/kmsd.log" ]] && grep -Eq "$KMS_SANITIZER_RE" "$KMS_T/kmsd.log"; then
                fail "sanitizer report in kmsd's log"
                grep -E -A 40 "$KMS_SANITIZER_RE" "$KMS_T/kmsd.log" | head -n 200 >&2
        fi
        if [[ -s "$KMS_T/kmsctl-sanitizer.log" ]]; then
                fail "sanitizer report from kmsctl"
                head -n 200 "$KMS_T/kmsctl-sanitizer.log" >&2
        fi
}

kms__on_exit() {
        local rc=$?
        # Don't let a failing command in here re-enter through set -e.
        set +e
        kms_harness_stop
        if ((rc == 77)); then
                exit 77
        fi
        if ((rc == 0 && KMS_FAILED > 0)); then
                rc=1
        fi
        exit "$rc"
}

# Ends a test: stops everything and exits 0 only if all checks passed.
kms_finish() {
        kms_harness_stop
        echo "$KMS_TEST_NAME: $KMS_PASSED checks ok, $KMS_FAILED failed"
        if ((KMS_FAILED > 0)); then
                exit 1
        fi
        if ((KMS_PASSED == 0)); then
                echo "$KMS_TEST_NAME: no check ran" >&2
                exit 1
        fi
        exit 0
}
