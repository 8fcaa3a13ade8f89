#!/usr/bin/env bash
# kmsd killed with SIGKILL at random moments while a workload creates,
# rotates (by command, by use count, by schedule), revokes (versions, the
# primary of a scheduled key, whole keys), trims, destroys and signs, at
# least 20 times (100 in the normal build, see tests/CMakeLists.txt).
# After each restart (when kmsd has reconciled token and metadata and
# answers) the test checks, with pkcs11-tool as referee:
#   1. the CKA_IDs of the kmsd-labelled private keys in the token are
#      exactly the backend_ids of the versions in state active (DescribeKey
#      of every key of ListKeys all=true, as key show --json / key list
#      --all --json give them; tests/lib/kms_dump.py);
#   2. no object of a revoked or destroyed version, or of a revoked or
#      destroyed key (label kmsd:NAME#), is left in the token, and no
#      kmsd-labelled object (public keys too) that belongs to no version;
#   3. every active key signs, with its primary version (a key that
#      rotates by itself: that or a later one), and openssl verifies the
#      signature with that version's public key;
# and the audit log (kmsctl audit export after the ready check;
# tests/lib/audit_state.py):
#   4. every state change in the store has its record: each version its
#      CreateKey (v1) or RotateKey/ScheduledRotate/UsageRotate/
#      ReplaceVersion (vN) record, each revoked version its RevokeVersion
#      (kind revocation), each trimmed version its TrimVersion, each
#      destroyed key its DestroyKey/ScheduledDestroy; and each ok record of
#      those matches a state that exists (the key, the version, revoked,
#      destroyed). The audit record of a change is committed with the
#      change, so a SIGKILL leaves both or neither;
#   5. kmsctl audit verify passes the export (--first-seq 1, --last-seq
#      the checkpoint the export ended with), and the export before the
#      kill is a prefix of it (no committed record is lost).
#
# KMS_CRASH_KILLS (default 30) sets the number of kills; after
# KMS_CRASH_BUDGET seconds (default 150) the loop ends early, but not
# before KMS_CRASH_MIN_KILLS kills (default 20, never below 20).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib/harness.sh"
kms_require openssl pkcs11-tool

MIN_KILLS=${KMS_CRASH_MIN_KILLS:-20}
((MIN_KILLS >= 20)) || MIN_KILLS=20
KILLS=${KMS_CRASH_KILLS:-30}
((KILLS >= MIN_KILLS)) || KILLS=$MIN_KILLS
BUDGET=${KMS_CRASH_BUDGET:-150}

kms_harness_start
W=$KMS_T/work
mkdir -p "$W"
cd "$W"

WL_PIDS=()
stop_workload() {
        local p
        for p in "${WL_PIDS[@]}"; do
                kill -TERM "$p" 2>/dev/null || true
                wait "$p" 2>/dev/null || true
        done
        WL_PIDS=()
}

# Is any workload still running?
workload_alive() {
        local p
        for p in "${WL_PIDS[@]}"; do
                kms__alive "$p" && return 0
        done
        return 1
}
trap 'rc=$?; stop_workload; (exit $rc); kms__on_exit' EXIT

printf 'signed between crashes\n' >msg

# A few small keys with a long schedule, so that revoking a primary rotates
# first (the key stays usable) and trimming to 4 versions also runs; one
# that rotates after 3 signatures (UsageRotate) and one every 2 seconds
# (ScheduledRotate, also as catch-up at start-up), both trimmed to 3.
KEYS=(crash/k0 crash/k1 crash/k2 crash/k3 crash/k4)
for k in crash/k0 crash/k1 crash/k2; do
        check "key create $k" kmsctl key create "$k" --algorithm ec-p256 --rotate-every 1d --keep-versions 4
done
check "key create crash/k3" kmsctl key create crash/k3 --algorithm ec-p256 --rotate-after-uses 3 --keep-versions 3
check "key create crash/k4" kmsctl key create crash/k4 --algorithm ec-p256 --rotate-every 2s --keep-versions 3
# Keys that rotate by themselves: in check 3 a rotation may come between
# reading the primary and signing.
declare -A SELF_ROTATING=([crash/k3]=1 [crash/k4]=1)
check "kmsctl audit pubkey --all" kmsctl audit pubkey --all --out audit.pem

