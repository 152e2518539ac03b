#!/usr/bin/env bash
# Checks a three-node dse cluster end to end with real clients, printing PASS or FAIL per
# check; exits non-zero if any check fails.
#
#   scripts/test_cluster.sh [--debug | --server PATH] [--base-port P] [--keep]
#
# It starts its own cluster with scripts/run_cluster.sh in a temporary directory (ports
# P, P+1, P+2 and bus ports 10000 higher; default 16379, so that no port is in the
# range the kernel hands out to outgoing connections), checks:
#   - every node reports the same CLUSTER SLOTS, covering all 16384 slots;
#   - routing: keys written through each node are readable through every node (the
#     default forwarding mode, with plain redis-cli), and pipelines keep their order;
#   - multi-key commands across nodes (MSET/MGET/DEL) are split and gathered;
#   - replication: every acknowledged write is on the slot's first replica (READONLY);
#   - cluster clients: redis-cli -c, redis-benchmark, and redis-py's RedisCluster when
#     python3 can import it;
#   - failover: node3 killed with SIGKILL is marked failed by the others, which serve
#     its slots with every acknowledged write; restarted, it catches up and serves its
#     slots again with every write made meanwhile;
# then stops the cluster (unless --keep) and removes the directory. The nodes run with
# --node-timeout 1500 --startup-grace 3000 so that the failover checks take seconds.
set -uo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
base=16379
keep=0
build_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --base-port) base="$2"; shift 2 ;;
        --debug) build_args+=(--debug); shift ;;
        --server) build_args+=(--server "$2"); shift 2 ;;
        --keep) keep=1; shift ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
for tool in redis-cli redis-benchmark; do
    command -v "$tool" >/dev/null || { echo "$tool is needed (apt-get install redis-tools)" >&2; exit 2; }
done

work="$(mktemp -d)"
ports=("$base" "$((base + 1))" "$((base + 2))")
cleanup() {
    if [ "$keep" -eq 0 ]; then
        (cd "$work" && "$root/scripts/run_cluster.sh" stop >/dev/null 2>&1)
        rm -rf "$work"
    else
        echo "cluster left running in $work (stop: cd $work && $root/scripts/run_cluster.sh stop)"
    fi
}
trap cleanup EXIT

(cd "$work" && "$root/scripts/run_cluster.sh" --base-port "$base" ${build_args[@]+"${build_args[@]}"} \
    --node-timeout 1500 --startup-grace 3000) \
    >"$work/start.log" 2>&1 || { cat "$work/start.log"; echo "FAIL cluster start"; exit 1; }

failures=0
pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
cli() { local port=$1; shift; redis-cli -p "$port" "$@" 2>&1; }

# 1. One slot map, all slots.
maps=()
for p in "${ports[@]}"; do
    maps+=("$(cli "$p" cluster slots | md5sum)")
done
covered=$(cli "${ports[0]}" cluster info | tr -d '\r' | sed -n 's/^cluster_slots_assigned://p')
if [ "${maps[0]}" = "${maps[1]}" ] && [ "${maps[1]}" = "${maps[2]}" ] && [ "$covered" = 16384 ]; then
    pass "every node reports the same CLUSTER SLOTS, covering 16384 slots"
else
    fail "slot maps differ or do not cover every slot (assigned: $covered)"
fi

# 2. Routing from every node.
bad=0
for i in $(seq 0 59); do
    p=${ports[$((i % 3))]}
    [ "$(cli "$p" set "route:$i" "v$i")" = OK ] || bad=$((bad + 1))
done
for i in $(seq 0 59); do
    for p in "${ports[@]}"; do
        [ "$(cli "$p" get "route:$i")" = "v$i" ] || bad=$((bad + 1))
    done
done
if [ "$bad" -eq 0 ]; then
    pass "60 keys written through each node are readable through every node"
else
    fail "routing: $bad wrong replies"
fi
got=$(printf 'SET pipe:a 1\nINCR pipe:n\nGET pipe:a\nINCR pipe:n\nGET route:7\n' | cli "${ports[1]}" | tr '\n' ' ')
if [ "$got" = "OK 1 1 2 v7 " ]; then
    pass "a pipeline of local and forwarded commands keeps its order"
else
    fail "pipeline order: got '$got'"
fi

# 3. Split and gathered multi-key commands.
cli "${ports[0]}" mset m:a 1 m:b 2 m:c 3 m:d 4 >/dev/null
got=$(cli "${ports[2]}" mget m:d nope m:a m:c m:b | tr '\n' ' ')
deleted=$(cli "${ports[1]}" del m:a m:b nope)
if [ "$got" = "4  1 3 2 " ] && [ "$deleted" = 2 ]; then
    pass "MSET/MGET/DEL across nodes are split and gathered in key order"
else
    fail "split commands: MGET '$got', DEL '$deleted'"
fi

# 4. Replication: each acknowledged write is on the slot's first replica.
replica_of() {
    # The port of the first replica of the slot of $1, from CLUSTER SLOTS.
    local slot
    slot=$(cli "${ports[0]}" cluster keyslot "$1")
    cli "${ports[0]}" --json cluster slots | python3 -c '
import json, sys
slot = int(sys.argv[1])
for row in json.load(sys.stdin):
    if row[0] <= slot <= row[1] and len(row) > 3:
        print(row[3][1])
' "$slot"
}
bad=0
checked=0
for i in $(seq 0 19); do
    key="repl:$i"
    [ "$(cli "${ports[0]}" set "$key" "r$i")" = OK ] || { bad=$((bad + 1)); continue; }
    rp=$(replica_of "$key")
    [ -n "$rp" ] || continue
    checked=$((checked + 1))
    val=$(printf 'READONLY\nGET %s\n' "$key" | cli "$rp" | tail -n 1)
    [ "$val" = "r$i" ] || bad=$((bad + 1))
