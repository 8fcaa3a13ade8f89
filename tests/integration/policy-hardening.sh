#!/usr/bin/env bash
# Hardening of the access policy and of what refused callers can leave
# behind, with real second users on the private bus (through setpriv):
#   create      CreateKey for another owner needs create on the name AND
#               admin: an admin grant is no way around a deny rule on the
#               name; a rule of only global operations (admin, audit,
#               status) with a keys line other than * is refused at load
#   rule names  a denied caller is told the rule's name, not the policy
#               file's path or line; kmsd's log and policy check have them
#   files       policy files and folder: root-owned, not group/world
#               writable, no symbolic links, regular files; a bad one is a
#               reload error naming it (the old policy stays) and stops a
#               start; state_dir must be kmsd's, 0700
#   callers     the caller cache is dropped by a reload and expires after
#               30 s, so a removed group membership ends on a connection
#               that stays open
#   injection   a key name or option key with a newline stays on one line
#               of kmsd's log
#   flood       4000 refused calls of a uid with no rights add at most
#               burst 20 + 2/s audit records and log lines, then one
#               "N similar refusals suppressed" record that accounts for
#               the rest; every call still gets its error reply
# Needs root (throwaway user and group, chown, gpasswd).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib/harness.sh"
kms_require setpriv useradd groupadd gpasswd userdel groupdel
if [[ $(id -u) -ne 0 ]]; then
        echo "SKIP: $KMS_TEST_NAME needs root to create a throwaway user and group"
        exit 77
fi
if ! "$KMS_PYTHON" -c 'import dbus, sqlite3' 2>/dev/null; then
        echo "SKIP: $KMS_TEST_NAME needs python3-dbus (scripts/deps installs it)"
        exit 77
fi

# A throwaway group and a member of it: group rules and the caller cache.
GRP=kmsdt-g-$$
USR=kmsdt-c-$$
groupadd "$GRP"
useradd --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin -G "$GRP" "$USR"
cleanup_accounts() {
        userdel "$USR" >/dev/null 2>&1
        groupdel "$GRP" >/dev/null 2>&1
        return 0
}

export KMS_BUS_ALLOW_ALL_USERS=1
kms_harness_start
trap 'rc=$?; [[ -n "${CLIENT_PID:-}" ]] && kill "$CLIENT_PID" 2>/dev/null; cleanup_accounts; (exit $rc); kms__on_exit' EXIT
NOBODY_UID=$(id -u nobody)
P=$KMS_T/policy.d
W=$KMS_T/work
DB=$KMS_T/state/kmsd.db
mkdir -m 777 "$W"
cd "$W"

# The client: one python process per user, with its own connections.
cat >client.py <<'PY'
import json, os, sys, time
import dbus

ADDR = os.environ["KMSD_BUS_ADDRESS"]
NAME, PATH, IFACE = "org.kmsd.KeyManager1", "/org/kmsd/KeyManager1", "org.kmsd.KeyManager1"

def call(conn, method, sig, args):
    try:
        conn.call_blocking(NAME, PATH, IFACE, method, sig, args, timeout=30)
        return "ok"
    except dbus.exceptions.DBusException as e:
        return "ERROR " + e.get_dbus_name()

mode = sys.argv[1]
if mode == "flood":
    # Refused calls of four kinds, one after the other: denied (a key and
    # not a key), unknown method, wrong signature.
    n = int(sys.argv[2])
    conn = dbus.bus.BusConnection(ADDR)
    kinds = [("DescribeKey", "s", ["root/key"]), ("GetStatus", "", []),
             ("FrobnicateKey", "s", ["x"]), ("DescribeKey", "", [])]
    counts = {}
    start = time.monotonic()
    for i in range(n):
        m, sig, args = kinds[i % len(kinds)]
        r = call(conn, m, sig, args)
        counts[r] = counts.get(r, 0) + 1
    print(json.dumps({"seconds": time.monotonic() - start, "replies": counts}))
elif mode == "inject":
    conn = dbus.bus.BusConnection(ADDR)
    mark = sys.argv[2]
    forged = "denied: uid 0 pid 1 Sign key 'root/key': " + mark
    print(call(conn, "DescribeKey", "s", ["x\n" + forged]))
    print(call(conn, "CreateKey", "ssa{sv}",
               ["team/x", "ec-p256", dbus.Dictionary({"u\n" + forged: dbus.String("sign", variant_level=1)},
                                                      signature="sv")]))
