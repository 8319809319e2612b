import io
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from junitparser import JUnitXml

from harness import build, results
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
    assert ktap == ["KTAP version 1", "1..1",
                    "    KTAP version 1", "    # Subtest: s", "    1..2",
                    "    ok 1 t0.py::test_0",
                    "    # outcome crash, expected pass",
                    "    # report: KASAN: slab-out-of-bounds Write in f (x2)",
                    "    not ok 2 t1.py::test_1",
                    "not ok 1 s"]
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
    assert "    not ok 1 t0.py::test_0" in ktap and "    ok 2 t1.py::test_1 # SKIP boom" in ktap


R = Report("KASAN: use-after-free Read in watch_queue_clear", "KASAN", 3)


def mixed(tmp_path, strict=False):
    """Every kind of result, in two scenarios, on two kernels in the second."""
    k1, k2 = "debian:6.1+aaa", "debian:6.1+bbb"

    def r(scen, test, outcome, expected="pass", kernel=k1, **kw):
        return TestResult(scenario=scen, test=test, kernel=kernel, outcome=outcome, expected=expected,
                          duration_s=0.5, vm="vm1-" + kernel[-3:], **kw)

    rs = [r("functional", "t.py::test_pass", "pass"),
          r("functional", "t.py::test_fail", "fail", message="assert 1 == 2\n\x1b[31mE\x1b[0m"),
          r("functional", "t.py::test_unexpected_skip", "skip", message="no watch_queue"),
          r("functional", "t.py::test_expected_skip", "skip", "skip", message="needs #2: a 2nd CPU"),
          r("functional", "t.py::test_crash", "crash", reports=[R], message="kernel report during the test"),
          r("functional", "t.py::test_infra", "infra-error", message="never ran: VM ended (boot)"),
          r("functional", "t.py::test_flaky[a#1]", "flaky",
            attempts=[{"outcome": "fail", "vm": "vm1-aaa", "message": "EAGAIN"}]),
          r("functional", "t.py::test_waived", "crash", reports=[R], waived="known race (https://lore/x)"),
          r("regressions", "- r.py::test_bug", "xfail", "crash", reports=[R]),
          r("regressions", "- r.py::test_bug", "xpass", "crash", kernel=k2)]
    return RunSummary(rs, 100.0, 110.0, tmp_path, strict=strict,
                      kernels={"key-a": {"identity": k1}, "key-b": {"identity": k2}})


def ours(s: RunSummary) -> dict[str, int]:
    """What a KTAP or JUnit reader must count, from our own verdicts."""
    cats = [s.category(r) for r in s.results]
    return {"passed": cats.count(results.PASSED),
            "failed": cats.count(results.FAILURE) + cats.count(results.ERROR),
            "skipped": cats.count(results.SKIPPED)}


@pytest.mark.parametrize("strict", [False, True])
def test_categories_agree_with_the_exit_code(tmp_path, strict):
    s = mixed(tmp_path, strict)
    cats = {r.test: s.category(r) for r in s.results if r.scenario == "functional"}
    assert cats == {"t.py::test_pass": results.PASSED, "t.py::test_fail": results.FAILURE,
                    "t.py::test_unexpected_skip": results.FAILURE,
                    "t.py::test_expected_skip": results.SKIPPED, "t.py::test_crash": results.FAILURE,
                    "t.py::test_infra": results.ERROR,
                    "t.py::test_flaky[a#1]": results.FAILURE if strict else results.PASSED,
                    "t.py::test_waived": results.PASSED}
    for rs in ([r for r in s.results if s.category(r) in (results.PASSED, results.SKIPPED)],
               [r for r in s.results if r.outcome == "flaky"], s.results):
        sub = RunSummary(rs, 0.0, 1.0, tmp_path, strict=strict)
        assert (sub.exit_code() != 0) == bool(results.unexpected(sub))
    # a waived infra-error still exits 2: an error, not a pass
    w = RunSummary([TestResult("s", "t", "k", "infra-error", waived="x (y)")], 0.0, 1.0, tmp_path)
    assert w.exit_code() == 2 and w.category(w.results[0]) == results.ERROR


