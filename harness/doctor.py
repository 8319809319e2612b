"""`wqh doctor`: what this machine lacks, and the exact command that installs it."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from harness import accel, source
from harness.paths import REPO, cache_dir

APT = "apt-get update && apt-get install -y"
MIN_FREE_GB = 15


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _cmd(name: str, pkg: str) -> Check:
    path = shutil.which(name)
    return Check(name, bool(path), path or "not found", "" if path else f"{APT} {pkg}")


def _header(name: str, path: str, pkg: str) -> Check:
    ok = Path(path).exists()
    return Check(name, ok, path if ok else f"{path} missing", "" if ok else f"{APT} {pkg}")


def _m32() -> Check:
    """32-bit reproducers (syzbot's 'userspace arch: i386'): gcc -m32 -static must link.
    Not needed otherwise, so never a failure: the detail says what to install."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "t.c"
        src.write_text("int main(void) { return 0; }\n")
        r = subprocess.run(["gcc", "-m32", "-static", "-o", str(Path(d) / "t"), str(src)],
                           capture_output=True, text=True) if shutil.which("gcc") else None
    if r is not None and r.returncode == 0:
        return Check("gcc -m32", True, "links 32-bit static binaries (i386 reproducers)")
    return Check("gcc -m32", True, f"cannot link 32-bit binaries: only reproducers of syzbot "
                                   f"reports with 'userspace arch: i386' need it ({APT} gcc-multilib)")


def checks(probe_kvm: bool = True) -> list[Check]:
    out = [
        _cmd("qemu-system-x86_64", "qemu-system-x86"),
        _cmd("gcc", "gcc"), _cmd("make", "make"), _cmd("flex", "flex"), _cmd("bison", "bison"),
        _cmd("bc", "bc"), _cmd("cpio", "cpio"),
        _header("libelf headers", "/usr/include/libelf.h", "libelf-dev"),
        _header("libssl headers", "/usr/include/openssl/ssl.h", "libssl-dev"),
        _cmd("ccache", "ccache"),
        # The guest runs on the host's root: the request-key tests need keyutils' helper there.
        _cmd("request-key", "keyutils"),
        _m32(),
    ]
    udev = shutil.which("udevadm") or Path("/lib/systemd/systemd-udevd").exists()
    out.append(Check("udev", bool(udev), "present" if udev else
                     "missing: vng then returns 255 instead of the guest's exit code",
                     "" if udev else f"{APT} udev"))
    vng = Path(sys.executable).parent / "vng"
    has_vng = vng.exists() or shutil.which("vng") is not None
    out.append(Check("virtme-ng", has_vng, str(vng) if vng.exists() else (shutil.which("vng") or "not found"),
                     "" if has_vng else f"{sys.executable} -m pip install -e {REPO}"))
    for mod in ("pexpect", "yaml", "pytest"):
        ok = importlib.util.find_spec(mod) is not None
        out.append(Check(f"python: {mod}", ok, "importable" if ok else "missing",
                         "" if ok else f"{sys.executable} -m pip install -e {REPO}"))
    tb = source.debian_tarball()
    out.append(Check("kernel source", tb is not None, str(tb) if tb else "no /usr/src/linux-source-6.1.tar.*",
                     "" if tb else f"{APT} {source.DEBIAN_PACKAGE}  (or pass --kernel PATH)"))
    cd = cache_dir()
    probe_dir = cd if cd.exists() else Path.home()
    st = os.statvfs(probe_dir)
    free_gb = st.f_bavail * st.f_frsize / 2**30
    out.append(Check("free disk", free_gb >= MIN_FREE_GB, f"{free_gb:.0f} GiB free at {probe_dir}",
                     "" if free_gb >= MIN_FREE_GB else
                     f"free {MIN_FREE_GB} GiB, or set WQH_CACHE to a bigger disk"))
    out.append(_kvm_check(probe_kvm))
    return out


def _kvm_check(probe: bool) -> Check:
    if not os.path.exists("/dev/kvm"):
        return Check("kvm", True, "no /dev/kvm: guests run under TCG (slower, works)")
    builds = sorted((cache_dir() / "builds").glob("*/arch/x86/boot/bzImage"))
    if not probe or not builds:
        v = accel.choose(None)
        return Check("kvm", True, f"/dev/kvm present; verdict: {v.name} ({v.reason})")
    v = accel.choose(builds[0])
    return Check("kvm", True, f"probe boot says {v.name}: {v.reason}")


def report(cs: list[Check]) -> str:
    lines = []
    for c in cs:
        lines.append(f"[{'ok' if c.ok else 'MISSING'}] {c.name}: {c.detail}")
        if c.fix:
            lines.append(f"    install: {c.fix}")
    missing = [c for c in cs if not c.ok]
    lines.append("")
    lines.append("all good" if not missing else f"{len(missing)} missing")
    return "\n".join(lines)
