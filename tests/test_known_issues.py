"""known_issues: loading (every error at file:line with key and fix, all at once) and waiving."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from harness import known_issues
from harness.errors import EXIT_INPUT, InputError
from harness.report import Report
from harness.results import RunSummary, TestResult

DATA = Path(__file__).resolve().parent / "data" / "known-issues"
GOOD = DATA / "good.yaml"
TODAY = date(2026, 12, 3)
# The line of each entry of good.yaml, in order.
LINES = [i for i, ln in enumerate(GOOD.read_text().splitlines(), 1) if ln.startswith("- ")]
GIT = "git:4f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c+0123456789abcdef"
MINE = "path:/home/dev/linux+fedcba9876543210"
FILTER = "KASAN: slab-out-of-bounds Write in watch_queue_set_filter"


def R(scenario, test, outcome, expected="pass", kernel=GIT, titles=(), message=""):
    return TestResult(scenario=scenario, test=test, kernel=kernel, outcome=outcome,
                      expected=expected, message=message,
                      reports=[Report(t, t.split(":")[0].split(" ")[0]) for t in titles])


def _results():
    return {
        "filter": R("functional-kasan", "guest-tests/regressions/test_filter.py::test_overflow",
                    "crash", titles=[FILTER]),
        "leak-kasan": R("functional-kasan-kmemleak", "wqh:kmemleak", "crash",
                        titles=["memory leak in watch_queue_set_size"]),
        "leak-plain": R("functional", "wqh:kmemleak", "crash",
                        titles=["memory leak in watch_queue_set_size"]),
        "loss-mine": R("functional", "guest-tests/test_loss.py::test_overrun", "fail", kernel=MINE),
        "loss-git": R("functional", "guest-tests/test_loss.py::test_overrun", "fail"),
        "limit": R("functional", "guest-tests/test_limits.py::test_per_user_watch_limit", "fail"),
        "keys": R("functional", "guest-tests/test_keys.py::test_keyring_watch_after_revoke", "crash",
                  titles=["WARNING in keyring_gc", "KASAN: use-after-free Read in keyring_gc"],
                  message="kernel report during the test (pytest said pass)."),
        "pass": R("functional", "guest-tests/test_smoke.py::test_key_update_gives_one_record", "pass"),
        "xfail": R("wall", "guest-tests/regressions/test_filter.py::test_overflow", "xfail",
                   expected="crash", titles=[FILTER]),
    }


def test_good_file_loads_every_field():
    ki = known_issues.load(GOOD)
    assert len(ki.entries) == 6
    e = ki.entries[0]
    assert (e.title, e.expires, e.line) == (FILTER, date(2027, 6, 30), LINES[0])
    assert [x.line for x in ki.entries] == LINES
    assert e.link.startswith("https://syzkaller.appspot.com/bug?extid=")
    assert ki.entries[1].scenario == "functional-kasan*"
    assert ki.entries[2].test == "guest-tests/test_loss.py::*" and ki.entries[2].kernel == "path:"
    assert ki.entries[4].title == "WARNING in .*" and ki.entries[4].test.endswith("after_revoke")


def test_empty_file_is_no_known_issues():
    assert known_issues.load(DATA / "empty.yaml").entries == []


def test_apply_waives_by_title_test_scenario_and_kernel():
    rs = _results()
    ki = known_issues.load(GOOD)
    applied = ki.apply(list(rs.values()), TODAY)
    e = ki.entries
    waived = {k for k, r in rs.items() if r.waived}
    assert waived == {"filter", "leak-kasan", "loss-mine"}
    assert rs["filter"].waived == f"{e[0].reason} ({e[0].link})"
    assert rs["leak-kasan"].waived == f"{e[1].reason} ({e[1].link})"
    assert rs["loss-mine"].waived == f"{e[2].reason} ({e[2].link})"
    assert {id(r) for r in applied.waived} == {id(rs[k]) for k in waived}
    # A waived result gates as expected; what is left still fails the run.
    assert all(rs[k].as_expected for k in waived)
    assert RunSummary(list(rs.values()), 0, 1, Path("/tmp")).exit_code() == 1
    # Matched: the three that waived, and the WARNING entry that knows one report of 'keys'.
    assert [x.line for x, _ in applied.matched] == [LINES[i] for i in (0, 1, 2, 4)]
    assert [x.line for x in applied.unused] == [LINES[5]]
    assert [(x.line, [r.test for r in would]) for x, would in applied.expired] == [
        (LINES[3], ["guest-tests/test_limits.py::test_per_user_watch_limit"])]
    # As-expected results are never touched.
    assert rs["pass"].waived == "" and rs["xfail"].waived == ""


def test_expired_entry_does_not_waive_and_warns():
    rs = _results()
    applied = known_issues.load(GOOD).apply(list(rs.values()), TODAY)
    assert rs["limit"].waived == "" and not rs["limit"].as_expected
    w = [x for x in applied.warnings() if "expired" in x]
    assert w == [f"{GOOD}:{LINES[3]}: expired on 2026-01-01: the limit moved to the ucounts rlimit in 6.2 "
                 "(it would have waived 1 result); renew 'expires:' or remove the entry"]
    # The day before it expires, it waives.
    rs = _results()
    known_issues.load(GOOD).apply(list(rs.values()), date(2025, 12, 31))
    assert rs["limit"].waived.startswith("the limit moved")


def test_partly_known_crash_stays_a_failure_and_says_so():
    rs = _results()
    applied = known_issues.load(GOOD).apply(list(rs.values()), TODAY)
    k = rs["keys"]
    assert k.waived == "" and not k.as_expected
    assert applied.partly_known == [k]
    assert k.message.splitlines()[0] == "kernel report during the test (pytest said pass)."
    assert k.message.splitlines()[1] == (
        f"known issues cover only some of its reports: WARNING in keyring_gc ({GOOD}:{LINES[4]}); "
        "not known: KASAN: use-after-free Read in keyring_gc; still a failure")
    assert any("only some of its reports" in w for w in applied.warnings())


def test_apply_is_idempotent_and_authoritative():
    rs = _results()
    ki = known_issues.load(GOOD)
    ki.apply(list(rs.values()), TODAY)
    first = {k: (r.waived, r.message) for k, r in rs.items()}
    ki.apply(list(rs.values()), TODAY)
    assert {k: (r.waived, r.message) for k, r in rs.items()} == first
    # Applying a file without the entry takes the waiver away (e.g. merge with a newer file).
    known_issues.load(DATA / "empty.yaml").apply(list(rs.values()), TODAY)
    assert not any(r.waived for r in rs.values())
    assert "only some" not in rs["keys"].message


def _one(tmp_path, text: str) -> known_issues.KnownIssues:
    f = tmp_path / "known-issues.yaml"
    f.write_text(text)
    return known_issues.load(f)


def test_title_must_match_in_full_and_alt_titles_count(tmp_path):
    ki = _one(tmp_path, "- title: WARNING\n  reason: r\n  link: https://x.org/1\n"
                        "- title: 'bad-access in watch_queue_clear'\n  reason: alt\n"
                        "  link: https://x.org/2\n")
    warn = R("s", "t.py::a", "crash", titles=["WARNING in post_one_notification"])
    gpf = R("s", "t.py::b", "crash")
    gpf.reports = [Report("general protection fault in watch_queue_clear", "GPF",
                          alt_titles=["bad-access in watch_queue_clear"])]
    applied = ki.apply([warn, gpf], TODAY)
    assert warn.waived == ""  # 'WARNING' is not a search
    assert gpf.waived == "alt (https://x.org/2)"
    assert [e.line for e in applied.unused] == [1]


def test_title_entries_do_not_waive_a_failure_without_reports(tmp_path):
    ki = _one(tmp_path, "- title: '.*'\n  reason: r\n  link: https://x.org/1\n")
    r = R("s", "t.py::a", "fail")
    ki.apply([r], TODAY)
    assert r.waived == ""


def test_title_and_test_together_need_both(tmp_path):
    ki = _one(tmp_path, "- title: 'WARNING in .*'\n  test: 't.py::a'\n  reason: r\n"
                        "  link: https://x.org/1\n")
    a = R("s", "t.py::a", "crash", titles=["WARNING in f"])
    b = R("s", "t.py::b", "crash", titles=["WARNING in f"])
    ki.apply([a, b], TODAY)
    assert a.waived and not b.waived


def test_parametrized_id_is_matched_as_written_not_as_a_glob_class(tmp_path):
    ki = _one(tmp_path, "- test: 't.py::test_x[1-2]'\n  reason: r\n  link: https://x.org/1\n")
    exact = R("s", "t.py::test_x[1-2]", "fail")
    other = R("s", "t.py::test_x1", "fail")
    ki.apply([exact, other], TODAY)
    assert exact.waived and not other.waived


def test_flaky_result_is_waivable_for_strict_runs(tmp_path):
    ki = _one(tmp_path, "- test: 't.py::*'\n  reason: racy under TCG\n  link: https://x.org/1\n")
    r = R("s", "t.py::a", "flaky")
    s = RunSummary([r], 0, 1, tmp_path, strict=True)
    assert s.exit_code() == 1
    ki.apply([r], TODAY)
    assert r.waived == "racy under TCG (https://x.org/1)"
    assert s.exit_code() == 0


def test_applied_to_json_and_text():
    rs = _results()
    applied = known_issues.load(GOOD).apply(list(rs.values()), TODAY)
    doc = json.loads(json.dumps(applied.to_json()))
    assert doc["today"] == "2026-12-03"
    assert len(doc["waived"]) == 3 and len(doc["partly_known"]) == 1
    assert doc["expired"][0]["expires"] == "2026-01-01"
    assert doc["unused"][0]["where"] == f"{GOOD}:{LINES[5]}"
    text = applied.text()
    assert text.startswith("known issues: 3 results waived by 4 entries, 1 unused, 1 expired")


# --- bad input: each exits 3 naming file:line, the key and a fix ----------------------------

BAD = {
    "unknown-key": (4, "[0].bug", "unknown key"),
    "bad-regex": (1, "[0].title", "missing ), unterminated subpattern at position 58"),
    "bad-date": (4, "[0].expires", "day is out of range for month"),
    "bad-date-format": (4, "[0].expires", "not a date (YYYY-MM-DD)"),
    "neither": (1, "[0]", "neither 'title' nor 'test'"),
    "wrong-type": (1, "[0].test", "expected a string, got a list"),
    "missing-reason": (1, "[0].reason", "missing key 'reason'"),
    "missing-link": (1, "[0].link", "missing key 'link'"),
    "bad-link": (3, "[0].link", "is not an http(s) URL"),
    "everything": (1, "[0].test", "would waive every test"),
    "not-a-list": (1, "", "expected a list of entries, got a mapping"),
    "entry-not-mapping": (1, "[0]", "expected a mapping, got a scalar"),
    "bad-yaml": (3, "", "invalid YAML"),
    "latin1": (1, "--known-issues", "not UTF-8"),
}


@pytest.mark.parametrize("stem", sorted(BAD))
def test_bad_known_issues_file(stem):
    line, key, what = BAD[stem]
    with pytest.raises(InputError) as ei:
        known_issues.load(DATA / f"{stem}.yaml")
    e = ei.value
    text = str(e)
    assert e.exit_code == EXIT_INPUT
    assert f"{stem}.yaml:{line}:" in text, text
    if key:
        assert f"key '{key}'" in text, text
    assert what in text, text
    assert "\n  fix: " in text, text


def test_every_error_of_a_file_is_reported_at_once():
    with pytest.raises(InputError) as ei:
        known_issues.load(DATA / "several.yaml")
    text = str(ei.value)
    assert text.startswith("5 input errors:"), text
    for frag in ("several.yaml:1: key '[0].title': bad regex", "several.yaml:6: key '[1].link'",
                 "several.yaml:7: key '[1].expires'", "several.yaml:10: key '[2].colour'",
                 "several.yaml:12: key '[3].reason': empty value"):
        assert frag in text, text
    assert text.count("fix: ") == 5


@pytest.mark.parametrize("what", ["missing", "directory"])
def test_known_issues_path_itself(what):
    p = DATA / "nope.yaml" if what == "missing" else DATA
    with pytest.raises(InputError) as ei:
        known_issues.load(p)
    assert ei.value.exit_code == EXIT_INPUT
    assert "key '--known-issues'" in str(ei.value) and str(p) in str(ei.value)
    assert "fix: " in str(ei.value)
