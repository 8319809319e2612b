import json
import xml.etree.ElementTree as ET

from harness import results
from harness.report import Report
from harness.results import RunSummary, TestResult


def summary(tmp_path, outcomes):
    rs = [TestResult(scenario="s", test=f"t{i}.py::test_{i}", kernel="debian:x+abc",
                     outcome=o, expected=e, duration_s=1.5,
                     reports=[Report("KASAN: slab-out-of-bounds Write in f", "KASAN", 2)]
                     if o == "crash" else [], message="boom" if o != "pass" else "")
          for i, (o, e) in enumerate(outcomes)]
    return RunSummary(rs, 100.0, 112.5, tmp_path)


def test_exit_codes(tmp_path):
    assert summary(tmp_path, [("pass", "pass")]).exit_code() == 0
    assert summary(tmp_path, [("pass", "pass"), ("fail", "pass")]).exit_code() == 1
    assert summary(tmp_path, [("xfail", "crash")]).exit_code() == 0
    assert summary(tmp_path, [("fail", "fail")]).exit_code() == 0
    assert summary(tmp_path, [("skip", "pass")]).exit_code() == 1  # a skip is not a pass
    assert summary(tmp_path, [("fail", "pass"), ("infra-error", "pass")]).exit_code() == 2


def test_results_json_has_the_design_fields(tmp_path):
    s = summary(tmp_path, [("pass", "pass"), ("crash", "pass")])
    results.write_all(s)
    d = json.loads((tmp_path / "results.json").read_text())
    assert d["summary"] == {"pass": 1, "crash": 1}
    assert d["exit_code"] == 1
    t = d["tests"][1]
    for k in ("scenario", "test", "variant", "kernel", "outcome", "expected", "duration_s", "reports"):
        assert k in t
    assert t["variant"] is None
    (r,) = t["reports"]
    assert {k: r[k] for k in ("title", "type", "count")} == {
        "title": "KASAN: slab-out-of-bounds Write in f", "type": "KASAN", "count": 2}
    for k in ("alt_titles", "corrupted", "corrupted_reason", "frames", "test", "text"):
        assert k in r


def test_junit_counts_failures_errors_and_skips(tmp_path):
    s = summary(tmp_path, [("pass", "pass"), ("fail", "pass"), ("infra-error", "pass"),
                           ("skip", "skip")])
    results.write_all(s)
    root = ET.parse(tmp_path / "junit.xml").getroot()
    suite = root.find("testsuite")
    assert suite.get("tests") == "4"
    assert suite.get("failures") == "1"
    assert suite.get("errors") == "1"
    assert suite.get("skipped") == "1"
    cases = suite.findall("testcase")
    assert cases[1].find("failure").get("message") == "outcome fail, expected pass"
    assert cases[2].find("error") is not None
    assert cases[0].find("failure") is None


def test_ktap_and_table(tmp_path):
    s = summary(tmp_path, [("pass", "pass"), ("crash", "pass")])
    results.write_all(s)
    ktap = (tmp_path / "results.ktap").read_text().splitlines()
    assert ktap[:4] == ["KTAP version 1", "1..2", "ok 1 s:t0.py::test_0", "not ok 2 s:t1.py::test_1"]
    table = (tmp_path / "summary.txt").read_text()
    assert "crash  <--" in table
    assert "report: KASAN: slab-out-of-bounds Write in f (x2)" in table
    assert "summary: 1 crash, 1 pass in 12.5s" in table


def test_an_unexpected_skip_is_one_failure_in_junit_and_not_a_skip_in_ktap(tmp_path):
    s = summary(tmp_path, [("skip", "pass"), ("skip", "skip")])
    results.write_all(s)
    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("2", "1", "1")
    first, second = suite.findall("testcase")
    assert first.find("failure") is not None and first.find("skipped") is None
    assert second.find("skipped") is not None and second.find("failure") is None
    ktap = (tmp_path / "results.ktap").read_text().splitlines()
    assert ktap[2] == "not ok 1 s:t0.py::test_0" and ktap[4] == "ok 2 s:t1.py::test_1 # SKIP"


def test_the_kernels_own_ktap_parser_reads_our_verdicts(tmp_path):
    """tools/testing/kunit/kunit.py parse, from the kernel source wqh unpacked: a failure there
    too, the expected skip a skip, nothing counted twice."""
    import subprocess
    import sys

    import pytest

    from harness import build

    kunit = build.cache_dir() / "src" / "linux-source-6.1" / "tools" / "testing" / "kunit" / "kunit.py"
    if not kunit.is_file():
        pytest.skip(f"no unpacked kernel source with {kunit.name} in the cache yet")
    s = summary(tmp_path, [("pass", "pass"), ("skip", "pass"), ("skip", "skip")])
    results.write_all(s)
    p = subprocess.run([sys.executable, str(kunit), "parse", str(tmp_path / "results.ktap")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "Ran 3 tests: passed: 1, failed: 1, skipped: 1" in p.stdout, p.stdout
