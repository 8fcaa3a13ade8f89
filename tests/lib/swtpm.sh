# Sourced by tests that need a TPM, after tests/lib/harness.sh (it uses
# its die/kms__alive/kms__stop_pid/kms__on_exit).
#
# kms_swtpm_start DIR [PORT] starts swtpm (TPM 2.0) with its state in DIR
# on 127.0.0.1:PORT (server) and PORT+1 (control); without PORT it picks
# two free ports, and retries with others if swtpm cannot bind them. It
# sets KMS_SWTPM_PID, KMS_SWTPM_PORT and KMS_SWTPM_TCTI (the tpm2-tss TCTI
# string, "swtpm:host=127.0.0.1,port=N") and exports TPM2TOOLS_TCTI so
# tpm2-tools reach the same TPM. Starting again with the same DIR and PORT
# is a TPM restart: the owner seed (so the SRK) is kept, transient objects
# are gone.
#
# kms_swtpm_stop stops exactly that pid (SIGTERM, then SIGKILL). An EXIT
# trap stops it too: where the EXIT trap is harness.sh's kms__on_exit (or
# none), kms_swtpm_start replaces it with kms__swtpm_on_exit, which runs
# kms_swtpm_stop and then kms__on_exit. A test that calls
# kms_harness_start after kms_swtpm_start (which sets its own trap) calls
# kms_swtpm_trap again; a test with a trap of its own calls
# kms__swtpm_on_exit from it.
#
# swtpm serves one client connection at a time: while a program holds the
# TPM (kmsd, a test program), tpm2-tools wait. Run them when it is idle.

KMS_SWTPM_PID=""
KMS_SWTPM_PORT=""
KMS_SWTPM_TCTI=""
KMS_SWTPM_DIR=""

kms__swtpm_on_exit() {
        local rc=$?
        set +e
        kms_swtpm_stop
        (exit "$rc")
        kms__on_exit
}

kms_swtpm_trap() {
        trap kms__swtpm_on_exit EXIT
}

# Two consecutive free TCP ports on 127.0.0.1 (the first one even),
# outside the ephemeral range (see free_ports.py: why).
kms__swtpm_free_ports() {
        "${KMS_PYTHON:-python3}" "$KMS_LIB_DIR/free_ports.py"
}

# Is something accepting connections on 127.0.0.1:PORT?
kms__swtpm_listening() {
        "${KMS_PYTHON:-python3}" - "$1" <<'PY'
import socket, sys
s = socket.socket()
s.settimeout(1)
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
PY
}

kms_swtpm_start() {
        local dir=$1 want=${2:-} port try i
        command -v swtpm >/dev/null 2>&1 || {
                echo "SKIP: ${KMS_TEST_NAME:-test} needs 'swtpm', which is not installed (scripts/deps installs it)"
                exit 77
        }
        [[ -z "$KMS_SWTPM_PID" ]] || die "kms_swtpm_start: swtpm (pid $KMS_SWTPM_PID) is already running"
        mkdir -p -m 700 "$dir"
        KMS_SWTPM_DIR=$dir
        case "$(trap -p EXIT)" in
        "" | *"'kms__on_exit'"*) kms_swtpm_trap ;;
        esac
        for ((try = 0; try < 10; try++)); do
                port=${want:-$(kms__swtpm_free_ports)}
                [[ -n "$port" ]] || die "kms_swtpm_start: no free pair of TCP ports on 127.0.0.1"
                echo "=== swtpm start $(date +%T) port $port" >>"$dir/swtpm.log"
                swtpm socket --tpm2 --tpmstate "dir=$dir" \
                        --server "type=tcp,port=$port,bindaddr=127.0.0.1" \
                        --ctrl "type=tcp,port=$((port + 1)),bindaddr=127.0.0.1" \
                        --flags not-need-init,startup-clear \
                        </dev/null >>"$dir/swtpm.log" 2>&1 &
                KMS_SWTPM_PID=$!
                # Ready when the control port accepts (the server port is
                # left alone: swtpm serves one client at a time).
                for ((i = 0; i < 100; i++)); do
                        kms__alive "$KMS_SWTPM_PID" || break
                        if kms__swtpm_listening $((port + 1)); then
                                KMS_SWTPM_PORT=$port
                                KMS_SWTPM_TCTI="swtpm:host=127.0.0.1,port=$port"
                                export TPM2TOOLS_TCTI=$KMS_SWTPM_TCTI
                                return 0
                        fi
                        sleep 0.1
                done
                # Died (a port taken meanwhile?) or never listened.
                kms__stop_pid "$KMS_SWTPM_PID" swtpm 5
                KMS_SWTPM_PID=""
                # A port the caller asked for may still be in TIME_WAIT.
                [[ -z "$want" ]] || sleep 1
        done
        cat "$dir/swtpm.log" >&2
        die "swtpm did not start (see above)"
}

kms_swtpm_stop() {
        [[ -n "$KMS_SWTPM_PID" ]] || return 0
        kms__stop_pid "$KMS_SWTPM_PID" swtpm 10
        KMS_SWTPM_PID=""
        echo "=== swtpm stopped $(date +%T)" >>"$KMS_SWTPM_DIR/swtpm.log" 2>/dev/null || true
}

# kms_tpm_handles KIND: how many handles of KIND (transient,
# loaded-session, persistent) tpm2_getcap lists; -1 if it fails. Only
# while no other program holds the TPM (swtpm serves one at a time).
kms_tpm_handles() {
        local out
        out=$(timeout -k 5 60 tpm2_getcap "handles-$1" 2>"$KMS_T/getcap.err") || {
                cat "$KMS_T/getcap.err" >&2
                echo -1
                return 0
        }
        grep -c '^- 0x' <<<"$out" || true
}
