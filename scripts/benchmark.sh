#!/usr/bin/env bash
# Benchmarks dse against Debian's redis-server, both started by this script on free ports
# and measured in the same run, on the same machine, alternating between them. Every
# number is a median over several runs; the machines this runs on are shared and noisy.
#
#   scripts/benchmark.sh [SECTION...] [OPTIONS]
#
# Sections (default: all = network engine clients durability):
#   network   redis-benchmark (SET/GET, -c 50, -P 1 and -P 16) and bench-throughput
#             (90% GET / 10% SET, -P 1 and -P 16), on dse and on redis-server, both
#             without persistence
#   cluster   redis-benchmark (SET/GET, -c 50, -P 1 and -P 16) against one node of a
#             local 3-node dse cluster (two thirds of the keys forwarded to their owner)
#             against a single dse node; and SET with --write-quorum 2 against 1
#   durability  SET throughput (redis-benchmark -c 50, -P 1 and -P 16) with
#             appendfsync always and everysec, on dse and on redis-server with the same
#             policy; and dse everysec against dse without persistence
#   engine    bench-read-compare: the sharded Store against one Mutex<HashMap> (no server)
#   clients   bench-clients: N connections held at once, on dse and on redis-server
#
# Options:
#   --long            longer runs: more requests, rounds and seconds per round
#   --rounds N        runs per measurement, medians reported (default 3, --long 5)
#   --clients N       connections for the clients section (default 10000)
#   --dse-threads N   dse-server event loops (default: cores - 1, at least 1: the load
#                     generator runs on this machine too and needs a core; redis-server
#                     runs its one thread)
#   --dse-port P      port for dse-server (default: the first free one from 21000)
#   --redis-port P    port for redis-server (default: the first free one after dse's)
#   --no-build        use the binaries already in target/release
#
# Output: each tool's own report as it runs, then one table with dse, the baseline and
# dse/baseline per row. The baseline is redis-server for the network and clients sections
# and one Mutex<HashMap> for the engine section (where the dse column is the sharded
# Store). Raw rows and server logs are kept in target/benchmark/<date>/.
#
# Adding a section (durability: SET throughput with appendfsync always/everysec against
# redis-server with the same policy; cluster): write section_<name>, start the servers it
# needs with start_dse/start_redis (extra flags are passed through, e.g. a redis-server
# started with --appendonly yes --appendfsync always), write rows with add_row or the
# tools' --report, and list the name in SECTIONS below.

set -euo pipefail

SECTIONS=(network engine clients durability cluster)

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release
REDIS_SERVER=${REDIS_SERVER:-redis-server}
REDIS_BENCHMARK=${REDIS_BENCHMARK:-redis-benchmark}
REDIS_CLI=${REDIS_CLI:-redis-cli}

LONG=0
ROUNDS=
CLIENTS=10000
DSE_THREADS=
DSE_PORT=
REDIS_PORT=
BUILD=1
WANTED=()

usage() {
    sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
    exit "${1:-0}"
}

while [[ $# -gt 0 ]]; do
    case $1 in
        all) WANTED+=("${SECTIONS[@]}") ;;
        --long) LONG=1 ;;
        --rounds) ROUNDS=$2; shift ;;
        --clients) CLIENTS=$2; shift ;;
        --dse-threads) DSE_THREADS=$2; shift ;;
        --dse-port) DSE_PORT=$2; shift ;;
        --redis-port) REDIS_PORT=$2; shift ;;
        --no-build) BUILD=0 ;;
        -h|--help) usage 0 ;;
        -*) echo "benchmark.sh: unknown option $1" >&2; usage 2 >&2 ;;
        *)
            if [[ " ${SECTIONS[*]} " == *" $1 "* ]]; then
                WANTED+=("$1")
            else
                echo "benchmark.sh: unknown section '$1' (have: all ${SECTIONS[*]})" >&2
                exit 2
            fi
            ;;
    esac
    shift
