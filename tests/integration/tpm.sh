#!/usr/bin/env bash
# TPM keys through kmsd and kmsctl (`key create --backend tpm`), against a
# swtpm of the test's own on free loopback ports, stopped by pid. Every
# answer is judged by a referee that shares no code with kmsd: openssl
# (dgst -verify, pkeyutl -derive/-encrypt, kdf HKDF), sqlite3 on the
# tpm_keys table, tpm2-tools (tpm2_getcap) on the TPM itself.
#   algorithms  ec-p256, ec-p384, rsa-2048 (PKCS#1 v1.5 and PSS) sign and
#               verify (openssl and kmsctl verify); rsa-4096, which swtpm
#               does not have, is refused and leaves nothing behind
#   lifecycle   rotate (key public --version), revoke one version and the
#               whole key (its blobs leave tpm_keys; Sign says KeyRevoked),
#               destroy
#   crypto      derive (TPM2_ECDH_ZGen) equals openssl ECDH + HKDF; a
#               session between a TPM key and a PKCS#11 key of the same
#               kmsd, both ways; decrypt of an openssl RSA-OAEP-SHA-256
#               wrapping
#   mixed       PKCS#11 and TPM keys side by side: key list --json names
#               each key's backend, both sign
#   status      kmsctl status (--json) reports the TPM, checked against
#               tpm2_getcap properties-fixed
#   restarts    keys survive a kmsd restart, and a swtpm restart under a
#               running kmsd (no kmsd restart needed)
#   unreachable kmsd starts without its TPM: PKCS#11 keys sign, TPM keys
#               fail with Backend, status says unavailable; swtpm back,
#               TPM keys sign again without restarting kmsd
#   handles     more TPM keys than transient slots, a few hundred signs
#               round-robin from parallel clients; after kmsd exits no
#               transient object or session is left in the TPM, and after
#               a SIGKILL no more than the slots (the next kmsd flushes)
#   attest      key attest (TPM2_Certify by kmsd's AK): openssl verifies
#               the AK's signature over TPMS_ATTEST; python (struct)
#               checks magic, type, extraData == nonce, name == 0x000b ||
#               SHA-256(TPMT_PUBLIC) and the public area's point == the
#               key's SPKI; another nonce gives another attestation; the
#               AK survives a swtpm restart; PKCS#11 keys are refused
#   audit       TPM operations are in the audit export like any others
# swtpm serves one connection at a time: tpm2-tools run only while kmsd
# is stopped (or before it connects).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib/harness.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../lib/swtpm.sh"
kms_require swtpm tpm2_getcap tpm2_changeauth openssl sqlite3 pkcs11-tool cmp od timeout

# tpm2-tools print every TPM error on stderr (kmsd silences its own).
if [[ "${KMS_TEST_DEBUG:-0}" != 1 ]]; then
        export TSS2_LOG=all+NONE
fi

# First a kmsd without [tpm]: a TPM key is refused.
kms_harness_start
W=$KMS_T/work
mkdir -m 700 "$W"
cd "$W"
DB=$KMS_T/state/kmsd.db

# The ids (lower-case hex) in the TPM backend's blob table.
tpm_table_ids() {
        sqlite3 -cmd '.timeout 5000' "$DB" 'SELECT lower(hex(id)) FROM tpm_keys ORDER BY 1'
}

# backend_id NAME VERSION: the version's backend id, from key show --json.
backend_id() {
        kmsctl key show "$1" --json >"$W/show.json" && kms_json "$W/show.json" \
                "[v['backend_id'] for v in d['versions'] if v['version'] == $2][0]"
}

# in_table ID: is the id in tpm_keys?
in_table() {
        tpm_table_ids >"$W/ids.txt" || return 2
        grep -qx "$1" "$W/ids.txt"
}

