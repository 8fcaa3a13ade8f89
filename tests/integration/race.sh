#!/usr/bin/env bash
# Key state changes under concurrency (tests/integration/race-check.c does
# the calls, with raw libdbus):
#   A  revoked and destroyed are terminal: per round a fresh key raced by
#      DisableKey/EnableKey, RotateKey, SetKeyOptions and Sign on four
#      connections while the owner revokes (in rounds with a schedule, the
#      primary first: the replace path) or destroys it; once that reply was
#      a success and the racers are answered, DescribeKey shows the key
#      revoked/destroyed with no active or lost version, and EnableKey,
#      RotateKey, Sign, DisableKey, SetKeyOptions all fail.
#      KMS_RACE_ROUNDS rounds (default 1000), KMS_RACE_PARALLEL at a time
#      (default 6).
#   B  no use after a revoke's reply: on one connection, Sign, Derive and
#      Seal calls pipelined around a RevokeKey; after its reply no Sign or
#      Derive reply carries a revoked version and every Seal reply is
#      KeyRevoked. KMS_RACE_ORDER_ROUNDS rounds (default 300), with
#      KMS_RACE_LOAD other connections signing and deriving (default 4).
#      Part B runs first.
# kmsd must survive both parts (if it dies, that fails and it is started
# again for the rest). Then pkcs11-tool, as referee: no private key object
# in the token for any revoked or destroyed version (CKA_ID = the version's
# backend_id), and none at all with the label of a key of part A (all of
# them ended revoked or destroyed).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib/harness.sh"
kms_require openssl pkcs11-tool
: "${KMS_RACE_CHECK:?KMS_RACE_CHECK is not set: run this test through ctest}"
[[ -x "$KMS_RACE_CHECK" ]] || die "KMS_RACE_CHECK=$KMS_RACE_CHECK is not executable"

# The test's ctest TIMEOUT (tests/CMakeLists.txt): each driver gets a
# share of it, so a hung driver is stopped while the harness can still
# stop kmsd and clean up.
RACE_TIMEOUT=${KMS_RACE_TIMEOUT:-300}
ROUNDS=${KMS_RACE_ROUNDS:-1000}
PARALLEL=${KMS_RACE_PARALLEL:-6}
ORDER_ROUNDS=${KMS_RACE_ORDER_ROUNDS:-300}
LOAD=${KMS_RACE_LOAD:-4}

kms_harness_start
W=$KMS_T/work
mkdir -p "$W"
cd "$W"
T0=$SECONDS

# The peer of Derive and OpenSession: a P-256 SubjectPublicKeyInfo, DER.
check "openssl: a P-256 peer key" openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out peer.pem
check "openssl: its SubjectPublicKeyInfo as DER" openssl pkey -in peer.pem -pubout -outform DER -out peer.der

# run_driver DESC SECONDS ARGS...: race-check ARGS, stopped after SECONDS;
# its PASS/FAIL lines become checks of this test, its INFO lines are
# printed.
run_driver() {
        local desc=$1 limit=$2 start=$SECONDS line n=0
        shift 2
        run timeout -k 5 "$limit" "$KMS_RACE_CHECK" "$@"
        while IFS= read -r line; do
                case $line in
                "PASS: "*) pass "${line#PASS: }"; n=$((n + 1)) ;;
                "FAIL: "*) fail "${line#FAIL: }"; n=$((n + 1)) ;;
                *) echo "$line" ;;
                esac
        done <"$KMS_OUT"
        if [[ -s "$KMS_ERR" ]]; then
                echo "  race-check stderr: $(head -c 2000 "$KMS_ERR")" >&2
        fi
        if ((KMS_RC == 124 || KMS_RC == 137)); then
                fail "$desc: race-check did not finish within ${limit}s"
        elif ((KMS_RC != 0 && KMS_RC != 1)) || ((n == 0)); then
                fail "$desc: race-check exited $KMS_RC after $n checks"
        fi
        echo "$desc: $((SECONDS - start))s"
        # kmsd must have survived it; if not, say so and start it again,
        # so the next part still runs.
        if ! kms__alive "$KMS_KMSD_PID"; then
                local rc=0
                wait "$KMS_KMSD_PID" 2>/dev/null || rc=$?
                KMS_KMSD_PID=""
                echo "=== kmsd died during $desc, exit $rc" >>"$KMS_T/kmsd.log"
                if ((rc > 128)); then
                        fail "kmsd died during $desc: killed by signal $((rc - 128)) (exit status $rc)"
                else
                        fail "kmsd died during $desc: exit status $rc"
                fi
                kms_start_kmsd
        fi
}

