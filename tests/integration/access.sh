#!/usr/bin/env bash
# Access policy with real second users on the same private bus: the
# caller's uid and groups come from the bus daemon and the account, never
# from the caller. kmsctl runs as 'nobody' (and, as root, as a throwaway
# admin user) through setpriv. Default deny; owners have owner_rights; a
# rule grants exactly what it names; reloads (kmsctl and SIGHUP) take
# effect for the next request, and a broken file keeps the old policy.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib/harness.sh"
kms_require openssl setpriv

# A throwaway admin group and member, when we may create them (root).
ADM_USER="" ADM_GROUP=""
if [[ $(id -u) -eq 0 ]] && command -v useradd >/dev/null && command -v groupadd >/dev/null; then
        ADM_GROUP=kmsdt-adm-$$
        ADM_USER=kmsdt-u-$$
        groupadd "$ADM_GROUP"
        useradd --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin -G "$ADM_GROUP" "$ADM_USER"
fi
cleanup_accounts() {
        [[ -n "$ADM_USER" ]] && userdel "$ADM_USER" >/dev/null 2>&1
        [[ -n "$ADM_GROUP" ]] && groupdel "$ADM_GROUP" >/dev/null 2>&1
        return 0
}

export KMS_BUS_ALLOW_ALL_USERS=1
export KMS_ADMIN_GROUP=$ADM_GROUP
kms_harness_start
trap 'rc=$?; cleanup_accounts; (exit $rc); kms__on_exit' EXIT
NOBODY_UID=$(id -u nobody)
NOBODY_GID=$(id -g nobody)
P=$KMS_T/policy.d
W=$KMS_T/work
mkdir -m 777 "$W"
cd "$W"

# reload_by_sighup: SIGHUP kmsd and wait until its log shows the outcome.
reload_by_sighup() {
        local before
        before=$(grep -c -E "policy reloaded|policy reload refused" "$KMS_T/kmsd.log" || true)
        kill -HUP "$KMS_KMSD_PID"
        for ((i = 0; i < 100; i++)); do
                (($(grep -c -E "policy reloaded|policy reload refused" "$KMS_T/kmsd.log" || true) > before)) && return 0
                sleep 0.1
        done
        fail "kmsd did not log a policy reload within 10 s of SIGHUP"
}

printf 'a message\n' >msg
chmod 644 msg

check "root creates root/key" kmsctl key create root/key --algorithm ec-p256
check "root creates chat/alice" kmsctl key create chat/alice --algorithm ec-p256
check "root signs with root/key" kmsctl sign root/key --in msg --out root.sig
chmod 644 root.sig

# ---------------------------------------------------------------- no rules
# Nobody has no rule: every operation on someone else's key is denied
# (exit 3, AccessDenied) and changes nothing.
expect_fail 3 "AccessDenied" as_nobody status
expect_fail 3 "AccessDenied" as_nobody key show root/key
expect_fail 3 "AccessDenied" as_nobody key public root/key
expect_fail 3 "AccessDenied" as_nobody verify root/key --in msg --sig root.sig
expect_fail 3 "AccessDenied" as_nobody sign root/key --in msg --out nobody.sig
[[ ! -e nobody.sig ]] && pass "no signature file after the denial" || fail "a denied sign wrote a file"
expect_fail 3 "AccessDenied" as_nobody key destroy root/key --yes
expect_fail 3 "AccessDenied" as_nobody key rotate root/key
expect_fail 3 "AccessDenied" as_nobody key revoke root/key --reason compromised
expect_fail 3 "AccessDenied" as_nobody key disable root/key
expect_fail 3 "AccessDenied" as_nobody key set root/key --keep-versions 1
expect_fail 3 "AccessDenied" as_nobody key create nobody/key --algorithm ec-p256
expect_fail 3 "AccessDenied" as_nobody policy show
expect_fail 3 "AccessDenied" as_nobody policy reload
# A name that does not exist is denied the same way (no existence leak).
expect_fail 3 "AccessDenied" as_nobody key show no/such-key
check "nobody: key list (answers, shows nothing)" as_nobody key list --json
expect_eq "keys nobody may read" "" "$(kms_json "$KMS_OUT" '",".join(k["name"] for k in d)' 2>&1)"
check "root/key is untouched" kmsctl key show root/key --json
expect_eq "root/key state and versions" "active 1" "$(kms_json "$KMS_OUT" 'd["state"] + " " + str(d["version_count"])' 2>&1)"
check "nothing was created" kmsctl key list --all --json
expect_eq "keys after the denied create" "chat/alice,root/key" "$(kms_json "$KMS_OUT" '",".join(sorted(k["name"] for k in d))' 2>&1)"
if grep -q "denied: uid $NOBODY_UID pid [0-9]* Sign key 'root/key': no rule matched: denied by default" "$KMS_T/kmsd.log"; then
        pass "kmsd logged the denial with uid, pid, operation, key and reason"
