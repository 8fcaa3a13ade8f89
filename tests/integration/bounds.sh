#!/usr/bin/env bash
# Work that callers can make kmsd do, bounded (docs/configuration.md
# [limits], docs/dbus-api.md ListKeys):
#
#  1. Scheduled rotation. rotate_every below [limits] min_rotate_every and
#     keep_versions above max_versions_kept are InvalidArgument at
#     CreateKey and SetKeyOptions; a key that keeps "all" versions keeps
#     max_versions_kept; a stored period below the minimum (written before
#     the minimum was raised) rotates at the minimum; many keys rotating
#     at the minimum period keep their versions bounded, and root's
#     CreateKey is not Busy meanwhile (the scheduler queues at most a few
#     rotations at once, so key generation slots stay free for callers).
#  2. Lists. With 3000 keys stored (made through kmsd), four uids without
#     any right list keys in loops: their own ListKeys must cost what a
#     call that does nothing costs (one index lookup, not a read of every
#     key), and root's GetStatus and ListKeys must stay near idle.
#     Paging (limit, after) returns every key exactly once: for root, for
#     an owner, for a uid a rule lets read some keys; ListRevoked pages
#     without splitting a key's revocations; kmsctl key list / key revoked
#     page through all of it.
#
# Probes use dbus-python (tests/lib/kmsbus.py's conversions); the other
# callers are throwaway accounts (useradd, removed at exit) run through
# setpriv. Sizes can be
# lowered for a quick run: KMS_BOUNDS_KEYS (3000), KMS_BOUNDS_ROTATING
# (60). KMS_BOUNDS_OLD=1 leaves the new [limits] keys out of kmsd.conf, for
# running this test against a kmsd that predates them (it then fails).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib/harness.sh"
kms_require setpriv sqlite3

N_KEYS=${KMS_BOUNDS_KEYS:-3000}
N_ROT=${KMS_BOUNDS_ROTATING:-60}
((N_KEYS >= 200 && N_ROT >= 6)) || die "KMS_BOUNDS_KEYS must be at least 200, KMS_BOUNDS_ROTATING at least 6"
MIN_PERIOD=2 # min_rotate_every: as low as this test needs
MAX_KEPT=3   # max_versions_kept
[[ $(id -u) -eq 0 ]] || {
        echo "SKIP: bounds needs root (throwaway accounts for the callers without rights)"
        exit 77
}
kms_require useradd userdel

export KMS_BUS_ALLOW_ALL_USERS=1
if [[ "${KMS_BOUNDS_OLD:-0}" != 1 ]]; then
        KMS_EXTRA_CONFIG=$(printf '[limits]\nmin_rotate_every = %s\nmax_versions_kept = %s' "$MIN_PERIOD" "$MAX_KEPT")
fi
kms_harness_start

# Throwaway accounts (the bus daemon wants an account behind a uid): four
# without any right, one a rule lets read bulk/k001*, one that owns keys.
ACCOUNTS=()
cleanup_accounts() {
        local u
        for u in "${ACCOUNTS[@]}"; do userdel "$u" >/dev/null 2>&1; done
        return 0
}
trap 'rc=$?; cleanup_accounts; (exit $rc); kms__on_exit' EXIT
for i in 1 2 3 4 5 6; do
        u=kmsdb-$$-$i
        useradd --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin --no-user-group \
                --gid "$(id -g nobody)" "$u" || die "useradd $u failed"
        ACCOUNTS+=("$u")
done
RIGHTLESS=("${ACCOUNTS[@]:0:4}")
READER=${ACCOUNTS[4]}
OWNER=${ACCOUNTS[5]}
OWNER_UID=$(id -u "$OWNER")
ERR=org.kmsd.KeyManager1.Error
W=$KMS_T/work
mkdir -m 755 "$W"
cd "$W"

# ---------------------------------------------------------------- helper
# bounds.py: many calls, in flight or in loops, with their latencies.
cat >"$W/bounds.py" <<'PY'
import json, os, sys, time
sys.path.insert(0, os.environ["KMS_LIB_DIR"])
import dbus
import kmsbus

