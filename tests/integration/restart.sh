#!/usr/bin/env bash
# Keys outlive kmsd: created before a restart, they sign after it with the
# same token and database, and the signatures verify with the public keys
# exported before the restart. A destroyed key stays destroyed.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib/harness.sh"
kms_require openssl

kms_harness_start
W=$KMS_T/work
mkdir -p "$W"
cd "$W"

keys=(keep/ec256 keep/ec384 keep/rsa gone/ec)
algs=(ec-p256 ec-p384 rsa-2048 ec-p256)
for i in "${!keys[@]}"; do
        check "key create ${keys[$i]}" kmsctl key create "${keys[$i]}" --algorithm "${algs[$i]}"
        check "key public ${keys[$i]}" kmsctl key public "${keys[$i]}"
        cp "$KMS_OUT" "before-$i.pem"
        kmsctl key show "${keys[$i]}" --json >"before-$i.json" 2>/dev/null || true
done
check "key destroy gone/ec" kmsctl key destroy gone/ec --yes
printf 'signed before and after a restart\n' >msg
check "sign before restart" kmsctl sign keep/ec256 --in msg --out before.sig

kms_restart_kmsd
pass "kmsd restarted on the same token and state"

for i in 0 1 2; do
        k=${keys[$i]}
        dgst=sha256
        [[ ${algs[$i]} == ec-p384 ]] && dgst=sha384
        check "sign $k after restart" kmsctl sign "$k" --in msg --out "after-$i.sig"
        run openssl dgst "-$dgst" -verify "before-$i.pem" -signature "after-$i.sig" msg
        if ((KMS_RC == 0)) && grep -q "Verified OK" "$KMS_OUT"; then
                pass "openssl verifies $k's new signature with the PEM exported before the restart"
        else
                fail "$k: signature after restart does not verify with the old PEM: $(cat "$KMS_OUT" "$KMS_ERR")"
        fi
        check "key public $k after restart" kmsctl key public "$k"
        if cmp -s "$KMS_OUT" "before-$i.pem"; then pass "$k: same public key"; else fail "$k: public key changed across restart"; fi
        kmsctl key show "$k" --json >"after-$i.json" 2>/dev/null || true
        for field in 'd["versions"][0]["backend_id"]' 'd["versions"][0]["fingerprint"]' 'd["created"]' 'd["owner"]' 'd["usages"]'; do
                expect_eq "$k: $field unchanged" "$(kms_json "before-$i.json" "$field" 2>&1)" "$(kms_json "after-$i.json" "$field" 2>&1)"
        done
done
check "kmsctl verify of the pre-restart signature" kmsctl verify keep/ec256 --in msg --sig before.sig
expect_fail 1 "KeyDestroyed" kmsctl sign gone/ec --in msg --out gone.sig
check "key list --all after restart" kmsctl key list --all --json
expect_eq "state of gone/ec" destroyed "$(kms_json "$KMS_OUT" '[k["state"] for k in d if k["name"] == "gone/ec"][0]' 2>&1)"
expect_eq "GetStatus keys after restart" 3 "$(kms_status_keys)"
expect_fail 1 "AlreadyExists" kmsctl key create keep/ec256 --algorithm ec-p256

# A second restart right away also works (no leftover lock or socket).
kms_restart_kmsd
check "status after the second restart" kmsctl status
check "sign after the second restart" kmsctl sign keep/rsa --in msg --out again.sig
check "openssl verifies it" openssl dgst -sha256 -verify before-2.pem -signature again.sig msg

kms_finish
