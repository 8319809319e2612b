"""Kernel builds: make O=<cache>/builds/<key>, cached by content key, with live progress.

key = hash(source identity, final .config, patches). A build directory is
reused; make decides what to recompile. A new one starts as a copy of the
nearest finished build of the same tree (see _seed), so a changed fragment or
patch costs an incremental build, not a clean one. A completion stamp is written only
after make succeeds, and removed before make starts, so an interrupted
build is never mistaken for a finished one.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from harness import procs
from harness.config import ConfigResult
from harness.errors import InfraError
from harness.paths import cache_dir
from harness.source import KernelSource

STAMP = ".wqh-complete"
SOURCE_META = ".wqh-source.json"
_KBUILD_LINE = re.compile(r"^\s{2}([A-Z][A-Z0-9_]*)\s+(\S.*)$")
# Lines that mark where a build failed, first ones first (kunit.py shows these too).
_ERROR_LINE = re.compile(r"(error:|Error \d|undefined reference|No rule to make target|\*\*\*)")


@dataclass(frozen=True)
class BuildKey:
    source_identity: str
    config_hash: str
    patches: tuple[str, ...] = ()  # sha256 of each patch, in order

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        for part in (self.source_identity, self.config_hash, *self.patches):
            h.update(part.encode() + b"\0")
        return h.hexdigest()[:16]


@dataclass
class BuildResult:
    key: str
    builddir: Path
    bzimage: Path
    vmlinux: Path
    log: Path
    reused: bool
    wall_s: float = 0.0
    cpu_s: float = 0.0
    objects: int = 0
    phases: dict[str, float] = field(default_factory=dict)
    ccache: bool = False
    seeded_from: str | None = None
    seed_delta: int = 0  # option lines of .config that differ from the donor's

    @property
    def seed_note(self) -> str:
        return (f"seeded from {self.seeded_from} ({self.seed_delta} option lines apart)"
                if self.seeded_from else "")


def builddir_for(key: BuildKey, src: KernelSource | None = None) -> Path:
    if src is not None and src.kind == "variant":
        # Next to the variant slot (see patches.variant_root): same relative path to the tree.
        return src.path.parent.parent / "builds" / key.digest
    return cache_dir() / "builds" / key.digest


def use_ccache() -> bool:
    return shutil.which("ccache") is not None and os.environ.get("WQH_NO_CCACHE") != "1"


def ccache_env() -> dict[str, str]:
    """ccache shared across build directories: relative paths under the cache, no cwd hash."""
    env = dict(os.environ)
    env.setdefault("CCACHE_DIR", str(cache_dir() / "ccache"))
    env["CCACHE_BASEDIR"] = str(cache_dir())
    env["CCACHE_NOHASHDIR"] = "1"
    env.setdefault("CCACHE_MAXSIZE", "10G")
    return env


class _Progress:
    """One status line: phase, current target, objects compiled, elapsed."""

    def __init__(self, out=sys.stderr):
        self.out = out
        self.tty = out.isatty()
        self.start = time.monotonic()
        self.objects = 0
        self.phase = "prepare"
        self.phases: dict[str, float] = {"prepare": 0.0}
        self.target = ""
        self.last_print = 0.0

    ORDER = ("prepare", "compile", "link", "image")

    def _enter(self, phase: str) -> None:
        # Phases only move forward: parallel make interleaves late and early targets.
        if self.ORDER.index(phase) > self.ORDER.index(self.phase):
            self.phases[phase] = time.monotonic() - self.start
            self.phase = phase

    def feed(self, line: str) -> None:
        m = _KBUILD_LINE.match(line)
        if not m:
            return
        verb, target = m.group(1), m.group(2).strip()
        self.target = target
        if verb == "CC" and target.endswith(".o") and "tools/" not in target:
            self.objects += 1
            self._enter("compile")
        elif verb == "LD" and target == "vmlinux.o":
            self._enter("link")
        elif (verb == "LD" and target.endswith("compressed/vmlinux")) or verb == "BUILD":
            self._enter("image")
        self.show()

    def show(self, force: bool = False) -> None:
        now = time.monotonic()
        interval = 0.25 if self.tty else 30.0
        if not force and now - self.last_print < interval:
            return
        self.last_print = now
        el = now - self.start
        msg = f"build [{self.phase:>7}] {self.objects:5d} objects  {el:6.0f}s  {self.target[-60:]}"
        if self.tty:
            self.out.write("\r\033[K" + msg)
        else:
            self.out.write(msg + "\n")
        self.out.flush()

    def done(self) -> dict[str, float]:
        total = time.monotonic() - self.start
        if self.tty:
            self.out.write("\r\033[K")
            self.out.flush()
        names = list(self.phases)
        durations = {}
        for i, n in enumerate(names):
            end = self.phases[names[i + 1]] if i + 1 < len(names) else total
            durations[n] = round(end - self.phases[n], 2)
        return durations


def first_errors(log_text: str, limit: int = 12) -> list[str]:
    lines = log_text.splitlines()
    for i, line in enumerate(lines):
        if _ERROR_LINE.search(line):
            return lines[max(0, i - 2): i + limit]
    return lines[-limit:]


_lock_depth = 0
_lock_fh = None


@contextmanager
def machine_lock():
    """Kernel builds own both cores: one wqh builds at a time. Re-entrant in a process."""
    global _lock_depth, _lock_fh
    if _lock_depth == 0:
        path = cache_dir() / "build.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = path.open("w")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"wqh: waiting for another build to finish ({path})", file=sys.stderr, flush=True)
            fcntl.flock(fh, fcntl.LOCK_EX)
        _lock_fh = fh
    _lock_depth += 1
    try:
        yield
    finally:
        _lock_depth -= 1
        if _lock_depth == 0 and _lock_fh is not None:
            _lock_fh.close()
            _lock_fh = None


# A donor build directory is worth copying only when few options differ: kbuild's fixdep
# then recompiles just the files that use them. Past this many changed lines (a sanitizer
# switched on changes the compiler flags of every file) a clean build costs the same.
SEED_MAX_CONFIG_DELTA = 64


def _config_lines(text: str) -> set[str]:
    return {ln for ln in text.splitlines() if ln.startswith(("CONFIG_", "# CONFIG_"))}


def config_delta(a: str, b: str) -> int:
    """How many option lines two .config texts do not share."""
    return len(_config_lines(a) ^ _config_lines(b))


def _seed(bdir: Path, src: KernelSource, cfg: ConfigResult) -> tuple[Path, int] | None:
    """Start a new build directory from the nearest finished one of the same tree.

    Donors: finished builds of the same tree path (for a variant: of its slot, any patch
    set, since switching variants gives every differing file a fresh mtime (patches.py);
    otherwise of the same source identity) whose .config differs in at most
    SEED_MAX_CONFIG_DELTA lines. kbuild then recompiles what the patch or the changed
    options touch, as after `make menuconfig` in one tree. Returns (donor, delta).
    """
    best: tuple[int, Path] | None = None
    for donor in sorted(bdir.parent.iterdir()):
        meta = donor / SOURCE_META
        if donor == bdir or not (donor / STAMP).exists() or not meta.exists():
            continue
        try:
            m = json.loads(meta.read_text())
            dtext = (donor / ".config").read_text()
        except (OSError, ValueError):
            continue
        if m.get("path") != str(src.path):
            continue
        if src.kind != "variant" and m.get("identity") != src.identity:
            continue
        delta = 0 if m.get("config") == cfg.hash else config_delta(cfg.dotconfig, dtext)
        if delta <= SEED_MAX_CONFIG_DELTA and (best is None or delta < best[0]):
            best = (delta, donor)
    if best is None:
        return None
    delta, donor = best
    if procs.run(["cp", "-a", "--reflink=auto", f"{donor}/.", str(bdir)]) != 0:
        return None
    (bdir / STAMP).unlink(missing_ok=True)
    _rebase_tools(bdir, donor)
    return donor, delta


def _rebase_tools(bdir: Path, donor: Path) -> None:
    """objtool's build (tools/) records its absolute output path in its .cmd files: as
    copied they name the donor, so make would rebuild objtool, and with a new objtool every
    kernel object. The kernel's own .cmd files are relative to O= and need nothing."""
    old, new = str(donor), str(bdir)
    for cmd in (bdir / "tools").rglob(".*.cmd"):
        text = cmd.read_text(errors="surrogateescape")
        if old in text:
            cmd.write_text(text.replace(old, new), errors="surrogateescape")


