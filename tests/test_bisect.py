"""The flaky-aware bisection on a real tiny git repository with fake oracles."""

import hashlib
import json
import random
import subprocess
from pathlib import Path

import pytest

from harness import bisect
from harness.bisect import Built, RunResult, Verdict, judge
from harness.errors import InputError

TITLE = "KASAN: slab-out-of-bounds Write in watch_queue_set_filter"


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def make_repo(path: Path, n: int = 16, bug_at: int | None = 7, fix_at: int | None = None,
              same_as_prev: tuple[int, ...] = ()) -> list[str]:
    """A repository of N commits of one file; commit BUG_AT puts 'BUG' in it (FIX_AT takes it
    out again). A commit in SAME_AS_PREV changes only another file: its 'kernel' is the same."""
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "t@example.com")
    git(path, "config", "user.name", "t")
    shas = []
    buggy = False
    for i in range(n):
        if i == bug_at:
            buggy = True
        if i == fix_at:
            buggy = False
        if i in same_as_prev:
            (path / "README").write_text(f"doc {i}\n")
        else:
            (path / "code.c").write_text(f"version {i}\n" + ("BUG\n" if buggy else ""))
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", f"commit {i}")
        shas.append(git(path, "rev-parse", "HEAD"))
    return shas


class FakeOracle:
    """Builds = hashing code.c at the commit; a run crashes with probability P where the file
    says BUG (a seeded RNG); INFRA commits fail every run for infrastructure reasons."""

    def __init__(self, p: float = 1.0, seed: int = 1, infra: set[str] = frozenset(),
                 stop_after: int | None = None):
        self.p, self.rng, self.infra = p, random.Random(seed), set(infra)
        self.built: list[str] = []
        self.tested: list[tuple[str, int]] = []
        self.stop_after = stop_after

    def build(self, commit, tree):
        self.built.append(commit)
        text = git(tree, "show", f"{commit}:code.c")
        return Built(hashlib.sha256(text.encode()).hexdigest()[:16], build_s=1.0)

    def test(self, commit, tree, runs):
        if self.stop_after is not None and len(self.tested) >= self.stop_after:
            raise KeyboardInterrupt
        self.tested.append((commit, runs))
        if commit in self.infra:
            return [RunResult.infra("vng exit 255")] * runs
        buggy = "BUG" in git(tree, "show", f"{commit}:code.c")
        return [RunResult.crash(TITLE) if buggy and self.rng.random() < self.p
                else RunResult.clean() for _ in range(runs)]


def run(repo, shas, oracle, tmp_path, good=0, bad=-1, **kw):
    b = bisect.Bisection(repo, shas[good], shas[bad], oracle, tmp_path / "out" / "bisect.json",
                         tmp_path / "work", log=lambda s: None, **kw)
    return b.run()


# --- judge -------------------------------------------------------------------------------

def runs(crash=0, clean=0, infra=0, other=0):
    return ([RunResult.crash(TITLE)] * crash + [RunResult.clean()] * clean
            + [RunResult.infra()] * infra + [RunResult.crash("WARNING in foo")] * other)


@pytest.mark.parametrize("r, want", [
    (runs(crash=10), Verdict.BAD),
    (runs(crash=2, clean=8), Verdict.BAD),           # max(2, 10 // 6) = 2
    (runs(crash=1, clean=9), Verdict.SKIP),          # one crash is never enough
    (runs(crash=2, clean=18), Verdict.SKIP),         # 20 valid runs need 3
    (runs(crash=3, clean=17), Verdict.BAD),
    (runs(clean=10), Verdict.GOOD),
    (runs(clean=5, infra=5), Verdict.GOOD),          # half valid is enough
    (runs(clean=4, infra=6), Verdict.SKIP),          # less is not
    (runs(infra=10), Verdict.SKIP),
    ([], Verdict.SKIP),
])
def test_judge_rules(r, want):
    v = judge(r)
    assert v.verdict is want, v.reason
    assert v.runs == len(r)


def test_judge_counts_and_titles():
    v = judge(runs(crash=3, clean=5, infra=2))
    assert (v.crashes, v.valid, v.infra) == (3, 8, 2)
    assert v.titles == [TITLE] and v.flaky


def test_judge_with_a_title_other_crashes_are_not_valid():
    v = judge(runs(crash=0, clean=4, other=6), title=TITLE)
    assert v.verdict is Verdict.SKIP and v.other == 6 and v.valid == 4
    v = judge(runs(crash=3, clean=7, other=6), title=TITLE)
    assert v.verdict is Verdict.BAD and v.crashes == 3
    # without a title every crash counts
    assert judge(runs(clean=4, other=6)).verdict is Verdict.BAD
    # an alternative title matches
    alt = [RunResult.crash("general protection fault in x", ("bad-access in x",))] * 3
    assert judge(alt, title="bad-access in x").verdict is Verdict.BAD


