#!/usr/bin/env bash
# SIGTERM while a burst of requests is in flight: kmsd exits 0 within a few
# seconds, and every request either succeeded (openssl verifies the
# signature) or got a clear error; none hangs. Started again, kmsd's keys
# and the token's objects still match one to one.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib/harness.sh"
kms_require openssl pkcs11-tool

kms_harness_start
W=$KMS_T/work
mkdir -p "$W/burst"
cd "$W"

check "key create burst/ec" kmsctl key create burst/ec --algorithm ec-p256
check "key create burst/rsa" kmsctl key create burst/rsa --algorithm rsa-4096
kmsctl key public burst/ec >ec.pem 2>/dev/null || true
kmsctl key public burst/rsa >rsa.pem 2>/dev/null || true
head -c 4000 /dev/urandom >data

now() { date +%s.%N; }

# The burst: two RSA-4096 creates (they take a good part of a second in the
# token) and 20 signs, queued behind kmsd's workers.
N=20
pids=()
for i in 1 2; do
        (
                rc=0
                KMS_KMSCTL_TIMEOUT=30 kmsctl key create "burst/new$i" --algorithm rsa-4096 \
                        >"burst/new$i.out" 2>"burst/new$i.err" || rc=$?
                echo "$rc $(now)" >"burst/new$i.rc"
        ) &
        pids+=($!)
done
for ((i = 0; i < N; i++)); do
        key=burst/rsa
        ((i % 4 == 3)) && key=burst/ec
        (
                rc=0
                KMS_KMSCTL_TIMEOUT=30 kmsctl sign "$key" --in data --out "burst/$i.sig" \
                        >"burst/$i.out" 2>"burst/$i.err" || rc=$?
                echo "$rc $key $(now)" >"burst/$i.rc"
        ) &
        pids+=($!)
done
# SIGTERM as soon as the first request has finished: the others are then
# queued or running.
for ((t = 0; t < 200; t++)); do
        compgen -G "burst/*.rc" >/dev/null && break
        sleep 0.05
done
pending=$(kms_status_field pending 2>/dev/null || echo "?")
echo "requests pending just before SIGTERM: $pending"
# A late wave that arrives while kmsd is stopping: it must be answered
# (ShuttingDown, or kmsd already gone) or served, never left hanging.
L=8
for ((i = N; i < N + L; i++)); do
        (
                # Half of them race the SIGTERM itself, half come later.
                ((i % 2)) && sleep 0.1
                rc=0
                KMS_KMSCTL_TIMEOUT=30 kmsctl sign burst/ec --in data --out "burst/$i.sig" \
                        >"burst/$i.out" 2>"burst/$i.err" || rc=$?
                echo "$rc burst/ec $(now)" >"burst/$i.rc"
        ) &
        pids+=($!)
done
term_at=$(now)
kms_stop_kmsd 15
if ((KMS_KMSD_RC == 0)); then pass "kmsd exited 0 on SIGTERM with requests in flight"; else fail "kmsd exited $KMS_KMSD_RC on SIGTERM"; fi
if ((KMS_STOP_SECS <= 10)); then
        pass "kmsd stopped within ${KMS_STOP_SECS}s"
else
        fail "kmsd took ${KMS_STOP_SECS}s to stop"
fi
if grep -q "signal 15\|SIGTERM\|stopping" "$KMS_T/kmsd.log"; then
        pass "kmsd logged its shutdown"
else
        fail "kmsd's log does not mention the shutdown"
fi

# Every client ends by itself (kmsctl's own bound is 30 s; wait a bit more).
for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
done

