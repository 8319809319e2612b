"""A flaky-aware bisection: which commit introduced (or, with fix=True, fixed) a crash.

How a commit is tested is not this module's business: an Oracle builds a commit (giving a
hash of the kernel it built) and runs the reproducer N times on it. This module decides what
the runs say, drives `git bisect` in a private clone, and records every step.

The rules follow syzbot's (syzkaller pkg/bisect), as changed over the years (20 runs while
the bug's flakiness is unknown or once it shows flaky; a lower bound on crashes for a bad
verdict, syzkaller PR 5047; skip when too few runs were valid, PR 3976; the estimated chance
of a false 'good', PR 4028):

* runs per commit: RUNS (10); FIRST_RUNS (20) for the endpoints, the first commits tested,
  and for every commit once the bug has shown flaky (a crashing commit where some valid runs
  crashed and some did not).
* a run is valid unless it is an infrastructure failure (build, boot, VM died, lost guest);
  with a wanted title, a crash of another kind is not valid either: it ended the run before
  the bug could show.
* BAD:  crashes >= max(2, valid // 6). One crash is never enough (not on the first commit
  either): '1 crashed, 9 OK' was the most common derailment of syzbot's bisections.
* GOOD: no crash, and at least half the runs valid.
* SKIP: anything else (one lone crash; too many infrastructure failures).

The error probability. Let p be the per-run crash probability on commits that have the bug,
estimated from the crashing steps: p = (crashes on BAD steps) / (valid runs on BAD steps). A
commit with the bug looks GOOD only if none of its v valid runs crashed: probability (1-p)^v.
The result is wrong if any of the GOOD verdicts g_1..g_k was such a miss (a BAD verdict needs
two crashes, which an unbuggy commit does not give: false BADs are taken as 0), so

    P(error) = 1 - prod_i (1 - (1 - p)^v_i)

over the independent GOOD steps (a step that reused an earlier kernel adds nothing: same
kernel, same runs). With a deterministic reproducer p = 1 and P(error) = 0; at p = 0.5 and 20
runs each term is 2^-20.

`git bisect run` takes exit codes 0 good, 1..127 but 125 bad, 125 skip, >127 abort: see
git_bisect_exit() (never above 127; virtme-ng's 255 for a dead guest is a skip).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Callable, Protocol

from harness.errors import EXIT_INPUT, InfraError, InputError, WqhError

RUNS = 10
FIRST_RUNS = 20
FIRST_COMMITS = 2  # the two endpoints
STATE_VERSION = 1


class Verdict(str, Enum):
    GOOD = "good"
    BAD = "bad"
    SKIP = "skip"


@dataclass(frozen=True)
class RunResult:
    """One run of the reproducer: outcome 'crash' | 'clean' | 'infra' (and the crash's titles)."""

    outcome: str
    title: str | None = None
    alt_titles: tuple[str, ...] = ()

    @classmethod
    def crash(cls, title: str | None = None, alt_titles=()) -> RunResult:
        return cls("crash", title, tuple(alt_titles))

    @classmethod
    def clean(cls) -> RunResult:
        return cls("clean")

    @classmethod
    def infra(cls, why: str = "") -> RunResult:
        return cls("infra", why or None)


@dataclass
class StepVerdict:
    verdict: Verdict
    runs: int
    crashes: int
    valid: int
    other: int = 0  # crashes of another kind than the wanted title (not valid)
    reason: str = ""
    titles: list[str] = field(default_factory=list)

    @property
    def infra(self) -> int:
        return self.runs - self.valid - self.other

    @property
    def flaky(self) -> bool:
        return self.verdict is Verdict.BAD and 0 < self.crashes < self.valid


def bad_threshold(valid: int) -> int:
    return max(2, valid // 6)


def judge(runs: list[RunResult], title: str | None = None, alt_titles=()) -> StepVerdict:
    """What N runs of one commit say (the module's rules). With TITLE, only crashes whose title
    matches it exactly or by an alternative title count; other crashes make the run invalid."""
    from harness.syzreport import title_match

    crashes = clean = other = 0
    titles: list[str] = []
    for r in runs:
        if r.outcome == "crash":
            if title is not None and title_match(r.title, r.alt_titles, title, alt_titles) \
                    not in ("exact", "alternative"):
                other += 1
            else:
                crashes += 1
            if r.title and r.title not in titles:
                titles.append(r.title)
        elif r.outcome == "clean":
            clean += 1
    n = len(runs)
    valid = crashes + clean
    need = bad_threshold(valid)
    if n == 0:
        return StepVerdict(Verdict.SKIP, 0, 0, 0, 0, "no runs", titles)
    if crashes >= need:
        return StepVerdict(Verdict.BAD, n, crashes, valid, other,
                           f"{crashes} of {valid} valid runs crashed (bad needs {need})", titles)
    if crashes == 0 and valid > 0 and 2 * valid >= n:
        return StepVerdict(Verdict.GOOD, n, 0, valid, other,
                           f"no crash in {valid} valid runs of {n}", titles)
    if crashes:
        why = f"{crashes} crash(es) in {valid} valid runs: bad needs {need}, good none"
    else:
        why = f"only {valid} of {n} runs valid: good needs half"
    return StepVerdict(Verdict.SKIP, n, crashes, valid, other, why, titles)


def git_bisect_exit(v: Verdict | StepVerdict | None, fix: bool = False) -> int:
    """The exit code `git bisect run` takes: 0 good, 1 bad, 125 skip (None: could not test).
    With FIX the crash is the old state: a crashing commit is 'good' to git (see --fix)."""
    if isinstance(v, StepVerdict):
        v = v.verdict
    if v is None or v is Verdict.SKIP:
        return 125
    bad = v is Verdict.BAD
    if fix:
        bad = not bad
    return 1 if bad else 0


def git_bisect_exit_from_rc(rc: int | None) -> int:
    """A raw exit status as `git bisect run` must see it: 0 stays good, 1 bad; anything else
    (wqh's 2 infra and 3 input, virtme-ng's 255 for a dead guest, a signal) is a skip, so a
    broken test never reads as a verdict and never aborts the bisection (> 127)."""
    if rc == 0:
        return 0
    if rc == 1:
        return 1
    return 125


# --- the oracle --------------------------------------------------------------------------

@dataclass
class Built:
    """A built kernel: its hash (same hash = same kernel, the runs need not be repeated)."""

    kernel_hash: str | None
    build_s: float = 0.0
    error: str | None = None  # the build failed (the step is a skip)


class Oracle(Protocol):
    def build(self, commit: str, tree: Path) -> Built: ...

    def test(self, commit: str, tree: Path, runs: int) -> list[RunResult]: ...


# --- steps and state ----------------------------------------------------------------------

@dataclass
class Step:
    commit: str
    subject: str
    kind: str  # 'bad endpoint' | 'good endpoint' | 'step'
    verdict: str
    runs: int
    crashes: int
    valid: int
    other: int = 0
    reason: str = ""
    titles: list[str] = field(default_factory=list)
    kernel_hash: str | None = None
    build_s: float = 0.0
    run_s: float = 0.0
    reused_from: str | None = None  # commit whose kernel (and verdict) this step reused

    @property
    def crashing(self) -> bool:
        return self.verdict == Verdict.BAD.value


@dataclass
class Result:
    culprit: str | None
    culprit_subject: str | None
    candidates: list[str]  # when skips left several commits
    steps: list[Step]
    fix: bool
    crash_rate: float | None
    flaky: bool
    error_probability: float

    def to_json(self) -> dict:
        return {"culprit": self.culprit, "culprit_subject": self.culprit_subject,
                "candidates": self.candidates, "fix": self.fix, "crash_rate": self.crash_rate,
                "flaky": self.flaky, "error_probability": self.error_probability,
                "steps": [asdict(s) for s in self.steps]}

    def table(self) -> str:
        head = f"{'commit':<12} {'verdict':<7} {'crash':>5} {'valid':>5} {'runs':>4} " \
               f"{'build s':>7} {'run s':>6}  subject"
        lines = [head]
        for s in self.steps:
            note = f" (same kernel as {s.reused_from[:12]})" if s.reused_from else ""
            kind = f"[{s.kind}] " if s.kind != "step" else ""
            lines.append(f"{s.commit[:12]:<12} {s.verdict:<7} {s.crashes:>5} {s.valid:>5} "
                         f"{s.runs:>4} {s.build_s:>7.0f} {s.run_s:>6.0f}  {kind}{s.subject}{note}")
        return "\n".join(lines)

    def report_text(self) -> str:
        what = "fixed" if self.fix else "introduced"
        if self.culprit:
            head = f"first commit that {what} it: {self.culprit} {self.culprit_subject or ''}"
        else:
            head = (f"inconclusive: skipped commits leave {len(self.candidates)} candidates:\n"
                    + "\n".join(f"  {c}" for c in self.candidates))
        rate = "" if self.crash_rate is None else f"; per-run crash rate on crashing commits " \
                                                  f"{self.crash_rate:.2f}{' (flaky)' if self.flaky else ''}"
        return (f"{head.rstrip()}\n{self.table()}\n"
                f"probability that a 'good' verdict was a missed crash: "
                f"{self.error_probability:.3g}{rate}\n")


def error_probability(steps: list[Step]) -> tuple[float | None, float]:
    """(p, P(error)) from the steps: see the module's doc."""
    bad = [s for s in steps if s.crashing and not s.reused_from]
    valid = sum(s.valid for s in bad)
    if not valid:
        return None, 0.0
    p = sum(s.crashes for s in bad) / valid
    ok = 1.0
    for s in steps:
        if s.verdict == Verdict.GOOD.value and not s.reused_from:
            ok *= 1.0 - (1.0 - p) ** s.valid
    return p, 1.0 - ok


class EndpointError(WqhError):
    """An endpoint did not test as the user said (a --good that crashes, a --bad that does not):
    the input is wrong and there is nothing to bisect. Exit 3, as for any bad input, though
    it takes the endpoint's build and runs to find out."""

    exit_code = EXIT_INPUT


# --- git ------------------------------------------------------------------------------------

def _git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                       errors="replace")
    if check and r.returncode != 0:
        raise InfraError(f"git {' '.join(args)} in {repo} failed: {r.stderr.strip()}")
    return r


def resolve_refs(repo: Path, good: str, bad: str, fix: bool = False) -> tuple[str, str]:
    """(good sha, bad sha) in the user's REPO, read-only; InputError (exit 3) when a ref is not
    a commit or the older endpoint is not an ancestor of the newer one."""
    from harness import source

    shas = []
    for key, ref in (("--good", good), ("--bad", bad)):
        try:
            shas.append(source.rev_parse(repo, ref))
        except InputError as e:
            raise InputError(e.detail, key=key, hint=e.hint) from None
    g, b = shas
    if g == b:
        raise InputError(f"--good {good} and --bad {bad} are the same commit", key="--good/--bad",
                         hint="give two different commits")
    old, new = (b, g) if fix else (g, b)
    r = _git(repo, "merge-base", "--is-ancestor", old, new, check=False)
    if r.returncode != 0:
        if fix:
            msg = (f"--bad {bad} is not an ancestor of --good {good}: with --fix the crashing "
                   "commit is the older one")
            hint = "give --bad an older commit that crashes and --good a newer one that does not"
        else:
            msg = f"--good {good} is not an ancestor of --bad {bad}"
            hint = ("give --good an older commit of the same history (git merge-base --is-ancestor "
                    "GOOD BAD must succeed); to find a fix, add --fix")
        raise InputError(msg, key="--good/--bad", hint=hint)
    return g, b


def private_clone(repo: Path, dest: Path) -> Path:
    """A `git clone --shared` of REPO at DEST (objects borrowed read-only; the user's repository,
    its refs and its bisect state are never touched)."""
    if (dest / ".git").is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + f".partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    r = subprocess.run(["git", "clone", "-q", "--shared", "--no-checkout", str(repo), str(tmp)],
                       capture_output=True, text=True, errors="replace")
    if r.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise InfraError(f"git clone --shared {repo} failed: {r.stderr.strip()}")
    tmp.rename(dest)
    return dest


