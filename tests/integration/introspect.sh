#!/usr/bin/env bash
# kmsd on the bus as busctl sees it: the introspection lists every method of
# docs/dbus-api.md with its signature, raw calls work, a call with the wrong
# signature gets org.freedesktop.DBus.Error.InvalidArgs and an unknown method
# org.freedesktop.DBus.Error.UnknownMethod.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib/harness.sh"
kms_require busctl openssl

kms_harness_start
cd "$KMS_T"
DEST=(org.kmsd.KeyManager1 /org/kmsd/KeyManager1 org.kmsd.KeyManager1)

check "busctl introspect" kms_busctl introspect org.kmsd.KeyManager1 /org/kmsd/KeyManager1
cp "$KMS_OUT" introspect.txt

# name, in-signature, out-signature as docs/dbus-api.md documents them
# ("-" for none, as busctl prints it).
while read -r method in out; do
        line=$(awk -v m=".$method" '$1 == m && $2 == "method" { print; exit }' introspect.txt)
        if [[ -z "$line" ]]; then
                fail "introspection lacks method $method"
                continue
        fi
        read -r _ _ got_in got_out _ <<<"$line"
        if [[ "$got_in" == "$in" && "$got_out" == "$out" ]]; then
                pass "method $method($in) -> ($out)"
        else
                fail "method $method: expected in '$in' out '$out', introspection says '$got_in' '$got_out'"
        fi
done <<'EOF'
CreateKey ssa{sv} a{sv}
ListKeys a{sv} aa{sv}
DescribeKey s a{sv}
GetPublicKey su ayu
Sign saya{sv} ayu
SignDigest saya{sv} ayu
Verify sayaya{sv} bu
DestroyKey sa{sv} -
RotateKey sa{sv} u
RevokeKey sa{sv} u
ListRevoked a{sv} aa{sv}
DisableKey sa{sv} -
EnableKey sa{sv} -
CancelDestroy sa{sv} -
SetKeyOptions sa{sv} a{sv}
Derive saya{sv} ayu
Decrypt saya{sv} ayu
AttestKey saya{sv} ayayayayayu
OpenSession saysa{sv} sa{sv}
Seal saya{sv} ay
OpenEnvelope saya{sv} ay
CloseSession s -
ListSessions a{sv} aa{sv}
GetStatus - a{sv}
AuditCheckpoint - t
ExportAudit a{sv} aa{sv}t
GetAuditKeys - aay
GetPolicy - a{sv}aa{sv}
CheckPolicy sss bs
ReloadPolicy - u
EOF

# Every method kmsd dispatches (the slices of its table in daemon/api/*.c)
# is in the introspection with the signature kmsd checks, and nothing else
# is. (tests/unit/test-registry.c checks the assembled registry as well.)
src=$(dirname "${BASH_SOURCE[0]}")/../../daemon/api
table=$(cat "$src"/*.c | sed -n 's/^ *{ "\([A-Za-z]*\)", "\([^"]*\)", KMS_OP_[A-Z]*, KMS_SCOPE_\(KEY\|GLOBAL\|CREATE\|FILTER\|SESSION\|OWN_SESSION\).*/\1 \2/p' |
        sed 's/ $//' | sort)
listed=$(awk '$2 == "method" && $1 ~ /^\./ { print substr($1, 2), ($3 == "-" ? "" : $3) }' introspect.txt |
        grep -v -E '^(Introspect|Ping|GetMachineId|Get|GetAll|Set)( |$)' | sed 's/ $//' | sort)
if [[ -n "$table" && "$table" == "$listed" ]]; then
        pass "the introspection lists exactly the $(wc -l <<<"$table") methods of kmsd's table"
else
        fail "method table and introspection differ: $(diff <(echo "$table") <(echo "$listed") | tr '\n' ' ')"
fi

for sig in "KeyCreated su" "KeyRotated su" "KeyRevoked sus" "KeyDestroyed s"; do
        read -r name s <<<"$sig"
        if awk -v m=".$name" -v s="$s" '$1 == m && $2 == "signal" && $3 == s { f = 1 } END { exit !f }' introspect.txt; then
                pass "signal $name($s)"
        else
                fail "introspection lacks signal $name($s)"
        fi
