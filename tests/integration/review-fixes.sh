#!/usr/bin/env bash
# Checks for the fixes of a security review, each of which failed before:
#   peer keys     Derive and OpenSession refuse a peer key with explicit
#                 curve parameters (named curves only, as docs/dbus-api.md
#                 says), and a point off the curve is called that, not
#                 "not one DER SubjectPublicKeyInfo"
#   close race    CloseSession while other connections loop Seal on the
#                 session: no Seal seals after CloseSession answered
#   asprintf      kmsd's credential path survives a failing asprintf()
#                 (an LD_PRELOAD shim; normal builds only)
#   kmsctl        error paths of audit export, session and file input that
#                 an ASan build of kmsctl reports leaks on
#   corrupt audit a corrupt page of the audit table, found while kmsd runs:
#                 ExportAudit answers Store with a sentence saying the
#                 database is corrupt, and kmsd (ASan) exits without a leak
#   corrupt keys  a corrupt page of the keys table: kmsd refuses to start,
#                 naming the table, and kmsctl status fails
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib/harness.sh"
kms_require openssl dd stat
if ! "$KMS_PYTHON" -c 'import dbus, sqlite3' 2>/dev/null; then
        echo "SKIP: $KMS_TEST_NAME needs python3-dbus and python3's sqlite3 (scripts/deps installs them)"
        exit 77
fi

ERR=org.kmsd.KeyManager1.Error
# Eight workers, so several Seals can wait on one session while another
# call closes it; large plaintexts, so a Seal holds the session a while.
KMS_EXTRA_CONFIG=$'[daemon]\nworkers = 8\n\n[limits]\nmax_message_bytes = 8388608'
kms_harness_start
W=$KMS_T/work
mkdir -p "$W"
cd "$W"

# expect_refused DESC PATTERN METHOD SIG ARGS...: a raw call must fail with
# InvalidArgument and a message matching PATTERN (extended regex).
expect_refused() {
        local desc=$1 pattern=$2
        shift 2
        run kms_call "$@"
        if ((KMS_RC == 0)); then
                fail "$desc: accepted: $(head -c 300 "$KMS_OUT")"
        elif ! grep -q "^ERROR $ERR.InvalidArgument:" "$KMS_ERR"; then
                fail "$desc: not InvalidArgument: $(cat "$KMS_ERR")"
        elif ! grep -Eq -- "$pattern" "$KMS_ERR"; then
                fail "$desc: the message does not say '$pattern': $(cat "$KMS_ERR")"
        else
                pass "$desc: $(cat "$KMS_ERR")"
        fi
}

# ================================================================ peer keys
check "create chat/alice (ec-p256, derive)" kmsctl key create chat/alice --algorithm ec-p256 --usage derive
check "create chat/carol (ec-p384, derive)" kmsctl key create chat/carol --algorithm ec-p384 --usage derive
openssl ecparam -name prime256v1 -genkey -noout -out bob.key 2>/dev/null
openssl ec -in bob.key -pubout -outform DER -out bob.spki 2>/dev/null
openssl ec -in bob.key -pubout -out bob.pub.pem 2>/dev/null
# The same key with its curve spelt out (p, a, b, G, n, h) instead of the
# OID: the same point, and what a caller could not be refused for by a
# check of the curve's name alone, which OpenSSL derives from them.
openssl ec -in bob.key -param_enc explicit -pubout -outform DER -out bob-explicit.spki 2>/dev/null
openssl ec -in bob.key -param_enc explicit -conv_form compressed -pubout -outform DER \
        -out bob-explicit-c.spki 2>/dev/null
openssl ecparam -name secp384r1 -genkey -noout -out dave.key 2>/dev/null
openssl ec -in dave.key -param_enc explicit -pubout -outform DER -out dave-explicit.spki 2>/dev/null
openssl asn1parse -inform DER -in bob-explicit.spki 2>/dev/null | grep -q prime-field ||
        die "openssl did not write explicit parameters"

