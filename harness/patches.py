"""Patched variants of a source tree, built incrementally.

A variant is the base tree plus patches, materialized in one private slot per
base (cache/variants/<base>/src/<tree>): a hardlink copy of the base tree in which
`patch` replaces only the files it changes (GNU patch writes a new file and
renames it, so the base tree's inodes are never written). Every variant of a
base lives at the same path, so ccache hits for every unchanged file and
switching variants touches only the files the patches change.
The caller holds the build lock while the slot is in use.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

from harness import procs
from harness.errors import InfraError, InputError
from harness.paths import cache_dir
from harness.source import KernelSource

_DIFF_TARGET = re.compile(r"^\+\+\+ (?:b/)?(\S+)")


def patch_hashes(patches: tuple[Path, ...]) -> tuple[str, ...]:
    return tuple(hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in patches)


def touched_files(patch: Path) -> list[str]:
    """Paths a unified diff (-p1) changes."""
    out = []
    for line in patch.read_text(errors="replace").splitlines():
        m = _DIFF_TARGET.match(line)
        if m and m.group(1) != "/dev/null":
            out.append(m.group(1))
    return out


def variant_root(base: KernelSource) -> Path:
    """cache/variants/<base>/: the slot in src/<tree name>, its builds in builds/<key>.

    The layout mirrors cache/src/<tree> and cache/builds/<key>, so the relative path from a
    build directory to its tree is the same for the base and its variants: with ccache's
    base dir at the cache, the compile commands are identical and the first variant of a
    config hits ccache for every file the patches do not change.
    """
    return cache_dir() / "variants" / f"{base.path.name}-{base.key}"


def _slot(base: KernelSource) -> Path:
    return variant_root(base) / "src" / base.path.name


def _restore(base: Path, slot: Path, rel: str) -> None:
    """Put the base version of REL back, as a fresh private copy with mtime now.

    Fresh, not a hardlink with the base's old mtime: every file whose content
    differs between two variants is then newer than any object built before the
    switch, so make recompiles it in whichever build directory comes next
    (and a build directory may be seeded from another variant's).
    """
    dst = slot / rel
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    src = base / rel
    if src.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        shutil.copymode(src, dst)


def planned(base: KernelSource, patches: tuple[Path, ...]) -> KernelSource | None:
    """The variant materialize() would give, without touching the slot, when its config can be
    merged on the base tree (no patched Kconfig file); None otherwise. It lets a run reuse a
    finished variant build without taking the build lock or switching the slot."""
    if not base.immutable or any(Path(f).name.startswith("Kconfig")
                                 for p in patches for f in touched_files(p)):
        return None
    identity = base.identity + "+patches:" + ",".join(patch_hashes(patches))
    return KernelSource(_slot(base), identity, "variant", immutable=True)


def materialize(base: KernelSource, patches: tuple[Path, ...]) -> KernelSource:
    """The base tree with PATCHES applied, in the base's variant slot."""
    slot = _slot(base)
    state_file = slot.parent / f"{slot.name}.state.json"
    hashes = patch_hashes(patches)
    want = {"base": base.identity, "patches": list(hashes)}
    state = None
    if slot.is_dir() and state_file.exists():
        try:
            state = json.loads(state_file.read_text())
        except ValueError:
            state = None
    if state is None or state.get("base") != base.identity or not base.immutable:
        # (Re)create the slot from scratch; a mutable base is snapshotted each time.
        state_file.unlink(missing_ok=True)
        shutil.rmtree(slot, ignore_errors=True)
        slot.parent.mkdir(parents=True, exist_ok=True)
        if procs.run(["cp", "-al", str(base.path), str(slot)]) != 0:
            shutil.rmtree(slot, ignore_errors=True)
            raise InfraError(f"could not make a hardlink copy of {base.path} in {slot}")
        state = {"base": base.identity, "patches": [], "touched": []}
    if state.get("patches") != want["patches"]:
        state_file.unlink(missing_ok=True)  # a half-switched slot is never trusted
        for rel in state.get("touched", []):
            _restore(base.path, slot, rel)
        touched: list[str] = []
        for p in patches:
            files = touched_files(p)
            touched += files
            for rel in files:  # a private inode before patch sees the file
                _restore(base.path, slot, rel)
            r = subprocess.run(["patch", "-p1", "--forward", "--batch", "--no-backup-if-mismatch",
                                "-d", str(slot), "-i", str(p)], capture_output=True, text=True)
            if r.returncode != 0:
                for rel in touched:
                    _restore(base.path, slot, rel)
                raise InputError(f"patch {p} does not apply to {base.identity}:\n"
                                 + (r.stdout + r.stderr).strip()[-1500:],
                                 hint="regenerate the patch against this tree (diff -p1)")
        state = {"base": base.identity, "patches": list(hashes), "touched": sorted(set(touched))}
        state_file.write_text(json.dumps(state, indent=1) + "\n")
    elif not state_file.exists():
        state_file.write_text(json.dumps(state, indent=1) + "\n")
    identity = base.identity + "+patches:" + ",".join(hashes)
    return KernelSource(slot, identity, "variant", immutable=base.immutable)