else
        fail "no denial line for uid $NOBODY_UID Sign root/key in kmsd's log"
fi

check "policy show (no rules)" kmsctl policy show --json
expect_eq "no rules in force" 0 "$(kms_json "$KMS_OUT" 'len(d["rules"])' 2>&1)"
expect_fail 3 "" kmsctl policy check --user nobody --key root/key --op sign
expect_eq "policy check explains the default" "deny: no rule matched: denied by default" "$(cat "$KMS_OUT")"
check "policy check: root is admin" kmsctl policy check --user root --key root/key --op destroy
expect_eq "root's answer" "allow: admin: uid 0" "$(cat "$KMS_OUT")"

# ---------------------------------------------------------------- a rule
cat >"$P/50-chat.conf" <<EOF
# the messaging app
[chat-app]
subjects = user:nobody
operations = sign, read, create
keys = chat/*
EOF
check "kmsctl policy reload" kmsctl policy reload
expect_eq "reload reports the rules" "Policy reloaded: 1 rule(s) in force" "$(cat "$KMS_OUT")"
check "policy show lists the rule with file:line" kmsctl policy show --json
expect_eq "the rule" "chat-app $P/50-chat.conf 2 allow user:nobody create,read,sign chat/*" \
        "$(kms_json "$KMS_OUT" '" ".join(str(r[k]) for r in d["rules"] for k in ("name","file","line","effect","subjects","operations","keys"))' 2>&1)"
check "policy check names the rule" kmsctl policy check --user nobody --key chat/alice --op sign
expect_eq "the deciding rule" "allow: rule [chat-app] ($P/50-chat.conf:2, effect allow)" "$(cat "$KMS_OUT")"

check "nobody signs with chat/alice (granted)" as_nobody sign chat/alice --in msg --out alice.sig
check "root exports chat/alice's public key" kmsctl key public chat/alice --out alice.pem
check "openssl verifies nobody's signature" openssl dgst -sha256 -verify alice.pem -signature alice.sig msg
check "nobody reads chat/alice" as_nobody key show chat/alice
# Exactly what it names: not verify, not destroy, not other keys.
expect_fail 3 "AccessDenied" as_nobody verify chat/alice --in msg --sig alice.sig
expect_fail 3 "AccessDenied" as_nobody key destroy chat/alice --yes
expect_fail 3 "AccessDenied" as_nobody key rotate chat/alice
expect_fail 3 "AccessDenied" as_nobody sign root/key --in msg --out x.sig
expect_fail 3 "AccessDenied" as_nobody key create mail/nobody --algorithm ec-p256
check "nobody: key list shows the readable keys only" as_nobody key list --json
expect_eq "keys nobody may read" "chat/alice" "$(kms_json "$KMS_OUT" '",".join(k["name"] for k in d)' 2>&1)"

# Create under the rule: the caller owns the key and uses owner_rights.
check "nobody creates chat/nobody (create granted)" as_nobody key create chat/nobody --algorithm ec-p256
check "key show chat/nobody" kmsctl key show chat/nobody --json
expect_eq "owner of chat/nobody is nobody's uid" "$NOBODY_UID" "$(kms_json "$KMS_OUT" 'd["owner"]' 2>&1)"
check "owner rotates its key (owner_rights)" as_nobody key rotate chat/nobody
check "owner signs with its key (owner_rights)" as_nobody sign chat/nobody --in msg --out own.sig
check "owner verifies (owner_rights)" as_nobody verify chat/nobody --in msg --sig own.sig
# Only an admin names another owner.
expect_fail 3 "AccessDenied.*|another owner" as_nobody key create chat/for-root --algorithm ec-p256 --owner 0
grep -q "create a key for another owner" "$KMS_ERR" && pass "the denial says why" || fail "denial text: $(cat "$KMS_ERR")"
check "root provisions a key for nobody" kmsctl key create chat/provisioned --algorithm ec-p256 --owner nobody
check "nobody signs with the provisioned key" as_nobody sign chat/provisioned --in msg --out prov.sig

# ---------------------------------------------------------------- broken file
cat >"$P/60-broken.conf" <<EOF
[broken]
subjects = user:nobody
operations = sing
keys = *
EOF
expect_fail 1 "PolicyInvalid" kmsctl policy reload
grep -q "60-broken.conf:3: unknown operation 'sing'" "$KMS_ERR" && pass "the refusal names file:line and reason" ||
        fail "refusal text: $(cat "$KMS_ERR")"
check "the old policy stays: nobody still signs" as_nobody sign chat/alice --in msg --out alice2.sig
reload_by_sighup
grep -q "policy reload refused, the old policy stays in force: .*60-broken.conf:3" "$KMS_T/kmsd.log" &&
        pass "SIGHUP with a broken file: refused and logged" || fail "no refusal logged after SIGHUP"
check "still in force after the SIGHUP" as_nobody sign chat/alice --in msg --out alice3.sig
rm -f "$P/60-broken.conf"

# ---------------------------------------------------------------- removing a grant
cat >"$P/50-chat.conf" <<EOF
[chat-app]
subjects = user:nobody
operations = read
keys = chat/*
EOF
reload_by_sighup
grep -q "policy reloaded: 1 rule(s)" "$KMS_T/kmsd.log" && pass "SIGHUP reloaded the policy" || fail "no reload logged"
expect_fail 3 "AccessDenied" as_nobody sign chat/alice --in msg --out late.sig
check "read is still granted" as_nobody key show chat/alice
# A deny rule beats owner rights.
cat >"$P/10-freeze.conf" <<EOF
[freeze-nobody]
subjects = uid:$NOBODY_UID
operations = sign
keys = chat/nobody
effect = deny
EOF
check "reload with a deny rule" kmsctl policy reload
expect_fail 3 "AccessDenied" as_nobody sign chat/nobody --in msg --out frozen.sig
expect_fail 3 "" kmsctl policy check --user "$NOBODY_UID" --key chat/nobody --op sign --json
expect_eq "deny rule" "False rule [freeze-nobody] ($P/10-freeze.conf:1, effect deny)" \
        "$(kms_json "$KMS_OUT" 'str(d["allowed"]) + " " + d["reason"]' 2>&1)"

# ---------------------------------------------------------------- admin group
if [[ -n "$ADM_USER" ]]; then
        check "an admin-group member signs with root's key" as_user "$ADM_USER" sign root/key --in msg --out adm.sig
        check "an admin-group member creates a key for nobody" \
                as_user "$ADM_USER" key create chat/by-admin --algorithm ec-p256 --owner nobody
        check "an admin-group member shows the policy" as_user "$ADM_USER" policy show
        check "policy check explains the admin" kmsctl policy check --user "$ADM_USER" --key root/key --op destroy
        expect_eq "admin via group" "allow: admin: member of group $ADM_GROUP" "$(cat "$KMS_OUT")"
else
        fail "cannot create a throwaway admin user (not root, or no useradd): admin group untested"
fi

kms_finish
