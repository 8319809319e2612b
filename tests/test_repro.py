"""wqh repro without a VM: compiling, the generated guest module, reading the runs back."""

import subprocess
import sys
from pathlib import Path

from harness import repro
from harness.results import Report, RunSummary, TestResult


def test_bad_c_is_exit_3_naming_the_file_and_leaves_no_output(tmp_path, wqh_cmd):
    bad = tmp_path / "bad.c"
    bad.write_text("int main( {\n")
    out = tmp_path / "out"
    r = subprocess.run(wqh_cmd + ["repro", str(bad), "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 3
    assert f"{bad}: does not compile" in r.stderr and "bad.c:1:" in r.stderr
    assert not out.exists()


def test_the_generated_module_runs_each_run_and_ends_a_looping_one(tmp_path):
    loop = tmp_path / "loop.c"
    loop.write_text("int main(void) { for (;;) ; }\n")
    binary = repro.compile_c(loop, tmp_path / "loop")
    case = tmp_path / "test_case.py"
    case.write_text(repro._CASE.format(binary=str(binary), repeat=2, timeout=0.5))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", str(case)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "run 0: exit -9" in r.stdout and "run 1: exit -9" in r.stdout  # killed at the timeout
    assert "2 passed" in r.stdout


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


def test_verify_needs_exactly_one_of_fix_and_bug(tmp_path, wqh_cmd):
    c = tmp_path / "r.c"
    c.write_text("int main(void) { return 0; }\n")
    r = subprocess.run(wqh_cmd + ["verify", str(c)], capture_output=True, text=True)
    assert r.returncode == 3 and "--fix PATCH" in r.stderr


def test_a_rate_counts_runs_with_any_of_the_titles_once():
    runs = [repro.Run(0, True, "xfail", ["A", "B"]), repro.Run(1, True, "xfail", ["noise"]),
            repro.Run(2, False, "xpass", []), repro.Run(3, True, "xfail", ["B"])]
    o = repro.Outcome(3, 4, ["A", "B", "noise"], False, runs)
    assert (o.rate_of("A"), o.rate_of("A", "B"), o.rate_of("C")) == (1, 2, 0)


DATA = Path(__file__).resolve().parent / "data" / "reports"


def run_from_log(name: str) -> repro.Run:
    from harness import report
    reps = report.merge(report.parse_file(DATA / name))
    return repro.Run(0, True, "xfail", [r.title for r in reps], [r.text for r in reps])


def test_a_signature_separates_the_bugs_race_from_the_same_title_on_the_fixed_tree():
    """Real KCSAN logs: 2ed147f015 re-introduced (plain head store) and fixed (release store)
    both give 'data-race in pipe_read / post_one_notification'; the index's signature counts
    only the first."""
    from harness import wall
    (bug,) = [b for b in wall.load_index() if b.fix == "2ed147f015"]
    base = repro.Outcome(1, 1, [], False, [run_from_log("kcsan-plain-head-store.log")])
    fixed = repro.Outcome(1, 1, [], False, [run_from_log("kcsan-marked-head-store.log")])
    assert base.rate_of(bug.expected) == fixed.rate_of(bug.expected) == 1  # the title alone
    assert base.rate_of(bug.expected, signature=bug.signature) == 1
    assert fixed.rate_of(bug.expected, signature=bug.signature) == 0
    # A signature on another title's text does not count for the expected one.
    assert base.rate_of("KCSAN: data-race in ktime_get_real_seconds / timekeeping_advance",
                        signature=bug.signature) == 0