else:  # interactive: "open NAME", "call NAME METHOD" on stdin, one answer per line
    conns = {}
    for line in sys.stdin:
        w = line.split()
        if w[0] == "open":
            conns[w[1]] = dbus.bus.BusConnection(ADDR)
            print("opened", flush=True)
        elif w[0] == "call":
            print(call(conns[w[1]], w[2], "", []), flush=True)
PY
chmod 644 client.py
as_python() {
        local user=$1
        shift
        timeout -k 5 120 setpriv --reuid="$user" --regid="$(id -g "$user")" --init-groups \
                env KMSD_BUS_ADDRESS="$KMSD_BUS_ADDRESS" "$KMS_PYTHON" "$W/client.py" "$@"
}
# Rows of the audit table, counted by sqlite (read-only) as root.
audit_sql() {
        "$KMS_PYTHON" - "$DB" "$1" <<'PY'
import sqlite3, sys
db = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True, timeout=10)
print(db.execute(sys.argv[2]).fetchone()[0] or 0)
PY
}
reload() { kmsctl policy reload; }

check "root creates root/key" kmsctl key create root/key --algorithm ec-p256

# ================================================================ create
# Today's bypass: a rule granting admin (scoped, in the author's mind, to
# team/*) let its holder create prod/anything for another owner past a
# deny rule on prod/*, because the admin decision replaced the create
# decision and dropped the name.
cat >"$P/10-prod.conf" <<EOF
[deny-prod]
subjects = any
operations = create
keys = prod/*
effect = deny
EOF
cat >"$P/50-team.conf" <<EOF
[team-admin]
subjects = user:nobody
operations = admin, create
keys = team/*

[group-status]
subjects = group:$GRP
operations = status
keys = *
EOF
chmod 644 "$P"/*.conf
check "reload with deny-prod and team-admin" reload
expect_fail 3 "AccessDenied" as_nobody key create prod/by-nobody --algorithm ec-p256 --owner root
grep -q "may not do 'create' on key 'prod/by-nobody': rule \[deny-prod\]" "$KMS_ERR" &&
        pass "the deny rule on the name decided" || fail "denial text: $(cat "$KMS_ERR")"
check "no key prod/by-nobody" kmsctl key list --all --json
expect_eq "keys after the refused create" "root/key" "$(kms_json "$KMS_OUT" '",".join(sorted(k["name"] for k in d))' 2>&1)"
check "nobody creates team/for-root for root (create on team/*, and admin)" \
        as_nobody key create team/for-root --algorithm ec-p256 --owner root
check "team/for-root" kmsctl key show team/for-root --json
expect_eq "team/for-root's owner" 0 "$(kms_json "$KMS_OUT" 'd["owner"]' 2>&1)"
# create without admin: the caller's own key only.
cat >"$P/50-team.conf" <<EOF
[team-create]
subjects = user:nobody
operations = create
keys = team/*

[group-status]
subjects = group:$GRP
operations = status
keys = *
EOF
check "reload with create only" reload
expect_fail 3 "another owner.*needs 'admin'" as_nobody key create team/x --algorithm ec-p256 --owner root
check "nobody creates team/own for itself" as_nobody key create team/own --algorithm ec-p256

# A rule of only global operations with a keys line that would seem to
# limit them: refused at load, naming file, line and why.
cat >"$P/60-scoped-admin.conf" <<EOF
# admin for the team's keys (it cannot be)
[scoped-admin]
subjects = user:nobody
operations = admin
keys = team/*
EOF
chmod 644 "$P/60-scoped-admin.conf"
expect_fail 1 "PolicyInvalid" kmsctl policy reload
grep -q "60-scoped-admin.conf:5: rule \[scoped-admin\] grants only admin, which are not about one key: 'keys = team/\*' would not limit them" "$KMS_ERR" &&
        pass "the refusal names file:line and why" || fail "refusal text: $(cat "$KMS_ERR")"
expect_fail 3 "AccessDenied" as_nobody policy show
# Without the keys line (or with keys = *) it loads.
sed -i '/^keys = team/d' "$P/60-scoped-admin.conf"
check "a global-only rule without keys loads" reload
check "nobody may show the policy now" as_nobody policy show --json
expect_eq "scoped-admin's keys are shown as *" "*" \
        "$(kms_json "$KMS_OUT" '[r["keys"] for r in d["rules"] if r["name"] == "scoped-admin"][0]' 2>&1)"
rm -f "$P/60-scoped-admin.conf"
check "reload without scoped-admin" reload

# ================================================================ rule names
# The caller learns which rule denied it, not where the policy lives.
expect_fail 3 "AccessDenied" as_nobody key create prod/y --algorithm ec-p256
if grep -q "rule \[deny-prod\] (effect deny)" "$KMS_ERR" && ! grep -q "$P\|\.conf" "$KMS_ERR"; then
        pass "the denial names the rule, not its file: $(cat "$KMS_ERR")"
else
        fail "the denial shows more than the rule's name: $(cat "$KMS_ERR")"
fi
grep -q "denied: uid $NOBODY_UID pid [0-9]* CreateKey key 'prod/y': rule \[deny-prod\] ($P/10-prod.conf:1, effect deny)" \
        "$KMS_T/kmsd.log" && pass "kmsd's log has the rule's file and line" || fail "no full denial line in kmsd's log"
expect_fail 3 "" kmsctl policy check --user nobody --key prod/y --op create
grep -q "deny: rule \[deny-prod\] ($P/10-prod.conf:1, effect deny)" "$KMS_OUT" && pass "policy check: $(cat "$KMS_OUT")" ||
        fail "policy check: $(cat "$KMS_OUT")"

# ================================================================ files
# Each bad file or folder: the reload is refused naming it and why, and
# the old policy stays (nobody may still create team/ keys).
policy_refused() {
        local desc=$1 pattern=$2
        expect_fail 1 "PolicyInvalid" kmsctl policy reload
        grep -Eq -- "$pattern" "$KMS_ERR" && pass "$desc: $(cat "$KMS_ERR")" || fail "$desc: $(cat "$KMS_ERR")"
}
chmod 664 "$P/50-team.conf"
policy_refused "a group-writable file" "$P/50-team.conf: the policy file has mode 0664, writable by its group"
chmod 646 "$P/50-team.conf"
policy_refused "a world-writable file" "$P/50-team.conf: .*writable by others"
chmod 644 "$P/50-team.conf"
chown nobody "$P/50-team.conf"
policy_refused "a file owned by nobody" "$P/50-team.conf: the policy file is owned by uid $NOBODY_UID"
chown root "$P/50-team.conf"
printf '[linked]\nsubjects = any\noperations = status\nkeys = *\n' >"$W/outside.conf"
chmod 644 "$W/outside.conf"
ln -s "$W/outside.conf" "$P/70-link.conf"
policy_refused "a symbolic link" "$P/70-link.conf: is a symbolic link"
rm -f "$P/70-link.conf"
mkfifo -m 644 "$P/70-fifo.conf"
policy_refused "a FIFO" "$P/70-fifo.conf: not a regular file"
rm -f "$P/70-fifo.conf"
chmod 777 "$P"
policy_refused "a world-writable folder" "$P: the policy folder has mode 0777"
chmod 755 "$P"
check "the old policy stayed: nobody still creates its own team/ key" as_nobody key create team/own2 --algorithm ec-p256
check "all fixed: the reload works" reload

# At start: kmsd does not start with a bad policy file or state_dir. A
# second kmsd with its own config; it stops before the bus and the token.
refused_start() {
        local desc=$1 conf=$2 pattern=$3 rc=0
        timeout -k 5 30 "$KMSD_BIN" --config "$conf" --bus-address "$KMSD_BUS_ADDRESS" </dev/null \
                >"$KMS_T/refused.log" 2>&1 || rc=$?
        cat "$KMS_T/refused.log" >>"$KMS_T/refused-all.log"
        if ((rc == 0 || rc == 124 || rc == 137)); then
                fail "$desc: kmsd exited $rc, expected a refusal: $(head -c 500 "$KMS_T/refused.log")"
        elif grep -Eq -- "$pattern" "$KMS_T/refused.log"; then
                pass "$desc: kmsd does not start (exit $rc): $(grep -E -- "$pattern" "$KMS_T/refused.log" | head -n1)"
        else
                fail "$desc: kmsd exited $rc but does not say '$pattern': $(head -c 500 "$KMS_T/refused.log")"
        fi
}
B=$KMS_T/second
mkdir -m 700 "$B"
mkdir -m 755 "$B/policy.d"
printf '[ok]\nsubjects = any\noperations = status\nkeys = *\n' >"$B/policy.d/10-ok.conf"
chmod 664 "$B/policy.d/10-ok.conf"
# No token module: a kmsd that got past state_dir stops at the token, never
# touching the running kmsd's token.
sed -e "s|^state_dir = .*|state_dir = $B/state|" -e "s|^dir = .*|dir = $B/policy.d|" \
        -e "s|^module = .*|module = $B/no-such-module.so|" "$KMS_T/kmsd.conf" >"$B/kmsd.conf"
refused_start "a group-writable policy file" "$B/kmsd.conf" "$B/policy.d/10-ok.conf: the policy file has mode 0664"
run "$KMSD_BIN" --config "$B/kmsd.conf" --check-config
((KMS_RC != 0)) && grep -q "10-ok.conf: the policy file has mode 0664" "$KMS_ERR" &&
        pass "--check-config refuses it too" || fail "--check-config: exit $KMS_RC: $(cat "$KMS_ERR")"
chmod 644 "$B/policy.d/10-ok.conf"
rm -rf "$B/state" # (a kmsd that did start above made it)
mkdir -m 755 "$B/state"
refused_start "state_dir with mode 0755" "$B/kmsd.conf" "state_dir $B/state has mode 0755; it must be 0700"
chmod 700 "$B/state"
chown nobody "$B/state"
refused_start "state_dir owned by nobody" "$B/kmsd.conf" "state_dir $B/state is owned by uid $NOBODY_UID, not by kmsd's uid 0"
rm -rf "$B/state"
refused_start "a new state_dir (then no token module)" "$B/kmsd.conf" "no-such-module"
expect_eq "kmsd made state_dir 0700" "700 root" "$(stat -c '%a %U' "$B/state" 2>&1)"

# ================================================================ callers
# One connection stays open; its user leaves the group that grants it
# status. The cached groups serve until a reload drops them.
coproc CLIENT { as_python "$USR" interactive 2>&1; }
ask() {
        local answer=""
        echo "$*" >&"${CLIENT[1]}"
        IFS= read -r -t 30 answer <&"${CLIENT[0]}" || answer="(no answer)"
        echo "$answer"
}
expect_eq "connection a opens" opened "$(ask open a)"
expect_eq "a group member calls GetStatus on connection a" ok "$(ask call a GetStatus)"
gpasswd -d "$USR" "$GRP" >/dev/null
expect_eq "removed from the group: connection a still served from the cache" ok "$(ask call a GetStatus)"
check "policy reload" reload
expect_eq "after the reload, connection a is denied" "ERROR org.kmsd.KeyManager1.Error.AccessDenied" \
        "$(ask call a GetStatus)"
# Expiry, without a reload: connection b is identified now, its user
# leaves the group, and 30 s later the cached groups are fetched again.
gpasswd -a "$USR" "$GRP" >/dev/null
expect_eq "connection b opens" opened "$(ask open b)"
expect_eq "a group member again: connection b is allowed" ok "$(ask call b GetStatus)"
B_SINCE=$SECONDS
gpasswd -d "$USR" "$GRP" >/dev/null
expect_eq "removed again: connection b still served from the cache" ok "$(ask call b GetStatus)"
# (No reload from here until the check below: it would drop the cache.)

# ================================================================ injection
MARK=INJECTED-$$
run as_python nobody inject "$MARK"
expect_eq "the injecting calls are refused" \
        "ERROR org.kmsd.KeyManager1.Error.InvalidArgument ERROR org.kmsd.KeyManager1.Error.InvalidArgument" \
        "$(tr '\n' ' ' <"$KMS_OUT" | sed 's/ $//')"
expect_eq "kmsd's log lines with the mark" 2 "$(grep -c "$MARK" "$KMS_T/kmsd.log" || true)"
if grep "$MARK" "$KMS_T/kmsd.log" | grep -qv "^kmsd\[info\]: .* from uid $NOBODY_UID pid [0-9]* refused: .*x0adenied: uid 0 pid 1 Sign"; then
        fail "a line with the mark is not one escaped refusal line: $(grep "$MARK" "$KMS_T/kmsd.log" | head -c 600)"
else
        pass "each stays on its refusal's line: $(grep -m1 "$MARK" "$KMS_T/kmsd.log" | head -c 200)"
fi
if grep -q "^denied: uid 0" "$KMS_T/kmsd.log"; then
        fail "a caller started a line of kmsd's log: $(grep -m1 '^denied: uid 0' "$KMS_T/kmsd.log")"
else
        pass "no line of kmsd's log starts with a caller's text"
fi

# ================================================================ flood
# 4000 refused calls from a uid with no rights, as fast as one connection
# sends them.
FLOOD=4000
BURST=20 PER_S=2 SUMMARY_S=10
# A request answered after its record is written: the refusals before it
# (not waited for) are in the table by then.
check "status (the audit table is up to date)" kmsctl status
SEQ0=$(audit_sql "SELECT max(seq) FROM audit")
LOG0=$(wc -l <"$KMS_T/kmsd.log")
run as_python nobody flood "$FLOOD"
SECS=$(kms_json "$KMS_OUT" 'int(d["seconds"]) + 1' 2>&1)
expect_eq "every refused call got its error reply" \
        "{\"ERROR org.freedesktop.DBus.Error.InvalidArgs\": 1000, \"ERROR org.freedesktop.DBus.Error.UnknownMethod\": 1000, \"ERROR org.kmsd.KeyManager1.Error.AccessDenied\": 2000}" \
        "$(kms_json "$KMS_OUT" 'dict(sorted(d["replies"].items()))' 2>&1)"
echo "flood: $FLOOD calls in under $SECS s"
# The summary is due SUMMARY_S after the first suppressed refusal.
for ((i = 0; i < 150; i++)); do
        (($(audit_sql "SELECT count(*) FROM audit WHERE seq > $SEQ0 AND uid = $NOBODY_UID AND kind = 'refusals_suppressed'") > 0)) && break
        sleep 0.1
done
RECORDED=$(audit_sql "SELECT count(*) FROM audit WHERE seq > $SEQ0 AND uid = $NOBODY_UID AND kind != 'refusals_suppressed'")
SUMMARIES=$(audit_sql "SELECT count(*) FROM audit WHERE seq > $SEQ0 AND uid = $NOBODY_UID AND kind = 'refusals_suppressed'")
SUPPRESSED=$(audit_sql "SELECT sum(CAST(substr(details, 1, instr(details, ' ') - 1) AS INTEGER)) FROM audit WHERE seq > $SEQ0 AND uid = $NOBODY_UID AND kind = 'refusals_suppressed'")
LIMIT=$((BURST + PER_S * SECS + 1))
echo "flood: $RECORDED records, $SUMMARIES summaries of $SUPPRESSED suppressed refusals (bound $LIMIT + summaries)"
((RECORDED <= LIMIT)) && pass "audit records of the flood: $RECORDED <= burst $BURST + $PER_S/s x ${SECS}s + 1" ||
        fail "the flood added $RECORDED audit records (bound $LIMIT)"
((SUMMARIES >= 1 && SUMMARIES <= SECS / SUMMARY_S + 2)) && pass "summary records: $SUMMARIES" ||
        fail "summary records: $SUMMARIES"
expect_eq "recorded + suppressed = the calls made" "$FLOOD" "$((RECORDED + SUPPRESSED))"
expect_eq "the summary record" "refusals_suppressed RefusalSummary suppressed 1 1 1 1" \
        "$(audit_sql "SELECT kind || ' ' || operation || ' ' || result || ' ' || (details GLOB '[1-9]* similar refusals suppressed in * s (*') || ' ' || (instr(details, 'denied ') > 0) || ' ' || (instr(details, 'UnknownMethod ') > 0) || ' ' || (instr(details, 'InvalidArgs ') > 0) FROM audit WHERE seq > $SEQ0 AND uid = $NOBODY_UID AND kind = 'refusals_suppressed' ORDER BY seq LIMIT 1")"
LOG_LINES=$(tail -n +"$((LOG0 + 1))" "$KMS_T/kmsd.log" | grep -c "uid $NOBODY_UID" || true)
((LOG_LINES <= LIMIT + SUMMARIES)) && pass "kmsd's log lines about uid $NOBODY_UID: $LOG_LINES" ||
        fail "the flood wrote $LOG_LINES log lines (bound $((LIMIT + SUMMARIES)))"
tail -n +"$((LOG0 + 1))" "$KMS_T/kmsd.log" | grep -q "uid $NOBODY_UID: [0-9]* similar refusals suppressed in" &&
        pass "the summary is logged: $(tail -n +"$((LOG0 + 1))" "$KMS_T/kmsd.log" | grep -m1 'similar refusals suppressed' | head -c 250)" ||
        fail "no summary line in kmsd's log"
check "kmsd still answers" kmsctl status

# ================================================================ expiry
while ((SECONDS - B_SINCE < 31)); do sleep 1; done
expect_eq "30 s later connection b's groups were fetched again: denied" \
        "ERROR org.kmsd.KeyManager1.Error.AccessDenied" "$(ask call b GetStatus)"
eval "exec ${CLIENT[1]}>&-"
wait "$CLIENT_PID" 2>/dev/null || true

kms_finish
