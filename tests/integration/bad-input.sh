#!/usr/bin/env bash
# Bad input gets a clear, named error and changes nothing: neither kmsd's key
# count nor the token's objects. Each case goes through kmsctl (which may
# refuse it itself, exit 2, naming the bad value) and, where kmsctl cannot
# send it, straight to the bus, where kmsd must answer with the documented
# org.kmsd.KeyManager1.Error.<Name>. Also: kmsd refuses to start with a
# world-readable PIN file or a config file with an unknown key.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib/harness.sh"
kms_require openssl pkcs11-tool busctl

ERR=org.kmsd.KeyManager1.Error
KMS_EXTRA_CONFIG=$'[limits]\nmax_message_bytes = 4096'
kms_harness_start
W=$KMS_T/work
mkdir -p "$W"
cd "$W"

check "key create chat/alice" kmsctl key create chat/alice --algorithm ec-p256
check "key create chat/bob" kmsctl key create chat/bob --algorithm ec-p256
check "key create svc/rsa" kmsctl key create svc/rsa --algorithm rsa-2048
kmsctl key public chat/alice >alice.pem 2>/dev/null || true
kmsctl key public chat/bob >bob.pem 2>/dev/null || true

keys0=$(kms_status_keys)
objs0=$(kms_p11_object_count)
expect_eq "three keys before the bad input" 3 "$keys0"
if ((objs0 >= 3)); then pass "token holds $objs0 objects"; else fail "token holds $objs0 objects, expected at least 3"; fi

# Nothing may change: same key count, same token objects.
unchanged() {
        local k o
        k=$(kms_status_keys)
        o=$(kms_p11_object_count)
        if [[ "$k" == "$keys0" && "$o" == "$objs0" ]]; then
                pass "unchanged after $1 (keys $k, token objects $o)"
        else
                fail "$1 changed state: keys $keys0 -> $k, token objects $objs0 -> $o"
        fi
}

# ---------------------------------------------------------------- names
long=$(printf 'a%.0s' {1..129})
for name in "" "/abs" "a/../b" "a//b" "has space" "star*" "$long" ".." "a/./b" $'new\nline'; do
        expect_fail 2 "invalid key name" kmsctl key create "$name" --algorithm ec-p256
        expect_fail 1 "$ERR.InvalidArgument" kms_call CreateKey 'ssa{sv}' "$(printf '%s' "$name" | "$KMS_PYTHON" -c 'import json,sys; print(json.dumps(sys.stdin.read()))')" '"ec-p256"' '{}'
done
# A name of exactly 128 characters is fine; checked on the bus and removed.
name128=$(printf 'b%.0s' {1..128})
check "a 128-character name is accepted" kmsctl key create "$name128" --algorithm ec-p256
check "and destroyed" kmsctl key destroy "$name128" --yes
# That tombstone no longer counts as a key, its objects are gone.
unchanged "invalid names"

# Bad names in other methods are InvalidArgument too, not NotFound.
expect_fail 1 "$ERR.InvalidArgument" kms_call DescribeKey s '"a/../b"'
expect_fail 1 "$ERR.InvalidArgument" kms_call Sign 'saya{sv}' '"/abs"' '"00"' '{}'

# ---------------------------------------------------------------- create
expect_fail 1 "$ERR.AlreadyExists|AlreadyExists" kmsctl key create chat/alice --algorithm ec-p256
expect_fail 1 "$ERR.AlreadyExists" kms_call CreateKey 'ssa{sv}' '"chat/alice"' '"rsa-2048"' '{}'
expect_fail 2 "ec-p999" kmsctl key create chat/new --algorithm ec-p999
expect_fail 1 "$ERR.InvalidArgument" kms_call CreateKey 'ssa{sv}' '"chat/new"' '"ec-p999"' '{}'
expect_fail 1 "$ERR.InvalidArgument" kms_call CreateKey 'ssa{sv}' '"chat/new"' '""' '{}'
expect_fail 2 "frob" kmsctl key create chat/new --algorithm ec-p256 --usage frob
expect_fail 1 "$ERR.InvalidArgument" kms_call CreateKey 'ssa{sv}' '"chat/new"' '"ec-p256"' '{"usages": ["as", ["frob"]]}'
expect_fail 2 "decrypt" kmsctl key create chat/new --algorithm ec-p256 --usage decrypt
expect_fail 1 "$ERR.InvalidArgument" kms_call CreateKey 'ssa{sv}' '"chat/new"' '"ec-p256"' '{"usages": ["as", ["decrypt"]]}'
expect_fail 1 "$ERR.InvalidArgument" kms_call CreateKey 'ssa{sv}' '"chat/new"' '"rsa-2048"' '{"usages": ["as", ["derive"]]}'
expect_fail 1 "$ERR.InvalidArgument" kms_call CreateKey 'ssa{sv}' '"chat/new"' '"ec-p256"' '{"usages": ["as", []]}'
expect_fail 1 "$ERR.InvalidArgument" kms_call CreateKey 'ssa{sv}' '"chat/new"' '"ec-p256"' '{"usage": ["as", ["sign"]]}'
expect_fail 1 "$ERR.InvalidArgument" kms_call CreateKey 'ssa{sv}' '"chat/new"' '"ec-p256"' '{"usages": ["s", "sign"]}'
unchanged "bad CreateKey calls"
run kmsctl key show chat/new
expect_eq "no chat/new was created (kmsctl exit)" 4 "$KMS_RC"

