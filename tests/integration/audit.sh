#!/usr/bin/env bash
# The tamper-evident audit log (docs/audit.md) end to end:
#   records     every kind of request and security event leaves the record
#               docs/audit.md describes, checked field by field in an
#               export: allowed, denied (as nobody, through setpriv),
#               NotFound, a bad peer key, replay, integrity, a foreign
#               session id, revocation, a scheduled rotation
#   verify      kmsctl audit verify and tests/lib/audit_verify.py (written
#               from the spec alone, python3-cryptography) pass an untouched
#               export and name each kind of damage: a field changed, a
#               record deleted, one inserted, two swapped, the last
#               checkpoint removed or forged (another message's signature,
#               a chain rebuilt and re-signed with another key)
#   exports     --key, --until (stubs) and --since exports verify; a stub
#               binds the record before it (altering that record shows);
#               CSV
#   openssl     the export's last checkpoint verifies with plain openssl,
#               as docs/audit.md shows (prev || body, ECDSA-SHA256)
#   secrets     no PIN, derived secret or plaintext in an export or kmsd's log
#   tail        tail -n, tail -f (new records appear; SIGINT ends it with 0)
#   failure     the state folder on a small tmpfs, filled up: signing is
#               refused with AuditFailure and logged, and works again once
#               there is room; with [audit] failure = open it goes on
#               (needs root for mount; CI runs as root)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib/harness.sh"
kms_require openssl setpriv mount umount dd od basenc
if ! "$KMS_PYTHON" -c 'from cryptography.hazmat.primitives.asymmetric import ec' 2>/dev/null; then
        echo "SKIP: $KMS_TEST_NAME needs python3-cryptography (scripts/deps installs it)"
        exit 77
fi

# Clients as nobody need to reach the bus socket.
export KMS_BUS_ALLOW_ALL_USERS=1
kms_harness_start
W=$KMS_T/work
mkdir -m 777 "$W"
cd "$W"
AV=$KMS_LIB_DIR/audit_verify.py
NOBODY_UID=$(id -u nobody)

# find_record FILE PYEXPR: the last record r of the export FILE for which
# PYEXPR holds, as JSON in $W/rec.json; fails when there is none.
find_record() {
        "$KMS_PYTHON" - "$1" "$2" >"$W/rec.json" <<'PY'
import json, sys
found = None
for line in open(sys.argv[1], encoding="utf-8"):
    r = json.loads(line)
    if not r.get("redacted") and eval(sys.argv[2]):
        found = r
if found is None:
    sys.exit(1)
print(json.dumps(found))
PY
}

