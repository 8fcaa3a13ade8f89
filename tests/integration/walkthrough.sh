#!/usr/bin/env bash
# The README walk-through, checked by independent referees: create a key,
# list/show it, export its public key, sign, let openssl verify, destroy.
# Then every algorithm signs once and openssl verifies each signature
# (EC-P256/P384, RSA-2048 PKCS#1 and PSS, RSA-3072, RSA-4096, SHA-512,
# --prehash).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib/harness.sh"
kms_require openssl

kms_harness_start
W=$KMS_T/work
mkdir -p "$W"
cd "$W"

# ---------------------------------------------------------------- create
check "key create chat/alice ec-p256" kmsctl key create chat/alice --algorithm ec-p256
check "key list" kmsctl key list
if grep -qF "chat/alice" "$KMS_OUT"; then pass "key list shows chat/alice"; else fail "key list does not show chat/alice: $(cat "$KMS_OUT")"; fi

check "key show chat/alice" kmsctl key show chat/alice
if grep -qF "chat/alice" "$KMS_OUT" && grep -qF "ec-p256" "$KMS_OUT"; then
        pass "key show names the key and its algorithm"
else
        fail "key show output lacks name or algorithm: $(cat "$KMS_OUT")"
fi

check "key show --json" kmsctl key show chat/alice --json
cp "$KMS_OUT" alice.json
if "$KMS_PYTHON" -c 'import json,sys; json.load(open(sys.argv[1]))' alice.json 2>/dev/null; then
        pass "key show --json is valid JSON"
        expect_eq "json name" "chat/alice" "$(kms_json alice.json 'd["name"]')"
        expect_eq "json algorithm" "ec-p256" "$(kms_json alice.json 'd["algorithm"]')"
        expect_eq "json state" "active" "$(kms_json alice.json 'd["state"]')"
        expect_eq "json backend" "pkcs11" "$(kms_json alice.json 'd["backend"]')"
        expect_eq "json owner is the caller" "$(id -u)" "$(kms_json alice.json 'd["owner"]')"
        expect_eq "json usages" '["sign"]' "$(kms_json alice.json 'd["usages"]')"
        expect_eq "json primary_version" "1" "$(kms_json alice.json 'd["primary_version"]')"
        expect_eq "json version_count" "1" "$(kms_json alice.json 'd["version_count"]')"
        expect_eq "json versions[0].version" "1" "$(kms_json alice.json 'd["versions"][0]["version"]')"
        expect_eq "json versions[0].state" "active" "$(kms_json alice.json 'd["versions"][0]["state"]')"
        expect_eq "json backend_id is 16 bytes hex" "True" \
                "$(kms_json alice.json 'bool(__import__("re").fullmatch("[0-9a-f]{32}", d["versions"][0]["backend_id"]))')"
        # kmsctl may print the time as Unix seconds or ISO 8601 UTC; the bus
        # carries Unix seconds (x), checked below with a raw DescribeKey.
        now=$(date +%s)
        created=$(kms_json alice.json 'd["created"] if isinstance(d["created"], int) else int(__import__("datetime").datetime.fromisoformat(d["created"].replace("Z", "+00:00")).timestamp())' 2>&1 || true)
        if [[ "$created" =~ ^[0-9]+$ ]] && ((created <= now && created > now - 600)); then
                pass "json created is a recent time ($(kms_json alice.json 'd["created"]'))"
        else
                fail "json created '$(kms_json alice.json 'd["created"]')' is not a recent time (now $now)"
        fi
        run kms_call DescribeKey s '"chat/alice"'
        bus_created=$(kms_json "$KMS_OUT" 'd[0]["created"]' 2>&1 || true)
        if [[ "$bus_created" =~ ^[0-9]+$ ]] && ((bus_created <= now && bus_created > now - 600)); then
                pass "DescribeKey created is recent Unix seconds ($bus_created)"
        else
                fail "DescribeKey created '$bus_created' is not recent Unix seconds (now $now)"
        fi
else
        fail "key show --json is not JSON: $(head -c 500 alice.json)"
fi

