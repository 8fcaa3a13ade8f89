#!/usr/bin/env bash
# kmsd killed with SIGKILL at random moments while a workload creates,
# rotates, revokes and signs, at least 20 times. After each restart (when
# kmsd has reconciled token and metadata) the test checks, with
# pkcs11-tool as referee:
#   1. the CKA_IDs of the kmsd-labelled private keys in the token are
#      exactly the backend_ids of the versions in state active (key show
#      --json of every key in key list --all --json);
#   2. no object of a revoked or destroyed version, or of a revoked or
#      destroyed key (label kmsd:NAME#), is left in the token, and no
#      kmsd-labelled object (public keys too) that belongs to no version;
#   3. every active key signs, with its primary version, and openssl
#      verifies the signature with that version's public key.
#
# KMS_CRASH_KILLS (default 30, never below 20) sets the number of kills;
# after KMS_CRASH_BUDGET seconds (default 150) the loop ends early, but not
# before 20 kills.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib/harness.sh"
kms_require openssl pkcs11-tool

MIN_KILLS=20
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
# first (the key stays usable) and trimming to 4 versions also runs.
KEYS=(crash/k0 crash/k1 crash/k2)
for k in "${KEYS[@]}"; do
        check "key create $k" kmsctl key create "$k" --algorithm ec-p256 --rotate-every 1d --keep-versions 4
done

# ---------------------------------------------------------------- workload

# workload KMSD_PID ITERATION I: kmsctl commands on key KEYS[I] (and
# fresh keys) until kmsd is gone, ignoring failures. One runs per key at
# the same time, so a kill usually finds several requests in flight.
# Appends "ops ok" to wl.counts at the end.
workload() {
        local pid=$1 it=$2 i=$3 ops=0 ok=0 k v top
        local -A primary=()
        export KMS_KMSCTL_TIMEOUT=30
        k=${KEYS[$i]}
        # The primary version, roughly: exact at the start, then tracked.
        v=$(kmsctl key show "$k" --json 2>/dev/null) && v=${v#*\"primary_version\":} && primary[$k]=${v%%,*}
        [[ "${primary[$k]:-}" =~ ^[0-9]+$ ]] || primary[$k]=1
        while kms__alive "$pid"; do
                ops=$((ops + 1))
                case $((RANDOM % 10)) in
                0 | 1 | 2 | 3)
                        kmsctl --timeout 20 sign "$k" --in msg --out "wl-$i.sig" >/dev/null 2>&1 && ok=$((ok + 1))
                        ;;
                4 | 5 | 6)
                        if v=$(kmsctl --timeout 20 key rotate "$k" --json 2>/dev/null); then
                                ok=$((ok + 1))
                                v=${v##*\"version\":}
                                primary[$k]=${v%\}*}
                        fi
                        ;;
                7)
                        # An older version, or the primary (which rotates first).
                        top=${primary[$k]}
                        v=$((top - RANDOM % 4))
                        ((v >= 1)) || v=1
                        kmsctl --timeout 20 key revoke "$k" --version "$v" --reason superseded \
                                >/dev/null 2>&1 && ok=$((ok + 1))
                        ;;
                8)
                        kmsctl --timeout 20 key revoke "$k" --version "${primary[$k]}" --reason compromised \
                                --note "crash test $it" >/dev/null 2>&1 && ok=$((ok + 1))
                        primary[$k]=$((primary[$k] + 1))
                        ;;
                9)
                        # A fresh key, revoked whole at once: a crash may
                        # stop it at any point of create or revoke.
                        if kmsctl --timeout 20 key create "crash/x$it-$i-$ops" --algorithm ec-p256 >/dev/null 2>&1; then
                                ok=$((ok + 1))
                                kmsctl --timeout 20 key revoke "crash/x$it-$i-$ops" --reason retired \
                                        >/dev/null 2>&1 && ok=$((ok + 1))
                        fi
                        ;;
                esac
        done
        echo "$ops $ok" >>wl.counts
}

# ---------------------------------------------------------------- the check

cat >check.py <<'PY'
# usage: check.py LIST_JSON SHOW_DIR OBJECTS_TSV
# Prints "ERROR ..." lines for every disagreement, then one "SIGN NAME
# PRIMARY" line per active key, then "STATS active=N objects=M".
import json, os, sys

keys = json.load(open(sys.argv[1]))
show_dir = sys.argv[2]
objects = []
for line in open(sys.argv[3]):
    parts = line.rstrip("\n").split("\t")
    if len(parts) == 3:
        objects.append(parts)