# expect_record DESC FILE PYEXPR FIELD=VALUE...: there is a record for
# PYEXPR, and each FIELD has VALUE (FIELD~REGEX: matches the extended
# regular expression). Also checks the shape every record has.
expect_record() {
        local desc=$1 file=$2 expr=$3 kv f v got bad=""
        shift 3
        if ! find_record "$file" "$expr"; then
                fail "$desc: no record in $file where $expr"
                return 0
        fi
        for kv in "$@"; do
                if [[ "$kv" == *"~"* && "${kv%%~*}" != *"="* ]]; then
                        f=${kv%%~*} v=${kv#*~}
                        got=$(kms_json "$W/rec.json" "d[\"$f\"]")
                        [[ "$got" =~ $v ]] || bad+=" $f='$got' (expected ~ /$v/)"
                else
                        f=${kv%%=*} v=${kv#*=}
                        got=$(kms_json "$W/rec.json" "d[\"$f\"]")
                        [[ "$got" == "$v" ]] || bad+=" $f='$got' (expected '$v')"
                fi
        done
        got=$(kms_json "$W/rec.json" 'd["time"]')
        [[ "$got" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$ ]] || bad+=" time='$got'"
        got=$(kms_json "$W/rec.json" 'd["prev"]')
        [[ "$got" =~ ^[0-9a-f]{64}$ ]] || bad+=" prev='$got'"
        if [[ -n "$bad" ]]; then
                fail "$desc:$bad in $(head -c 600 "$W/rec.json")"
        else
                pass "$desc: $(head -c 400 "$W/rec.json")"
        fi
}

# verify_both DESC FILE EXIT MESSAGE [PUBKEY]: kmsctl audit verify and
# audit_verify.py both exit EXIT and print exactly MESSAGE.
verify_both() {
        local desc=$1 file=$2 code=$3 msg=$4 pub=${5-audit.pem} opts=() name
        [[ -z "$pub" ]] || opts=(--pubkey "$pub")
        for name in kmsctl python; do
                if [[ $name == kmsctl ]]; then
                        run kmsctl audit verify "$file" "${opts[@]}"
                else
                        run "$KMS_PYTHON" "$AV" "$file" "${opts[@]}"
                fi
                if ((KMS_RC != code)); then
                        fail "$desc ($name): exit $KMS_RC, expected $code: $(head -c 400 "$KMS_OUT") $(head -c 400 "$KMS_ERR")"
                elif [[ "$(cat "$KMS_OUT")" != "$msg" ]]; then
                        fail "$desc ($name): printed '$(head -c 400 "$KMS_OUT")', expected '$msg'"
                else
                        pass "$desc ($name): $msg"
                fi
        done
}

# tamper OP IN OUT ARGS...: a damaged copy of an export (see the ops below).
tamper() {
        "$KMS_PYTHON" - "$AV" "$@" <<'PY'
import hashlib, json, sys
sys.path.insert(0, __import__("os").path.dirname(sys.argv[1]))
import audit_verify as av
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

op, src, dst, args = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
lines = av.read_lines(src)
recs = [json.loads(l) for l in lines]
dump = lambda r: json.dumps(r, separators=(",", ":"), ensure_ascii=False).encode()

if op == "alter":  # alter LINE FIELD VALUE: one field changed (a stub's too)
    i, f, v = int(args[0]) - 1, args[1], args[2]
    recs[i][f] = type(recs[i][f])(v)
    lines[i] = dump(recs[i])
elif op == "delete":  # delete LINE
    del lines[int(args[0]) - 1]
elif op == "insert":  # insert LINE: a made-up record with the next seq and a right prev after LINE
    i = int(args[0]) - 1
    r = dict(recs[i + 1])
    r.pop("signature", None)
    r.update(kind="request", operation="Sign", key="made/up", result="ok", details="hash=sha256")
    r["prev"] = av.record_hash(recs[i])
    lines.insert(i + 1, dump(r))
elif op == "swap":  # swap LINE: LINE and the one after it
    i = int(args[0]) - 1
    lines[i], lines[i + 1] = lines[i + 1], lines[i]
elif op == "drop-last":  # the last line (the export's checkpoint) removed
    lines.pop()
elif op == "steal-signature":  # the last checkpoint gets an earlier checkpoint's signature
    cps = [i for i, r in enumerate(recs) if r.get("kind") == "checkpoint"]
    recs[cps[-1]]["signature"] = recs[cps[-2]]["signature"]
    lines[cps[-1]] = dump(recs[cps[-1]])
elif op == "resign":  # resign LINE KEY [own]: LINE's details rewritten, the chain rebuilt, every
    # checkpoint after LINE re-signed with KEY (own: its details name KEY's fingerprint)
    i = int(args[0]) - 1
    key = serialization.load_pem_private_key(open(args[1], "rb").read(), None)
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    recs[i]["details"] = "rewritten"
    for j in range(i + 1, len(recs)):
        r = recs[j]
        r["prev"] = av.record_hash(recs[j - 1])  # records and stubs alike
        if r.get("kind") == "checkpoint":
            if len(args) > 2 and args[2] == "own":
                r["details"] = "records=%d key=%s" % (r["seq"], hashlib.sha256(der).hexdigest())
            r["signature"] = key.sign(av.signed_message(r), ec.ECDSA(hashes.SHA256())).hex()
    lines = [dump(r) for r in recs]
else:
    sys.exit("unknown tamper op " + op)
open(dst, "wb").write(b"".join(l + b"\n" for l in lines))
PY
}

# line_of FILE PYEXPR: the line number of the first record for PYEXPR.
line_of() {
        "$KMS_PYTHON" - "$1" "$2" <<'PY'
import json, sys
for n, line in enumerate(open(sys.argv[1], encoding="utf-8"), 1):
    r = json.loads(line)
    if not r.get("redacted") and eval(sys.argv[2]):
        print(n)
        break
else:
    sys.exit(1)
PY
}

# ================================================================ one record per request
check "kmsctl audit pubkey" kmsctl audit pubkey --out audit.pem
check "the audit key is an EC P-256 public key" sh -c "openssl pkey -pubin -in audit.pem -noout -text | grep -q 'P-256'"
AUDIT_FP=$(openssl pkey -pubin -in audit.pem -outform DER | openssl dgst -sha256 -binary | hex)

printf 'a message to sign\n' >msg
chmod 644 msg
check "key create audit/alice (sign, derive)" kmsctl key create audit/alice --algorithm ec-p256 --usage sign,derive
check "sign with audit/alice" kmsctl sign audit/alice --in msg --out alice.sig
check "verify with audit/alice" kmsctl verify audit/alice --in msg --sig alice.sig
check "key public audit/alice" kmsctl key public audit/alice --out alice.pub.pem
chmod 644 alice.sig alice.pub.pem
expect_fail 3 "AccessDenied" as_nobody sign audit/alice --in msg --out nobody.sig
expect_fail 4 "NotFound" kmsctl key show audit/no-such-key

# Derive: a good peer (its secret must never reach a record) and a point
# off the curve (peer_key_invalid).
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out peer.pem 2>/dev/null
openssl pkey -in peer.pem -pubout -out peer.pub.pem
openssl pkey -in peer.pem -pubout -outform DER -out peer.spki
check "derive with audit/alice" kmsctl derive audit/alice --peer peer.pub.pem --out derived.bin
DERIVED_HEX=$(hex <derived.bin)
expect_eq "the derived secret is 32 bytes" 64 "${#DERIVED_HEX}"
flip peer.spki -1 bad-point.der
ERR=org.kmsd.KeyManager1.Error
expect_fail 1 "$ERR.InvalidArgument" kms_call Derive 'saya{sv}' '"audit/alice"' "\"$(hex <bad-point.der)\"" '{}'

# A session between two kmsd keys: replay, a flipped bit, a foreign id.
check "key create audit/bob (derive)" kmsctl key create audit/bob --algorithm ec-p256 --usage derive
check "bob's public key" kmsctl key public audit/bob --out bob.pub.pem
run kmsctl session open audit/alice --peer bob.pub.pem --role initiator --context audit-1
((KMS_RC == 0)) || die "session open (alice) failed: $(cat "$KMS_ERR")"
SA=$(cat "$KMS_OUT")
run kmsctl session open audit/bob --peer alice.pub.pem --role responder --context audit-1
((KMS_RC == 0)) || die "session open (bob) failed: $(cat "$KMS_ERR")"
SB=$(cat "$KMS_OUT")
PLAINTEXT="the plaintext $(od -An -N12 -tx1 /dev/urandom | tr -d ' \n') of a session"
printf '%s' "$PLAINTEXT" >secret-msg
chmod 644 secret-msg
check "alice seals" kmsctl session seal "$SA" --in secret-msg --out e1
check "bob opens" kmsctl session open-envelope "$SB" --in e1 --out p1
check "bob reads the plaintext" cmp secret-msg p1
expect_fail 1 "Replay" kmsctl session open-envelope "$SB" --in e1 --out p-replay
check "alice seals again" kmsctl session seal "$SA" --in secret-msg --out e2
flip e2 20 e2-flipped
expect_fail 1 "IntegrityFailure" kmsctl session open-envelope "$SB" --in e2-flipped --out p-flip
chmod 644 e1
expect_fail 3 "AccessDenied" as_nobody session seal "$SA" --in secret-msg --out nobody-e

check "key revoke audit/bob" kmsctl key revoke audit/bob --reason compromised --note "audit test"
check "key create audit/rot --rotate-every 2s" kmsctl key create audit/rot --algorithm ec-p256 --rotate-every 2s
for ((i = 0; i < 50; i++)); do
        run kmsctl key show audit/rot --json
        (($(kms_json "$KMS_OUT" 'd["primary_version"]' 2>/dev/null || echo 1) >= 2)) && break
        sleep 0.2
done
expect_eq "kmsd rotated audit/rot by itself" 2 "$(kms_json "$KMS_OUT" 'd["primary_version"]' 2>&1)"

check "audit export" kmsctl audit export --out all.jsonl
grep -Eq '^exported [0-9]+ records \(0 stubs\) to all\.jsonl, ending with checkpoint seq [0-9]+$' "$KMS_ERR" &&
        pass "export summary: $(cat "$KMS_ERR")" || fail "export summary: $(cat "$KMS_ERR")"
LAST_SEQ=$(sed -n 's/.*ending with checkpoint seq \([0-9]*\)$/\1/p' "$KMS_ERR")
expect_eq "the export file is private" 600 "$(stat -c %a all.jsonl)"
expect_eq "the export's lines are seq 1..N" "True" "$("$KMS_PYTHON" -c '
import json, sys
seqs = [json.loads(l)["seq"] for l in open(sys.argv[1])]
print(seqs == list(range(1, int(sys.argv[2]) + 1)))' all.jsonl "${LAST_SEQ:-0}")"

K=$KMSCTL_BIN
expect_record "CreateKey" all.jsonl 'r["operation"] == "CreateKey" and r["key"] == "audit/alice"' \
        kind=request uid=0 "exe=$K" result=ok 'version~^[01]$' 'pid~^[1-9][0-9]*$'
expect_record "Sign" all.jsonl 'r["operation"] == "Sign" and r["key"] == "audit/alice" and r["result"] == "ok"' \
        kind=request uid=0 "exe=$K" version=1 'details~sha256'
expect_record "Verify" all.jsonl 'r["operation"] == "Verify" and r["key"] == "audit/alice"' \
        kind=request uid=0 "exe=$K" version=1 result=ok
expect_record "GetPublicKey" all.jsonl 'r["operation"] == "GetPublicKey" and r["key"] == "audit/alice"' \
        kind=request uid=0 "exe=$K" result=ok
expect_record "a policy denial" all.jsonl 'r["operation"] == "Sign" and r["uid"] == '"$NOBODY_UID" \
        kind=policy_denied result=denied "exe=$K" key=audit/alice 'details~no rule matched'
expect_record "NotFound" all.jsonl 'r["key"] == "audit/no-such-key"' \
        kind=request operation=DescribeKey result=NotFound uid=0 "exe=$K"
expect_record "Derive" all.jsonl 'r["operation"] == "Derive" and r["result"] == "ok"' \
        kind=request key=audit/alice version=1 uid=0 "exe=$K"
expect_record "a bad peer key" all.jsonl 'r["operation"] == "Derive" and r["result"] != "ok"' \
        kind=peer_key_invalid key=audit/alice result=InvalidArgument uid=0
expect_record "OpenSession" all.jsonl 'r["operation"] == "OpenSession" and r["key"] == "audit/alice"' \
        kind=request result=ok uid=0 "exe=$K"
expect_record "a replayed envelope" all.jsonl 'r["operation"] == "OpenEnvelope" and r["result"] == "Replay"' \
        kind=replay key=audit/bob uid=0 "exe=$K"
expect_record "a flipped bit" all.jsonl 'r["operation"] == "OpenEnvelope" and r["result"] == "IntegrityFailure"' \
        kind=integrity key=audit/bob uid=0 "exe=$K"
expect_record "a foreign session id" all.jsonl 'r["operation"] == "Seal" and r["uid"] == '"$NOBODY_UID" \
        kind=session_foreign result=denied "exe=$K" "details~$SA"
expect_record "RevokeKey" all.jsonl 'r["operation"] == "RevokeKey" and r["key"] == "audit/bob"' \
        kind=request result=ok uid=0 "exe=$K"
expect_record "the revocation event" all.jsonl 'r["kind"] == "revocation" and r["key"] == "audit/bob"' \
        version=1 'details~compromised'
expect_record "a scheduled rotation" all.jsonl 'r["kind"] == "scheduled" and r["key"] == "audit/rot"' \
        operation=ScheduledRotate result=ok "exe~^(|.*kmsd)$"
expect_record "the export's checkpoint" all.jsonl 'r["seq"] == '"${LAST_SEQ:-0}" \
        kind=checkpoint operation=Checkpoint "details=records=$LAST_SEQ key=$AUDIT_FP" 'signature~^[0-9a-f]+$'

# ================================================================ verify
verify_both "an untouched export" all.jsonl 0 "$LAST_SEQ records, chain intact, $(grep -c '"kind":"checkpoint"' all.jsonl) checkpoints verified"
verify_both "without --pubkey" all.jsonl 0 "$LAST_SEQ records, chain intact, $(grep -c '"kind":"checkpoint"' all.jsonl) checkpoints not checked (no --pubkey)" ""
check "audit pubkey --all" kmsctl audit pubkey --all --out all-keys.pem
verify_both "with every audit key" all.jsonl 0 "$LAST_SEQ records, chain intact, $(grep -c '"kind":"checkpoint"' all.jsonl) checkpoints verified" all-keys.pem

# The export's last checkpoint with plain openssl, as docs/audit.md
# ("Checkpoints") shows: body = SHA-256 of the canonical form (built here
# with printf; python only reads the JSON), the signature is ECDSA-SHA256
# over the 64 bytes prev || body. Hex to bytes with coreutils' basenc.
tail -n 1 all.jsonl >cp.json
cpf() { kms_json cp.json "d[\"$1\"]"; }
for f in kind exe operation key result details; do
        [[ "$(cpf "$f")" != *[\\[:cntrl:]]* ]] || die "the checkpoint's $f needs canonical escaping: $(cat cp.json)"
done
printf 'kmsd-audit-v1\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s' "$(cpf seq)" "$(cpf time)" "$(cpf kind)" \
        "$(cpf uid)" "$(cpf pid)" "$(cpf exe)" "$(cpf operation)" "$(cpf key)" "$(cpf version)" "$(cpf result)" \
        "$(cpf details)" >cp.canonical
PREV=$(cpf prev)
BODY=$(openssl dgst -sha256 -binary cp.canonical | hex)
SIGNATURE=$(cpf signature)
expect_eq "the last checkpoint is the export's" "checkpoint $LAST_SEQ" "$(cpf kind) $(cpf seq)"
printf '%s%s' "$PREV" "$BODY" | tr a-f A-F | basenc --base16 -d >msg.bin
printf '%s' "$SIGNATURE" | tr a-f A-F | basenc --base16 -d >sig.der
expect_eq "prev || body is 64 bytes" 64 "$(stat -c %s msg.bin)"
run openssl dgst -sha256 -verify audit.pem -signature sig.der msg.bin
[[ $KMS_RC == 0 && "$(cat "$KMS_OUT")" == "Verified OK" ]] &&
        pass "openssl verifies checkpoint seq $LAST_SEQ over prev || body: Verified OK" ||
        fail "openssl dgst -verify of checkpoint seq $LAST_SEQ: exit $KMS_RC: $(cat "$KMS_OUT" "$KMS_ERR")"
flip msg.bin 40 msg-flipped.bin
run openssl dgst -sha256 -verify audit.pem -signature sig.der msg-flipped.bin
[[ $KMS_RC != 0 ]] && grep -q "Verification failure" "$KMS_OUT" "$KMS_ERR" &&
        pass "openssl refuses a body with one bit flipped: Verification failure" ||
        fail "openssl with a flipped body: exit $KMS_RC: $(cat "$KMS_OUT" "$KMS_ERR")"

# A line in the middle that is an ordinary request, and the next one.
N=$(line_of all.jsonl 'r["operation"] == "Verify"')
tamper alter all.jsonl altered.jsonl "$N" result denied
verify_both "one field changed" altered.jsonl 1 \
        "record seq $N (line $N): altered — its hash does not match the prev of seq $((N + 1))"
tamper alter all.jsonl altered-uid.jsonl "$N" uid 4242
verify_both "a uid changed" altered-uid.jsonl 1 \
        "record seq $N (line $N): altered — its hash does not match the prev of seq $((N + 1))"
tamper delete all.jsonl deleted.jsonl "$N"
verify_both "one record deleted" deleted.jsonl 1 "record seq $N missing after line $((N - 1)): deleted"
sed "$((N)),$((N + 2))d" all.jsonl >deleted3.jsonl
verify_both "three records deleted" deleted3.jsonl 1 "records seq $N..$((N + 2)) missing after line $((N - 1)): deleted"
tamper insert all.jsonl inserted.jsonl "$N"
verify_both "one record inserted" inserted.jsonl 1 "line $((N + 2)): seq $((N + 1)) again: inserted"
sed "${N}p" all.jsonl >duplicated.jsonl
verify_both "one record repeated" duplicated.jsonl 1 "line $((N + 1)): seq $N again: inserted"
tamper swap all.jsonl swapped.jsonl "$N"
verify_both "two records swapped" swapped.jsonl 1 "line $((N + 1)): seq $N after seq $((N + 1)): reordered"
tamper drop-last all.jsonl truncated.jsonl
verify_both "the last checkpoint removed" truncated.jsonl 1 \
        "the export does not end with a signed checkpoint: truncated, or its last checkpoint removed"
head -n "$N" all.jsonl >cut.jsonl
verify_both "an export cut short" cut.jsonl 1 \
        "the export does not end with a signed checkpoint: truncated, or its last checkpoint removed"
verify_both "truncation without --pubkey" cut.jsonl 1 \
        "the export does not end with a signed checkpoint: truncated, or its last checkpoint removed" ""

# Forgeries need two checkpoints: the export's and one before it.
check "a checkpoint now (AuditCheckpoint)" kms_call AuditCheckpoint ""
check "a second export" kmsctl audit export --out two.jsonl
L2=$(wc -l <two.jsonl)

# What the file alone cannot show, checked against seqs kept apart from
# it (--first-seq, --last-seq: kmsctl only, the python referee has no
# such options). two.jsonl ends with checkpoint L2 and holds the earlier
# checkpoint LAST_SEQ.
# verify_seq DESC FILE CODE MESSAGE OPTIONS...
verify_seq() {
        local desc=$1 file=$2 code=$3 msg=$4
        shift 4
        run kmsctl audit verify "$file" --pubkey audit.pem "$@"
        if ((KMS_RC == code)) && [[ "$(cat "$KMS_OUT")" == "$msg" ]]; then
                pass "$desc: $msg"
        else
                fail "$desc: exit $KMS_RC (expected $code), printed '$(head -c 400 "$KMS_OUT")' '$(head -c 300 "$KMS_ERR")'"
        fi
}
TWO_OK="$L2 records, chain intact, $(grep -c '"kind":"checkpoint"' two.jsonl) checkpoints verified"
verify_seq "the whole export, --first-seq 1 --last-seq L2" two.jsonl 0 "$TWO_OK" --first-seq 1 --last-seq "$L2"
verify_seq "a later checkpoint than --last-seq is fine" two.jsonl 0 "$TWO_OK" --last-seq "$LAST_SEQ"
head -n "$LAST_SEQ" two.jsonl >cutback.jsonl
verify_both "cut back to the earlier checkpoint: the file alone verifies" cutback.jsonl 0 \
        "$LAST_SEQ records, chain intact, $(grep -c '"kind":"checkpoint"' cutback.jsonl) checkpoints verified"
verify_seq "cut back to the earlier checkpoint, --last-seq L2" cutback.jsonl 1 \
        "the export ends with checkpoint seq $LAST_SEQ, before seq $L2 (--last-seq): records after it are missing, cut back to an earlier checkpoint" \
        --last-seq "$L2"
tail -n +5 two.jsonl >front.jsonl
verify_both "cut at the front: the file alone verifies" front.jsonl 0 \
        "$((L2 - 4)) records, chain intact, $(grep -c '"kind":"checkpoint"' front.jsonl) checkpoints verified"
verify_seq "cut at the front, --first-seq 1" front.jsonl 1 \
        "the export starts at seq 5, not at seq 1 (--first-seq): records before it are missing, cut at the front" \
        --first-seq 1
verify_seq "--first-seq 5 for an export that starts there" front.jsonl 0 \
        "$((L2 - 4)) records, chain intact, $(grep -c '"kind":"checkpoint"' front.jsonl) checkpoints verified" --first-seq 5
expect_fail 2 "not a seq" kmsctl audit verify two.jsonl --first-seq 0
expect_fail 2 "not a seq" kmsctl audit verify two.jsonl --last-seq x

tamper steal-signature two.jsonl stolen.jsonl
verify_both "the last checkpoint with another checkpoint's signature" stolen.jsonl 1 \
        "checkpoint seq $L2 (line $L2): signature does not verify: forged"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out mallory.pem 2>/dev/null
openssl pkey -in mallory.pem -pubout -out mallory.pub.pem
MALLORY_FP=$(openssl pkey -pubin -in mallory.pub.pem -outform DER | openssl dgst -sha256 -binary | hex)
# The first checkpoint after line N is where a rewritten line N shows.
C=$(line_of two.jsonl 'r["kind"] == "checkpoint" and r["seq"] > '"$N")
tamper resign two.jsonl resigned.jsonl "$N" mallory.pem
verify_both "a record rewritten, the chain rebuilt, re-signed with another key" resigned.jsonl 1 \
        "checkpoint seq $C (line $C): signature does not verify: forged"
tamper resign two.jsonl resigned-own.jsonl "$N" mallory.pem own
verify_both "... and the checkpoints naming that key" resigned-own.jsonl 1 \
        "checkpoint seq $C (line $C): signed by key $MALLORY_FP, which is none of the given public keys: forged"
# Verify trusts the keys it is given: the forgery passes with mallory's
# key, and the real export does not. The audit key is what vouches.
verify_both "the forgery with mallory's key as --pubkey" resigned-own.jsonl 0 \
        "$L2 records, chain intact, $(grep -c '"kind":"checkpoint"' resigned-own.jsonl) checkpoints verified" mallory.pub.pem
# Without the audit key a rebuilt chain cannot be told from the real one:
# that is why verify says so.
verify_both "a rebuilt chain without --pubkey" resigned.jsonl 0 \
        "$L2 records, chain intact, $(grep -c '"kind":"checkpoint"' resigned.jsonl) checkpoints not checked (no --pubkey)" ""
run kmsctl audit verify resigned.jsonl
grep -q "without --pubkey only the chain was checked" "$KMS_ERR" &&
        pass "kmsctl says that only the chain was checked" || fail "no warning without --pubkey: $(cat "$KMS_ERR")"
verify_both "mallory's key does not vouch for the real export" two.jsonl 1 \
        "checkpoint seq $(line_of two.jsonl 'r["kind"] == "checkpoint"') (line $(line_of two.jsonl 'r["kind"] == "checkpoint"')): signed by key $AUDIT_FP, which is none of the given public keys: forged" mallory.pub.pem

# Not an export at all, and usage.
printf '{"seq":1,"time":"x"}\n' >junk.jsonl
expect_fail 1 "" kmsctl audit verify junk.jsonl --pubkey audit.pem
grep -q "line 1: .*not an audit record" "$KMS_OUT" && pass "junk: $(cat "$KMS_OUT")" || fail "junk: $(cat "$KMS_OUT")"
: >empty.jsonl
expect_fail 1 "" kmsctl audit verify empty.jsonl --pubkey audit.pem
expect_fail 2 "cannot open" kmsctl audit verify no-such.jsonl --pubkey audit.pem
expect_fail 2 "no public key" kmsctl audit verify all.jsonl --pubkey msg
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 2>/dev/null | openssl pkey -pubout -out p384.pem
expect_fail 2 "not EC P-256" kmsctl audit verify all.jsonl --pubkey p384.pem
expect_fail 2 "missing argument" kmsctl audit verify

# ================================================================ partial exports
check "export --key audit/alice" kmsctl audit export --key audit/alice --out alice.jsonl
grep -Eq '^exported [0-9]+ records \([1-9][0-9]* stubs\)' "$KMS_ERR" && pass "--key: $(cat "$KMS_ERR")" ||
        fail "--key export has no stubs: $(cat "$KMS_ERR")"
ALICE_LINES=$(wc -l <alice.jsonl)
ALICE_STUBS=$(grep -c '"redacted":true' alice.jsonl)
expect_eq "only audit/alice's records and checkpoints are shown" "" \
        "$("$KMS_PYTHON" -c '
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    if not r.get("redacted") and r["key"] != "audit/alice" and r["kind"] != "checkpoint":
        print(r["seq"], r["key"])' alice.jsonl)"
run "$KMS_PYTHON" -c 'import json,sys; l=open(sys.argv[1]).readline(); print(l.strip())' alice.jsonl
grep -Eq '^\{"seq":1,"redacted":true,"prev":"0{64}","body":"[0-9a-f]{64}"\}$' "$KMS_OUT" &&
        pass "a stub is {seq, redacted, prev, body} (seq 1: prev 64 zeros): $(cat "$KMS_OUT")" ||
        fail "first line of the --key export: $(cat "$KMS_OUT")"
# A stub's prev and body are those of the full export's record: its hash
# SHA-256(prev || body) is the prev of the next line there.
expect_eq "the stubs' prev and body match the full export" "ok" "$("$KMS_PYTHON" - "$AV" alice.jsonl all.jsonl <<'PY'
import json, os, sys
sys.path.insert(0, os.path.dirname(sys.argv[1]))
import audit_verify as av
alice = [json.loads(l) for l in open(sys.argv[2])]
full = {r["seq"]: r for r in map(json.loads, open(sys.argv[3]))}
bad = [r["seq"] for r in alice if r.get("redacted") and r["seq"] in full and
       (r["prev"] != full[r["seq"]]["prev"] or r["body"] != av.body(full[r["seq"]]) or
        (r["seq"] + 1 in full and av.record_hash(r) != full[r["seq"] + 1]["prev"]))]
print("bad seq %s" % bad[:5] if bad else "ok")
PY
)"
verify_both "the --key export verifies" alice.jsonl 0 \
        "$ALICE_LINES records ($ALICE_STUBS stubs), chain intact, $(grep -c '"kind":"checkpoint"' alice.jsonl) checkpoints verified"
N=$(line_of alice.jsonl 'r["operation"] == "Sign" and r["key"] == "audit/alice" and r["uid"] == 0')
N2=$(line_of alice.jsonl 'r["kind"] == "checkpoint"')
tamper delete alice.jsonl alice-deleted.jsonl "$N2"
verify_both "a --key export missing a checkpoint" alice-deleted.jsonl 1 "record seq $N2 missing after line $((N2 - 1)): deleted"
# The record right before a stub is bound by the stub's prev: altering it
# shows (under the old rule, hash over a canonical form holding prev, such
# a record was not bound at all).
B=$("$KMS_PYTHON" -c '
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
print(next(i + 1 for i in range(len(rs) - 1)
           if not rs[i].get("redacted") and rs[i]["kind"] != "checkpoint" and rs[i + 1].get("redacted")))' alice.jsonl) ||
        die "no record directly before a stub in alice.jsonl"
BSEQ=$(sed -n "${B}p" alice.jsonl | "$KMS_PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["seq"])')
tamper alter alice.jsonl alice-altered.jsonl "$B" details "rewritten"
verify_both "the record right before a stub altered" alice-altered.jsonl 1 \
        "record seq $BSEQ (line $B): altered — its hash does not match the prev of seq $((BSEQ + 1))"
tamper alter alice.jsonl alice-stub-body.jsonl "$((B + 1))" body "$(printf '%064d' 0)"
verify_both "a stub's body changed" alice-stub-body.jsonl 1 \
        "record seq $((BSEQ + 1)) (line $((B + 1))): altered — its hash does not match the prev of seq $((BSEQ + 2))"

# --until: the time of a record in the middle; everything after becomes a stub.
find_record all.jsonl 'r["operation"] == "Verify"' || die "no Verify record in all.jsonl"
UNTIL=$(kms_json "$W/rec.json" 'd["time"]')
check "export --until $UNTIL" kmsctl audit export --until "$UNTIL" --out until.jsonl
expect_eq "no record after --until is shown (checkpoints aside)" "" \
        "$("$KMS_PYTHON" -c '
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    if not r.get("redacted") and r["time"] > sys.argv[2] and r["kind"] != "checkpoint":
        print(r["seq"], r["time"])' until.jsonl "$UNTIL")"
verify_both "the --until export verifies" until.jsonl 0 \
        "$(wc -l <until.jsonl) records ($(grep -c '"redacted":true' until.jsonl) stubs), chain intact, $(grep -c '"kind":"checkpoint"' until.jsonl) checkpoints verified"

# --since: starts at the first record at or after TIME; the date form and
# Unix seconds are accepted too.
SINCE=$UNTIL
check "export --since $SINCE" kmsctl audit export --since "$SINCE" --out since.jsonl
FIRST=$("$KMS_PYTHON" -c 'import json,sys; r=json.loads(open(sys.argv[1]).readline()); print(r["time"] >= sys.argv[2], r["seq"] > 1)' since.jsonl "$SINCE")
expect_eq "the --since export starts at or after TIME, not at seq 1" "True True" "$FIRST"
verify_both "the --since export verifies" since.jsonl 0 \
        "$(wc -l <since.jsonl) records, chain intact, $(grep -c '"kind":"checkpoint"' since.jsonl) checkpoints verified"
check "export --since a date" kmsctl audit export --since "$(date -u +%Y-%m-%d)" --until "$(($(date +%s) + 60))" --out today.jsonl
verify_both "--since DATE --until SECONDS verifies" today.jsonl 0 \
        "$(wc -l <today.jsonl) records, chain intact, $(grep -c '"kind":"checkpoint"' today.jsonl) checkpoints verified"
expect_fail 2 "--since" kmsctl audit export --since 2026-13-01 --out x.jsonl
expect_fail 2 "--since" kmsctl audit export --since 2026-02-30 --out x.jsonl
expect_fail 2 "--until" kmsctl audit export --until 2026-11-26T25:00:00Z --out x.jsonl
expect_fail 2 "--until" kmsctl audit export --until '2026-11-26 01:02:03' --out x.jsonl
expect_fail 2 "after --until" kmsctl audit export --since 2026-11-27 --until 2026-11-26 --out x.jsonl
expect_fail 2 "--out" kmsctl audit export
expect_fail 2 "--format" kmsctl audit export --format xml --out x.jsonl
expect_fail 2 "" kmsctl audit export --key 'bad name!' --out x.jsonl
[[ ! -e x.jsonl ]] && pass "failed exports wrote no file" || fail "a failed export left x.jsonl"

check "export --format csv" kmsctl audit export --format csv --out all.csv
expect_eq "CSV header" "seq,time,kind,uid,pid,exe,operation,key,version,result,details,prev,signature,redacted,body" \
        "$(head -n1 all.csv)"
expect_eq "CSV rows parse and number seq 1..N" "ok" "$("$KMS_PYTHON" -c '
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1], newline="")))
ok = [int(r["seq"]) for r in rows] == list(range(1, len(rows) + 1)) and rows[-1]["kind"] == "checkpoint" and rows[-1]["signature"]
print("ok" if ok else "bad")' all.csv)"
check "export --key audit/alice --format csv" kmsctl audit export --key audit/alice --format csv --out alice.csv
expect_eq "CSV stubs carry prev and body, and nothing else" "ok" "$("$KMS_PYTHON" -c '
import csv, re, sys
rows = list(csv.DictReader(open(sys.argv[1], newline="")))
stubs = [r for r in rows if r["redacted"] == "true"]
hexes = lambda r: all(re.fullmatch("[0-9a-f]{64}", r[k]) for k in ("prev", "body"))
empty = lambda r: not any(v for k, v in r.items() if k not in ("seq", "prev", "redacted", "body"))
ok = stubs and all(hexes(r) and empty(r) for r in stubs) and not any(r["body"] for r in rows if r["redacted"] != "true")
print("ok" if ok else "bad: %s" % stubs[:2])' alice.csv)"

