#!/bin/bash
# Run kmsd-bench against a throw-away set-up: a SoftHSMv2 token with random
# PINs, a private dbus-daemon and kmsd, all in one temporary folder. Creates
# the key bench/p256 (ec-p256) with kmsctl, runs the benchmark, verifies one
# signature of each path with `openssl dgst -verify`, and stops exactly the
# processes it started (by pid). See docs/benchmark.md.
#
# --tpm adds the TPM: a swtpm on free loopback ports (state in the folder),
# [tpm] in kmsd.conf and the TPM key bench/tpm-p256 (ec-p256). swtpm serves
# one connection at a time, so kmsd is stopped while kmsd-bench
# --tpm-direct runs the direct cases (a bare Esys_Sign loop, then the TPM
# backend in-process with kmsd's key), then started again for the D-Bus
# cases (--tpm-clients), reported against the fastest direct case.
#
# Exit: kmsd-bench's status (0 ok, 1 errors, 3 target missed with
# --require-target), 1 if set-up or verification failed, 2 usage, 77 if a
# tool is missing (ctest counts that as skipped).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

seconds=5
workers=4
clients=""
direct_threads=""
build_dir="${KMSD_BUILD_DIR:-$repo/build}"
kmsd=""
kmsctl=""
bench=""
keep=0
require_target=0
debug=0
key=bench/p256
key_b=bench/peer
sessions=1000
tpm=0
tpm_clients=1,8
tpm_key=bench/tpm-p256

usage() {
    cat <<EOF
Usage: $0 [options]
  --seconds N          duration of each case (default 5)
  --workers N          kmsd worker threads (default 4)
  --clients L          D-Bus client counts (default 1,8,64)
  --direct-threads L   direct thread counts (default 1,2)
  --build-dir DIR      where kmsd, kmsctl and kmsd-bench were built (default \$KMSD_BUILD_DIR or ./build)
  --kmsd PATH, --kmsctl PATH, --bench PATH   the binaries, one by one
  --require-target     fail (exit 3) if kmsd at 8 clients is below 60% of direct 2-thread
  --sessions N         session load test with N sessions open (default 1000; 0: none)
  --tpm                also TPM signing against a swtpm: direct ESAPI loop, the TPM
                       backend in-process, and kmsd over D-Bus (needs swtpm)
  --tpm-clients L      D-Bus client counts of the TPM cases (default 1,8)
  --keep               keep the temporary folder (logs, samples) and print its path
  --debug              kmsd and kmsd-bench log at debug level (kmsd.log in the folder)
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --direct-threads) direct_threads=$2; shift 2 ;;
    --build-dir) build_dir=$2; shift 2 ;;
    --kmsd) kmsd=$2; shift 2 ;;
    --kmsctl) kmsctl=$2; shift 2 ;;
    --bench) bench=$2; shift 2 ;;
    --require-target) require_target=1; shift ;;
    --sessions) sessions=$2; shift 2 ;;
    --tpm) tpm=1; shift ;;
    --tpm-clients) tpm_clients=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --debug) debug=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run-bench.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
done
case "$seconds" in '' | *[!0-9]*) echo "run-bench.sh: --seconds '$seconds' is not a number" >&2; exit 2 ;; esac
case "$sessions" in '' | *[!0-9]*) echo "run-bench.sh: --sessions '$sessions' is not a number" >&2; exit 2 ;; esac
case "$workers" in '' | *[!0-9]*) echo "run-bench.sh: --workers '$workers' is not a number" >&2; exit 2 ;; esac
if [ "$workers" -lt 1 ] || [ "$workers" -gt 64 ]; then
    echo "run-bench.sh: --workers $workers is outside 1..64" >&2
    exit 2
fi

find_bin() { # name, explicit path
    if [ -n "$2" ]; then echo "$2"; return; fi
    for p in "$build_dir/$1" "$build_dir/daemon/$1" "$build_dir/cli/$1" "$build_dir/tests/bench/$1"; do
        if [ -x "$p" ]; then echo "$p"; return; fi
    done
    echo ""
}
kmsd=$(find_bin kmsd "$kmsd")
kmsctl=$(find_bin kmsctl "$kmsctl")
bench=$(find_bin kmsd-bench "$bench")

