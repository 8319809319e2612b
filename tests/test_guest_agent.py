"""The guest agent run on the host: markers, the results file, outcomes."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from harness.guest import protocol


def run_agent(tmp_path, tests_src, **extra):
    tdir = tmp_path / "t"
    tdir.mkdir()
    f = tdir / "test_mix.py"
    f.write_text(textwrap.dedent(tests_src))
    out = tmp_path / "out"
    out.mkdir()
    kmsg = tmp_path / "kmsg.txt"
    plan = {"results_dir": str(out), "kmsg": str(kmsg),
            "tests": [{"id": "t/test_mix.py::test_ok", "node": f"{f}::test_ok"},
                      {"id": "t/test_mix.py::test_bad", "node": f"{f}::test_bad"},
                      {"id": "t/test_mix.py::test_skip", "node": f"{f}::test_skip"},
                      {"id": "t/test_mix.py::test_param", "node": f"{f}::test_param"}], **extra}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    r = subprocess.run([sys.executable, "-m", "harness.guest.agent", str(tmp_path / "plan.json")],
                       capture_output=True, text=True, cwd=tmp_path)
    return r, protocol.read(str(out / protocol.RESULTS)), kmsg.read_text()


SRC = """\
    import pytest

    def test_ok():
        assert 1 + 1 == 2

    def test_bad():
        assert 40 + 2 == 43, "arithmetic"

    def test_skip():
        pytest.skip("no watch queue here")

    @pytest.mark.parametrize("n", [1, 2])
    def test_param(n):
        assert n in (1, 2)
    """


def test_outcomes_markers_and_results_file(tmp_path):
    r, res, kmsg = run_agent(tmp_path, SRC)
    assert r.returncode == 0, r.stderr
    assert res["done"] is True and res["pytest_exit"] == 1
    got = {t["id"]: t["outcome"] for t in res["tests"]}
    assert got == {"t/test_mix.py::test_ok": "pass", "t/test_mix.py::test_bad": "fail",
                   "t/test_mix.py::test_skip": "skip",
                   "t/test_mix.py::test_param[1]": "pass", "t/test_mix.py::test_param[2]": "pass"}
    bad = next(t for t in res["tests"] if t["id"].endswith("test_bad"))
    assert "arithmetic" in bad["message"]
    skip = next(t for t in res["tests"] if t["id"].endswith("test_skip"))
    assert "no watch queue here" in skip["message"]
    lines = kmsg.splitlines()
    assert lines[0] == "<5>wqh: begin t/test_mix.py::test_ok ."
    assert lines[1].startswith("<5>wqh: end t/test_mix.py::test_ok pass ")
    assert lines[-1] == "<5>wqh: agent done"
    assert sum(1 for ln in lines if "wqh: begin" in ln) == 5


def test_fail_fast_stops_at_the_first_failure_and_leaves_the_rest_lost(tmp_path):
    """mutate's plan: the first failure decides, the tests after it never start."""
    r, res, kmsg = run_agent(tmp_path, SRC, fail_fast=True)
    assert r.returncode == 0, r.stderr
    got = {t["id"]: t["outcome"] for t in res["tests"]}
    assert got == {"t/test_mix.py::test_ok": "pass", "t/test_mix.py::test_bad": "fail",
                   "t/test_mix.py::test_skip": "lost", "t/test_mix.py::test_param[1]": "lost",
                   "t/test_mix.py::test_param[2]": "lost"}
    assert res["done"] is True and sum(1 for ln in kmsg.splitlines() if "wqh: begin" in ln) == 2


def test_import_error_fails_the_module_tests(tmp_path):
    r, res, _ = run_agent(tmp_path, "import no_such_module_wqh\n\ndef test_ok():\n    pass\n")
    assert r.returncode == 0
    outcomes = {t["id"]: t["outcome"] for t in res["tests"]}
    assert set(outcomes.values()) == {"fail"}
    assert "no_such_module_wqh" in res["tests"][0]["message"]


def test_initial_state_is_lost():
    st = protocol.initial(["a", "b"])
    assert st["done"] is False
    assert [t["outcome"] for t in st["tests"]] == ["lost", "lost"]


class FakeKmemleak:
    """The debugfs file's protocol: commands in, the current report out (one list per read)."""

    def __init__(self, reads):
        self.reads = list(reads)
        self.commands = []

    def command(self, cmd, path):
        self.commands.append(cmd)

    def read(self, path):
        return self.reads.pop(0)


LEAK_A = """unreferenced object 0xffff888003a1c000 (size 64):
  comm "python3", pid 201, jiffies 4294937296 (age 6.120s)
  hex dump (first 32 bytes):
    00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  ................
  backtrace:
    [<ffffffff8129d5a1>] __kmalloc+0x41/0x90
    [<ffffffff812f1c0e>] watch_queue_set_size+0x7e/0x2b0
"""
LEAK_B = LEAK_A.replace("0xffff888003a1c000", "0xffff888003a1d000").replace("(size 64)", "(size 32)")


