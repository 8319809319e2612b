"""LSM mediation under Smack, for real: `wqh run scenarios/lsm/` builds the Smack kernel and
boots it with lsm=smack (every Smack test passes), builds the variant without
smack_post_notification's access check (the tests that need an event withheld fail, by name,
and no other), and boots the default kernel and the Smack kernel without Smack active (every
test skips, saying why).

Heavy (a Smack kernel and a patched variant of it: about ten minutes on two cores from a cold
cache): skipped unless WQH_HEAVY=1."""

import os

import pytest

from e2e import results, wqh
from harness.paths import SCENARIOS

pytestmark = [pytest.mark.vm, pytest.mark.skipif(os.environ.get("WQH_HEAVY") != "1",
                                                 reason="heavy: a Smack kernel and a patched variant "
                                                        "(about ten minutes); set WQH_HEAVY=1")]

# The tests that need an event withheld by smack_post_notification (docs/lsm.md).
POST = {"test_an_event_reaches_a_watcher_of_another_label_only_through_a_write_rule",
        "test_privilege_on_neither_side_bypasses_the_post_check",
        "test_the_watchers_label_is_the_one_it_had_when_it_added_the_watch",
        "test_removal_records_reach_a_watcher_whose_rules_withhold_the_events",
        "test_a_withheld_event_takes_no_note_and_causes_no_loss"}


@pytest.fixture(scope="module")
def lsm_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("lsm") / "out"
    r = wqh("run", str(SCENARIOS / "lsm"), "--out", str(out), timeout=5400)
    by: dict[str, dict[str, dict]] = {}
    for t in results(out)["tests"]:
        by.setdefault(t["scenario"], {})[t["test"].rsplit("::", 1)[-1]] = t
    return r, by, out


def test_every_verdict_is_as_expected(lsm_run):
    r, by, _ = lsm_run
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr
    assert set(by) == {"smack", "smack-post-check-removed", "smack-absent", "smack-inactive"}


def test_every_smack_test_passes_on_the_smack_kernel(lsm_run):
    _, by, out = lsm_run
    assert len(by["smack"]) == 10
    assert {n: t["outcome"] for n, t in by["smack"].items() if t["outcome"] != "pass"} == {}
    assert all(not t["reports"] for t in by["smack"].values())
    vm = by["smack"]["test_the_same_label_needs_no_rule"]["vm"]
    assert "--append lsm=smack" in (out / vm / "vng-command.txt").read_text()


def test_without_the_post_check_exactly_the_post_tests_fail(lsm_run):
    _, by, _ = lsm_run
    variant = by["smack-post-check-removed"]
    failed = {n for n, t in variant.items() if t["outcome"] == "fail"}
    assert failed == POST, {n: t["outcome"] for n, t in variant.items()}
    assert {t["outcome"] for n, t in variant.items() if n not in POST} == {"pass"}
    first = variant["test_an_event_reaches_a_watcher_of_another_label_only_through_a_write_rule"]
    assert "no rule: the event must be withheld" in first["message"]


@pytest.mark.parametrize("scen,why", [("smack-absent", "kernel has no Smack"),
                                      ("smack-inactive", "Smack built in but not active")])
def test_without_smack_every_test_skips_saying_why(lsm_run, scen, why):
    _, by, _ = lsm_run
    assert len(by[scen]) == 10
    for name, t in by[scen].items():
        assert t["outcome"] == "skip" and why in t["message"], (name, t["outcome"], t["message"])