# Access: the audit commands need the audit operation.
expect_fail 3 "AccessDenied" as_nobody audit export --out nobody.jsonl
expect_fail 3 "AccessDenied" as_nobody audit pubkey
expect_fail 3 "AccessDenied" as_nobody audit tail

# ================================================================ secrets
PIN=$(cat "$KMS_T/pin")
for f in all.jsonl two.jsonl alice.jsonl until.jsonl since.jsonl all.csv "$KMS_T/kmsd.log"; do
        for s in "$PIN" "$DERIVED_HEX" "$PLAINTEXT"; do
                if grep -qiF -- "$s" "$f"; then
                        fail "a secret ('${s:0:12}...') is in $f"
                fi
        done
done
pass "no PIN, derived secret or plaintext in any export or in kmsd's log"

# ================================================================ tail
check "audit tail -n 3" kmsctl audit tail -n 3
expect_eq "tail -n 3 prints three lines" 3 "$(wc -l <"$KMS_OUT")"
grep -Eq '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]{12}Z +[0-9]+ ' "$KMS_OUT" && pass "tail lines: $(head -n1 "$KMS_OUT")" ||
        fail "tail output: $(cat "$KMS_OUT")"
check "audit tail (default 10)" kmsctl audit tail
expect_eq "tail prints ten lines" 10 "$(wc -l <"$KMS_OUT")"
expect_fail 2 "-n" kmsctl audit tail -n 5001
expect_fail 2 "" kmsctl audit tail -x

