"""Verdicts from recorded runs: the console logs and guest results files of real VMs."""

import json
from pathlib import Path

from harness import console, verdict
from harness.guest import protocol
from harness.vm import VMResult

DATA = Path(__file__).resolve().parent / "data" / "console"
SMOKE = "guest-tests/test_smoke.py::test_key_update_gives_one_record"
PANIC = "../guest/test_vm_ends_on_purpose.py::test_panic"
SILENCE = "../guest/test_vm_ends_on_purpose.py::test_silence"
AFTER = "../guest/test_vm_ends_on_purpose.py::test_after"


def recorded(name):
    text = (DATA / f"{name}.log").read_text(errors="replace")
    guest = json.loads((DATA / f"{name}.guest.json").read_text())
    return text, guest


def vmres(end):
    return VMResult(["vng"], Path("console.log"), end, 0, 10.0)


def test_clean_pass():
    text, guest = recorded("smoke-pass")
    (r,) = verdict.decide([("smoke", SMOKE, "pass")], guest, vmres("exited"), text, "k", "vm1")
    assert (r.outcome, r.as_expected, r.reports) == ("pass", True, [])
    assert r.duration_s == guest["tests"][0]["duration_s"]
    assert console.findings(text) == []


def test_panic_in_a_test_is_a_crash_with_its_report():
    text, guest = recorded("panic")
    rs = verdict.decide([("p", PANIC, "pass"), ("p", AFTER, "pass")], guest, vmres("panic"),
                        text, "k", "vm1")
    assert [r.outcome for r in rs] == ["crash", protocol.LOST]
    assert rs[0].reports[0].type == "PANIC"
    assert rs[0].reports[0].title == "Kernel panic - not syncing: sysrq triggered crash"
    assert "VM ended (panic)" in rs[0].message


def test_expected_crash_is_xfail():
    text, guest = recorded("panic")
    r = verdict.decide([("p", PANIC, "crash")], guest, vmres("panic"), text, "k", "vm1")[0]
    assert r.outcome == "xfail" and r.as_expected


def test_a_test_running_at_a_hang_is_hang():
    text, guest = recorded("hang")
    rs = verdict.decide([("h", SILENCE, "pass"), ("h", AFTER, "pass")], guest, vmres("hang"),
                        text, "k", "vm1")
    assert [r.outcome for r in rs] == ["hang", protocol.LOST]


def test_no_results_file_at_all_is_never_a_pass():
    text, _ = recorded("smoke-pass")
    (r,) = verdict.decide([("smoke", SMOKE, "pass")], None, vmres("exited"), text, "k", "vm1")
    assert r.outcome == protocol.LOST and not r.as_expected


def test_a_report_inside_a_passing_test_makes_it_crash():
    text, guest = recorded("smoke-pass")
    lines = text.split("\n")
    i = next(n for n, ln in enumerate(lines) if "wqh: begin" in ln)
    lines.insert(i + 1, "[   13.01] BUG: KASAN: slab-out-of-bounds in watch_queue_set_filter+0x1f/0x2c0")
    (r,) = verdict.decide([("smoke", SMOKE, "pass")], guest, vmres("exited"), "\n".join(lines),
                          "k", "vm1")
    assert r.outcome == "crash"
    assert r.reports[0].title == "BUG: KASAN: slab-out-of-bounds in watch_queue_set_filter+0x1f/0x2c0"


def test_segments_split_boot_tests_and_teardown():
    text, _ = recorded("smoke-pass")
    owners = [s.owner for s in console.segments(text)]
    assert owners == ["boot", SMOKE, "teardown"]
