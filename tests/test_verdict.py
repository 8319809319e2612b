"""Verdicts from recorded runs: the console logs and guest results files of real VMs."""

import json
from pathlib import Path

from harness import console, report, verdict
from harness.guest import protocol
from harness.vm import VMResult


def owners(text: str) -> dict:
    """The console's reports per owner, as the runner hands them to decide() (one parse)."""
    return verdict.reports_by_owner(report.parse_text(text))

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
    (r,) = verdict.decide([("smoke", SMOKE, "pass")], guest, vmres("exited"), owners(text), "k", "vm1")
    assert (r.outcome, r.as_expected, r.reports) == ("pass", True, [])
    assert r.duration_s == guest["tests"][0]["duration_s"]
    assert report.parse_text(text) == []


def test_panic_in_a_test_is_a_crash_with_its_report():
    text, guest = recorded("panic")
    rs = verdict.decide([("p", PANIC, "pass"), ("p", AFTER, "pass")], guest, vmres("panic"),
                        owners(text), "k", "vm1")
    assert [r.outcome for r in rs] == ["crash", protocol.LOST]
    assert rs[0].reports[0].type == "PANIC"
    # syzbot's spelling of a panic with no other report before it
    assert rs[0].reports[0].title == "kernel panic: sysrq triggered crash"
    assert rs[0].reports[0].test == PANIC and not rs[0].reports[0].corrupted
    assert "VM ended (panic)" in rs[0].message


def test_expected_crash_is_xfail():
    text, guest = recorded("panic")
    r = verdict.decide([("p", PANIC, "crash")], guest, vmres("panic"), owners(text), "k", "vm1")[0]
    assert r.outcome == "xfail" and r.as_expected


def test_a_test_running_at_a_hang_is_hang():
    text, guest = recorded("hang")
    rs = verdict.decide([("h", SILENCE, "pass"), ("h", AFTER, "pass")], guest, vmres("hang"),
                        owners(text), "k", "vm1")
    assert [r.outcome for r in rs] == ["hang", protocol.LOST]


def test_no_results_file_at_all_is_never_a_pass():
    text, _ = recorded("smoke-pass")
    (r,) = verdict.decide([("smoke", SMOKE, "pass")], None, vmres("exited"), owners(text), "k", "vm1")
    assert r.outcome == protocol.LOST and not r.as_expected


def test_a_report_inside_a_passing_test_makes_it_crash():
    text, guest = recorded("smoke-pass")
    lines = text.split("\n")
    i = next(n for n, ln in enumerate(lines) if "wqh: begin" in ln)
    lines.insert(i + 1, "[   13.01] BUG: KASAN: slab-out-of-bounds in watch_queue_set_filter+0x1f/0x2c0")
    (r,) = verdict.decide([("smoke", SMOKE, "pass")], guest, vmres("exited"), owners("\n".join(lines)),
                          "k", "vm1")
    assert r.outcome == "crash"
    # one header line, no "Write of size" line, no end banner: titled, and said to be cut
    assert r.reports[0].title == "KASAN: slab-out-of-bounds in watch_queue_set_filter"
    assert (r.reports[0].corrupted, r.reports[0].corrupted_reason) == (True, "only a fragment of a report")


def test_segments_split_boot_tests_and_teardown():
    text, _ = recorded("smoke-pass")
    owners = [s.owner for s in console.segments(text)]
    assert owners == ["boot", SMOKE, "teardown"]


REPORTS = Path(__file__).resolve().parent / "data" / "reports"
LOSS65 = "/work/main/guest-tests/test_loss.py::test_capacity_is_32_per_page_then_one_loss"


