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
