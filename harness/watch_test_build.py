"""The kernel's own samples/watch_queue/watch_test, built from the tree under test.

guest-tests/test_clients.py runs it in the guest as a second real client beside keyutils'
keyctl (harness/clients.py reads its output). It is built once per content and cached:

* the tree's UAPI headers are installed into a private directory (`make O=<tmp>
  headers_install`: nothing is written into the tree), then
* `gcc -static` compiles the sample against them: the binary needs nothing from the guest.

Cached as <cache>/clients/watch_test/<key>/watch_test, key = sha256 of the sample and of the
two UAPI headers it includes (a patch to any of them is a new binary). The binary appears by a
rename of a finished file: never half-written. A tree without the sample, a missing tool or a
failed build gives no binary and the reason, never an exception: the guest test skips with it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness import procs
from harness.paths import cache_dir

SAMPLE = "samples/watch_queue/watch_test.c"
HEADERS = ("include/uapi/linux/watch_queue.h", "include/uapi/linux/keyctl.h")
INPUTS = (SAMPLE, *HEADERS)
NAME = "watch_test"
TAIL_LINES = 8  # of a failed command's output, in the reason


@dataclass(frozen=True)
class WatchTest:
    """The binary (path), or None and why (reason). built: made by this call, not the cache's."""

    path: Path | None
    reason: str = ""
    built: bool = False

    def plan(self) -> dict:
        """What the guest agent's plan carries: {"path": ...} or {"skip": reason}."""
        return {"path": str(self.path)} if self.path is not None else {"skip": self.reason}


def cache_root() -> Path:
    return cache_dir() / "clients" / NAME


def key(tree: Path) -> str:
    """sha256 of the inputs' contents, each under its path (a missing header counts as missing)."""
    h = hashlib.sha256()
    for rel in INPUTS:
        p = Path(tree) / rel
        h.update(rel.encode() + b"\0")
        h.update(p.read_bytes() if p.is_file() else b"(missing)")
        h.update(b"\0")
    return h.hexdigest()[:16]


def _tail(log: Path) -> str:
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-TAIL_LINES:])


def _run(cmd: list[str], log: Path, nice: int) -> int:
    """One make or gcc, in its own process group (killed on Ctrl-C, see harness/procs.py)."""
    full = (["nice", "-n", str(nice)] if nice else []) + cmd
    with log.open("a") as fh:
        fh.write(f"$ {' '.join(full)}\n")
        fh.flush()
        return procs.run(full, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def build(tree: Path, nice: int = 0) -> WatchTest:
    """watch_test of TREE from the cache, else built now. Never raises on a failed build."""
    tree = Path(tree)
    if not (tree / SAMPLE).is_file():
        return WatchTest(None, f"the kernel tree {tree} has no {SAMPLE}: nothing to build watch_test from")
    missing = [t for t in ("make", "gcc") if shutil.which(t) is None]
    if missing:
        return WatchTest(None, f"cannot build watch_test: no {' or '.join(missing)} on the host")
    try:
        k = key(tree)
        final = cache_root() / k / NAME
        if final.is_file() and os.access(final, os.X_OK):
            return WatchTest(final)
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return WatchTest(None, f"cannot build watch_test from {tree}: {e}")
    tmp = Path(tempfile.mkdtemp(prefix="wqh-watch-test-"))
    part = final.parent / f".{NAME}.{os.getpid()}.part"
    try:
        log = tmp / "build.log"
        usr = tmp / "usr"
        steps = [
            ["make", "-s", "-C", str(tree), f"O={tmp / 'obj'}", "ARCH=x86", "headers_install",
             f"INSTALL_HDR_PATH={usr}"],
            ["gcc", "-static", "-O2", f"-I{usr / 'include'}", "-o", str(part), str(tree / SAMPLE)],
        ]
        for cmd in steps:
            rc = _run(cmd, log, nice)
            if rc != 0:
                return WatchTest(None, f"building watch_test from {tree} failed: `{' '.join(cmd)}` "
                                       f"exited {rc}: {_tail(log)}")
        part.chmod(0o755)
        os.replace(part, final)  # atomic: the cache holds a whole binary or none
        return WatchTest(final, built=True)
    except OSError as e:
        return WatchTest(None, f"building watch_test from {tree} failed: {e}")
    finally:
        part.unlink(missing_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["HEADERS", "INPUTS", "NAME", "SAMPLE", "WatchTest", "build", "cache_root", "key"]