"$KMSCTL_BIN" audit tail -f -n 0 >tail.out 2>tail.err &
TAIL_PID=$!
sleep 1.5
check "a sign while tail -f runs" kmsctl sign audit/alice --in msg --out tail.sig
for ((i = 0; i < 50; i++)); do
        grep -q " Sign .*audit/alice" tail.out && break
        sleep 0.2
done
kill -INT "$TAIL_PID"
TAIL_RC=0
wait "$TAIL_PID" || TAIL_RC=$?
expect_eq "tail -f exits 0 on SIGINT" 0 "$TAIL_RC"
grep -q " Sign .*audit/alice" tail.out && pass "tail -f showed the new Sign: $(grep ' Sign ' tail.out | head -n1)" ||
        fail "tail -f did not show the Sign: $(cat tail.out tail.err)"
if grep -q " ExportAudit " tail.out; then
        fail "tail -f printed its own polls: $(grep -c ' ExportAudit ' tail.out) lines"
else
        pass "tail -f does not print its own polls"
fi
if grep -Eq "$KMS_SANITIZER_RE" tail.err; then
        cat tail.err >>"$KMS_T/kmsctl-sanitizer.log"
fi

# ================================================================ failure = closed
# The state folder on a 4 MiB tmpfs that the test fills up.
STATE=$KMS_T/state
MOUNTED=0
unmount_state() {
        if ((MOUNTED)); then
                kms_stop_kmsd
                umount "$STATE" && MOUNTED=0
        fi
        return 0
}
trap 'rc=$?; unmount_state; (exit $rc); kms__on_exit' EXIT