done
[[ ${#WANTED[@]} -gt 0 ]] || WANTED=("${SECTIONS[@]}")

# Sizes: the default run stays within about five minutes on two busy cores.
if [[ $LONG == 1 ]]; then
    ROUNDS=${ROUNDS:-5}
    RB_REQUESTS_P1=1000000
    RB_REQUESTS_P16=5000000
    TP_SECONDS=5
    RC_SECONDS=1
    RC_KEYS=1000000
    CLIENT_HOLD=5
else
    ROUNDS=${ROUNDS:-3}
    RB_REQUESTS_P1=100000
    RB_REQUESTS_P16=500000
    TP_SECONDS=2
    RC_SECONDS=0.5
    RC_KEYS=1000000
    CLIENT_HOLD=1
fi
KEYSPACE=100000

OUT=$TARGET_DIR/benchmark/$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
ROWS=$OUT/rows.tsv
: > "$ROWS"
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/dse-benchmark.XXXXXX")

# name -> pid of every server this script started, for the exit trap.
declare -A SERVER_PID=()

cleanup() {
    local name pid
    for name in "${!SERVER_PID[@]}"; do
        pid=${SERVER_PID[$name]}
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$SCRATCH"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '\n== %s\n' "$*"; }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
    local p=$1
    while port_in_use "$p"; do p=$((p + 1)); done
    echo "$p"
}

# wait_ready NAME PORT: until the server answers PING, or fail if it died.
wait_ready() {
    local name=$1 port=$2 pid=${SERVER_PID[$1]}
    for _ in $(seq 100); do
        if [[ $("$REDIS_CLI" -p "$port" ping 2>/dev/null) == PONG ]]; then
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "benchmark.sh: $name exited; its log:" >&2
            cat "$OUT/$name.log" >&2 || true
            exit 1
        fi
        sleep 0.1
    done
    echo "benchmark.sh: $name is not answering on port $port" >&2
    exit 1
}

# start_dse NAME PORT [FLAGS...]: a dse-server with its own data directory.
start_dse() {
    local name=$1 port=$2
    shift 2
    local args=(--port "$port" --data "$SCRATCH/$name" --maxclients $((CLIENTS + 100)))
    # The load generator shares this machine: leave it a core.
    local threads=${DSE_THREADS:-$(( $(nproc) > 1 ? $(nproc) - 1 : 1 ))}
    args+=(--threads "$threads")
    mkdir -p "$SCRATCH/$name"
    "$BIN/dse-server" "${args[@]}" "$@" > "$OUT/$name.log" 2>&1 &
    SERVER_PID[$name]=$!
    wait_ready "$name" "$port"
}

# start_redis NAME PORT [FLAGS...]: a redis-server without persistence unless FLAGS ask.
start_redis() {
    local name=$1 port=$2
    shift 2
    mkdir -p "$SCRATCH/$name"
    "$REDIS_SERVER" --port "$port" --save '' --appendonly no \
        --maxclients $((CLIENTS + 100)) --dir "$SCRATCH/$name" \
        --logfile "$OUT/$name.log" "$@" > /dev/null 2>&1 &
    SERVER_PID[$name]=$!
    wait_ready "$name" "$port"
}

stop_server() {
    local name=$1 pid=${SERVER_PID[$1]:-}
    [[ -n $pid ]] || return 0
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset "SERVER_PID[$name]"
}

# The pair the network and clients sections share, started once.
ensure_servers() {
    [[ -n ${SERVER_PID[dse]:-} ]] && return 0
    DSE_PORT=${DSE_PORT:-$(free_port 21000)}
    REDIS_PORT=${REDIS_PORT:-$(free_port $((DSE_PORT + 1)))}
    # Like the redis-server it is compared with: no log, no snapshots.
    start_dse dse "$DSE_PORT" --appendonly no --snapshot-interval 0
    start_redis redis "$REDIS_PORT"
    echo "dse-server pid ${SERVER_PID[dse]} on port $DSE_PORT;" \
        "redis-server pid ${SERVER_PID[redis]} on port $REDIS_PORT"
}

median() {
    sort -g | awk '{ v[NR] = $1 }
        END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2];
              else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# add_row SECTION METRIC UNIT DSE BASELINE
add_row() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >> "$ROWS"; }

# redis_benchmark PORT PIPELINE REQUESTS: prints "SET_RPS GET_RPS".
redis_benchmark() {
    "$REDIS_BENCHMARK" -p "$1" -q --csv -t set,get -n "$3" -c 50 -r "$KEYSPACE" -P "$2" \
        2>> "$OUT/redis-benchmark.stderr" |
        awk -F, '{ gsub(/"/, "") } $1 == "SET" { s = $2 } $1 == "GET" { g = $2 }
                 END { if (s == "" || g == "") exit 1; print s, g }'
}

section_network() {
    ensure_servers
    local p requests r name port set get
    for p in 1 16; do
        requests=$RB_REQUESTS_P1
        [[ $p == 16 ]] && requests=$RB_REQUESTS_P16
        log "redis-benchmark -t set,get -n $requests -c 50 -r $KEYSPACE -P $p ($ROUNDS runs each, alternating)"
        local dse_set=() dse_get=() redis_set=() redis_get=()
        for r in $(seq "$ROUNDS"); do
            for name in dse redis; do
                port=$DSE_PORT
                [[ $name == redis ]] && port=$REDIS_PORT
                read -r set get < <(redis_benchmark "$port" "$p" "$requests") || {
                    echo "benchmark.sh: redis-benchmark failed against $name" >&2
                    exit 1
                }
                printf '  run %d %-5s SET %12s  GET %12s requests/s\n' "$r" "$name" "$set" "$get"
                if [[ $name == dse ]]; then dse_set+=("$set"); dse_get+=("$get")
                else redis_set+=("$set"); redis_get+=("$get"); fi
            done
        done
        add_row network "redis-benchmark SET c50 P$p" ops/s \
            "$(printf '%s\n' "${dse_set[@]}" | median)" "$(printf '%s\n' "${redis_set[@]}" | median)"
        add_row network "redis-benchmark GET c50 P$p" ops/s \
            "$(printf '%s\n' "${dse_get[@]}" | median)" "$(printf '%s\n' "${redis_get[@]}" | median)"
    done
    for p in 1 16; do
        log "bench-throughput -c 50 -P $p, 90% GET"
        "$BIN/bench-throughput" \
            -s "dse=127.0.0.1:$DSE_PORT" --pid "${SERVER_PID[dse]}" \
            -s "redis=127.0.0.1:$REDIS_PORT" --pid "${SERVER_PID[redis]}" \
            -c 50 -P "$p" --reads 90 -r "$KEYSPACE" --rounds "$ROUNDS" \
            --duration "$TP_SECONDS" --report "$ROWS"
    done
}

# redis_benchmark_set PORT PIPELINE REQUESTS: prints SET requests/s.
redis_benchmark_set() {
    "$REDIS_BENCHMARK" -p "$1" -q --csv -t set -n "$3" -c 50 -r "$KEYSPACE" -P "$2" \
        2>> "$OUT/redis-benchmark.stderr" |
        awk -F, '{ gsub(/"/, "") } $1 == "SET" { s = $2 } END { if (s == "") exit 1; print s }'
}

# set_rates NAME PORT PIPELINE REQUESTS: ROUNDS runs of SET, one rate per line.
set_rates() {
    local r rate
    for r in $(seq "$ROUNDS"); do
        rate=$(redis_benchmark_set "$2" "$3" "$4") || {
            echo "benchmark.sh: redis-benchmark failed against $1" >&2
            exit 1
        }
        printf '  run %d %-16s SET %12s requests/s\n' "$r" "$1" "$rate" >&2
        echo "$rate"
    done
}

# The write path with a log: each fsync policy against redis-server with the same one
# (goal: ratio >= 1), and dse's everysec against dse with no persistence at all (goal:
# within 10%).
section_durability() {
    local policy p requests dp rp none_port dse_rates redis_rates
    for policy in always everysec; do
        dp=$(free_port 22000)
        start_dse "dse-$policy" "$dp" --appendonly yes --appendfsync "$policy" \
            --snapshot-interval 0
        rp=$(free_port $((dp + 1)))
        start_redis "redis-$policy" "$rp" --appendonly yes --appendfsync "$policy"
        for p in 1 16; do
            requests=$RB_REQUESTS_P1
            [[ $p == 16 ]] && requests=$RB_REQUESTS_P16
            log "SET -c 50 -P $p with appendfsync $policy ($ROUNDS runs each)"
            dse_rates=() redis_rates=()
            for _ in $(seq "$ROUNDS"); do
                dse_rates+=("$(ROUNDS=1 set_rates "dse-$policy" "$dp" "$p" "$requests")")
                redis_rates+=("$(ROUNDS=1 set_rates "redis-$policy" "$rp" "$p" "$requests")")
            done
            add_row durability "SET appendfsync $policy c50 P$p" ops/s \
                "$(printf '%s\n' "${dse_rates[@]}" | median)" \
                "$(printf '%s\n' "${redis_rates[@]}" | median)"
            if [[ $policy == everysec ]]; then
                EVERYSEC_P[$p]=$(printf '%s\n' "${dse_rates[@]}" | median)
            fi
        done
        stop_server "dse-$policy"
        stop_server "redis-$policy"
    done
    none_port=$(free_port 22100)
    start_dse dse-none "$none_port" --appendonly no --snapshot-interval 0
    for p in 1 16; do
        requests=$RB_REQUESTS_P1
        [[ $p == 16 ]] && requests=$RB_REQUESTS_P16
        log "SET -c 50 -P $p on dse without persistence ($ROUNDS runs)"
        add_row durability "SET dse everysec vs dse no log, c50 P$p" ops/s \
            "${EVERYSEC_P[$p]}" "$(set_rates dse-none "$none_port" "$p" "$requests" | median)"
    done
    stop_server dse-none
}
declare -A EVERYSEC_P=()

# start_cluster PREFIX BASE_PORT [FLAGS...]: three dse nodes PREFIX1..3 on BASE..BASE+2
# (bus ports BASE+100..), one event loop each (four processes share the machine).
start_cluster() {
    local prefix=$1 base=$2
    shift 2
    local i j peers
    for i in 1 2 3; do
        peers=()
        for j in 1 2 3; do
            [[ $j == "$i" ]] || peers+=("n$j:127.0.0.1:$((base + j - 1)):$((base + 99 + j))")
        done
        DSE_THREADS=1 start_dse "$prefix$i" "$((base + i - 1))" --node "n$i" \
            --cluster-port "$((base + 99 + i))" --peers "$(IFS=,; echo "${peers[*]}")" \
            --appendonly no --snapshot-interval 0 "$@"
    done
}

stop_cluster() {
    local i
    for i in 1 2 3; do stop_server "$1$i"; done
}

# The cost of forwarding (a 3-node cluster answering through one node, against one node
# alone) and of the write quorum (W=2 against W=1).
section_cluster() {
    local p requests single base rates_a rates_b w1=() w2=()
    single=$(free_port 23000)
    DSE_THREADS=1 start_dse single "$single" --appendonly no --snapshot-interval 0
    base=$(free_port 23100)
    start_cluster w1- "$base" --write-quorum 1
    for p in 1 16; do
        requests=$RB_REQUESTS_P1
        [[ $p == 16 ]] && requests=$RB_REQUESTS_P16
        log "SET/GET -c 50 -P $p: one node of a 3-node cluster (W=1) against a single node"
        local cs=() cg=() ss=() sg=() cset cget sset sget
        for _ in $(seq "$ROUNDS"); do
            read -r cset cget < <(redis_benchmark "$base" "$p" "$requests")
            read -r sset sget < <(redis_benchmark "$single" "$p" "$requests")
            cs+=("$cset"); cg+=("$cget"); ss+=("$sset"); sg+=("$sget")
            printf '  cluster SET %s GET %s   single SET %s GET %s\n' "$cset" "$cget" "$sset" "$sget"
        done
        add_row cluster "SET via 1 of 3 nodes vs 1 node, c50 P$p" ops/s \
            "$(printf '%s\n' "${cs[@]}" | median)" "$(printf '%s\n' "${ss[@]}" | median)"
        add_row cluster "GET via 1 of 3 nodes vs 1 node, c50 P$p" ops/s \
            "$(printf '%s\n' "${cg[@]}" | median)" "$(printf '%s\n' "${sg[@]}" | median)"
        w1[$p]=$(printf '%s\n' "${cs[@]}" | median)
    done
    stop_cluster w1-
    stop_server single
    base=$(free_port 23200)
    start_cluster w2- "$base" --write-quorum 2
    for p in 1 16; do
        requests=$RB_REQUESTS_P1
        [[ $p == 16 ]] && requests=$RB_REQUESTS_P16
        log "SET -c 50 -P $p: 3-node cluster with W=2"
        add_row cluster "SET W=2 vs W=1 (3 nodes), c50 P$p" ops/s \
            "$(set_rates w2 "$base" "$p" "$requests" | median)" "${w1[$p]}"
    done
    stop_cluster w2-
}

section_engine() {
    log "bench-read-compare ($RC_KEYS keys)"
    "$BIN/bench-read-compare" --keys "$RC_KEYS" --rounds "$ROUNDS" --duration "$RC_SECONDS" \
        --report "$ROWS"
}

section_clients() {
    ensure_servers
    log "bench-clients $CLIENTS"
    "$BIN/bench-clients" "$CLIENTS" \
        -s "dse=127.0.0.1:$DSE_PORT" --pid "${SERVER_PID[dse]}" \
        -s "redis=127.0.0.1:$REDIS_PORT" --pid "${SERVER_PID[redis]}" \
        --rounds "$ROUNDS" --hold "$CLIENT_HOLD" --report "$ROWS"
}

print_table() {
    log "summary (medians of $ROUNDS runs; baseline: $("$REDIS_SERVER" --version | awk '{print $1, $2, $3}') for network and clients, one Mutex<HashMap> for engine)"
    awk -F'\t' '
        function rate(x,   s, n, i, out) {
            s = sprintf("%.0f", x); n = length(s); out = ""
            for (i = 1; i <= n; i++) {
                out = out substr(s, i, 1)
                if (i < n && (n - i) % 3 == 0) out = out ","
            }
            return out
        }
        function show(x, unit) {
            if (unit ~ /^ops/) return rate(x)
            if (unit == "B/conn") return sprintf("%.0f", x)
            return sprintf("%.3f", x)
        }
        BEGIN {
            printf "%-8s %-52s %-9s %13s %13s %9s  %s\n", "section", "metric", "unit",
                "dse", "baseline", "dse/base", "better"
        }
        {
            better = ($3 ~ /^ops/) ? "higher" : "lower"
            r = ($5 + 0 == 0) ? "n/a" : sprintf("%.2f", $4 / $5)
            printf "%-8s %-52s %-9s %13s %13s %9s  %s\n", $1, $2, $3, show($4, $3),
                show($5, $3), r, better
        }' "$ROWS" | tee "$OUT/summary.txt"
    echo "(rows, tool output and server logs: $OUT)"
}

main() {
    if [[ $BUILD == 1 ]]; then
        log "cargo build --release -p dse -p dse-bench"
        (cd "$ROOT" && cargo build --release -p dse -p dse-bench)
    fi
    echo "$(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg);" \
        "commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    local s
    for s in "${WANTED[@]}"; do
        "section_$s"
    done
    echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    print_table
}

# Not `main | tee`: main would run in a subshell, out of reach of the exit trap that stops
# the servers it started.
exec > >(tee "$OUT/output.txt") 2>&1
main