# ---------------------------------------------------------------- workload

# workload KMSD_PID ITERATION I: kmsctl commands on key KEYS[I] (and
# fresh keys) until kmsd is gone, ignoring failures. One runs per key at
# the same time, so a kill usually finds several requests in flight.
# Appends "ops ok" to wl.counts at the end.
workload() {
        local pid=$1 it=$2 i=$3 ops=0 ok=0 k v top r
        local -A primary=()
        export KMS_KMSCTL_TIMEOUT=30
        k=${KEYS[$i]}
        # The primary version, roughly: exact at the start, then tracked.
        v=$(kmsctl key show "$k" --json 2>/dev/null) && v=${v#*\"primary_version\":} && primary[$k]=${v%%,*}
        [[ "${primary[$k]:-}" =~ ^[0-9]+$ ]] || primary[$k]=1
        # Fresh keys a kill left usable (active or disabled) in the last
        # check's dump: workloads 0-2 destroy their share, so they do not
        # pile up, and so destructions meet kills too.
        local -a leftovers=()
        if ((i <= 2)) && [[ -s dump.json ]]; then
                read -r -a leftovers < <("$KMS_PYTHON" -c '
import json, sys
names = [k["name"] for k in json.load(open("dump.json"))
         if not k["name"].startswith("crash/k") and k["state"] in ("active", "disabled")]
print(" ".join(n for j, n in enumerate(names) if j % 3 == int(sys.argv[1])))' "$i" 2>/dev/null) || true
        fi
        while kms__alive "$pid"; do
                ops=$((ops + 1))
                if ((${#leftovers[@]} > 0 && RANDOM % 3 == 0)); then
                        kmsctl --timeout 20 key destroy "${leftovers[0]}" --now --yes >/dev/null 2>&1 && ok=$((ok + 1))
                        leftovers=("${leftovers[@]:1}")
                        continue
                fi
                # One op in 20 makes a fresh key (they pile up as tombstones,
                # which every check then reads), and only in workloads 0-2.
                r=$((RANDOM % 20))
                ((r < 17 || i <= 2)) || r=$((RANDOM % 17))
                case $r in
                0 | 1 | 2 | 3 | 4)
                        kmsctl --timeout 20 sign "$k" --in msg --out "wl-$i.sig" >/dev/null 2>&1 && ok=$((ok + 1))
                        ;;
                5 | 6 | 7 | 8)
                        if v=$(kmsctl --timeout 20 key rotate "$k" --json 2>/dev/null); then
                                ok=$((ok + 1))
                                v=${v##*\"version\":}
                                primary[$k]=${v%\}*}
                        fi
                        ;;
                9 | 10)
                        # An older version, or the primary (which rotates first).
                        top=${primary[$k]}
                        v=$((top - RANDOM % 4))
                        ((v >= 1)) || v=1
                        kmsctl --timeout 20 key revoke "$k" --version "$v" --reason superseded \
                                >/dev/null 2>&1 && ok=$((ok + 1))
                        ;;
                11 | 12)
                        kmsctl --timeout 20 key revoke "$k" --version "${primary[$k]}" --reason compromised \
                                --note "crash test $it" >/dev/null 2>&1 && ok=$((ok + 1))
                        primary[$k]=$((primary[$k] + 1))
                        ;;
                13 | 14 | 15 | 16)
                        # Lowering keep_versions trims at once.
                        case $k in
                        crash/k3 | crash/k4) top=$((2 + RANDOM % 2)) ;;
                        *) top=$((2 + RANDOM % 3)) ;;
                        esac
                        kmsctl --timeout 20 key set "$k" --keep-versions "$top" >/dev/null 2>&1 && ok=$((ok + 1))
                        ;;
                17)
                        # A fresh key, revoked whole at once: a crash may
                        # stop it at any point of create or revoke.
                        if kmsctl --timeout 20 key create "crash/x$it-$i-$ops" --algorithm ec-p256 >/dev/null 2>&1; then
                                ok=$((ok + 1))
                                kmsctl --timeout 20 key revoke "crash/x$it-$i-$ops" --reason retired \
                                        >/dev/null 2>&1 && ok=$((ok + 1))
                        fi
                        ;;
                18)
                        # A fresh key, rotated and destroyed at once.
                        if kmsctl --timeout 20 key create "crash/d$it-$i-$ops" --algorithm ec-p256 >/dev/null 2>&1; then
                                ok=$((ok + 1))
                                kmsctl --timeout 20 key rotate "crash/d$it-$i-$ops" >/dev/null 2>&1 && ok=$((ok + 1))
                                kmsctl --timeout 20 key destroy "crash/d$it-$i-$ops" --now --yes \
                                        >/dev/null 2>&1 && ok=$((ok + 1))
                        fi
                        ;;
                19)
                        # A fresh scheduled key: its primary revoked (the
                        # replace path: ReplaceVersion, RevokeVersion),
                        # then the key destroyed.
                        if kmsctl --timeout 20 key create "crash/r$it-$i-$ops" --algorithm ec-p256 \
                                --rotate-every 1d >/dev/null 2>&1; then
                                ok=$((ok + 1))
                                kmsctl --timeout 20 key revoke "crash/r$it-$i-$ops" --version 1 --reason compromised \
                                        >/dev/null 2>&1 && ok=$((ok + 1))
                                kmsctl --timeout 20 key destroy "crash/r$it-$i-$ops" --now --yes \
                                        >/dev/null 2>&1 && ok=$((ok + 1))
                        fi
                        ;;
                esac
        done
        echo "$ops $ok" >>wl.counts
}

