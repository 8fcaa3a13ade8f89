#!/usr/bin/env bash
# Derive, Decrypt and sessions through kmsctl, each judged by a referee
# that shares no code with kmsd:
#   derive      openssl pkeyutl -derive (ECDH) + openssl kdf HKDF, P-256 and
#               P-384, PEM and DER peer keys, default salt and info
#   decrypt     openssl pkeyutl -encrypt with RSA-OAEP SHA-256; rotation,
#               --version, revocation
#   sessions    two kmsd sessions (chat/alice initiator, chat/bob responder)
#               talking to each other: replay, tampering, wrong AAD, message
#               and time limits, key reuse refused (also after a restart),
#               ownership (a second user through setpriv), close
#   interop     a peer outside kmsd: Bob is an OpenSSL key and python3-
#               cryptography's AESGCM, following docs/sessions.md only; he
#               opens Alice's envelopes and seals replies kmsd opens
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib/harness.sh"
kms_require openssl setpriv cmp stat
if ! "$KMS_PYTHON" -c 'from cryptography.hazmat.primitives.ciphers.aead import AESGCM' 2>/dev/null; then
        echo "SKIP: $KMS_TEST_NAME needs python3-cryptography (scripts/deps installs it)"
        exit 77
fi

# Clients as nobody need to reach the bus socket.
export KMS_BUS_ALLOW_ALL_USERS=1
kms_harness_start
W=$KMS_T/work
mkdir -m 777 "$W"
cd "$W"

mode_of() { stat -c %a "$1"; }

