import subprocess

from harness import doctor


def test_missing_tools_come_with_their_install_command(wqh_cmd, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    cs = {c.name: c for c in doctor.checks(probe_kvm=False)}
    assert not cs["qemu-system-x86_64"].ok
    assert cs["qemu-system-x86_64"].fix.endswith("apt-get install -y qemu-system-x86")
    assert cs["bison"].fix.endswith("apt-get install -y bison")
    text = doctor.report(list(cs.values()))
    assert "[MISSING] qemu-system-x86_64: not found" in text
    assert "    install: apt-get update && apt-get install -y qemu-system-x86" in text


def test_doctor_command_reports_every_check(wqh_cmd):
    r = subprocess.run(wqh_cmd + ["doctor", "--no-probe"], capture_output=True, text=True)
    assert r.returncode in (0, 2)
    for name in ("qemu-system-x86_64", "virtme-ng", "udev", "gcc", "flex", "bison", "bc",
                 "libelf headers", "libssl headers", "kernel source", "kvm", "free disk"):
        assert f"] {name}: " in r.stdout
    assert (r.returncode == 0) == r.stdout.rstrip().endswith("all good")
