"""The regression wall's index, its fixed-tree twins and the cells of its table."""

import subprocess

import pytest

from harness import scenario, wall
from harness.errors import InputError
from harness.paths import SCENARIOS
from harness.report import Report
from harness.results import TestResult


def test_the_index_names_existing_scenarios_patches_and_reproducers():
    bugs = wall.load_index()
    names = {s.name for s in scenario.load_all([str(SCENARIOS / "regressions")])}
    det = [b for b in bugs if b.kind == "deterministic"]
    assert len(det) >= 13
    for b in det:
        assert b.scenarios and set(b.scenarios) <= names, b.fix
    for b in bugs:
        if b.kind == "racy":
            assert b.patch.is_file() and b.reproducer.endswith(".c")
    assert len({b.fix for b in bugs}) == len(bugs)


@pytest.mark.parametrize("text, where, key", [
    ("bugs:\n  - fix: x\n    bug: y\n    ids: z\n    colour: red\n", ":5:", "bugs[0].colour"),
    ("bugs:\n  - fix: x\n    bug: y\n    ids: z\n    kind: flaky\n    why: w\n", ":5:", "bugs[0].kind"),
    ("bugs:\n  - fix: x\n    bug: y\n    ids: z\n    kind: racy\n", ":2:", "bugs[0].reproducer"),
    ("bugs:\n  - fix: x\n    ids: z\n", ":2:", "bugs[0].bug"),
    ("bugs: [\n", ":2:", None),
    ("bugs:\n  - fix: x\n    bug: y\n    ids: z\n    kind: not reproduced\n    why: w\n"
     "    signature: 'write to ('\n", ":7:", "bugs[0].signature"),
])
def test_a_bad_index_names_file_line_and_key(tmp_path, text, where, key):
    f = tmp_path / "bugs.yaml"
    f.write_text(text)
    with pytest.raises(InputError) as e:
        wall.load_index(f)
    assert e.value.exit_code == 3
    assert f"{f}{where}" in str(e.value)
    if key:
        assert f"key '{key}'" in str(e.value)


def test_wall_with_a_bad_index_exits_3_and_writes_nothing(tmp_path, wqh_cmd):
    f = tmp_path / "bugs.yaml"
    f.write_text("bugs:\n  - fix: x\n    bug: y\n    ids: z\n    kind: deterministic\n")
    out = tmp_path / "out"
    r = subprocess.run(wqh_cmd + ["wall", "--index", str(f), "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 3, r.stderr
    assert f"{f}:2: key 'bugs[0].scenarios'" in r.stderr
    assert not out.exists()


def test_the_fixed_twin_runs_the_same_tests_unpatched_and_expects_a_clean_pass():
    s = scenario.load(SCENARIOS / "regressions" / "c993ee0f9f-filter-overflow.yaml")
    t = wall.fixed_twin(s)
    assert t.name == s.name + "@fixed"
    assert t.kernel.fragments == s.kernel.fragments and t.kernel.patches == ()
    assert [x.id for x in t.tests] == [x.id for x in s.tests]
    assert {x.expect for x in t.tests} == {"pass"} and {x.title for x in t.tests} == {None}
    assert s.tests[0].expect == "crash"  # the original is untouched
    leak = scenario.load(SCENARIOS / "regressions" / "b490207017-page-array-leak.yaml")
    assert leak.leak and wall.fixed_twin(leak).leak is None


def _r(test, outcome, expected="pass", titles=()):
    return TestResult("s", test, "k", outcome, expected, reports=[Report(t, "KASAN") for t in titles])


def test_cells_say_caught_only_when_every_expectation_held():
    title = "KASAN: slab-out-of-bounds Write in watch_queue_set_filter"
    cell, ok = wall.describe_reintroduced([_r("a::t", "xfail", "crash", [title] * 2)])
    assert ok and cell == f"caught: {title} (x2)"
    cell, ok = wall.describe_reintroduced([_r("a::t1", "fail", "fail"), _r("a::t2", "fail", "fail")])
    assert ok and cell == "caught: 2/2 tests fail"
    cell, ok = wall.describe_reintroduced([_r("a::t1", "fail", "fail"), _r("a::t2", "pass", "fail")])
    assert not ok and cell == "MISSED: t2 pass"
    assert wall.describe_reintroduced([]) == ("not run", False)


def test_fixed_cells_need_a_pass_and_no_report_anywhere():
    assert wall.describe_fixed([_r("a::t", "pass"), _r("wqh:kmemleak", "pass")]) == \
        ("pass (1 tests), no report, no leak", True)
    cell, ok = wall.describe_fixed([_r("a::t", "pass"), _r("wqh:kmemleak", "fail", "pass",
                                                           ["memory leak in x"])])
    assert not ok and cell == "FAIL: wqh:kmemleak fail (memory leak in x)"
    assert not wall.describe_fixed([_r("a::t", "skip")])[1]


def test_the_table_has_a_row_per_bug_with_why_for_the_unreproduced():
    bugs = wall.load_index()
    text = wall.table(bugs)
    lines = text.splitlines()
    assert len(lines) == len(bugs) + 2
    for b in bugs:
        assert any(f"| {b.fix} |" in line for line in lines)
    nr = [b for b in bugs if b.kind == "not reproduced"]
    assert all(any("not reproduced: " + b.why in line for line in lines) for b in nr)
    assert "| fixed tree |" in lines[0]
    assert "| fixed tree (6.12.118) |" in wall.table(bugs, "6.12.118").splitlines()[0]  # the tree's own


def test_wall_is_a_subcommand(wqh_cmd):
    r = subprocess.run(wqh_cmd + ["wall", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--racy" in r.stdout


def test_only_an_unknown_fix_is_exit_3(tmp_path, wqh_cmd):
    r = subprocess.run(wqh_cmd + ["wall", "--only", "deadbeef", "--out", str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert r.returncode == 3 and "--only deadbeef: no such fix" in r.stderr
    assert not (tmp_path / "o").exists()
