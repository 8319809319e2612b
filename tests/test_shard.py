"""Shards: the plan (stable, balanced, one kernel per shard) and the merge of their results."""

import json
import threading
import time
from pathlib import Path

import pytest

from harness import results, runner, scenario, shard
from harness.errors import InputError
from harness.paths import GUEST_TESTS, SCENARIOS
from harness.results import Outcome, RunSummary, TestResult


def _scenarios():
    return scenario.load_all([str(SCENARIOS)])


def _write_scenarios(d: Path, n: int) -> list:
    """N scenarios on N different kernels (a fragment each), with 1..N tests."""
    ids = [f"guest-tests/{f}" for f in sorted(p.name for p in GUEST_TESTS.glob("test_*.py"))]
    files = []
    for i in range(n):
        frag = d / f"f{i}.config"
        frag.write_text(f"CONFIG_LOG_BUF_SHIFT={14 + i}\n")
        tests = "\n".join(f"  - {ids[j]}" for j in range(i + 1))
        f = d / f"s{i}.yaml"
        f.write_text(f"name: s{i}\nkernel:\n  fragments: [watch-queue, {frag}]\ntests:\n{tests}\n")
        files.append(f)
    return scenario.load_all([str(f) for f in files])


@pytest.mark.parametrize("text", ["0/2", "3/2", "1", "a/b", "1/0", "-1/2", ""])
def test_a_bad_shard_spec_is_an_input_error_naming_the_option(text):
    with pytest.raises(InputError) as e:
        shard.parse_spec(text)
    assert e.value.key == "--shard" and "CI_NODE_INDEX" in e.value.hint


def test_every_group_is_on_exactly_one_shard_and_kernels_are_not_split():
    scs = _scenarios()
    for n in (1, 2, 3, 7):
        p = shard.plan(scs, n)
        got = [s.name for k in range(1, n + 1) for s in p.scenarios(k)]
        assert sorted(got) == sorted(s.name for s in scs)
        for k in range(1, n + 1):
            mine = {shard.group_of(s) for s in p.scenarios(k)}
            others = {shard.group_of(s) for j in range(1, n + 1) if j != k for s in p.scenarios(j)}
            assert not mine & others, "a kernel built by two shards"


def test_the_plan_depends_only_on_its_inputs(tmp_path):
    scs = _write_scenarios(tmp_path, 5)
    a = shard.plan(scs, 3)
    b = shard.plan(list(reversed(scs)), 3)
    assert a.assignment == b.assignment and a.hash == b.hash
    assert shard.plan(scs, 2).hash != a.hash


def test_groups_are_balanced_longest_first(tmp_path):
    scs = _write_scenarios(tmp_path, 6)  # weights 1..6 by test count: 21 in all
    p = shard.plan(scs, 2)
    loads = sorted(p.load(k) for k in (1, 2))
    assert loads == [10.0, 11.0], loads  # LPT: 6+3+1 / 5+4+2 (or so): never worse than 1 apart here
    assert p.by == "test counts"


def test_recorded_durations_outweigh_test_counts(tmp_path):
    scs = _write_scenarios(tmp_path, 3)  # s2 has the most tests
    prev = tmp_path / "results.json"
    prev.write_text(json.dumps({"tests": [
        {"scenario": s.name, "test": t.id + "::test_a[x]", "duration_s": 500.0 if s.name == "s0" else 1.0}
        for s in scs for t in s.tests]}))
    d = shard.durations_from(tmp_path)
    p = shard.plan(scs, 2, d)
    assert p.by == "durations"
    (heavy,) = [g for g in p.groups if [s.name for s in g.scenarios] == ["s0"]]
    assert [s.name for s in p.scenarios(p.assignment[heavy.id])] == ["s0"]  # alone on its shard


def test_a_durations_file_that_is_not_results_is_an_input_error(tmp_path):
    f = tmp_path / "x.json"
    f.write_text("[1, 2]")
    with pytest.raises(InputError) as e:
        shard.durations_from(f)
    assert e.value.key == "--durations" and str(f) in str(e.value)


# --- merge ---------------------------------------------------------------------------------


def _result(scen, test, outcome, expected="pass", vm="vm1-aaaa"):
    return TestResult(scenario=scen, test=test, kernel="k", outcome=outcome, expected=expected,
                      duration_s=1.0, vm=vm)