def test_git_bisect_exit_codes_never_above_127():
    assert bisect.git_bisect_exit(Verdict.GOOD) == 0
    assert bisect.git_bisect_exit(judge(runs(crash=5))) == 1
    assert bisect.git_bisect_exit(Verdict.SKIP) == 125
    assert bisect.git_bisect_exit(None) == 125
    assert bisect.git_bisect_exit(Verdict.BAD, fix=True) == 0
    assert bisect.git_bisect_exit(Verdict.GOOD, fix=True) == 1
    for rc, want in ((0, 0), (1, 1), (2, 125), (3, 125), (125, 125), (255, 125), (-9, 125),
                     (None, 125)):
        assert bisect.git_bisect_exit_from_rc(rc) == want
    assert all(bisect.git_bisect_exit_from_rc(rc) <= 127 for rc in range(-64, 256))


def test_error_probability_formula():
    S = bisect.Step
    steps = [S("a", "", "bad endpoint", "bad", 20, 10, 20),
             S("b", "", "good endpoint", "good", 20, 0, 20),
             S("c", "", "step", "good", 10, 0, 10),
             S("d", "", "step", "good", 10, 0, 10, reused_from="c")]
    p, err = bisect.error_probability(steps)
    assert p == 0.5
    assert err == pytest.approx(1 - (1 - 0.5 ** 20) * (1 - 0.5 ** 10))
    assert bisect.error_probability(steps[:1] + [S("b", "", "s", "good", 10, 0, 10)])[1] \
        == pytest.approx(1 - (1 - 0.5 ** 10))
    deterministic = [S("a", "", "s", "bad", 10, 10, 10), S("b", "", "s", "good", 10, 0, 10)]
    assert bisect.error_probability(deterministic) == (1.0, 0.0)


# --- whole bisections --------------------------------------------------------------------

def test_finds_the_commit_that_introduced_the_bug(tmp_path):
    repo = tmp_path / "repo"
    shas = make_repo(repo, 16, bug_at=7)
    before = git(repo, "for-each-ref")
    o = FakeOracle(p=1.0)
    res = run(repo, shas, o, tmp_path)
    assert res.culprit == shas[7] and res.culprit_subject == "commit 7"
    assert res.error_probability == 0.0 and not res.flaky
    assert [s.kind for s in res.steps[:2]] == ["bad endpoint", "good endpoint"]
    assert [n for _, n in o.tested[:2]] == [20, 20]       # the first commits: 20 runs
    assert all(n == 10 for _, n in o.tested[2:])          # then 10: the bug is not flaky
    # the user's repository: no bisect state, no new refs, HEAD untouched
    assert git(repo, "for-each-ref") == before
    assert not (repo / ".git" / "BISECT_LOG").exists()
    assert git(repo, "rev-parse", "HEAD") == shas[-1]
    state = json.loads((tmp_path / "out" / "bisect.json").read_text())
    assert state["result"]["culprit"] == shas[7]
    assert len(state["steps"]) == len(res.steps)
    assert "first commit that introduced it" in res.report_text()


def test_flaky_bug_doubles_the_runs_and_reports_an_error_probability(tmp_path):
    repo = tmp_path / "repo"
    shas = make_repo(repo, 16, bug_at=9)
    o = FakeOracle(p=0.5, seed=7)
    res = run(repo, shas, o, tmp_path)
    assert res.culprit == shas[9]
    assert res.flaky and 0.2 < res.crash_rate < 0.8
    assert all(n == 20 for _, n in o.tested)               # flaky from the first commit on
    assert 0 < res.error_probability < 1e-4


def test_infra_commits_are_skipped(tmp_path):
    repo = tmp_path / "repo"
    shas = make_repo(repo, 16, bug_at=7)
    o = FakeOracle(p=1.0, infra={shas[i] for i in (3, 4, 5, 8, 11, 12)})
    res = run(repo, shas, o, tmp_path)
    skipped = [s for s in res.steps if s.verdict == "skip"]
    assert skipped and all(s.valid == 0 for s in skipped)
    assert res.culprit == shas[7]


def test_skips_next_to_the_culprit_leave_candidates(tmp_path):
    repo = tmp_path / "repo"
    shas = make_repo(repo, 12, bug_at=6)
    o = FakeOracle(p=1.0, infra={shas[5], shas[6]})
    res = run(repo, shas, o, tmp_path)
    assert res.culprit is None
    assert set(res.candidates) == {shas[6], shas[7]} or shas[6] in res.candidates
    assert "inconclusive" in res.report_text()


def test_fix_mode_finds_the_fixing_commit(tmp_path):
    repo = tmp_path / "repo"
    shas = make_repo(repo, 16, bug_at=0, fix_at=11)
    o = FakeOracle(p=1.0)
    # --bad is the old crashing commit, --good the new fixed one
    res = run(repo, shas, o, tmp_path, good=-1, bad=1, fix=True)
    assert res.culprit == shas[11] and res.fix
    assert "first commit that fixed it" in res.report_text()


