#!/usr/bin/env bash
# Two kmsd instances, each with its own bus and its own SoftHSMv2 token:
# Alice's (the harness's main instance) and Bob's (a peer). They exchange
# public keys and open an initiator and a responder session; neither ever
# sees the other's private key or token, so every message that opens
# proves both sides derived the same keys independently. 100 messages each
# way; message 101 fails (the default limit); a replayed envelope fails;
# one flipped bit fails and moves nothing; a session past its TTL fails;
# another uid presenting Alice's session id is refused and logged.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib/harness.sh"
kms_require openssl setpriv cmp

export KMS_BUS_ALLOW_ALL_USERS=1
kms_harness_start
kms_peer_start bob
W=$KMS_T/work
mkdir -m 755 "$W"
cd "$W"

bob() { kms_peer bob "$@"; }

check "alice: key create chat/alice" kmsctl key create chat/alice --algorithm ec-p256 --usage sign,derive
check "bob: key create chat/bob" bob kmsctl key create chat/bob --algorithm ec-p256 --usage sign,derive
check "alice: key public" kmsctl key public chat/alice --out alice.pem
check "bob: key public" bob kmsctl key public chat/bob --out bob.pem
# Each token holds only its own key.
expect_fail 4 "NotFound" kmsctl key show chat/bob
expect_fail 4 "NotFound" bob kmsctl key show chat/alice

# open_session WHO KEY PEER ROLE [ARGS...]: prints the session id.
open_session() {
        local who=$1 key=$2 peer=$3 role=$4
        shift 4
        local -a cmd=(kmsctl)
        [[ "$who" == bob ]] && cmd=(bob kmsctl)
        run "${cmd[@]}" session open "$key" --peer "$peer" --role "$role" --json "$@"
        if ((KMS_RC != 0)); then
                fail "$who: session open $key ($role) exited $KMS_RC: $(cat "$KMS_ERR")"
                return 1
        fi
        kms_json "$KMS_OUT" 'd["id"]'
}

A=$(open_session alice chat/alice bob.pem initiator --context "conversation 1") || true
B=$(open_session bob chat/bob alice.pem responder --context "conversation 1") || true
[[ -n "$A" && -n "$B" ]] && pass "sessions opened: alice $A, bob $B" || die "no sessions"

# send FROM_ID TO N: FROM seals message N, TO opens it; compares.
ok_a2b=0 ok_b2a=0
for ((i = 1; i <= 100; i++)); do
        printf 'alice to bob, message %d\n' "$i" >a2b.txt
        printf 'bob to alice, message %d\n' "$i" >b2a.txt
        if kmsctl session seal "$A" --in a2b.txt --out "a2b.$i.env" 2>err.txt &&
                bob kmsctl session open-envelope "$B" --in "a2b.$i.env" --out a2b.out 2>err.txt &&
                cmp -s a2b.txt a2b.out; then
                ok_a2b=$((ok_a2b + 1))
        else
                fail "a2b message $i: $(cat err.txt)"
        fi
        if bob kmsctl session seal "$B" --in b2a.txt --out "b2a.$i.env" 2>err.txt &&
                kmsctl session open-envelope "$A" --in "b2a.$i.env" --out b2a.out 2>err.txt &&
                cmp -s b2a.txt b2a.out; then
                ok_b2a=$((ok_b2a + 1))
        else
                fail "b2a message $i: $(cat err.txt)"
        fi
        if ((i == 50)); then
                # A replayed envelope (message 50 again) is refused.
                expect_fail 1 "Replay" bob kmsctl session open-envelope "$B" --in a2b.50.env --out x.out
                # One flipped bit in the next envelope: refused, and nothing moves:
                # the untouched envelope opens afterwards.
                printf 'alice to bob, message 51\n' >a2b.txt
                check "alice seals message 51" kmsctl session seal "$A" --in a2b.txt --out a2b.51.env
                cp a2b.51.env flipped.env
                "$KMS_PYTHON" -c 'import sys; b = bytearray(open(sys.argv[1], "rb").read()); b[25] ^= 0x10; open(sys.argv[1], "wb").write(b)' flipped.env
                expect_fail 1 "IntegrityFailure" bob kmsctl session open-envelope "$B" --in flipped.env --out x.out
                [[ ! -s x.out ]] && pass "no plaintext written for a refused envelope" || fail "x.out has content"
                check "the untouched envelope opens after the refusal" \
                        bob kmsctl session open-envelope "$B" --in a2b.51.env --out a2b.out
                cmp -s a2b.txt a2b.out && pass "message 51 intact" || fail "message 51 differs"
                ok_a2b=$((ok_a2b + 1))
                i=51
                printf 'bob to alice, message %d\n' "$i" >b2a.txt
                if bob kmsctl session seal "$B" --in b2a.txt --out "b2a.$i.env" &&
                        kmsctl session open-envelope "$A" --in "b2a.$i.env" --out b2a.out && cmp -s b2a.txt b2a.out; then
                        ok_b2a=$((ok_b2a + 1))
                else
                        fail "b2a message 51"
                fi
        fi
