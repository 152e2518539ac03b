#!/usr/bin/env bash
# Runs a local three-node dse cluster, or stops it.
#
#   scripts/run_cluster.sh [--base-port P] [--debug | --server PATH] [dse-server flags...]
#   scripts/run_cluster.sh stop
#   scripts/run_cluster.sh status
#   scripts/run_cluster.sh kill N       # SIGKILL node N (a crash)
#   scripts/run_cluster.sh restart N    # start node N again, same flags and data
#
# Nodes node1, node2, node3 listen on ports P, P+1, P+2 (default 6379, 6380, 6381; bus
# ports 10000 higher) on 127.0.0.1, with their data in ./data/node1, ./data/node2,
# ./data/node3 (relative to the current directory) and their logs beside them. Any other
# argument is passed to every node, e.g. --cluster-redirect or --replicas 2. The PIDs go
# to ./data/cluster.pids, which `stop` reads, and each node's command line to
# ./data/nodeN.cmd, which `restart` reads. The server is built with `cargo build
# --release` unless --debug (a debug build) or --server (that binary) says otherwise.
# Once started, the script waits until every node answers CLUSTER INFO with
# cluster_state:ok (the nodes agreed on their membership), when redis-cli is installed.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
data="$PWD/data"
pids="$data/cluster.pids"
nodes=3

is_running() {
    kill -0 "$1" 2>/dev/null
}

stop() {
    if [ ! -f "$pids" ]; then
        echo "no cluster running here (no $pids)"
        return 0
    fi
    while read -r name pid port; do
        if is_running "$pid"; then
            echo "stopping $name (pid $pid, port $port)"
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done <"$pids"
    while read -r name pid port; do
        for _ in $(seq 1 100); do
            is_running "$pid" || break
            sleep 0.1
        done
        if is_running "$pid"; then
            echo "$name (pid $pid) did not stop within 10 s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done <"$pids"
    rm -f "$pids"
    echo "cluster stopped"
}

status() {
    if [ ! -f "$pids" ]; then
        echo "no cluster running here (no $pids)"
        return 0
    fi
    while read -r name pid port; do
        if is_running "$pid"; then
            echo "$name: running, pid $pid, port $port"
        else
            echo "$name: not running (pid $pid was port $port)"
        fi
    done <"$pids"
}

# launch N: starts node N from its saved command line, logging to its log (appended).
launch() {
    local i=$1 pid port
    local -a cmd
    mapfile -t cmd <"$data/node$i.cmd"
    "${cmd[@]}" >>"$data/node$i.log" 2>&1 &
    pid=$!
    port=${cmd[2]}
    if [ -f "$pids" ]; then
        grep -v "^node$i " "$pids" >"$pids.new" || true
        mv "$pids.new" "$pids"
    fi
    echo "node$i $pid $port" >>"$pids"
}

# wait_ready N PID: until node N logs "listening on", or fail if it exits.
wait_ready() {
    local i=$1 pid=$2 log="$data/node$1.log"
    for _ in $(seq 1 300); do
        grep -q "listening on" "$log" 2>/dev/null && return 0
        if ! is_running "$pid"; then
            echo "node$i did not start; its log ($log):" >&2
            tail -n 20 "$log" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "node$i did not start within 30 s; its log ($log):" >&2
    tail -n 20 "$log" >&2
    return 1
}

case "${1:-}" in
    stop) stop; exit 0 ;;
    status) status; exit 0 ;;
    kill)
        pid=$(awk -v n="node$2" '$1 == n { print $2 }' "$pids")
        [ -n "$pid" ] || { echo "no node$2 in $pids" >&2; exit 1; }
        kill -KILL "$pid" 2>/dev/null || true
        echo "node$2 (pid $pid) killed"
        exit 0
        ;;
    restart)
        [ -f "$data/node$2.cmd" ] || { echo "no $data/node$2.cmd: start the cluster first" >&2; exit 1; }
        old=$(awk -v n="node$2" '$1 == n { print $2 }' "$pids")
        if [ -n "$old" ] && is_running "$old"; then
            echo "node$2 is running (pid $old); kill it first" >&2
            exit 1
        fi
        # The previous run's log is kept beside the new one.
        mv "$data/node$2.log" "$data/node$2.log.old" 2>/dev/null || true
        launch "$2"
        pid=$(awk -v n="node$2" '$1 == n { print $2 }' "$pids")
        wait_ready "$2" "$pid" || exit 1
        echo "node$2 restarted (pid $pid)"
        exit 0
        ;;
esac

base=6379
server=""
profile="--release"
flags=()
while [ $# -gt 0 ]; do
    case "$1" in
        --base-port) base="$2"; shift 2 ;;
        --server) server="$2"; shift 2 ;;
        --debug) profile=""; shift ;;
        *) flags+=("$1"); shift ;;
    esac
done

if [ -f "$pids" ]; then
    while read -r name pid port; do
        if is_running "$pid"; then
            echo "a cluster is already running here ($name is pid $pid); stop it first:" >&2
            echo "  $0 stop" >&2
            exit 1
        fi
    done <"$pids"
    rm -f "$pids"
fi

if [ -z "$server" ]; then
    if [ -n "$profile" ]; then target=release; else target=debug; fi
    echo "== building dse-server ($target)"
    (cd "$root" && cargo build --quiet $profile --bin dse-server)
    server="$root/target/$target/dse-server"
fi

mkdir -p "$data"
: >"$pids"
for i in $(seq 1 $nodes); do
    port=$((base + i - 1))
    peers=()
    for j in $(seq 1 $nodes); do
        [ "$j" -eq "$i" ] || peers+=("node$j:127.0.0.1:$((base + j - 1))")
    done
    printf '%s\n' "$server" --port "$port" --data "$data/node$i" --node "node$i" \
        --peers "$(IFS=,; echo "${peers[*]}")" ${flags[@]+"${flags[@]}"} >"$data/node$i.cmd"
    : >"$data/node$i.log"
    launch "$i"
done

# Each node logs "listening on" once it serves; one that exits instead stops them all.
for i in $(seq 1 $nodes); do
    pid=$(awk -v n="node$i" '$1 == n { print $2 }' "$pids")
    wait_ready "$i" "$pid" || { stop >/dev/null; exit 1; }
done

# The nodes agree on their membership (and each hears from a majority) before they serve.
if command -v redis-cli >/dev/null; then
    for i in $(seq 1 $nodes); do
        port=$((base + i - 1))
        for _ in $(seq 1 300); do
            redis-cli -p "$port" cluster info 2>/dev/null | grep -q "cluster_state:ok" && break
            sleep 0.1
        done
        redis-cli -p "$port" cluster info 2>/dev/null | grep -q "cluster_state:ok" ||
            echo "warning: node$i does not report cluster_state:ok yet" >&2
    done
fi

echo "cluster of $nodes nodes running:"
status
cat <<EOF

Talk to it (-c follows the cluster's redirects):
  redis-cli -c -p $base SET foo bar
  redis-cli -c -p $base GET foo
  redis-cli -p $base CLUSTER SLOTS
  redis-cli -p $base CLUSTER NODES

Logs: $data/node1.log ... $data/node$nodes.log
Stop it:
  $0 stop
EOF
