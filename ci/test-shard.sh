#!/bin/sh
# Stage "test": one shard, K of N: wqh run --shard K/N into $WQH_RESULTS/shard-K, then the
# KVM check on its guests' consoles. Exits with wqh's code (0 as expected, 1 test failures,
# 2 infrastructure, 3 bad input); the KVM check can turn 0 into 2 when WQH_REQUIRE_KVM=yes.
set -eu
cd "$(dirname "$0")/.."
. ci/common.sh

[ $# -eq 2 ] || die "usage: ci/test-shard.sh K N (K in 1..N)" 3
k=$1 n=$2
out="$WQH_RESULTS/shard-$k"
rm -rf "$out"
mkdir -p "$WQH_RESULTS"
set -- --shard "$k/$n" --accel "$WQH_ACCEL" --out "$out"
if [ -f "$WQH_RESULTS/durations.json" ]; then
    set -- "$@" --durations "$WQH_RESULTS/durations.json"
fi
say "shard $k/$n: $WQH_SCENARIOS"
start=$(date +%s)
rc=0
# shellcheck disable=SC2086  # WQH_SCENARIOS is a list
"$WQH" run $WQH_SCENARIOS "$@" || rc=$?
say "shard $k/$n: wqh run exit $rc in $(( $(date +%s) - start )) s"
if [ -d "$out" ]; then
    ./ci/check-kvm.sh "$out" || { [ "$rc" -ne 0 ] || rc=2; }
fi
exit "$rc"
