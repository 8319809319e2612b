#!/bin/sh
# Stage "build": build every kernel the scenarios need, once, boot nothing. The shards then
# find them in $WQH_CACHE (restored from the CI cache, or the machine's own).
# Also fixes the durations file all shards balance on: one copy for the whole pipeline, so
# every shard computes the same assignment.
set -eu
cd "$(dirname "$0")/.."
. ci/common.sh

mkdir -p "$WQH_RESULTS"
rm -f "$WQH_RESULTS/durations.json"
if [ -f "$WQH_DURATIONS_DIR/results.json" ]; then
    cp "$WQH_DURATIONS_DIR/results.json" "$WQH_RESULTS/durations.json"
    say "shards balanced on the durations of the last merged run"
fi
say "building the kernels of: $WQH_SCENARIOS (cache: ${WQH_CACHE:-~/.cache/wqh})"
start=$(date +%s)
rm -rf "$WQH_RESULTS/build"
# shellcheck disable=SC2086  # WQH_SCENARIOS is a list
"$WQH" run $WQH_SCENARIOS --build-only --out "$WQH_RESULTS/build"
say "kernels ready in $(( $(date +%s) - start )) s"