@pytest.mark.parametrize("strict", [False, True])
def test_junit_one_suite_per_scenario_one_category_per_case(tmp_path, strict):
    s = mixed(tmp_path, strict)
    results.write_all(s)
    xml = JUnitXml.fromfile(str(tmp_path / "junit.xml"))
    suites = {suite.name: suite for suite in xml}
    assert list(suites) == ["functional", "regressions"]
    total = {"passed": 0, "failed": 0, "skipped": 0}
    for suite in xml:
        cases = list(suite)
        for c in cases:
            assert len(c.result) <= 1, c.name
        passed = sum(c.is_passed for c in cases)
        assert suite.tests == len(cases) == passed + suite.failures + suite.errors + suite.skipped
        assert suite.failures == sum(c.is_failure for c in cases)
        assert suite.errors == sum(c.is_error for c in cases)
        assert suite.skipped == sum(c.is_skipped for c in cases)
        total["passed"] += passed
        total["failed"] += suite.failures + suite.errors
        total["skipped"] += suite.skipped
    assert total == ours(s)
    assert (xml.tests, xml.failures + xml.errors) == (len(s.results), total["failed"])

    props = {(p.name, p.value) for p in suites["regressions"].properties()}
    assert props == {("kernel", "debian:6.1+aaa"), ("kernel", "debian:6.1+bbb"),
                     ("kernel.build", "key-a"), ("kernel.build", "key-b"),
                     ("vm", "vm1-aaa"), ("vm", "vm1-bbb")}
    assert {(p.name, p.value) for p in suites["functional"].properties()} == {
        ("kernel", "debian:6.1+aaa"), ("kernel.build", "key-a"), ("vm", "vm1-aaa")}
    # the same test on two kernels: two cases that say which
    assert [c.name for c in suites["regressions"]] == ["- r.py::test_bug on debian:6.1+aaa",
                                                        "- r.py::test_bug on debian:6.1+bbb"]

    case = {c.name: c for c in suites["functional"]}
    crash = case["t.py::test_crash"].result[0]
    assert crash.message == "outcome crash, expected pass" and crash.type == "crash"
    assert "KASAN: use-after-free Read in watch_queue_clear (x3)" in crash.text
    assert "\x1b" not in case["t.py::test_fail"].result[0].text  # XML has no place for it
    assert case["t.py::test_infra"].result[0].type == "infra-error"
    assert case["t.py::test_expected_skip"].is_skipped
    waived = case["t.py::test_waived"]
    assert waived.is_passed and waived.system_out == (
        "waived: known race (https://lore/x); was crash, expected pass\n"
        "KASAN: use-after-free Read in watch_queue_clear (x3)")
    flaky = case["t.py::test_flaky[a#1]"]
    note = "flaky: attempt 1 fail in vm1-aaa, attempt 2 pass in vm1-aaa"
    if strict:
        assert flaky.is_failure and flaky.result[0].message == "flaky, which fails under --strict (1 retry)"
        assert note in flaky.result[0].text and "attempt 1 (fail): EAGAIN" in flaky.result[0].text
    else:
        assert flaky.is_passed and flaky.system_out == note + "\nattempt 1 (fail): EAGAIN"
    assert case["t.py::test_pass"].system_out is None


def test_ktap_names_are_what_kunit_parser_reads_back():
    assert results.ktap_name("t.py::test_x[a#1]") == "t.py::test_x[a_1]"
    assert results.ktap_name("- t.py::x") == "_ t.py::x"
    assert results.ktap_name("  a\n b  ") == "a b"
    assert results.ktap_name("") == "_"
    assert results.ktap_name("x reboot: System halted") == "x reboot : System halted"


