#!/usr/bin/env bash
# The whole test suite: unit and property tests, integration tests against real server
# processes (including kill -9 durability tests; the disk-full test mounts a tmpfs when run
# as root and is skipped with a printed reason otherwise), and redis-py's own
# test_commands.py against a fresh server (scripts/compat-redis-py.sh), and a three-node
# cluster checked end to end with real clients (scripts/test_cluster.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace
scripts/test_cluster.sh --debug
scripts/compat-redis-py.sh
