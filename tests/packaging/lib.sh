# Sourced by the packaging tests (tests/packaging/*.sh): results, tool
# checks, a scratch folder, and stopping exactly the processes a test
# started, by pid. Self-contained: it does not use tests/lib/.

PKG_PASSED=0
PKG_FAILED=0
PKG_T=""
PKG_PIDS=()
PKG_CLEANUPS=()
PKG_TEST_NAME=$(basename "${0:-test}" .sh)
PKG_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

pass() {
        PKG_PASSED=$((PKG_PASSED + 1))
        echo "ok - $*"
}

fail() {
        PKG_FAILED=$((PKG_FAILED + 1))
        echo "FAIL - $*" >&2
}

die() {
        fail "$*"
        exit 1
}

# expect_eq DESC EXPECTED GOT
expect_eq() {
        if [[ "$2" == "$3" ]]; then
                pass "$1: $3"
        else
                fail "$1: expected '$2', got '$3'"
        fi
}

# Exit 77 (ctest: skipped) when a tool is not installed; scripts/deps
# installs all of them, so CI never skips.
pkg_require() {
        local t
        for t in "$@"; do
                if ! command -v "$t" >/dev/null 2>&1 && [[ ! -e "$t" ]]; then
                        echo "SKIP: $PKG_TEST_NAME needs '$t', which is not installed (scripts/deps installs it)"
                        exit 77
                fi
        done
}

# Is PID a live (not zombie) process?
pkg_alive() {
        local stat
        [[ -n "$1" ]] || return 1
        stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
        stat=${stat##*) }
        [[ "${stat%% *}" != Z ]]
}

# pkg_track PID: stop PID (and only it) when the test ends.
pkg_track() {
        PKG_PIDS+=("$1")
}

# pkg_stop PID: SIGTERM, up to 10 s, then SIGKILL; by pid only. Sets
# PKG_STOP_RC to its exit status when it is our child.
PKG_STOP_RC=0
pkg_stop() {
        local pid=$1 i
        PKG_STOP_RC=0
        [[ -n "$pid" ]] || return 0
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
                pkg_alive "$pid" || break
                sleep 0.1
        done
        if pkg_alive "$pid"; then
                echo "$PKG_TEST_NAME: pid $pid still running 10s after SIGTERM; SIGKILL" >&2
                kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || PKG_STOP_RC=$?
}

# pkg_on_exit CMD: run CMD (a string, eval'd) at exit, after the processes
# are stopped, in reverse order of registration.
pkg_on_exit() {
        PKG_CLEANUPS+=("$1")
}

pkg__exit() {
        local rc=$? i
        trap - EXIT
        for ((i = ${#PKG_PIDS[@]} - 1; i >= 0; i--)); do
                pkg_alive "${PKG_PIDS[i]}" && pkg_stop "${PKG_PIDS[i]}"
        done
        for ((i = ${#PKG_CLEANUPS[@]} - 1; i >= 0; i--)); do
                eval "${PKG_CLEANUPS[i]}" || true
        done
        if [[ -n "$PKG_T" && -d "$PKG_T" ]]; then
                if [[ "${KMS_KEEP_TMP:-}" == 1 ]]; then
                        echo "$PKG_TEST_NAME: kept $PKG_T"
                else
                        rm -rf "$PKG_T"
                fi
        fi
        exit "$rc"
}

# Creates the scratch folder $PKG_T and installs the exit trap.
pkg_start() {
        local base=${TMPDIR:-/tmp}
        ((${#base} < 60)) || base=/tmp # unix socket paths must stay short
        PKG_T=$(mktemp -d "$base/kmsd-pkg.XXXXXXXX")
        trap pkg__exit EXIT
        trap 'exit 130' INT
        trap 'exit 143' TERM
}

pkg_finish() {
        echo "$PKG_TEST_NAME: $PKG_PASSED passed, $PKG_FAILED failed"
        ((PKG_FAILED == 0)) || exit 1
        exit 0
}
