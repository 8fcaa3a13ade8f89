#!/usr/bin/env bash
# Builds the Debian package with scripts/package and checks it:
#   - its name, control fields and dependencies, and its exact file list,
#     owners, modes and conffiles;
#   - the packaged unit, bus policy and XML are the source tree's files;
#   - lintian reports no errors;
#   - its man pages render without warnings;
#   - it installs, removes and purges in a throwaway root (dpkg --root with
#     the maintainer scripts run against DPKG_ROOT): users and groups,
#     /var/lib/kmsd 0700 kmsd, kept on remove, gone on purge. Nothing is
#     installed on this machine; the test checks that too.
# Environment (from ctest): KMS_VERSION (the project version).
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

pkg_require dpkg dpkg-deb dpkg-buildpackage dh fakeroot lintian scdoc cmake man systemd-sysusers systemd-tmpfiles \
        deb-systemd-helper
: "${KMS_VERSION:?run this test through ctest}"
pkg_start

arch=$(dpkg --print-architecture)
deb=kmsd_${KMS_VERSION}_${arch}.deb

# ---------------------------------------------------------------- build
start=$SECONDS
if "$PKG_SRC/scripts/package" --out "$PKG_T/out" --no-lintian >"$PKG_T/package.log" 2>&1; then
        pass "scripts/package built the package in $((SECONDS - start))s"
else
        cat "$PKG_T/package.log" >&2
        die "scripts/package failed"
fi
[[ -f "$PKG_T/out/$deb" ]] || die "no $deb in $PKG_T/out: $(ls "$PKG_T/out")"
pass "file name $deb"
DEB=$PKG_T/out/$deb

# ---------------------------------------------------------------- control
field() { dpkg-deb -f "$DEB" "$1"; }
expect_eq "Package" "kmsd" "$(field Package)"
expect_eq "Version" "$KMS_VERSION" "$(field Version)"
expect_eq "Architecture" "$arch" "$(field Architecture)"
depends=$(field Depends)
for p in libc6 libdbus-1-3 libssl3 libsqlite3-0 libp11-kit0 libinih1 libsystemd0 'default-dbus-system-bus | dbus-system-bus' \
        'systemd | systemd-standalone-sysusers' procps; do
        if grep -qF -- "$p" <<<"$depends"; then pass "Depends: $p"; else fail "Depends lacks '$p': $depends"; fi
done
expect_eq "Recommends" "softhsm2" "$(field Recommends)"

# ---------------------------------------------------------------- contents
# Every file (not folder) in the package, with owner and mode.
expected_files="\
-rw-r--r-- root/root ./etc/kmsd/kmsd.conf
-rw-r--r-- root/root ./etc/kmsd/policy.d/example.conf.sample
-rw-r--r-- root/root ./etc/kmsd/softhsm2.conf
-rw-r--r-- root/root ./lib/systemd/system/kmsd.service
-rwxr-xr-x root/root ./usr/bin/kmsctl
-rw-r--r-- root/root ./usr/lib/sysusers.d/kmsd.conf
-rw-r--r-- root/root ./usr/lib/tmpfiles.d/kmsd.conf
-rwxr-xr-x root/root ./usr/sbin/kmsd
-rw-r--r-- root/root ./usr/share/bash-completion/completions/kmsctl
-rw-r--r-- root/root ./usr/share/dbus-1/interfaces/org.kmsd.KeyManager1.xml
-rw-r--r-- root/root ./usr/share/dbus-1/system-services/org.kmsd.KeyManager1.service
-rw-r--r-- root/root ./usr/share/dbus-1/system.d/org.kmsd.KeyManager1.conf
-rw-r--r-- root/root ./usr/share/doc/kmsd/changelog.gz
-rw-r--r-- root/root ./usr/share/doc/kmsd/copyright
-rw-r--r-- root/root ./usr/share/man/man1/kmsctl.1.gz
-rw-r--r-- root/root ./usr/share/man/man5/kmsd-policy.5.gz
-rw-r--r-- root/root ./usr/share/man/man5/kmsd.conf.5.gz
-rw-r--r-- root/root ./usr/share/man/man8/kmsd.8.gz"
dpkg-deb -c "$DEB" >"$PKG_T/contents" || die "dpkg-deb -c failed"
got_files=$(awk '$1 !~ /^d/ { print $1, $2, $6 }' "$PKG_T/contents" | LC_ALL=C sort -k3)
if [[ "$got_files" == "$expected_files" ]]; then
        pass "the package holds exactly the expected $(wc -l <<<"$got_files") files, owned by root, with the expected modes"