NAME, PATH = "org.kmsd.KeyManager1", "/org/kmsd/KeyManager1"
ADDR = os.environ["KMSD_BUS_ADDRESS"]

def opts(text):
    return kmsbus.convert("a{sv}", json.loads(text or "{}"))

def call(conn, method, args, sig):
    return conn.call_blocking(NAME, PATH, NAME, method, sig, args, timeout=120)

def args_of(method, o):
    if method == "GetStatus":
        return [], ""
    return [opts(o)], "a{sv}"

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else -1

def summary(tag, lat, errors, extra=""):
    print("%s: n=%d p50_ms=%.1f p90_ms=%.1f max_ms=%.1f errors=%d%s" % (
        tag, len(lat), pct(lat, 0.5), pct(lat, 0.9), max(lat) if lat else -1, errors, extra))

def probe(method, count, o):
    conn = dbus.bus.BusConnection(ADDR)
    args, sig = args_of(method, o)
    lat, errors = [], 0
    for _ in range(count):
        t = time.monotonic()
        try:
            call(conn, method, args, sig)
        except dbus.exceptions.DBusException as e:
            errors += 1
            sys.stderr.write("%s: %s\n" % (method, e))
        lat.append((time.monotonic() - t) * 1e3)
    summary("probe", lat, errors)

def loop(method, seconds, o):
    conn = dbus.bus.BusConnection(ADDR)
    args, sig = args_of(method, o)
    lat, errors, n_items = [], 0, 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.monotonic()
        try:
            n_items += len(call(conn, method, args, sig))
        except dbus.exceptions.DBusException:
            errors += 1
        lat.append((time.monotonic() - t) * 1e3)
    summary("loop", lat, errors, " items=%d" % n_items)

def create(prefix, count, depth, o):
    # CreateKey with depth calls in flight; Busy (all key generation
    # slots taken) is retried.
    from dbus.mainloop.glib import DBusGMainLoop
    from gi.repository import GLib
    conn = dbus.bus.BusConnection(ADDR, mainloop=DBusGMainLoop())
    obj = conn.get_object(NAME, PATH, introspect=False)
    todo = ["%s%05d" % (prefix, i) for i in reversed(range(count))]
    st = {"flight": 0, "ok": 0, "busy": 0, "err": 0}
    loop = GLib.MainLoop()
    options = opts(o)

    def send():
        while st["flight"] < depth and todo:
            n = todo.pop()
            st["flight"] += 1
            obj.CreateKey(n, "ec-p256", options, dbus_interface=NAME, timeout=120,
                          reply_handler=lambda *a: done(None, None),
                          error_handler=lambda e, n=n: done(n, e))
        if not todo and st["flight"] == 0:
            loop.quit()
        return False

    def done(n, e):
        st["flight"] -= 1
        if e is None:
            st["ok"] += 1
        elif e.get_dbus_name() == NAME + ".Error.Busy":
            st["busy"] += 1
            todo.append(n)
            GLib.timeout_add(20, send)
            return
        else:
            st["err"] += 1
            sys.stderr.write("CreateKey %s: %s\n" % (n, e))
        send()

    t = time.monotonic()
    GLib.idle_add(send)
    loop.run()
    print("create: ok=%d busy_retries=%d errors=%d seconds=%.1f" % (
        st["ok"], st["busy"], st["err"], time.monotonic() - t))

def creates(prefix, seconds, interval):
    # One CreateKey after another, as an operator would; Busy counted.
    conn = dbus.bus.BusConnection(ADDR)
    lat, busy, other, i = [], 0, 0, 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.monotonic()
        try:
            call(conn, "CreateKey", ["%s%03d" % (prefix, i), "ec-p256", opts("{}")], "ssa{sv}")
        except dbus.exceptions.DBusException as e:
            if e.get_dbus_name() == NAME + ".Error.Busy":
                busy += 1
            else:
                other += 1
                sys.stderr.write("CreateKey: %s\n" % e)
        lat.append((time.monotonic() - t) * 1e3)
        i += 1
        time.sleep(interval)
    summary("creates", lat, busy + other, " busy=%d other=%d" % (busy, other))

