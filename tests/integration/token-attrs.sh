#!/usr/bin/env bash
# What kmsd leaves in the token, seen by pkcs11-tool and by p11-probe (a
# small PKCS#11 reader that shares no code with kmsd): private keys labelled
# kmsd:<name>#1 whose CKA_ID is the backend_id kmsd reports, sensitive,
# never extractable, private, token objects; their secret value cannot be
# read; after destroy the objects are gone.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib/harness.sh"
kms_require pkcs11-tool openssl
: "${KMS_P11_PROBE:?KMS_P11_PROBE is not set: run this test through ctest}"

kms_harness_start
cd "$KMS_T"

expect_eq "empty token before any key" "0" "$(kms_p11_object_count)"

declare -A alg=([chat/alice]=ec-p256 [chat/bob]=ec-p384 [svc/rsa]=rsa-2048)
for name in chat/alice chat/bob svc/rsa; do
        check "key create $name ${alg[$name]}" kmsctl key create "$name" --algorithm "${alg[$name]}"
done

# A listing without login shows no private key: CKA_PRIVATE is true.
run timeout 60 pkcs11-tool --module "$KMS_PKCS11_MODULE" --token-label kmsd --list-objects
if ((KMS_RC == 0)) && ! grep -q "Private Key Object" "$KMS_OUT"; then
        pass "without login no private key object is visible (CKA_PRIVATE)"
else
        fail "private key objects visible without login (rc $KMS_RC): $(cat "$KMS_OUT")"
fi

check "pkcs11-tool --login --list-objects" kms_p11tool --list-objects
cp "$KMS_OUT" objects.txt
expect_eq "three private keys in the token (besides the audit key)" "3" "$(kms_p11_count_objects 'Private Key Object' <objects.txt)"
# kmsd's audit key (issue 6) is in the token too: one key pair, labelled
# kmsd-audit#1, not a key of the key table.
expect_eq "the audit key pair is in the token" "2" "$(grep -c 'label: *kmsd-audit#1$' objects.txt || true)"