done
if grep -q '^org.freedesktop.DBus.Introspectable' introspect.txt; then
        pass "org.freedesktop.DBus.Introspectable is listed"
else
        fail "org.freedesktop.DBus.Introspectable missing"
fi

# The XML kmsd serves is the checked-in file.
xml=$(dirname "${BASH_SOURCE[0]}")/../../packaging/dbus/org.kmsd.KeyManager1.xml
if [[ -f "$xml" ]]; then
        run kms_call org.freedesktop.DBus.Introspectable.Introspect ""
        served=$("$KMS_PYTHON" -c 'import json,sys; sys.stdout.write(json.loads(open(sys.argv[1]).read())[0])' "$KMS_OUT" 2>/dev/null || true)
        if [[ "$served" == "$(cat "$xml")" ]]; then
                pass "Introspect returns packaging/dbus/org.kmsd.KeyManager1.xml"
        else
                fail "Introspect reply differs from packaging/dbus/org.kmsd.KeyManager1.xml"
        fi
fi

# ---------------------------------------------------------------- raw calls
check "busctl CreateKey" kms_busctl call "${DEST[@]}" CreateKey 'ssa{sv}' chat/alice ec-p256 1 usages as 1 sign
if grep -q '"chat/alice"' "$KMS_OUT"; then pass "CreateKey reply names the key"; else fail "CreateKey reply: $(cat "$KMS_OUT")"; fi
check "busctl GetStatus" kms_busctl call "${DEST[@]}" GetStatus
if grep -q '"token_label" s "kmsd"' "$KMS_OUT"; then pass "GetStatus token_label kmsd"; else fail "GetStatus: $(cat "$KMS_OUT")"; fi
check "busctl ListKeys" kms_busctl call "${DEST[@]}" ListKeys 'a{sv}' 0
if grep -q '"chat/alice"' "$KMS_OUT"; then pass "ListKeys shows chat/alice"; else fail "ListKeys: $(cat "$KMS_OUT")"; fi
check "busctl DescribeKey" kms_busctl call "${DEST[@]}" DescribeKey s chat/alice

# GetPublicKey through busctl --json, turned into DER for openssl.
check "busctl GetPublicKey" kms_busctl --json=short call "${DEST[@]}" GetPublicKey su chat/alice 0
"$KMS_PYTHON" -c '
import json, sys
r = json.load(open(sys.argv[1]))
open(sys.argv[2], "wb").write(bytes(r["data"][0]))
print(r["data"][1])' "$KMS_OUT" alice.der >used_version 2>/dev/null || true
expect_eq "GetPublicKey used_version" "1" "$(cat used_version)"
check "openssl reads the SPKI from GetPublicKey" openssl pkey -pubin -inform DER -in alice.der -out alice.pem

# Sign "hello" (5 bytes) exactly as docs/dbus-api.md shows.
check "busctl Sign (raw)" kms_busctl --json=short call "${DEST[@]}" Sign 'saya{sv}' chat/alice 5 104 101 108 108 111 0
"$KMS_PYTHON" -c '
import json, sys
r = json.load(open(sys.argv[1]))
open(sys.argv[2], "wb").write(bytes(r["data"][0]))' "$KMS_OUT" hello.sig 2>/dev/null || true
printf hello >hello
run openssl dgst -sha256 -verify alice.pem -signature hello.sig hello
if ((KMS_RC == 0)); then pass "openssl verifies the raw Sign"; else fail "raw Sign signature does not verify: $(cat "$KMS_OUT" "$KMS_ERR")"; fi