def test_ktap_flaky_waived_and_strict(tmp_path):
    results.write_ktap(mixed(tmp_path), tmp_path / "a.ktap")
    lines = (tmp_path / "a.ktap").read_text().splitlines()
    i = lines.index("    ok 7 t.py::test_flaky[a_1]")
    assert lines[i - 1] == "    # flaky: attempt 1 fail in vm1-aaa, attempt 2 pass in vm1-aaa"
    assert lines[i + 1:i + 3] == ["    # waived: known race (https://lore/x); was crash, expected pass",
                                  "    ok 8 t.py::test_waived"]
    assert "    ok 4 t.py::test_expected_skip # SKIP needs _2: a 2nd CPU" in lines
    assert lines[-1] == "not ok 2 regressions" and "not ok 1 functional" in lines
    results.write_ktap(mixed(tmp_path, strict=True), tmp_path / "b.ktap")
    lines = (tmp_path / "b.ktap").read_text().splitlines()
    assert "    not ok 7 t.py::test_flaky[a_1]" in lines
    assert "    # flaky, which fails under --strict (1 retry)" in lines
    only_skips = RunSummary([TestResult("s", "t", "k", "skip", "skip")], 0.0, 1.0, tmp_path)
    results.write_ktap(only_skips, tmp_path / "c.ktap")
    assert (tmp_path / "c.ktap").read_text().splitlines()[-2:] == ["    ok 1 t # SKIP", "ok 1 s # SKIP"]


def _kunit() -> str:
    kunit = build.cache_dir() / "src" / "linux-source-6.1" / "tools" / "testing" / "kunit" / "kunit.py"
    if not kunit.is_file():
        pytest.skip(f"{kunit} is missing: wqh unpacks linux-source-6.1 there on its first "
                    "`wqh run` or `wqh build` (needs the Debian package linux-source-6.1)")
    return str(kunit)


def kunit_parse(ktap, tmp_path) -> tuple[subprocess.CompletedProcess, dict[str, int], dict]:
    """kunit.py parse on KTAP: the process, its counts, its JSON."""
    p = subprocess.run([sys.executable, _kunit(), "parse", f"--json={tmp_path / 'kunit.json'}", str(ktap)],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"Testing complete\. Ran \d+ tests: (.*)", p.stdout)
    assert m, p.stdout + p.stderr
    counts = {k: int(n) for k, n in re.findall(r"(\w+): (\d+)", m.group(1))}
    return p, counts, json.loads((tmp_path / "kunit.json").read_text())


def test_the_kernels_own_ktap_parser_reads_our_verdicts(tmp_path):
    """tools/testing/kunit/kunit.py parse, from the kernel source wqh unpacked: a failure there
    too, the expected skip a skip, nothing counted twice."""
    s = summary(tmp_path, [("pass", "pass"), ("skip", "pass"), ("skip", "skip")])
    results.write_all(s)
    p, counts, _ = kunit_parse(tmp_path / "results.ktap", tmp_path)
    assert p.returncode == 1, p.stdout + p.stderr
    assert counts == {"passed": 1, "failed": 1, "skipped": 1}, p.stdout


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("drop", ["nothing", "unexpected"])
def test_kunit_parser_agrees_on_every_kind_of_result(tmp_path, strict, drop):
    """Mixed outcomes in two scenarios (and, dropping the unexpected ones, a run that passes):
    kunit.py's counts are ours, its status our exit code's, its names ours, no parse error."""
    _kunit()
    s = mixed(tmp_path, strict)
    if drop == "unexpected":
        s.results = [r for r in s.results if s.category(r) in (results.PASSED, results.SKIPPED)]
    results.write_all(s)
    p, counts, doc = kunit_parse(tmp_path / "results.ktap", tmp_path)
    want = {k: n for k, n in ours(s).items() if n}
    assert counts == want, p.stdout  # an "errors" count (a parse error) would show here too
    assert "[ERROR]" not in p.stdout, p.stdout
    assert (p.returncode == 0) == (s.exit_code() == 0), (s.exit_code(), p.stdout)
    assert [g["name"] for g in doc["sub_groups"]] == list(dict.fromkeys(r.scenario for r in s.results))
    names = [c["name"] for g in doc["sub_groups"] for c in g["test_cases"]]
    on_two_kernels = {"regressions"} if drop == "nothing" else set()
    assert names == [results.ktap_name(r.test + (f" on {r.kernel}" if r.scenario in on_two_kernels else ""))
                     for r in s.results]