skip() { echo "run-bench.sh: SKIP: $*" >&2; exit 77; }
for tool in softhsm2-util dbus-daemon openssl busctl; do
    command -v "$tool" >/dev/null || skip "$tool is not installed"
done
for b in "$kmsd" "$kmsctl" "$bench"; do
    [ -n "$b" ] && [ -x "$b" ] || skip "kmsd, kmsctl or kmsd-bench not built (use --build-dir or --kmsd/--kmsctl/--bench)"
done
module=""
for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/*/softhsm/libsofthsm2.so /usr/local/lib/softhsm/libsofthsm2.so; do
    if [ -f "$m" ]; then module=$m; break; fi
done
[ -n "$module" ] || skip "libsofthsm2.so not found"
if [ "$tpm" = 1 ]; then
    for tool in swtpm python3; do
        command -v "$tool" >/dev/null || skip "$tool is not installed (needed by --tpm)"
    done
    "$bench" --help 2>/dev/null | grep -q -- --tpm-direct || skip "kmsd-bench was built without TPM support"
fi

tmp=$(mktemp -d /tmp/kmsd-bench.XXXXXX)
dbus_pid=""
kmsd_pid=""
swtpm_pid=""

stop_pid() { # pid: TERM, wait up to 5 s, then KILL; only our own children
    local pid=$1
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    stop_pid "$kmsd_pid"
    stop_pid "$swtpm_pid"
    stop_pid "$dbus_pid"
    if [ "$keep" = 1 ]; then
        echo "run-bench.sh: kept $tmp" >&2
    else
        rm -rf "$tmp"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
    echo "run-bench.sh: $*" >&2
    if [ -s "$tmp/kmsd.log" ]; then
        echo "--- last lines of the kmsd log:" >&2
        tail -n 20 "$tmp/kmsd.log" >&2
    fi
    exit 1
}

# --- the token ------------------------------------------------------------
label="kmsd-bench"
pin=$(openssl rand -hex 12)
so_pin=$(openssl rand -hex 12)
mkdir -p "$tmp/tokens" "$tmp/samples"
mkdir -m 700 "$tmp/state" # kmsd refuses a state_dir others may read
cat >"$tmp/softhsm2.conf" <<EOF
directories.tokendir = $tmp/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
EOF
export SOFTHSM2_CONF="$tmp/softhsm2.conf"
softhsm2-util --init-token --free --label "$label" --so-pin "$so_pin" --pin "$pin" >"$tmp/softhsm.log" 2>&1 ||
    fail "softhsm2-util --init-token failed: $(cat "$tmp/softhsm.log")"
(umask 077 && printf '%s\n' "$pin" >"$tmp/pin")
unset so_pin

# --- a private bus --------------------------------------------------------
addr="unix:path=$tmp/bus"
cat >"$tmp/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>$addr</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
  <limit name="max_incoming_bytes">1000000000</limit>
  <limit name="max_outgoing_bytes">1000000000</limit>
  <limit name="max_message_size">100000000</limit>
  <limit name="max_replies_per_connection">50000</limit>
  <limit name="max_connections_per_user">100000</limit>
  <limit name="max_completed_connections">100000</limit>
</busconfig>
EOF
dbus-daemon --config-file="$tmp/bus.conf" --nofork --nopidfile >"$tmp/dbus.log" 2>&1 &
dbus_pid=$!
for _ in $(seq 100); do
    [ -S "$tmp/bus" ] && break
    kill -0 "$dbus_pid" 2>/dev/null || fail "dbus-daemon exited: $(cat "$tmp/dbus.log")"
    sleep 0.05
done
[ -S "$tmp/bus" ] || fail "dbus-daemon did not create $tmp/bus"

# --- swtpm (--tpm) --------------------------------------------------------
# As tests/lib/swtpm.sh does: two consecutive free ports on 127.0.0.1
# (server, control) outside the ephemeral range (tests/lib/free_ports.py),
# ready when the control port accepts (the server port is left alone:
# swtpm serves one client at a time).
tcti=""
if [ "$tpm" = 1 ]; then
    mkdir -m 700 "$tmp/swtpm"
    for _ in $(seq 10); do
        port=$(python3 "$here/../lib/free_ports.py") || port=""
        [ -n "$port" ] || fail "no free pair of TCP ports on 127.0.0.1 for swtpm"
        swtpm socket --tpm2 --tpmstate "dir=$tmp/swtpm" \
            --server "type=tcp,port=$port,bindaddr=127.0.0.1" \
            --ctrl "type=tcp,port=$((port + 1)),bindaddr=127.0.0.1" \
            --flags not-need-init,startup-clear </dev/null >>"$tmp/swtpm.log" 2>&1 &
        swtpm_pid=$!
        for _ in $(seq 100); do
            kill -0 "$swtpm_pid" 2>/dev/null || break
            if python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' \
                $((port + 1)) 2>/dev/null; then
                tcti="swtpm:host=127.0.0.1,port=$port"
                break
            fi
            sleep 0.1
        done
        [ -n "$tcti" ] && break
        stop_pid "$swtpm_pid" # a port taken meanwhile: another pair
        swtpm_pid=""
    done
    [ -n "$tcti" ] || fail "swtpm did not start: $(cat "$tmp/swtpm.log")"
    # tpm2-tss prints every TPM error on stderr (kmsd and kmsd-bench quiet it too).
    [ "$debug" = 1 ] || export TSS2_LOG=all+NONE
fi

# --- kmsd -----------------------------------------------------------------
cat >"$tmp/kmsd.conf" <<EOF
[daemon]
bus = $addr
state_dir = $tmp/state
workers = $workers
log_level = $([ "$debug" = 1 ] && echo debug || echo notice)
log_target = stderr

[pkcs11]
module = $module
token_label = $label
pin_file = $tmp/pin
EOF
if [ "$tpm" = 1 ]; then
    printf '\n[tpm]\nenable = yes\ntcti = %s\n' "$tcti" >>"$tmp/kmsd.conf"
fi
start_kmsd() {
    local ready=0
    "$kmsd" --config "$tmp/kmsd.conf" >>"$tmp/kmsd.log" 2>&1 &
    kmsd_pid=$!
    for _ in $(seq 200); do
        kill -0 "$kmsd_pid" 2>/dev/null || fail "kmsd exited during start-up"
        if busctl --address="$addr" call org.kmsd.KeyManager1 /org/kmsd/KeyManager1 org.kmsd.KeyManager1 \
            GetStatus >/dev/null 2>&1; then
            ready=1
            break
        fi
        sleep 0.05
    done
    [ "$ready" = 1 ] || fail "kmsd did not answer GetStatus within 10 s"
}
start_kmsd

# backend_id NAME: versions[0].backend_id of a key (DescribeKey), or "".
backend_id() {
    busctl --address="$addr" --json=short call org.kmsd.KeyManager1 /org/kmsd/KeyManager1 \
        org.kmsd.KeyManager1 DescribeKey s "$1" 2>/dev/null |
        grep -o '"backend_id":{"type":"s","data":"[0-9a-f]*"' | head -n 1 | grep -o '[0-9a-f]*"$' | tr -d '"' || true
}

for k in "$key" "$key_b"; do
    KMSD_BUS_ADDRESS="$addr" "$kmsctl" key create "$k" --algorithm ec-p256 --usage sign,derive >"$tmp/kmsctl.log" 2>&1 ||
        fail "kmsctl key create $k --algorithm ec-p256 --usage sign,derive failed: $(cat "$tmp/kmsctl.log")"
done

# --- the TPM's direct cases (--tpm), with kmsd stopped --------------------
tpm_ref=""
if [ "$tpm" = 1 ]; then
    busctl --address="$addr" call org.kmsd.KeyManager1 /org/kmsd/KeyManager1 org.kmsd.KeyManager1 \
        CreateKey 'ssa{sv}' "$tpm_key" ec-p256 1 backend s tpm >"$tmp/kmsctl.log" 2>&1 ||
        fail "CreateKey $tpm_key (ec-p256, backend tpm) failed: $(cat "$tmp/kmsctl.log")"
    tpm_id=$(backend_id "$tpm_key")
    [ -n "$tpm_id" ] || fail "no backend_id for $tpm_key"
    KMSD_BUS_ADDRESS="$addr" "$kmsctl" key public "$tpm_key" --der --out "$tmp/samples/tpm-key.der" \
        >"$tmp/kmsctl.log" 2>&1 || fail "kmsctl key public $tpm_key failed: $(cat "$tmp/kmsctl.log")"
    stop_pid "$kmsd_pid"
    kmsd_pid=""
    echo "run-bench.sh: TPM: swtpm on $tcti ($(swtpm --version 2>/dev/null | head -n 1 || echo '?')); kmsd stopped for the direct cases"
    targs=(--tpm-direct --tcti "$tcti" --tpm-db "$tmp/state/kmsd.db" --key-id "$tpm_id"
        --spki "$tmp/samples/tpm-key.der" --seconds "$seconds" --samples "$tmp/samples")
    [ -n "$direct_threads" ] && targs+=(--direct-threads "$direct_threads")
    [ "$debug" = 1 ] && targs+=(--debug)
    trc=0
    "$bench" "${targs[@]}" >"$tmp/tpm-direct.out" || trc=$?
    cat "$tmp/tpm-direct.out"
    [ "$trc" = 0 ] || fail "kmsd-bench --tpm-direct failed (exit $trc)"
    tpm_ref=$(sed -n 's/^reference: .* thread.*, \([0-9.]*\) sig\/s (the fastest direct case)$/\1/p' "$tmp/tpm-direct.out")
    [ -n "$tpm_ref" ] || fail "kmsd-bench --tpm-direct printed no reference rate"
    start_kmsd
    echo
fi

# --- the benchmark --------------------------------------------------------
echo "run-bench.sh: kmsd with $workers workers, $(nproc) CPUs, SoftHSMv2 $(softhsm2-util --version 2>/dev/null || echo '?')"
args=(--bus-address "$addr" --key "$key" --module "$module" --token-label "$label" --pin-file "$tmp/pin"
    --seconds "$seconds" --samples "$tmp/samples")
[ -n "$clients" ] && args+=(--clients "$clients")
[ -n "$direct_threads" ] && args+=(--direct-threads "$direct_threads")
[ "$require_target" = 1 ] && args+=(--require-target)
[ "$debug" = 1 ] && args+=(--debug)
[ "$sessions" != 0 ] && args+=(--sessions "$sessions" --key-b "$key_b" --kmsd-pid "$kmsd_pid")
[ "$tpm" = 1 ] && args+=(--tpm-key "$tpm_key" --tpm-clients "$tpm_clients" --tpm-reference "$tpm_ref")
bench_rc=0
"$bench" "${args[@]}" || bench_rc=$?
if [ "$bench_rc" != 0 ] && [ "$bench_rc" != 3 ]; then
    fail "kmsd-bench failed (exit $bench_rc)"
fi

# --- referee: OpenSSL verifies one signature of each path -----------------
# The public key comes from the token itself (pkcs11-tool) when that tool is
# there, so that neither kmsd nor the benchmark vouches for itself; it must
# also equal what kmsd's GetPublicKey returned.
s=$tmp/samples
for f in data.bin pub.der direct.sig dbus.sig; do
    [ -s "$s/$f" ] || fail "kmsd-bench wrote no $f"
done
pubkey="$s/pub.der"
source="kmsd GetPublicKey"
if command -v pkcs11-tool >/dev/null; then
    id=$(backend_id "$key")
    if [ -n "$id" ] && pkcs11-tool --module "$module" --token-label "$label" --read-object --type pubkey \
        --id "$id" -o "$s/token-pub.der" >/dev/null 2>&1 &&
        openssl pkey -pubin -inform DER -in "$s/token-pub.der" -noout 2>/dev/null; then
        cmp -s "$s/token-pub.der" "$s/pub.der" ||
            fail "the token's public key (pkcs11-tool, id $id) differs from kmsd's GetPublicKey"
        pubkey="$s/token-pub.der"
        source="the token (pkcs11-tool --id $id)"
    else
        echo "run-bench.sh: note: could not read the public key with pkcs11-tool; using kmsd's" >&2
    fi
fi
openssl pkey -pubin -inform DER -in "$pubkey" -out "$s/pub.pem" || fail "the public key is not a valid SPKI"
for path in direct dbus; do
    if ! openssl dgst -sha256 -verify "$s/pub.pem" -signature "$s/$path.sig" "$s/data.bin" >"$s/$path.verify" 2>&1; then
        fail "openssl does not verify the $path signature: $(cat "$s/$path.verify")"
    fi
done
echo "run-bench.sh: openssl verified one direct and one kmsd signature with the public key from $source"

# The TPM's signatures: the ESAPI loop's with the key it made; the
# backend's and kmsd's with the TPM key, whose public key comes from the
# TPM's own public area in kmsd's database (tpm2_print) when tpm2-tools
# and sqlite3 are there, and must equal kmsd's.
if [ "$tpm" = 1 ]; then
    for f in tpm-esapi.sig tpm-esapi-pub.der tpm-direct.sig tpm-dbus.sig tpm-pub.der; do
        [ -s "$s/$f" ] || fail "kmsd-bench wrote no $f"
    done
    cmp -s "$s/tpm-pub.der" "$s/tpm-key.der" || fail "GetPublicKey and kmsctl key public differ for $tpm_key"
    tpub="$s/tpm-pub.der"
    source="kmsd GetPublicKey"
    if command -v sqlite3 >/dev/null && command -v tpm2_print >/dev/null &&
        sqlite3 "$tmp/state/kmsd.db" \
            "SELECT writefile('$s/tpm-public.bin', public) FROM tpm_keys WHERE lower(hex(id)) = '$tpm_id'" \
            >/dev/null 2>&1 && [ -s "$s/tpm-public.bin" ] &&
        tpm2_print -t TPM2B_PUBLIC -f pem "$s/tpm-public.bin" >"$s/tpm-public.pem" 2>/dev/null &&
        openssl pkey -pubin -in "$s/tpm-public.pem" -outform DER -out "$s/tpm-public.der" 2>/dev/null; then
        cmp -s "$s/tpm-public.der" "$s/tpm-pub.der" ||
            fail "the TPM public area of $tpm_key (tpm2_print) differs from kmsd's GetPublicKey"
        tpub="$s/tpm-public.der"
        source="its TPM public area (tpm2_print)"
    else
        echo "run-bench.sh: note: could not read the TPM public area with sqlite3 and tpm2_print; using kmsd's" >&2
    fi
    openssl pkey -pubin -inform DER -in "$tpub" -out "$s/tpm-pub.pem" || fail "the TPM public key is not a valid SPKI"
    openssl pkey -pubin -inform DER -in "$s/tpm-esapi-pub.der" -out "$s/tpm-esapi-pub.pem" ||
        fail "the ESAPI key's public key is not a valid SPKI"
    for c in tpm-esapi:tpm-esapi-pub.pem tpm-direct:tpm-pub.pem tpm-dbus:tpm-pub.pem; do
        path=${c%%:*}
        if ! openssl dgst -sha256 -verify "$s/${c#*:}" -signature "$s/$path.sig" "$s/data.bin" >"$s/$path.verify" 2>&1; then
            fail "openssl does not verify the $path signature: $(cat "$s/$path.verify")"
        fi
    done
    echo "run-bench.sh: openssl verified the ESAPI, the direct TPM backend and the kmsd TPM signature (key from $source)"
fi
exit "$bench_rc"