done
expect_eq "messages alice to bob" 100 "$ok_a2b"
expect_eq "messages bob to alice" 100 "$ok_b2a"
printf 'one too many\n' >a2b.txt
expect_fail 1 "SessionExpired" kmsctl session seal "$A" --in a2b.txt --out a2b.101.env
expect_fail 1 "SessionExpired" bob kmsctl session seal "$B" --in a2b.txt --out b2a.101.env

chmod 644 a2b.txt
expect_fail 3 "AccessDenied" as_nobody session seal "$A" --in a2b.txt --out /dev/null
grep -q "denied: uid $(id -u nobody) pid [0-9]* Seal session $A: the session belongs to another user" "$KMS_T/kmsd.log" &&
        pass "the foreign use was logged with uid, pid and session" || fail "no log line for the foreign session use"

# A short TTL.
A2=$(open_session alice chat/alice bob.pem initiator --context "conversation 2" --ttl 2s) || true
B2=$(open_session bob chat/bob alice.pem responder --context "conversation 2" --ttl 2s) || true
printf 'quick\n' >q.txt
check "seal within the TTL" kmsctl session seal "$A2" --in q.txt --out q.env
sleep 3
expect_fail 1 "SessionExpired" kmsctl session seal "$A2" --in q.txt --out q2.env
expect_fail 1 "SessionExpired" bob kmsctl session open-envelope "$B2" --in q.env --out q.out

# Derive may not use the session key schedule's label as its info: with
# only the derive right it would give out the keys of sessions.
label_bytes="16 $(printf 'kmsd session v1' | od -An -tu1 | tr -s ' \n' ' ') 0"
bob_der_len=$(openssl pkey -pubin -in bob.pem -outform DER | wc -c)
bob_der=$(openssl pkey -pubin -in bob.pem -outform DER | od -An -tu1 -v | tr -s ' \n' ' ')
run kms_busctl call org.kmsd.KeyManager1 /org/kmsd/KeyManager1 org.kmsd.KeyManager1 Derive 'saya{sv}' \
        chat/alice "$bob_der_len" $bob_der 1 info ay $label_bytes
if ((KMS_RC != 0)) && grep -q "session key schedule's own label" "$KMS_ERR"; then
        pass "Derive refuses the session label as info"
else
        fail "Derive with the session label as info: rc $KMS_RC: $(cat "$KMS_OUT" "$KMS_ERR")"
fi

# The same keys and context again: refused (the AES keys would repeat).
expect_fail 1 "AlreadyExists" kmsctl session open chat/alice --peer bob.pem --role initiator --context "conversation 1"

check "alice: session close" kmsctl session close "$A"
expect_fail 4 "SessionNotFound" kmsctl session seal "$A" --in a2b.txt --out y.env

kms_finish