done
if [ "$checked" -gt 0 ] && [ "$bad" -eq 0 ]; then
    pass "$checked acknowledged writes are on their slot's first replica"
else
    fail "replication: $bad of $checked writes missing on the replica"
fi

# 5. Cluster clients.
out=$(redis-cli -c -p "${ports[2]}" set cli:key v1 2>&1; redis-cli -c -p "${ports[0]}" get cli:key 2>&1)
if [ "$(echo "$out" | tr '\n' ' ')" = "OK v1 " ]; then
    pass "redis-cli -c"
else
    fail "redis-cli -c: $out"
fi
bench=$(redis-benchmark -p "${ports[1]}" -t set,get -n 20000 -r 10000 -P 16 -q --csv 2>&1)
if echo "$bench" | grep -q '"GET"' && ! echo "$bench" | grep -qi error; then
    pass "redis-benchmark against one node"
else
    fail "redis-benchmark: $bench"
fi
if python3 -c "import redis.cluster" 2>/dev/null; then
    if python3 - "${ports[@]}" <<'EOF'
import sys
from redis.cluster import RedisCluster, ClusterNode
nodes = [ClusterNode("127.0.0.1", int(p)) for p in sys.argv[1:]]
rc = RedisCluster(startup_nodes=nodes, decode_responses=True)
for i in range(100):
    rc.set(f"py:{i}", i)
assert all(rc.get(f"py:{i}") == str(i) for i in range(100))
assert rc.incr("py:n") == 1
rc.mset({"{py}a": "1", "{py}b": "2"})
assert rc.mget("{py}a", "{py}b") == ["1", "2"]
EOF
    then
        pass "redis-py RedisCluster"
    else
        fail "redis-py RedisCluster"
    fi
else
    echo "SKIP redis-py RedisCluster (python3 cannot import redis.cluster)"
fi

# 6. Failover: kill node3, the others take its slots over with every acknowledged write.
node_line() { # node_line VIA_PORT PORT: PORT's CLUSTER NODES line as VIA_PORT sees it
    cli "$1" cluster nodes | awk -v a="127.0.0.1:$2@" 'index($2, a) == 1'
}
# until SECONDS CMD...: polls CMD every 0.2 s until it succeeds or SECONDS pass.
until_ok() {
    local limit=$1; shift
    for _ in $(seq 1 $((limit * 5))); do
        "$@" && return 0
        sleep 0.2
    done
    "$@"
}
all_ok() {
    for p in "$@"; do
        cli "$p" cluster info | grep -q "cluster_state:ok" || return 1
    done
}
bad=0
for i in $(seq 0 199); do
    [ "$(cli "${ports[$((i % 2))]}" set "fo:$i" "f$i")" = OK ] || bad=$((bad + 1))
done
(cd "$work" && "$root/scripts/run_cluster.sh" kill 3 >/dev/null)
failed() { node_line "$1" "${ports[2]}" | awk '{ print $3 }' | grep -q fail; }
if until_ok 30 failed "${ports[0]}" && until_ok 10 failed "${ports[1]}" &&
    until_ok 10 all_ok "${ports[0]}" "${ports[1]}"; then
    pass "node3 killed: the survivors mark it failed and serve every slot"
else
    fail "failover: node3 not marked failed, or the survivors do not serve ($(node_line "${ports[0]}" "${ports[2]}"))"
fi
readable() { # readable VIA_PORT FROM TO: keys fo:FROM..TO read back through VIA_PORT
    local p=$1 missing=0
    for i in $(seq "$2" "$3"); do
        [ "$(cli "$p" get "fo:$i")" = "f$i" ] || missing=$((missing + 1))
    done
    [ "$missing" -eq 0 ] || { echo "  $missing of fo:$2..$3 missing through port $p"; return 1; }
}
if [ "$bad" -eq 0 ] && readable "${ports[0]}" 0 199 && readable "${ports[1]}" 0 199; then
    pass "200 acknowledged writes readable through both survivors after the failover"
else
    fail "failover: writes lost ($bad refused before the kill)"
fi
bad=0
for i in $(seq 200 299); do
    [ "$(cli "${ports[$((i % 2))]}" set "fo:$i" "f$i")" = OK ] || bad=$((bad + 1))
done
if [ "$bad" -eq 0 ]; then
    pass "100 writes acknowledged while node3 is down"
else
    fail "writes while node3 is down: $bad refused"
fi

# 7. Restart node3: it copies its slots back and serves them.
(cd "$work" && "$root/scripts/run_cluster.sh" restart 3 >/dev/null) || fail "node3 did not restart"
serving() { node_line "$1" "${ports[2]}" | awk '$3 !~ /fail/ && NF > 8 { ok = 1 } END { exit !ok }'; }
if until_ok 30 serving "${ports[0]}" && until_ok 10 serving "${ports[2]}" &&
    until_ok 10 all_ok "${ports[@]}"; then
    pass "node3 restarted: it caught up and serves its slots again"
else
    fail "rejoin: node3 does not serve ($(node_line "${ports[0]}" "${ports[2]}"))"
fi
# Its slots are its own again a moment after it takes them (its lease then covers them).
sleep 2
if readable "${ports[2]}" 0 299; then
    pass "300 acknowledged writes readable through the restarted node"
else
    fail "rejoin: writes missing through node3"
fi

if [ "$failures" -eq 0 ]; then
    echo "all checks passed"
    exit 0
fi
echo "$failures check(s) failed"
exit 1