# --- the bisection ------------------------------------------------------------------------

_FIRST = re.compile(r"^([0-9a-f]{40}) is the first (?:new|bad) commit", re.M)
_ONLY_SKIPPED = "only 'skip'ped commits left"


class Bisection:
    """Bisect REPO between GOOD and BAD with ORACLE, recording each step in STATE (bisect.json).

    Re-running with the same arguments and state file resumes: a commit already judged is not
    built or run again. WORKDIR holds the private clone."""

    def __init__(self, repo: Path, good: str, bad: str, oracle: Oracle, state: Path,
                 workdir: Path, fix: bool = False, title: str | None = None,
                 alt_titles=(), runs: int = RUNS, first_runs: int = FIRST_RUNS,
                 log: Callable[[str], None] = print):
        self.repo = Path(repo).resolve()
        self.good_ref, self.bad_ref = good, bad
        self.oracle, self.state_path, self.workdir = oracle, Path(state), Path(workdir)
        self.fix, self.title, self.alt_titles = fix, title, tuple(alt_titles)
        self.runs, self.first_runs = runs, first_runs
        self.log = log
        self.good, self.bad = resolve_refs(self.repo, good, bad, fix)
        self.steps: list[Step] = []
        self.flaky = False
        self._load_state()

    # -- state
    def _args(self) -> dict:
        return {"repo": str(self.repo), "good": self.good, "bad": self.bad, "fix": self.fix,
                "title": self.title, "runs": self.runs, "first_runs": self.first_runs}

    def _load_state(self) -> None:
        if not self.state_path.is_file():
            return
        try:
            st = json.loads(self.state_path.read_text())
            args = st["args"]
            steps = [Step(**s) for s in st["steps"]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise InputError(f"{self.state_path}: not a bisection state file ({e})",
                             file=str(self.state_path),
                             hint="remove it to start over, or give another --out") from None
        if args != self._args():
            diff = ", ".join(k for k in self._args() if args.get(k) != self._args()[k])
            raise InputError(f"{self.state_path} records another bisection (differs in {diff})",
                             file=str(self.state_path),
                             hint="re-run with the same arguments to resume it, or give another "
                                  "--out to start a new one")
        self.steps = steps
        self.flaky = any(self._shows_flaky(s) for s in steps)

    def _save(self, result: Result | None = None) -> None:
        st = {"version": STATE_VERSION, "args": self._args(),
              "steps": [asdict(s) for s in self.steps]}
        if result is not None:
            st["result"] = result.to_json()
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(st, indent=1) + "\n")
        tmp.replace(self.state_path)

    @staticmethod
    def _shows_flaky(s: Step) -> bool:
        return s.crashing and 0 < s.crashes < s.valid

    # -- one commit
    def _done(self, commit: str) -> Step | None:
        for s in self.steps:
            if s.commit == commit:
                return s
        return None

    def _runs_for(self) -> int:
        tested = sum(1 for s in self.steps if not s.reused_from)
        return self.first_runs if (self.flaky or tested < FIRST_COMMITS) else self.runs

    def test_commit(self, commit: str, tree: Path, kind: str) -> Step:
        """Judge COMMIT (checked out at TREE), or take the step already recorded for it."""
        done = self._done(commit)
        if done is not None:
            self.log(f"bisect: {commit[:12]} {done.verdict} (recorded in {self.state_path.name})")
            return done
        subject = _git(tree, "log", "-1", "--format=%s", commit).stdout.strip()
        t0 = time.monotonic()
        built = self.oracle.build(commit, tree)
        build_s = built.build_s or round(time.monotonic() - t0, 2)
        if built.error:
            step = Step(commit, subject, kind, Verdict.SKIP.value, 0, 0, 0,
                        reason=f"build failed: {built.error}", build_s=build_s)
        else:
            same = next((s for s in self.steps if built.kernel_hash and
                         s.kernel_hash == built.kernel_hash and not s.reused_from), None)
            if same is not None:
                step = Step(commit, subject, kind, same.verdict, same.runs, same.crashes,
                            same.valid, same.other, f"same kernel as {same.commit[:12]}",
                            list(same.titles), built.kernel_hash, build_s, 0.0, same.commit)
            else:
                n = self._runs_for()
                t1 = time.monotonic()
                runs = self.oracle.test(commit, tree, n)
                run_s = round(time.monotonic() - t1, 2)
                v = judge(runs, self.title, self.alt_titles)
                step = Step(commit, subject, kind, v.verdict.value, v.runs, v.crashes, v.valid,
                            v.other, v.reason, v.titles, built.kernel_hash, build_s, run_s)
                if self._shows_flaky(step) and not self.flaky:
                    self.flaky = True
                    self.log(f"bisect: the crash is flaky ({step.crashes}/{step.valid}): "
                             f"{self.first_runs} runs per commit from now on")
        self.steps.append(step)
        self._save()
        self.log(f"bisect: {commit[:12]} {step.verdict:<4} {step.crashes}/{step.valid} crashed"
                 f"{' (' + step.reason + ')' if step.reason else ''}  {subject}")
        return step

    # -- the whole bisection
    def run(self) -> Result:
        # WORKDIR/src/<the repo's directory name>: builds beside it in WORKDIR/builds see the
        # tree at the same relative path as the cache's own builds see theirs, so ccache (its
        # base dir is the cache) serves every file the history did not change.
        tree = private_clone(self.repo, self.workdir / "src" / self.repo.name)
        _git(tree, "bisect", "reset", check=False)
        for sha in (self.good, self.bad):  # commits made in the user's repo since the clone
            if _git(tree, "cat-file", "-e", f"{sha}^{{commit}}", check=False).returncode != 0:
                _git(tree, "fetch", "-q", str(self.repo), sha)
        # Endpoints first: the crashing one, then the other (syzbot's order).
        crash_end, clean_end = (self.bad, self.good)
        for sha, kind, want in ((crash_end, "bad endpoint", Verdict.BAD),
                                (clean_end, "good endpoint", Verdict.GOOD)):
            _git(tree, "checkout", "-q", "--detach", sha)
            step = self.test_commit(sha, tree, kind)
            if step.verdict != want.value:
                ref = self.bad_ref if kind == "bad endpoint" else self.good_ref
                if step.verdict == Verdict.SKIP.value and step.valid * 2 < step.runs:
                    raise InfraError(f"the {kind} {ref} ({sha[:12]}) could not be tested: "
                                     f"{step.reason}", hint=f"see {self.state_path}")
                raise EndpointError(
                    f"the {kind} {ref} ({sha[:12]}) tests {step.verdict}, not {want.value}: "
                    f"{step.crashes} of {step.valid} valid runs crashed ({step.runs} runs, "
                    f"{step.other} other crashes): {step.reason}",
                    hint=("check the reproducer and the config on that commit, or pick another "
                          "endpoint" if kind == "bad endpoint" else
                          "pick an older --good where it does not crash"))
        # Terms: 'new' is the state after the change. Without --fix: crashing; with: fixed.
        old, new = (self.good, self.bad) if not self.fix else (self.bad, self.good)
        r = _git(tree, "bisect", "start", "--term-old=old", "--term-new=new", new, old)
        out = r.stdout
        while True:
            if _FIRST.search(out) or _ONLY_SKIPPED in out:
                break
            head = _git(tree, "rev-parse", "HEAD").stdout.strip()
            step = self.test_commit(head, tree, "step")
            if step.verdict == Verdict.SKIP.value:
                term = "skip"
            else:
                crashing = step.verdict == Verdict.BAD.value
                term = "new" if crashing != self.fix else "old"
            r = _git(tree, "bisect", term, check=False)
            out = r.stdout + r.stderr
            if r.returncode != 0 and not (_FIRST.search(out) or _ONLY_SKIPPED in out):
                raise InfraError(f"git bisect {term} failed in {tree}: {out.strip()}")
        m = _FIRST.search(out)
        candidates: list[str] = []
        culprit = subject = None
        if m:
            culprit = m.group(1)
            subject = _git(tree, "log", "-1", "--format=%s", culprit).stdout.strip()
        else:
            candidates = re.findall(r"^([0-9a-f]{40})\b", out, re.M)
        _git(tree, "bisect", "reset", check=False)
        p, err = error_probability(self.steps)
        res = Result(culprit, subject, candidates, list(self.steps), self.fix, p, self.flaky, err)
        self._save(res)
        return res
