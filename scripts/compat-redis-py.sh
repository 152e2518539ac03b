#!/usr/bin/env bash
# Runs redis-py's own test suite (tests/test_commands.py from its source package on PyPI)
# against a fresh dse-server, and compares the failures with the checked-in list of tests
# expected to fail (commands dse does not have yet).
#
#   scripts/compat-redis-py.sh [--protocol 2|3] [--update] [--server PATH]
#
# Exit status: 0 when every failure is expected; 1 when a test fails that is not on the
# list. Tests on the list that now pass are reported so the list can shrink (--update
# rewrites it from this run).
set -euo pipefail

REDIS_PY_VERSION="${REDIS_PY_VERSION:-8.1.0}"
root="$(cd "$(dirname "$0")/.." && pwd)"
expected="$root/scripts/compat-redis-py.expected-failures"
protocol=""
update=0
server=""
while [ $# -gt 0 ]; do
    case "$1" in
        --protocol) protocol="$2"; shift 2 ;;
        --update) update=1; shift ;;
        --server) server="$2"; shift 2 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

work="$root/target/compat-redis-py"
src="$work/redis-$REDIS_PY_VERSION"
mkdir -p "$work"
if [ ! -d "$src/tests" ]; then
    echo "== downloading redis-py $REDIS_PY_VERSION source from PyPI"
    python3 -m pip download --quiet --no-binary :all: --no-deps --dest "$work" \
        "redis==$REDIS_PY_VERSION"
    tar -xzf "$work/redis-$REDIS_PY_VERSION.tar.gz" -C "$work"
fi
python3 -c "import pytest, pytest_timeout" 2>/dev/null || {
    echo "== installing pytest"
    python3 -m pip install --quiet pytest pytest-timeout pytest-asyncio packaging
}

if [ -z "$server" ]; then
    (cd "$root" && cargo build --quiet --bin dse-server)
    server="$root/target/debug/dse-server"
fi
data="$(mktemp -d)"
log="$work/server.log"
"$server" --port 0 --data "$data" --snapshot-interval 0 --loglevel notice >"$log" 2>&1 &
pid=$!
cleanup() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -rf "$data"
}
trap cleanup EXIT
port=""
for _ in $(seq 1 100); do
    port="$(sed -n 's/.*listening on [^ ]*:\([0-9][0-9]*\).*/\1/p' "$log" | head -n 1)"
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { echo "dse-server did not start:"; cat "$log"; exit 1; }

junit="$work/results-${protocol:-default}.xml"
echo "== redis-py $REDIS_PY_VERSION tests/test_commands.py against dse-server on port $port" \
    "(protocol: ${protocol:-client default, RESP3})"
args=(tests/test_commands.py "--redis-url=redis://127.0.0.1:$port/0" -p no:cacheprovider
    --timeout=60 -q -W ignore --junitxml="$junit" -o junit_family=xunit2)
[ -n "$protocol" ] && args+=("--protocol=$protocol")
(cd "$src" && python3 -m pytest "${args[@]}" >"$work/pytest.log" 2>&1) || true
tail -n 1 "$work/pytest.log"

python3 - "$junit" "$expected" "$update" <<'EOF'
import sys
import xml.etree.ElementTree as ET

junit, expected_path, update = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
root = ET.parse(junit).getroot()
passed, failed, skipped = set(), set(), set()
for case in root.iter("testcase"):
    name = f"{case.get('classname', '').split('.')[-1]}::{case.get('name')}"
    kinds = {child.tag for child in case}
    if kinds & {"failure", "error"}:
        failed.add(name)
    elif "skipped" in kinds:
        skipped.add(name)
    else:
        passed.add(name)
try:
    with open(expected_path) as f:
        expected = {l.strip() for l in f if l.strip() and not l.startswith("#")}
except FileNotFoundError:
    expected = set()
unexpected = sorted(failed - expected)
fixed = sorted(expected & passed)
print(f"passed {len(passed)}, failed {len(failed)} ({len(failed & expected)} expected), "
      f"skipped {len(skipped)}")
if fixed:
    print(f"{len(fixed)} test(s) on the expected-failure list now pass (shrink the list):")
    for t in fixed:
        print(f"  {t}")
if update:
    with open(expected_path, "w") as f:
        f.write("# redis-py tests/test_commands.py tests expected to fail against dse-server.\n")
        f.write("# Regenerate with scripts/compat-redis-py.sh --update; it must only shrink.\n")
        for t in sorted(failed):
            f.write(t + "\n")
    print(f"wrote {len(failed)} names to {expected_path}")
    sys.exit(0)
if unexpected:
    print(f"{len(unexpected)} unexpected failure(s):")
    for t in unexpected:
        print(f"  {t}")
    sys.exit(1)
print("no unexpected failures")
EOF