def page(method, limit, o):
    # Every page until a short one; prints the entries as JSON lines
    # ("name" or "name version") and, on stderr, the page sizes.
    conn = dbus.bus.BusConnection(ADDR)
    base = json.loads(o or "{}")
    after, sizes, out = "", [], []
    while True:
        d = dict(base)
        d["limit"] = ["u", limit]
        if after:
            d["after"] = ["s", after]
        r = call(conn, method, [kmsbus.convert("a{sv}", d)], "a{sv}")
        sizes.append(len(r))
        for e in r:
            name = str(e["name"])
            if after and name <= after:
                raise SystemExit("page: '%s' after '%s'" % (name, after))
            out.append(name if method == "ListKeys" else "%s %d" % (name, int(e["version"])))
        if len(r) < limit:
            break
        after = str(r[-1]["name"])
        if len(sizes) > 100000:
            raise SystemExit("page: no end")
    sys.stderr.write("pages: %s\n" % " ".join(map(str, sizes)))
    print("\n".join(out))

cmd = sys.argv[1]
a = sys.argv[2:] + [""] * 4
if cmd == "probe":
    probe(a[0], int(a[1]), a[2])
elif cmd == "loop":
    loop(a[0], float(a[1]), a[2])
elif cmd == "create":
    create(a[0], int(a[1]), int(a[2]), a[3])
elif cmd == "creates":
    creates(a[0], float(a[1]), float(a[2]))
elif cmd == "page":
    page(a[0], int(a[1]), a[2])
else:
    raise SystemExit("bounds.py: unknown command " + cmd)
PY
chmod 644 "$W/bounds.py"
export KMS_LIB_DIR
bpy() { timeout -k 5 600 "$KMS_PYTHON" "$W/bounds.py" "$@"; }
# as_acct USER CMD...: CMD as USER with its account's groups.
as_acct() {
        local user=$1
        shift
        setpriv --reuid="$user" --regid="$(id -g "$user")" --init-groups \
                env KMSD_BUS_ADDRESS="$KMSD_BUS_ADDRESS" KMS_LIB_DIR="$KMS_LIB_DIR" "$@"
}
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" <<<"$2"; }
# versions_in NAME STATE...: how many versions of NAME are in one of STATEs.
versions_in() {
        local name=$1
        shift
        kmsctl key show "$name" --json >"$W/show.json" 2>/dev/null || {
                echo -1
                return 0
        }
        kms_json "$W/show.json" "sum(1 for v in d['versions'] if v['state'] in '$*'.split())"
}

# ================================================================ 1. rotation
# ---------------------------------------------------------------- refused
expect_fail 1 "$ERR.InvalidArgument: .*minimum of $MIN_PERIOD s.*min_rotate_every" \
        kms_call CreateKey 'ssa{sv}' '"bounds/fast"' '"ec-p256"' '{"rotate_every": ["t", 1]}'
expect_fail 1 "InvalidArgument" kmsctl key create bounds/fast --algorithm ec-p256 --rotate-every 1s
if grep -q "min_rotate_every" "$KMS_ERR"; then
        pass "kmsctl shows the minimum's setting"
else
        fail "kmsctl's message: $(cat "$KMS_ERR")"
fi
expect_fail 1 "$ERR.InvalidArgument: .*maximum of $MAX_KEPT.*max_versions_kept" \
        kms_call CreateKey 'ssa{sv}' '"bounds/many"' '"ec-p256"' "{\"keep_versions\": [\"u\", $((MAX_KEPT + 1))]}"
run kmsctl key show bounds/fast
expect_eq "a refused CreateKey made no key" 4 "$KMS_RC"

check "key create bounds/set at the minimum period" kmsctl key create bounds/set --algorithm ec-p256 \
        --rotate-every "${MIN_PERIOD}s" --keep-versions "$MAX_KEPT"