active_ids, dead_ids, dead_prefixes, signers, errors = {}, {}, [], [], []
for k in keys:
    name = k["name"]
    if k["state"] in ("revoked", "destroyed"):
        # Nothing of a revoked or destroyed key may stay in the token,
        # whatever its versions say.
        dead_prefixes.append(("kmsd:%s#" % name, name, k["state"]))
    path = os.path.join(show_dir, name.replace("/", "_") + ".json")
    try:
        d = json.load(open(path))
    except Exception as e:
        errors.append("no key show --json for %s: %s" % (name, e))
        continue
    for v in d["versions"]:
        where = "%s v%d (%s)" % (name, v["version"], v["state"])
        if v["state"] == "active":
            active_ids[v["backend_id"]] = where
        elif v["state"] in ("revoked", "destroyed"):
            dead_ids[v["backend_id"]] = where
    if k["state"] == "active":
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

# check_world ITERATION: the three checks; one pass line when all hold.
LAST_STATS=""
check_world() {
        local it=$1 bad=0 line name primary used signed=0
        rm -rf shows
        mkdir shows
        if ! kmsctl key list --all --json >list.json 2>list.err; then
                fail "kill $it: key list --all --json failed: $(cat list.err)"
                return
        fi
        for name in $("$KMS_PYTHON" -c 'import json,sys; print(" ".join(k["name"] for k in json.load(open(sys.argv[1]))))' list.json); do
                kmsctl key show "$name" --json >"shows/${name//\//_}.json" 2>show.err ||
                        echo "kmsctl key show $name: $(cat show.err)" >&2
        done
        if ! p11_objects >objects.tsv 2>p11.err; then
                fail "kill $it: pkcs11-tool --list-objects failed: $(cat p11.err)"
                return
        fi
        "$KMS_PYTHON" check.py list.json shows objects.tsv >check.out 2>&1 || echo "ERROR check.py failed" >>check.out
        while IFS= read -r line; do
                case $line in
                "ERROR "*)
                        fail "kill $it: ${line#ERROR }"
                        bad=1
                        ;;
                "SIGN "*)
                        read -r _ name primary <<<"$line"
                        rm -f s.sig p.pem
                        if ! used=$(kmsctl sign "$name" --in msg --out s.sig --json 2>sign.err); then
                                fail "kill $it: sign $name failed: $(cat sign.err)"
                                bad=1
                                continue
                        fi
                        used=${used##*\"version\":}
                        used=${used%%,*}
                        if [[ "$used" != "$primary" ]]; then
                                fail "kill $it: $name signed with version $used, key show says primary $primary"
                                bad=1
                        fi
                        if ! kmsctl key public "$name" --version "$primary" --out p.pem 2>pub.err; then
                                fail "kill $it: key public $name --version $primary: $(cat pub.err)"
                                bad=1
                        elif ! openssl dgst -sha256 -verify p.pem -signature s.sig msg >/dev/null 2>&1; then
                                fail "kill $it: openssl does not verify $name's signature with version $primary's key"
                                bad=1
                        else
                                signed=$((signed + 1))
                        fi
                        ;;
                "STATS "*) LAST_STATS=${line#STATS } ;;
                esac
        done <check.out
        if ((bad == 0)); then
                pass "kill $it: token and metadata agree ($LAST_STATS); $signed active keys sign and openssl verifies"
        else
                cp list.json "list-$it.json"
                cp objects.tsv "objects-$it.tsv"
                cp -r shows "shows-$it"
        fi
}

check_world 0

# ---------------------------------------------------------------- the loop
kills=0
t0=$SECONDS
for ((it = 1; it <= KILLS; it++)); do
        for i in "${!KEYS[@]}"; do
                ( workload "$KMS_KMSD_PID" "$it" "$i" ) &
                WL_PIDS+=($!)
        done
        r=$((RANDOM % 10 + 1))
        if ((r == 10)); then sleep 1.0; else sleep "0.$r"; fi
        kill -KILL "$KMS_KMSD_PID"
        wait "$KMS_KMSD_PID" 2>/dev/null || true
        echo "=== kmsd SIGKILLed $(date +%T) (kill $it, after 0.${r}s)" >>"$KMS_T/kmsd.log"
        KMS_KMSD_PID=""
        kills=$((kills + 1))
        # The workload sees kmsd gone (its calls fail at once) and ends.
        for ((i = 0; i < 300; i++)); do workload_alive || break; sleep 0.1; done
        if workload_alive; then
                fail "kill $it: the workload did not end within 30s of the kill"
        fi
        stop_workload
        kms_start_kmsd
        check_world "$it"
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
        "reconciliation at start-up: ${reconciled:-none reported}; last state: $LAST_STATS"

kms_finish
