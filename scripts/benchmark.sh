#!/usr/bin/env bash
# Benchmarks dse against Debian's redis-server, both started by this script and measured
# in the same run, on the same machine, interleaved. Every number is a median over several
# rounds; the machines this runs on are shared and noisy.
#
#   scripts/benchmark.sh [SECTION...] [OPTIONS]
#
# Sections (default: network memory clients engine; all adds latency durability cluster):
#   network   redis-benchmark -c 50 -d 16 -r 1000000 -t set,get at -P 1 and -P 16, against
#             dse-server and redis-server (no persistence in either), server pinned to
#             core 0 and client to core 1 (taskset), then unpinned. Rounds interleave
#             A/B/B/A with a fresh server per run; per cell: median ops/s of each server,
#             the ratio dse/redis with its min..max over rounds, and the server's CPU time
#             per operation (utime+stime from /proc/PID/stat) with its ratio
#   memory    bytes per key after loading 1M keys (16-byte keys and values), by INFO's
#             used_memory and by RSS, dse against redis-server
#   clients   bench-clients: N connections at once, each running requests; latency, errors
#             and server RSS per connection (idle and after traffic); fresh servers for
#             every round
#   engine    bench-read-compare (sharded Store against one Mutex<HashMap>) and
#             bench-throughput (mixed GET/SET on the engine, 2 threads against 1)
#   latency   dse-bench 90% GET / 10% SET, -c 50 -P 1: latency percentiles of each server
#   durability  SET (redis-benchmark -c 50, -P 1 and -P 16) with appendfsync always and
#             everysec, on dse and on redis-server with the same policy; and dse everysec
#             against dse without persistence
#   cluster   redis-benchmark SET/GET against one node of a local 3-node dse cluster
#             against a single dse node; and SET with --write-quorum 2 against 1
#
# Options:
#   --long            longer runs: more requests and rounds
#   --rounds N        rounds per measurement, medians reported (default 4, --long 6;
#                     the network section runs them as A/B/B/A...)
#   --clients N       connections for the clients section (default 10000)
#   --dse-threads N   dse-server event loops when not pinned (default: its own default, one
#                     per core); pinned runs use 1, the one core they have
#   --results DIR     where report.md, chart.svg and rows.tsv go (default: bench-results
#                     when the run covers at least the default sections, else the run's
#                     own directory under target/benchmark, so a partial run never
#                     replaces the published report)
#   --no-build        use the binaries already in target/release
#
# Output: each tool's report as it runs, then one table with dse, the baseline and
# dse/baseline per row; bench-report writes the same as Markdown (report.md) and an SVG
# chart (chart.svg) to the results directory. The baseline is redis-server except in the
# engine section (one Mutex<HashMap>, or one thread). Tool output and server logs are kept
# in target/benchmark/<date>/.
#
# Servers are started with `cmd &` and `$!`, answer a PING before they are measured, and
# are stopped by PID; every client runs under `timeout`. Adding a section: write
# section_<name>, start the servers it needs with start_dse/start_redis (extra flags are
# passed through), write rows with add_row or the tools' --report, list it in SECTIONS.

set -euo pipefail