kms_stop_kmsd
cp -a "$STATE" "$KMS_T/state.copy"
if ! mount -t tmpfs -o size=4m,mode=0700 kmsd-audit-test "$STATE" 2>"$W/mount.err"; then
        die "cannot mount a tmpfs on $STATE ($(cat "$W/mount.err")): the fail-closed test needs root (CI runs as root)"
fi
MOUNTED=1
cp -a "$KMS_T/state.copy/." "$STATE/"
kms_start_kmsd
check "sign on the tmpfs state folder" kmsctl sign audit/alice --in msg --out t1.sig

LOG_BEFORE=$(wc -l <"$KMS_T/kmsd.log")
dd if=/dev/zero of="$STATE/filler" bs=64k 2>/dev/null || true
expect_eq "the tmpfs is full" 0 "$(df --output=avail -B1 "$STATE" | tail -n1 | tr -d ' ')"
# WAL space already allocated may take a few more records: sign until the
# first refusal.
REFUSED=0
for ((i = 0; i < 200; i++)); do
        run kmsctl sign audit/alice --in msg --out full.sig
        if ((KMS_RC != 0)); then
                grep -q "AuditFailure" "$KMS_ERR" && REFUSED=1
                break
        fi
done
((REFUSED)) && pass "sign with a full disk is refused: $(head -c 300 "$KMS_ERR")" ||
        fail "sign with a full disk: exit $KMS_RC after $i signatures: $(cat "$KMS_ERR")"