else
        fail "the package's files differ from the list (< expected, > package):"
        diff <(echo "$expected_files") <(echo "$got_files") >&2
fi
bad_dirs=$(awk '$1 ~ /^d/ && ($1 != "drwxr-xr-x" || $2 != "root/root") { print }' "$PKG_T/contents")
[[ -z "$bad_dirs" ]] && pass "every folder is root/root 0755" || fail "folders with other owner or mode: $bad_dirs"

dpkg-deb -e "$DEB" "$PKG_T/control" || die "dpkg-deb -e failed"
expect_eq "conffiles" "/etc/kmsd/kmsd.conf /etc/kmsd/policy.d/example.conf.sample /etc/kmsd/softhsm2.conf" \
        "$(sort "$PKG_T/control/conffiles" | tr '\n' ' ' | sed 's/ $//')"

X=$PKG_T/x
dpkg-deb -x "$DEB" "$X" || die "dpkg-deb -x failed"
for pair in "lib/systemd/system/kmsd.service packaging/systemd/kmsd.service" \
        "usr/share/dbus-1/system.d/org.kmsd.KeyManager1.conf packaging/dbus/org.kmsd.KeyManager1.conf" \
        "usr/share/dbus-1/system-services/org.kmsd.KeyManager1.service packaging/dbus/org.kmsd.KeyManager1.service" \
        "usr/share/dbus-1/interfaces/org.kmsd.KeyManager1.xml packaging/dbus/org.kmsd.KeyManager1.xml" \
        "etc/kmsd/kmsd.conf packaging/etc/kmsd.conf"; do
        read -r inpkg insrc <<<"$pair"
        if cmp -s "$X/$inpkg" "$PKG_SRC/$insrc"; then
                pass "/$inpkg is $insrc"
        else
                fail "/$inpkg differs from $insrc"
        fi
done
if "$X/usr/sbin/kmsd" --version | grep -qx "kmsd $KMS_VERSION"; then
        pass "the packaged kmsd says version $KMS_VERSION"
else
        fail "the packaged kmsd --version: $("$X/usr/sbin/kmsd" --version 2>&1)"
fi

# ---------------------------------------------------------------- lintian
# lintian warns when run as root; the warning is not about the package.
lintian --fail-on error --display-info "$DEB" >"$PKG_T/lintian.log" 2>&1
rc=$?
grep -v 'running with root privileges is not recommended' "$PKG_T/lintian.log" | sed 's/^/  lintian: /'
if ((rc == 0)); then
        pass "lintian: no errors"
else
        fail "lintian reports errors (exit $rc)"
fi
if grep -q '^E:' "$PKG_T/lintian.log"; then fail "lintian E: tags present"; fi

