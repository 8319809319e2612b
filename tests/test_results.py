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