expect_fail 1 "AuditFailure" kmsctl sign audit/alice --in msg --out full2.sig
expect_fail 1 "AuditFailure" kmsctl key show audit/alice
if tail -n +"$LOG_BEFORE" "$KMS_T/kmsd.log" | grep -Eiq "audit.*(cannot|could not|fail|refus)"; then
        pass "kmsd logs it: $(tail -n +"$LOG_BEFORE" "$KMS_T/kmsd.log" | grep -Ei "audit.*(cannot|could not|fail|refus)" | head -n1)"
else
        fail "kmsd did not log the audit failure: $(tail -n +"$LOG_BEFORE" "$KMS_T/kmsd.log" | tail -n 5)"
fi
rm -f "$STATE/filler"
for ((i = 0; i < 50; i++)); do
        run kmsctl sign audit/alice --in msg --out back.sig
        ((KMS_RC == 0)) && break
        sleep 0.2
done
expect_eq "sign works again once there is room" 0 "$KMS_RC"
check "verify the signature made after the failure" kmsctl verify audit/alice --in msg --sig back.sig
check "export after the failure" kmsctl audit export --out after.jsonl
verify_both "the chain is intact across the failure" after.jsonl 0 \
        "$(wc -l <after.jsonl) records, chain intact, $(grep -c '"kind":"checkpoint"' after.jsonl) checkpoints verified"

