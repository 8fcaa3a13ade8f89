#!/usr/bin/env bash
# The TPM backend (tpm/) against a swtpm of its own, without kmsd or a bus:
# tpm-backend-check opens the backend as kmsd does and checks every answer
# against OpenSSL (see its header); openssl and tpm2-tools referee from
# here:
#   - the owner hierarchy gets a random auth (tpm2_changeauth), so the SRK
#     is made with the auth file; a wrong file and a file readable by
#     others are refused
#   - ECDSA, RSA PKCS#1 v1.5 and PSS signatures verify with
#     `openssl dgst -verify`
#   - no transient object is left in the TPM when the program is done
#     (tpm2_getcap handles-transient: swtpm serves one connection at a
#     time, so it runs between the program's runs; the program counts the
#     handles itself while it runs thousands of operations over more keys
#     than slots)
#   - a destroyed key's private blob is in neither the database nor its WAL
#   - what a crashed process left loaded in the TPM is flushed by the next
#     open
#   - after a swtpm restart (same state) a new process signs with a key
#     made before and decrypts what `openssl pkeyutl` encrypted with
#     RSA-OAEP-SHA-256 (blobs reloaded under the recreated SRK)
#   - swtpm stops and comes back under an open backend: keys work again
#     without reopening it
#   - with swtpm down, opening fails with a clear message, or succeeds with
#     allow_unreachable and reports the TPM unavailable
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib/harness.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../lib/swtpm.sh"
kms_require swtpm tpm2_getcap tpm2_changeauth openssl timeout od "$KMS_PYTHON"
: "${KMS_TPM_BACKEND_CHECK:?KMS_TPM_BACKEND_CHECK is not set: run this test through ctest}"
[[ -x "$KMS_TPM_BACKEND_CHECK" ]] || die "KMS_TPM_BACKEND_CHECK=$KMS_TPM_BACKEND_CHECK is not executable"
KMS_TPM_BACKEND_CHECK=$(realpath "$KMS_TPM_BACKEND_CHECK")