def reusable(src: KernelSource, cfg: ConfigResult, patches: tuple[str, ...] = ()) -> BuildResult | None:
    """The finished build of (src, cfg, patches) if there is one; never builds, never locks."""
    key = BuildKey(src.identity, cfg.hash, patches)
    bdir = builddir_for(key, src)
    result = BuildResult(key.digest, bdir, bdir / "arch" / "x86" / "boot" / "bzImage",
                         bdir / "vmlinux", bdir / "build.log", reused=True)
    return result if _finished(src, key, result) else None


def build(src: KernelSource, cfg: ConfigResult, patches: tuple[str, ...] = (),
          jobs: int | None = None, force: bool = False, target: str = "bzImage",
          ccache: bool | None = None, quiet: bool = False, nice: int = 0) -> BuildResult:
    """NICE > 0 runs make below the VMs' priority: a run boots its first kernel's VMs while
    it builds the next, and a guest starved of CPU reads as a hang."""
    key = BuildKey(src.identity, cfg.hash, patches)
    bdir = builddir_for(key, src)
    bdir.mkdir(parents=True, exist_ok=True)
    result = BuildResult(key.digest, bdir, bdir / "arch" / "x86" / "boot" / "bzImage",
                         bdir / "vmlinux", bdir / "build.log", reused=True)

    if not force and _finished(src, key, result):
        return result  # no lock needed to reuse a finished immutable build
    with machine_lock():
        return _build_locked(src, cfg, key, bdir, result, jobs, force, target, ccache, quiet, nice)


