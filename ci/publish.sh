#!/bin/sh
# Stage "publish": the merged junit.xml at a fixed path ($WQH_RESULTS/junit.xml: GitLab's
# merge-request widget), the summary on the log and, on GitHub, in the job summary
# ($GITHUB_STEP_SUMMARY). The CI definitions keep $WQH_RESULTS (shards with their console logs,
# merged results) as artifacts, on failure too. Runs whatever the verdict; exits non-zero only
# when there is nothing to publish (the verdict is the merge job's).
set -eu
cd "$(dirname "$0")/.."
. ci/common.sh

merged="$WQH_RESULTS/merged"
[ -f "$merged/junit.xml" ] || die "no merged results in $merged/ (see the merge job)"
cp "$merged/junit.xml" "$WQH_RESULTS/junit.xml"
say "junit: $WQH_RESULTS/junit.xml"
[ ! -f "$merged/summary.txt" ] || cat "$merged/summary.txt"
if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
    .venv/bin/python - "$merged/results.json" >> "$GITHUB_STEP_SUMMARY" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ok = r.get("exit_code") == 0
print(f"## wqh: {'all as expected' if ok else 'exit %s' % r.get('exit_code')}\n")
print("| outcome | tests |\n|---|---|")
for outcome, n in sorted(r.get("summary", {}).items()):
    print(f"| {outcome} | {n} |")
bad = [t for t in r.get("tests", []) if t.get("outcome") != t.get("expected")]
if bad:
    print("\n| scenario | test | outcome | expected | message |\n|---|---|---|---|---|")
    for t in bad[:200]:
        msg = (t.get("message") or "").splitlines()[:1]
        msg = msg[0][:200].replace("|", "\\|") if msg else ""
        print(f"| {t['scenario']} | `{t['test']}` | {t['outcome']} | {t['expected']} | {msg} |")
print(f"\n{len(r.get('tests', []))} tests in {r.get('duration_s', 0):.0f} s; "
      "console logs and results: the workflow's artifacts.")
PY
fi
