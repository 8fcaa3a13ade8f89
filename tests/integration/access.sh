#!/usr/bin/env bash
# Who may do what, with a real second user on the same private bus: the
# caller's uid comes from the bus daemon, never from the caller. kmsctl
# runs as 'nobody' through setpriv. Default rules: anyone may read and
# verify; only the owner and root may use or change a key; only root may
# create a key for someone else.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib/harness.sh"
kms_require openssl setpriv

export KMS_BUS_ALLOW_ALL_USERS=1
kms_harness_start
NOBODY_UID=$(id -u nobody)
NOBODY_GID=$(id -g nobody)
W=$KMS_T/work
mkdir -m 777 "$W"
cd "$W"

# as_nobody CMD...: kmsctl as uid nobody, no supplementary groups.
as_nobody() {
        local errf rc=0
        errf=$(mktemp "$W/err.XXXXXX")
        chmod 666 "$errf"
        timeout -k 5 120 setpriv --reuid="$NOBODY_UID" --regid="$NOBODY_GID" --clear-groups \
                env KMSD_BUS_ADDRESS="$KMSD_BUS_ADDRESS" ASAN_OPTIONS="${ASAN_OPTIONS:-}" \
                "$KMSCTL_BIN" "$@" 2>"$errf" || rc=$?
        cat "$errf" >&2
        rm -f "$errf"
        return "$rc"
}

printf 'a message\n' >msg
chmod 644 msg

check "root creates root/key" kmsctl key create root/key --algorithm ec-p256
check "root signs with it" kmsctl sign root/key --in msg --out root.sig
chmod 644 root.sig

# Reading and verifying are open.
check "nobody: status" as_nobody status
check "nobody: key list" as_nobody key list
check "nobody: key show root/key" as_nobody key show root/key
check "nobody: key public root/key" as_nobody key public root/key
check "nobody: verify root's signature" as_nobody verify root/key --in msg --sig root.sig

# Using or changing someone else's key is denied (exit 3), and changes nothing.
expect_fail 3 "AccessDenied" as_nobody sign root/key --in msg --out nobody.sig
[[ ! -e nobody.sig ]] && pass "no signature file after the denial" || fail "a denied sign wrote a file"
expect_fail 3 "AccessDenied" as_nobody key destroy root/key --yes
expect_fail 3 "AccessDenied" as_nobody key rotate root/key
expect_fail 3 "AccessDenied" as_nobody key revoke root/key --reason compromised
expect_fail 3 "AccessDenied" as_nobody key disable root/key
check "root/key is untouched" kmsctl key show root/key --json
expect_eq "root/key state" active "$(kms_json "$KMS_OUT" 'd["state"]' 2>&1)"
expect_eq "root/key versions" 1 "$(kms_json "$KMS_OUT" 'd["version_count"]' 2>&1)"

# Only root may name another owner.
expect_fail 3 "AccessDenied" as_nobody key create nobody/for-root --algorithm ec-p256 --owner 0
check "nothing was created" kmsctl key list --all --json
expect_eq "keys after the denied create" "root/key" "$(kms_json "$KMS_OUT" '",".join(k["name"] for k in d)' 2>&1)"

# A user owns the keys it creates and uses them; the bus says who it is.
check "nobody creates nobody/key" as_nobody key create nobody/key --algorithm ec-p256
check "key show nobody/key" kmsctl key show nobody/key --json
expect_eq "owner of nobody/key is nobody's uid" "$NOBODY_UID" "$(kms_json "$KMS_OUT" 'd["owner"]' 2>&1)"
check "nobody signs with its key" as_nobody sign nobody/key --in msg --out nobody.sig
check "nobody exports its public key" as_nobody key public nobody/key --out nobody.pem
check "openssl verifies nobody's signature" openssl dgst -sha256 -verify nobody.pem -signature nobody.sig msg

# root may act on anyone's key; root may create a key for nobody.
check "root signs with nobody/key" kmsctl sign nobody/key --in msg --out root-on-nobody.sig
check "openssl verifies it" openssl dgst -sha256 -verify nobody.pem -signature root-on-nobody.sig msg
check "root creates a key owned by nobody" kmsctl key create nobody/provisioned --algorithm ec-p256 --owner "$NOBODY_UID"
check "nobody signs with the provisioned key" as_nobody sign nobody/provisioned --in msg --out prov.sig
expect_fail 3 "AccessDenied" as_nobody sign root/key --in msg --out x.sig
check "nobody destroys its own key" as_nobody key destroy nobody/key --yes

if grep -q "denied .* uid $NOBODY_UID" "$KMS_T/kmsd.log"; then
        pass "kmsd logged the denials with the caller's uid"
else
        fail "no denial with uid $NOBODY_UID in kmsd's log"
fi

kms_finish