# ---------------------------------------------------------------- public key
check "key public (PEM)" kmsctl key public chat/alice
cp "$KMS_OUT" alice.pem
expect_eq "PEM header" "-----BEGIN PUBLIC KEY-----" "$(head -n1 alice.pem)"
check "openssl reads the PEM as a P-256 key" openssl pkey -pubin -in alice.pem -noout -text
if grep -Eq "prime256v1|P-256" "$KMS_OUT"; then pass "public key is on P-256"; else fail "public key is not P-256: $(cat "$KMS_OUT")"; fi
check "key public --der" kmsctl key public chat/alice --der
cp "$KMS_OUT" alice.der
check "openssl converts PEM to DER" openssl pkey -pubin -in alice.pem -outform DER -out alice-from-pem.der
if cmp -s alice.der alice-from-pem.der; then pass "--der equals openssl's DER of the PEM"; else fail "--der differs from openssl pkey -outform DER"; fi
fp=$(openssl dgst -sha256 -r alice.der | cut -d' ' -f1)
expect_eq "fingerprint = SHA-256 of the SPKI DER" "$fp" "$(kms_json alice.json 'd["versions"][0]["fingerprint"]')"

# ---------------------------------------------------------------- sign/verify
printf 'hello from alice\n' >msg
check "sign --in msg --out msg.sig" kmsctl sign chat/alice --in msg --out msg.sig
check "openssl verifies the ECDSA signature" openssl dgst -sha256 -verify alice.pem -signature msg.sig msg
if grep -q "Verified OK" "$KMS_OUT"; then pass "openssl says Verified OK"; else fail "openssl output: $(cat "$KMS_OUT")"; fi
check "openssl asn1parse: signature is DER" openssl asn1parse -inform DER -in msg.sig
check "kmsctl verify accepts the signature" kmsctl verify chat/alice --in msg --sig msg.sig
printf 'hello from mallory\n' >tampered
expect_fail 1 "" kmsctl verify chat/alice --in tampered --sig msg.sig
run openssl dgst -sha256 -verify alice.pem -signature msg.sig tampered
if ((KMS_RC != 0)); then pass "openssl rejects the tampered message"; else fail "openssl verified a tampered message"; fi

# ---------------------------------------------------------------- use count
# One signature so far (verify is not a use). Counts are flushed to the
# store about once a second, also when no further request comes: read the
# database itself (sqlite3 as referee) after 2.5 s of quiet.
sleep 2.5
expect_eq "use count in the database after one signature" "1" \
        "$(sqlite3 "$KMS_T/state/kmsd.db" "SELECT v.uses FROM key_versions v JOIN keys k ON k.id = v.key_id WHERE k.name = 'chat/alice'" 2>&1)"
check "key show --json after the flush" kmsctl key show chat/alice --json
cp "$KMS_OUT" alice-uses.json
expect_eq "key show reports the use" "1" "$(kms_json alice-uses.json 'd["versions"][0]["uses"]' 2>&1)"

# ---------------------------------------------------------------- status
check "status" kmsctl status
check "status --json" kmsctl status --json
cp "$KMS_OUT" status.json
expect_eq "status token_label" "kmsd" "$(kms_json status.json 'd["token_label"]' 2>&1)"
expect_eq "status keys (busctl-independent GetStatus)" "1" "$(kms_status_keys)"

# ---------------------------------------------------------------- destroy
check "key destroy --yes" kmsctl key destroy chat/alice --yes
expect_fail 1 "KeyDestroyed" kmsctl sign chat/alice --in msg --out msg2.sig
if [[ -s msg2.sig ]]; then fail "a failed sign left a signature file"; else pass "failed sign wrote no signature"; fi
check "key list after destroy" kmsctl key list
if grep -qF "chat/alice" "$KMS_OUT"; then fail "key list still shows destroyed chat/alice"; else pass "key list hides the destroyed key"; fi
check "key list --all" kmsctl key list --all
if grep -qF "chat/alice" "$KMS_OUT"; then pass "key list --all shows the tombstone"; else fail "key list --all lacks chat/alice"; fi
check "key show of a tombstone" kmsctl key show chat/alice --json
expect_eq "tombstone state" "destroyed" "$(kms_json "$KMS_OUT" 'd["state"]' 2>&1)"
expect_fail 1 "AlreadyExists" kmsctl key create chat/alice --algorithm ec-p256
expect_eq "status keys after destroy" "0" "$(kms_status_keys)"
check "status after destroy" kmsctl status