# Only a folder and swtpm: no bus, no token, no kmsd. The EXIT trap stops
# the background check program (if one runs), then swtpm, then removes
# the folder (kms__swtpm_on_exit → kms__on_exit).
KMS_T=$(mktemp -d "${TMPDIR:-/tmp}/kmsd-it.XXXXXXXX")
CHECK_PID=""
on_exit() {
        local rc=$?
        set +e
        if [[ -n "$CHECK_PID" ]]; then
                kms__stop_pid "$CHECK_PID" tpm-backend-check 5
        fi
        (exit "$rc")
        kms__swtpm_on_exit
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
chmod 700 "$KMS_T"
cd "$KMS_T"
# ESYS and the TCTIs print every TPM error on stderr; the backend logs the
# same at debug level (KMS_TEST_DEBUG=1 shows both).
if [[ "${KMS_TEST_DEBUG:-0}" != 1 ]]; then
        export TSS2_LOG=all+NONE
fi
DB=$KMS_T/kmsd.sqlite
CHECK_TIMEOUT=${KMS_TPM_BACKEND_TIMEOUT:-400}

kms_swtpm_start "$KMS_T/swtpm"
echo "swtpm pid $KMS_SWTPM_PID on $KMS_SWTPM_TCTI, folder $KMS_T"

# program_result DESC RC OUT ERR: one check for a tpm-backend-check run
# that exited RC with its output in the files OUT and ERR (every PASS line
# and no FAIL line, exit 0, no sanitizer report).
program_result() {
        local desc=$1 rc=$2 out=$3 err=$4 n_pass n_fail
        cat "$out"
        cat "$err" >&2 # empty unless KMS_TEST_DEBUG=1 or something went wrong
        n_pass=$(grep -c '^PASS: ' "$out" || true)
        n_fail=$(grep -c '^FAIL: ' "$out" || true)
        if ((rc == 0 && n_fail == 0 && n_pass > 0)); then
                pass "$desc: $n_pass checks passed"
        else
                fail "$desc: exited $rc with $n_fail failed and $n_pass passed checks"
        fi
        if grep -Eq "$KMS_SANITIZER_RE" "$err"; then
                fail "sanitizer report from $desc"
                grep -E -A 40 "$KMS_SANITIZER_RE" "$err" | head -n 200 >&2
        fi
}

# check_program DESC MODE [ARGS...]: run tpm-backend-check MODE ARGS.
check_program() {
        local desc=$1
        shift
        run timeout -k 5 "$CHECK_TIMEOUT" "$KMS_TPM_BACKEND_CHECK" "$@"
        program_result "$desc" "$KMS_RC" "$KMS_OUT" "$KMS_ERR"
}

# ---------------------------------------------------------------- owner auth

(
        umask 077
        echo "hex:$(kms_random_pin)" >"$KMS_T/owner-auth"
        echo "hex:$(kms_random_pin)" >"$KMS_T/wrong-auth"
        echo "hex:$(kms_random_pin)" >"$KMS_T/open-auth"
)
chmod 644 "$KMS_T/open-auth"
check "tpm2_changeauth -c owner (a random owner auth)" \
        timeout -k 5 60 tpm2_changeauth -c owner "$(cat "$KMS_T/owner-auth")"
check_program "tpm-backend-check bad-auth (wrong owner auth)" bad-auth "$KMS_SWTPM_TCTI" "$DB" "$KMS_T" \
        "$KMS_T/wrong-auth"
check_program "tpm-backend-check bad-auth (auth file readable by others)" bad-auth "$KMS_SWTPM_TCTI" "$DB" \
        "$KMS_T" "$KMS_T/open-auth"
grep -q 'chmod 600' "$KMS_OUT" && pass "the message says how to fix the file mode" ||
        fail "no 'chmod 600' in the message for an auth file readable by others"

# ---------------------------------------------------------------- create

check_program "tpm-backend-check create" create "$KMS_SWTPM_TCTI" "$DB" "$KMS_T" "$KMS_T/owner-auth"
expect_eq "transient objects left in the TPM after the program closed the backend" 0 "$(kms_tpm_handles transient)"

check "openssl verifies the ECDSA P-256 signature" \
        openssl dgst -sha256 -verify ecdsa.pem -signature ecdsa.sig data.bin
check "openssl verifies the RSA-2048 PKCS#1 v1.5 signature" \
        openssl dgst -sha256 -verify rsa-sign.pem -signature rsa-pkcs1.sig data.bin
check "openssl verifies the RSA-2048 PSS signature (salt = digest length)" \
        openssl dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest \
        -verify rsa-sign.pem -signature rsa-pss.sig data.bin
printf 'X' | dd of=data.bin bs=1 seek=0 conv=notrunc status=none
run openssl dgst -sha256 -verify ecdsa.pem -signature ecdsa.sig data.bin
if ((KMS_RC == 1)) && grep -q 'Verification failure' "$KMS_OUT"; then
        pass "openssl refuses the ECDSA signature over changed data"
else
        fail "openssl on changed data: exit $KMS_RC, $(cat "$KMS_OUT" "$KMS_ERR")"
fi

# The destroyed RSA key's private blob: gone from the database and its WAL
# (secure_delete, then a truncating checkpoint).
run "$KMS_PYTHON" - "$KMS_T/destroyed-private.bin" "$DB" "$DB-wal" <<'PY'
import os, sys
blob = open(sys.argv[1], "rb").read()
assert len(blob) > 64, "blob too short"
needle = blob[8:72]  # inside the encrypted private area
hits = [p for p in sys.argv[2:] if os.path.exists(p) and needle in open(p, "rb").read()]
print("found in: " + ", ".join(hits) if hits else "not found")
sys.exit(1 if hits else 0)
PY
if ((KMS_RC == 0)); then
        pass "a destroyed key's private blob is not in the database files ($(cat "$KMS_OUT"))"
else
        fail "a destroyed key's private blob is still on disk: $(cat "$KMS_OUT" "$KMS_ERR")"
fi
run "$KMS_PYTHON" -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT count(*) FROM tpm_keys").fetchone()[0])' "$DB"
expect_eq "rows left in tpm_keys (the two kept keys)" 2 "$(cat "$KMS_OUT")"

# ---------------------------------------------------------------- restart

head -c 48 /dev/urandom >plain.bin
check "openssl pkeyutl RSA-OAEP-SHA-256 encryption to the TPM key" \
        openssl pkeyutl -encrypt -pubin -inkey rsa-dec.pem -pkeyopt rsa_padding_mode:oaep \
        -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256 -in plain.bin -out oaep.bin

# A process that dies with keys loaded (swtpm has no resource manager, so
# they stay): the next open must flush them.
check_program "tpm-backend-check crash (exits with the SRK and a key loaded)" crash "$KMS_SWTPM_TCTI" "$DB" \
        "$KMS_T" "$KMS_T/owner-auth"
expect_eq "transient objects a crashed process left in the TPM" 2 "$(kms_tpm_handles transient)"
expect_eq "sessions a crashed process left in the TPM" 1 "$(kms_tpm_handles loaded-session)"
check_program "tpm-backend-check reopen (new process after the crash)" reopen "$KMS_SWTPM_TCTI" "$DB" "$KMS_T" \
        "$KMS_T/owner-auth"
expect_eq "transient objects left after the next process closed the backend" 0 "$(kms_tpm_handles transient)"
expect_eq "sessions left after the next process closed the backend" 0 "$(kms_tpm_handles loaded-session)"

kms_swtpm_stop
kms_swtpm_start "$KMS_T/swtpm"
echo "swtpm restarted: pid $KMS_SWTPM_PID on $KMS_SWTPM_TCTI"
check_program "tpm-backend-check reopen (new process, swtpm restarted)" reopen "$KMS_SWTPM_TCTI" "$DB" "$KMS_T" \
        "$KMS_T/owner-auth"
check "the kept key's SPKI converts to PEM" openssl pkey -pubin -inform DER -in keep.spki -out keep.pem
check "openssl verifies the signature made after the restart" \
        openssl dgst -sha256 -verify keep.pem -signature reopen.sig reopen.bin
expect_eq "transient objects left in the TPM after the reopened backend closed" 0 "$(kms_tpm_handles transient)"

# ---------------------------------------------------------------- reconnect

# wait_for FILE: up to 60 s for the program to write it.
wait_for() {
        local i
        for ((i = 0; i < 600; i++)); do
                [[ -e "$1" ]] && return 0
                kms__alive "$CHECK_PID" || return 1
                sleep 0.1
        done
        return 1
}

port=$KMS_SWTPM_PORT
timeout -k 5 "$CHECK_TIMEOUT" "$KMS_TPM_BACKEND_CHECK" reconnect "$KMS_SWTPM_TCTI" "$DB" "$KMS_T" \
        "$KMS_T/owner-auth" >"$KMS_T/reconnect.out" 2>"$KMS_T/reconnect.err" &
CHECK_PID=$!
if wait_for "$KMS_T/step1"; then
        kms_swtpm_stop
        touch "$KMS_T/go1"
        if wait_for "$KMS_T/step2"; then
                kms_swtpm_start "$KMS_T/swtpm" "$port"
                touch "$KMS_T/go2"
        else
                fail "tpm-backend-check reconnect did not reach step 2"
        fi
else
        fail "tpm-backend-check reconnect did not reach step 1"
fi
rc=0
wait "$CHECK_PID" || rc=$?
CHECK_PID=""
program_result "tpm-backend-check reconnect (swtpm stopped and restarted under an open backend)" "$rc" \
        "$KMS_T/reconnect.out" "$KMS_T/reconnect.err"
if [[ -n "$KMS_SWTPM_PID" ]]; then
        expect_eq "transient objects left in the TPM after reconnecting" 0 "$(kms_tpm_handles transient)"
fi

# ---------------------------------------------------------------- offline

tcti=$KMS_SWTPM_TCTI
kms_swtpm_stop
check_program "tpm-backend-check offline (swtpm down)" offline "$tcti" "$DB" "$KMS_T" "$KMS_T/owner-auth"

kms_finish
