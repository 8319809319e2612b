"""The syzbot user's inputs on the command line: a full config, a report directory. Every bad
one exits 3 naming what is wrong, before any unpack, merge, build or boot (nothing written)."""

import subprocess
import sys
from pathlib import Path

import pytest

from harness import repro
from harness.paths import REPO

DATA = REPO / "tests" / "data"
REPORTS = DATA / "syzreport"


def wqh(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


@pytest.mark.parametrize("cmd", ["repro", "verify"])
def test_a_report_with_only_a_syz_reproducer_says_what_it_would_need(cmd, tmp_path):
    extra = ["--fix", str(next((REPO / "scenarios" / "regressions" / "patches").glob("*.patch")))] if cmd == "verify" else []
    r = wqh(cmd, "--report", str(REPORTS / "syz-only"), "--out", str(tmp_path / "o"), *extra)
    assert r.returncode == 3, r.stderr
    assert "syz-execprog" in r.stderr and "repro.c" in r.stderr
    assert not (tmp_path / "o").exists()


def test_a_reproducer_and_a_report_together_are_refused(tmp_path):
    r = wqh("repro", str(REPORTS / "cve-2022-0995" / "repro.c"), "--report",
            str(REPORTS / "cve-2022-0995"), "--out", str(tmp_path / "o"))
    assert r.returncode == 3 and "FILE/--report" in r.stderr


def test_no_reproducer_at_all_is_refused(tmp_path):
    r = wqh("repro", "--out", str(tmp_path / "o"))
    assert r.returncode == 3 and "needs a reproducer" in r.stderr


@pytest.mark.parametrize("cmd", [["run", "scenarios/smoke.yaml"], ["build"]])
def test_a_config_file_that_is_not_a_config_names_file_and_line(cmd, tmp_path):
    bad = DATA / "fullconfig" / "not-a-config.c"
    r = wqh(*cmd, "--config-file", str(bad), cwd=REPO)
    assert r.returncode == 3, r.stderr
    assert f"{bad}:" in r.stderr and "--config-file" in r.stderr


def test_a_fragment_given_as_a_full_config_says_use_config(tmp_path):
    frag = DATA / "fullconfig" / "fragment.config"
    r = wqh("repro", str(REPORTS / "cve-2022-0995" / "repro.c"), "--config-file", str(frag),
            "--out", str(tmp_path / "o"))
    assert r.returncode == 3 and "--config" in r.stderr


def test_a_full_config_and_fragments_together_are_refused(tmp_path):
    r = wqh("build", "--config-file", str(REPORTS / "cve-2022-0995" / "config"), "-f", "kasan")
    assert r.returncode == 3 and "--fragment and --config-file" in r.stderr


def test_a_scenario_names_its_full_config_and_its_errors_by_line(tmp_path):
    (tmp_path / "not.config").write_text("hello world\n")
    scen = tmp_path / "s.yaml"
    scen.write_text("name: s\nkernel:\n  config: not.config\ntests:\n  - "
                    f"{REPO}/guest-tests/test_smoke.py\n")
    r = wqh("list", str(scen))
    assert r.returncode == 3
    assert f"{scen}:3" in r.stderr and "kernel.config" in r.stderr
    scen.write_text(f"name: s\nkernel:\n  config: {REPORTS / 'cve-2022-0995' / 'config'}\n"
                    f"  fragments: [kasan]\ntests:\n  - {REPO}/guest-tests/test_smoke.py\n")
    r = wqh("list", str(scen))
    assert r.returncode == 3 and "full config and fragments together" in r.stderr


def test_an_i386_report_compiles_its_reproducer_with_m32():
    from harness import syzreport

    class A:
        syzbot = syzreport.load(REPORTS / "i386")
    assert repro.cflags_of(A) == ("-m32",)
    A.syzbot = syzreport.load(REPORTS / "cve-2022-0995")
    assert repro.cflags_of(A) == ()


@pytest.mark.parametrize("k, n", [(0, 10), (10, 10), (3, 10), (1, 1), (50, 100)])
def test_the_rate_interval_holds_the_rate_and_stays_in_0_1(k, n):
    lo, hi = repro.wilson(k, n)
    assert 0.0 <= lo <= k / n <= hi <= 1.0
    assert hi - lo < 1.0
    # More runs, the same rate: a narrower interval.
    lo2, hi2 = repro.wilson(k * 10, n * 10)
    assert hi2 - lo2 < hi - lo


def _repo(tmp_path, n=4) -> Path:
    repo = tmp_path / "linux"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git[:3] + ["init", "-q"], check=True)
    for i in range(n):
        (repo / "f").write_text(f"{i}\n")
        subprocess.run(git + ["add", "f"], check=True)
        subprocess.run(git + ["commit", "-q", "-m", f"c{i}"], check=True)
    return repo


@pytest.mark.parametrize("refs, want", [
    (["--good", "HEAD", "--bad", "HEAD~3"], "is not an ancestor"),
    (["--good", "nosuchref", "--bad", "HEAD"], "--good"),
    (["--good", "HEAD", "--bad", "HEAD"], "same commit"),
    (["--good", "HEAD~3", "--bad", "HEAD", "--fix"], "with --fix the crashing commit is the older one"),
])
def test_bisect_refuses_refs_that_cannot_bound_a_bisection_before_any_work(tmp_path, refs, want):
    repo = _repo(tmp_path)
    r = wqh("bisect", "--kernel", str(repo), *refs, str(REPORTS / "cve-2022-0995" / "repro.c"),
            "--out", str(tmp_path / "o"))
    assert r.returncode == 3, r.stderr
    assert want in r.stderr
    assert not (tmp_path / "o").exists()


def test_bisect_needs_a_git_history_and_exactly_one_oracle(tmp_path):
    r = wqh("bisect", "--kernel", str(tmp_path), "--good", "a", "--bad", "b", "--out", str(tmp_path / "o"))
    assert r.returncode == 3
    assert "is not a git repository" in r.stderr and "needs one oracle" in r.stderr
