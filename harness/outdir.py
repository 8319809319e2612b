"""Outputs are all or nothing: a run writes into a staging directory beside --out and renames it
into place when it ends (passed, failed, infra error, interrupted: what it has, marked as such);
an input error found late removes the staging directory, so nothing is left behind.
"""

from __future__ import annotations

import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

from harness.errors import InputError

PARTIAL = ".wqh-partial-"
# Small text files that may name the staging directory: rewritten to name the final one.
_REWRITE_SUFFIXES = {".json", ".txt", ".md", ".xml", ".ktap", ".py"}
_REWRITE_MAX = 4 << 20


def staging_for(final: Path) -> Path:
    return final.parent / f".{final.name}{PARTIAL}{os.getpid()}"


def _rewrite_paths(root: Path, old: str, new: str) -> None:
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            if p.suffix not in _REWRITE_SUFFIXES or p.is_symlink():
                continue
            try:
                if p.stat().st_size > _REWRITE_MAX:
                    continue
                text = p.read_text(errors="surrogateescape")
                if old in text:
                    p.write_text(text.replace(old, new), errors="surrogateescape")
            except OSError:
                continue


def publish(stage: Path, final: Path) -> None:
    """Move STAGE's contents to FINAL: one rename when FINAL is new or empty; otherwise entry by
    entry, results.json last, so a reader never sees new results beside old artifacts."""
    _rewrite_paths(stage, str(stage), str(final))
    if final.is_dir() and not any(final.iterdir()):
        final.rmdir()
    if not final.exists():
        stage.rename(final)
        return
    entries = sorted(stage.iterdir(), key=lambda e: e.name == "results.json")
    for e in entries:
        dst = final / e.name
        if dst.is_dir() and not dst.is_symlink():
            shutil.rmtree(dst)
        elif dst.exists() or dst.is_symlink():
            dst.unlink()
        e.rename(dst)
    stage.rmdir()


def sweep(final: Path) -> None:
    """Staging directories of FINAL left by runs that died (their process is gone)."""
    try:
        cands = list(final.parent.glob(f".{final.name}{PARTIAL}*"))
    except OSError:
        return
    for d in cands:
        pid = d.name.rpartition("-")[2]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def staged(final: Path):
    """Yield a fresh staging directory for FINAL; publish it at the end, discard it on an input
    error (nothing was run, nothing is left)."""
    final = Path(os.path.abspath(final))
    sweep(final)
    stage = staging_for(final)
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    print(f"wqh: writing to {stage} (moved to {final} when the run ends)", file=sys.stderr, flush=True)
    try:
        yield stage
    except InputError:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    except BaseException:
        _publish_or_keep(stage, final)
        raise
    else:
        _publish_or_keep(stage, final)


def _publish_or_keep(stage: Path, final: Path) -> None:
    try:
        publish(stage, final)
    except OSError as e:
        print(f"wqh: could not move {stage} to {final}: {e.strerror}; the artifacts stay in {stage}")