# ================================================================ derive
check "create chat/alice (ec-p256, sign and derive)" kmsctl key create chat/alice --algorithm ec-p256 --usage sign,derive
check "alice's public key" kmsctl key public chat/alice --out alice.pub.pem
check "bob: an OpenSSL P-256 key" openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out bob.pem
openssl pkey -in bob.pem -pubout -out bob.pub.pem
openssl pkey -pubin -in bob.pub.pem -outform DER -out bob.spki
openssl pkey -pubin -in alice.pub.pem -outform DER -out alice.spki
chmod 644 ./*.pem bob.spki alice.spki

Z=$(openssl pkeyutl -derive -inkey bob.pem -peerkey alice.pub.pem | hex)
expect_eq "openssl's ECDH secret is 32 bytes on P-256" 64 "${#Z}"
INFO_HEX=$(printf 'chat v1' | hex)

check "derive --salt --info --length 42" \
        kmsctl derive chat/alice --peer bob.pub.pem --salt 00112233 --info 'chat v1' --length 42 --out s.bin
expect_eq "derive equals openssl ECDH + HKDF (42 bytes)" "$(hkdf "$Z" 00112233 "$INFO_HEX" 42)" "$(hex <s.bin)"
expect_eq "the secret file is 0600" 600 "$(mode_of s.bin)"
if grep -q . "$KMS_OUT" 2>/dev/null; then fail "derive printed something on stdout"; else pass "derive prints nothing on stdout"; fi

check "derive with a DER peer key" \
        kmsctl derive chat/alice --peer bob.spki --salt 00112233 --info 'chat v1' --length 42 --out s-der.bin
check "DER and PEM peer give the same bytes" cmp s.bin s-der.bin

check "derive with the defaults" kmsctl derive chat/alice --peer bob.pub.pem --out d.bin --json
expect_eq "default: 32 bytes, no salt, empty info" "$(hkdf "$Z" "" "" 32)" "$(hex <d.bin)"
expect_eq "derive --json length" 32 "$(kms_json "$KMS_OUT" 'd["length"]' 2>&1)"
expect_eq "derive --json version" 1 "$(kms_json "$KMS_OUT" 'd["version"]' 2>&1)"
expect_eq "derive --json secret_file" d.bin "$(kms_json "$KMS_OUT" 'd["secret_file"]' 2>&1)"
if grep -q "$(hex <d.bin)" "$KMS_OUT"; then fail "the secret is in --json output"; else pass "--json does not print the secret"; fi
check "derive --length 1024" kmsctl derive chat/alice --peer bob.pub.pem --length 1024 --out big.bin
expect_eq "1024 bytes equal openssl's" "$(hkdf "$Z" "" "" 1024)" "$(hex <big.bin)"

# An existing world-readable output file is made private before it is filled.
printf 'old' >pre.bin
chmod 644 pre.bin
check "derive over an existing 0644 file" kmsctl derive chat/alice --peer bob.pub.pem --out pre.bin
expect_eq "it is 0600 now" 600 "$(mode_of pre.bin)"
check "and holds the secret" cmp pre.bin d.bin
# A file of another user is not written into: its owner could read it.
setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups touch other.bin
expect_fail 1 "belongs to uid" kmsctl derive chat/alice --peer bob.pub.pem --out other.bin
expect_eq "the other user's file stays empty" 0 "$(stat -c %s other.bin)"

check "create chat/carol (ec-p384, derive)" kmsctl key create chat/carol --algorithm ec-p384 --usage sign,derive
check "carol's public key" kmsctl key public chat/carol --out carol.pub.pem
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out dave.pem
openssl pkey -in dave.pem -pubout -out dave.pub.pem
Z384=$(openssl pkeyutl -derive -inkey dave.pem -peerkey carol.pub.pem | hex)
check "derive on P-384" kmsctl derive chat/carol --peer dave.pub.pem --salt aabb --info 'p384' --length 48 --out s384.bin
expect_eq "P-384 derive equals openssl" "$(hkdf "$Z384" aabb "$(printf p384 | hex)" 48)" "$(hex <s384.bin)"

# Derive uses the primary version: after a rotation, the new one.
check "rotate chat/carol" kmsctl key rotate chat/carol
check "carol's public key v2" kmsctl key public chat/carol --out carol2.pub.pem
Z384B=$(openssl pkeyutl -derive -inkey dave.pem -peerkey carol2.pub.pem | hex)
check "derive after the rotation" kmsctl derive chat/carol --peer dave.pub.pem --length 48 --out s384b.bin --json
expect_eq "derive reports version 2" 2 "$(kms_json "$KMS_OUT" 'd["version"]' 2>&1)"
expect_eq "derive uses the new primary (v2)" "$(hkdf "$Z384B" "" "" 48)" "$(hex <s384b.bin)"

check "create chat/signer (sign only)" kmsctl key create chat/signer --algorithm ec-p256
expect_fail 1 "InvalidArgument" kmsctl derive chat/signer --peer bob.pub.pem --out no1.bin
expect_fail 1 "InvalidArgument" kmsctl derive chat/alice --peer dave.pub.pem --out no2.bin
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.pem 2>/dev/null
openssl pkey -in rsa.pem -pubout -out rsa.pub.pem
expect_fail 1 "InvalidArgument" kmsctl derive chat/alice --peer rsa.pub.pem --out no3.bin
printf 'this is not a key\n' >junk.pem
expect_fail 2 "not a public key" kmsctl derive chat/alice --peer junk.pem --out no4.bin
expect_fail 2 "private key" kmsctl derive chat/alice --peer bob.pem --out no5.bin
expect_fail 1 "cannot open" kmsctl derive chat/alice --peer missing.pem --out no6.bin
expect_fail 2 "--length" kmsctl derive chat/alice --peer bob.pub.pem --length 0 --out no7.bin
expect_fail 2 "--length" kmsctl derive chat/alice --peer bob.pub.pem --length 1025 --out no7.bin
expect_fail 2 "--salt" kmsctl derive chat/alice --peer bob.pub.pem --salt xyz --out no7.bin
expect_fail 2 "--out" kmsctl derive chat/alice --peer bob.pub.pem
expect_fail 2 "file only" kmsctl derive chat/alice --peer bob.pub.pem --out -
expect_fail 2 "file only" kmsctl decrypt chat/alice --in bob.spki --out -
expect_fail 4 "NotFound" kmsctl derive chat/nobody-has-this --peer bob.pub.pem --out no8.bin
# A point off the curve: bob's SPKI with the last byte of y changed.
# kmsctl's own parser refuses it; kmsd must too when it comes raw.
flip bob.spki -1 bad-point.der
expect_fail 2 "not a public key" kmsctl derive chat/alice --peer bad-point.der --out no9.bin
ERR=org.kmsd.KeyManager1.Error
expect_fail 1 "$ERR.InvalidArgument: the peer key's point is not on the curve P-256" \
        kms_call Derive 'saya{sv}' '"chat/alice"' "\"$(hex <bad-point.der)\"" '{}'
expect_fail 1 "$ERR.InvalidArgument: the peer key is not one DER SubjectPublicKeyInfo" \
        kms_call Derive 'saya{sv}' '"chat/alice"' "\"$(hex <bob.spki)00\"" '{}'
expect_fail 1 "$ERR.InvalidArgument: the peer key is not one DER SubjectPublicKeyInfo" \
        kms_call Derive 'saya{sv}' '"chat/alice"' '"3000"' '{}'
expect_fail 1 "$ERR.InvalidArgument" kms_call Derive 'saya{sv}' '"chat/alice"' "\"$(hex <bob.spki)\"" \
        '{"length": ["u", 0]}'
expect_fail 1 "$ERR.InvalidArgument" kms_call Derive 'saya{sv}' '"chat/alice"' "\"$(hex <bob.spki)\"" \
        '{"length": ["t", 32]}'
if ls no*.bin >/dev/null 2>&1; then fail "a failed derive left a file: $(ls no*.bin)"; else pass "failed derives wrote no file"; fi

# ================================================================ decrypt
check "create service/unwrap (rsa-2048, decrypt)" kmsctl key create service/unwrap --algorithm rsa-2048 --usage decrypt
check "unwrap's public key v1" kmsctl key public service/unwrap --out unwrap1.pub.pem
head -c 32 /dev/urandom >key32.bin
oaep() { # oaep PUB IN OUT [extra pkeyopts]
        local pub=$1 in=$2 out=$3
        shift 3
        openssl pkeyutl -encrypt -pubin -inkey "$pub" -pkeyopt rsa_padding_mode:oaep "$@" -in "$in" -out "$out"
}
check "openssl wraps key32.bin (OAEP, SHA-256)" oaep unwrap1.pub.pem key32.bin wrapped.bin -pkeyopt rsa_oaep_md:sha256
check "kmsctl decrypt" kmsctl decrypt service/unwrap --in wrapped.bin --out key.out
check "the unwrapped key is the original" cmp key32.bin key.out
expect_eq "the plaintext file is 0600" 600 "$(mode_of key.out)"
check "decrypt from standard input, --json" sh -c "'$KMSCTL_BIN' decrypt service/unwrap --in - --out key-stdin.out --json <wrapped.bin"
expect_eq "decrypt --json version" 1 "$(kms_json "$KMS_OUT" 'd["version"]' 2>&1)"
expect_eq "decrypt --json length" 32 "$(kms_json "$KMS_OUT" 'd["length"]' 2>&1)"
check "same key from stdin" cmp key32.bin key-stdin.out

flip wrapped.bin 100 flipped.bin
expect_fail 1 "IntegrityFailure" kmsctl decrypt service/unwrap --in flipped.bin --out no-a.out
check "openssl wraps with OAEP SHA-1 (its default)" oaep unwrap1.pub.pem key32.bin wrapped-sha1.bin
expect_fail 1 "IntegrityFailure" kmsctl decrypt service/unwrap --in wrapped-sha1.bin --out no-b.out
head -c 100 wrapped.bin >short.bin
expect_fail 1 "InvalidArgument" kmsctl decrypt service/unwrap --in short.bin --out no-c.out
expect_fail 1 "InvalidArgument" kmsctl decrypt chat/alice --in wrapped.bin --out no-d.out
expect_fail 1 "InvalidArgument" kmsctl decrypt chat/signer --in wrapped.bin --out no-d.out

check "rotate service/unwrap" kmsctl key rotate service/unwrap
check "unwrap's public key v2" kmsctl key public service/unwrap --out unwrap2.pub.pem
check "openssl wraps to v2" oaep unwrap2.pub.pem key32.bin wrapped2.bin -pkeyopt rsa_oaep_md:sha256
check "decrypt with the primary (v2)" kmsctl decrypt service/unwrap --in wrapped2.bin --out key2.out --json
expect_eq "used version 2" 2 "$(kms_json "$KMS_OUT" 'd["version"]' 2>&1)"
check "v2 unwraps" cmp key32.bin key2.out
expect_fail 1 "IntegrityFailure" kmsctl decrypt service/unwrap --in wrapped.bin --out no-e.out
check "decrypt --version 1 after the rotation" kmsctl decrypt service/unwrap --in wrapped.bin --version 1 --out key1.out
check "v1 still unwraps" cmp key32.bin key1.out
check "revoke v1" kmsctl key revoke service/unwrap --version 1 --reason superseded
expect_fail 1 "KeyRevoked" kmsctl decrypt service/unwrap --in wrapped.bin --version 1 --out no-f.out
check "v2 still decrypts after v1's revocation" kmsctl decrypt service/unwrap --in wrapped2.bin --out key2b.out
if ls no-*.out >/dev/null 2>&1; then fail "a failed decrypt left a file: $(ls no-*.out)"; else pass "failed decrypts wrote no file"; fi

# ================================================================ sessions inside kmsd
check "create chat/bob (ec-p256, derive)" kmsctl key create chat/bob --algorithm ec-p256 --usage derive
check "bob's kmsd public key" kmsctl key public chat/bob --out bobk.pub.pem
chmod 644 ./*.pem

run kmsctl session open chat/alice --peer bobk.pub.pem --role initiator --context conv-1
((KMS_RC == 0)) || die "session open (alice, initiator) failed: $(cat "$KMS_ERR")"
A=$(cat "$KMS_OUT")
grep -q "expires" "$KMS_ERR" && pass "session open tells the expiry" || fail "no expiry on stderr: $(cat "$KMS_ERR")"
[[ "$A" =~ ^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$ ]] &&
        pass "the session id is a v4 UUID ($A)" || fail "session id '$A' is not a v4 UUID"
check "session open (bob, responder, --json)" \
        kmsctl session open chat/bob --peer alice.pub.pem --role responder --context conv-1 --json
cp "$KMS_OUT" bob-session.json
B=$(kms_json bob-session.json 'd["id"]')
expect_eq "info: key" chat/bob "$(kms_json bob-session.json 'd["key"]')"
expect_eq "info: role" responder "$(kms_json bob-session.json 'd["role"]')"
expect_eq "info: version" 1 "$(kms_json bob-session.json 'd["version"]')"
expect_eq "info: max_messages default" 100 "$(kms_json bob-session.json 'd["max_messages"]')"
expect_eq "info: sent, received" "0 0" "$(kms_json bob-session.json '"%d %d" % (d["sent"], d["received"])')"
expect_eq "info: peer fingerprint = SHA-256 of alice's SPKI" \
        "$(openssl dgst -sha256 -binary alice.spki | hex)" "$(kms_json bob-session.json 'd["peer_fingerprint"]')"
expect_eq "info: expires - created = 24 h" 86400 "$(kms_json bob-session.json '__import__("calendar").timegm(__import__("time").strptime(d["expires"], "%Y-%m-%dT%H:%M:%SZ")) - __import__("calendar").timegm(__import__("time").strptime(d["created"], "%Y-%m-%dT%H:%M:%SZ"))')"

printf 'Hello Bob, this is Alice.' >m1
printf 'Hi Alice, Bob here.' >m2
chmod 644 m1 m2
check "alice seals m1" kmsctl session seal "$A" --in m1 --out e1 --aad msg-1
expect_eq "the envelope is 34 bytes longer" $(($(stat -c %s m1) + 34)) "$(stat -c %s e1)"
expect_eq "envelope header: version 1, direction 0, seq 1" 01000000000000000001 "$(head -c 10 e1 | hex)"
check "bob opens m1" kmsctl session open-envelope "$B" --in e1 --out p1 --aad msg-1
check "bob reads alice's plaintext" cmp m1 p1
expect_eq "the plaintext file is 0600" 600 "$(mode_of p1)"
check "bob seals m2 (from stdin, to stdout)" sh -c "'$KMSCTL_BIN' session seal '$B' --in - --out - <m2 >e2"
expect_eq "bob's header: direction 1, seq 1" 01010000000000000001 "$(head -c 10 e2 | hex)"
check "alice opens m2" kmsctl session open-envelope "$A" --in e2 --out p2
check "alice reads bob's plaintext" cmp m2 p2

expect_fail 1 "Replay" kmsctl session open-envelope "$B" --in e1 --out no-p --aad msg-1
expect_fail 1 "Replay" kmsctl session open-envelope "$A" --in e2 --out no-p
expect_fail 1 "InvalidArgument" kmsctl session open-envelope "$A" --in e1 --out no-p --aad msg-1

check "alice seals m3" kmsctl session seal "$A" --in m1 --out e3 --aad msg-3
flip e3 20 e3-ct
flip e3 -1 e3-tag
flip e3 5 e3-seq
flip e3 15 e3-time
for bad in e3-ct e3-tag e3-seq e3-time; do
        expect_fail 1 "IntegrityFailure" kmsctl session open-envelope "$B" --in "$bad" --out no-p --aad msg-3
done
expect_fail 1 "IntegrityFailure" kmsctl session open-envelope "$B" --in e3 --out no-p --aad msg-X
expect_fail 1 "IntegrityFailure" kmsctl session open-envelope "$B" --in e3 --out no-p
check "after the rejects, the good envelope still opens" \
        kmsctl session open-envelope "$B" --in e3 --out p3 --aad msg-3
check "m3 intact" cmp m1 p3
if [[ -e no-p ]]; then fail "a rejected envelope left a plaintext file"; else pass "rejected envelopes wrote no file"; fi

: >empty
check "seal an empty message" kmsctl session seal "$A" --in empty --out e4
expect_eq "an empty message makes a 34-byte envelope" 34 "$(stat -c %s e4)"
check "open the empty message" kmsctl session open-envelope "$B" --in e4 --out p4
expect_eq "empty plaintext" 0 "$(stat -c %s p4)"
head -c 10 e4 >e4-short
expect_fail 1 "InvalidArgument" kmsctl session open-envelope "$B" --in e4-short --out no-p

head -c $((2 * 1024 * 1024)) /dev/zero >big
expect_fail 1 "LimitExceeded" kmsctl session seal "$A" --in big --out no-e

check "session list --json (root)" kmsctl session list --json
cp "$KMS_OUT" list-root.json
expect_eq "root sees alice's and bob's sessions" "$(printf '%s\n' "$A" "$B" | sort | tr '\n' ' ')" \
        "$(kms_json list-root.json '" ".join(sorted(s["id"] for s in d)) + " "')"
expect_eq "alice: sent 3, received 1" "3 1" \
        "$(kms_json list-root.json '["%d %d" % (s["sent"], s["received"]) for s in d if s["key"] == "chat/alice"][0]')"
expect_eq "bob: sent 1, received 3" "1 3" \
        "$(kms_json list-root.json '["%d %d" % (s["sent"], s["received"]) for s in d if s["key"] == "chat/bob"][0]')"
check "session list (text)" kmsctl session list
grep -q "^$A  chat/alice" "$KMS_OUT" && pass "the text list shows alice's session" || fail "text list: $(cat "$KMS_OUT")"

# The same keys, role and context again: the AES keys would repeat.
expect_fail 1 "AlreadyExists" kmsctl session open chat/alice --peer bobk.pub.pem --role initiator --context conv-1
expect_fail 1 "AlreadyExists" kmsctl session open chat/alice --peer bobk.pub.pem --role initiator \
        --context-hex "$(printf conv-1 | hex)"
check "no context, once" kmsctl session open chat/alice --peer bobk.pub.pem --role initiator
expect_fail 1 "AlreadyExists" kmsctl session open chat/alice --peer bobk.pub.pem --role initiator
check "a new context is fine" kmsctl session open chat/alice --peer bobk.pub.pem --role initiator --context conv-1b

# Message limit: two envelopes each way.
run kmsctl session open chat/alice --peer bobk.pub.pem --role initiator --context conv-2 --max-messages 2
A2=$(cat "$KMS_OUT")
run kmsctl session open chat/bob --peer alice.pub.pem --role responder --context conv-2 --max-messages 2
B2=$(cat "$KMS_OUT")
check "limit: seal 1" kmsctl session seal "$A2" --in m1 --out l1
check "limit: seal 2" kmsctl session seal "$A2" --in m1 --out l2
expect_fail 1 "SessionExpired" kmsctl session seal "$A2" --in m1 --out l3
check "limit: bob opens 1" kmsctl session open-envelope "$B2" --in l1 --out lp1
check "limit: bob opens 2" kmsctl session open-envelope "$B2" --in l2 --out lp2
# Bob's third envelope would need a third seal: bob may still send two.
check "limit: bob seals 1" kmsctl session seal "$B2" --in m2 --out lb1

# Time limit.
run kmsctl session open chat/alice --peer bobk.pub.pem --role initiator --context conv-3 --ttl 2s --json
A3=$(kms_json "$KMS_OUT" 'd["id"]')
expect_eq "--ttl 2s: expires 2 s after creation" 2 "$(kms_json "$KMS_OUT" '__import__("calendar").timegm(__import__("time").strptime(d["expires"], "%Y-%m-%dT%H:%M:%SZ")) - __import__("calendar").timegm(__import__("time").strptime(d["created"], "%Y-%m-%dT%H:%M:%SZ"))')"
check "ttl: seal at once" kmsctl session seal "$A3" --in m1 --out t1
sleep 3
expect_fail 1 "SessionExpired" kmsctl session seal "$A3" --in m1 --out t2
expect_fail 1 "SessionExpired" kmsctl session open-envelope "$A3" --in e2 --out no-p

expect_fail 2 "--ttl" kmsctl session open chat/alice --peer bobk.pub.pem --role initiator --ttl 31d
expect_fail 2 "--ttl" kmsctl session open chat/alice --peer bobk.pub.pem --role initiator --ttl 5x
expect_fail 2 "--max-messages" kmsctl session open chat/alice --peer bobk.pub.pem --role initiator --max-messages 0
expect_fail 2 "--max-messages" kmsctl session open chat/alice --peer bobk.pub.pem --role initiator --max-messages 65537
expect_fail 2 "--role" kmsctl session open chat/alice --peer bobk.pub.pem --role both
expect_fail 2 "--role" kmsctl session open chat/alice --peer bobk.pub.pem
expect_fail 2 "exclude" kmsctl session open chat/alice --peer bobk.pub.pem --role initiator --context a --context-hex 61
expect_fail 2 "--context" kmsctl session open chat/alice --peer bobk.pub.pem --role initiator --context "$(head -c 257 /dev/zero | tr '\0' x)"
expect_fail 1 "InvalidArgument" kmsctl session open chat/signer --peer bobk.pub.pem --role initiator --context s-1
expect_fail 1 "InvalidArgument" kmsctl session open chat/alice --peer dave.pub.pem --role initiator --context s-2
expect_fail 2 "not a session id" kmsctl session seal not-an-id --in m1 --out x
expect_fail 2 "not a session id" kmsctl session seal "${A^^}" --in m1 --out x
expect_fail 4 "SessionNotFound" kmsctl session seal 00000000-0000-4000-8000-000000000000 --in m1 --out x

# ---------------------------------------------------------------- another user
write_nobody_rule() {
        printf '%s\n' '[sessions-test]' 'subjects = user:nobody' 'operations = session, read' 'keys = chat/*' \
                >"$KMS_T/policy.d/50-test.conf"
}
write_nobody_rule
check "policy reload with the nobody rule" kmsctl policy reload
run as_nobody session open chat/alice --peer bobk.pub.pem --role initiator --context nobody-1
((KMS_RC == 0)) && pass "nobody opens a session on chat/alice" || fail "nobody's session open: $(cat "$KMS_ERR")"
N=$(cat "$KMS_OUT")
check "nobody: session list --json" as_nobody session list --json
expect_eq "nobody sees only its own session" "$N" "$(kms_json "$KMS_OUT" '" ".join(s["id"] for s in d)')"
check "root: session list --json" kmsctl session list --json
if grep -qF "$N" "$KMS_OUT"; then fail "root sees nobody's session"; else pass "root does not see nobody's session"; fi
# Another user's id is refused as AccessDenied, and logged.
expect_fail 3 "AccessDenied" as_nobody session seal "$A" --in m1 --out "$W/nobody-e"
expect_fail 3 "AccessDenied" as_nobody session open-envelope "$B" --in e1 --out "$W/nobody-p"
expect_fail 3 "AccessDenied" as_nobody session close "$A"
expect_fail 3 "AccessDenied" kmsctl session seal "$N" --in m1 --out root-e
if grep -q "denied: uid $(id -u nobody) .*session $A: the session belongs to another user" "$KMS_T/kmsd.log"; then
        pass "kmsd logs nobody's try on alice's session"
else
        fail "no log line for nobody's try on alice's session"
fi
if [[ -e nobody-e || -e nobody-p || -e root-e ]]; then fail "a refused call wrote a file"; else pass "refused calls wrote no file"; fi
check "nobody seals in its own session" as_nobody session seal "$N" --in m1 --out "$W/nobody-e2"
check "alice's session still works after nobody's tries" kmsctl session seal "$A" --in m1 --out e5
check "bob opens it" kmsctl session open-envelope "$B" --in e5 --out p5
expect_fail 3 "AccessDenied" as_nobody session open service/unwrap --peer bobk.pub.pem --role initiator
expect_fail 3 "AccessDenied" as_nobody derive chat/alice --peer bob.pub.pem --out "$W/nobody-s"
# Without the rule, nobody's own session is refused too (checked on every use).
rm "$KMS_T/policy.d/50-test.conf"
check "policy reload without the nobody rule" kmsctl policy reload
expect_fail 3 "AccessDenied" as_nobody session seal "$N" --in m1 --out "$W/nobody-e3"
write_nobody_rule
check "policy reload with the nobody rule again" kmsctl policy reload
check "nobody closes its session" as_nobody session close "$N"
expect_fail 4 "SessionNotFound" as_nobody session seal "$N" --in m1 --out "$W/nobody-e4"

# A session ends with its key: disabled, it refuses; enabled, it works;
# revoked, it is over.
check "create chat/erin" kmsctl key create chat/erin --algorithm ec-p256 --usage derive
run kmsctl session open chat/erin --peer bob.pub.pem --role initiator --context erin-1
E=$(cat "$KMS_OUT")
check "erin seals" kmsctl session seal "$E" --in m1 --out er1
check "disable chat/erin" kmsctl key disable chat/erin
expect_fail 1 "KeyDisabled" kmsctl session seal "$E" --in m1 --out er2
check "enable chat/erin" kmsctl key enable chat/erin
check "erin seals again" kmsctl session seal "$E" --in m1 --out er3
expect_eq "the refused seal used no sequence number" 01000000000000000002 "$(head -c 10 er3 | hex)"
check "revoke chat/erin" kmsctl key revoke chat/erin --reason retired
expect_fail 1 "KeyRevoked" kmsctl session seal "$E" --in m1 --out er4

# ---------------------------------------------------------------- close
check "session close (alice)" kmsctl session close "$A"
grep -qF "$A" "$KMS_OUT" && pass "close names the session" || fail "close output: $(cat "$KMS_OUT")"
expect_fail 4 "SessionNotFound" kmsctl session seal "$A" --in m1 --out x
expect_fail 4 "SessionNotFound" kmsctl session open-envelope "$A" --in e2 --out no-p
expect_fail 4 "SessionNotFound" kmsctl session close "$A"
check "session list after close" kmsctl session list --json
if grep -qF "$A" "$KMS_OUT"; then fail "a closed session is still listed"; else pass "the closed session is gone from the list"; fi

# ================================================================ interop: Bob outside kmsd
# Alice's session is in kmsd; Bob has only bob.pem, openssl and python3,
# and follows docs/sessions.md.
CTX='interop #1'
run kmsctl session open chat/alice --peer bob.pub.pem --role initiator --context "$CTX" --ttl 1h
((KMS_RC == 0)) || die "interop session open failed: $(cat "$KMS_ERR")"
X=$(cat "$KMS_OUT")
SALT=$(cat alice.spki bob.spki | openssl dgst -sha256 -binary | hex)
INFO=$(printf 'kmsd session v1' | hex)00$(printf '%s' "$CTX" | hex)
OKM=$(hkdf "$Z" "$SALT" "$INFO" 96)
K_I2R=${OKM:0:64}
K_R2I=${OKM:64:64}

# bob_open ENVELOPE AAD EXPECTED_SEQ: Bob checks the header and opens an
# envelope of Alice's; prints the plaintext as hex.
bob_open() {
        "$KMS_PYTHON" - "$K_I2R" "$1" "$2" "$3" <<'PY'
import struct, sys, time
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
key = bytes.fromhex(sys.argv[1])
env = open(sys.argv[2], "rb").read()
aad, want_seq = sys.argv[3].encode(), int(sys.argv[4])
version, direction, seq, ts = struct.unpack(">BBQQ", env[:18])
assert version == 1, f"version {version}"
assert direction == 0, f"direction {direction}"
assert seq == want_seq, f"sequence number {seq}, expected {want_seq}"
now = int(time.time() * 1000)
assert abs(now - ts) < 60000, f"timestamp {ts} is {now - ts} ms from now"
nonce = struct.pack(">IQ", direction, seq)
print(AESGCM(key).decrypt(nonce, env[18:], env[:18] + aad).hex())
PY
}

# bob_seal OUT SEQ PLAINTEXT AAD [DIRECTION] [AGE_MS]: Bob seals with k_r2i
# (direction 1 unless told otherwise), timestamped AGE_MS ago.
bob_seal() {
        "$KMS_PYTHON" - "$K_R2I" "$@" <<'PY'
import struct, sys, time
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
key, out, seq, pt, aad = bytes.fromhex(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4].encode(), sys.argv[5].encode()
direction = int(sys.argv[6]) if len(sys.argv) > 6 else 1
age = int(sys.argv[7]) if len(sys.argv) > 7 else 0
header = struct.pack(">BBQQ", 1, direction, seq, int(time.time() * 1000) - age)
nonce = struct.pack(">IQ", direction, seq)
open(out, "wb").write(header + AESGCM(key).encrypt(nonce, pt, header + aad))
PY
}

printf 'Alice to an OpenSSL Bob' >im1
check "alice seals for the outside bob" kmsctl session seal "$X" --in im1 --out ie1 --aad 'interop aad'
run bob_open ie1 'interop aad' 1
expect_eq "bob (python AESGCM + openssl HKDF) opens alice's envelope" "$(hex <im1)" "$(cat "$KMS_OUT")"
((KMS_RC == 0)) || echo "  $(cat "$KMS_ERR")" >&2
check "alice seals a second one" kmsctl session seal "$X" --in im1 --out ie2
run bob_open ie2 '' 2
expect_eq "bob opens #2 (sequence number 2, no AAD)" "$(hex <im1)" "$(cat "$KMS_OUT")"

check "bob seals a reply (seq 1)" bob_seal ir1 1 'Bob replies from outside' 'reply aad'
check "kmsd opens bob's reply" kmsctl session open-envelope "$X" --in ir1 --out irp1 --aad 'reply aad'
expect_eq "the reply's plaintext" "Bob replies from outside" "$(cat irp1)"
expect_fail 1 "Replay" kmsctl session open-envelope "$X" --in ir1 --out no-p --aad 'reply aad'
check "bob seals seq 3" bob_seal ir3 3 'three' ''
check "a gap is fine: seq 3 opens" kmsctl session open-envelope "$X" --in ir3 --out irp3
check "bob seals seq 2, late" bob_seal ir2 2 'two' ''
expect_fail 1 "Replay" kmsctl session open-envelope "$X" --in ir2 --out no-p
check "bob seals seq 4, ten minutes old" bob_seal ir4-old 4 'four' '' 1 600000
expect_fail 1 "Stale" kmsctl session open-envelope "$X" --in ir4-old --out no-p
check "bob seals seq 4, ten minutes ahead" bob_seal ir4-ahead 4 'four' '' 1 -600000
expect_fail 1 "Stale" kmsctl session open-envelope "$X" --in ir4-ahead --out no-p
check "bob seals seq 4 with direction 0 (as if alice)" bob_seal ir4-dir 4 'four' '' 0
expect_fail 1 "InvalidArgument|IntegrityFailure" kmsctl session open-envelope "$X" --in ir4-dir --out no-p
check "bob seals seq 4, now" bob_seal ir4 4 'four' ''
check "after the stale ones, seq 4 opens (nothing moved)" kmsctl session open-envelope "$X" --in ir4 --out irp4
expect_eq "seq 4's plaintext" four "$(cat irp4)"

# ================================================================ restart
# Sessions live in memory; the record of used (keys, role, context) does not.
kms_restart_kmsd
expect_fail 4 "SessionNotFound" kmsctl session seal "$B" --in m1 --out x
expect_fail 1 "AlreadyExists" kmsctl session open chat/bob --peer alice.pub.pem --role responder --context conv-1
expect_fail 1 "AlreadyExists" kmsctl session open chat/alice --peer bob.pub.pem --role initiator --context "$CTX"
check "session list after a restart" kmsctl session list --json
expect_eq "no sessions after a restart" 0 "$(kms_json "$KMS_OUT" 'len(d)')"

# No secret in kmsd's log.
for s in "$(hex <s.bin)" "$(hex <key32.bin)" "$K_I2R" "$K_R2I"; do
        if grep -qi "$s" "$KMS_T/kmsd.log"; then fail "a secret appears in kmsd's log"; fi
done
pass "no derived secret, unwrapped key or session key in kmsd's log"

kms_finish