# ---------------------------------------------------------------- the check

cat >check.py <<'PY'
# usage: check.py DUMP_JSON OBJECTS_TSV
# Prints "ERROR ..." lines for every disagreement, then one "SIGN NAME
# PRIMARY" line per active key, then "STATS active=N objects=M".
import json, sys

keys = json.load(open(sys.argv[1]))
objects = []
for line in open(sys.argv[2]):
    parts = line.rstrip("\n").split("\t")
    if len(parts) == 3:
        objects.append(parts)

active_ids, dead_ids, dead_prefixes, signers, errors = {}, {}, [], [], []
for d in keys:
    name = d["name"]
    if d["state"] in ("revoked", "destroyed"):
        # Nothing of a revoked or destroyed key may stay in the token,
        # whatever its versions say.
        dead_prefixes.append(("kmsd:%s#" % name, name, d["state"]))
    if "error" in d:
        errors.append("no DescribeKey for %s: %s" % (name, d["error"]))
        continue
    for v in d["versions"]:
        where = "%s v%d (%s)" % (name, v["version"], v["state"])
        if v["state"] == "active":
            active_ids[v["backend_id"]] = where
        elif v["state"] in ("revoked", "destroyed"):
            dead_ids[v["backend_id"]] = where
    if d["state"] == "active":
        signers.append((name, d["primary_version"]))

token_priv = {}
for typ, label, oid in objects:
    if typ == "Private" and label.startswith("kmsd:"):
        token_priv[oid] = label
    if oid in dead_ids:
        errors.append("token still holds a %s object %s (%s) of %s" % (typ, oid, label, dead_ids[oid]))
    for prefix, name, state in dead_prefixes:
        if label.startswith(prefix):
            errors.append("token still holds a %s object %s of %s key %s" % (typ, label, state, name))

for oid in sorted(set(token_priv) - set(active_ids)):
    errors.append("private key %s (%s) in the token has no active version" % (oid, token_priv[oid]))
# Reconciliation destroys kmsd-labelled objects without metadata: public
# keys too, not only private ones.
for typ, label, oid in objects:
    if typ != "Private" and label.startswith("kmsd:") and oid not in active_ids and oid not in dead_ids:
        errors.append("%s object %s (%s) in the token belongs to no version" % (typ, oid, label))
for oid in sorted(set(active_ids) - set(token_priv)):
    errors.append("active version %s has no private key %s in the token" % (active_ids[oid], oid))