def test_table_shows_flaky_waived_and_strict(tmp_path):
    table = results.table(mixed(tmp_path))
    assert "flaky (1 retry)  " in table
    assert "crash (waived: known race (https://lore/x))  " in table
    assert "--- functional: t.py::test_flaky" not in table
    strict = results.table(mixed(tmp_path, strict=True))
    assert "flaky (1 retry)  <--" in strict
    assert "    flaky: attempt 1 fail in vm1-aaa, attempt 2 pass in vm1-aaa" in strict


def test_github_report_summary_and_annotations(tmp_path):
    step = tmp_path / "step.md"
    step.write_text("earlier step\n")
    out = io.StringIO()
    s = mixed(tmp_path)
    results.github_report(s, {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(step)}, out)
    md = step.read_text()
    assert md.startswith("earlier step\n### wqh: 10 results, 5 unexpected (exit 2)")
    assert "| scenario | pass | fail | skip | crash | infra-error | xfail | xpass | flaky | unexpected |" in md
    assert "| functional | 1 | 1 | 2 | 2 | 1 | 0 | 0 | 1 | 4 |" in md
    assert "| regressions | 0 | 0 | 0 | 0 | 0 | 1 | 1 | 0 | 1 |" in md
    assert "- **functional** <code>t.py::test_crash</code>: outcome crash, expected pass\n" \
           "  - KASAN: use-after-free Read in watch_queue_clear (x3)\n" in md
    assert "test_waived" not in md.split("#### Unexpected results")[1]
    lines = out.getvalue().splitlines()
    errors = [ln for ln in lines if ln.startswith("::error ")]
    warnings = [ln for ln in lines if ln.startswith("::warning ")]
    assert len(errors) == 5 and len(warnings) == 2 and len(lines) == 7
    assert errors[0] == ("::error title=functional%3A t.py%3A%3Atest_fail%3A fail::"
                         "outcome fail, expected pass%0Aassert 1 == 2%0A\x1b[31mE\x1b[0m")
    assert warnings[0].startswith("::warning title=flaky%3A functional%3A t.py%3A%3Atest_flaky[a#1]::flaky: ")
    assert warnings[1] == ("::warning title=waived%3A functional%3A t.py%3A%3Atest_waived::"
                           "waived: known race (https://lore/x); was crash, expected pass")


def test_github_report_only_on_github_and_once_per_command(tmp_path, monkeypatch):
    s = mixed(tmp_path, strict=True)
    out = io.StringIO()
    results.github_report(s, {"GITHUB_STEP_SUMMARY": str(tmp_path / "no.md")}, out)
    assert out.getvalue() == "" and not (tmp_path / "no.md").exists()
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "step.md"))
    s.shard = {"index": 2, "total": 4}
    results.write_all(s)  # also called by repro, verify and the wall: not their report
    assert not (tmp_path / "step.md").exists()
    results.print_summary(s, out)  # the end of `wqh run` and `wqh merge`
    assert (tmp_path / "step.md").read_text().startswith(
        "### wqh (shard 2/4): 10 results, 6 unexpected (exit 2, --strict)")
    printed = out.getvalue()
    assert printed.index("artifacts: ") < printed.index("::error ")
    assert "::error title=functional%3A t.py%3A%3Atest_flaky[a#1]%3A flaky::flaky, which fails" in printed
    assert printed.count("::warning") == 1  # the waived one; flaky is an error under --strict
