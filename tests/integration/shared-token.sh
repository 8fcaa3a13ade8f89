#!/usr/bin/env bash
# Two kmsd instances on one token (each with its own database and bus), as
# happens with a shared HSM or a database restored from an older backup.
# Start-up reconciliation must never destroy a kmsd-labelled object that it
# cannot prove is its own: the other instance's keys survive every restart
# of this one. An object this kmsd made but never recorded (a crash between
# the token and the store: its id is in the object journal) is still
# removed; one it did not make is reported and left alone.
# Referees: pkcs11-tool for the token's objects, openssl for signatures.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib/harness.sh"
kms_require openssl pkcs11-tool sqlite3

kms_harness_start
W=$KMS_T/work
mkdir -p "$W"
cd "$W"
printf 'two instances, one token\n' >msg

# Every object in the token as "TYPE<TAB>LABEL<TAB>ID".
p11_objects() {
        kms_p11tool --list-objects 2>/dev/null | awk '
                /Object;/ || /^Data object/ { if (n) print t "\t" l "\t" id; n = 1; t = $1; l = ""; id = ""; next }
                /^[ \t]*label:/ { l = $0; sub(/^[ \t]*label:[ \t]*/, "", l) }
                /^[ \t]*ID:/ { id = $0; sub(/^[ \t]*ID:[ \t]*/, "", id) }
                END { if (n) print t "\t" l "\t" id }'
}
p11_has_label() { p11_objects | awk -F'\t' -v l="$1" '$1 == "Private" && $2 == l { f = 1 } END { exit !f }'; }

# Instance B: its own folder, database, bus and kmsd, the same token (the
# tokens folder and the user PIN of instance A).
B=$KMS_T/b
start_b() {
        local t=$KMS_T dbus=$KMS_DBUS_PID kmsd=$KMS_KMSD_PID addr=$KMSD_BUS_ADDRESS
        KMS_T=$B
        if [[ ! -d "$B" ]]; then
                mkdir -m 700 "$B" "$B/state"
                ln -s "$t/tokens" "$B/tokens"
                cp "$t/pin" "$B/pin"
                kms__write_softhsm_conf
                kms_write_config
                kms__start_bus
                B_DBUS=$KMS_DBUS_PID
                B_ADDR=$KMSD_BUS_ADDRESS
        fi
        KMSD_BUS_ADDRESS=$B_ADDR
        kms_start_kmsd
        B_KMSD=$KMS_KMSD_PID
        KMS_T=$t KMS_DBUS_PID=$dbus KMS_KMSD_PID=$kmsd KMSD_BUS_ADDRESS=$addr
        export KMSD_BUS_ADDRESS
}
stop_b() {
        [[ -n "${B_KMSD:-}" ]] || return 0
        kms__stop_pid "$B_KMSD" "kmsd (b)" 20
        B_KMSD=""
        ((KMS_STOP_RC == 0)) || fail "kmsd (b) exited with status $KMS_STOP_RC after SIGTERM"
}
b() { KMSD_BUS_ADDRESS=$B_ADDR "$@"; }
cleanup_b() {
        stop_b
        [[ -z "${B_DBUS:-}" ]] || kms__stop_pid "$B_DBUS" "dbus-daemon (b)" 10
        B_DBUS=""
        if grep -Eq "$KMS_SANITIZER_RE" "$B/kmsd.log" 2>/dev/null; then
                fail "sanitizer report in the log of kmsd (b)"
        fi
}
trap 'rc=$?; cleanup_b; (exit $rc); kms__on_exit' EXIT

# signs NAME WHO...: the key signs through that instance and openssl
# verifies the signature with the public key that instance gives.
signs() {
        local name=$1
        shift
        "$@" kmsctl sign "$name" --in msg --out "$W/s.sig" >/dev/null 2>&1 &&
                "$@" kmsctl key public "$name" --out "$W/s.pem" >/dev/null 2>&1 &&
                openssl dgst -sha256 -verify "$W/s.pem" -signature "$W/s.sig" msg >/dev/null 2>&1
}

check "A: key create a/one" kmsctl key create a/one --algorithm ec-p256
start_b
check "B: key create b/one" b kmsctl key create b/one --algorithm ec-p256
if p11_has_label "kmsd:a/one#1" && p11_has_label "kmsd:b/one#1"; then
        pass "both instances' keys are in the one token"
else
        fail "token objects: $(p11_objects | tr '\n' ' ')"
fi

# Each restart reconciles the token against that instance's database,
# which does not know the other's key.
for round in 1 2; do
        kms_restart_kmsd
        if p11_has_label "kmsd:b/one#1"; then
                pass "round $round: A's restart left B's key in the token"
        else
                fail "round $round: A's restart destroyed B's key"
        fi
        if signs b/one b; then pass "round $round: B's key still signs"; else fail "round $round: B's key no longer signs"; fi
        stop_b
        start_b
        if p11_has_label "kmsd:a/one#1"; then
                pass "round $round: B's restart left A's key in the token"
        else
                fail "round $round: B's restart destroyed A's key"
        fi
        if signs a/one; then pass "round $round: A's key still signs"; else fail "round $round: A's key no longer signs"; fi
done
if grep -q "this kmsd did not make it" "$KMS_T/kmsd.log"; then
        pass "A's log reports B's object as not its own"
else
        fail "A's log does not report B's object"
fi

# An object A made but never recorded: a/two's metadata is removed by
# hand, as a crash between the token and the store would leave it, and
# its id is put back in A's object journal (where kmsd puts it before the
# object exists). A's next start removes it; B's key stays.
check "A: key create a/two" kmsctl key create a/two --algorithm ec-p256
kms_stop_kmsd
db=$KMS_T/state/kmsd.db
id=$(sqlite3 "$db" "SELECT hex(v.backend_id) FROM key_versions v JOIN keys k ON k.id = v.key_id WHERE k.name = 'a/two'")
if [[ -n "$id" ]]; then
        sqlite3 "$db" "INSERT INTO object_journal (backend_id, backend, label, created) VALUES (x'$id', 'pkcs11', 'kmsd:a/two#1', 0);
                DELETE FROM key_versions WHERE key_id = (SELECT id FROM keys WHERE name = 'a/two');
                DELETE FROM keys WHERE name = 'a/two';"
        pass "a/two's metadata removed, its id ($id) in the object journal"
else
        fail "no backend_id for a/two in kmsd.db"
fi
kms_start_kmsd
if p11_has_label "kmsd:a/two#1"; then
        fail "A did not remove its own unrecorded object kmsd:a/two#1"
else
        pass "A removed its own unrecorded object (it was in the journal)"
fi
if p11_has_label "kmsd:b/one#1" && signs b/one b; then
        pass "B's key survived that start as well"
else
        fail "B's key is gone after A removed its own orphan"
fi
left=$(sqlite3 "$db" "SELECT COUNT(*) FROM object_journal")
expect_eq "A's object journal is empty after reconciliation" 0 "$left"

cleanup_b
kms_finish