for e in errors:
    print("ERROR " + e)
for name, primary in signers:
    print("SIGN %s %d" % (name, primary))
# Objects without a kmsd label are outside the checks. A SIGKILL in the
# middle of C_GenerateKeyPair can leave one behind: SoftHSM writes a new
# object before it has its label and CKA_ID. Counted for the summary.
unlabelled = sum(1 for typ, label, oid in objects if not label.startswith("kmsd:"))
print("STATS active=%d objects=%d unlabelled=%d keys=%d" % (len(active_ids), len(objects), unlabelled, len(keys)))
PY

# Every object in the token as TYPE<TAB>LABEL<TAB>ID.
p11_objects() {
        kms_p11tool --list-objects | awk '
                /Object;/ || /^Data object/ { if (n) print t "\t" l "\t" id; n = 1; t = $1; l = ""; id = ""; next }
                /^[ \t]*label:/ { l = $0; sub(/^[ \t]*label:[ \t]*/, "", l) }
                /^[ \t]*ID:/ { id = $0; sub(/^[ \t]*ID:[ \t]*/, "", id) }
                END { if (n) print t "\t" l "\t" id }'
}

# dump FILE: every key with its versions (ListKeys all, DescribeKey each).
dump() {
        timeout -k 5 120 "$KMS_PYTHON" "$KMS_LIB_DIR/kms_dump.py" "$1"
}