def _shard_dirs(tmp_path, outcomes: dict[str, str], n=2):
    """Write N shard result directories of the plan of _write_scenarios, with OUTCOMES by scenario."""
    scs = _write_scenarios(tmp_path, 4)
    p = shard.plan(scs, n)
    dirs = []
    for k in range(1, n + 1):
        d = tmp_path / f"shard{k}"
        rs = [_result(s.name, t.id, outcomes.get(s.name, "pass"), vm=f"vm{k}-{s.name}")
              for s in p.scenarios(k) for t in s.tests]
        summ = RunSummary(rs, time.time(), time.time() + 5, d, shard=p.describe(k))
        results.write_all(summ)
        for r in rs:
            (d / r.vm).mkdir(exist_ok=True)
            (d / r.vm / "console.log").write_text(f"console of {r.vm}\n")
        dirs.append(d)
    return dirs, scs


def _unsharded_exit(scs, outcomes):
    rs = [_result(s.name, t.id, outcomes.get(s.name, "pass")) for s in scs for t in s.tests]
    return RunSummary(rs, 0, 1, Path("/nonexistent")).exit_code()


@pytest.mark.parametrize("outcomes", [{}, {"s1": "fail"}, {"s3": "infra-error"}, {"s0": "skip"}])
def test_merge_gives_every_test_and_the_unsharded_exit_code(tmp_path, outcomes):
    dirs, scs = _shard_dirs(tmp_path, outcomes)
    parts = shard.check_parts(dirs)
    out = tmp_path / "merged"
    m = shard.merge(parts, out)
    results.write_all(m)
    got = sorted((r.scenario, r.test, r.outcome) for r in m.results)
    want = sorted((s.name, t.id, outcomes.get(s.name, "pass")) for s in scs for t in s.tests)
    assert got == want
    assert m.exit_code() == _unsharded_exit(scs, outcomes)
    doc = json.loads((out / "results.json").read_text())
    assert doc["exit_code"] == m.exit_code() and len(doc["tests"]) == len(want)
    # Artifacts of every shard's VMs are in the merged directory (linked, same content).
    for r in m.results:
        assert (out / r.vm / "console.log").read_text() == f"console of {r.vm}\n"


def test_a_missing_shard_is_named_with_its_scenarios(tmp_path):
    dirs, scs = _shard_dirs(tmp_path, {})
    with pytest.raises(InputError) as e:
        shard.check_parts(dirs[:1])
    doc = json.loads((dirs[1] / "results.json").read_text())
    for name in (n for g in doc["shard"]["groups"].values() if g["shard"] == 2 for n in g["scenarios"]):
        assert name in str(e.value)
    assert "shard 2/2 is missing" in str(e.value)


def test_a_shard_given_twice_is_reported(tmp_path):
    dirs, _ = _shard_dirs(tmp_path, {})
    with pytest.raises(InputError, match="shard 1/2 given twice"):
        shard.check_parts([dirs[0], dirs[0], dirs[1]])


def test_shards_of_different_plans_do_not_merge(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, _ = _shard_dirs(tmp_path / "a", {}, n=2)
    b, _ = _shard_dirs(tmp_path / "b", {}, n=3)
    with pytest.raises(InputError, match="different plans"):
        shard.check_parts([a[0], b[1]])


def test_unsharded_results_merge_unless_they_overlap(tmp_path):
    for name, scen in (("a", "x"), ("b", "y"), ("c", "x")):
        results.write_all(RunSummary([_result(scen, "t1", "pass")], 0, 1, tmp_path / name))
    assert len(shard.merge(shard.check_parts([tmp_path / "a", tmp_path / "b"]),
                           tmp_path / "m").results) == 2
    with pytest.raises(InputError, match="in both"):
        shard.check_parts([tmp_path / "a", tmp_path / "c"])


def test_a_directory_without_results_is_an_input_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a wqh results file"):
        shard.check_parts([tmp_path / "empty"])


# --- the runner's overlap of builds and boots ------------------------------------------------


def test_only_one_vm_runs_while_a_kernel_builds():
    slots = runner.Slots(2)
    slots.set_building(True)
    peak, busy, lock = [0], [0], threading.Lock()
    overlaps = []

    def job():
        with slots.vm() as overlap:
            overlaps.append(overlap)
            with lock:
                busy[0] += 1
                peak[0] = max(peak[0], busy[0])
            time.sleep(0.05)
            with lock:
                busy[0] -= 1

    ts = [threading.Thread(target=job) for _ in range(3)]
    for t in ts:
        t.start()
    time.sleep(0.02)
    assert peak[0] == 1
    slots.set_building(False)
    for t in ts:
        t.join(5)
    assert overlaps[0] is True and peak[0] <= 2


def test_a_vms_verdict_line_names_the_unexpected():
    rs = [_result("s", "a/test_x.py::t1", "pass"), _result("s", "a/test_x.py::t2", "fail"),
          _result("s", "a/test_x.py::t3", Outcome.FLAKY)]
    line = runner.verdict_line(rs)
    assert "1 fail" in line and "1 pass" in line and "1 flaky" in line
    assert "test_x.py::t2" in line and "t1" not in line.split("unexpected")[1]
