"""Pieces of the runner that need no VM."""

from pathlib import Path

from harness import runner
from harness.scenario import Scenario, TestRef

F = Path("/repo/guest-tests/test_x.py")


def test_lost_expansions_are_retried_each_by_its_own_node_id():
    s = Scenario("s", Path("/s.yaml"))
    whole = TestRef("guest-tests/test_x.py::test_p", F, "crash")
    untouched = TestRef("guest-tests/test_x.py::test_never", F)
    done = TestRef("guest-tests/test_x.py::test_done", F)
    lost = ["guest-tests/test_x.py::test_p[b]", "guest-tests/test_x.py::test_p[c]",
            "guest-tests/test_x.py::test_never"]
    again = runner.retry_items([(s, whole), (s, untouched), (s, done)], lost)
    assert [t.id for _, t in again] == lost
    assert [t.node for _, t in again][:2] == [f"{F}::test_p[b]", f"{F}::test_p[c]"]
    assert all(t.expect == "crash" for _, t in again[:2])  # expectations carry over
    assert again[2][1] is untouched


def test_a_whole_file_request_retries_its_lost_tests():
    s = Scenario("s", Path("/s.yaml"))
    f = TestRef("guest-tests/test_x.py", F)
    again = runner.retry_items([(s, f)], ["guest-tests/test_x.py::test_b"])
    assert [(t.id, t.node) for _, t in again] == [("guest-tests/test_x.py::test_b", f"{F}::test_b")]


def test_guest_cmdline_panics_on_oops_and_shows_every_kasan_report():
    assert runner.guest_cmdline("CONFIG_X=y\n") == ("oops=panic",)
    assert "kasan_multi_shot" in runner.guest_cmdline("CONFIG_X=y\nCONFIG_KASAN=y\n")
