"""wqh repro without a VM: compiling, the generated guest module, reading the runs back."""

import subprocess
import sys
from pathlib import Path

import pytest

from harness import report, repro, runner
from harness.report import Report
from harness.results import RunSummary, TestResult


def test_bad_c_is_exit_3_naming_the_file_and_leaves_no_output(tmp_path, wqh_cmd):
    bad = tmp_path / "bad.c"
    bad.write_text("int main( {\n")
    out = tmp_path / "out"
    r = subprocess.run(wqh_cmd + ["repro", str(bad), "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 3
    assert f"{bad}:1: key 'file': does not compile" in r.stderr and "bad.c:1:" in r.stderr
    assert not out.exists()


def test_the_generated_module_runs_each_run_and_ends_a_looping_one(tmp_path):
    loop = tmp_path / "loop.c"
    loop.write_text("int main(void) { for (;;) ; }\n")
    binary = repro.compile_c(loop, tmp_path / "loop")
    (case, n), = repro.write_cases(tmp_path, binary, 2, 0.5, vms=1)
    assert n == 2 and case.name == "test_repro_case.py"
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", str(case)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "run 0: exit -9" in r.stdout and "run 1: exit -9" in r.stdout  # killed at the timeout
    assert "2 passed" in r.stdout


def test_the_cores_decide_how_many_vms_share_the_runs():
    assert [repro.vms_for(2, n) for n in (1, 2, 3, 4, 8, 64)] == [1, 1, 1, 2, 4, 32]
    assert repro.vms_for(1, 2) == 2


def test_runs_are_shared_over_the_vms_each_with_its_own_boot(tmp_path):
    assert [list(r) for r in repro.shares(5, 2)] == [[0, 1], [2, 3, 4]]
    assert [len(r) for r in repro.shares(20, 3)] == [6, 7, 7]
    assert repro.shares(1, 4) == [range(0, 1)]  # never an empty VM
    binary = tmp_path / "repro"
    binary.write_text("")
    scs = repro.scenarios_for(tmp_path, binary, 5, 10.0, repro.DEFAULT_FRAGMENTS, (), vms=2)
    assert [s.name for s in scs] == ["repro-1", "repro-2"]
    # Same kernel, one boot each (the runner groups by kernel, then by VM).
    from harness import runner
    (g,) = runner.group_kernels(scs)
    assert len(runner.vm_shapes(g)) == 2
    # Global run numbers: the second VM's runs are test_run[2..4].
    text = (tmp_path / "test_repro_case2.py").read_text()
    assert "range(2, 5)" in text and "runs 2-4" in text
    assert [s.timeouts.total for s in scs] == [(10 + 15) * 2 + 60, (10 + 15) * 3 + 60]


def test_a_run_reproduces_when_the_kernel_reported_during_it(tmp_path):
    case = tmp_path / "test_repro_case.py"
    rep = Report(title="KASAN: slab-out-of-bounds Write in watch_queue_set_filter", type="KASAN")
    s = RunSummary([TestResult("repro", f"{case}::test_run[1]", "k", "xfail", "crash", reports=[rep]),
                    TestResult("repro", f"{case}::test_run[0]", "k", "xpass", "crash"),
                    TestResult("repro", "wqh:kmemleak", "k", "pass")], 0, 0, tmp_path)
    runs = repro.runs_of(s)
    assert [(r.index, r.reproduced, r.titles) for r in runs] == [
        (0, False, []), (1, True, [rep.title])]
    sc = repro.scenario_for(case, 2, 10.0, repro.DEFAULT_FRAGMENTS, ())
    assert sc.tests[0].expect == "crash" and sc.tests[0].node == f"{case}::test_run"
    assert sc.timeouts.no_output >= 70  # a looping reproducer is silent by design


def test_verify_states_the_rates_and_the_confidence():
    base = repro.Outcome(3, 10, ["KASAN: x"], False)
    text, ok = repro.statement(base, repro.Outcome(0, 10, [], False))
    assert ok and "(3/10: KASAN: x)" in text and "(0/10)" in text
    assert "confidence 0.9718" in text  # 1 - 0.7**10
    assert repro.statement(base, repro.Outcome(1, 10, ["KASAN: x"], False))[1] is False
    assert repro.statement(repro.Outcome(0, 10, [], False), repro.Outcome(0, 10, [], False))[1] is False


def test_verify_needs_a_fix_or_a_bug(tmp_path, wqh_cmd):
    c = tmp_path / "r.c"
    c.write_text("int main(void) { return 0; }\n")
    r = subprocess.run(wqh_cmd + ["verify", str(c)], capture_output=True, text=True)
    assert r.returncode == 3 and "--fix PATCH" in r.stderr


def test_verify_checks_the_fix_on_top_of_the_bug(tmp_path, wqh_cmd):
    """--bug B --fix F: F must apply to the tree + B (it need not apply to the tree itself)."""
    tree = tmp_path / "linux"
    (tree / "kernel").mkdir(parents=True)
    (tree / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 0\n")
    good = "int check(int n)\n{\n\tif (n > 16)\n\t\treturn -1;\n\treturn 0;\n}\n"
    bad = good.replace("n > 16", "n > 17")
    (tree / "kernel" / "watch_queue.c").write_text(good)
    a, b = tmp_path / "a" / "kernel", tmp_path / "b" / "kernel"
    a.mkdir(parents=True), b.mkdir(parents=True)
    (a / "watch_queue.c").write_text(good), (b / "watch_queue.c").write_text(bad)

    def diff(x, y, name):
        d = subprocess.run(["diff", "-u", f"{x}/kernel/watch_queue.c", f"{y}/kernel/watch_queue.c"],
                           cwd=tmp_path, capture_output=True, text=True).stdout
        out = tmp_path / name
        out.write_text(d)
        return out
    bug, fix = diff("a", "b", "bug.patch"), diff("b", "a", "fix.patch")
    c = tmp_path / "r.c"
    c.write_text("int main(void) { return 0; }\n")
    from harness import cli
    from harness.errors import WqhError

    def check(*opts):
        """The validation phase of `wqh verify` alone (the real parser, no build)."""
        a = cli.make_parser().parse_args(["verify", str(c), "--kernel", str(tree), *opts])
        try:
            cli._check_repro(a, [("--fix", a.fix), ("--bug", a.bug)], verify=True)
        except WqhError as e:
            return str(e)
        return ""
    assert check("--bug", str(bug), "--fix", str(fix)) == ""
    err = check("--fix", str(fix))
    assert "does not apply" in err and "--fix" in err and "fix.patch" in err
    assert check("--bug", str(bug)) == ""
    assert "does not apply" in check("--fix", str(bug), "--bug", str(bug))  # the bug twice


def test_a_rate_counts_runs_with_any_of_the_titles_once():
    runs = [repro.Run(0, True, "xfail", ["A", "B"]), repro.Run(1, True, "xfail", ["noise"]),
            repro.Run(2, False, "xpass", []), repro.Run(3, True, "xfail", ["B"])]
    o = repro.Outcome(3, 4, ["A", "B", "noise"], False, runs)
    assert (o.rate_of("A"), o.rate_of("A", "B"), o.rate_of("C")) == (1, 2, 0)
    uaf = "KASAN: use-after-free Read in post_one_notification"  # as 6.1 titles it; 6.12:
    runs = [repro.Run(0, True, "xfail", [uaf.replace("use-after", "slab-use-after")])]
    assert repro.Outcome(1, 1, [], False, runs).rate_of(uaf) == 1


DATA = Path(__file__).resolve().parent / "data" / "reports"


def run_from_log(name: str) -> repro.Run:
    from harness import report
    reps = report.parse_file(DATA / name)
    return repro.Run(0, True, "xfail", sorted({r.title for r in reps}),
                     [(r.title, r.text) for r in reps])


@pytest.mark.parametrize("fix, bug_log, fixed_log", [
    ("2ed147f015", "kcsan-plain-head-store.log", "kcsan-marked-head-store.log"),
    ("note-pool", "kcsan-plain-nr-notes-store.log", "kcsan-release-nr-notes-store.log"),
])
def test_a_signature_separates_the_bugs_race_from_the_same_title_on_the_fixed_tree(
        fix, bug_log, fixed_log):
    """Real KCSAN logs of one run each, re-introduced and fixed: both trees give the index's
    expected title (6.1 keeps other plain accesses to the same structures); the signature
    counts only the access the fix changed."""
    from harness import wall
    (bug,) = [b for b in wall.load_index() if b.fix == fix]
    base = repro.Outcome(1, 1, [], False, [run_from_log(bug_log)])
    fixed = repro.Outcome(1, 1, [], False, [run_from_log(fixed_log)])
    assert base.rate_of(bug.expected) == fixed.rate_of(bug.expected) == 1  # the title alone
    assert base.rate_of(bug.expected, signature=bug.signature) == 1
    assert fixed.rate_of(bug.expected, signature=bug.signature) == 0
    # A signature on another title's text does not count for the expected one.
    assert base.rate_of("KCSAN: data-race in ktime_get_real_seconds / timekeeping_advance",
                        signature=bug.signature) == 0


def test_runs_get_every_report_of_their_console_slice_unmerged(tmp_path):
    """The results merge repeats of a title; a run's reports come from its console slice."""
    vm = tmp_path / "vm1-x"
    vm.mkdir()
    log = (DATA / "kcsan-plain-nr-notes-store.log").read_text()
    runner.write_reports(vm / "reports.json", report.parse_text(log))  # as the runner does, once
    owner = next(line.split("wqh: begin ", 1)[1].rsplit(" .", 1)[0]
                 for line in log.splitlines() if "wqh: begin " in line)
    rep = Report(title="KCSAN: data-race in post_one_notification / watch_queue_set_size",
                 type="KCSAN", count=5)
    s = RunSummary([TestResult("repro", owner, "k", "xfail", "crash", reports=[rep], vm="vm1-x")],
                   0, 0, tmp_path)
    (run,) = repro.runs_of(s)
    mine = [t for t, _ in run.reports if t == rep.title]
    assert len(mine) == 5 and len(run.reports) == 24
    assert "reports" not in repro.run_json(run) and repro.run_json(run)["reports_total"] == 24