expect_fail 1 "$ERR.InvalidArgument: .*minimum of $MIN_PERIOD s" \
        kms_call SetKeyOptions 'sa{sv}' '"bounds/set"' '{"rotate_every": ["t", 1]}'
expect_fail 1 "$ERR.InvalidArgument: .*maximum of $MAX_KEPT" \
        kms_call SetKeyOptions 'sa{sv}' '"bounds/set"' "{\"keep_versions\": [\"u\", $((MAX_KEPT + 1))]}"
check "SetKeyOptions rotate_every 0 (none) is allowed" \
        kms_call SetKeyOptions 'sa{sv}' '"bounds/set"' '{"rotate_every": ["t", 0], "keep_versions": ["u", 0]}'
check "key show bounds/set" kmsctl key show bounds/set --json
expect_eq "refused settings changed nothing, the allowed ones apply" "0 0" \
        "$(kms_json "$KMS_OUT" '"%d %d" % (d["rotate_every"], d["keep_versions"])')"

# ---------------------------------------------------------------- keep all
# keep_versions 0 ("all") keeps max_versions_kept usable versions; the
# trims have their TrimVersion records.
check "key create bounds/keepall (keep_versions 0)" kmsctl key create bounds/keepall --algorithm ec-p256
for ((i = 0; i < MAX_KEPT + 3; i++)); do
        kmsctl key rotate bounds/keepall >/dev/null || fail "key rotate bounds/keepall ($i)"
done
expect_eq "a keep-all key keeps max_versions_kept usable versions" "$MAX_KEPT" \
        "$(versions_in bounds/keepall active lost)"
expect_eq "the older ones are destroyed (trimmed)" 4 "$(versions_in bounds/keepall destroyed)"
expect_eq "the primary is the newest" "$((MAX_KEPT + 4))" "$(kms_json "$W/show.json" 'd["primary_version"]')"
KEEPALL_OBJS=$(kms_p11tool --list-objects --type privkey 2>/dev/null | grep -c "label: *kmsd:bounds/keepall#" || true)
expect_eq "the token holds max_versions_kept private keys of it" "$MAX_KEPT" "$KEEPALL_OBJS"
check "audit export" kmsctl audit export --out "$W/audit.jsonl"
expect_eq "TrimVersion records name max_versions_kept" 4 "$("$KMS_PYTHON" -c '
import json, sys
print(sum(1 for l in open(sys.argv[1]) for r in [json.loads(l)]
          if r["operation"] == "TrimVersion" and r["key"] == "bounds/keepall"
          and r["details"] == "keep_versions=%s (max_versions_kept)" % sys.argv[2]))' "$W/audit.jsonl" "$MAX_KEPT")"

# ---------------------------------------------------------------- stored period
# A period stored below the minimum (set before the minimum was raised)
# rotates at the minimum: kmsd restarted with min_rotate_every = 5.
check "key create bounds/legacy" kmsctl key create bounds/legacy --algorithm ec-p256 --rotate-every 1d
kms_stop_kmsd
sqlite3 "$KMS_T/state/kmsd.db" "UPDATE keys SET rotate_every = 1 WHERE name = 'bounds/legacy'" ||
        fail "sqlite3 could not shorten bounds/legacy's period"
cp "$KMS_T/kmsd.conf" "$KMS_T/kmsd.conf.orig"
[[ "${KMS_BOUNDS_OLD:-0}" == 1 ]] || printf '\n[limits]\nmin_rotate_every = 5\n' >>"$KMS_T/kmsd.conf"
kms_start_kmsd
LEGACY_START=$SECONDS
sleep 11
run kmsctl key show bounds/legacy --json
LEGACY_V=$(kms_json "$KMS_OUT" 'd["version_count"]' 2>/dev/null || echo 0)
LEGACY_S=$((SECONDS - LEGACY_START))
# Periods are whole seconds: one rotation per 4 to 5 s at the minimum, one
# a second or faster at the stored period.
if ((LEGACY_V >= 2 && LEGACY_V <= LEGACY_S / 4 + 2)); then
        pass "a stored 1 s period rotates at the minimum (5 s): $LEGACY_V versions in $LEGACY_S s"