# sign_check NAME PRIMARY: check 3 for one key, in the background (the
# keys are signed at the same time; each request waits for its audit
# record, and concurrent ones share a commit). Writes "ok" or "FAIL ..."
# lines to sign-NAME.out.
sign_check() {
        local name=$1 primary=$2 f=sign-${1//\//_} used
        exec >"$f.out" 2>/dev/null
        rm -f "$f.sig" "$f.pem"
        if ! used=$(kmsctl sign "$name" --in msg --out "$f.sig" --json 2>"$f.err"); then
                echo "FAIL sign $name failed: $(cat "$f.err")"
                return
        fi
        used=${used##*\"version\":}
        used=${used%%,*}
        if [[ -n "${SELF_ROTATING[$name]:-}" ]] && [[ "$used" =~ ^[0-9]+$ ]] && ((used > primary)); then
                : # rotated by itself since the dump: the newer version signs
        elif [[ "$used" != "$primary" ]]; then
                echo "FAIL $name signed with version $used, key show says primary $primary"
        fi
        if ! kmsctl key public "$name" --version "$used" --out "$f.pem" 2>"$f.err"; then
                echo "FAIL key public $name --version $used: $(cat "$f.err")"
        elif ! openssl dgst -sha256 -verify "$f.pem" -signature "$f.sig" msg >/dev/null 2>&1; then
                echo "FAIL openssl does not verify $name's signature with version $used's key"
        else
                echo ok
        fi
}

# check_world ITERATION: the token checks 1-3; one pass line when all hold.
LAST_STATS=""
TOKEN_RETRIES=0
check_world() {
        local it=$1 bad=0 line name primary signed=0 pids=() p try
        # kmsd keeps working while it is checked (crash/k4 rotates every 2
        # seconds and is trimmed; a rotation that fell due while it was
        # down runs at start-up): a dump and a token listing taken a moment
        # apart can disagree for that moment (a new version's object, a
        # trimmed version marked before its object goes). A disagreement
        # counts when it is still there on the third look, a second apart;
        # a real one does not go away, kmsd having nothing left to finish.
        for try in 1 2 3; do
                if ! dump dump.json 2>dump.err; then
                        fail "kill $it: kms_dump.py (ListKeys, DescribeKey) failed: $(cat dump.err)"
                        [[ -s dump.json ]] || return
                fi
                if ! p11_objects >objects.tsv 2>p11.err; then
                        fail "kill $it: pkcs11-tool --list-objects failed: $(cat p11.err)"
                        return
                fi
                "$KMS_PYTHON" check.py dump.json objects.tsv >check.out 2>&1 || echo "ERROR check.py failed" >>check.out
                grep -q '^ERROR ' check.out || break
                ((try == 3)) || { TOKEN_RETRIES=$((TOKEN_RETRIES + 1)); sleep 1; }
        done
        rm -f sign-*.out
        while IFS= read -r line; do
                case $line in
                "ERROR "*)
                        fail "kill $it: ${line#ERROR }"
                        bad=1
                        ;;
                "SIGN "*)
                        read -r _ name primary <<<"$line"
                        sign_check "$name" "$primary" &
                        pids+=($!)
                        ;;
                "STATS "*) LAST_STATS=${line#STATS } ;;
                esac
        done <check.out
        for p in "${pids[@]}"; do wait "$p" || true; done
        for f in sign-*.out; do
                [[ -e "$f" ]] || continue
                while IFS= read -r line; do
                        case $line in
                        ok) signed=$((signed + 1)) ;;
                        "FAIL "*)
                                fail "kill $it: ${line#FAIL }"
                                bad=1
                                ;;
                        esac
                done <"$f"
        done
        if ((${#pids[@]} != signed)) && ((bad == 0)); then
                fail "kill $it: ${#pids[@]} keys to sign with, $signed signed and verified"
                bad=1
        fi
        if ((bad == 0)); then
                pass "kill $it: token and metadata agree ($LAST_STATS); $signed active keys sign and openssl verifies"
        else
                cp dump.json "dump-$it.json"
                cp objects.tsv "objects-$it.tsv"
        fi
}

# check_audit ITERATION: checks 4 and 5. dump.json is the store before the
# export (check_world wrote it); the store is dumped again after it.
LAST_AUDIT=""
AUDIT_FAILS=0
check_audit() {
        local it=$1 bad=0 line what count new examples last_seq n
        if ! kmsctl audit export --out audit.jsonl 2>export.err; then
                fail "kill $it: kmsctl audit export failed: $(cat export.err)"
                return
        fi
        last_seq=$(grep -oE 'checkpoint seq [0-9]+' export.err | grep -oE '[0-9]+$' || true)
        if ! dump dump-after.json 2>dump.err; then
                fail "kill $it: kms_dump.py after the export failed: $(cat dump.err)"
                [[ -s dump-after.json ]] || return
        fi
        run kmsctl audit verify audit.jsonl --pubkey audit.pem --first-seq 1 ${last_seq:+--last-seq "$last_seq"}
        if ((KMS_RC == 0)); then
                LAST_AUDIT=$(cat "$KMS_OUT")
        else
                fail "kill $it: kmsctl audit verify (--first-seq 1 --last-seq ${last_seq:-?}) exited $KMS_RC: $(head -c 400 "$KMS_OUT") $(head -c 400 "$KMS_ERR")"
                bad=1
        fi
        # No committed record lost: the export before the kill is a prefix
        # of this one.
        if [[ -s audit-prev.jsonl ]]; then
                n=$(wc -l <audit-prev.jsonl)
                if ! head -n "$n" audit.jsonl | cmp -s - audit-prev.jsonl; then
                        fail "kill $it: the export before the kill ($n records) is not a prefix of the export after it: first difference $(head -n "$n" audit.jsonl | cmp - audit-prev.jsonl 2>&1 | head -c 200)"
                        bad=1
                fi
        fi
        cp audit.jsonl audit-prev.jsonl
        "$KMS_PYTHON" "$KMS_LIB_DIR/audit_state.py" dump.json audit.jsonl dump-after.json audit-seen.txt \
                >audit-check.out 2>&1 ||
                echo "ERROR	audit_state.py failed: $(head -c 300 audit-check.out)	1	1	" >>audit-check.out
        while IFS= read -r line; do
                case $line in
                "ERROR	"*)
                        IFS=$'\t' read -r _ what count new examples <<<"$line"
                        fail "kill $it: audit: $what: $count ($new new since the last check), e.g. $examples"
                        bad=1
                        ;;
                "STATS "*) LAST_AUDIT="$LAST_AUDIT; ${line#STATS }" ;;
                esac
        done <audit-check.out
        if ((bad == 0)); then
                pass "kill $it: every state change has its audit record and every record its state; verify: $LAST_AUDIT"
        else
                AUDIT_FAILS=$((AUDIT_FAILS + 1))
                cp audit.jsonl "audit-$it.jsonl"
                cp dump.json "dump-before-$it.json"
                cp dump-after.json "dump-after-$it.json"
        fi
}