# ---------------------------------------------------------------- sign
printf 'some data\n' >msg
sig_of() { kmsctl sign "$1" --in msg --out "$2" >/dev/null 2>&1 || true; }
sig_of chat/alice alice.sig

expect_fail 4 "$ERR.NotFound|NotFound" kmsctl sign no/such/key --in msg --out nope.sig
if [[ -e nope.sig ]]; then fail "failed sign created nope.sig"; else pass "failed sign wrote no file"; fi
expect_fail 1 "$ERR.NotFound" kms_call Sign 'saya{sv}' '"no/such/key"' '"00"' '{}'
expect_fail 4 "NotFound" kmsctl key show no/such/key
expect_fail 4 "NotFound" kmsctl key public no/such/key
expect_fail 4 "NotFound" kmsctl key destroy no/such/key --yes

# PSS, or any padding, on an EC key.
expect_fail 1 "$ERR.InvalidArgument|InvalidArgument|pss" kmsctl sign chat/alice --in msg --out pss.sig --padding pss
expect_fail 1 "$ERR.InvalidArgument" kms_call Sign 'saya{sv}' '"chat/alice"' '"00"' '{"padding": ["s", "pss"]}'
expect_fail 1 "$ERR.InvalidArgument" kms_call Sign 'saya{sv}' '"svc/rsa"' '"00"' '{"padding": ["s", "oaep"]}'
expect_fail 1 "$ERR.InvalidArgument" kms_call Sign 'saya{sv}' '"chat/alice"' '"00"' '{"hash": ["s", "md5"]}'
# Unknown option keys and wrong variant types are named, never ignored.
run kms_busctl call org.kmsd.KeyManager1 /org/kmsd/KeyManager1 org.kmsd.KeyManager1 Sign 'saya{sv}' chat/alice 1 0 1 hashh s sha256
if ((KMS_RC != 0)) && grep -q "hashh" "$KMS_ERR"; then
        pass "busctl Sign with option 'hashh' refused naming it: $(cat "$KMS_ERR")"
else
        fail "busctl Sign with option 'hashh': rc $KMS_RC, $(cat "$KMS_OUT" "$KMS_ERR")"
fi
expect_fail 1 "$ERR.InvalidArgument" kms_call Sign 'saya{sv}' '"chat/alice"' '"00"' '{"hashh": ["s", "sha256"]}'
expect_fail 1 "$ERR.InvalidArgument" kms_call Sign 'saya{sv}' '"chat/alice"' '"00"' '{"hash": ["u", 256]}'
expect_fail 1 "$ERR.InvalidArgument" kms_call ListKeys 'a{sv}' '{"al": ["b", true]}'
expect_fail 1 "$ERR.InvalidArgument" kms_call DestroyKey 'sa{sv}' '"chat/bob"' '{"force": ["b", true]}'
expect_fail 1 "$ERR.InvalidArgument" kms_call Verify 'sayaya{sv}' '"chat/alice"' '"00"' '"00"' '{"versoin": ["u", 1]}'

# SignDigest: the digest length must match the hash.
d31=$(head -c 31 /dev/zero | od -An -v -tx1 | tr -d ' \n')
d32=$(head -c 32 /dev/zero | od -An -v -tx1 | tr -d ' \n')
d33=$(head -c 33 /dev/zero | od -An -v -tx1 | tr -d ' \n')
expect_fail 1 "$ERR.InvalidArgument" kms_call SignDigest 'saya{sv}' '"chat/alice"' "\"$d31\"" '{}'
expect_fail 1 "$ERR.InvalidArgument" kms_call SignDigest 'saya{sv}' '"chat/alice"' "\"$d33\"" '{}'
expect_fail 1 "$ERR.InvalidArgument" kms_call SignDigest 'saya{sv}' '"chat/alice"' '""' '{}'
expect_fail 1 "$ERR.InvalidArgument" kms_call SignDigest 'saya{sv}' '"chat/alice"' "\"$d32\"" '{"hash": ["s", "sha384"]}'
run kms_busctl call org.kmsd.KeyManager1 /org/kmsd/KeyManager1 org.kmsd.KeyManager1 SignDigest 'saya{sv}' chat/alice 31 $(printf '0 %.0s' {1..31}) 0
if ((KMS_RC != 0)); then pass "busctl SignDigest with 31 bytes refused: $(cat "$KMS_ERR")"; else fail "busctl SignDigest with 31 bytes signed"; fi
check "SignDigest with 32 bytes works" kms_call SignDigest 'saya{sv}' '"chat/alice"' "\"$d32\"" '{}'