def test_resume_after_an_interruption_redoes_no_finished_step(tmp_path):
    repo = tmp_path / "repo"
    shas = make_repo(repo, 16, bug_at=7)
    first = FakeOracle(p=1.0, stop_after=2)
    with pytest.raises(KeyboardInterrupt):
        run(repo, shas, first, tmp_path)
    state = json.loads((tmp_path / "out" / "bisect.json").read_text())
    assert len(state["steps"]) == 2 and "result" not in state
    second = FakeOracle(p=1.0)
    res = run(repo, shas, second, tmp_path)
    assert res.culprit == shas[7]
    done = {c for c, _ in first.tested}
    assert done and not done & {c for c, _ in second.tested}
    assert not done & set(second.built)
    # a finished bisection re-run tests nothing at all
    third = FakeOracle(p=1.0)
    assert run(repo, shas, third, tmp_path).culprit == shas[7]
    assert third.tested == [] and third.built == []


def test_other_arguments_do_not_resume_another_state(tmp_path):
    repo = tmp_path / "repo"
    shas = make_repo(repo, 8, bug_at=4)
    run(repo, shas, FakeOracle(), tmp_path)
    with pytest.raises(InputError) as e:
        run(repo, shas, FakeOracle(), tmp_path, good=1)
    assert "records another bisection" in str(e.value) and e.value.exit_code == 3


def test_same_kernel_reuses_the_verdict(tmp_path):
    repo = tmp_path / "repo"
    # commits 8..11 only touch README: their code.c (the 'kernel') is the same as commit 7's
    shas = make_repo(repo, 16, bug_at=12, same_as_prev=(8, 9, 10, 11))
    o = FakeOracle(p=1.0)
    res = run(repo, shas, o, tmp_path)
    assert res.culprit == shas[12]
    reused = [s for s in res.steps if s.reused_from]
    assert reused, res.table()
    for s in reused:
        orig = next(x for x in res.steps if x.commit == s.reused_from)
        assert s.verdict == orig.verdict and s.kernel_hash == orig.kernel_hash
        assert s.commit not in {c for c, _ in o.tested}
    assert "same kernel as" in res.table()


def test_endpoint_that_does_not_crash_is_an_error_with_counts(tmp_path):
    repo = tmp_path / "repo"
    shas = make_repo(repo, 10, bug_at=None)
    with pytest.raises(bisect.EndpointError) as e:
        run(repo, shas, FakeOracle(), tmp_path)
    msg = str(e.value)
    assert "bad endpoint" in msg and "0 of 20 valid runs crashed" in msg
    assert e.value.exit_code == 3  # the endpoints do not bound the bug as the user said


def test_good_endpoint_that_crashes_is_an_error(tmp_path):
    repo = tmp_path / "repo"
    shas = make_repo(repo, 10, bug_at=0)
    with pytest.raises(bisect.EndpointError) as e:
        run(repo, shas, FakeOracle(), tmp_path, good=2)
    assert "good endpoint" in str(e.value) and "20 of 20 valid runs crashed" in str(e.value)
    assert e.value.exit_code == 3  # the user's --good is wrong: an input error, found by testing it


def test_endpoint_that_cannot_be_tested_is_infra(tmp_path):
    from harness.errors import InfraError

    repo = tmp_path / "repo"
    shas = make_repo(repo, 10, bug_at=3)
    with pytest.raises(InfraError):
        run(repo, shas, FakeOracle(infra={shas[-1]}), tmp_path)


def test_refs_that_are_not_ancestors_are_input_errors_before_any_build(tmp_path):
    repo = tmp_path / "repo"
    shas = make_repo(repo, 8, bug_at=4)
    o = FakeOracle()
    with pytest.raises(InputError) as e:
        run(repo, shas, o, tmp_path, good=-1, bad=0)
    assert "is not an ancestor" in str(e.value) and e.value.exit_code == 3
    # a side branch is not an ancestor either
    git(repo, "checkout", "-q", "-b", "side", shas[2])
    (repo / "code.c").write_text("side\n")
    git(repo, "commit", "-qam", "side")
    side = git(repo, "rev-parse", "HEAD")
    with pytest.raises(InputError):
        bisect.Bisection(repo, side, shas[-1], o, tmp_path / "s.json", tmp_path / "w")
    with pytest.raises(InputError) as e:
        bisect.Bisection(repo, "no-such-ref", shas[-1], o, tmp_path / "s.json", tmp_path / "w")
    assert "--good" in str(e.value)
    with pytest.raises(InputError):  # --fix wants the crashing commit older
        bisect.Bisection(repo, shas[0], shas[-1], o, tmp_path / "s.json", tmp_path / "w", fix=True)
    assert o.built == [] and o.tested == []


def test_a_reused_clone_fetches_commits_made_since(tmp_path):
    repo = tmp_path / "repo"
    shas = make_repo(repo, 8, bug_at=4)
    run(repo, shas, FakeOracle(), tmp_path)
    (repo / "code.c").write_text("version 8\n")  # the bug fixed by a newer commit
    git(repo, "commit", "-qam", "commit 8")
    new = git(repo, "rev-parse", "HEAD")
    b = bisect.Bisection(repo, new, shas[-1], FakeOracle(), tmp_path / "fix.json",
                         tmp_path / "work", fix=True, log=lambda s: None)
    assert b.run().culprit == new