# ---------------------------------------------------------------- every algorithm
# sign_and_verify KEY FILE DGST [kmsctl sign options...] -- [openssl sigopts...]
sign_and_verify() {
        local key=$1 file=$2 dgst=$3 tag
        shift 3
        local kopts=() oopts=()
        while (($#)) && [[ $1 != -- ]]; do kopts+=("$1"); shift; done
        (($#)) && shift
        while (($#)); do oopts+=(-sigopt "$1"); shift; done
        tag="$key ${kopts[*]:-default}"
        rm -f "$file.sig"
        check "sign $tag" kmsctl sign "$key" --in "$file" --out "$file.sig" "${kopts[@]}"
        run openssl dgst "-$dgst" -verify "$key.pem" "${oopts[@]}" -signature "$file.sig" "$file"
        if ((KMS_RC == 0)) && grep -q "Verified OK" "$KMS_OUT"; then
                pass "openssl verifies $tag (-$dgst ${oopts[*]})"
        else
                fail "openssl does not verify $tag (-$dgst ${oopts[*]}): $(cat "$KMS_OUT" "$KMS_ERR")"
        fi
        local vopts=() o
        for o in "${kopts[@]}"; do [[ $o == --prehash ]] || vopts+=("$o"); done
        check "kmsctl verify $tag" kmsctl verify "$key" --in "$file" --sig "$file.sig" "${vopts[@]}"
}

head -c 3000 /dev/urandom >data
for alg in ec-p256 ec-p384 rsa-2048 rsa-3072 rsa-4096; do
        check "key create algo/$alg" kmsctl key create "algo/$alg" --algorithm "$alg"
        mkdir -p algo
        check "key public algo/$alg --out" kmsctl key public "algo/$alg" --out "algo/$alg.pem"
        run openssl pkey -pubin -in "algo/$alg.pem" -noout -text
        case $alg in
        ec-p256) want="prime256v1|P-256" ;;
        ec-p384) want="secp384r1|P-384" ;;
        rsa-*) want="Public-Key: \(${alg#rsa-} bit\)" ;;
        esac
        if ((KMS_RC == 0)) && grep -Eq "$want" "$KMS_OUT"; then
                pass "algo/$alg public key is $alg"
        else
                fail "algo/$alg public key is not $alg: $(head -c 300 "$KMS_OUT")"
        fi
done
sign_and_verify algo/ec-p256 data sha256
sign_and_verify algo/ec-p256 data sha512 --hash sha512
sign_and_verify algo/ec-p256 data sha256 --prehash
sign_and_verify algo/ec-p256 data sha384 --prehash --hash sha384
sign_and_verify algo/ec-p384 data sha384
sign_and_verify algo/ec-p384 data sha256 --hash sha256
sign_and_verify algo/rsa-2048 data sha256
sign_and_verify algo/rsa-2048 data sha256 --padding pkcs1
sign_and_verify algo/rsa-2048 data sha256 --padding pss -- rsa_padding_mode:pss rsa_pss_saltlen:digest
sign_and_verify algo/rsa-2048 data sha512 --padding pss --hash sha512 -- rsa_padding_mode:pss rsa_pss_saltlen:digest
sign_and_verify algo/rsa-2048 data sha384 --prehash --hash sha384 --padding pss -- rsa_padding_mode:pss rsa_pss_saltlen:digest
sign_and_verify algo/rsa-3072 data sha256
sign_and_verify algo/rsa-3072 data sha384 --hash sha384 --padding pss -- rsa_padding_mode:pss rsa_pss_saltlen:digest
sign_and_verify algo/rsa-4096 data sha256

# A PKCS#1 v1.5 signature must not pass as PSS and the other way round.
kmsctl sign algo/rsa-2048 --in data --out data.pkcs1.sig >/dev/null 2>&1 || true
run openssl dgst -sha256 -verify algo/rsa-2048.pem -sigopt rsa_padding_mode:pss -signature data.pkcs1.sig data
if ((KMS_RC != 0)); then pass "PKCS#1 signature does not verify as PSS"; else fail "PKCS#1 signature verified as PSS"; fi
expect_fail 1 "" kmsctl verify algo/rsa-2048 --in data --sig data.pkcs1.sig --padding pss

# ECDSA is randomized: two signatures of the same data differ, both verify.
kmsctl sign algo/ec-p256 --in data --out data.sig1 >/dev/null 2>&1 || true
kmsctl sign algo/ec-p256 --in data --out data.sig2 >/dev/null 2>&1 || true
if [[ -s data.sig1 && -s data.sig2 ]] && ! cmp -s data.sig1 data.sig2; then
        pass "two ECDSA signatures of the same data differ"
else
        fail "ECDSA signatures are missing or identical"
fi

# Signing from standard input and to standard output.
run bash -c 'printf "piped data" | "$0" --bus-address "$KMSD_BUS_ADDRESS" sign algo/ec-p256 --in - --out - >"$1"' "$KMSCTL_BIN" "$W/piped.sig"
printf 'piped data' >piped
run openssl dgst -sha256 -verify algo/ec-p256.pem -signature piped.sig piped
if ((KMS_RC == 0)); then pass "sign --in - --out - verifies"; else fail "sign from stdin to stdout: $(cat "$KMS_OUT" "$KMS_ERR")"; fi

kms_finish
