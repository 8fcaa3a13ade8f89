#!/usr/bin/env bash
# Fair queueing between callers. One uid (nobody) keeps hundreds of
# RSA-4096 signatures in flight on its own key (3 connections x 128, as the
# red team did); root's EC signatures must still be answered within a few
# of nobody's requests, not behind its whole backlog. Measured with a raw
# libdbus client (tests/integration/fair-check.c) that keeps calls in
# flight; root's latency is compared with its own latency on an idle kmsd
# in the same run.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib/harness.sh"
kms_require setpriv
: "${KMS_FAIR_CHECK:?KMS_FAIR_CHECK is not set: run this test through ctest}"
FAIR=$(realpath "$KMS_FAIR_CHECK")

export KMS_BUS_ALLOW_ALL_USERS=1
kms_harness_start
NOBODY_UID=$(id -u nobody)

check "root creates fair/root (ec-p256)" kmsctl key create fair/root --algorithm ec-p256
check "root creates fair/slow (rsa-4096) for nobody" kmsctl key create fair/slow --algorithm rsa-4096 \
        --owner "$NOBODY_UID"

# p50 and p90 of a probe output line.
p50() { sed -n 's/.*p50_ms=\([0-9.]*\).*/\1/p' <<<"$1"; }
p90() { sed -n 's/.*p90_ms=\([0-9.]*\).*/\1/p' <<<"$1"; }

idle=$("$FAIR" probe fair/root 30)
echo "idle:   $idle"
one=$(setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups \
        env KMSD_BUS_ADDRESS="$KMSD_BUS_ADDRESS" "$FAIR" probe fair/slow 5)
echo "one RSA-4096 signature alone: $one"

FLOOD_S=${KMS_FAIR_FLOOD_SECONDS:-25}
setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups \
        env KMSD_BUS_ADDRESS="$KMSD_BUS_ADDRESS" "$FAIR" flood fair/slow 3 128 "$FLOOD_S" >"$KMS_T/flood.out" 2>&1 &
flood_pid=$!
sleep 4 # nobody's queue fills up
pending=$(kms_status_field pending 2>/dev/null || echo "?")
echo "requests queued while nobody floods: $pending"
loaded=$("$FAIR" probe fair/root 30)
echo "loaded: $loaded"
wait "$flood_pid" || true
echo "$(cat "$KMS_T/flood.out")"

if [[ "$pending" =~ ^[0-9]+$ ]] && ((pending >= 50)); then
        pass "nobody keeps a backlog ($pending requests queued)"
else
        fail "the flood did not build a backlog (pending $pending): the test proves nothing"
fi
# Root waits for at most about one of nobody's signatures per worker
# (each busy with one RSA-4096 signature), not for the ~250 queued before
# it (about 60 signatures' time with 4 workers): allow 8 signatures' time,
# plus root's own and the bus's.
one_ms=$(p50 "$one")
idle_ms=$(p50 "$idle")
loaded_ms=$(p90 "$loaded")
limit=$(awk -v o="$one_ms" -v i="$idle_ms" 'BEGIN { printf "%d", 8 * o + 20 * i + 100 }')
if awk -v l="$loaded_ms" -v m="$limit" 'BEGIN { exit !(l <= m) }'; then
        pass "root's p90 under nobody's flood: ${loaded_ms} ms (idle p50 ${idle_ms} ms, limit ${limit} ms)"
else
        fail "root's p90 under nobody's flood: ${loaded_ms} ms, over ${limit} ms (idle p50 ${idle_ms} ms, one RSA-4096 signature ${one_ms} ms)"
fi
if grep -q 'errors=0' <<<"$loaded"; then pass "every probe call was answered"; else fail "probe: $loaded"; fi

kms_finish