else
        fail "a stored 1 s period: $LEGACY_V versions in $LEGACY_S s (at most $((LEGACY_S / 4 + 2)) at 5 s)"
fi
check "stop bounds/legacy rotating" kmsctl key set bounds/legacy --rotate-every none
kms_stop_kmsd
mv "$KMS_T/kmsd.conf.orig" "$KMS_T/kmsd.conf"
kms_start_kmsd

# ---------------------------------------------------------------- many keys
# N_ROT keys at the minimum period, keeping all versions: versions stay at
# max_versions_kept, and root's CreateKey is served meanwhile.
OBJ0=$(kms_p11_object_count)
bpy create bounds/rot/k "$N_ROT" 3 "{\"rotate_every\": [\"t\", $MIN_PERIOD]}" >"$W/rot-create.out" 2>&1 ||
        fail "creating the rotating keys: $(cat "$W/rot-create.out")"
echo "rotating keys: $(cat "$W/rot-create.out")"
ROT_S=${KMS_BOUNDS_ROTATE_SECONDS:-16}
bpy creates bounds/root/k "$ROT_S" 0.4 >"$W/creates.out" 2>&1 || true
CREATES=$(grep '^creates:' "$W/creates.out" || echo "creates: n=0 busy=-1")
echo "root's CreateKey while $N_ROT keys rotate every ${MIN_PERIOD}s: $CREATES"
run kmsctl key list --json
ROT_STATS=$(kms_json "$KMS_OUT" '"%d %d" % (sum(k["version_count"] for k in d if k["name"].startswith("bounds/rot/")), max([k["primary_version"] for k in d if k["name"].startswith("bounds/rot/")] or [0]))')
echo "rotating keys: versions made, highest primary: $ROT_STATS"
if [[ "$(field busy "$CREATES")" == 0 && "$(field other "$CREATES")" == 0 && "$(field n "$CREATES")" -ge 10 ]]; then
        pass "root's CreateKey was never Busy while the keys rotated ($CREATES)"
else
        fail "root's CreateKey while the keys rotated: $CREATES"