for name in chat/alice chat/bob svc/rsa; do
        label="kmsd:$name#1"
        # The p11-probe's view of the object.
        run "$KMS_P11_PROBE" "$KMS_PKCS11_MODULE" kmsd "$KMS_T/pin" "$label"
        probe=$(cat "$KMS_OUT")
        if ((KMS_RC != 0)) || [[ $(grep -c . <<<"$probe") -ne 1 ]]; then
                fail "p11-probe finds not exactly one private key labelled $label (rc $KMS_RC): $probe $(cat "$KMS_ERR")"
                continue
        fi
        pass "exactly one private key labelled $label"
        for attr in token=1 private=1 sensitive=1 extractable=0 always_sensitive=1 never_extractable=1 \
                value=CKR_ATTRIBUTE_SENSITIVE; do
                if grep -qw -- "$attr" <<<"$probe"; then
                        pass "$label: $attr"
                else
                        fail "$label: expected $attr, probe says: $probe"
                fi
        done
        probe_id=$(sed -n 's/.* id=\([0-9a-f]*\) .*/\1/p' <<<"$probe")

        # pkcs11-tool's own view: the Access line of that private key.
        block=$(awk -v want="$label" '
                /Object;/ { if (found) exit; priv = ($0 ~ /^Private Key Object/); buf = $0; next }
                { buf = buf "\n" $0 }
                priv && /^[ \t]*label:/ { l = $0; sub(/^[ \t]*label:[ \t]*/, "", l); if (l == want) found = 1 }
                END { if (found) print buf }
        ' objects.txt)
        access=$(grep -E '^[[:space:]]*Access:' <<<"$block" || true)
        if grep -q "never extractable" <<<"$access" && grep -qw "sensitive" <<<"$access" &&
                ! grep -Eq '(^|, |:[[:space:]]+)extractable' <<<"$access"; then
                pass "pkcs11-tool: $label $access"
        else
                fail "pkcs11-tool: $label Access line wrong or missing: '$access' in: $block"
        fi
        p11_id=$(sed -n 's/^[[:space:]]*ID:[[:space:]]*\([0-9a-f]*\).*/\1/p' <<<"$block" | head -n1)

        # kmsd's view: versions[0].backend_id is the object's CKA_ID.
        run kmsctl key show "$name" --json
        backend_id=$(kms_json "$KMS_OUT" 'd["versions"][0]["backend_id"]' 2>/dev/null || echo "?")
        expect_eq "$label: backend_id = pkcs11-tool ID" "$p11_id" "$backend_id"
        expect_eq "$label: backend_id = probe CKA_ID" "$probe_id" "$backend_id"
        expect_eq "$label: CKA_ID is 16 bytes" 32 "${#probe_id}"

        # pkcs11-tool --id finds the object; the public key it holds is the
        # one kmsd exports.
        run kms_p11tool --read-object --type pubkey --id "$backend_id" -o "pub-${name//\//_}.der"
        kmsctl key public "$name" --der >"kmsd-${name//\//_}.der" 2>/dev/null || true
        if [[ -s "pub-${name//\//_}.der" ]]; then
                a=$(openssl pkey -pubin -inform DER -in "pub-${name//\//_}.der" -outform DER 2>/dev/null | openssl dgst -sha256 -r | cut -d' ' -f1)
                b=$(openssl dgst -sha256 -r <"kmsd-${name//\//_}.der" | cut -d' ' -f1)
                expect_eq "$label: token public key = kmsctl key public" "$a" "$b"
        else
                # pkcs11-tool cannot turn every public key into DER (OpenSC
                # 0.23 fails on P-384); compare the EC point it lists
                # instead: an OCTET STRING (04 len) around the point that
                # ends kmsd's SPKI.
                pub=$(awk -v want="$label" '
                        /Object;/ { if (found) exit; pubk = ($0 ~ /^Public Key Object/); buf = $0; next }
                        { buf = buf "\n" $0 }
                        pubk && /^[ \t]*label:/ { l = $0; sub(/^[ \t]*label:[ \t]*/, "", l); if (l == want) found = 1 }
                        END { if (found) print buf }
                ' objects.txt)
                point=$(sed -n 's/^[[:space:]]*EC_POINT:[[:space:]]*\([0-9a-f]*\).*/\1/p' <<<"$pub" | head -n1)
                point=${point:4}
                spki=$(od -An -v -tx1 "kmsd-${name//\//_}.der" | tr -d ' \n')
                if [[ -n "$point" && "$spki" == *"$point" ]]; then
                        pass "$label: the token's public EC point is the one in kmsctl's SPKI"
                else
                        fail "$label: no public key object matching kmsctl key public (point '$point'): $pub"
                fi
        fi

        # The private value cannot be read: pkcs11-tool writes nothing.
        rm -f secret.bin
        run kms_p11tool --read-object --type privkey --id "$backend_id" -o secret.bin
        if [[ -s secret.bin ]]; then
                fail "$label: pkcs11-tool read private key material ($(stat -c %s secret.bin) bytes)"
        else
                pass "$label: pkcs11-tool cannot read the private key (rc $KMS_RC: $(head -c 120 "$KMS_ERR" "$KMS_OUT" | tr '\n' ' '))"
        fi
        rm -f secret.bin
done

# A usage other than sign is visible on the object.
check "key create chat/dh --usage derive" kmsctl key create chat/dh --algorithm ec-p256 --usage sign,derive
check "pkcs11-tool --list-objects" kms_p11tool --list-objects --type privkey
if awk '/label:[ \t]*kmsd:chat\/dh#1/ {f=1} f && /Usage:/ {print; exit}' "$KMS_OUT" | grep -q derive; then
        pass "kmsd:chat/dh#1 allows derive"
else
        fail "kmsd:chat/dh#1 Usage lacks derive: $(cat "$KMS_OUT")"
fi
check "key destroy chat/dh" kmsctl key destroy chat/dh --yes

# Destroy: the objects of that key are gone, the others stay.
before=$(kms_p11_object_count)
check "key destroy chat/alice" kmsctl key destroy chat/alice --yes
check "pkcs11-tool --list-objects after destroy" kms_p11tool --list-objects
if grep -qF "kmsd:chat/alice#" "$KMS_OUT"; then
        fail "objects labelled kmsd:chat/alice# are still in the token: $(cat "$KMS_OUT")"
else
        pass "no object labelled kmsd:chat/alice# is left"
fi
if grep -qF "kmsd:chat/bob#1" "$KMS_OUT" && grep -qF "kmsd:svc/rsa#1" "$KMS_OUT"; then
        pass "the other keys' objects stay"
else
        fail "destroying chat/alice took other objects with it: $(cat "$KMS_OUT")"
fi
after=$(kms_p11_object_count)
if ((after < before)); then pass "object count went from $before to $after"; else fail "object count $before -> $after after destroy"; fi
run "$KMS_P11_PROBE" "$KMS_PKCS11_MODULE" kmsd "$KMS_T/pin" "kmsd:chat/alice#1"
expect_eq "p11-probe finds no kmsd:chat/alice#1" "" "$(cat "$KMS_OUT")"

for name in chat/bob svc/rsa; do
        check "key destroy $name" kmsctl key destroy "$name" --yes
done
expect_eq "token empty after destroying every key" "0" "$(kms_p11_object_count)"

kms_finish
