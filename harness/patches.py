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
_DIFF_OLD = re.compile(r"^--- (?:a/)?(\S+)")
_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+\d+(?:,\d+)? @@")
PATCH_HINT = "give a unified diff of the kernel tree (git format-patch or diff -u, applied -p1)"


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


def _all_files(patch: Path) -> list[str]:
    """Every path a diff names, old and new sides (a deleted file needs its old text)."""
    out = []
    for line in patch.read_text(errors="replace").splitlines():
        m = _DIFF_TARGET.match(line) or _DIFF_OLD.match(line)
        if m and m.group(1) != "/dev/null" and m.group(1) not in out:
            out.append(m.group(1))
    return out


def check_form(patch: Path, key: str = "--patch", file: str = "", line: int = 0) -> None:
    """A unified diff of the tree: readable, with files and hunks, every path inside the tree."""
    from harness import validate

    validate.input_file(key, patch, "patch", PATCH_HINT, file=file, line=line)
    data = patch.read_bytes()
    # The patch's own file:line, unless the caller locates the error (a scenario's line).
    at = (lambda n: {"file": file, "line": line}) if file else (lambda n: {"file": str(patch), "line": n})
    if b"\0" in data:
        raise InputError("binary, not a diff", key=key, hint=PATCH_HINT,
                         **at(data[:data.index(b"\0")].count(b"\n") + 1))
    lines = data.decode("utf-8", errors="replace").splitlines()
    targets = [(i, m.group(1)) for i, ln in enumerate(lines, 1) for m in [_DIFF_TARGET.match(ln)] if m]
    if not targets or not any(_HUNK.match(ln) for ln in lines):
        raise InputError(f"patch {patch.name} has no unified diff in it (no '+++ b/FILE' and '@@' "
                         "hunk lines)", key=key, hint=PATCH_HINT, **at(targets[0][0] if targets else 1))
    for i, rel in targets:
        parts = Path(rel).parts
        if rel != "/dev/null" and (rel.startswith("/") or ".." in parts):
            raise InputError(f"patch {patch.name} names {rel!r}, outside the kernel tree", key=key,
                             hint=PATCH_HINT, **at(i))


def series(version: str) -> str:
    """'6.12' of '6.12.118' ('' when the version is not MAJOR.MINOR...)."""
    m = re.match(r"(\d+)\.(\d+)", version or "")
    return f"{m.group(1)}.{m.group(2)}" if m else ""


def for_version(patches: tuple[Path, ...], version: str) -> tuple[Path, ...]:
    """Each patch, or its copy rebased for VERSION's series where one exists: a patch written
    against one kernel may need new context on another, kept as data beside it, in
    <dir>/<major.minor>/<same name> (scenarios/regressions/patches/6.12/ for example)."""
    s = series(version)
    if not s:
        return tuple(patches)
    return tuple(p.parent / s / p.name if (p.parent / s / p.name).is_file() else p for p in patches)


def tree_reader(src: KernelSource):
    """rel -> bytes of SRC's tree (None: no such file), for check_applies."""
    def read(rel: str) -> bytes | None:
        p = src.path / rel
        return p.read_bytes() if p.is_file() else None
    return read


def check_applies(read, patches: tuple[Path, ...], what: str, keys: dict[Path, str] | None = None) -> None:
    """Apply PATCHES in order to a scratch copy of the files they name, read with READ
    (rel -> bytes | None) from the tree: an InputError naming the patch that does not apply.
    Nothing is written anywhere but a temporary directory; no .rej or .orig is left."""
    import tempfile

    if not patches:
        return
    if hasattr(read, "prefetch"):
        read.prefetch([rel for p in patches for rel in _all_files(p)])
    with tempfile.TemporaryDirectory(prefix="wqh-patch-check-") as d:
        root = Path(d)
        for p in patches:
            for rel in _all_files(p):
                dst = root / rel
                if dst.exists():
                    continue
                data = read(rel)
                if data is not None:
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    dst.write_bytes(data)
        for p in patches:
            r = _patch(root, p)
            if r.returncode != 0:
                key = (keys or {}).get(p, "--patch")
                out = _patch_output(r)
                raise InputError(f"does not apply to {what}:\n" + out[-1500:], key=key,
                                 file=str(p), line=failed_line(p, out),
                                 hint="regenerate the patch against this tree (diff -p1), "
                                      "or check the order of the patches")


_FAILED = re.compile(r"^Hunk #(\d+) FAILED")
_PATCHING = re.compile(r"^(?:patching|checking) file '?([^'\n]+?)'?$")


def failed_line(patch: Path, output: str) -> int:
    """The line of PATCH where what patch(1) refused starts: the failed hunk's '@@' line, or
    the file's '+++' header (a missing file, a patch already applied)."""
    current, hunk = None, None
    for ln in output.splitlines():
        m = _PATCHING.match(ln)
        if m:
            current = m.group(1)
            continue
        m = _FAILED.match(ln)
        if m:
            hunk = int(m.group(1))
            break
        if "can't find file" in ln or "Reversed" in ln or "FAILED" in ln:
            break
    lines = patch.read_text(errors="replace").splitlines()
    header, seen = 0, 0
    for i, ln in enumerate(lines, 1):
        m = _DIFF_TARGET.match(ln)
        if m:
            if header and current is not None:
                break  # past the file's hunks
            if current is None or m.group(1) == current:
                header = i
            continue
        if header and hunk and _HUNK.match(ln):
            seen += 1
            if seen == hunk:
                return i
    return header or 1


def _patch(root: Path, p: Path) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["patch", "-p1", "--forward", "--batch", "--no-backup-if-mismatch",
                               "--reject-file=-", "-d", str(root), "-i", str(Path(p).resolve())],
                              capture_output=True, text=True, errors="replace")
    except OSError as e:
        raise InfraError(f"cannot run patch: {e.strerror}", hint="apt-get install patch") from e


def _patch_output(r: subprocess.CompletedProcess) -> str:
    return (r.stdout + r.stderr).strip()


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
            # A private inode before patch sees the file: once, when the series first touches
            # it (a later patch of the series applies on top of the earlier ones' changes).
            for rel in touched_files(p):
                if rel not in touched:
                    _restore(base.path, slot, rel)
                    touched.append(rel)
            r = _patch(slot, p)
            if r.returncode != 0:
                for rel in touched:
                    _restore(base.path, slot, rel)
                raise InputError(f"patch {p} does not apply to {base.identity}:\n"
                                 + _patch_output(r)[-1500:], key="--patch",
                                 hint="regenerate the patch against this tree (diff -p1)")
        state = {"base": base.identity, "patches": list(hashes), "touched": sorted(set(touched))}
        state_file.write_text(json.dumps(state, indent=1) + "\n")
    elif not state_file.exists():
        state_file.write_text(json.dumps(state, indent=1) + "\n")
    identity = base.identity + "+patches:" + ",".join(hashes)
    return KernelSource(slot, identity, "variant", immutable=base.immutable)
