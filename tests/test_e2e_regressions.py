"""The suite has teeth, for real: each re-introduced bug (scenarios/regressions/) is caught as
its scenario expects, and the same reproducers pass on the fixed trees. Variants are built
incrementally from the cache (about a minute each) the first time."""

import json

import pytest

from e2e import results, wqh
from harness.paths import SCENARIOS

pytestmark = pytest.mark.vm

REG = SCENARIOS / "regressions"


@pytest.fixture(scope="module")
def wall(tmp_path_factory):
    out = tmp_path_factory.mktemp("regressions")
    r = wqh("run", str(REG), "--out", str(out))
    by = {}
    for t in results(out)["tests"]:
        by.setdefault(t["scenario"], []).append(t)
    return r, by


def test_every_expectation_of_the_wall_holds(wall):
    r, by = wall
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr
    assert len(by) == 9


@pytest.mark.parametrize("scen", ["055ca83559-write-zero-bytes", "3b4c037192-bitmap-size",
                                  "f13abc1e8e-pipe-accounting"])
def test_functional_bugs_fail_their_tests(wall, scen):
    _, by = wall
    assert by[scen] and {t["outcome"] for t in by[scen]} == {"fail"}
    assert all(not t["reports"] for t in by[scen])


def test_the_ring_bug_oopses_in_pipe_read(wall):
    _, by = wall
    (t,) = by["96a4d8912b-ring-not-pow2"]
    assert t["outcome"] == "xfail"
    assert t["reports"][0]["title"] == "BUG: unable to handle kernel NULL pointer dereference in pipe_read"


def test_cve_2022_0995_is_named_as_syzbot_names_it_with_source_lines(wall):
    _, by = wall
    t = next(t for t in by["c993ee0f9f-filter-overflow"] if t["test"] != "wqh:kmemleak")
    assert t["outcome"] == "xfail"
    assert t["test"].endswith("test_filter_with_type_200_is_accepted_and_ignored")
    (rep,) = t["reports"]
    assert rep["title"] == "KASAN: slab-out-of-bounds Write in watch_queue_set_filter"
    assert any(f.get("file") == "kernel/watch_queue.c" and f.get("line") and
               f["func"] == "watch_queue_set_filter" for f in rep["frames"])


def test_the_page_array_leak_is_reported_once_by_the_leak_check(wall):
    _, by = wall
    leak = next(t for t in by["b490207017-page-array-leak"] if t["test"] == "wqh:kmemleak")
    assert leak["outcome"] == "xfail"
    assert [x["title"] for x in leak["reports"]] == ["memory leak in watch_queue_set_size"]
    assert leak["reports"][0]["count"] >= 100  # one entry, however many objects leaked


def test_the_reproducers_pass_on_the_fixed_trees_without_report_or_leak(wall):
    _, by = wall
    for scen in ("regressions-fixed", "regressions-fixed-kasan"):
        assert {t["outcome"] for t in by[scen]} == {"pass"}, by[scen]
        assert not any(t["reports"] for t in by[scen])
    assert any(t["test"] == "wqh:kmemleak" for t in by["regressions-fixed-kasan"])


def test_the_nested_pipe_lock_is_lockdeps_possible_deadlock_in_pipe_write(wall):
    _, by = wall
    t = next(t for t in by["055ca83559-lockdep"] if t["test"] != "wqh:kmemleak")
    assert t["outcome"] == "xfail"
    assert "possible deadlock in pipe_write" in [x["title"] for x in t["reports"]]


def test_verify_runs_a_reproducer_from_outside_the_repo_on_both_trees(tmp_path):
    c = tmp_path / "cve-2022-0995.c"  # outside the repo, as a user's syzbot download would be
    c.write_text((REG / "repro" / "c993ee0f9f-filter-overflow.c").read_text())
    out = tmp_path / "v"
    r = wqh("verify", str(c), "--bug", str(REG / "patches" / "c993ee0f9f-filter-overflow.patch"),
            "--repeat", "2", "--timeout", "10", "--out", str(out))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    title = "KASAN: slab-out-of-bounds Write in watch_queue_set_filter"
    assert f"base:  reproduced 2/2: {title}" in r.stdout
    assert "fixed: reproduced 0/2" in r.stdout
    assert "does not reproduce with the fix (0/2)" in r.stdout
    v = json.loads((out / "verify.json").read_text())
    assert v["proved"] and v["base"]["titles"] == [title]