fi
if ((${ROT_STATS#* } >= 3)); then
        pass "the keys did rotate (highest primary version ${ROT_STATS#* })"
else
        fail "the keys hardly rotated (highest primary version ${ROT_STATS#* }): the test proves nothing"
fi
MAX_USABLE=0
for ((i = 0; i < N_ROT; i += N_ROT / 6 + 1)); do
        u=$(versions_in "$(printf 'bounds/rot/k%05d' "$i")" active lost)
        ((u > MAX_USABLE)) && MAX_USABLE=$u
done
if ((MAX_USABLE >= 1 && MAX_USABLE <= MAX_KEPT)); then
        pass "rotating keys keep at most max_versions_kept usable versions (at most $MAX_USABLE)"
else
        fail "a rotating key has $MAX_USABLE usable versions (max_versions_kept $MAX_KEPT)"
fi
OBJ1=$(kms_p11_object_count)
ROOT_CREATED=$(field n "$CREATES")
# Two objects (private, public) per usable version; root's new keys one each.
BOUND=$((OBJ0 + 2 * N_ROT * MAX_KEPT + 2 * ROOT_CREATED + 8))
if ((OBJ1 <= BOUND)); then
        pass "the token holds $OBJ1 objects (bound $BOUND)"
else
        fail "the token holds $OBJ1 objects, over $BOUND"
fi
# Stop every schedule, so the lists below are measured alone.
"$KMS_PYTHON" - <<'PY' || fail "could not stop the rotating keys"
import os, sys
sys.path.insert(0, os.environ["KMS_LIB_DIR"])
import dbus, kmsbus
c = dbus.bus.BusConnection(os.environ["KMSD_BUS_ADDRESS"])
def keys(o):
    return c.call_blocking("org.kmsd.KeyManager1", "/org/kmsd/KeyManager1", "org.kmsd.KeyManager1", "ListKeys",
                           "a{sv}", [kmsbus.convert("a{sv}", o)], timeout=120)
try:
    ks = keys({"limit": ["u", 5000]})
except dbus.exceptions.DBusException:
    ks = keys({})  # a kmsd without pages (KMS_BOUNDS_OLD)
for k in ks:
    if int(k["rotate_every"]) != 0:
        c.call_blocking("org.kmsd.KeyManager1", "/org/kmsd/KeyManager1", "org.kmsd.KeyManager1", "SetKeyOptions",
                        "sa{sv}", [k["name"], kmsbus.convert("a{sv}", {"rotate_every": ["t", 0]})], timeout=120)
PY

# ================================================================ 2. lists
# ---------------------------------------------------------------- keys
bpy create bulk/k "$N_KEYS" 3 >"$W/bulk.out" 2>&1 || fail "creating $N_KEYS keys: $(cat "$W/bulk.out")"
echo "$N_KEYS keys: $(cat "$W/bulk.out")"
for i in 1 2 3; do
        check "root creates own/o$i for uid $OWNER_UID" kmsctl key create "own/o$i" --algorithm ec-p256 --owner "$OWNER_UID"
done
cat >"$KMS_T/policy.d/50-reader.conf" <<EOF
[bulk-reader]
subjects = user:$READER
operations = read
keys = bulk/k001*
EOF
check "policy reload (a reader of bulk/k001*)" kmsctl policy reload
TOTAL=$(kms_status_keys)
echo "keys stored: $TOTAL"

# ---------------------------------------------------------------- paging
bpy page ListKeys 700 >"$W/root-pages.txt" 2>"$W/root-pages.err" || fail "root pages ListKeys: $(cat "$W/root-pages.err")"
echo "root, limit 700: $(cat "$W/root-pages.err")"
expect_eq "root's pages hold every key" "$TOTAL" "$(wc -l <"$W/root-pages.txt")"
expect_eq "... each once" "$TOTAL" "$(sort -u "$W/root-pages.txt" | wc -l)"
expect_eq "... in name order" "" "$(LC_ALL=C sort -c "$W/root-pages.txt" 2>&1)"
run kms_call ListKeys 'a{sv}' '{}'
expect_eq "ListKeys without options returns the default page (1000)" 1000 \
        "$("$KMS_PYTHON" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))[0]))' "$KMS_OUT")"
check "kmsctl key list pages through every key" kmsctl key list --json
expect_eq "kmsctl key list --json has every key" "$TOTAL" "$(kms_json "$KMS_OUT" 'len(d)')"
kms_json "$KMS_OUT" '"\n".join(k["name"] for k in d)' >"$W/kmsctl-list.txt"
if cmp -s "$W/kmsctl-list.txt" "$W/root-pages.txt"; then
        pass "... the same names as the pages"
else
        fail "kmsctl key list and the pages differ: $(diff "$W/kmsctl-list.txt" "$W/root-pages.txt" | head -5)"
fi
check "kmsctl key list (table)" kmsctl key list
expect_eq "the table has every key" "$((TOTAL + 1))" "$(wc -l <"$KMS_OUT")"
as_acct "$OWNER" "$KMS_PYTHON" "$W/bounds.py" page ListKeys 2 >"$W/owner-pages.txt" 2>"$W/owner-pages.err" ||
        fail "the owner pages: $(cat "$W/owner-pages.err")"
expect_eq "an owner's pages (limit 2): its keys, each once" "own/o1 own/o2 own/o3" "$(tr '\n' ' ' <"$W/owner-pages.txt" | sed 's/ $//')"
as_acct "$READER" "$KMS_PYTHON" "$W/bounds.py" page ListKeys 30 >"$W/reader-pages.txt" 2>"$W/reader-pages.err" ||
        fail "the reader pages: $(cat "$W/reader-pages.err")"
grep '^bulk/k001' "$W/root-pages.txt" >"$W/reader-expected.txt" || true
if [[ -s "$W/reader-expected.txt" ]] && cmp -s "$W/reader-expected.txt" "$W/reader-pages.txt"; then
        pass "a rule's reader (limit 30): the $(wc -l <"$W/reader-pages.txt") keys of bulk/k001*, each once ($(cat "$W/reader-pages.err"))"
else
        fail "a rule's reader (limit 30): $(wc -l <"$W/reader-pages.txt") keys, not the $(wc -l <"$W/reader-expected.txt") of bulk/k001*: $(head -c 300 "$W/reader-pages.err")"
fi
as_acct "${RIGHTLESS[0]}" "$KMS_PYTHON" "$W/bounds.py" page ListKeys 10 >"$W/none-pages.txt" 2>&1 ||
        fail "a rightless uid pages: $(cat "$W/none-pages.txt")"
expect_eq "a rightless uid lists nothing" "pages: 0" "$(cat "$W/none-pages.txt")"
expect_fail 1 "$ERR.InvalidArgument: .*'limit' = 0" kms_call ListKeys 'a{sv}' '{"limit": ["u", 0]}'
expect_fail 1 "$ERR.InvalidArgument: .*'limit' = 5001" kms_call ListKeys 'a{sv}' '{"limit": ["u", 5001]}'
expect_fail 1 "$ERR.InvalidArgument: .*'after'" kms_call ListKeys 'a{sv}' '{"after": ["s", "a//b"]}'
run kms_call ListKeys 'a{sv}' "{\"after\": [\"s\", \"$(printf 'bulk/k%05d' $((N_KEYS - 2)))\"], \"limit\": [\"u\", 3]}"
expect_eq "after a name: the names after it" "$(printf 'bulk/k%05d' $((N_KEYS - 1))) own/o1 own/o2" \
        "$(kms_json "$KMS_OUT" '" ".join(k["name"] for k in d[0])')"

# ---------------------------------------------------------------- revoked
# bulk/k00010 with three revoked versions: pages of 3 never split it.
for _ in 1 2; do kmsctl key rotate bulk/k00010 >/dev/null || fail "rotate bulk/k00010"; done
check "revoke bulk/k00010 (3 versions)" kmsctl key revoke bulk/k00010 --reason retired
for k in bulk/k00005 bulk/k00020 bulk/k00030 bulk/k00150 own/o2; do
        check "revoke $k" kmsctl key revoke "$k" --reason superseded
done
bpy page ListRevoked 3 >"$W/rev-pages.txt" 2>"$W/rev-pages.err" || fail "root pages ListRevoked: $(cat "$W/rev-pages.err")"
echo "ListRevoked, limit 3: $(cat "$W/rev-pages.err")"
expect_eq "ListRevoked's pages hold every revocation once" \
        "bulk/k00005 1,bulk/k00010 1,bulk/k00010 2,bulk/k00010 3,bulk/k00020 1,bulk/k00030 1,bulk/k00150 1,own/o2 1" \
        "$(tr '\n' ',' <"$W/rev-pages.txt" | sed 's/,$//')"
expect_eq "a key's revocations stay together (pages of 4, 3, 1)" "pages: 4 3 1" "$(cat "$W/rev-pages.err")"
check "kmsctl key revoked" kmsctl key revoked --json
expect_eq "kmsctl key revoked lists them all" 8 "$(kms_json "$KMS_OUT" 'len(d)')"
as_acct "$OWNER" "$KMS_PYTHON" "$W/bounds.py" page ListRevoked 1 >"$W/own-rev.txt" 2>/dev/null ||
        fail "the owner pages ListRevoked"
expect_eq "an owner's revocations" "own/o2 1" "$(cat "$W/own-rev.txt")"
as_acct "$READER" "$KMS_PYTHON" "$W/bounds.py" page ListRevoked 5 >"$W/reader-rev.txt" 2>/dev/null ||
        fail "the reader pages ListRevoked"
expect_eq "a rule's reader: the revocations it may read" "bulk/k00150 1" "$(cat "$W/reader-rev.txt")"

# ---------------------------------------------------------------- load
# Four uids without any right list keys in loops; root's GetStatus and
# ListKeys (one page of 50) must not wait for them.
idle_status=$(bpy probe GetStatus 40)
idle_list=$(bpy probe ListKeys 20 '{"limit": ["u", 50]}' 2>&1)
echo "idle: GetStatus $idle_status; ListKeys(limit 50) $idle_list"
LOAD_S=${KMS_BOUNDS_LOAD_SECONDS:-12}
pids=()
for uid in "${RIGHTLESS[@]}"; do
        as_acct "$uid" "$KMS_PYTHON" "$W/bounds.py" loop ListKeys "$LOAD_S" >"$W/loop-$uid.out" 2>&1 &
        pids+=($!)
done
sleep 2
loaded_status=$(bpy probe GetStatus 60)
loaded_list=$(bpy probe ListKeys 20 '{"limit": ["u", 50]}' 2>&1)
for p in "${pids[@]}"; do wait "$p" || true; done
echo "loaded: GetStatus $loaded_status; ListKeys(limit 50) $loaded_list"
for uid in "${RIGHTLESS[@]}"; do echo "uid $uid: $(cat "$W/loop-$uid.out")"; done
calls=0
s_idle=$(field p50_ms "$idle_status")
# A rightless ListKeys costs an index lookup, not a read of every key: its
# own latency is that of a call that does nothing (GetStatus), not tens
# of milliseconds.
r_limit=$(awk -v i="$s_idle" 'BEGIN { printf "%.1f", 2 * i + 5 }')
for uid in "${RIGHTLESS[@]}"; do
        out=$(cat "$W/loop-$uid.out")
        c=$(field n "$out")
        items=$(field items "$out")
        [[ "$items" == 0 ]] || fail "uid $uid saw $items keys"
        calls=$((calls + ${c:-0}))
        r_p50=$(field p50_ms "$out")
        if awk -v l="$r_p50" -v m="$r_limit" 'BEGIN { exit !(l != "" && l <= m) }'; then
                pass "a rightless ListKeys ($uid) takes $r_p50 ms at p50 (limit $r_limit ms)"
        else
                fail "a rightless ListKeys ($uid) takes ${r_p50:-?} ms at p50, over $r_limit ms: work grows with the keys stored"
        fi
done
if ((calls >= 40)); then
        pass "the rightless uids listed $calls times"
else
        fail "the rightless uids listed only $calls times: the test proves nothing"
fi
# Root's calls wait for no rightless caller's work: p50 within a few
# milliseconds of idle.
s_load=$(field p50_ms "$loaded_status")
l_load=$(field p50_ms "$loaded_list")
s_limit=$(awk -v i="$s_idle" 'BEGIN { printf "%.1f", 3 * i + 5 }')
if awk -v l="$s_load" -v m="$s_limit" 'BEGIN { exit !(l <= m) }'; then
        pass "root's GetStatus p50 while rightless uids list: $s_load ms (idle $s_idle ms, limit $s_limit ms)"
else
        fail "root's GetStatus p50 while rightless uids list: $s_load ms, over $s_limit ms (idle $s_idle ms)"
fi
l_limit=$(awk -v i="$(field p50_ms "$idle_list")" 'BEGIN { printf "%d", 5 * i + 25 }')
if grep -q 'errors=0' <<<"$loaded_list" && awk -v l="$l_load" -v m="$l_limit" 'BEGIN { exit !(l <= m) }'; then
        pass "root's ListKeys p50 while rightless uids list: $l_load ms (limit $l_limit ms)"
else
        fail "root's ListKeys p50 while rightless uids list: $l_load ms, over $l_limit ms"
fi
if grep -q 'errors=0' <<<"$loaded_status" && grep -q 'errors=0' <<<"$loaded_list"; then
        pass "root's probes were all answered"
else
        fail "root's probes: $loaded_status / $loaded_list"
fi

kms_finish
