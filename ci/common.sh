# shellcheck shell=sh
# Sourced by the ci/*.sh pipeline steps (GitLab and GitHub call the same ones).
# Knobs, all environment variables (the CI definitions set them):
#   WQH_SCENARIOS    scenario files/dirs, space-separated (default: scenarios/)
#   WQH_RESULTS      where the pipeline's results go (default: wqh-results/ci)
#   WQH_ACCEL        auto|kvm|tcg, passed to wqh run --accel (default: auto)
#   WQH_REQUIRE_KVM  yes: a guest not on kvm-clock fails the shard; auto: warn (default); no: quiet
#   WQH_CACHE        wqh's cache (builds keyed by source identity + config hash)
#   WQH_DURATIONS_DIR  cached results.json of the last merged run, for shard balancing
WQH_SCENARIOS=${WQH_SCENARIOS:-scenarios/}
WQH_RESULTS=${WQH_RESULTS:-wqh-results/ci}
WQH_ACCEL=${WQH_ACCEL:-auto}
WQH_REQUIRE_KVM=${WQH_REQUIRE_KVM:-auto}
WQH_DURATIONS_DIR=${WQH_DURATIONS_DIR:-.wqh-durations}
WQH=${WQH:-.venv/bin/wqh}
export WQH_SCENARIOS WQH_RESULTS WQH_ACCEL WQH_REQUIRE_KVM WQH_DURATIONS_DIR

say() { printf 'wqh-ci: %s\n' "$*"; }
warn() { printf 'wqh-ci: warning: %s\n' "$*" >&2; }
die() { printf 'wqh-ci: error: %s\n' "$1" >&2; exit "${2:-2}"; }