# B first: on a token with few objects the operations are quick, which
# makes a reply that overtakes the revocation's more likely to show.
: >versions.tsv
run_driver "B (reply order, $ORDER_ROUNDS rounds)" $((RACE_TIMEOUT * 45 / 100)) \
        order "$KMSD_BUS_ADDRESS" "$ORDER_ROUNDS" "$LOAD" peer.der versions.tsv
left=$((RACE_TIMEOUT - (SECONDS - T0) - 30))
((left >= 30)) || left=30
run_driver "A (state races, $ROUNDS rounds)" "$left" \
        state "$KMSD_BUS_ADDRESS" "$ROUNDS" "$PARALLEL" versions.tsv

# ---------------------------------------------------------------- the token

# Every object in the token as TYPE<TAB>LABEL<TAB>ID (as crash.sh lists them).
if ! kms_p11tool --list-objects >p11.out 2>p11.err; then
        fail "pkcs11-tool --list-objects failed: $(cat p11.err)"
else
        awk '
                /Object;/ || /^Data object/ { if (n) print t "\t" l "\t" id; n = 1; t = $1; l = ""; id = ""; next }
                /^[ \t]*label:/ { l = $0; sub(/^[ \t]*label:[ \t]*/, "", l) }
                /^[ \t]*ID:/ { id = $0; sub(/^[ \t]*ID:[ \t]*/, "", id) }
                END { if (n) print t "\t" l "\t" id }' p11.out >objects.tsv
        "$KMS_PYTHON" - versions.tsv objects.tsv >token-check.out <<'PY' || echo "ERROR token check failed to run" >>token-check.out
import sys
versions = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
objects = [l.rstrip("\n").split("\t") for l in open(sys.argv[2]) if l.strip()]
priv = {}
for typ, label, oid in objects:
    if typ == "Private":
        priv[oid.lower()] = label
dead = 0
bad = []
for name, version, state, bid in versions:
    if state in ("revoked", "destroyed"):
        dead += 1
        if bid.lower() in priv:
            bad.append("%s v%s is %s, but the token holds its private key %s (%s)" % (name, version, state, bid, priv[bid.lower()]))
print("DEAD %d" % dead)
for b in bad[:8]:
    print("BAD " + b)
print("NBAD %d" % len(bad))
left = sorted(label for oid, label in priv.items() if label.startswith("kmsd:race/a"))
for l in left[:8]:
    print("LEFT " + l)
print("NLEFT %d" % len(left))
pub = sum(1 for typ, label, oid in objects if typ == "Public" and label.startswith("kmsd:race/a"))
print("PUB %d" % pub)
PY
        n_dead=$(awk '$1 == "DEAD" { print $2 }' token-check.out)
        n_bad=$(awk '$1 == "NBAD" { print $2 }' token-check.out)
        n_left=$(awk '$1 == "NLEFT" { print $2 }' token-check.out)
        n_pub=$(awk '$1 == "PUB" { print $2 }' token-check.out)
        grep '^ERROR' token-check.out >&2 || true
        grep '^BAD ' token-check.out | sed 's/^BAD /  e.g. /' >&2 || true
        if [[ "${n_bad:-x}" == 0 && "${n_dead:-0}" -gt 0 ]]; then
                pass "pkcs11-tool: no private key object for any of the $n_dead revoked or destroyed versions"
        else
                fail "pkcs11-tool: the token holds private key objects of ${n_bad:-?} of the ${n_dead:-?} revoked or destroyed versions"
        fi
        grep '^LEFT ' token-check.out | sed 's/^LEFT /  e.g. /' >&2 || true
        if [[ "${n_left:-x}" == 0 ]]; then
                pass "pkcs11-tool: no private key object labelled for a key of part A (all revoked or destroyed)"
        else
                fail "pkcs11-tool: ${n_left:-?} private key object(s) labelled kmsd:race/a... are left, though every key of part A is revoked or destroyed"
        fi
        echo "INFO: public key objects labelled kmsd:race/a... left in the token: ${n_pub:-?}"
fi

echo "race: $((SECONDS - T0))s in all"
kms_finish
