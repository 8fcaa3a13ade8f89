#!/usr/bin/env bash
# The PKCS#11 backend's derive (ECDH in the token) and decrypt (RSA-OAEP
# with SHA-256) operations against a SoftHSMv2 token of their own, without
# kmsd or a bus: backend-ops-check opens the backend as kmsd does and
# checks every answer against OpenSSL (see its header). Afterwards
# pkcs11-tool must find nothing in the token: no derived secret and none
# of the keys the check made.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib/harness.sh"
kms_require softhsm2-util pkcs11-tool timeout od "$KMS_PKCS11_MODULE"
: "${KMS_BACKEND_OPS_CHECK:?KMS_BACKEND_OPS_CHECK is not set: run this test through ctest}"
[[ -x "$KMS_BACKEND_OPS_CHECK" ]] || die "KMS_BACKEND_OPS_CHECK=$KMS_BACKEND_OPS_CHECK is not executable"

# Only the token part of kms_harness_start: no bus, no kmsd. The EXIT trap
# (kms_harness_stop) then has no process to stop and removes the folder.
KMS_T=$(mktemp -d "${TMPDIR:-/tmp}/kmsd-it.XXXXXXXX")
trap kms__on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
chmod 700 "$KMS_T"
mkdir -m 700 "$KMS_T/tokens"
kms__write_softhsm_conf
export SOFTHSM2_CONF=$KMS_T/softhsm2.conf
(
        umask 077
        kms_random_pin >"$KMS_T/so-pin"
        kms_random_pin >"$KMS_T/pin"
)
check "softhsm2-util --init-token" softhsm2-util --init-token --free --label "$KMS_TOKEN_LABEL" \
        --so-pin "$(cat "$KMS_T/so-pin")" --pin "$(cat "$KMS_T/pin")"
cd "$KMS_T"

run timeout -k 5 "${KMS_BACKEND_OPS_TIMEOUT:-240}" "$KMS_BACKEND_OPS_CHECK" \
        "$KMS_PKCS11_MODULE" "$KMS_TOKEN_LABEL" "$KMS_T/pin"
cat "$KMS_OUT"
cat "$KMS_ERR" >&2 # empty unless KMS_TEST_DEBUG=1 or something went wrong
n_pass=$(grep -c '^PASS: ' "$KMS_OUT" || true)
n_fail=$(grep -c '^FAIL: ' "$KMS_OUT" || true)
if ((KMS_RC == 0 && n_fail == 0 && n_pass > 0)); then
        pass "backend-ops-check: $n_pass checks passed"
else
        fail "backend-ops-check exited $KMS_RC with $n_fail failed and $n_pass passed checks"
        kms__show_output
fi
if grep -Eq "$KMS_SANITIZER_RE" "$KMS_ERR"; then
        fail "sanitizer report from backend-ops-check"
        grep -E -A 40 "$KMS_SANITIZER_RE" "$KMS_ERR" | head -n 200 >&2
fi

# What another application sees in the token: nothing at all, and in
# particular no secret key (the derived secrets are session objects that
# the backend destroys at once; none may ever be a token object).
check "pkcs11-tool --login --list-objects" kms_p11tool --list-objects
expect_eq "secret-key objects left in the token" 0 "$(grep -c 'Secret Key Object' "$KMS_OUT" || true)"
expect_eq "objects left in the token" 0 "$(grep -c 'Object;' "$KMS_OUT" || true)"

kms_finish
