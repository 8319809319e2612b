#!/bin/sh
# Was KVM used? Checked as virtme-ng's own CI does: by the guest's clocksource. A guest on
# KVM switches to kvm-clock; under TCG it stays on hpet/tsc. Reads every console.log under DIR.
# WQH_REQUIRE_KVM: yes = a guest not on kvm-clock is an error (exit 2); auto = a warning, also
# when /dev/kvm exists but was not used (wqh falls back to TCG when its KVM probe fails);
# no = only the report.
set -eu
cd "$(dirname "$0")/.."
. ci/common.sh

[ $# -eq 1 ] || die "usage: ci/check-kvm.sh RESULTS_DIR" 3
logs=$(find "$1" -name console.log -type f | LC_ALL=C sort)
if [ -z "$logs" ]; then
    say "kvm check: no guest console under $1 (nothing booted)"
    exit 0
fi
tcg=0
for log in $logs; do
    if grep -q 'clocksource: Switched to clocksource kvm-clock' "$log"; then
        say "kvm check: $log: kvm-clock (KVM)"
    else
        cs=$(sed -n 's/.*clocksource: Switched to clocksource \([A-Za-z0-9_-]*\).*/\1/p' "$log" | tail -n 1)
        say "kvm check: $log: ${cs:-no clocksource line} (TCG)"
        tcg=$((tcg + 1))
    fi
done
[ "$tcg" -eq 0 ] && exit 0
if [ -e /dev/kvm ]; then
    why="the runner has /dev/kvm but $tcg guest(s) ran under TCG (see: $WQH doctor)"
else
    why="$tcg guest(s) ran under TCG: the runner has no /dev/kvm"
fi
case $WQH_REQUIRE_KVM in
    yes) printf 'wqh-ci: error: KVM required: %s\n' "$why" >&2; exit 2 ;;
    no) say "kvm check: $why" ;;
    *) if [ -e /dev/kvm ]; then warn "$why"; else say "kvm check: $why"; fi ;;
esac
