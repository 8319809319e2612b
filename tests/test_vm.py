"""The vng command line: which root file system the guest gets, and the guest's command."""

import os
import shlex
import stat
import subprocess
from pathlib import Path

import pytest

from harness import accel, runner, vm


def daemon(tmp_path: Path, name: str, help_text: str) -> str:
    p = tmp_path / name
    p.write_text(f"#!/bin/sh\ncat <<'X'\n{help_text}\nX\n")
    p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return str(p)


@pytest.fixture
def paths(monkeypatch):
    def use(*ps):
        monkeypatch.setattr(vm, "VIRTIOFSD_PATHS", tuple(ps))
        vm.rust_virtiofsd.cache_clear()
    yield use
    vm.rust_virtiofsd.cache_clear()


TCG = accel.Accel("tcg", "test")


def test_qemus_c_virtiofsd_means_a_cached_9p_root(tmp_path, paths):
    c = daemon(tmp_path, "c-virtiofsd", "usage: virtiofsd [options]\n    --socket-path=PATH")
    paths(c, str(tmp_path / "missing"))
    cmd = vm.vng_command(vm.VMSpec(Path("/k/bzImage")), TCG, "true")
    assert "--force-9p" in cmd
    assert cmd[cmd.index("--force-9p") + 2] == vm.ROOTFLAGS_9P
    assert "cache=loose" in vm.ROOTFLAGS_9P and "--disable-kvm" in cmd


def test_the_rust_virtiofsd_is_left_to_vng(tmp_path, paths):
    c = daemon(tmp_path, "c-virtiofsd", "usage: virtiofsd [options]")
    rust = daemon(tmp_path, "virtiofsd", "Usage: virtiofsd [OPTIONS]\n      --shared-dir <SHARED_DIR>")
    paths(c, rust)
    assert vm.rust_virtiofsd() == rust
    cmd = vm.vng_command(vm.VMSpec(Path("/k/bzImage")), TCG, "true")
    assert "--force-9p" not in cmd and vm.ROOTFLAGS_9P not in cmd


def test_the_bare_baseline_gets_vngs_defaults(tmp_path, paths):
    paths(daemon(tmp_path, "c-virtiofsd", "usage"))
    cmd = vm.vng_command(vm.VMSpec(Path("/k/bzImage"), tuned_root=False), TCG, "true")
    assert "--force-9p" not in cmd and vm.ROOTFLAGS_9P not in cmd


def test_the_agent_runs_without_site_on_the_environments_packages():
    words = shlex.split(runner.agent_command(Path("/r/plan.json")).split("&&", 1)[1])
    env = dict(w.split("=", 1) for w in words if "=" in w and not w.startswith("-"))
    argv = [w for w in words if w.split("=", 1)[0] not in env]
    assert argv[1:] == ["-S", "-m", "harness.guest.agent", "/r/plan.json"]
    path = env["PYTHONPATH"].split(os.pathsep)
    assert path[0] == str(runner.REPO)
    assert env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] == "1"
    # The same interpreter, flags and environment find pytest and the agent, as in the guest.
    r = subprocess.run([argv[0], "-S", "-c", "import sys, pytest, harness.guest.agent; "
                        "print('site' in sys.modules)"],
                       env={**env, "PATH": os.environ["PATH"]}, cwd="/",
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


# --- the console's clocks ----------------------------------------------------------------------

STALL = "[  612.540810] rcu: INFO: rcu_sched self-detected stall on CPU"


def test_a_stall_report_after_the_last_marker_starts_the_stall_clock_once():
    assert vm.stall_state("wqh: begin a\n" + STALL, 0, None, 5.0) == 5.0
    assert vm.stall_state(STALL + "\n" + STALL, 0, 5.0, 9.0) == 5.0
    assert vm.stall_state(STALL + "\nwqh: end a\n", 0, 5.0, 9.0) is None
    assert vm.stall_state("plain kernel chatter", 0, 5.0, 9.0) == 5.0
    # A marker and a new stall in one read restart the clock.
    assert vm.stall_state("wqh: end a\nwqh: begin b\n" + STALL, 0, 5.0, 9.0) == 9.0
    # What was already seen (before new_from) does not count again.
    old = "wqh: begin a\n" + STALL + "\n"
    assert vm.stall_state(old + "chatter", len(old), 5.0, 9.0) == 5.0
    assert vm.stall_state(old + "chatter", len(old), None, 9.0) is None
    for line in ("watchdog: BUG: soft lockup - CPU#1 stuck for 26s! [python:53]",
                 "INFO: task python:53 blocked for more than 122 seconds.",
                 "rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:"):
        assert vm.stall_state(line, 0, None, 1.0) == 1.0, line


def _fake_vng(monkeypatch, script: str):
    monkeypatch.setattr(vm, "vng_command", lambda spec, acc, cmd: ["sh", "-c", script])


def test_a_kernel_that_keeps_reporting_a_stall_is_a_hang(tmp_path, monkeypatch):
    # The stall report repeats faster than the silence clock runs out: only the stall clock ends it.
    _fake_vng(monkeypatch, f"echo 'wqh: begin t1'; while :; do echo '{STALL}'; sleep 0.3; done")
    res = vm.run(vm.VMSpec(Path("/k/bzImage"), no_output_s=2, total_s=60), TCG, "x",
                 tmp_path / "console.log")
    assert res.end == "hang" and res.duration_s < 20
    assert "reported a stall" in res.notes[0]
    assert STALL in (tmp_path / "console.log").read_text()


def test_tests_that_go_on_after_a_stall_report_are_not_cut(tmp_path, monkeypatch):
    # Six tests of 0.4 s, each with a stall report: 2.4 s in all, longer than the 2 s window.
    _fake_vng(monkeypatch, f"echo '{STALL}'; for i in 1 2 3 4 5 6; do echo \"wqh: begin t$i\"; "
                           f"echo '{STALL}'; sleep 0.4; echo \"wqh: end t$i\"; done")
    res = vm.run(vm.VMSpec(Path("/k/bzImage"), no_output_s=2, total_s=60), TCG, "x",
                 tmp_path / "console.log")
    assert res.end == "exited" and res.notes == []
    assert "wqh: end t6" in (tmp_path / "console.log").read_text()