def _finished(src: KernelSource, key: BuildKey, result: BuildResult) -> bool:
    stamp = result.builddir / STAMP
    return (src.immutable and stamp.exists() and stamp.read_text().split()[0] == key.digest
            and result.bzimage.is_file())


def _build_locked(src: KernelSource, cfg: ConfigResult, key: BuildKey, bdir: Path,
                  result: BuildResult, jobs: int | None, force: bool, target: str,
                  ccache: bool | None, quiet: bool, nice: int) -> BuildResult:
    stamp = bdir / STAMP
    bzimage = result.bzimage
    log = result.log
    if not force and _finished(src, key, result):
        return result
    stamp.unlink(missing_ok=True)
    dot = bdir / ".config"
    if not dot.exists():
        seeded = _seed(bdir, src, cfg)
        if seeded is not None:
            result.seeded_from, result.seed_delta = seeded[0].name, seeded[1]
    if not dot.exists() or dot.read_text() != cfg.dotconfig:
        dot.write_text(cfg.dotconfig)

    if ccache is None:
        ccache = use_ccache()
    env = ccache_env() if ccache else dict(os.environ)
    jobs = jobs or os.cpu_count() or 2
    cmd = (["nice", "-n", str(nice)] if nice else []) + ["make", "-C", str(src.path), f"O={bdir}",
                                                         f"-j{jobs}"]
    if ccache:
        cmd.append("CC=ccache gcc")
    cmd.append(target)

    # Written first: it names the tree of a build in progress too (donors also need STAMP).
    (bdir / SOURCE_META).write_text(json.dumps({"path": str(src.path), "identity": src.identity,
                                                "config": cfg.hash}) + "\n")

    progress = _Progress()
    if quiet:
        progress.out = open(os.devnull, "w")
        progress.tty = False
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    with log.open("w") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        with procs.popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         env=env, text=True, errors="replace", bufsize=1) as p:
            for line in p.stdout:
                fh.write(line)
                progress.feed(line)
            rc = p.wait()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result.phases = progress.done()
    result.wall_s = round(time.monotonic() - t0, 2)
    result.cpu_s = round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 2)
    result.objects = progress.objects
    result.reused = False
    result.ccache = ccache
    if rc != 0 or not bzimage.is_file():
        errs = "\n".join("  " + ln for ln in first_errors(log.read_text(errors="replace")))
        raise InfraError(f"kernel build failed (make exit {rc}) in {bdir}:\n{errs}",
                         hint=f"full log: {log}")
    stamp.write_text(f"{key.digest} {src.identity} {cfg.hash} {time.time():.0f}\n")
    return result
