#!/bin/sh
# Stage "merge": wqh merge of every shard directory into $WQH_RESULTS/merged. Exits with
# wqh merge's code: what one unsharded run would have given (1 when a test failed), or an
# error for a missing or duplicated shard. This job is the pipeline's verdict.
# Keeps the merged results.json in $WQH_DURATIONS_DIR for the next pipeline's balancing.
set -eu
cd "$(dirname "$0")/.."
. ci/common.sh

shards=$(find "$WQH_RESULTS" -mindepth 1 -maxdepth 1 -type d -name 'shard-*' | LC_ALL=C sort)
[ -n "$shards" ] || die "no shard results under $WQH_RESULTS/ (did the test jobs run?)"
rm -rf "$WQH_RESULTS/merged"
rc=0
# shellcheck disable=SC2086  # one argument per shard directory, none has a space
"$WQH" merge $shards --out "$WQH_RESULTS/merged" || rc=$?
say "wqh merge exit $rc"
if [ -f "$WQH_RESULTS/merged/summary.txt" ]; then
    cat "$WQH_RESULTS/merged/summary.txt"
fi
if [ -f "$WQH_RESULTS/merged/results.json" ]; then
    mkdir -p "$WQH_DURATIONS_DIR"
    cp "$WQH_RESULTS/merged/results.json" "$WQH_DURATIONS_DIR/results.json"
fi
exit "$rc"
