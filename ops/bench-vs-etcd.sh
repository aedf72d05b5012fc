#!/usr/bin/env bash
# Committed writes/s and latency of deai next to etcd, measured the same way on this machine.
#
# Why: a throughput figure means little on its own; etcd is the well-known replicated log with
# fsync, so running both under one load shape (same writers, same payload, one connection to the
# leader, fsync on, 3 members on loopback) gives the deai figure a yardstick. The two runs take
# turns, never overlap, and keep their data in the same temporary directory tree.
#
# Usage: ops/bench-vs-etcd.sh [--writers N] [--writes M] [--entry-bytes S] [--out DIR]
# Ports: members use <i>*BENCH_ETCD_PORT_STRIDE + BENCH_ETCD_{CLIENT,PEER}_PORT_BASE, i = 1..3.
# (The variables avoid the ETCD_ prefix, which etcd itself would read as flags.)
set -euo pipefail

cd "$(dirname "$0")/.."

WRITERS=32
WRITES=50000
ENTRY_BYTES=256
OUT=bench-results

CLIENT_PORT_BASE=${BENCH_ETCD_CLIENT_PORT_BASE:-2379}
PEER_PORT_BASE=${BENCH_ETCD_PEER_PORT_BASE:-2380}
PORT_STRIDE=${BENCH_ETCD_PORT_STRIDE:-10000}
MEMBERS=3
# Keeps long runs clear of etcd's default 2 GiB backend quota (which would turn puts into
# errors); the only etcd setting changed from its defaults.
QUOTA_BACKEND_BYTES=8589934592
HEALTH_DEADLINE_MS=30000
HEALTH_POLL_S=0.1
STOP_GRACE_MS=10000
STOP_POLL_S=0.1
LOG_TAIL_LINES=20

usage() {
    sed -n 's/^# Usage: //p' "$0" >&2
    exit 2
}

while (($#)); do
    case $1 in
        --writers) WRITERS=${2:?--writers needs a value}; shift 2 ;;
        --writes) WRITES=${2:?--writes needs a value}; shift 2 ;;
        --entry-bytes) ENTRY_BYTES=${2:?--entry-bytes needs a value}; shift 2 ;;
        --out) OUT=${2:?--out needs a value}; shift 2 ;;
        -h | --help) usage ;;
        *) echo "unknown argument: $1" >&2; usage ;;
    esac
done
for n in "$WRITERS" "$WRITES" "$ENTRY_BYTES" "$CLIENT_PORT_BASE" "$PEER_PORT_BASE" "$PORT_STRIDE"; do
    [[ $n =~ ^[0-9]+$ ]] || { echo "not a whole number: $n" >&2; exit 2; }
done
mkdir -p "$OUT"