# Hand-made P-256 SubjectPublicKeyInfos around a given point.
"$KMS_PYTHON" - <<'PY'
def der(tag, body):
    n = len(body)
    if n < 0x80:
        ln = bytes([n])
    else:
        b = n.to_bytes((n.bit_length() + 7) // 8, "big")
        ln = bytes([0x80 | len(b)]) + b
    return bytes([tag]) + ln + body

ALG = der(0x30, bytes.fromhex("06072a8648ce3d0201") + bytes.fromhex("06082a8648ce3d030107"))

def spki(point):
    return der(0x30, ALG + der(0x03, b"\x00" + point))

p = 2**256 - 2**224 + 2**192 + 2**96 - 1
b = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
# An x with no y on the curve: x^3 - 3x + b is not a square mod p.
x = 1
while pow((x**3 - 3 * x + b) % p, (p - 1) // 2, p) != p - 1:
    x += 1
open("offcurve-compressed.spki", "wb").write(spki(b"\x02" + x.to_bytes(32, "big")))
# The point at infinity, and a point of the wrong length.
open("infinity.spki", "wb").write(spki(b"\x00"))
open("short-point.spki", "wb").write(spki(b"\x04" + bytes(63)))
# Bob's point with y changed: well formed, not on the curve.
d = bytearray(open("bob.spki", "rb").read())
d[-1] ^= 1
open("offcurve.spki", "wb").write(bytes(d))
# Exactly the documented cap of 2048 bytes (judged by its point), and one
# byte over it (refused for its size).
for name, size in (("max.spki", 2048), ("big.spki", 2049)):
    k = size
    while len(spki(b"\x04" + bytes(k))) > size:
        k -= 1
    data = spki(b"\x04" + bytes(k))
    assert len(data) == size, (name, len(data))
    open(name, "wb").write(data)
PY
expect_eq "big.spki is 2049 bytes" 2049 "$(stat -c %s big.spki)"

derive_args() { # FILE: the JSON arguments of Derive on chat/alice with FILE as the peer
        printf '%s\n' '"chat/alice"' "\"$(hex <"$1")\"" '{}'
}
check "Derive with bob's named-curve key works" kms_call Derive 'saya{sv}' $(derive_args bob.spki)
expect_refused "Derive, explicit curve parameters (P-256)" "explicit curve parameters" \
        Derive 'saya{sv}' $(derive_args bob-explicit.spki)
expect_refused "Derive, explicit curve parameters, compressed point" "explicit curve parameters" \
        Derive 'saya{sv}' $(derive_args bob-explicit-c.spki)
expect_refused "Derive on P-384, explicit curve parameters" "explicit curve parameters.*P-384" \
        Derive 'saya{sv}' '"chat/carol"' "\"$(hex <dave-explicit.spki)\"" '{}'
expect_refused "OpenSession, explicit curve parameters" "explicit curve parameters" \
        OpenSession 'saysa{sv}' '"chat/alice"' "\"$(hex <bob-explicit.spki)\"" '"initiator"' '{}'
expect_refused "Derive, a point off the curve" "not on the curve P-256" \
        Derive 'saya{sv}' $(derive_args offcurve.spki)
expect_refused "Derive, a compressed x with no point on the curve" "not on the curve P-256" \
        Derive 'saya{sv}' $(derive_args offcurve-compressed.spki)
expect_refused "OpenSession, a point off the curve" "not on the curve P-256" \
        OpenSession 'saysa{sv}' '"chat/alice"' "\"$(hex <offcurve.spki)\"" '"initiator"' '{}'
expect_refused "Derive, the point at infinity" "point at infinity" Derive 'saya{sv}' $(derive_args infinity.spki)
expect_refused "Derive, a point of the wrong length" "not an encoded point" \
        Derive 'saya{sv}' $(derive_args short-point.spki)
expect_refused "Derive, 2048 bytes: judged by its point" "not an encoded point" Derive 'saya{sv}' $(derive_args max.spki)
expect_refused "Derive, 2049 bytes (the cap is 2048)" "SubjectPublicKeyInfo" Derive 'saya{sv}' $(derive_args big.spki)
run kms_call Derive 'saya{sv}' $(derive_args offcurve.spki)
if grep -q "not one DER" "$KMS_ERR"; then fail "an off-curve point is still called bad DER"; else pass "an off-curve point is not called bad DER"; fi
# kmsctl passes an explicit-parameter file on (it parses); kmsd refuses it.
expect_fail 1 "explicit curve parameters" kmsctl derive chat/alice --peer bob-explicit.spki --out no1.bin
if [[ -e no1.bin ]]; then fail "a refused derive wrote no1.bin"; else pass "a refused derive wrote no file"; fi
if grep -q "peer key for 'chat/alice' refused: the peer key has explicit curve parameters" "$KMS_T/kmsd.log"; then
        pass "kmsd logs the refusal with its reason"
else
        fail "no 'peer key ... refused: ... explicit curve parameters' line in kmsd's log"
fi

# ================================================================ close race
# Seal loops on N connections while another connection closes the session.
# A Seal's envelope carries kmsd's clock at the moment it sealed (ms): none
# may be later than the moment CloseSession's reply arrived, and no Seal
# sent after that reply may succeed. (A Seal that sealed just before the
# close may still have its reply released a little after CloseSession's:
# replies leave in the order of their audit records.)
cat >race.py <<'PY'
import os, random, struct, sys, threading, time
import dbus

ADDR = os.environ["KMSD_BUS_ADDRESS"]
NAME, PATH, IFACE = "org.kmsd.KeyManager1", "/org/kmsd/KeyManager1", "org.kmsd.KeyManager1"
NOT_FOUND = "org.kmsd.KeyManager1.Error.SessionNotFound"
PEER = dbus.ByteArray(open("bob.spki", "rb").read())
PAYLOAD = dbus.ByteArray(os.urandom(int(sys.argv[2])))
TRIALS, SEALERS = int(sys.argv[1]), 6


def call(conn, method, sig, args):
    return conn.call_blocking(NAME, PATH, IFACE, method, sig, args, timeout=120, byte_arrays=True)


def sealer(sid, out):
    conn = dbus.bus.BusConnection(ADDR)
    while True:
        sent = time.time()
        try:
            env = call(conn, "Seal", "saya{sv}", [sid, PAYLOAD, dbus.Dictionary({}, signature="sv")])
        except dbus.exceptions.DBusException as e:
            out.append(("error", sent, time.time(), e.get_dbus_name()))
            return
        out.append(("ok", sent, time.time(), struct.unpack(">Q", bytes(env[10:18]))[0]))


bad = late = oks = 0
main = dbus.bus.BusConnection(ADDR)
for trial in range(TRIALS):
    sid, _ = call(main, "OpenSession", "saysa{sv}",
                  ["chat/alice", PEER, "initiator",
                   dbus.Dictionary({"context": dbus.ByteArray(os.urandom(16)),
                                    "max_messages": dbus.UInt32(65536)}, signature="sv")])
    results = [[] for _ in range(SEALERS)]
    threads = [threading.Thread(target=sealer, args=(sid, results[i])) for i in range(SEALERS)]
    for t in threads:
        t.start()
    time.sleep(0.15 + random.random() * 0.2)
    closer = dbus.bus.BusConnection(ADDR)
    call(closer, "CloseSession", "s", [sid])
    closed = time.time()
    for t in threads:
        t.join()
    for r in (x for res in results for x in res):
        if r[0] == "ok":
            oks += 1
            if r[3] > closed * 1000:
                bad += 1
                print("trial %d: a Seal sealed at %d ms, after CloseSession answered at %.3f ms"
                      % (trial, r[3], closed * 1000))
            elif r[1] > closed:
                bad += 1
                print("trial %d: a Seal sent after CloseSession answered succeeded" % trial)
            elif r[2] > closed:
                late += 1
        elif r[3] != NOT_FOUND:
            bad += 1
            print("trial %d: a Seal failed with %s, not SessionNotFound" % (trial, r[3]))
    for res in results:
        if not res or res[-1][0] != "error":
            bad += 1
            print("trial %d: a sealer ended without SessionNotFound" % trial)
print("%d trials, %d seals, %d replies after the close (sealed before it), %d bad" % (TRIALS, oks, late, bad))
sys.exit(1 if bad else 0)
PY
run timeout -k 5 240 "$KMS_PYTHON" race.py "${KMS_RACE_TRIALS:-12}" 8000000
if ((KMS_RC == 0)); then
        pass "close race: $(tail -n1 "$KMS_OUT")"
else
        fail "close race (exit $KMS_RC): $(head -c 2000 "$KMS_OUT") $(head -c 1000 "$KMS_ERR")"
fi
# The closed sessions are gone, and kmsd still serves.
run kms_call ListSessions 'a{sv}' '{}'
expect_eq "no session left after the race" '[[]]' "$(cat "$KMS_OUT")"

# ================================================================ asprintf
# kmsd builds $CREDENTIALS_DIRECTORY/pin with asprintf(); on failure the
# pointer is undefined, and kmsd must not use or free it. A shim makes that
# one asprintf fail and leave a pointer that free() would choke on. The
# ASan runtime comes with its own asprintf, so the shim is for normal
# builds (it writes a marker when it was used).
if command -v cc >/dev/null 2>&1; then
        cat >shim.c <<'C'
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char not_heap[16];

static int fake(char **strp, const char *fmt, va_list ap)
{
        if (strcmp(fmt, "%s/pin") == 0) {
                FILE *m = fopen(getenv("KMS_SHIM_MARK"), "w");
                if (m)
                        fclose(m);
                *strp = not_heap + 1; /* "undefined": not a heap pointer */
                errno = ENOMEM;
                return -1;
        }
        return vasprintf(strp, fmt, ap);
}

int asprintf(char **strp, const char *fmt, ...)
{
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = fake(strp, fmt, ap);
        va_end(ap);
        return r;
}

int __asprintf_chk(char **strp, int flag, const char *fmt, ...)
{
        va_list ap;
        int r;

        (void)flag;
        va_start(ap, fmt);
        r = fake(strp, fmt, ap);
        va_end(ap);
        return r;
}
C
        if cc -shared -fPIC -o shim.so shim.c 2>cc.err; then
                mkdir -p creds
                grep -v '^pin_file' "$KMS_T/kmsd.conf" >nopin.conf
                rc=0
                env CREDENTIALS_DIRECTORY="$W/creds" KMS_SHIM_MARK="$W/shim.used" LD_PRELOAD="$W/shim.so" \
                        ASAN_OPTIONS="${ASAN_OPTIONS:-}:verify_asan_link_order=0" \
                        timeout -k 5 20 "$KMSD_BIN" --config nopin.conf --check-config >shim.out 2>&1 || rc=$?
                if [[ ! -e shim.used ]]; then
                        pass "asprintf shim not used by this build (sanitizer runtime): skipped"
                elif ((rc == 1)) && grep -q "out of memory" shim.out; then
                        pass "a failing asprintf for the PIN credential: kmsd says out of memory, exit 1"
                else
                        fail "a failing asprintf for the PIN credential: exit $rc: $(head -c 500 shim.out)"
                fi
        else
                fail "cannot build the asprintf shim: $(cat cc.err)"
        fi
else
        pass "no C compiler: asprintf shim skipped"
fi

# ================================================================ kmsctl error paths
# Each must fail cleanly; in an ASan build the harness fails the test on
# any leak report from kmsctl.
expect_fail 1 "cannot create a temporary file" kmsctl audit export --out "$W/no/such/dir/x.jsonl"
expect_fail 1 "cannot open" kmsctl audit export --out "$W"
expect_fail 1 "not reachable" env KMSD_BUS_ADDRESS="unix:path=$W/no-bus" "$KMSCTL_BIN" audit export --out x.jsonl
expect_fail 2 "--since" kmsctl audit export --since yesterday --out x.jsonl
expect_fail 1 "cannot open" kmsctl sign chat/alice --in "$W/missing" --out x.sig
expect_fail 2 "not a public key" kmsctl derive chat/alice --peer big.spki --out x.bin
expect_fail 1 "cannot open" kmsctl derive chat/alice --peer "$W/missing" --out x.bin
head -c 70000000 /dev/zero >huge.bin
expect_fail 1 "larger than" kmsctl sign chat/alice --in huge.bin --out x.sig
expect_fail 1 "larger than" sh -c "'$KMSCTL_BIN' session seal 00000000-0000-4000-8000-000000000000 --in - --out x.env <huge.bin"
rm -f huge.bin
expect_fail 4 "SessionNotFound" kmsctl session seal 00000000-0000-4000-8000-000000000000 --in bob.spki --out x.env
expect_fail 4 "SessionNotFound" kmsctl session open-envelope 00000000-0000-4000-8000-000000000000 --in bob.spki --out x.out
expect_fail 2 "--format" kmsctl audit export --format xml --out x.jsonl
expect_fail 2 "invalid key name" kmsctl audit export --key /abs --out x.jsonl
expect_fail 1 "standard output" sh -c "'$KMSCTL_BIN' audit export --out - >&-"
expect_fail 1 "cannot read" kmsctl sign chat/alice --in "$W" --out x.sig
expect_fail 1 "cannot open" kmsctl verify chat/alice --in bob.spki --sig "$W/missing"
expect_fail 1 "cannot create" kmsctl key public chat/alice --out "$W/no/such/dir/x.pem"
expect_fail 2 "private key" kmsctl derive chat/alice --peer bob.key --out x.bin
expect_fail 1 "cannot write" kmsctl derive chat/alice --peer bob.pub.pem --out /dev/full
if ls x.* >/dev/null 2>&1; then fail "a failed command left a file: $(ls x.*)"; else pass "failed commands left no file"; fi

# ================================================================ corrupt audit table
# Enough records that the audit table has several leaves; the leftmost
# one (seq 1 onwards) is damaged while kmsd runs. kmsd's connections have
# not read it since it started: each new record resets their caches.
"$KMS_PYTHON" - <<'PY' || die "could not make audit records"
import os, dbus
c = dbus.bus.BusConnection(os.environ["KMSD_BUS_ADDRESS"])
for i in range(300):
    c.call_blocking("org.kmsd.KeyManager1", "/org/kmsd/KeyManager1", "org.kmsd.KeyManager1", "GetStatus", "", [])
PY
check "audit export before the damage" kmsctl audit export --out before.jsonl
kms_stop_kmsd
DB=$KMS_T/state/kmsd.db
cp "$DB" "$W/kmsd.db.good"
pages() { # TABLE: its leaf pages, leftmost first, then the page size
        "$KMS_PYTHON" - "$DB" "$1" <<'PY'
import sqlite3, sys
c = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True)
leaves = [r[0] for r in c.execute("SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY path",
                                  (sys.argv[2],))]
print(" ".join(map(str, leaves)), c.execute("PRAGMA page_size").fetchone()[0])
PY
}
read -r -a audit_pages <<<"$(pages audit)"
page_size=${audit_pages[-1]}
unset 'audit_pages[-1]'
if ((${#audit_pages[@]} >= 3)); then pass "the audit table has ${#audit_pages[@]} leaves"; else die "the audit table has ${#audit_pages[@]} leaves, expected at least 3"; fi
kms_start_kmsd
dd if=/dev/urandom of="$DB" bs="$page_size" seek=$((audit_pages[0] - 1)) count=1 conv=notrunc status=none
run kms_call ExportAudit 'a{sv}' '{"from_seq": ["t", 1], "limit": ["u", 5000]}'
if ((KMS_RC != 0)) && grep -q "^ERROR $ERR.Store:" "$KMS_ERR" && grep -q "corrupt" "$KMS_ERR"; then
        pass "ExportAudit over the damaged page: Store, saying corrupt: $(cat "$KMS_ERR")"
else
        fail "ExportAudit over the damaged page: rc $KMS_RC: $(head -c 300 "$KMS_OUT") $(cat "$KMS_ERR")"
fi
expect_fail 1 "corrupt" kmsctl audit export --out damaged.jsonl
if ls damaged.jsonl* >/dev/null 2>&1; then fail "a failed export left $(ls damaged.jsonl*)"; else pass "a failed export leaves no file"; fi
# A failed ExportAudit leaves nothing behind in kmsd: an ASan build exits
# 99 on a leak, which kms_stop_kmsd reports.
kms_stop_kmsd
expect_eq "kmsd's exit status after failed exports" 0 "$KMS_KMSD_RC"

# ================================================================ corrupt keys table
cp "$W/kmsd.db.good" "$DB"
rm -f "$DB-wal" "$DB-shm"
read -r -a key_pages <<<"$(pages keys)"
unset 'key_pages[-1]'
((${#key_pages[@]} >= 1)) || die "no page of the keys table found"
dd if=/dev/urandom of="$DB" bs="$page_size" seek=$((key_pages[0] - 1)) count=1 conv=notrunc status=none
echo "=== kmsd start on a damaged keys table $(date +%T)" >>"$KMS_T/kmsd.log"
SOFTHSM2_CONF=$KMS_T/softhsm2.conf "$KMSD_BIN" --config "$KMS_T/kmsd.conf" --bus-address "$KMSD_BUS_ADDRESS" \
        </dev/null >refused.log 2>&1 &
pid=$!
for ((i = 0; i < 200; i++)); do
        kms__alive "$pid" || break
        sleep 0.1
done
if kms__alive "$pid"; then
        run kmsctl status
        fail "kmsd still runs 20 s after starting on a damaged keys table (kmsctl status exit $KMS_RC)"
        kill -TERM "$pid" 2>/dev/null || true
fi
rc=0
wait "$pid" 2>/dev/null || rc=$?
cat refused.log >>"$KMS_T/kmsd.log"
if ((rc != 0)) && grep -q "refusing to start" refused.log && grep -q "table 'keys'" refused.log &&
        grep -q "corrupt" refused.log; then
        pass "kmsd refuses to start (exit $rc): $(grep "refusing to start" refused.log | head -n1)"
else
        fail "kmsd on a damaged keys table: exit $rc: $(head -c 800 refused.log)"
fi
if grep -q "ready on the" refused.log; then fail "kmsd reported ready"; else pass "kmsd never reported ready"; fi
expect_fail 1 "not reachable" kmsctl status

# The good copy again: kmsd starts, and the keys are there.
cp "$W/kmsd.db.good" "$DB"
kms_start_kmsd
check "chat/alice is back" kmsctl key show chat/alice

kms_finish