SECTIONS=(network memory clients engine latency durability cluster)
DEFAULT_SECTIONS=(network memory clients engine)

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
RESULTS=
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
        --results) RESULTS=$2; shift ;;
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
[[ ${#WANTED[@]} -gt 0 ]] || WANTED=("${DEFAULT_SECTIONS[@]}")
covers_default=1
for section in "${DEFAULT_SECTIONS[@]}"; do
    [[ " ${WANTED[*]} " == *" $section "* ]] || covers_default=0
done

# Sizes: the default run (the four default sections) takes about fifteen minutes on two
# cores; each redis-benchmark run lasts a few seconds.
if [[ $LONG == 1 ]]; then
    ROUNDS=${ROUNDS:-6}
    RB_REQUESTS_P1=500000
    RB_REQUESTS_P16=5000000
    TP_SECONDS=5
    RC_SECONDS=1
    CLIENT_HOLD=5
else
    ROUNDS=${ROUNDS:-4}
    RB_REQUESTS_P1=200000
    RB_REQUESTS_P16=2000000
    TP_SECONDS=2
    RC_SECONDS=0.5
    CLIENT_HOLD=1
fi
RC_KEYS=1000000
# The durability and cluster sections' key space; the network section uses the issue's
# -r 1000000.
KEYSPACE=100000
# Every client gets this long before it is killed (seconds): far more than a run needs,
# so only a hang reaches it.
CLIENT_TIMEOUT=600

OUT=$TARGET_DIR/benchmark/$(date +%Y%m%d-%H%M%S)
if [[ -z $RESULTS ]]; then
    if [[ $covers_default == 1 ]]; then RESULTS=$ROOT/bench-results; else RESULTS=$OUT; fi
fi
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
        if [[ $(timeout 2 "$REDIS_CLI" -p "$port" ping 2>/dev/null) == PONG ]]; then
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

# With SERVER_CPU set (a core number), servers started by start_dse/start_redis run
# pinned to that core. taskset execs the server, and a simple command started with `&`
# is exec'd by its subshell, so $! is the server's own PID (for kill and /proc).
SERVER_CPU=
pin() {
    PIN=()
    if [[ -n $SERVER_CPU ]]; then PIN=(taskset -c "$SERVER_CPU"); fi
}

# start_dse NAME PORT [FLAGS...]: a dse-server with its own (fresh) data directory.
start_dse() {
    local name=$1 port=$2
    shift 2
    local args=(--port "$port" --data "$SCRATCH/$name" --maxclients $((CLIENTS + 100)))
    if [[ -n $SERVER_CPU ]]; then
        args+=(--threads 1)
    elif [[ -n $DSE_THREADS ]]; then
        args+=(--threads "$DSE_THREADS")
    fi
    rm -rf "${SCRATCH:?}/$name"
    mkdir -p "$SCRATCH/$name"
    pin
    "${PIN[@]}" "$BIN/dse-server" "${args[@]}" "$@" >> "$OUT/$name.log" 2>&1 &
    SERVER_PID[$name]=$!
    wait_ready "$name" "$port"
}

# start_redis NAME PORT [FLAGS...]: a redis-server without persistence unless FLAGS ask.
start_redis() {
    local name=$1 port=$2
    shift 2
    rm -rf "${SCRATCH:?}/$name"
    mkdir -p "$SCRATCH/$name"
    pin
    "${PIN[@]}" "$REDIS_SERVER" --port "$port" --save '' --appendonly no \
        --maxclients $((CLIENTS + 100)) --dir "$SCRATCH/$name" \
        --logfile "$OUT/$name.log" "$@" > /dev/null 2>&1 &
    SERVER_PID[$name]=$!
    wait_ready "$name" "$port"
}

# cpu_ticks PID: user + system CPU time of the process so far, in clock ticks.
cpu_ticks() {
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

# rss_bytes PID
rss_bytes() {
    awk '/^VmRSS:/ { print $2 * 1024 }' "/proc/$1/status"
}

# used_memory PORT: INFO's used_memory.
used_memory() {
    timeout 10 "$REDIS_CLI" -p "$1" info memory | tr -d '\r' |
        awk -F: '$1 == "used_memory" { print $2 }'
}

stop_server() {
    local name=$1 pid=${SERVER_PID[$1]:-}
    [[ -n $pid ]] || return 0
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset "SERVER_PID[$name]"
}

median() {
    sort -g | awk '{ v[NR] = $1 }
        END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2];
              else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# min_max: the smallest and largest of the numbers on stdin, as "MIN MAX".
min_max() {
    sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print lo, hi }'
}

# add_row SECTION METRIC UNIT DSE BASELINE [MIN_RATIO MAX_RATIO]
add_row() {
    local IFS=$'\t'
    echo "$*" >> "$ROWS"
}

# redis_benchmark PORT PIPELINE REQUESTS: prints "SET_RPS GET_RPS".
redis_benchmark() {
    timeout "$CLIENT_TIMEOUT" "$REDIS_BENCHMARK" -p "$1" -q --csv -t set,get -n "$3" -c 50 -r "$KEYSPACE" -P "$2" \
        2>> "$OUT/redis-benchmark.stderr" |
        awk -F, '{ gsub(/"/, "") } $1 == "SET" { s = $2 } $1 == "GET" { g = $2 }
                 END { if (s == "" || g == "") exit 1; print s, g }'
}

# rb_cell PORT PIPELINE COMMAND REQUESTS: one redis-benchmark run of the network
# section (the issue's parameters), the client pinned to core 1 when the server is pinned.
# Prints requests/s.
rb_cell() {
    local client=(timeout "$CLIENT_TIMEOUT")
    [[ -n $SERVER_CPU ]] && client+=(taskset -c 1)
    "${client[@]}" "$REDIS_BENCHMARK" -p "$1" -q --csv -c 50 -d 16 -r 1000000 -P "$2" \
        -t "$3" -n "$4" 2>> "$OUT/redis-benchmark.stderr" |
        awk -F, -v t="${3^^}" '{ gsub(/"/, "") } $1 == t { r = $2 } END { if (r == "") exit 1; print r }'
}

# start_plain NAME PORT: a fresh server without persistence, dse or redis by NAME.
start_plain() {
    if [[ $1 == dse* ]]; then
        start_dse "$1" "$2" --appendonly no --snapshot-interval 0
    else
        start_redis "$1" "$2"
    fi
}

# network_run NAME MODE PIPELINE REQUESTS: a fresh server, SET then GET; writes one line
# per command to $SCRATCH/run: "CMD RPS NS_PER_OP" (server CPU time per operation).
network_run() {
    local name=$1 mode=$2 p=$3 n=$4 port pid cmd t0 t1 rps hz
    hz=$(getconf CLK_TCK)
    port=$(free_port 21000)
    SERVER_CPU=
    [[ $mode == pinned ]] && SERVER_CPU=0
    start_plain "$name" "$port"
    pid=${SERVER_PID[$name]}
    : > "$SCRATCH/run"
    for cmd in set get; do
        t0=$(cpu_ticks "$pid")
        rps=$(rb_cell "$port" "$p" "$cmd" "$n") || {
            echo "benchmark.sh: redis-benchmark failed against $name" >&2
            exit 1
        }
        t1=$(cpu_ticks "$pid")
        echo "$cmd $rps $(( (t1 - t0) * 1000000000 / hz / n ))" >> "$SCRATCH/run"
    done
    stop_server "$name"
    SERVER_CPU=
}

# The issue's side-by-side: pinned and unpinned, P1 and P16, SET and GET; rounds
# interleaved A/B/B/A, a fresh server for every run.
section_network() {
    local modes=(pinned unpinned) mode p n r order name cmd rps ns
    if (( $(nproc) < 2 )); then
        echo "benchmark.sh: one core: the pinned runs need two, skipping them" >&2
        modes=(unpinned)
    fi
    for mode in "${modes[@]}"; do
        for p in 1 16; do
            n=$RB_REQUESTS_P1
            [[ $p == 16 ]] && n=$RB_REQUESTS_P16
            log "network $mode: redis-benchmark -c 50 -d 16 -r 1000000 -P $p -n $n -t set / get ($ROUNDS rounds, A/B/B/A, fresh servers)"
            declare -A ops=() cpu=()
            for r in $(seq "$ROUNDS"); do
                order=(dse redis)
                (( r % 2 == 0 )) && order=(redis dse)
                for name in "${order[@]}"; do
                    network_run "$name" "$mode" "$p" "$n"
                    while read -r cmd rps ns; do
                        printf '  round %d %-5s %s %12s requests/s %8s ns CPU/op\n' "$r" "$name" "${cmd^^}" "$rps" "$ns"
                        ops[$name.$cmd]+="$rps "
                        cpu[$name.$cmd]+="$ns "
                    done < "$SCRATCH/run"
                done
            done
            for cmd in set get; do
                add_network_rows "$mode P$p ${cmd^^}" ops/s "${ops[dse.$cmd]}" "${ops[redis.$cmd]}"
                add_network_rows "$mode P$p ${cmd^^} CPU per op" ns/op "${cpu[dse.$cmd]}" "${cpu[redis.$cmd]}"
            done
            unset ops cpu
        done
    done
}

# add_network_rows METRIC UNIT "DSE VALUES" "REDIS VALUES": medians and the range of the
# per-round ratios (round i of dse against round i of redis).
add_network_rows() {
    local metric=$1 unit=$2 a b range
    read -ra a <<< "$3"
    read -ra b <<< "$4"
    range=$(for i in "${!a[@]}"; do awk -v x="${a[$i]}" -v y="${b[$i]}" 'BEGIN { if (y > 0) print x / y }'; done | min_max)
    add_row network "$metric" "$unit" "$(printf '%s\n' "${a[@]}" | median)" \
        "$(printf '%s\n' "${b[@]}" | median)" $range
}

# Bytes per key with 1M keys of 16 bytes and 16-byte values, by used_memory and by RSS,
# each server fresh and measured before and after the load.
section_memory() {
    local name port pid u0 r0 u1 r1 keys=1000000
    declare -A used=() rss=()
    for name in dse redis; do
        port=$(free_port 21000)
        start_plain "$name" "$port"
        pid=${SERVER_PID[$name]}
        u0=$(used_memory "$port"); r0=$(rss_bytes "$pid")
        log "memory: $keys keys on $name"
        timeout "$CLIENT_TIMEOUT" "$BIN/dse-bench" -s "$name=127.0.0.1:$port" --preload-only \
            -r "$keys" -d 16
        u1=$(used_memory "$port"); r1=$(rss_bytes "$pid")
        used[$name]=$(( (u1 - u0) / keys ))
        rss[$name]=$(( (r1 - r0) / keys ))
        printf '  %s: used_memory %d -> %d, RSS %d -> %d: %d B/key by used_memory, %d by RSS\n' \
            "$name" "$u0" "$u1" "$r0" "$r1" "${used[$name]}" "${rss[$name]}"
        stop_server "$name"
    done
    add_row memory "bytes per key by used_memory (1M keys, 16-byte keys and values)" B/key \
        "${used[dse]}" "${used[redis]}"
    add_row memory "bytes per key by RSS (1M keys, 16-byte keys and values)" B/key \
        "${rss[dse]}" "${rss[redis]}"
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
            --snapshot-interval 0 "$@"
    done
    # The nodes agree on their membership and each hears from a majority before they
    # serve keys.
    for i in 1 2 3; do
        for _ in $(seq 100); do
            "$REDIS_CLI" -p "$((base + i - 1))" cluster info 2>/dev/null |
                grep -q "cluster_state:ok" && break
            sleep 0.1
        done
    done
}

stop_cluster() {
    local i
    for i in 1 2 3; do stop_server "$1$i"; done
}

# The cost of forwarding (a 3-node cluster answering through one node, against one node
# alone, both without persistence) and of the write quorum (W=2 against W=1, both with
# the log at everysec: a node without a log neither sends nor receives replica copies).
section_cluster() {
    local p requests single base rates_a rates_b w1=() w2=()
    single=$(free_port 23000)
    DSE_THREADS=1 start_dse single "$single" --appendonly no --snapshot-interval 0
    base=$(free_port 23100)
    start_cluster w1- "$base" --write-quorum 1 --appendonly no
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
    done
    stop_cluster w1-
    stop_server single
    base=$(free_port 23200)
    start_cluster q1- "$base" --write-quorum 1 --appendonly yes --appendfsync everysec
    for p in 1 16; do
        requests=$RB_REQUESTS_P1
        [[ $p == 16 ]] && requests=$RB_REQUESTS_P16
        log "SET -c 50 -P $p: 3-node cluster with the log, W=1"
        w1[$p]=$(set_rates q1 "$base" "$p" "$requests" | median)
    done
    stop_cluster q1-
    base=$(free_port 23300)
    start_cluster q2- "$base" --write-quorum 2 --appendonly yes --appendfsync everysec
    for p in 1 16; do
        requests=$RB_REQUESTS_P1
        [[ $p == 16 ]] && requests=$RB_REQUESTS_P16
        log "SET -c 50 -P $p: 3-node cluster with the log, W=2"
        add_row cluster "SET W=2 vs W=1 (3 nodes, everysec), c50 P$p" ops/s \
            "$(set_rates q2 "$base" "$p" "$requests" | median)" "${w1[$p]}"
    done
    stop_cluster q2-
}

section_engine() {
    log "bench-read-compare ($RC_KEYS keys)"
    timeout "$CLIENT_TIMEOUT" "$BIN/bench-read-compare" --keys "$RC_KEYS" --rounds "$ROUNDS" \
        --duration "$RC_SECONDS" --report "$ROWS"
    log "bench-throughput ($RC_KEYS keys)"
    timeout "$CLIENT_TIMEOUT" "$BIN/bench-throughput" --keys "$RC_KEYS" --rounds "$ROUNDS" \
        --duration "$RC_SECONDS" --report "$ROWS"
}

# start_pair: a fresh dse and redis-server, both unpinned, on free ports.
start_pair() {
    DSE_PORT=$(free_port 21000)
    start_dse dse "$DSE_PORT" --appendonly no --snapshot-interval 0
    REDIS_PORT=$(free_port $((DSE_PORT + 1)))
    start_redis redis "$REDIS_PORT"
}

# aggregate_rows FILE: rows of several rounds (the same metrics each time) as one row per
# metric: the medians of both columns and the range of the per-round ratios.
aggregate_rows() {
    awk -F'\t' -v OFS='\t' '
        function med(list,   n, v, i, j, t) {
            n = split(list, v, " ")
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
                if (v[j] + 0 < v[i] + 0) { t = v[i]; v[i] = v[j]; v[j] = t }
            return (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
        }
        {
            k = $1 SUBSEP $2 SUBSEP $3
            if (!(k in a)) { order[++n] = k; lo[k] = ""; hi[k] = "" }
            a[k] = a[k] " " $4; b[k] = b[k] " " $5
            if ($5 > 0) {
                r = $4 / $5
                if (lo[k] == "" || r < lo[k]) lo[k] = r
                if (hi[k] == "" || r > hi[k]) hi[k] = r
            }
        }
        END {
            for (i = 1; i <= n; i++) {
                k = order[i]; split(k, f, SUBSEP)
                if (lo[k] == "") print f[1], f[2], f[3], med(a[k]), med(b[k])
                else print f[1], f[2], f[3], med(a[k]), med(b[k]), lo[k], hi[k]
            }
        }' "$1"
}

# Every round on a fresh pair of servers, as in the network section: a server that
# already served 10,000 connections keeps some of what they freed, which is not what an
# idle connection costs.
section_clients() {
    local r
    : > "$SCRATCH/clients.tsv"
    for r in $(seq "$ROUNDS"); do
        start_pair
        log "bench-clients $CLIENTS (round $r of $ROUNDS, fresh servers)"
        timeout "$CLIENT_TIMEOUT" "$BIN/bench-clients" "$CLIENTS" \
            -s "dse=127.0.0.1:$DSE_PORT" --pid "${SERVER_PID[dse]}" \
            -s "redis=127.0.0.1:$REDIS_PORT" --pid "${SERVER_PID[redis]}" \
            --rounds 1 --hold "$CLIENT_HOLD" --report "$SCRATCH/clients.tsv"
        stop_server dse
        stop_server redis
    done
    aggregate_rows "$SCRATCH/clients.tsv" >> "$ROWS"
}

section_latency() {
    start_pair
    log "dse-bench -c 50 -P 1, 90% GET"
    timeout "$CLIENT_TIMEOUT" "$BIN/dse-bench" \
        -s "dse=127.0.0.1:$DSE_PORT" --pid "${SERVER_PID[dse]}" \
        -s "redis=127.0.0.1:$REDIS_PORT" --pid "${SERVER_PID[redis]}" \
        -c 50 -P 1 --reads 90 -r "$KEYSPACE" -d 16 --rounds "$ROUNDS" \
        --duration "$TP_SECONDS" --report "$ROWS"
    stop_server dse
    stop_server redis
}

print_table() {
    log "summary (medians of $ROUNDS rounds; baseline: $REDIS_VERSION, except engine: one Mutex<HashMap> or one thread)"
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
            if (unit ~ /^B\// || unit == "ns/op") return sprintf("%.0f", x)
            return sprintf("%.3f", x)
        }
        BEGIN {
            printf "%-8s %-64s %-7s %13s %13s %19s  %s\n", "section", "metric", "unit",
                "dse", "baseline", "dse/base (min..max)", "better"
        }
        {
            better = ($3 ~ /^ops/) ? "higher" : "lower"
            r = ($5 + 0 == 0) ? "n/a" : sprintf("%.2f", $4 / $5)
            if (NF >= 7) r = r sprintf(" (%.2f..%.2f)", $6, $7)
            printf "%-8s %-64s %-7s %13s %13s %19s  %s\n", $1, $2, $3, show($4, $3),
                show($5, $3), r, better
        }' "$ROWS" | tee "$OUT/summary.txt"
    echo "(rows, tool output and server logs: $OUT)"
}

REDIS_VERSION=$("$REDIS_SERVER" --version | awk '{ sub(/^v=/, "", $3); print "redis-server", $3 }')

write_report() {
    local cpu commit
    cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    mkdir -p "$RESULTS"
    cp "$ROWS" "$RESULTS/rows.tsv"
    "$BIN/bench-report" "$RESULTS/rows.tsv" --out "$RESULTS" \
        --note "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $commit; $(nproc) cores ($cpu); load average $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end." \
        --note "Baseline: $REDIS_VERSION (--save '' --appendonly no); dse with --appendonly no. Medians of $ROUNDS rounds, interleaved A/B/B/A with a fresh server per run; min..max is the range of the per-round ratios." \
        --note "Pinned: the server on core 0 (dse with 1 event loop), redis-benchmark on core 1. Unpinned: dse with ${DSE_THREADS:+--threads $DSE_THREADS, }its defaults otherwise (up to one event loop per core, clients gathered on as few as keep up)." \
        --baseline "network=redis" --baseline "memory=redis" --baseline "clients=redis" \
        --baseline "latency=redis" --baseline "durability=baseline" --baseline "cluster=baseline" \
        --baseline "engine=baseline"
}

main() {
    if [[ $BUILD == 1 ]]; then
        log "cargo build --release -p dse -p dse-bench"
        (cd "$ROOT" && cargo build --release -p dse -p dse-bench)
    fi
    LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
    echo "$(nproc) cores; load average $LOAD_START;" \
        "commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown); $REDIS_VERSION"
    local s
    for s in "${WANTED[@]}"; do
        "section_$s"
    done
    echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    print_table
    write_report
}

# Not `main | tee`: main would run in a subshell, out of reach of the exit trap that stops
# the servers it started.
exec > >(tee "$OUT/output.txt") 2>&1
main