def test_an_oops_in_a_test_is_attributed_to_it():
    """Real run: a negative kernel oopses in pipe_read during one parameter of a test, the VM hangs."""
    with open(REPORTS / "null-deref-pipe-read.log", encoding="utf-8", errors="replace", newline="") as fh:
        text = fh.read()
    guest = json.loads((REPORTS / "null-deref-pipe-read.guest.json").read_text())
    rs = verdict.decide([("n", LOSS65, "pass")], guest, vmres("hang"), owners(text), "k", "vm1")
    by_id = {r.test: r for r in rs}
    hit = by_id[LOSS65 + "[65]"]
    assert hit.outcome == "crash"  # the oops explains the hang that followed
    assert hit.message.startswith("VM ended (hang)")
    assert [(x.title, x.type, x.count) for x in hit.reports] == [
        ("BUG: unable to handle kernel NULL pointer dereference in pipe_read", "BUG", 1)]
    assert hit.reports[0].text.count("\n") > 20 and hit.reports[0].frames[0].func == "pipe_read"
    assert all(not r.reports for t, r in by_id.items() if t != LOSS65 + "[65]")


def test_the_same_title_twice_in_a_test_is_one_report_with_a_count():
    text, guest = recorded("smoke-pass")
    lines = text.split("\n")
    i = next(n for n, ln in enumerate(lines) if "wqh: begin" in ln)
    # SYNTHETIC, kernel/panic.c __warn() format: the same WARNING twice inside the test
    warning = ["[   13.100000] ------------[ cut here ]------------",
               "[   13.100001] WARNING: CPU: 0 PID: 53 at kernel/watch_queue.c:250 post_one_notification+0x2a1/0x300",
               "[   13.100002] RIP: 0010:post_one_notification+0x2a1/0x300",
               "[   13.100003] Call Trace:", "[   13.100004]  <TASK>",
               "[   13.100005]  __post_watch_notification+0x2b4/0x3c0", "[   13.100006]  </TASK>",
               "[   13.100007] ---[ end trace 0000000000000000 ]---"]
    lines[i + 1:i + 1] = warning + warning
    (r,) = verdict.decide([("smoke", SMOKE, "pass")], guest, vmres("exited"), owners("\n".join(lines)), "k", "vm1")
    assert r.outcome == "crash"
    assert [(x.title, x.count, x.corrupted) for x in r.reports] == [("WARNING in post_one_notification", 2, False)]


def test_an_expected_crash_needs_the_expected_title():
    with open(REPORTS / "null-deref-pipe-read.log", encoding="utf-8", errors="replace", newline="") as fh:
        text = fh.read()
    guest = json.loads((REPORTS / "null-deref-pipe-read.guest.json").read_text())
    right = "BUG: unable to handle kernel NULL pointer dereference in pipe_read"
    ok = {r.test: r for r in verdict.decide([("n", LOSS65, "crash", right)], guest, vmres("panic"),
                                            owners(text), "k", "vm1")}
    assert ok[LOSS65 + "[65]"].outcome == "xfail"
    bad = {r.test: r for r in verdict.decide([("n", LOSS65, "crash", "WARNING in pipe_read")], guest,
                                             vmres("panic"), owners(text), "k", "vm1")}
    assert bad[LOSS65 + "[65]"].outcome == "crash"
    assert "expected a report titled 'WARNING in pipe_read'" in bad[LOSS65 + "[65]"].message
    # ... and that is not what the scenario expected: the run fails.
    assert ok[LOSS65 + "[65]"].as_expected and not bad[LOSS65 + "[65]"].as_expected


def test_an_expected_crash_without_any_report_is_not_as_expected():
    # The VM died in the test, but no report (or none the markers give to it) was seen.
    guest = {"done": False, "tests": [{"id": "t.py::test_a", "outcome": "running",
                                       "duration_s": None, "message": ""}]}
    (r,) = verdict.decide([("s", "t.py::test_a", "crash", "KASAN: x in y")], guest,
                          vmres("panic"), owners(""), "k", "vm1")
    assert (r.outcome, r.expected, r.as_expected) == ("crash", "crash", False)


def test_a_whole_file_request_gets_every_test_of_it():
    guest = {"done": True, "tests": [
        {"id": "guest-tests/t.py::test_a", "outcome": "pass", "duration_s": 0.1, "message": ""},
        {"id": "guest-tests/t.py::test_b", "outcome": "fail", "duration_s": 0.1, "message": "x"}]}
    rs = verdict.decide([("s", "guest-tests/t.py", "pass")], guest, vmres("exited"), owners(""), "k", "vm1")
    assert [(r.test, r.outcome) for r in rs] == [("guest-tests/t.py::test_a", "pass"),
                                                ("guest-tests/t.py::test_b", "fail")]


