#!/bin/sh
# Stage "publish": the merged junit.xml at a fixed path ($WQH_RESULTS/junit.xml: GitLab's
# merge-request widget; an artifact on GitHub) and the summary on the log. The CI definitions
# keep $WQH_RESULTS (shards with their console logs, merged results) as artifacts, on failure
# too. On GitHub Actions wqh run and wqh merge themselves write the job summary
# ($GITHUB_STEP_SUMMARY) and an ::error annotation per unexpected result: the merge job's is
# the whole run's. Runs whatever the verdict; exits non-zero only when there is nothing to
# publish (the verdict is the merge job's).
set -eu
cd "$(dirname "$0")/.."
. ci/common.sh

merged="$WQH_RESULTS/merged"
[ -f "$merged/junit.xml" ] || die "no merged results in $merged/ (see the merge job)"
cp "$merged/junit.xml" "$WQH_RESULTS/junit.xml"
say "junit: $WQH_RESULTS/junit.xml"
[ ! -f "$merged/summary.txt" ] || cat "$merged/summary.txt"
