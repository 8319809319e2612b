"""gate: two results.json documents, failures sorted into new / persisting / fixed; exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness import gate, results
from harness.errors import EXIT_FAIL, EXIT_INFRA, EXIT_INPUT, EXIT_OK, InputError
from harness.report import Report
from harness.results import RunSummary, TestResult

DATA = Path(__file__).resolve().parent / "data" / "gate"
OLD = "git:1111111111111111111111111111111111111111+0123456789abcdef"
NEW = "git:2222222222222222222222222222222222222222+fedcba9876543210"
D61 = "debian:linux-source-6.1:6.1.158-1"
D612 = "debian:linux-source-6.12:6.12.9-1~bpo12+1"
T = "guest-tests/test_smoke.py::"


def R(test, outcome, expected="pass", kernel=OLD, titles=(), scenario="functional", waived=""):
    return TestResult(scenario=scenario, test=T + test if "::" not in test else test,
                      kernel=kernel, outcome=outcome, expected=expected, waived=waived,
                      reports=[Report(t, "KASAN") for t in titles], message=f"{outcome} here")


def doc(rs, strict=False, interrupted=None, tmp=Path("/tmp/wqh-x")):
    return json.loads(json.dumps(results.to_json(
        RunSummary(rs, 100.0, 160.0, tmp, strict=strict, interrupted=interrupted))))


def key(items):
    return sorted(i.test.split("::")[-1] for i in items)


def test_source_drops_the_config_hash_only():
    assert gate.source_of(OLD) == "git:" + "1" * 40
    assert gate.source_of(D612 + "+0123456789abcdef") == D612  # '+' inside the version stays
    assert gate.source_of("") == ""


def _series():
    base = [R("a", "pass"), R("b", "fail"), R("c", "crash", titles=["KASAN: X in f"]),
            R("d", "pass"), R("e", "crash", titles=["KASAN: Y in g"]), R("f", "pass"),
            R("g", "fail"), R("h", "infra-error"), R("k", "xfail", expected="crash",
                                                    titles=["KASAN: K in k"])]
    new = [R("a", "crash", kernel=NEW, titles=["KASAN: A in a"]), R("b", "pass", kernel=NEW),
           R("c", "crash", kernel=NEW, titles=["KASAN: X in f"]), R("d", "pass", kernel=NEW),
           R("e", "crash", kernel=NEW, titles=["KASAN: Z in g"]), R("i", "pass", kernel=NEW),
           R("j", "fail", kernel=NEW), R("h", "fail", kernel=NEW),
           R("k", "xpass", expected="crash", kernel=NEW)]
    return base, new


def test_a_patch_series_against_its_base():
    base, new = _series()
    g = gate.compare(doc(base), doc(new))
    # Computed from the two lists: failing = not as expected.
    bfail = {r.test for r in base if not r.as_expected}
    nfail = {r.test for r in new if not r.as_expected}
    bids, nids = {r.test for r in base}, {r.test for r in new}
    assert {T + t for t in key(g.new)} == {t for t in nfail if t not in bfail or
                                           t in {r.test for r in base if r.outcome == "infra-error"}}
    assert key(g.new) == ["a", "h", "j", "k"]
    assert key(g.persisting) == ["c", "e"]
    assert key(g.fixed) == ["b"]
    assert {T + t for t in key(g.appeared)} == nids - bids
    assert {T + t for t in key(g.disappeared)} == bids - nids
    assert g.unchanged == 1  # d
    assert g.exit_code() == EXIT_FAIL
    assert g.kernels == [{"baseline": gate.source_of(OLD), "new": gate.source_of(NEW),
                          "by": "position"}]
    e = next(i for i in g.persisting if i.test.endswith("::e"))
    assert e.notes == ["title changed: KASAN: Y in g -> KASAN: Z in g"]
    c = next(i for i in g.persisting if i.test.endswith("::c"))
    assert c.notes == []
    h = next(i for i in g.new if i.test.endswith("::h"))
    assert "did not run it (infra-error)" in h.notes[0]
    g_ = next(i for i in g.disappeared if i.test.endswith("::g"))
    assert g_.notes == ["it was failing in the baseline"]
    text = g.text()
    assert text.splitlines()[0] == "wqh gate: FAIL (exit 1): 4 new failures"
    assert f"kernel:   {gate.source_of(OLD)} -> {gate.source_of(NEW)} (paired by position)" in text
    assert "4 new failures (fail the gate):" in text
    assert "2 persisting failures (failed in the baseline too):" in text
    assert "1 fixed test (failed in the baseline, as expected now):" in text
    assert "      report: KASAN: A in a" in text
    assert "title changed: KASAN: Y in g -> KASAN: Z in g" in text
    assert text.splitlines()[-1] == ("summary: 4 new, 2 persisting, 1 fixed, 0 not run, "
                                     "2 appeared, 2 disappeared, 1 as expected in both")
    j = json.loads(json.dumps(g.to_json()))
    assert j["exit_code"] == 1 and j["counts"]["new"] == 4
    assert j["new"][0]["baseline"]["outcome"] == "pass" and j["new"][0]["new"]["titles"] == ["KASAN: A in a"]


def test_no_new_failures_is_exit_0_even_with_persisting_ones():
    base = [R("a", "fail"), R("b", "pass")]
    new = [R("a", "crash", kernel=NEW, titles=["KASAN: X in f"]), R("b", "pass", kernel=NEW)]
    g = gate.compare(doc(base), doc(new))
    assert g.exit_code() == EXIT_OK
    assert g.persisting[0].notes[0] == "outcome changed: fail -> crash"
    assert g.text().startswith("wqh gate: PASS (exit 0): no new failures")


def test_waived_counts_as_in_results():
    base = [R("a", "pass"), R("b", "crash", titles=["KASAN: X in f"], waived="known (https://x)")]
    new = [R("a", "crash", kernel=NEW, titles=["KASAN: X in f"], waived="known (https://x)"),
           R("b", "crash", kernel=NEW, titles=["KASAN: X in f"])]
    g = gate.compare(doc(base), doc(new))
    assert key(g.new) == ["b"]  # waived before, not now: its waiver did not reach this run
    assert "the baseline waived it" in g.new[0].notes[0]
    assert g.unchanged == 1  # a: waived now, as expected


def test_flaky_fails_the_gate_only_in_a_strict_run():
    base = [R("a", "pass")]
    new = [R("a", "flaky", kernel=NEW)]
    assert gate.compare(doc(base), doc(new)).exit_code() == EXIT_OK
    assert gate.compare(doc(base), doc(new, strict=True)).exit_code() == EXIT_FAIL
    new[0].waived = "racy (https://x)"
    assert gate.compare(doc(base), doc(new, strict=True)).exit_code() == EXIT_OK


def test_infra_error_or_interruption_in_the_new_run_is_exit_2():
    base = [R("a", "pass"), R("b", "pass")]
    new = [R("a", "infra-error", kernel=NEW), R("b", "fail", kernel=NEW)]
    g = gate.compare(doc(base), doc(new))
    assert key(g.infra) == ["a"] and key(g.new) == ["b"]
    assert g.exit_code() == EXIT_INFRA == results.RunSummary(new, 0, 1, Path("/")).exit_code()
    assert g.verdict() == "INFRA (exit 2): 1 test did not run (infra-error); 1 new failure"
    g = gate.compare(doc(base), doc([R("a", "pass", kernel=NEW)], interrupted="SIGINT"))
    assert g.exit_code() == EXIT_INFRA and key(g.disappeared) == ["b"]
    assert "the new run was interrupted (SIGINT)" in g.text()


def test_kernel_matrix_pairs_sources_by_name_then_position():
    # Baseline ran 6.1 then 6.12; the new run lists 6.12 first: paired by name, not order.
    k61, k612 = D61 + "+0123456789abcdef", D612 + "+0123456789abcdef"
    base = [R("a", "pass", kernel=k61), R("a", "fail", kernel=k612)]
    new = [R("a", "fail", kernel=k612.replace("0123", "9999")), R("a", "pass", kernel=k61)]
    g = gate.compare(doc(base), doc(new))
    assert g.new == [] and key(g.persisting) == ["a"] and g.unchanged == 1
    assert [(k["baseline"], k["new"], k["by"]) for k in g.kernels] == [
        (D61, D61, "name"), (D612, D612, "name")]
    # Two trees at new commits: by position.
    base = [R("a", "pass", kernel="git:" + "1" * 40), R("a", "pass", kernel="git:" + "2" * 40)]
    new = [R("a", "pass", kernel="git:" + "3" * 40), R("a", "crash", kernel="git:" + "4" * 40)]
    g = gate.compare(doc(base), doc(new))
    assert len(g.new) == 1 and g.new[0].kernel == "git:" + "4" * 40
    assert g.new[0].baseline.kernel == "git:" + "2" * 40


def test_an_extra_kernel_in_the_new_run_appears():
    base = [R("a", "pass", kernel=D61)]
    new = [R("a", "pass", kernel=D61), R("a", "fail", kernel=D612)]
    g = gate.compare(doc(base), doc(new))
    assert key(g.appeared) == ["a"] and key(g.new) == ["a"] and g.new[0].kernel == D612
    assert g.kernels[1] == {"baseline": None, "new": D612, "by": "none"}


def test_merged_shards_are_one_document():
    base, new = _series()
    half = len(new) // 2
    d1, d2 = doc(new[:half]), doc(new[half:])
    merged = dict(d1, tests=d1["tests"] + d2["tests"])
    assert gate.compare(doc(base), merged).to_json()["counts"] == \
        gate.compare(doc(base), doc(new)).to_json()["counts"]


def test_load_results_from_a_directory_or_the_file(tmp_path):
    base, _ = _series()
    s = RunSummary(base, 100.0, 160.0, tmp_path / "run")
    results.write_all(s)
    a = gate.load_results(tmp_path / "run")
    b = gate.load_results(tmp_path / "run" / "results.json")
    assert a["tests"] == b["tests"] and len(a["tests"]) == len(base)
    # Nothing new; the infra-error of the run is still one (exit 2, as the run's own).
    assert gate.compare(a, b).new == []
    assert gate.compare(a, b).exit_code() == s.exit_code() == EXIT_INFRA
    assert gate.compare(a, b).unchanged == sum(r.as_expected for r in base)


BAD = {
    "not-json.json": ("not-json.json:2", "invalid JSON"),
    "wrong-version.json": ("wrong-version.json", "results version 2: this wqh reads version 1"),
    "no-version.json": ("no-version.json", "not a wqh results file (no 'version')"),
    "not-wqh.json": ("not-wqh.json", "not a wqh results file (no 'tests' list)"),
    "bad-test.json": ("bad-test.json", "key 'tests[1].outcome': unknown outcome 'exploded'"),
    "empty-dir": ("empty-dir", "is a directory without results.json"),
    "nope.json": ("nope.json", "no such file"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_results_file(name):
    where, what = BAD[name]
    with pytest.raises(InputError) as ei:
        gate.load_results(DATA / name, key="--baseline")
    text = str(ei.value)
    assert ei.value.exit_code == EXIT_INPUT
    assert where in text and what in text, text
    assert "--baseline" in text and "  fix: " in text, text


def test_every_bad_test_of_a_results_file_is_reported():
    with pytest.raises(InputError) as ei:
        gate.load_results(DATA / "bad-test.json")
    text = str(ei.value)
    assert text.startswith("3 input errors:"), text
    for k in ("tests[1].outcome", "tests[2].test", "tests[3].reports"):
        assert f"key '{k}'" in text, text


def test_a_fifo_is_refused_without_blocking(tmp_path):
    import os

    os.mkfifo(tmp_path / "results.json")
    with pytest.raises(InputError) as ei:
        gate.load_results(tmp_path)
    assert "not a regular file" in str(ei.value)


def test_gate_cli_when_wired(tmp_path, capsys):
    """`wqh gate --baseline B NEW`, once cli.py has it: exit codes of compare, bad input 3."""
    from harness import cli

    base, new = _series()
    results.write_all(RunSummary(base, 100.0, 160.0, tmp_path / "base"))
    results.write_all(RunSummary(new, 100.0, 160.0, tmp_path / "new"))
    try:
        rc = cli.main(["gate", "--baseline", str(tmp_path / "base"), str(tmp_path / "new")])
    except SystemExit as e:
        rc = e.code
    out = capsys.readouterr()
    if "invalid choice" in out.err:
        pytest.skip("wqh gate is not wired in cli.py yet")
    assert rc == EXIT_FAIL, out
    assert "4 new failures" in out.out + out.err
    shutil.copy(DATA / "wrong-version.json", tmp_path / "bad.json")
    rc = cli.main(["gate", "--baseline", str(tmp_path / "bad.json"), str(tmp_path / "new")])
    err = capsys.readouterr().err
    assert rc == EXIT_INPUT and "bad.json" in err and "fix:" in err