# max_message_bytes = 4096 (set through the harness's extra config).
head -c 4096 /dev/urandom >at-limit
head -c 5000 /dev/urandom >over-limit
expect_eq "GetStatus max_message_bytes" 4096 "$(kms_status_field max_message_bytes)"
check "sign 4096 bytes" kmsctl sign chat/alice --in at-limit --out at-limit.sig
run openssl dgst -sha256 -verify alice.pem -signature at-limit.sig at-limit
if ((KMS_RC == 0)); then pass "openssl verifies the 4096-byte signature"; else fail "4096-byte signature does not verify"; fi
expect_fail 1 "$ERR.LimitExceeded|LimitExceeded" kmsctl sign chat/alice --in over-limit --out over.sig
if [[ -s over.sig ]]; then fail "refused sign wrote over.sig"; else pass "refused sign wrote no signature"; fi
over_hex=$(od -An -v -tx1 over-limit | tr -d ' \n')
expect_fail 1 "$ERR.LimitExceeded" kms_call Sign 'saya{sv}' '"chat/alice"' "\"$over_hex\"" '{}'
expect_fail 1 "$ERR.LimitExceeded" kms_call Verify 'sayaya{sv}' '"chat/alice"' "\"$over_hex\"" '"00"' '{}'
check "sign --prehash of 5000 bytes (SignDigest)" kmsctl sign chat/alice --in over-limit --out over.sig --prehash
run openssl dgst -sha256 -verify alice.pem -signature over.sig over-limit
if ((KMS_RC == 0)); then pass "openssl verifies the prehashed signature"; else fail "prehashed signature does not verify"; fi

# A signature made by another key does not verify.
expect_fail 1 "" kmsctl verify chat/bob --in msg --sig alice.sig
run openssl dgst -sha256 -verify bob.pem -signature alice.sig msg
if ((KMS_RC != 0)); then pass "openssl: alice's signature does not verify with bob's key"; else fail "openssl verified alice's signature with bob's key"; fi
check "alice's signature does verify with alice's key" kmsctl verify chat/alice --in msg --sig alice.sig
# Garbage as a signature is "not valid", not an error.
head -c 70 /dev/urandom >garbage.sig
expect_fail 1 "" kmsctl verify chat/alice --in msg --sig garbage.sig
run kms_call Verify 'sayaya{sv}' '"chat/alice"' '"00"' '""' '{}'
expect_eq "Verify with an empty signature is valid=false" '[false, 1]' "$(cat "$KMS_OUT")"
expect_fail 1 "$ERR.NotFound" kms_call Verify 'sayaya{sv}' '"no/such/key"' '"00"' '"00"' '{}'
expect_fail 1 "$ERR.NotFound" kms_call GetPublicKey su '"chat/alice"' 7

unchanged "bad Sign/Verify calls"

# ---------------------------------------------------------------- start-up refusals
# kms_start_kmsd_expect_fail DESC PATTERN CONFIG: kmsd must exit non-zero
# within 20 s and its output must match PATTERN.
kms_start_kmsd_expect_fail() {
        local desc=$1 pattern=$2 conf=$3 rc=0
        SOFTHSM2_CONF=$KMS_T/softhsm2.conf timeout -k 5 20 "$KMSD_BIN" --config "$conf" \
                --bus-address "$KMSD_BUS_ADDRESS" </dev/null >"$KMS_T/refused.log" 2>&1 || rc=$?
        {
                echo "=== refused start: $desc (exit $rc)"
                cat "$KMS_T/refused.log"
        } >>"$KMS_T/kmsd.log"
        if ((rc == 0 || rc == 124 || rc == 137)); then
                fail "$desc: kmsd exited $rc, expected a refusal: $(head -c 500 "$KMS_T/refused.log")"
        elif grep -Eq -- "$pattern" "$KMS_T/refused.log"; then
                pass "$desc: kmsd refuses (exit $rc): $(grep -E -- "$pattern" "$KMS_T/refused.log" | head -n1)"
        else
                fail "$desc: kmsd exited $rc but its message does not match '$pattern': $(head -c 500 "$KMS_T/refused.log")"
        fi
}