# SignDigest of SHA-256("hello") with an explicit hash option.
digest=$(openssl dgst -sha256 -r hello | cut -d' ' -f1)
bytes=$(sed 's/../0x& /g' <<<"$digest")
# shellcheck disable=SC2086
check "busctl SignDigest" kms_busctl --json=short call "${DEST[@]}" SignDigest 'saya{sv}' chat/alice 32 $bytes 1 hash s sha256
"$KMS_PYTHON" -c '
import json, sys
r = json.load(open(sys.argv[1]))
open(sys.argv[2], "wb").write(bytes(r["data"][0]))' "$KMS_OUT" digest.sig 2>/dev/null || true
run openssl dgst -sha256 -verify alice.pem -signature digest.sig hello
if ((KMS_RC == 0)); then pass "openssl verifies SignDigest"; else fail "SignDigest signature does not verify"; fi

# Verify through the bus: true for the signature, false for another message.
sig_bytes=$(od -An -v -tu1 hello.sig | tr -s ' \n' ' ')
nsig=$(stat -c %s hello.sig)
# shellcheck disable=SC2086
check "busctl Verify" kms_busctl call "${DEST[@]}" Verify 'sayaya{sv}' chat/alice 5 104 101 108 108 111 "$nsig" $sig_bytes 0
expect_eq "Verify of a good signature" "bu true 1" "$(cat "$KMS_OUT")"
# shellcheck disable=SC2086
check "busctl Verify (other data)" kms_busctl call "${DEST[@]}" Verify 'sayaya{sv}' chat/alice 5 104 101 108 108 112 "$nsig" $sig_bytes 0
expect_eq "Verify of a bad signature" "bu false 1" "$(cat "$KMS_OUT")"

# ---------------------------------------------------------------- refusals
# Wrong signature: Sign with (s, s, a{sv}) instead of (s, ay, a{sv}).
run kms_busctl call "${DEST[@]}" Sign 'ssa{sv}' chat/alice hello 0
if ((KMS_RC != 0)); then pass "busctl Sign with signature ssa{sv} is refused: $(cat "$KMS_ERR")"; else fail "Sign with a wrong signature answered: $(cat "$KMS_OUT")"; fi
expect_fail 1 "org.freedesktop.DBus.Error.InvalidArgs" kms_call Sign 'ssa{sv}' '"chat/alice"' '"hello"' '{}'
expect_fail 1 "org.freedesktop.DBus.Error.InvalidArgs" kms_call Sign 'say' '"chat/alice"' '"68656c6c6f"'
expect_fail 1 "org.freedesktop.DBus.Error.InvalidArgs" kms_call Sign 'saya{sv}u' '"chat/alice"' '"68656c6c6f"' '{}' 7
expect_fail 1 "org.freedesktop.DBus.Error.InvalidArgs" kms_call GetStatus 's' '"x"'
expect_fail 1 "org.freedesktop.DBus.Error.InvalidArgs" kms_call DescribeKey '' 
expect_fail 1 "org.freedesktop.DBus.Error.InvalidArgs" kms_call CreateKey 'ssa{ss}' '"chat/x"' '"ec-p256"' '{"usages": "sign"}'
expect_fail 1 "org.freedesktop.DBus.Error.InvalidArgs" kms_call GetPublicKey 'ss' '"chat/alice"' '"0"'

# Unknown method, unknown interface member.
run kms_busctl call "${DEST[@]}" FrobnicateKey s chat/alice
if ((KMS_RC != 0)); then pass "busctl FrobnicateKey is refused: $(cat "$KMS_ERR")"; else fail "unknown method answered: $(cat "$KMS_OUT")"; fi
expect_fail 1 "org.freedesktop.DBus.Error.UnknownMethod" kms_call FrobnicateKey s '"chat/alice"'
expect_fail 1 "org.freedesktop.DBus.Error.Unknown(Method|Interface)" kms_call org.kmsd.KeyManager1.Nope.Sign 'saya{sv}' '"chat/alice"' '"00"' '{}'

# The daemon is still healthy and nothing was created by the refused calls.
check "status after refused calls" kmsctl status
expect_eq "still one key" "1" "$(kms_status_keys)"
check "busctl Ping" kms_busctl call org.kmsd.KeyManager1 /org/kmsd/KeyManager1 org.freedesktop.DBus.Peer Ping

kms_finish
