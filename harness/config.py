"""Kconfig: fragments merged onto allnoconfig with merge_config.sh, then verified.

The merge runs in a per-source staging directory (O=<cache>/configs/<source>),
so the final .config is known before a build directory is chosen: the build
key is a hash of that final .config, not of the fragment names.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from harness import kconfig, procs
from harness.errors import ConfigError, InfraError, InputError
from harness.paths import KCONFIGS, cache_dir
from harness.source import KernelSource

# The sanitizer kernel, as syzbot builds one: KASAN, kmemleak, lockdep and fault injection
# together. functional-kasan, every sanitizer scenario of the wall and `wqh repro` use this one
# list, so that one build (and its ccache) serves them all and each wall variant is an
# incremental build of it (tests/test_scenario.py holds the scenarios to it).
SANITIZER_FRAGMENTS = ("watch-queue", "kasan", "kmemleak", "lockdep", "fault-injection", "debug-info")

BASE_FRAGMENT = "base"


@dataclass(frozen=True)
class ConfigResult:
    dotconfig: str
    hash: str  # sha256 of the final .config, first 16 hex digits
    fragments: tuple[Path, ...]
    staging: Path = field(compare=False)

    @functools.cached_property
    def values(self) -> dict[str, str]:
        """SYMBOL (no CONFIG_ prefix) -> value as .config writes it ("n" when not set)."""
        return kconfig.parse_dotconfig(self.dotconfig)

    def enabled(self, symbol: str) -> bool:
        return self.values.get(symbol, "n") != "n"

    def value(self, symbol: str) -> str | None:
        return self.values.get(symbol)



# (option, version) pairs whose version note this process has printed.
_NOTED: set[tuple[str, str]] = set()

def resolve_fragment(name: str, relative_to: Path | None = None) -> Path:
    """A fragment by name ('kasan' -> kconfigs/kasan.config) or by path."""
    cands = []
    p = Path(name)
    if p.suffix == ".config" or "/" in name:
        if relative_to is not None and not p.is_absolute():
            cands.append(relative_to / p)
        cands.append(p)
    else:
        cands.append(KCONFIGS / f"{name}.config")
    for c in cands:
        if c.is_file():
            return c.resolve()
    known = ", ".join(sorted(f.stem for f in KCONFIGS.glob("*.config")))
    raise InputError(f"unknown kconfig fragment '{name}'",
                     hint=f"use one of: {known}, or a path to a .config fragment")


def fragment_list(names: list[str], relative_to: Path | None = None) -> tuple[Path, ...]:
    paths = [resolve_fragment(BASE_FRAGMENT)]
    for n in names:
        f = resolve_fragment(n, relative_to)
        if f not in paths:
            paths.append(f)
    return tuple(paths)


def _make(src: KernelSource, out: Path, *targets: str, log: Path) -> None:
    cmd = ["make", "-C", str(src.path), f"O={out}", *targets]
    with log.open("a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        rc = procs.run(cmd, stdout=fh, stderr=subprocess.STDOUT)
    if rc != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise InfraError(f"'make {' '.join(targets)}' failed in {out} (exit {rc}):\n{tail}",
                         hint=f"see {log}")


@functools.lru_cache(maxsize=None)
def _toolchain() -> str:
    """What Kconfig asks the toolchain (CONFIG_GCC_VERSION, cc-option probes...): its versions."""
    out = []
    for cmd in (["gcc", "--version"], ["ld", "--version"], ["pahole", "--version"]):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            out.append(r.stdout.splitlines()[0] if r.stdout else "")
        except (OSError, subprocess.TimeoutExpired):
            out.append("-")
    return "\n".join(out)


def _kconfig_files(root: Path) -> list[str]:
    """Every Kconfig* of a working tree with its size and mtime: what a changed tree changes."""
    found = []
    stack = [str(root)]
    while stack:
        d = stack.pop()
        try:
            with os.scandir(d) as it:
                for e in it:
                    if e.is_dir(follow_symlinks=False):
                        if e.name != ".git":
                            stack.append(e.path)
                    elif e.name.startswith("Kconfig"):
                        st = e.stat()
                        found.append(f"{e.path} {st.st_size} {st.st_mtime_ns}")
        except OSError:
            continue
    return sorted(found)


def memo_key(src: KernelSource, fragments: tuple[Path, ...]) -> str:
    """Everything the final .config depends on: tree, fragments' text, toolchain."""
    h = hashlib.sha256()
    h.update(src.identity.encode() + b"\0" + _toolchain().encode() + b"\0")
    if not src.immutable:
        h.update("\n".join(_kconfig_files(src.path)).encode())
        h.update((src.path / "Makefile").read_bytes())
    for f in fragments:
        h.update(str(f).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:24]