def test_kmemleak_keeps_only_objects_reported_by_two_reads(monkeypatch):
    from harness.guest import kmemleak
    fake = FakeKmemleak([LEAK_A + LEAK_B, LEAK_B])
    monkeypatch.setattr(kmemleak, "_command", fake.command)
    monkeypatch.setattr(kmemleak, "_read", fake.read)
    slept = []
    blocks = kmemleak.confirmed_leaks("/x", since=100.0, sleep=slept.append, clock=lambda: 102.0)
    assert slept == [3.0]  # up to kmemleak's 5 s minimum age after the last test
    assert blocks == [LEAK_B.rstrip("\n")]
    assert fake.commands == ["scan", "scan", "scan", "clear"]


def test_kmemleak_nothing_reported_means_no_third_scan(monkeypatch):
    from harness.guest import kmemleak
    fake = FakeKmemleak([""])
    monkeypatch.setattr(kmemleak, "_command", fake.command)
    monkeypatch.setattr(kmemleak, "_read", fake.read)
    assert kmemleak.confirmed_leaks("/x", since=0.0, sleep=lambda s: None, clock=lambda: 50.0) == []
    assert fake.commands == ["scan", "scan"]


def test_the_first_test_waits_for_the_boot_flush_and_only_the_first(tmp_path, monkeypatch):
    from harness.guest import agent

    marks = []
    monkeypatch.setattr(agent, "kmsg", marks.append)
    monkeypatch.setattr(agent, "tainted", lambda: 0)
    rec = agent.Recorder(str(tmp_path), [{"id": "a", "node": "/t/a"}, {"id": "b", "node": "/t/b"}])
    rec.before_first = lambda: marks.append("flushed")
    rec.pytest_runtest_logstart("a", None)
    rec.pytest_runtest_logfinish("a", None)
    rec.pytest_runtest_logstart("b", None)
    rec.wait_first()  # the end of the run: nothing left to wait for
    assert marks[0] == "flushed" and marks.count("flushed") == 1
    assert marks[1].startswith(protocol.MARK_BEGIN + " a")


def test_jiffies_from_timer_list_else_from_the_uptime(tmp_path):
    from harness.guest import kmemleak
    up = tmp_path / "uptime"
    up.write_text("12.50 20.00\n")
    tl = tmp_path / "timer_list"
    tl.write_text("Timer List Version: v0.9\nHRTIMER_MAX_CLOCK_BASES: 8\nnow at 14497264855 nsecs\n\n"
                  "cpu: 0\n clock 0:\njiffies: 4294895738\n")
    assert kmemleak.jiffies_now(250, str(up), str(tl)) == 4294895738
    # No timer_list: INITIAL_JIFFIES + (uptime - 2 s) * HZ, erring towards counting an object.
    assert kmemleak.jiffies_now(250, str(up), str(tmp_path / "none")) == 2**32 - 300 * 250 + 2625


def test_objects_born_before_the_first_test_are_not_leaks(monkeypatch):
    from harness.guest import kmemleak
    boot = LEAK_A.replace("0xffff888003a1c000", "0xffff888003a10000").replace(
        "jiffies 4294937296 (age 6.120s)", "jiffies 4294892296 (age 51.120s)")
    newer = LEAK_B.replace(" (age 6.120s)", "")  # kernels after 6.1 print no age
    fake = FakeKmemleak([boot + LEAK_A + newer, boot + LEAK_A + newer])
    monkeypatch.setattr(kmemleak, "_command", fake.command)
    monkeypatch.setattr(kmemleak, "_read", fake.read)
    blocks = kmemleak.confirmed_leaks("/x", since=0.0, sleep=lambda s: None, clock=lambda: 50.0,
                                      born_after=4294930000)
    assert blocks == [LEAK_A.rstrip("\n"), newer.rstrip("\n")]
    assert kmemleak.born_before(boot, 4294930000) and not kmemleak.born_before("no comm line", 1)


def test_a_real_leak_report_carries_the_jiffies_the_filter_reads():
    from harness.guest import kmemleak
    text = (Path(__file__).parent / "data" / "reports" / "kmemleak-watch-not-freed.log").read_text()
    # As the agent reads it from debugfs: the console's timestamps off.
    import re
    block = re.sub(r"(?m)^\[[ \d.]+\] ", "", text[text.index("unreferenced object"):])
    assert kmemleak.born_before(block, 2**64) and not kmemleak.born_before(block, 0)


def test_the_root_mount_line_is_recorded(tmp_path):
    from harness.guest import agent
    m = tmp_path / "mounts"
    m.write_text("proc /proc proc rw 0 0\n/dev/root / 9p ro,relatime,dirsync,loose,access=any,"
                 "msize=512000,trans=virtio 0 0\nsys /sys sysfs rw 0 0\n")
    assert agent.root_mount(str(m)).split()[:3] == ["/dev/root", "/", "9p"]
    assert agent.root_mount(str(tmp_path / "none")) == ""