LEAK_LOG = """\
[   50.000000] wqh: begin wqh:kmemleak
[   60.100000] unreferenced object 0xffff888003a1c000 (size 128):
[   60.100001]   comm "python3", pid 201, jiffies 4294937296 (age 6.120s)
[   60.100002]   hex dump (first 32 bytes):
[   60.100003]     00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  ................
[   60.100004]   backtrace:
[   60.100005]     [<ffffffff8129d5a1>] __kmalloc+0x41/0x90
[   60.100006]     [<ffffffff812f1c0e>] watch_queue_set_size+0x7e/0x2b0
[   60.100007]     [<ffffffff812f3c0e>] pipe_ioctl+0x5e/0x100
[   60.100008]     [<ffffffff81300c0e>] __x64_sys_ioctl+0x8e/0xd0
[   60.200000] wqh: end wqh:kmemleak fail 10.200s
"""  # SYNTHETIC: the agent's markers around mm/kmemleak.c's print_unreferenced() format


def test_the_leak_check_is_a_result_expected_only_with_its_title():
    per = owners(LEAK_LOG)
    guest = {"done": True, "tests": [], "kmemleak": {"leaks": 1, "duration_s": 10.2}}
    r = verdict.leak_check("s", None, guest, per, "k", "vm1")
    assert (r.test, r.outcome, [x.title for x in r.reports]) == (
        "wqh:kmemleak", "crash", ["memory leak in watch_queue_set_size"])
    assert verdict.leak_check("s", "memory leak in watch_queue_set_size", guest, per, "k", "vm1").outcome == "xfail"
    assert verdict.leak_check("s", "memory leak in keyctl_watch_key", guest, per, "k", "vm1").outcome == "crash"
    clean = {"done": True, "tests": [], "kmemleak": {"leaks": 0}}
    assert verdict.leak_check("s", None, clean, {}, "k", "vm1").outcome == "pass"
    assert verdict.leak_check("s", "memory leak in x", clean, {}, "k", "vm1").outcome == "xpass"
    assert verdict.leak_check("s", None, {"done": True, "tests": []}, {}, "k", "vm1") is None


def test_a_new_taint_without_a_parsed_report_is_a_report():
    guest = {"done": True, "tests": [
        {"id": "t.py::test_a", "outcome": "pass", "duration_s": 0.1, "message": "",
         "taint": {"before": 0, "after": 1 << 9 | 1 << 7}},  # W and D
        {"id": "t.py::test_b", "outcome": "pass", "duration_s": 0.1, "message": "",
         "taint": {"before": 512, "after": 512}}]}
    rs = verdict.decide([("s", "t.py", "pass")], guest, vmres("exited"), owners(""), "k", "vm1")
    a, b = rs
    assert (a.outcome, [(x.title, x.type) for x in a.reports]) == ("crash", [("kernel tainted: DW", "TAINT")])
    assert (b.outcome, b.reports) == ("pass", [])


def test_an_expected_title_holds_across_versions_that_spell_it_differently():
    """6.12's KASAN says slab-use-after-free where 6.1 said use-after-free: the wall's 6.1
    expectation is met on 6.12, and the other way round; other titles still differ."""
    from harness import report

    old = "KASAN: use-after-free Write in watch_queue_pipe_buf_release"
    new = "KASAN: slab-use-after-free Write in watch_queue_pipe_buf_release"
    assert report.same_bug(old, new) and report.same_bug(new, old) and report.same_bug(old, old)
    assert not report.same_bug(old, "KASAN: slab-use-after-free Read in watch_queue_pipe_buf_release")
    assert not report.same_bug(old, "KASAN: slab-out-of-bounds Write in watch_queue_pipe_buf_release")
    assert not report.same_bug("KASAN: use-after-free Write in f", "KASAN: use-after-free Write in g")
    from harness import verdict
    from harness.report import Report

    got = verdict._expected("crash", "crash", old, [Report(new, "KASAN")])
    assert got == ("xfail", "")
    assert verdict._expected("crash", "crash", old, [Report(old.replace("Write", "Read"), "KASAN")])[0] == "crash"