# ================================================================ failure = open
kms_stop_kmsd
KMS_EXTRA_CONFIG=$'[audit]\nfailure = open'
kms_write_config
kms_start_kmsd
LOG_BEFORE=$(wc -l <"$KMS_T/kmsd.log")
dd if=/dev/zero of="$STATE/filler" bs=64k 2>/dev/null || true
for ((i = 0; i < 20; i++)); do
        run kmsctl sign audit/alice --in msg --out open.sig
        ((KMS_RC == 0)) || break
done
expect_eq "failure = open: 20 signatures with a full disk" "0 20" "$KMS_RC $i"
if tail -n +"$LOG_BEFORE" "$KMS_T/kmsd.log" | grep -Eiq "audit.*(cannot|could not|fail)"; then
        pass "failure = open logs the failure: $(tail -n +"$LOG_BEFORE" "$KMS_T/kmsd.log" | grep -Ei "audit.*(cannot|could not|fail)" | head -n1)"
else
        fail "failure = open did not log the failure"
fi
rm -f "$STATE/filler"
check "failure = open: export once there is room" kmsctl audit export --out open.jsonl
verify_both "failure = open: the chain still verifies" open.jsonl 0 \
        "$(wc -l <open.jsonl) records, chain intact, $(grep -c '"kind":"checkpoint"' open.jsonl) checkpoints verified"

unmount_state
kms_finish
