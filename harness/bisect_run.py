"""`wqh bisect`: the flaky-aware bisection of harness/bisect.py with wqh's own oracle.

Each commit is built in the bisection's private clone (a variant source: its build is seeded
from the previous step's, and ccache serves what the history did not change), then tested N
times: a C reproducer (runs in the guest, a run crashes when the kernel reports during it, of
the wanted title when one is given) or a scenario (one boot per run, a run crashes when a test
is not as expected).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import bisect, build as build_mod, config, repro, runner, source
from harness.errors import EXIT_FAIL, EXIT_OK, WqhError
from harness.paths import cache_dir
from harness.results import INFRA, Outcome


@dataclass
class KernelOracle:
    """bisect.Oracle: build a commit with wqh's config, test it with a reproducer or a scenario."""

    out: Path
    fragments: tuple[str, ...] = ()
    full_config: Path | None = None
    reproducer: Path | None = None  # compiled binary
    cflags: tuple[str, ...] = ()
    scenario: object | None = None  # scenario.Scenario
    timeout: float = 60.0
    accel: str = "auto"
    jobs: int | None = None
    _built: dict = field(default_factory=dict)

    def _source(self, commit: str, tree: Path) -> source.KernelSource:
        # A variant: one tree path whose contents change; builds of it seed each other.
        return source.KernelSource(tree, f"git:{commit}", "variant", immutable=True)

    def _config(self, src: source.KernelSource):
        if self.full_config is not None:
            from harness import fullconfig

            return fullconfig.prepare(src, self.full_config,
                                      guest_tests=self.scenario is not None).config
        frags = self.scenario.kernel.fragments if self.scenario is not None else self.fragments
        base = self.scenario.file.parent if self.scenario is not None else Path.cwd()
        return config.merge(src, config.fragment_list(list(frags), base))

    def build(self, commit: str, tree: Path) -> bisect.Built:
        src = self._source(commit, tree)
        t = time.monotonic()
        try:
            cfg = self._config(src)
            b = build_mod.build(src, cfg, jobs=self.jobs)
        except WqhError as e:
            return bisect.Built(None, time.monotonic() - t, str(e).splitlines()[0])
        tree_id = subprocess.run(["git", "-C", str(tree), "rev-parse", f"{commit}^{{tree}}"],
                                 capture_output=True, text=True).stdout.strip()
        # Same source tree and same .config: the same kernel (bzImage carries a build time).
        khash = hashlib.sha256(f"{tree_id} {cfg.hash}".encode()).hexdigest()[:16]
        self._built[commit] = (src, cfg)
        return bisect.Built(khash, b.wall_s if not b.reused else 0.0)

    def test(self, commit: str, tree: Path, runs: int) -> list[bisect.RunResult]:
        src, _ = self._built[commit]
        out = self.out / "steps" / commit[:12]
        if self.reproducer is not None:
            return self._repro_runs(src, out, runs)
        return [self._scenario_run(src, out / f"run{i + 1}") for i in range(runs)]

    def _repro_runs(self, src, out: Path, runs: int) -> list[bisect.RunResult]:
        out.mkdir(parents=True, exist_ok=True)
        scs = repro.scenarios_for(out, self.reproducer, runs, self.timeout,
                                  self.fragments or repro.DEFAULT_FRAGMENTS, (), self.full_config)
        summary = runner.run(scs, runner.RunOptions(out=out, accel=self.accel, jobs=self.jobs,
                                                    kernel_source=src, vms=len(scs)))
        found: dict[int, bisect.RunResult] = {}
        for r in summary.results:
            if "::test_run[" not in r.test:
                continue
            i = int(r.test.rsplit("[", 1)[1].rstrip("]"))
            if r.reports:
                x = r.reports[0]
                found[i] = bisect.RunResult.crash(x.title, x.alt_titles)
            elif r.outcome in (INFRA, "lost", Outcome.HANG, Outcome.TIMEOUT):
                found[i] = bisect.RunResult.infra(f"{r.outcome}: {r.message[:200]}")
            else:
                found[i] = bisect.RunResult.clean()
        return [found.get(i, bisect.RunResult.infra("no result")) for i in range(runs)]

    def _scenario_run(self, src, out: Path) -> bisect.RunResult:
        summary = runner.run([self.scenario], runner.RunOptions(out=out, accel=self.accel,
                                                                jobs=self.jobs, kernel_source=src))
        if any(r.outcome == INFRA for r in summary.results):
            return bisect.RunResult.infra("a test could not run (infra-error)")
        bad = [r for r in summary.results if not r.as_expected]
        if not bad:
            return bisect.RunResult.clean()
        reps = [x for r in bad for x in r.reports]
        title = reps[0].title if reps else f"{bad[0].test.split('::')[-1]}: {bad[0].outcome}"
        return bisect.RunResult.crash(title, reps[0].alt_titles if reps else ())


def workdir_for(repo: Path) -> Path:
    """The bisections of one repository share a clone and its builds in the cache."""
    return cache_dir() / "bisect" / hashlib.sha256(str(repo.resolve()).encode()).hexdigest()[:12]


def main(a, scen) -> int:
    """`wqh bisect`; the validation phase (cli) has checked every input and built the
    Bisection (ancestry, refs) before any build."""
    out = Path(os.path.abspath(a.out))
    out.mkdir(parents=True, exist_ok=True)
    binary = None
    if a.file is not None:
        binary = repro.compile_c(a.file.resolve(), out / "repro", repro.cflags_of(a))
    oracle = KernelOracle(out, tuple(a.config), a.config_file, binary, repro.cflags_of(a), scen,
                          a.timeout, a.accel, a.jobs)
    b = a.bisection
    b.oracle = oracle
    try:
        res = b.run()
    except bisect.EndpointError as e:
        print(f"wqh: error: {e}", file=sys.stderr)
        return e.exit_code
    text = res.report_text()
    print(text)
    (out / "bisect.txt").write_text(text)
    (out / "result.json").write_text(json.dumps(res.to_json(), indent=1) + "\n")
    print(f"state: {a.bisection.state_path}\nartifacts: {out}")
    return EXIT_OK if res.culprit else EXIT_FAIL
