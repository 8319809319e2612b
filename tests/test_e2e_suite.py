"""The guest suite for real: the functional scenarios on the default and KASAN kernels, and the
kernels built without the feature, all from the session's one run of scenarios/ (full_run in
conftest.py: every kernel built or reused once, each VM booted as soon as its kernel is ready)."""

import json
from pathlib import Path

import pytest

from e2e import DATA, results, wqh
from harness import scenario
from harness.paths import REPO, SCENARIOS

pytestmark = pytest.mark.vm

# Every guest test file but those of kernels of their own (without the queue; Smack's, in
# scenarios/lsm/).
SUITE_FILES = sorted(p.name for p in (REPO / "guest-tests").glob("test_*.py")
                     if p.name not in ("test_no_watch_queue.py", "test_smack.py"))


def _scenario(res: dict, scen: str) -> list[dict]:
    return [t for t in res["tests"] if t["scenario"] == scen]


def _check_all_pass(r, out: Path, scen: str, at_least: int):
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    res = results(out)
    mine = _scenario(res, scen)
    leak_checks = [t for t in mine if t["test"] == "wqh:kmemleak"]
    assert all(t["outcome"] == "pass" for t in leak_checks)
    tests = [t for t in mine if t["test"] != "wqh:kmemleak"]
    assert len([t for t in tests if t["outcome"] == "pass"]) >= at_least
    # Every test as the scenario expects it: passes, and the never-merged sources as skips that
    # say what the kallsyms probe found.
    assert {t["expected"] for t in tests} <= {"pass", "skip"}
    assert all(t["outcome"] == t["expected"] for t in tests), [t for t in tests if t["outcome"] != t["expected"]]
    for t in tests:
        if t["expected"] == "skip":
            assert "test_unmerged_sources.py" in t["test"] and "kallsyms" in t["message"], t
    assert all(t["scenario"] == scen for t in tests)
    assert not [t for t in tests if t["reports"]], "kernel reports during the suite"
    # Every module of the suite ran, and every test the scenario lists came back.
    ran = {t["test"].split("::")[0].split("/")[-1] for t in tests}
    assert ran == set(SUITE_FILES)
    # An entry names a test, or a whole file (every test in it).
    listed = {t.id for t in scenario.load(SCENARIOS / f"{scen}.yaml").tests}

    def entry(test_id):
        node = test_id.split("[")[0]
        return node if node in listed else node.split("::")[0]
    assert listed == {entry(t["test"]) for t in tests}
    return res


def _guest(out: Path, res: dict, scen: str) -> dict:
    """The guest agent's results file of the VM that ran SCEN."""
    (vm,) = {t["vm"] for t in _scenario(res, scen)}
    return json.loads((out / vm / "guest" / "guest-results.json").read_text())


def test_functional_suite_passes_on_the_default_kernel(full_run):
    out, r = full_run
    res = _check_all_pass(r, out, "functional", 140)
    assert res["timings"]["vm_s"] > 0
    g = _guest(out, res, "functional")
    assert g["done"] and "kmemleak" not in g  # no kmemleak in this kernel: no leak check


def test_functional_suite_under_kasan_and_kmemleak_has_no_report(full_run):
    out, r = full_run
    res = _check_all_pass(r, out, "functional-kasan", 140)
    assert [t["outcome"] for t in _scenario(res, "functional-kasan")
            if t["test"] == "wqh:kmemleak"] == ["pass"]
    g = _guest(out, res, "functional-kasan")
    assert g["kmemleak"]["leaks"] == 0, "the end-of-run leak check ran and found nothing"
    (vm,) = {t["vm"] for t in _scenario(res, "functional-kasan")}
    console = (out / vm / "console.log").read_text(errors="replace")
    assert "wqh: end wqh:kmemleak pass" in console
    assert "BUG: KASAN" not in console


def test_kernels_without_the_feature_keep_their_contract(full_run):
    out, r = full_run
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    res = results(out)
    by = {t["test"].split("::")[-1]: (t["scenario"], t["outcome"]) for t in res["tests"]
          if t["scenario"].startswith("no-")}
    assert by == {
        "test_notification_pipe_is_enopkg[plain]": ("no-watch-queue", "pass"),
        "test_notification_pipe_is_enopkg[all-flags]": ("no-watch-queue", "pass"),
        "test_unknown_pipe2_flags_are_still_einval": ("no-watch-queue", "pass"),
        "test_watch_queue_ioctls_are_enotty": ("no-watch-queue", "pass"),
        "test_watch_key_is_eopnotsupp_without_watch_queue": ("no-watch-queue", "pass"),
        "test_notification_pipe_works_without_key_notifications": ("no-key-notifications", "pass"),
        "test_watch_key_is_eopnotsupp_without_key_notifications": ("no-key-notifications", "pass"),
    }
    assert len({t["kernel"] for t in res["tests"] if t["scenario"].startswith("no-")}) == 2


def test_the_same_tests_skip_on_a_kernel_with_the_feature(tmp_path):
    """The negative tests are not vacuous: on the default kernel they skip, and skip is no pass."""
    r = wqh("run", str(DATA / "scenarios" / "negative-on-default.yaml"), "--out", str(tmp_path))
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr
    assert {t["outcome"] for t in results(tmp_path)["tests"]} == {"skip"}