def merge(src: KernelSource, fragments: tuple[Path, ...]) -> ConfigResult:
    """fragments (merge_config.sh -m) as KCONFIG_ALLCONFIG of allnoconfig, olddefconfig, verify.

    The result is remembered under memo_key: two make runs cost seconds of every warm run."""
    staging = cache_dir() / "configs" / src.key
    staging.mkdir(parents=True, exist_ok=True)
    memo = staging / "memo" / f"{memo_key(src, fragments)}.config"
    if memo.is_file():
        text = memo.read_text()
        requests = [o for f in fragments for o in kconfig.parse_fragment(f)]
        verify(src, requests, text)
        return _result(text, fragments, staging)
    # One merge at a time per source: the staging directory is shared.
    with (staging / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        res = _merge_locked(src, fragments, staging)
    memo.parent.mkdir(exist_ok=True)
    tmp = memo.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(res.dotconfig)
    tmp.replace(memo)
    return res


def _merge_locked(src: KernelSource, fragments: tuple[Path, ...], staging: Path) -> ConfigResult:
    log = staging / "config.log"
    log.write_text("")
    requests: list[kconfig.Option] = []
    for f in fragments:
        requests += kconfig.parse_fragment(f)

    # merge_config.sh -m only merges the fragments (later ones win); cwd=staging because
    # it makes its temp files in the cwd, never in the source tree.
    merged = staging / "merged.config"
    empty = staging / "empty.config"
    empty.write_text("")
    merge_sh = src.path / "scripts" / "kconfig" / "merge_config.sh"
    cmd = ["sh", str(merge_sh), "-m", "-O", str(staging), str(empty), *map(str, fragments)]
    with log.open("a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        rc = procs.run(cmd, cwd=staging, stdout=fh, stderr=subprocess.STDOUT)
    if rc != 0:
        raise InfraError(f"merge_config.sh failed (exit {rc})", hint=f"see {log}")
    (staging / ".config").replace(merged)
    # allnoconfig with the merged fragments as KCONFIG_ALLCONFIG: everything not asked
    # for is off, including defaults of options that only appear once NET etc. are on.
    _make(src, staging, f"KCONFIG_ALLCONFIG={merged}", "allnoconfig", log=log)
    _make(src, staging, "olddefconfig", log=log)

    text = (staging / ".config").read_text()
    verify(src, requests, text)
    return _result(text, fragments, staging)


def _result(text: str, fragments: tuple[Path, ...], staging: Path) -> ConfigResult:
    return ConfigResult(text, hashlib.sha256(text.encode()).hexdigest()[:16], fragments, staging)


def verify(src: KernelSource, requests: list[kconfig.Option], dotconfig: str) -> None:
    final = kconfig.parse_dotconfig(dotconfig)
    missing = kconfig.requested_missing(requests, final)
    if not missing:
        return
    base = str(resolve_fragment(BASE_FRAGMENT))
    deps = {o.name: kconfig.find_dependency(src.path, o.name, final)
            for o, _ in missing if o.value != "n"}
    # base.config serves several kernel versions: an option this tree does not define at
    # all (BASE_FULL after 6.8) is not a request to it; nor is one kconfigs/versions.yaml says
    # this version dropped (the note says which). Everywhere else it is an error.
    from harness import source

    version = source.version(src)
    dropped = {o.name for o, _ in missing if o.value != "n" and deps[o.name] is None
               and source.absent_in(o.name, version)}
    for name in sorted(dropped):
        if (name, version) not in _NOTED:  # once per process, not once per kernel of a run
            _NOTED.add((name, version))
            print(f"wqh: note: {source.version_notes(name, version)}", file=sys.stderr)
    missing = [(o, have) for o, have in missing
               if not (str(o.file) == base and o.value != "n" and deps[o.name] is None)
               and o.name not in dropped]
    if not missing:
        return
    lines = []
    for opt, have in missing:
        got = "not set" if have == "n" else have
        lines.append(f"  {opt} ({opt.file}:{opt.line}) -> final .config has it {got}")
        if opt.value != "n":
            dep = deps[opt.name]
            if dep is None:
                lines.append(f"    CONFIG_{opt.name} is not defined in any Kconfig of this tree")
            elif dep.unmet:
                lines.append(f"    unmet dependency ({dep.defined_at}): "
                             + kconfig.unmet_text(dep.unmet, final)
                             + f" in 'depends on {' && '.join(dep.expressions)}'")
            else:
                lines.append(f"    dependencies met ({dep.defined_at}); "
                             "check 'choice' groups and options that select against it")
    raise ConfigError("kconfig fragments ask for options the final .config does not have:\n"
                      + "\n".join(lines),
                      hint="enable the unmet dependencies in the fragment, or drop the option")