# ---------------------------------------------------------------- man pages
for page in "$X"/usr/share/man/man*/*.gz; do
        warn=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null)
        if [[ -z "$warn" ]]; then
                pass "man -l $(basename "$page") renders without warnings"
        else
                fail "man -l $(basename "$page"): $warn"
        fi
done

# ---------------------------------------------------------------- throwaway root
# The host's state before, to show afterwards that nothing touched it.
host_state() {
        {
                getent passwd kmsd || true
                getent group kmsd kmsd-admin || true
                ls -ld /var/lib/kmsd /etc/kmsd /usr/sbin/kmsd 2>/dev/null || true
                dpkg-query -W -f='${db:Status-Status}\n' kmsd 2>/dev/null || true
        } | sort
}
before=$(host_state)

R=$PKG_T/root
mkdir -p "$R/var/lib/dpkg/info" "$R/var/lib/dpkg/updates" "$R/var/lib/dpkg/triggers" "$R/etc" "$R/var/log"
: >"$R/var/lib/dpkg/status"
: >"$R/var/lib/dpkg/available"
# --force-script-chrootless: the scripts run here with DPKG_ROOT=$R (the
# root holds no shell to chroot into); --force-depends: the root has no
# libraries. dpkg's own log goes to the scratch folder, not /var/log.
DPKG=(dpkg --root="$R" --log="$PKG_T/dpkg.log" --force-script-chrootless --force-depends)
if "${DPKG[@]}" --install "$DEB" >"$PKG_T/dpkg-install.log" 2>&1; then
        pass "dpkg --root --install"
else
        cat "$PKG_T/dpkg-install.log" >&2
        die "dpkg --root --install failed"
fi
expect_eq "installed state" "installed" "$(dpkg-query --admindir="$R/var/lib/dpkg" -W -f='${db:Status-Status}' kmsd)"
kuid=$(awk -F: '$1 == "kmsd" { print $3 }' "$R/etc/passwd" 2>/dev/null)
kgid=$(awk -F: '$1 == "kmsd" { print $3 }' "$R/etc/group" 2>/dev/null)
[[ -n "$kuid" && -n "$kgid" ]] && pass "postinst created user kmsd ($kuid) and group kmsd ($kgid)" ||
        fail "postinst did not create user and group kmsd: $(cat "$R/etc/passwd" "$R/etc/group" 2>&1)"
grep -q '^kmsd-admin:' "$R/etc/group" 2>/dev/null && pass "postinst created group kmsd-admin" ||
        fail "no group kmsd-admin in the root"
expect_eq "/var/lib/kmsd" "700 $kuid $kgid" "$(stat -c '%a %u %g' "$R/var/lib/kmsd" 2>&1)"
expect_eq "/var/lib/kmsd/tokens" "700 $kuid $kgid" "$(stat -c '%a %u %g' "$R/var/lib/kmsd/tokens" 2>&1)"
for f in usr/sbin/kmsd usr/bin/kmsctl etc/kmsd/kmsd.conf lib/systemd/system/kmsd.service; do
        [[ -f "$R/$f" ]] && pass "/$f installed" || fail "/$f missing after install"
done

# State the admin leaves behind: a key database (stand-in) and a PIN.
echo "state" >"$R/var/lib/kmsd/kmsd.db"
"${DPKG[@]}" --remove kmsd >"$PKG_T/dpkg-remove.log" 2>&1 && pass "dpkg --root --remove" ||
        fail "dpkg --root --remove: $(cat "$PKG_T/dpkg-remove.log")"
[[ -f "$R/var/lib/kmsd/kmsd.db" ]] && pass "remove keeps /var/lib/kmsd" || fail "remove deleted /var/lib/kmsd"
[[ -f "$R/etc/kmsd/kmsd.conf" ]] && pass "remove keeps the conffiles" || fail "remove deleted /etc/kmsd/kmsd.conf"
[[ ! -e "$R/usr/sbin/kmsd" ]] && pass "remove deletes /usr/sbin/kmsd" || fail "/usr/sbin/kmsd left after remove"
"${DPKG[@]}" --purge kmsd >"$PKG_T/dpkg-purge.log" 2>&1 && pass "dpkg --root --purge" ||
        fail "dpkg --root --purge: $(cat "$PKG_T/dpkg-purge.log")"
[[ ! -e "$R/var/lib/kmsd" ]] && pass "purge removes /var/lib/kmsd" || fail "/var/lib/kmsd left after purge"
[[ ! -e "$R/etc/kmsd/kmsd.conf" ]] && pass "purge removes the conffiles" || fail "/etc/kmsd/kmsd.conf left after purge"

expect_eq "this machine is untouched (users, folders, dpkg database)" "$before" "$(host_state)"
pkg_finish
