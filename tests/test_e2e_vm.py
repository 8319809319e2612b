"""End to end, for real: build the default kernel, boot it with virtme-ng, run guest tests.

These use the real cache (~/.cache/wqh or $WQH_CACHE): the first run on a machine
builds the kernel (minutes), later runs reuse it.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import build, outdir, source, vm
from harness.paths import SCENARIOS

DATA = Path(__file__).resolve().parent / "data"

pytestmark = pytest.mark.vm
WQH = [sys.executable, "-m", "harness"]


def wqh(*args, timeout=3000, **kw):
    return subprocess.run(WQH + list(args), capture_output=True, text=True, timeout=timeout, **kw)


def results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def staged(out: Path, pattern: str):
    """Files of a run in progress: it writes beside OUT, in a staging directory (outdir.py)."""
    return out.parent.glob(f".{out.name}{outdir.PARTIAL}*/{pattern}")


def staging_prefix(out: Path) -> str:
    return f"{out.parent}/.{out.name}{outdir.PARTIAL}"


def no_process_mentions(text: str) -> bool:
    r = subprocess.run(["pgrep", "-af", text], capture_output=True, text=True)
    return r.stdout.strip() == ""


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    r = wqh("run", str(SCENARIOS / "smoke.yaml"), "--out", str(out))
    return r, out


def test_smoke_passes_on_the_default_kernel(smoke):
    r, out = smoke
    assert r.returncode == 0, r.stdout + r.stderr
    res = results(out)
    assert [(t["test"], t["outcome"]) for t in res["tests"]] == [
        ("guest-tests/test_smoke.py::test_key_update_gives_one_record", "pass")]
    assert res["summary"] == {"pass": 1}
    assert res["tests"][0]["kernel"].startswith("debian:linux-source-6.1:")
    assert f"artifacts: {out}" in r.stdout
    (vmdir,) = [d for d in out.iterdir() if d.name.startswith("vm1-")]
    console = (vmdir / "console.log").read_text()
    assert "wqh: begin guest-tests/test_smoke.py::test_key_update_gives_one_record" in console
    assert "wqh: end guest-tests/test_smoke.py::test_key_update_gives_one_record pass" in console
    assert "wqh: agent done" in console
    cmd = (vmdir / "vng-command.txt").read_text()
    assert "--run" in cmd and "--exec" in cmd
    guest = json.loads((vmdir / "guest" / "guest-results.json").read_text())
    if not vm.rust_virtiofsd():  # the 9p root, cached: as the guest's mount table has it
        assert "--force-9p" in cmd and vm.ROOTFLAGS_9P in cmd
        assert guest["root"].split()[2] == "9p" and ",loose," in guest["root"], guest["root"]
    else:
        assert guest["root"].split()[2] == "virtiofs", guest["root"]
    (kdir,) = (out / "kernels").iterdir()
    dot = (kdir / ".config").read_text()
    assert "CONFIG_WATCH_QUEUE=y" in dot and "CONFIG_KEY_NOTIFICATIONS=y" in dot
    assert (kdir / "build-log-tail.txt").exists()
    assert guest["done"] is True
    assert "wqh: begin" in (vmdir / "guest" / "dmesg.txt").read_text()
    for f in ("junit.xml", "results.ktap"):
        assert (out / f).exists()


def test_rerun_reuses_the_build(smoke, tmp_path):
    assert smoke[0].returncode == 0
    r = wqh("run", str(SCENARIOS / "smoke.yaml"), "--out", str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    (kdir,) = (tmp_path / "kernels").iterdir()
    assert json.loads((kdir / "build.json").read_text())["reused"] is True
    assert "reused" in r.stdout


def test_a_changed_fragment_builds_from_the_nearest_kernel_and_boots(smoke, tmp_path):
    """One option changed: the build starts from the smoke kernel's directory, compiles the
    files that use the option, and the kernel boots and passes."""
    from harness import config

    assert smoke[0].returncode == 0
    frag = tmp_path / "uarts.config"
    frag.write_text("CONFIG_SERIAL_8250_NR_UARTS=3\nCONFIG_SERIAL_8250_RUNTIME_UARTS=3\n")
    scen = tmp_path / "uarts.yaml"
    smoke_test = SCENARIOS.parent / "guest-tests" / "test_smoke.py"
    scen.write_text(f"name: uarts\nkernel:\n  fragments: [watch-queue, {frag}]\n"
                    f"tests:\n  - {smoke_test}::test_key_update_gives_one_record\n")
    src = source.default_source()
    cfg = config.merge(src, config.fragment_list(["watch-queue", str(frag)]))
    bdir = build.builddir_for(build.BuildKey(src.identity, cfg.hash))
    shutil.rmtree(bdir, ignore_errors=True)  # a finished one from an earlier run would be reused
    (donor,) = (smoke[1] / "kernels").iterdir()
    r = wqh("run", str(scen), "--out", str(tmp_path / "r"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"seeded from {donor.name}" in r.stdout
    cc = [ln.split()[-1] for ln in (bdir / "build.log").read_text().splitlines()
          if ln.startswith("  CC ")]
    assert "drivers/tty/serial/8250/8250_core.o" in cc
    assert len(cc) < 40, f"expected an incremental build, compiled {len(cc)}: {cc[:20]}"
    assert "CONFIG_SERIAL_8250_NR_UARTS=3" in (bdir / ".config").read_text()


def test_a_failing_guest_test_is_fail_and_exit_1(smoke, tmp_path):
    r = wqh("run", str(DATA / "scenarios" / "fail-on-purpose.yaml"), "--out", str(tmp_path))
    assert r.returncode == 1, r.stdout + r.stderr
    (t,) = results(tmp_path)["tests"]
    assert t["outcome"] == "fail" and t["expected"] == "pass"
    assert "assert 7 == 8" in t["message"]


@pytest.mark.slow
def test_an_impossible_fragment_is_exit_2_naming_option_and_dependency(tmp_path):
    r = wqh("run", str(DATA / "scenarios" / "impossible-kconfig.yaml"), "--out", str(tmp_path))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "CONFIG_USB_STORAGE=y" in r.stderr
    assert "impossible.config:3" in r.stderr
    assert "unmet dependency" in r.stderr and "CONFIG_USB=n" in r.stderr
    (t,) = results(tmp_path)["tests"]
    assert t["outcome"] == "infra-error"


def _wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_sigterm_mid_boot_leaves_no_qemu(smoke, tmp_path):
    out = tmp_path / "run"
    p = subprocess.Popen(WQH + ["run", str(SCENARIOS / "smoke.yaml"), "--out", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    console = out / "vm1-*"

    def booting():
        logs = list(staged(out, "vm1-*/console.log"))
        return bool(logs) and logs[0].stat().st_size > 0

    _wait_for(booting, 120, f"a console log under {console}")
    assert not no_process_mentions(staging_prefix(out)), "QEMU should be running now"
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=30)
    assert p.returncode == 128 + signal.SIGTERM
    time.sleep(0.5)
    assert no_process_mentions(staging_prefix(out)), "QEMU outlived wqh"
    assert results(out)["interrupted"] == "SIGTERM"  # what it had, moved into place, marked
    r = wqh("run", str(SCENARIOS / "smoke.yaml"), "--out", str(tmp_path / "again"))
    assert r.returncode == 0, r.stdout + r.stderr


def two_shapes(tmp_path, extra_tests=0):
    """Two scenarios on the smoke kernel that need two boots (their VM shapes differ)."""
    smoke_test = SCENARIOS.parent / "guest-tests" / "test_smoke.py"
    paths = []
    for name, mem in (("wide", "1G"), ("narrow", "768M")):
        f = tmp_path / f"{name}.yaml"
        tests = "".join(f"  - {smoke_test}::test_key_update_gives_one_record\n"
                        for _ in range(1 + extra_tests))
        f.write_text(f"name: {name}\nkernel:\n  fragments: [watch-queue]\n"
                     f"vm:\n  cpus: 2\n  memory: {mem}\ntests:\n{tests}")
        paths.append(str(f))
    return paths


def test_two_vms_run_at_once_and_report_in_order(smoke, tmp_path):
    assert smoke[0].returncode == 0
    out = tmp_path / "r"
    r = wqh("run", *two_shapes(tmp_path), "--out", str(out), "--vms", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 VMs, 2 at once (timeouts x2.0;" in r.stdout
    vms = [json.loads(p.read_text()) for p in sorted(out.glob("vm*-*/vm.json"))]
    assert len(vms) == 2 and all(v["agent_done"] for v in vms)
    (a, b) = vms
    assert a["started_at"] < b["ended_at"] and b["started_at"] < a["ended_at"], "no overlap"
    assert [t["scenario"] for t in results(out)["tests"]] == ["wide", "narrow"]
    assert results(out)["summary"] == {"pass": 2}


def test_sigterm_with_two_vms_booting_leaves_no_qemu(smoke, tmp_path):
    out = tmp_path / "run"
    p = subprocess.Popen(WQH + ["run", *two_shapes(tmp_path), "--out", str(out), "--vms", "2"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def both_booting():
        logs = list(staged(out, "vm*-*/console.log"))
        return len(logs) == 2 and all(f.stat().st_size > 0 for f in logs)

    _wait_for(both_booting, 120, "two console logs")
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=30)
    assert p.returncode == 128 + signal.SIGTERM
    time.sleep(0.5)
    assert no_process_mentions(staging_prefix(out)), "QEMU outlived wqh"
    assert len(list(out.glob("vm*-*"))) == 2, "a VM booted after the signal"
    outcomes = {t["outcome"] for t in results(out)["tests"]}
    assert outcomes <= {"infra-error", "lost", "pass"} and "pass" not in outcomes


def test_user_tree_sigterm_mid_build_then_incremental(smoke, tmp_path):
    """--kernel on a plain tree: interrupted build leaves nothing; touch -> incremental only."""
    tree = source.default_source().path  # pristine, and ccache already knows its objects

    def ours():
        return [m.parent for m in build.cache_dir().glob(f"builds/*/{build.SOURCE_META}")
                if json.loads(m.read_text()).get("identity") == f"path:{tree}"]

    for d in ours():  # a finished build from an earlier run would be reused without compiling
        shutil.rmtree(d)
    p = subprocess.Popen(WQH + ["build", "--kernel", str(tree)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    logs = []

    def compiling():
        logs[:] = [d / "build.log" for d in ours()
                   if (d / "build.log").exists() and "CC " in (d / "build.log").read_text(errors="replace")]
        return bool(logs)

    _wait_for(compiling, 300, "the build to start compiling")
    bdir = logs[0].parent
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=30)
    assert p.returncode == 128 + signal.SIGTERM
    time.sleep(0.5)
    assert no_process_mentions(f"O={bdir}"), "make outlived wqh"
    assert not (bdir / build.STAMP).exists()

    r = wqh("build", "--kernel", str(tree))
    assert r.returncode == 0, r.stdout + r.stderr
    assert (bdir / build.STAMP).exists()

    os.utime(tree / "kernel" / "watch_queue.c")
    r = wqh("build", "--kernel", str(tree))
    assert r.returncode == 0, r.stdout + r.stderr
    cc = [ln.split()[-1] for ln in (bdir / "build.log").read_text().splitlines()
          if ln.startswith("  CC ")]
    assert "kernel/watch_queue.o" in cc
    assert len(cc) <= 5, f"expected an incremental rebuild, compiled: {cc}"

    r = wqh("run", "--kernel", str(tree), str(SCENARIOS / "smoke.yaml"), "--out", str(tmp_path / "r"))
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_panic_is_a_crash_and_ends_the_vm_promptly(smoke, tmp_path):
    r = wqh("run", str(DATA / "scenarios" / "panic.yaml"), "--out", str(tmp_path))
    res = results(tmp_path)
    by = {t["test"].split("::")[-1]: t for t in res["tests"]}
    # Expected crash -> xfail; the test after it runs in a fresh VM.
    assert by["test_panic"]["outcome"] == "xfail", by
    assert any("sysrq triggered crash" in x["title"] for x in by["test_panic"]["reports"])
    assert by["test_after"]["outcome"] == "pass"
    assert by["test_after"]["vm"].startswith("vm2-")
    assert r.returncode == 0, r.stdout + r.stderr
    vmj = json.loads(next(tmp_path.glob("vm1-*/vm.json")).read_text())
    assert vmj["end"] == "panic"
    assert vmj["duration_s"] < 120


def test_silence_is_a_hang(smoke, tmp_path):
    r = wqh("run", str(DATA / "scenarios" / "hang.yaml"), "--out", str(tmp_path))
    by = {t["test"].split("::")[-1]: t["outcome"] for t in results(tmp_path)["tests"]}
    assert by == {"test_silence": "hang", "test_after": "pass"}
    assert r.returncode == 1
    vmj = json.loads(next(tmp_path.glob("vm1-*/vm.json")).read_text())
    assert vmj["end"] == "hang"


def test_shell_gives_an_interactive_guest_on_the_built_kernel(smoke):
    import pexpect

    child = pexpect.spawn(sys.executable, ["-m", "harness", "shell"], encoding="utf-8",
                          timeout=180, dimensions=(40, 200))
    try:
        child.expect(r"[#$] ", timeout=180)
        child.sendline("echo wq-$((6*7)); cat /proc/sys/kernel/osrelease")
        child.expect("wq-42", timeout=60)
        child.expect(r"6\.1\.\d+", timeout=60)
        child.sendline("exit")
        child.expect(pexpect.EOF, timeout=120)
    finally:
        child.close(force=True)
    time.sleep(0.5)
    assert no_process_mentions("qemu-system-x86_64 -name virtme-ng"), "QEMU outlived the shell"