check_world 0
check_audit 0

# ---------------------------------------------------------------- the loop
kills=0
t0=$SECONDS
# Seconds spent restarting kmsd, in checks 1-3 and in checks 4-5.
T_START=0 T_WORLD=0 T_AUDIT=0
for ((it = 1; it <= KILLS; it++)); do
        for i in "${!KEYS[@]}"; do
                ( workload "$KMS_KMSD_PID" "$it" "$i" ) &
                WL_PIDS+=($!)
        done
        # A random moment: 50 to 900 ms into the workload.
        r=$((50 + RANDOM % 851))
        sleep "$((r / 1000)).$(printf '%03d' $((r % 1000)))"
        kill -KILL "$KMS_KMSD_PID"
        wait "$KMS_KMSD_PID" 2>/dev/null || true
        echo "=== kmsd SIGKILLed $(date +%T) (kill $it, after ${r}ms)" >>"$KMS_T/kmsd.log"
        KMS_KMSD_PID=""
        kills=$((kills + 1))
        # The workload sees kmsd gone (its calls fail at once) and ends.
        for ((i = 0; i < 300; i++)); do workload_alive || break; sleep 0.1; done
        if workload_alive; then
                fail "kill $it: the workload did not end within 30s of the kill"
        fi
        stop_workload
        ts=$EPOCHREALTIME
        kms_start_kmsd
        tw=$EPOCHREALTIME
        check_world "$it"
        ta=$EPOCHREALTIME
        check_audit "$it"
        te=$EPOCHREALTIME
        T_START=$(awk -v a="$T_START" -v b="$ts" -v c="$tw" 'BEGIN { printf "%.1f", a + c - b }')
        T_WORLD=$(awk -v a="$T_WORLD" -v b="$tw" -v c="$ta" 'BEGIN { printf "%.1f", a + c - b }')
        T_AUDIT=$(awk -v a="$T_AUDIT" -v b="$ta" -v c="$te" 'BEGIN { printf "%.1f", a + c - b }')
        if ((SECONDS - t0 > BUDGET && kills >= MIN_KILLS && it < KILLS)); then
                echo "time budget of ${BUDGET}s spent after $kills kills; stopping early"
                break
        fi
done

ops=$(awk '{ o += $1; k += $2 } END { print o + 0 " " k + 0 }' wl.counts 2>/dev/null || echo "0 0")
read -r n_ops n_ok <<<"$ops"
if ((kills >= MIN_KILLS)); then pass "$kills kills (at least $MIN_KILLS)"; else fail "only $kills kills"; fi
if ((n_ok > 0)); then pass "the workload got work done: $n_ok of $n_ops requests succeeded"; else fail "no workload request succeeded ($n_ops tried)"; fi
# What the start-up reconciliations reported (informational: kmsd's log
# wording, not part of the checks).
reconciled=$(grep -E 'reconciliation:' "$KMS_T/kmsd.log" | grep -oE '[0-9]+ (orphan|version|revoked)' |
        awk '{ n[$2] += $1 } END { printf "%d orphan(s) removed, %d version(s) lost, %d revoked/destroyed object set(s) removed", n["orphan"], n["version"], n["revoked"] }' || true)
echo "crash summary: $kills SIGKILLs in $((SECONDS - t0))s; $n_ops workload requests, $n_ok succeeded;" \
        "reconciliation at start-up: ${reconciled:-none reported}; last state: $LAST_STATS;" \
        "audit: $AUDIT_FAILS of $((kills + 1)) checks found disagreements; last: $LAST_AUDIT;" \
        "time in restarts ${T_START}s, token checks ${T_WORLD}s (looked again $TOKEN_RETRIES times), audit checks ${T_AUDIT}s"

kms_finish
