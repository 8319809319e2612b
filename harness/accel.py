"""Accelerator choice: KVM only after a probe boot proves it works here.

/dev/kvm can exist and still be unusable (nested virtualization without
hardware support: QEMU aborts or hangs). The probe boots a real kernel with
-accel kvm and no root; a working KVM prints the banner and panics on the
missing root within seconds. The verdict is cached per machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from harness import procs
from harness.paths import cache_dir

PROBE_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Accel:
    name: str  # 'kvm' | 'tcg'
    reason: str

    @property
    def kvm(self) -> bool:
        return self.name == "kvm"


def _machine_id() -> str:
    parts = [platform.node(), platform.release()]
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") or line.startswith("flags"):
                parts.append(line)
                if len(parts) > 3:
                    break
    except OSError:
        pass
    qemu = shutil.which("qemu-system-x86_64") or ""
    parts.append(qemu)
    if qemu:
        parts.append(str(Path(qemu).stat().st_mtime))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _verdict_file() -> Path:
    return cache_dir() / "accel" / f"{_machine_id()}.json"


def probe(bzimage: Path, timeout: float = PROBE_TIMEOUT_S) -> Accel:
    """Boot BZIMAGE under KVM with no root; works iff the banner shows and QEMU exits."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return Accel("tcg", "/dev/kvm missing or not accessible")
    qemu = shutil.which("qemu-system-x86_64")
    if not qemu:
        return Accel("tcg", "qemu-system-x86_64 not installed")
    cmd = [qemu, "-accel", "kvm", "-machine", "q35", "-cpu", "host", "-m", "256",
           "-nodefaults", "-display", "none", "-no-reboot", "-serial", "stdio",
           "-kernel", str(bzimage), "-append", "console=ttyS0 panic=-1 root=/dev/nonexistent"]
    t0 = time.monotonic()
    with procs.popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                     stdin=subprocess.DEVNULL) as p:
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            return Accel("tcg", f"KVM probe boot did not finish within {timeout:.0f}s")
    took = time.monotonic() - t0
    text = out.decode(errors="replace")
    if "Linux version" in text:
        return Accel("kvm", f"KVM probe boot finished in {took:.1f}s")
    last = text.strip().splitlines()[-1:] or ["no output"]
    return Accel("tcg", f"KVM probe failed (exit {p.returncode}): {last[0][:120]}")


def choose(bzimage: Path | None, requested: str = "auto") -> Accel:
    """requested: 'auto' (probe, cached), 'kvm' or 'tcg' (forced)."""
    env = os.environ.get("WQH_ACCEL")
    if requested == "auto" and env in ("kvm", "tcg"):
        requested = env
    if requested == "tcg":
        return Accel("tcg", "forced")
    if requested == "kvm":
        return Accel("kvm", "forced")
    vf = _verdict_file()
    if vf.exists():
        try:
            d = json.loads(vf.read_text())
            return Accel(d["name"], d["reason"] + " (cached)")
        except (ValueError, KeyError):
            pass
    if bzimage is None:
        return Accel("tcg", "no kernel to probe KVM with yet")
    verdict = probe(bzimage)
    vf.parent.mkdir(parents=True, exist_ok=True)
    vf.write_text(json.dumps({"name": verdict.name, "reason": verdict.reason,
                              "at": time.strftime("%Y-%m-%dT%H:%M:%S")}))
    return verdict