log() { echo "== $*" >&2; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# --- 1. tools ---------------------------------------------------------------------------------
apt_install() {
    local sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    log "installing $*"
    # Only refresh the package lists when the cached ones are not enough.
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y "$@" ||
        { "${sudo[@]}" apt-get update && DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y "$@"; }
}
missing=()
if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then missing+=(etcd-server etcd-client); fi
command -v protoc >/dev/null || missing+=(protobuf-compiler)
command -v curl >/dev/null || missing+=(curl)
command -v python3 >/dev/null || missing+=(python3)
((${#missing[@]} == 0)) || apt_install "${missing[@]}"

# --- 2. builds --------------------------------------------------------------------------------
log "building deai and etcd-load (release)"
cargo build --release --bin deai
cargo build --release --locked --manifest-path ops/etcd-load/Cargo.toml

json_field() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

# --- 3. deai ----------------------------------------------------------------------------------
log "deai bench ledger: $WRITERS writers, $WRITES writes, at least $ENTRY_BYTES bytes each"
target/release/deai bench ledger --writers "$WRITERS" --writes "$WRITES" --entry-bytes "$ENTRY_BYTES" --json \
    >"$OUT/deai.json"
# deai rounds a write up to whole signed entries; etcd gets values of that exact size.
VALUE_BYTES=$(json_field "$OUT/deai.json" entry_bytes)
[[ $VALUE_BYTES =~ ^[0-9]+$ ]] || { echo "deai.json has no usable entry_bytes" >&2; exit 1; }

# --- 4. etcd cluster --------------------------------------------------------------------------
CLUSTER_DIR=$(mktemp -d -t bench-etcd.XXXXXX)
MEMBER_PIDS=()

stop_etcd() {
    local pid alive deadline
    ((${#MEMBER_PIDS[@]})) || return 0
    for pid in "${MEMBER_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    deadline=$(($(now_ms) + STOP_GRACE_MS))
    while :; do
        alive=0
        for pid in "${MEMBER_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        if (($(now_ms) >= deadline)); then
            log "etcd still running $((STOP_GRACE_MS / 1000)) s after SIGTERM; sending SIGKILL"
            for pid in "${MEMBER_PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
            break
        fi
        sleep "$STOP_POLL_S"
    done
    for pid in "${MEMBER_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    MEMBER_PIDS=()
}
cleanup() {
    trap - EXIT INT TERM
    stop_etcd
    rm -rf "$CLUSTER_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

tail_logs() {
    local i
    for i in $(seq 1 "$MEMBERS"); do
        echo "--- e$i.log (last $LOG_TAIL_LINES lines)" >&2
        tail -n "$LOG_TAIL_LINES" "$CLUSTER_DIR/e$i.log" "$CLUSTER_DIR/e$i.out" >&2 2>/dev/null || true
    done
}

client_port() { echo $(($1 * PORT_STRIDE + CLIENT_PORT_BASE)); }
peer_port() { echo $(($1 * PORT_STRIDE + PEER_PORT_BASE)); }

CLUSTER=""
ENDPOINTS=""
for i in $(seq 1 "$MEMBERS"); do
    CLUSTER+="${CLUSTER:+,}e$i=http://127.0.0.1:$(peer_port "$i")"
    ENDPOINTS+="${ENDPOINTS:+,}127.0.0.1:$(client_port "$i")"
done

# Any ETCD_* variable in the caller's environment would act as an etcd flag (an fsync switch
# included), and ETCDCTL_* would change etcdctl; none may leak into the measurement.
while IFS= read -r name; do unset "$name"; done < <(compgen -e | grep -E '^ETCD' || true)

log "starting $MEMBERS etcd members ($(etcd --version | head -n 1)) in a temporary directory"
for i in $(seq 1 "$MEMBERS"); do
    url_client="http://127.0.0.1:$(client_port "$i")"
    url_peer="http://127.0.0.1:$(peer_port "$i")"
    cmd=(etcd --name "e$i" --data-dir "$CLUSTER_DIR/e$i"
        --listen-client-urls "$url_client" --advertise-client-urls "$url_client"
        --listen-peer-urls "$url_peer" --initial-advertise-peer-urls "$url_peer"
        --initial-cluster "$CLUSTER" --initial-cluster-token bench-vs-etcd --initial-cluster-state new
        --logger zap --log-outputs "$CLUSTER_DIR/e$i.log"
        --quota-backend-bytes "$QUOTA_BACKEND_BYTES")
    # The comparison is only fair with fsync on; refuse any command line that turns it off.
    if [[ "${cmd[*]}" == *unsafe-no-fsync* ]]; then
        echo "refusing to start etcd without fsync" >&2
        exit 1
    fi
    "${cmd[@]}" >"$CLUSTER_DIR/e$i.out" 2>&1 &
    MEMBER_PIDS+=("$!")
done

etcdctl_() { ETCDCTL_API=3 etcdctl --endpoints "$ENDPOINTS" --dial-timeout 1s --command-timeout 1s "$@"; }

deadline=$(($(now_ms) + HEALTH_DEADLINE_MS))
until etcdctl_ endpoint health >/dev/null 2>&1; do
    for pid in "${MEMBER_PIDS[@]}"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "an etcd member exited before the cluster was healthy" >&2
            tail_logs
            exit 1
        fi
    done
    if (($(now_ms) >= deadline)); then
        echo "etcd cluster not healthy within $((HEALTH_DEADLINE_MS / 1000)) s" >&2
        etcdctl_ endpoint health >&2 || true
        tail_logs
        exit 1
    fi
    sleep "$HEALTH_POLL_S"
done
log "etcd cluster healthy at $ENDPOINTS"

# --- 5. etcd load -----------------------------------------------------------------------------
# Sum of WAL fsyncs over all members: proof that etcd really synced, and how often.
wal_fsyncs() {
    local i total=0 n
    for i in $(seq 1 "$MEMBERS"); do
        n=$(curl -sf "http://127.0.0.1:$(client_port "$i")/metrics" |
            awk '$1 == "etcd_disk_wal_fsync_duration_seconds_count" { printf "%d", $2 }')
        [[ $n =~ ^[0-9]+$ ]] || { echo "no WAL fsync count from member e$i" >&2; return 1; }
        total=$((total + n))
    done
    echo "$total"
}

fsyncs_before=$(wal_fsyncs)
log "etcd-load: $WRITERS writers, $WRITES puts of $VALUE_BYTES bytes"
ops/etcd-load/target/release/etcd-load --endpoints "$ENDPOINTS" --writers "$WRITERS" --writes "$WRITES" \
    --value-bytes "$VALUE_BYTES" --json >"$OUT/etcd.json"
fsyncs_after=$(wal_fsyncs)
FSYNC_DELTA=$((fsyncs_after - fsyncs_before))
SERVER_VERSION=$(etcd --version | sed -n 's/^etcd Version: *//p')
stop_etcd

# --- 6. summary -------------------------------------------------------------------------------
CPU_MODEL=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)
MACHINE="$(nproc) CPUs, ${CPU_MODEL:-unknown CPU}, Linux $(uname -r)"

python3 - "$OUT/deai.json" "$OUT/etcd.json" "$SERVER_VERSION" "$MACHINE" "$FSYNC_DELTA" "$MEMBERS" \
    <<'EOF' | tee "$OUT/summary.txt"
import json
import sys

deai_path, etcd_path, etcd_version, machine, fsyncs, members = sys.argv[1:]
deai = json.load(open(deai_path))
etcd = json.load(open(etcd_path))
fsyncs = int(fsyncs)
minor = ".".join(etcd_version.split(".")[:2]) or "?"

deai_sync = "fsync" if deai.get("fsync", True) else "NO fsync"
columns = (f"deai ({deai.get('nodes', 3)} nodes, {deai_sync})", f"etcd {minor} ({members} members, fsync)")
rows = (
    ("committed/s", "committed_per_s", "{:,.0f}"),
    ("p50 ms", "p50_ms", "{:.2f}"),
    ("p99 ms", "p99_ms", "{:.2f}"),
    ("p999 ms", "p999_ms", "{:.2f}"),
    ("failed", "failed", "{:d}"),
)
label_width = max(len(r[0]) for r in rows)
widths = [max(len(c), 12) for c in columns]

def line(label, cells):
    return f"{label:<{label_width}} | " + " | ".join(f"{c:>{w}}" for c, w in zip(cells, widths))

print(f"machine:  {machine}")
print(
    f"settings: {deai['writers']} writers, one write in flight each, one connection to the leader; "
    f"{deai['writes'] + deai['failed']} writes of {deai['entry_bytes']} bytes "
    f"(deai: {deai['signed_entries_per_write']} signed entries per write; etcd: {etcd['value_bytes']}-byte values)"
)
print()
print(line("", columns))
print("-" * label_width + "-+-" + "-+-".join("-" * w for w in widths))
for label, key, fmt in rows:
    print(line(label, [fmt.format(side[key]) for side in (deai, etcd)]))
print()
per_put = fsyncs / etcd["writes"] if etcd["writes"] else 0.0
print(f"etcd WAL fsyncs during the run: {fsyncs} over {members} members ({per_put:.3f} per committed put)")
EOF
log "results in $OUT/ (deai.json, etcd.json, summary.txt)"