# sign_verify DESC NAME PUB [kmsctl sign options] -- [openssl dgst options]:
# kmsctl signs msg, openssl and kmsctl verify the signature, which stays
# in the file $SV_SIG.
SV_N=0
SV_SIG=""
sign_verify() {
        local desc=$1 name=$2 pub=$3 sig o
        shift 3
        local kopts=() oopts=() vopts=()
        while (($# > 0)) && [[ "$1" != -- ]]; do
                kopts+=("$1")
                shift
        done
        (($# == 0)) || shift
        oopts=("$@")
        SV_N=$((SV_N + 1))
        sig=$W/$(tr '/' '_' <<<"$name")-$SV_N.sig
        SV_SIG=$sig
        check "$desc: kmsctl sign" kmsctl sign "$name" --in msg --out "$sig" "${kopts[@]}"
        check "$desc: openssl dgst -verify" openssl dgst "${oopts[@]}" -verify "$pub" -signature "$sig" msg
        # verify takes sign's options but --prehash.
        for o in "${kopts[@]}"; do [[ "$o" == --prehash ]] || vopts+=("$o"); done
        check "$desc: kmsctl verify" kmsctl verify "$name" --in msg --sig "$sig" "${vopts[@]}"
        expect_fail 1 "" kmsctl verify "$name" --in msg.changed --sig "$sig" "${vopts[@]}"
}

printf 'kmsd signs this with a key that lives in a TPM.\n' >msg
printf 'kmsd signs this with a key that lives in a TPM!\n' >msg.changed

expect_fail 1 "not enabled.*InvalidArgument" kmsctl key create early/tpm --algorithm ec-p256 --backend tpm
expect_fail 2 "pkcs11 or tpm" kmsctl key create early/x --algorithm ec-p256 --backend nvram
run kmsctl status --json
expect_eq "status --json has no tpm object without [tpm]" False "$(kms_json "$KMS_OUT" '"tpm" in d' 2>&1)"

# ---------------------------------------------------------------- swtpm

# The owner hierarchy gets an auth value, so kmsd makes its SRK with the
# owner_auth_file, as on a provisioned machine.
kms_swtpm_start "$KMS_T/swtpm"
PORT=$KMS_SWTPM_PORT
echo "swtpm pid $KMS_SWTPM_PID on $KMS_SWTPM_TCTI"
(
        umask 077
        echo "hex:$(kms_random_pin)" >"$KMS_T/owner-auth"
)
check "tpm2_changeauth -c owner (a random owner auth)" \
        timeout -k 5 60 tpm2_changeauth -c owner "$(cat "$KMS_T/owner-auth")"
# The TPM's identity, for the status check below.
run timeout -k 5 60 tpm2_getcap properties-fixed
cp "$KMS_OUT" "$W/properties-fixed.yaml"

KMS_EXTRA_CONFIG="[tpm]
enable = yes
tcti = $KMS_SWTPM_TCTI
owner_auth_file = $KMS_T/owner-auth"
kms_write_config
kms_restart_kmsd
grep -q "TPM backend on $KMS_SWTPM_TCTI" "$KMS_T/kmsd.log" && pass "kmsd logs the TPM backend" ||
        fail "no 'TPM backend on $KMS_SWTPM_TCTI' in kmsd's log"

# ---------------------------------------------------------------- algorithms

for alg in ec-p256 ec-p384 rsa-2048; do
        check "key create tpm/$alg --backend tpm" kmsctl key create "tpm/$alg" --algorithm "$alg" --backend tpm
        run kmsctl key show "tpm/$alg" --json
        backend=$(kms_json "$KMS_OUT" 'd["backend"]' 2>&1)
        # Everything below needs keys in the TPM.
        [[ "$backend" == tpm ]] || die "kmsctl key create tpm/$alg --backend tpm made a key of the backend '$backend'"
        pass "tpm/$alg is a TPM key"
        check "tpm/$alg public key" kmsctl key public "tpm/$alg" --out "tpm-$alg.pem"
done
expect_eq "the PKCS#11 token holds no object for the TPM keys" 0 "$(kms_p11_object_count)"
id=$(backend_id tpm/ec-p256 1)
if in_table "$id"; then pass "tpm/ec-p256's blobs are in tpm_keys ($id)"; else fail "tpm/ec-p256's id $id is not in tpm_keys"; fi
run openssl pkey -pubin -in tpm-ec-p384.pem -noout -text
grep -q 'NIST CURVE: P-384' "$KMS_OUT" && pass "tpm/ec-p384's public key is on P-384" ||
        fail "tpm/ec-p384's public key: $(head -c 300 "$KMS_OUT")"
run openssl pkey -pubin -in tpm-rsa-2048.pem -noout -text
grep -q 'Public-Key: (2048 bit)' "$KMS_OUT" && pass "tpm/rsa-2048's public key has 2048 bits" ||
        fail "tpm/rsa-2048's public key: $(head -c 300 "$KMS_OUT")"

sign_verify "ec-p256" tpm/ec-p256 tpm-ec-p256.pem -- -sha256
V1_SIG=$SV_SIG
sign_verify "ec-p256 sha512" tpm/ec-p256 tpm-ec-p256.pem --hash sha512 -- -sha512
sign_verify "ec-p256 --prehash (SignDigest)" tpm/ec-p256 tpm-ec-p256.pem --prehash -- -sha256
sign_verify "ec-p384" tpm/ec-p384 tpm-ec-p384.pem -- -sha384
sign_verify "rsa-2048 PKCS#1 v1.5" tpm/rsa-2048 tpm-rsa-2048.pem --padding pkcs1 -- -sha256
sign_verify "rsa-2048 PSS" tpm/rsa-2048 tpm-rsa-2048.pem --padding pss -- \
        -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest

n_ids=$(tpm_table_ids | wc -l)
expect_fail 1 "InvalidArgument" kmsctl key create tpm/rsa-4096 --algorithm rsa-4096 --backend tpm
expect_fail 4 "NotFound" kmsctl key show tpm/rsa-4096
expect_eq "a refused create adds no row to tpm_keys" "$n_ids" "$(tpm_table_ids | wc -l)"
expect_fail 1 "InvalidArgument" kmsctl sign tpm/ec-p256 --in msg --out no.sig --padding pss

# ---------------------------------------------------------------- mixed

check "key create p11/ec-p256 (PKCS#11)" kmsctl key create p11/ec-p256 --algorithm ec-p256 --usage sign,derive
check "p11/ec-p256 public key" kmsctl key public p11/ec-p256 --out p11-ec-p256.pem
sign_verify "PKCS#11 ec-p256 beside the TPM" p11/ec-p256 p11-ec-p256.pem -- -sha256
run kmsctl key list --json
cp "$KMS_OUT" list.json
expect_eq "key list --json: each key's backend" \
        "p11/ec-p256=pkcs11 tpm/ec-p256=tpm tpm/ec-p384=tpm tpm/rsa-2048=tpm" \
        "$(kms_json list.json '" ".join(sorted("%s=%s" % (k["name"], k["backend"]) for k in d))' 2>&1)"
p11id=$(backend_id p11/ec-p256 1)
if in_table "$p11id"; then fail "the PKCS#11 key's id is in tpm_keys"; else pass "the PKCS#11 key is not in tpm_keys"; fi

# ---------------------------------------------------------------- status

run kmsctl status --json
cp "$KMS_OUT" status.json
# properties-fixed: TPM2_PT_MANUFACTURER value: "IBM"; the firmware as
# kmsd prints it: the two 16-bit halves of FIRMWARE_VERSION_1 and _2.
want_manu=$(sed -n '/^TPM2_PT_MANUFACTURER:/,/value:/s/.*value: *"\(.*\)".*/\1/p' properties-fixed.yaml | head -n1)
fw_raw() { sed -n "/^TPM2_PT_FIRMWARE_VERSION_$1:/,/raw:/s/.*raw: *\(0x[0-9A-Fa-f]*\).*/\1/p" properties-fixed.yaml | head -n1; }
fw1=$(fw_raw 1)
fw2=$(fw_raw 2)
want_fw=""
[[ -z "$fw1" || -z "$fw2" ]] || want_fw="$((fw1 >> 16)).$((fw1 & 0xffff)).$((fw2 >> 16)).$((fw2 & 0xffff))"
want_min=$(sed -n '/^TPM2_PT_HR_TRANSIENT_MIN:/,/raw:/s/.*raw: *\(0x[0-9A-Fa-f]*\).*/\1/p' properties-fixed.yaml | head -n1)
expect_eq "status: tpm.available" True "$(kms_json status.json 'd["tpm"]["available"]' 2>&1)"
expect_eq "status: tpm.tcti" "$KMS_SWTPM_TCTI" "$(kms_json status.json 'd["tpm"]["tcti"]' 2>&1)"
expect_eq "status: tpm.manufacturer = tpm2_getcap's TPM2_PT_MANUFACTURER" "${want_manu:-?}" \
        "$(kms_json status.json 'd["tpm"]["manufacturer"]' 2>&1)"
expect_eq "status: tpm.firmware = tpm2_getcap's FIRMWARE_VERSION_1/2" "${want_fw:-?}" \
        "$(kms_json status.json 'd["tpm"]["firmware"]' 2>&1)"
expect_eq "status: tpm.transient_max = TPM2_PT_HR_TRANSIENT_MIN" "$((${want_min:-0}))" \
        "$(kms_json status.json 'd["tpm"]["transient_max"]' 2>&1)"
expect_eq "status: 0 <= tpm.transient_free < transient_max (the SRK holds one)" True \
        "$(kms_json status.json '0 <= d["tpm"]["transient_free"] < d["tpm"]["transient_max"]' 2>&1)"
expect_eq "status: PKCS#11 token fields unchanged" "pkcs11 kmsd" \
        "$(kms_json status.json 'd["backend"] + " " + d["token_label"]' 2>&1)"
run kmsctl status
grep -Eq "^TPM: +$want_manu, .*firmware $want_fw \($KMS_SWTPM_TCTI\)$" "$KMS_OUT" &&
        pass "kmsctl status names the TPM: $(grep '^TPM:' "$KMS_OUT")" || fail "kmsctl status: $(cat "$KMS_OUT")"
grep -Eq "^TPM transient slots: [0-9]+ free of $((${want_min:-0}))$" "$KMS_OUT" &&
        pass "kmsctl status shows the transient slots" || fail "kmsctl status: $(cat "$KMS_OUT")"

# ---------------------------------------------------------------- lifecycle

check "rotate tpm/ec-p256" kmsctl key rotate tpm/ec-p256 --json
expect_eq "rotated to version 2" 2 "$(kms_json "$KMS_OUT" 'd["version"]' 2>&1)"
check "key public --version 1" kmsctl key public tpm/ec-p256 --version 1 --out v1.pem
check "key public --version 2" kmsctl key public tpm/ec-p256 --version 2 --out v2.pem
check "key public (primary)" kmsctl key public tpm/ec-p256 --out primary.pem
check "version 1 is the key made before the rotation" cmp v1.pem tpm-ec-p256.pem
check "the primary is version 2" cmp v2.pem primary.pem
if cmp -s v1.pem v2.pem; then fail "versions 1 and 2 have the same public key"; else pass "version 2 is a new key pair"; fi
sign_verify "ec-p256 after the rotation (v2)" tpm/ec-p256 v2.pem -- -sha256
check "an old signature still verifies with --version 1" \
        kmsctl verify tpm/ec-p256 --in msg --sig "$V1_SIG" --version 1
id1=$(backend_id tpm/ec-p256 1)
id2=$(backend_id tpm/ec-p256 2)
if in_table "$id1" && in_table "$id2"; then pass "both versions' blobs are in tpm_keys"; else fail "tpm_keys lacks $id1 or $id2"; fi

check "revoke tpm/ec-p256 version 1" kmsctl key revoke tpm/ec-p256 --version 1 --reason superseded
if in_table "$id1"; then fail "revoked version 1 ($id1) is still in tpm_keys"; else pass "version 1's blobs left tpm_keys"; fi
if in_table "$id2"; then pass "version 2's blobs stay"; else fail "version 2 ($id2) left tpm_keys with version 1"; fi
sign_verify "ec-p256 v2 after v1's revocation" tpm/ec-p256 v2.pem -- -sha256

check "revoke tpm/ec-p256 (every version)" kmsctl key revoke tpm/ec-p256 --reason compromised --note "tpm test"
if in_table "$id2"; then fail "revoked version 2 ($id2) is still in tpm_keys"; else pass "version 2's blobs left tpm_keys"; fi
expect_fail 1 "KeyRevoked" kmsctl sign tpm/ec-p256 --in msg --out no.sig
expect_fail 1 "KeyRevoked" kmsctl sign tpm/ec-p256 --in msg --out no.sig --prehash

check "key create tpm/doomed" kmsctl key create tpm/doomed --algorithm ec-p256 --backend tpm
iddoom=$(backend_id tpm/doomed 1)
check "key destroy tpm/doomed" kmsctl key destroy tpm/doomed --now --yes
if in_table "$iddoom"; then fail "destroyed key ($iddoom) is still in tpm_keys"; else pass "a destroyed key's blobs left tpm_keys"; fi
expect_fail 1 "KeyDestroyed" kmsctl sign tpm/doomed --in msg --out no.sig
if ls no.sig >/dev/null 2>&1; then fail "a refused sign wrote no.sig"; else pass "refused signs wrote no file"; fi

# ---------------------------------------------------------------- derive

check "key create tpm/dh (ec-p256, sign and derive)" kmsctl key create tpm/dh --algorithm ec-p256 --usage sign,derive --backend tpm
check "tpm/dh public key" kmsctl key public tpm/dh --out tpm-dh.pem
check "openssl makes the peer's P-256 key" openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out peer.pem
check "the peer's public key" openssl pkey -in peer.pem -pubout -out peer.pub.pem
Z=$(openssl pkeyutl -derive -inkey peer.pem -peerkey tpm-dh.pem | hex)
INFO_HEX=$(printf 'tpm test' | hex)
check "derive with the TPM key" \
        kmsctl derive tpm/dh --peer peer.pub.pem --salt 00112233 --info 'tpm test' --length 42 --out d1.bin
expect_eq "TPM derive = openssl ECDH + HKDF" "$(hkdf "$Z" 00112233 "$INFO_HEX" 42)" "$(hex <d1.bin)"
check "derive with the defaults" kmsctl derive tpm/dh --peer peer.pub.pem --out d2.bin
expect_eq "TPM derive (no salt, no info, 32 bytes) = openssl" "$(hkdf "$Z" "" "" 32)" "$(hex <d2.bin)"
sign_verify "tpm/dh signs too" tpm/dh tpm-dh.pem -- -sha256
expect_fail 1 "InvalidArgument" kmsctl derive tpm/ec-p384 --peer peer.pub.pem --out no.bin

check "key create tpm/dh384 (ec-p384, derive)" kmsctl key create tpm/dh384 --algorithm ec-p384 --usage derive --backend tpm
check "tpm/dh384 public key" kmsctl key public tpm/dh384 --out tpm-dh384.pem
check "openssl makes a P-384 peer" openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out peer384.pem
check "the P-384 peer's public key" openssl pkey -in peer384.pem -pubout -out peer384.pub.pem
Z384=$(openssl pkeyutl -derive -inkey peer384.pem -peerkey tpm-dh384.pem | hex)
check "derive with the TPM P-384 key" kmsctl derive tpm/dh384 --peer peer384.pub.pem --length 48 --out d3.bin
expect_eq "TPM P-384 derive = openssl" "$(hkdf "$Z384" "" "" 48)" "$(hex <d3.bin)"
expect_fail 1 "InvalidArgument|AccessDenied" kmsctl sign tpm/dh384 --in msg --out no.sig

# ---------------------------------------------------------------- session

# tpm/dh (TPM) and p11/ec-p256 (PKCS#11) in the same kmsd talk to each
# other.
run kmsctl session open tpm/dh --peer p11-ec-p256.pem --role initiator --context tpm-p11
((KMS_RC == 0)) && pass "session open on the TPM key (initiator)" || fail "session open tpm/dh: $(cat "$KMS_ERR")"
SA=$(cat "$KMS_OUT")
run kmsctl session open p11/ec-p256 --peer tpm-dh.pem --role responder --context tpm-p11
((KMS_RC == 0)) && pass "session open on the PKCS#11 key (responder)" || fail "session open p11: $(cat "$KMS_ERR")"
SB=$(cat "$KMS_OUT")
printf 'from the TPM key to the token key' >m1
printf 'and back from the token key' >m2
check "the TPM side seals" kmsctl session seal "$SA" --in m1 --out e1 --aad one
check "the PKCS#11 side opens" kmsctl session open-envelope "$SB" --in e1 --out p1 --aad one
check "TPM → PKCS#11 plaintext" cmp m1 p1
check "the PKCS#11 side seals" kmsctl session seal "$SB" --in m2 --out e2
check "the TPM side opens" kmsctl session open-envelope "$SA" --in e2 --out p2
check "PKCS#11 → TPM plaintext" cmp m2 p2
expect_fail 1 "Replay" kmsctl session open-envelope "$SB" --in e1 --out no.bin --aad one
check "close the TPM side" kmsctl session close "$SA"
check "close the PKCS#11 side" kmsctl session close "$SB"

# ---------------------------------------------------------------- decrypt

check "key create tpm/unwrap (rsa-2048, decrypt)" \
        kmsctl key create tpm/unwrap --algorithm rsa-2048 --usage decrypt --backend tpm
check "tpm/unwrap public key" kmsctl key public tpm/unwrap --out tpm-unwrap.pem
head -c 32 /dev/urandom >key32.bin
check "openssl wraps key32.bin to the TPM key (RSA-OAEP, SHA-256)" \
        openssl pkeyutl -encrypt -pubin -inkey tpm-unwrap.pem -pkeyopt rsa_padding_mode:oaep \
        -pkeyopt rsa_oaep_md:sha256 -in key32.bin -out wrapped.bin
check "kmsctl decrypt with the TPM key" kmsctl decrypt tpm/unwrap --in wrapped.bin --out key.out
check "the unwrapped key is the original" cmp key32.bin key.out
"$KMS_PYTHON" -c 'import sys; d = bytearray(open(sys.argv[1], "rb").read()); d[100] ^= 1; open(sys.argv[2], "wb").write(d)' \
        wrapped.bin flipped.bin
expect_fail 1 "IntegrityFailure" kmsctl decrypt tpm/unwrap --in flipped.bin --out no.out
expect_fail 1 "InvalidArgument|AccessDenied" kmsctl sign tpm/unwrap --in msg --out no.sig
expect_fail 1 "InvalidArgument" kmsctl decrypt tpm/rsa-2048 --in wrapped.bin --out no.out
if ls no.* >/dev/null 2>&1; then fail "failed operations left files: $(ls no.*)"; else pass "failed operations wrote no file"; fi

# ---------------------------------------------------------------- attest

# check_attest.py DIR NONCE_HEX KEY_PEM: what docs/tpm.md tells a person
# to check, with nothing but the files kmsctl wrote (openssl checked the
# signature already).
cat >"$W/check_attest.py" <<'PYEOF'
import hashlib, struct, subprocess, sys

class Reader:  # big-endian TPM structures, bounds-checked
    def __init__(self, b): self.b, self.o = b, 0
    def take(self, n):
        if n > len(self.b) - self.o: sys.exit("truncated structure")
        self.o += n
        return self.b[self.o - n:self.o]
    def u16(self): return struct.unpack(">H", self.take(2))[0]
    def u32(self): return struct.unpack(">I", self.take(4))[0]
    def tpm2b(self): return self.take(self.u16())
    def done(self): return self.o == len(self.b)

d, nonce, pem = sys.argv[1], bytes.fromhex(sys.argv[2]), sys.argv[3]
att = Reader(open(d + "/attest.bin", "rb").read())
pub = open(d + "/key.public", "rb").read()
name = open(d + "/key.name", "rb").read()
magic, typ = att.u32(), att.u16()
assert magic == 0xFF544347, "magic %#x is not TPM_GENERATED_VALUE" % magic
assert typ == 0x8017, "type %#x is not TPM_ST_ATTEST_CERTIFY" % typ
att.tpm2b()                      # qualifiedSigner
extra = att.tpm2b()
att.take(17 + 8)                 # clockInfo, firmwareVersion
cname = att.tpm2b()
att.tpm2b()                      # qualifiedName
assert att.done(), "bytes after TPMS_ATTEST"
assert extra == nonce, "extraData %s is not the nonce" % extra.hex()
want = b"\x00\x0b" + hashlib.sha256(pub).digest()
assert cname == want, "certified name %s != 0x000b||SHA-256(key.public)" % cname.hex()
assert name == want, "key.name is not the name of key.public"
# TPMT_PUBLIC of an ECC key: type, nameAlg, objectAttributes, authPolicy,
# symmetric, scheme, curveID, kdf, then unique.x and unique.y.
p = Reader(pub)
assert p.u16() == 0x0023, "not an ECC key"
p.u16(); p.u32(); p.tpm2b()
if p.u16() != 0x0010: p.take(4)  # symmetric: keyBits, mode
if p.u16() != 0x0010: p.take(2)  # scheme: hashAlg
p.u16()                          # curveID
if p.u16() != 0x0010: p.take(2)  # kdf: hashAlg
x, y = p.tpm2b(), p.tpm2b()
assert p.done(), "bytes after TPMT_PUBLIC"
spki = subprocess.run(["openssl", "pkey", "-pubin", "-in", pem, "-outform", "DER"],
                      check=True, capture_output=True).stdout
assert spki.endswith(b"\x04" + x + y), "the public area's point is not the key's (key public)"
print("ok: certify of", name.hex(), "with nonce", nonce.hex())
PYEOF
NONCE1=$(head -c 32 /dev/urandom | hex)
NONCE2=$(head -c 20 /dev/urandom | hex)
check "key attest tpm/dh --nonce" kmsctl key attest tpm/dh --nonce "$NONCE1" --out-dir att1 --out att1.json
check "openssl verifies the AK's signature over attest.bin" \
        openssl dgst -sha256 -verify att1/ak.pem -signature att1/attest.sig att1/attest.bin
check "TPMS_ATTEST: magic, certify, extraData = nonce, name = 0x000b||SHA-256(public), point = key public" \
        "$KMS_PYTHON" "$W/check_attest.py" att1 "$NONCE1" tpm-dh.pem
expect_eq "--out JSON holds what --out-dir wrote" True "$(kms_json att1.json "(
d['nonce'] == '$NONCE1' and d['attest'] == open('att1/attest.bin','rb').read().hex() and
d['signature'] == open('att1/attest.sig','rb').read().hex() and d['ak_pem'] == open('att1/ak.pem').read() and
d['key_public'] == open('att1/key.public','rb').read().hex() and d['key_name'] == open('att1/key.name','rb').read().hex())" 2>&1)"
check "key attest tpm/dh with another nonce" kmsctl key attest tpm/dh --nonce "$NONCE2" --out-dir att2
check "... verifies" openssl dgst -sha256 -verify att2/ak.pem -signature att2/attest.sig att2/attest.bin
check "... and carries that nonce" "$KMS_PYTHON" "$W/check_attest.py" att2 "$NONCE2" tpm-dh.pem
if cmp -s att1/attest.bin att2/attest.bin; then fail "two nonces gave the same attestation"; else pass "another nonce, another attestation"; fi
check "the same AK both times" cmp att1/ak.pem att2/ak.pem
check "key attest tpm/ec-p384 (random nonce)" kmsctl key attest tpm/ec-p384 --out-dir att3
check "... verifies" openssl dgst -sha256 -verify att3/ak.pem -signature att3/attest.sig att3/attest.bin
check "... P-384 key, random 32-byte nonce" "$KMS_PYTHON" "$W/check_attest.py" att3 "$(hex <att3/nonce.bin)" tpm-ec-p384.pem
expect_eq "the default nonce is 32 bytes" 32 "$(wc -c <att3/nonce.bin | tr -d ' ')"
if openssl dgst -sha256 -verify att1/ak.pem -signature att1/attest.sig att2/attest.bin >/dev/null 2>&1; then
        fail "a signature verifies over another attestation"
else pass "the signature does not verify over another attestation"; fi
expect_fail 1 "only TPM keys.*InvalidArgument" kmsctl key attest p11/ec-p256 --out-dir no.att
expect_fail 2 "at most 64" kmsctl key attest tpm/dh --nonce "$(printf '%0130d' 0)" --out-dir no.att
expect_fail 1 "KeyRevoked" kmsctl key attest tpm/ec-p256 --out-dir no.att

# ---------------------------------------------------------------- kmsd restart

kms_restart_kmsd
sign_verify "ec-p384 after a kmsd restart" tpm/ec-p384 tpm-ec-p384.pem -- -sha384
sign_verify "rsa-2048 after a kmsd restart" tpm/rsa-2048 tpm-rsa-2048.pem --padding pss -- \
        -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest
check "derive after a kmsd restart" kmsctl derive tpm/dh --peer peer.pub.pem --out d4.bin
check "same secret as before the restart" cmp d2.bin d4.bin
check "decrypt after a kmsd restart" kmsctl decrypt tpm/unwrap --in wrapped.bin --out key2.out
check "same plaintext" cmp key32.bin key2.out

# ---------------------------------------------------------------- swtpm restart

# Same state folder and port: the same owner seed, so the same SRK;
# kmsd's loaded objects are gone. kmsd reconnects on the next call.
kms_swtpm_stop
kms_swtpm_start "$KMS_T/swtpm" "$PORT"
echo "swtpm restarted: pid $KMS_SWTPM_PID on $KMS_SWTPM_TCTI"
sign_verify "ec-p256 (tpm/dh) after a swtpm restart, kmsd still running" tpm/dh tpm-dh.pem -- -sha256
sign_verify "rsa-2048 after the swtpm restart" tpm/rsa-2048 tpm-rsa-2048.pem -- -sha256
check "derive after the swtpm restart" kmsctl derive tpm/dh --peer peer.pub.pem --out d5.bin
check "same secret" cmp d2.bin d5.bin
check "decrypt after the swtpm restart" kmsctl decrypt tpm/unwrap --in wrapped.bin --out key3.out
check "same plaintext" cmp key32.bin key3.out
expect_eq "status: the TPM is available again" True "$(kms_status_field tpm_available 2>&1)"
check "key attest after the swtpm restart" kmsctl key attest tpm/dh --nonce "$NONCE1" --out-dir att4
check "... verifies" openssl dgst -sha256 -verify att4/ak.pem -signature att4/attest.sig att4/attest.bin
check "... and checks" "$KMS_PYTHON" "$W/check_attest.py" att4 "$NONCE1" tpm-dh.pem
check "the AK (reloaded from its blobs) is the same" cmp att1/ak.pem att4/ak.pem

# ---------------------------------------------------------------- unreachable

check "a signature to verify later" kmsctl sign tpm/ec-p384 --in msg --out back-before.sig
kms_stop_kmsd

# A wrong owner auth is not "unreachable": kmsd does not start, and says
# which file to fix. (kmsd is stopped: swtpm serves one client at a time.)
(
        umask 077
        echo "hex:$(kms_random_pin)" >"$KMS_T/wrong-auth"
)
sed "s#^owner_auth_file = .*#owner_auth_file = $KMS_T/wrong-auth#" "$KMS_T/kmsd.conf" >"$KMS_T/kmsd-wrong.conf"
run timeout -k 5 60 env SOFTHSM2_CONF="$KMS_T/softhsm2.conf" "$KMSD_BIN" --config "$KMS_T/kmsd-wrong.conf" \
        --bus-address "$KMSD_BUS_ADDRESS"
if ((KMS_RC != 0 && KMS_RC != 124)) && grep -q "$KMS_T/wrong-auth" "$KMS_ERR"; then
        pass "a wrong owner auth stops kmsd (exit $KMS_RC): $(grep -m1 wrong-auth "$KMS_ERR")"
else
        fail "kmsd with a wrong owner auth: exit $KMS_RC, $(tail -n 5 "$KMS_ERR")"
fi
if grep -Eq "$KMS_SANITIZER_RE" "$KMS_ERR"; then
        fail "sanitizer report from kmsd with a wrong owner auth"
        grep -E -A 40 "$KMS_SANITIZER_RE" "$KMS_ERR" | head -n 100 >&2
fi

kms_swtpm_stop
kms_start_kmsd
pass "kmsd starts with its TPM unreachable"
grep -q "TPM ($KMS_SWTPM_TCTI) unreachable" "$KMS_T/kmsd.log" && pass "kmsd logs that the TPM is unreachable" ||
        fail "no 'TPM ($KMS_SWTPM_TCTI) unreachable' in kmsd's log"
sign_verify "PKCS#11 key while the TPM is unreachable" p11/ec-p256 p11-ec-p256.pem -- -sha256
expect_fail 1 "Backend" kmsctl sign tpm/ec-p384 --in msg --out no.sig
# A clear error: it says the TPM (upper case: key names here are lower
# case) cannot be reached, not only "Input/output error".
grep -E "TPM" "$KMS_ERR" | grep -Eqi "unreachable|unavailable|cannot reach|not reachable|cannot be reached" &&
        pass "the error says the TPM is unreachable: $(head -c 300 "$KMS_ERR")" ||
        fail "the Backend error does not say that the TPM is unreachable: $(cat "$KMS_ERR")"
expect_fail 1 "Backend" kmsctl derive tpm/dh --peer peer.pub.pem --out no.bin
expect_fail 1 "Backend" kmsctl decrypt tpm/unwrap --in wrapped.bin --out no.out
expect_fail 1 "Backend" kmsctl key create tpm/offline --algorithm ec-p256 --backend tpm
expect_fail 4 "NotFound" kmsctl key show tpm/offline
expect_fail 1 "Backend" kmsctl key rotate tpm/ec-p384
run kmsctl key show tpm/ec-p384 --json
expect_eq "a failed rotation changed nothing (versions)" 1 "$(kms_json "$KMS_OUT" 'd["version_count"]' 2>&1)"
check "public keys of TPM keys need no TPM" kmsctl key public tpm/ec-p384 --out offline-p384.pem
check "... and are the same" cmp offline-p384.pem tpm-ec-p384.pem
check "verify with a TPM key needs no TPM" kmsctl verify tpm/ec-p384 --in msg --sig back-before.sig
run kmsctl status --json
cp "$KMS_OUT" status-off.json
expect_eq "status --json: tpm.available is false" False "$(kms_json status-off.json 'd["tpm"]["available"]' 2>&1)"
expect_eq "status --json: unavailable_why says why" True \
        "$(kms_json status-off.json 'len(d["tpm"]["unavailable_why"]) > 0' 2>&1)"
run kmsctl status
grep -q "^TPM: *unavailable ($KMS_SWTPM_TCTI): ." "$KMS_OUT" &&
        pass "kmsctl status: $(grep '^TPM:' "$KMS_OUT")" || fail "kmsctl status without the TPM: $(cat "$KMS_OUT")"
if ls no.* >/dev/null 2>&1; then fail "failed operations left files: $(ls no.*)"; else pass "failed operations wrote no file"; fi

kms_swtpm_start "$KMS_T/swtpm" "$PORT"
# kmsd tries a new connection at most once a second.
ok=0
for ((i = 0; i < 30; i++)); do
        if kmsctl sign tpm/ec-p384 --in msg --out back.sig 2>/dev/null; then
                ok=1
                break
        fi
        sleep 0.2
done
((ok == 1)) && pass "the TPM key signs once swtpm is back (attempt $((i + 1)), kmsd not restarted)" ||
        fail "the TPM key still does not sign 6 s after swtpm came back"
check "openssl verifies it" openssl dgst -sha384 -verify tpm-ec-p384.pem -signature back.sig msg
sign_verify "rsa-2048 PKCS#1 after the TPM came back" tpm/rsa-2048 tpm-rsa-2048.pem -- -sha256
check "decrypt after the TPM came back" kmsctl decrypt tpm/unwrap --in wrapped.bin --out key4.out
check "same plaintext" cmp key32.bin key4.out
expect_eq "status: available again" True "$(kms_status_field tpm_available 2>&1)"
check "a TPM key can be made again" kmsctl key create tpm/offline2 --algorithm ec-p256 --backend tpm

# ---------------------------------------------------------------- handles

# More keys than the TPM has slots, signed round-robin by parallel clients.
SLOTS=$(kms_status_field tpm_transient_max)
NKEYS=$((SLOTS + 3))
for ((k = 0; k < NKEYS; k++)); do
        check "key create leak/$k" kmsctl key create "leak/$k" --algorithm ec-p256 --backend tpm
done
CLIENTS=4
PER_CLIENT=${KMS_TPM_SIGNS_PER_CLIENT:-100}
signer() { # client index: PER_CLIENT signs, key (c + i) mod NKEYS
        local c=$1 i bad=0
        for ((i = 0; i < PER_CLIENT; i++)); do
                "$KMSCTL_BIN" sign "leak/$(((c + i) % NKEYS))" --in msg --out "rr-$c.sig" 2>>"rr-$c.err" ||
                        bad=$((bad + 1))
        done
        echo "$bad" >"rr-$c.bad"
}
start=$SECONDS
pids=()
for ((c = 0; c < CLIENTS; c++)); do
        signer "$c" &
        pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || true; done
bad=0
for ((c = 0; c < CLIENTS; c++)); do bad=$((bad + $(cat "rr-$c.bad" 2>/dev/null || echo "$PER_CLIENT"))); done
expect_eq "$((CLIENTS * PER_CLIENT)) signs over $NKEYS TPM keys ($SLOTS slots) in $((SECONDS - start)) s: failures" 0 "$bad"
((bad == 0)) || head -n 5 rr-*.err >&2
if grep -Eq "$KMS_SANITIZER_RE" rr-*.err; then
        fail "sanitizer report from kmsctl in the round-robin"
        cat rr-*.err >>"$KMS_T/kmsctl-sanitizer.log"
fi
check "the last key's signature verifies" kmsctl verify "leak/$(((CLIENTS - 1 + PER_CLIENT - 1) % NKEYS))" \
        --in msg --sig "rr-$((CLIENTS - 1)).sig"
run kmsctl status --json
expect_eq "status: transient_free within 0..max after the load" True \
        "$(kms_json "$KMS_OUT" '0 <= d["tpm"]["transient_free"] <= d["tpm"]["transient_max"]' 2>&1)"

kms_stop_kmsd
expect_eq "transient objects in the TPM after kmsd exited" 0 "$(kms_tpm_handles transient)"
expect_eq "sessions in the TPM after kmsd exited" 0 "$(kms_tpm_handles loaded-session)"

# A kmsd that dies with keys loaded leaves at most the slots; the next
# one flushes them.
kms_start_kmsd
for ((k = 0; k < NKEYS; k++)); do
        kmsctl sign "leak/$k" --in msg --out kill.sig >/dev/null 2>&1 || fail "sign with leak/$k before the SIGKILL"
done
kill -KILL "$KMS_KMSD_PID"
wait "$KMS_KMSD_PID" 2>/dev/null || true
KMS_KMSD_PID=""
left=$(kms_tpm_handles transient)
if ((left >= 0 && left <= SLOTS)); then
        pass "a killed kmsd left $left transient objects (<= $SLOTS slots)"
else
        fail "a killed kmsd left $left transient objects (more than the $SLOTS slots, or tpm2_getcap failed)"
fi
kms_start_kmsd
sign_verify "ec-p384 after a killed kmsd" tpm/ec-p384 tpm-ec-p384.pem -- -sha384

# ---------------------------------------------------------------- audit

check "audit export" kmsctl audit export --out audit.jsonl
chk_audit() { # DESC PYTHON-CONDITION on r
        local n
        n=$("$KMS_PYTHON" -c '
import json, sys
n = 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    if eval(sys.argv[2]):
        n += 1
print(n)' audit.jsonl "$2" 2>&1)
        if [[ "$n" =~ ^[0-9]+$ ]] && ((n > 0)); then pass "audit: $1 ($n records)"; else fail "audit: $1: $n"; fi
}
chk_audit "CreateKey of a TPM key" 'r["operation"] == "CreateKey" and r["key"] == "tpm/ec-p384" and r["result"] == "ok"'
chk_audit "Sign with a TPM key" 'r["operation"] == "Sign" and r["key"] == "tpm/rsa-2048" and r["result"] == "ok"'
chk_audit "Derive with a TPM key" 'r["operation"] == "Derive" and r["key"] == "tpm/dh" and r["result"] == "ok"'
chk_audit "Decrypt with a TPM key" 'r["operation"] == "Decrypt" and r["key"] == "tpm/unwrap" and r["result"] == "ok"'
chk_audit "RevokeKey of a TPM key" 'r["operation"] == "RevokeKey" and r["key"] == "tpm/ec-p256" and r["result"] == "ok"'
chk_audit "a Sign refused while the TPM was unreachable" \
        'r["operation"] == "Sign" and r["key"] == "tpm/ec-p384" and r["result"] == "Backend"'
check "audit pubkey --all" kmsctl audit pubkey --all --out audit-keys.pem
check "audit verify (chain and checkpoints)" kmsctl audit verify audit.jsonl --pubkey audit-keys.pem

# The kmsd after the SIGKILL flushed what the killed one left: after it
# exits, nothing is left.
kms_stop_kmsd
expect_eq "transient objects after the next kmsd exited" 0 "$(kms_tpm_handles transient)"
expect_eq "sessions after the next kmsd exited" 0 "$(kms_tpm_handles loaded-session)"
# swtpm's state is in $KMS_T, which kms_finish removes: stop it first.
kms_swtpm_stop

kms_finish