ok=0 refused=0 after_term=0
for ((i = 0; i < N + L; i++)); do
        read -r rc key end <"burst/$i.rc" || { fail "request $i left no exit status"; continue; }
        case $rc in
        0)
                pem=ec.pem
                [[ $key == burst/rsa ]] && pem=rsa.pem
                if openssl dgst -sha256 -verify "$pem" -signature "burst/$i.sig" data >/dev/null 2>&1; then
                        ok=$((ok + 1))
                        if ((i < N)) && awk -v a="$end" -v b="$term_at" 'BEGIN { exit !(a > b) }'; then
                                after_term=$((after_term + 1))
                        fi
                else
                        fail "request $i ($key) succeeded but openssl does not verify its signature"
                fi
                ;;
        124 | 137)
                fail "request $i ($key) hung: kmsctl was still waiting after 30 s"
                ;;
        1)
                # A clear error: ShuttingDown while kmsd drains its queue, or
                # kmsd is no longer on the bus. NoReply means kmsd took the
                # request and exited without answering it, which the API
                # (ShuttingDown: "takes no new work") rules out.
                if grep -Eq "NoReply|did not receive a reply|disconnected from message bus without replying" "burst/$i.err"; then
                        fail "request $i ($key) was dropped without a reply: $(head -n1 "burst/$i.err")"
                elif grep -Eq "ShuttingDown|not reachable|ServiceUnknown|NameHasNoOwner|Disconnected" "burst/$i.err" &&
                        ! grep -Eq "$KMS_SANITIZER_RE" "burst/$i.err"; then
                        refused=$((refused + 1))
                        echo "request $i: $(head -n1 "burst/$i.err")"
                else
                        fail "request $i ($key) failed without a clear reason: $(cat "burst/$i.err")"
                fi
                if [[ -s "burst/$i.sig" ]]; then
                        fail "request $i failed but left a signature file"
                fi
                ;;
        *)
                fail "request $i ($key) ended with exit $rc: $(cat "burst/$i.err")"
                ;;
        esac
done
expect_eq "every sign request succeeded or was clearly refused" "$((N + L))" "$((ok + refused))"
echo "signs: $ok succeeded ($after_term of the burst finished after SIGTERM), $refused refused"
creates_after_term=0
for i in 1 2; do
        read -r rc end <"burst/new$i.rc" 2>/dev/null || rc=missing
        if [[ $rc == 0 ]] && awk -v a="$end" -v b="$term_at" 'BEGIN { exit !(a > b) }'; then
                creates_after_term=$((creates_after_term + 1))
        fi
        case $rc in
        0) pass "create burst/new$i succeeded" ;;
        1)
                if grep -qE "ShuttingDown|not reachable|ServiceUnknown|NameHasNoOwner" "burst/new$i.err"; then
                        pass "create burst/new$i was clearly refused: $(head -n1 "burst/new$i.err")"
                else
                        fail "create burst/new$i failed without a shutdown error: $(cat "burst/new$i.err")"
                fi
                ;;
        *) fail "create burst/new$i ended with '$rc': $(cat "burst/new$i.err" 2>/dev/null)" ;;
        esac
done
# The test means something only if work was in flight at SIGTERM.
if ((after_term + creates_after_term > 0)); then
        pass "$((after_term + creates_after_term)) requests were in flight at SIGTERM and were finished"
elif ((refused > 0)); then
        pass "$refused requests were refused during the shutdown"
else
        fail "no request was in flight at SIGTERM: the burst did not test anything"
fi

# Afterwards: kmsd starts again, and its keys and the token agree.
kms_start_kmsd
check "key list --json" kmsctl key list --json
active=$(kms_json "$KMS_OUT" '" ".join(sorted(k["name"] for k in d if k["state"] == "active"))' 2>&1 || true)
check "pkcs11-tool --list-objects --type privkey" kms_p11tool --list-objects --type privkey
labels=$(sed -n 's/^[[:space:]]*label:[[:space:]]*kmsd:\(.*\)#[0-9]*$/\1/p' "$KMS_OUT" | sort | tr '\n' ' ' | sed 's/ $//')
expect_eq "the token's private keys are exactly kmsd's active keys" "$active" "$labels"
for i in 1 2; do
        read -r rc _ <"burst/new$i.rc" 2>/dev/null || rc=missing
        run kmsctl key show "burst/new$i"
        if [[ $rc == 0 ]]; then
                expect_eq "burst/new$i (created) exists after restart" 0 "$KMS_RC"
        else
                expect_eq "burst/new$i (refused) does not exist" 4 "$KMS_RC"
        fi
done
check "burst/rsa signs after the restart" kmsctl sign burst/rsa --in data --out after.sig
check "openssl verifies it" openssl dgst -sha256 -verify rsa.pem -signature after.sig data

kms_finish
