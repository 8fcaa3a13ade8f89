#!/usr/bin/env bash
# The independent referee of kmsd's session envelope format v1: recomputes
# every value of tests/vectors/session-v1.txt from the two PEM keys and the
# inputs, with no kmsd code at all:
#   openssl pkeyutl -derive    Z (both ways round: Alice's and Bob's view)
#   openssl dgst -sha256       the salt over the two SPKIs
#   openssl kdf ... HKDF       the 96 bytes of keys and binding
#   python3-cryptography       AES-256-GCM (AESGCM), seal and open
# and checks that docs/sessions.md quotes the same file and the same PEMs.
# test-session-crypto checks kmsd's own code against the same file.
#
#   session-vector.sh           check (ctest: vector-session); exit 77 if a
#                               tool is missing
#   session-vector.sh --print   print the computed values in the file's
#                               order (to write the file after a change)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
vector=$here/session-v1.txt
doc=$root/docs/sessions.md

skip() {
        echo "SKIP: $*" >&2
        exit 77
}
command -v openssl >/dev/null || skip "openssl is not installed"
# Debian's python3 with python3-cryptography (scripts/deps), not whatever
# python3 comes first in PATH.
PY=/usr/bin/python3
[[ -x $PY ]] || PY=$(command -v python3) || skip "python3 is not installed"
"$PY" -c 'from cryptography.hazmat.primitives.ciphers.aead import AESGCM' 2>/dev/null ||
        skip "python3-cryptography is not installed"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

hex() { od -An -v -tx1 | tr -d ' \n'; }

# key=value lines of the vector file, comments and blank lines skipped.
declare -A want=()
order=()
while IFS= read -r line; do
        [[ -z "$line" || "$line" == \#* ]] && continue
        key=${line%%=*}
        want[$key]=${line#*=}
        order+=("$key")
done <"$vector"

declare -A got=()
got[initiator_pem]=${want[initiator_pem]}
got[responder_pem]=${want[responder_pem]}
alice=$here/${want[initiator_pem]}
bob=$here/${want[responder_pem]}

# Public keys as SubjectPublicKeyInfo DER (and PEM, for pkeyutl -peerkey).
openssl pkey -in "$alice" -pubout -outform DER -out "$tmp/alice.spki"
openssl pkey -in "$bob" -pubout -outform DER -out "$tmp/bob.spki"
openssl pkey -in "$alice" -pubout -out "$tmp/alice.pub.pem"
openssl pkey -in "$bob" -pubout -out "$tmp/bob.pub.pem"
got[spki_initiator]=$(hex <"$tmp/alice.spki")
got[spki_responder]=$(hex <"$tmp/bob.spki")

# ECDH: both sides must get the same Z.
got[z]=$(openssl pkeyutl -derive -inkey "$alice" -peerkey "$tmp/bob.pub.pem" | hex)
z_bob=$(openssl pkeyutl -derive -inkey "$bob" -peerkey "$tmp/alice.pub.pem" | hex)
if [[ "${got[z]}" != "$z_bob" ]]; then
        echo "FAIL: Alice's and Bob's ECDH disagree: ${got[z]} vs $z_bob" >&2
        exit 1
fi

got[context]=${want[context]}
# salt = SHA-256(initiator's SPKI || responder's SPKI)
got[salt]=$(cat "$tmp/alice.spki" "$tmp/bob.spki" | openssl dgst -sha256 -binary | hex)
# info = "kmsd session v1" || 0x00 || context
got[info]=$(printf 'kmsd session v1' | hex)00${got[context]}
# openssl kdf prints AA:BB:...; 96 bytes = k_i2r || k_r2i || binding.
got[okm]=$(openssl kdf -keylen 96 -kdfopt digest:SHA256 -kdfopt "hexkey:${got[z]}" \
        -kdfopt "hexsalt:${got[salt]}" -kdfopt "hexinfo:${got[info]}" HKDF | tr -d ':\n' | tr 'A-F' 'a-f')
got[k_i2r]=${got[okm]:0:64}
got[k_r2i]=${got[okm]:64:64}
got[binding]=${got[okm]:128:64}

# One message: nonce, header, GCM AAD, ciphertext, tag, envelope; then the
# envelope is opened again with the peer's view of the key.
message() {
        local m=$1 dir seq ts key
        dir=${want[${m}_direction]}
        seq=${want[${m}_seq]}
        ts=${want[${m}_timestamp_ms]}
        got[${m}_direction]=$dir
        got[${m}_seq]=$seq
        got[${m}_timestamp_ms]=$ts
        got[${m}_plaintext]=${want[${m}_plaintext]}
        got[${m}_aad]=${want[${m}_aad]}
        if [[ "$dir" == 0 ]]; then key=${got[k_i2r]}; else key=${got[k_r2i]}; fi
        got[${m}_nonce]=$(printf '%08x%016x' "$dir" "$seq")
        got[${m}_header]=$(printf '01%02x%016x%016x' "$dir" "$seq" "$ts")
        got[${m}_gcm_aad]=${got[${m}_header]}${got[${m}_aad]}
        local sealed
        sealed=$("$PY" - "$key" "${got[${m}_nonce]}" "${got[${m}_plaintext]}" "${got[${m}_gcm_aad]}" <<'EOF'
import sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
key, nonce, pt, aad = (bytes.fromhex(a) for a in sys.argv[1:5])
ct = AESGCM(key).encrypt(nonce, pt, aad)  # ciphertext || 16-byte tag
assert AESGCM(key).decrypt(nonce, ct, aad) == pt
print(ct.hex())
EOF
        )
        got[${m}_ciphertext]=${sealed:0:${#sealed}-32}
        got[${m}_tag]=${sealed: -32}
        got[${m}_envelope]=${got[${m}_header]}$sealed
}
message m1
message m2

if [[ "${1:-}" == "--print" ]]; then
        for k in "${order[@]}"; do
                echo "$k=${got[$k]:-}"
        done
        exit 0
fi

fail=0
for k in "${order[@]}"; do
        if [[ -z "${got[$k]+x}" ]]; then
                echo "FAIL: $k is in $vector but not computed here" >&2
                fail=1
        elif [[ "${got[$k]}" != "${want[$k]}" ]]; then
                printf 'FAIL: %s\n  file:     %s\n  computed: %s\n' "$k" "${want[$k]}" "${got[$k]}" >&2
                fail=1
        fi
done
for k in "${!got[@]}"; do
        [[ -n "${want[$k]+x}" ]] || { echo "FAIL: $k computed but missing from $vector" >&2; fail=1; }
done

# docs/sessions.md quotes the vector file between two marker lines, and
# the two PEM keys verbatim.
doc_block=$(sed -n '/^<!-- vector: begin -->$/,/^<!-- vector: end -->$/p' "$doc" | grep -v '^<!--' | grep -v '^```')
file_block=$(grep -v '^#' "$vector" | grep -v '^$')
if [[ "$doc_block" != "$file_block" ]]; then
        echo "FAIL: the vector in docs/sessions.md differs from $vector:" >&2
        diff <(echo "$file_block") <(echo "$doc_block") >&2 || true
        fail=1
fi
for pem in "$alice" "$bob"; do
        if ! "$PY" -c 'import sys; sys.exit(0 if open(sys.argv[1]).read() in open(sys.argv[2]).read() else 1)' \
                "$pem" "$doc"; then
                echo "FAIL: docs/sessions.md does not quote $(basename "$pem") verbatim" >&2
                fail=1
        fi
done

if ((fail)); then
        exit 1
fi
echo "session-v1 vector: ${#order[@]} values recomputed with openssl and python3-cryptography, all equal"