kms_stop_kmsd
chmod 0644 "$KMS_T/pin"
kms_start_kmsd_expect_fail "PIN file mode 0644" "$KMS_T/pin" "$KMS_T/kmsd.conf"
chmod 0640 "$KMS_T/pin"
kms_start_kmsd_expect_fail "PIN file mode 0640" "$KMS_T/pin" "$KMS_T/kmsd.conf"
chmod 0600 "$KMS_T/pin"

cp "$KMS_T/kmsd.conf" "$KMS_T/bad.conf"
printf '\n[daemon]\nfrobnicate = yes\n' >>"$KMS_T/bad.conf"
bad_line=$(grep -n '^frobnicate' "$KMS_T/bad.conf" | cut -d: -f1)
kms_start_kmsd_expect_fail "unknown key frobnicate" "bad\.conf:$bad_line" "$KMS_T/bad.conf"
if grep -q frobnicate "$KMS_T/refused.log"; then pass "the message names 'frobnicate'"; else fail "the message does not name 'frobnicate'"; fi
run "$KMSD_BIN" --config "$KMS_T/bad.conf" --check-config
expect_eq "--check-config exit status for the bad file" 1 "$KMS_RC"
run "$KMSD_BIN" --config "$KMS_T/kmsd.conf" --check-config
expect_eq "--check-config exit status for the good file" 0 "$KMS_RC"

cp "$KMS_T/kmsd.conf" "$KMS_T/bad2.conf"
printf '[frobnication]\nlevel = 3\n' >>"$KMS_T/bad2.conf"
bad_line=$(grep -n '^\[frobnication\]' "$KMS_T/bad2.conf" | cut -d: -f1)
kms_start_kmsd_expect_fail "unknown section" "bad2\.conf:($bad_line|$((bad_line + 1)))" "$KMS_T/bad2.conf"

sed 's/^max_message_bytes = 4096$/max_message_bytes = 12/' "$KMS_T/kmsd.conf" >"$KMS_T/bad3.conf"
bad_line=$(grep -n '^max_message_bytes' "$KMS_T/bad3.conf" | cut -d: -f1)
kms_start_kmsd_expect_fail "max_message_bytes out of range" "bad3\.conf:$bad_line" "$KMS_T/bad3.conf"

# With the PIN file fixed, kmsd starts again and nothing changed.
kms_start_kmsd
unchanged "the refused start-ups"
check "chat/alice still signs" kmsctl sign chat/alice --in msg --out after.sig
run openssl dgst -sha256 -verify alice.pem -signature after.sig msg
if ((KMS_RC == 0)); then pass "and openssl verifies it"; else fail "signature after restart does not verify"; fi

# ---------------------------------------------------------------- max_keys
# Concurrent creates cannot pass the cap together: each worker checks it
# before the token's work and again in the insert's own transaction, and
# a create refused there removes the object it made. With room for one
# more key, 8 clients race (kmsd runs workers - 1 generations at once and
# answers the others Busy, which they retry): exactly one key is made.
live=$(kms_status_keys)
kms_stop_kmsd
cp "$KMS_T/kmsd.conf" "$KMS_T/kmsd.conf.orig"
sed -i "s/^max_message_bytes = 4096\$/&\nmax_keys = $((live + 1))/" "$KMS_T/kmsd.conf"
grep -q "^max_keys = $((live + 1))\$" "$KMS_T/kmsd.conf" || die "could not set max_keys in kmsd.conf"
kms_start_kmsd
racer() { # i: create race/i, again while kmsd answers Busy
        local i=$1 try
        for ((try = 0; try < 100; try++)); do
                "$KMSCTL_BIN" key create "race/$i" --algorithm ec-p256 >"race-$i.out" 2>"race-$i.err" && return 0
                grep -q "Busy" "race-$i.err" || return 1
        done
        return 1
}
pids=()
for i in 1 2 3 4 5 6 7 8; do
        racer "$i" &
        pids+=($!)
done
made=0 refused=0 other=0
for i in 1 2 3 4 5 6 7 8; do
        if wait "${pids[$((i - 1))]}"; then
                made=$((made + 1))
        elif grep -q "LimitExceeded" "race-$i.err" && grep -q "max_keys" "race-$i.err"; then
                refused=$((refused + 1))
        else
                other=$((other + 1))
                cat "race-$i.err" >&2
        fi
done
expect_eq "8 concurrent creates with room for one: made, refused (LimitExceeded), other" "1 7 0" \
        "$made $refused $other"
expect_eq "keys after the race (GetStatus)" "$((live + 1))" "$(kms_status_keys)"
run kms_p11tool --list-objects --type privkey
expect_eq "private keys in the token labelled kmsd:race/ (pkcs11-tool)" 1 "$(grep -c 'label: *kmsd:race/' "$KMS_OUT")"
kms_stop_kmsd
mv "$KMS_T/kmsd.conf.orig" "$KMS_T/kmsd.conf"
kms_start_kmsd

kms_finish
