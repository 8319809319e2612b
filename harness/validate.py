"""The validation phase: every value of every option and input file, checked before any work.

Each command calls these first (cli.py); nothing here unpacks, merges, builds or boots. An
error names the file (and line) or the option, the key, and what would fix it; a Problems
collector lets one run report every error it has, not the first only.
"""

from __future__ import annotations

import math
import os
import re
import stat
import sys
import tempfile
from pathlib import Path

from harness.errors import InputError, Problems

# Numbers a user gives: the range each may take.
MAX_JOBS = 1024
MAX_CPUS = 64
MAX_REPEAT = 100_000
MAX_SECONDS = 7 * 24 * 3600.0
MEM_MIN_MB = 64
MEM_MAX_MB = 1024 * 1024  # 1 TiB
_MEM = re.compile(r"^(\d+)([MG])$")
# Pseudo filesystems: nothing of a run belongs there.
_PSEUDO = ("/proc", "/sys", "/dev")
# The Kconfig values a fragment may give: tristate, a number, hex, or a quoted string.
KCONFIG_VALUE = re.compile(r'^(?:[ynm]|-?\d+|0[xX][0-9a-fA-F]+|"(?:[^"\\]|\\.)*")$')


def whole(key: str, value, lo: int, hi: int, file: str = "", line: int = 0) -> int | None:
    if value is None:
        return None
    if not lo <= value <= hi:
        raise InputError(f"{value} is out of range", key=key, file=file, line=line,
                         hint=f"give a whole number from {lo} to {hi}")
    return value


def seconds(key: str, value, file: str = "", line: int = 0) -> float | None:
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        raise InputError("not a number (nan)", key=key, file=file, line=line,
                         hint="give a number of seconds, e.g. 60")
    if not 0 < value <= MAX_SECONDS:
        raise InputError(f"{value} seconds is out of range", key=key, file=file, line=line,
                         hint=f"give a number of seconds above 0 and at most {MAX_SECONDS:.0f}")
    return float(value)


def memory(key: str, value: str, file: str = "", line: int = 0) -> str:
    m = _MEM.match(value)
    if not m:
        raise InputError(f"bad memory size {value!r}", key=key, file=file, line=line,
                         hint="write it as e.g. 512M or 2G")
    mb = int(m.group(1)) * (1024 if m.group(2) == "G" else 1)
    if not MEM_MIN_MB <= mb <= MEM_MAX_MB:
        raise InputError(f"memory size {value} is out of range", key=key, file=file, line=line,
                         hint=f"give from {MEM_MIN_MB}M to {MEM_MAX_MB // 1024}G")
    return value


def _nearest_existing(p: Path) -> Path:
    while not os.path.lexists(p) and p != p.parent:
        p = p.parent
    return p


def out_path(key: str, path: Path | None) -> None:
    """An output directory wqh can create (or fill) and later rename into place."""
    if path is None:
        path = Path.cwd() / "wqh-results"
    text = str(path)
    fix = "give --out a new or empty directory in a writable place, e.g. /tmp/wqh-out"
    if "\0" in text or not text.strip():
        raise InputError(f"{text!r} is not a usable path", key=key, hint=fix)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{text!r} is not UTF-8: results name their paths in JSON and XML",
                         key=key, hint=fix) from None
    try:
        p = Path(os.path.abspath(path.expanduser()))
    except (OSError, ValueError, RuntimeError) as e:
        raise InputError(f"{text}: {e}", key=key, hint=fix) from None
    if any(len(part.encode(errors="surrogateescape")) > 255 for part in p.parts):
        raise InputError(f"{text}: a path component is longer than 255 bytes", key=key, hint=fix)
    real = Path(os.path.realpath(p))
    for d in map(Path, _PSEUDO):
        if real == d or d in real.parents:
            raise InputError(f"{text} is under {d}, a kernel pseudo filesystem", key=key, hint=fix)
    if p == p.parent:
        raise InputError(f"{text} is the root directory", key=key, hint=fix)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise InputError(f"{text}: {e.strerror}", key=key, hint=fix) from None
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise InputError(f"{text} exists and is not a directory", key=key, hint=fix)
    # The run is staged beside the target and renamed into place: the parent (or the
    # nearest ancestor that exists) must be a writable directory, as must the target.
    anc = _nearest_existing(p.parent)
    if not anc.is_dir():
        raise InputError(f"{text}: {anc} is not a directory", key=key, hint=fix)
    for d in (anc, p) if st is not None else (anc,):
        if not os.access(d, os.W_OK | os.X_OK):
            raise InputError(f"{text}: {d} is not writable", key=key, hint=fix)
        try:
            rdonly = bool(os.statvfs(d).f_flag & os.ST_RDONLY)
        except OSError:
            rdonly = False
        if rdonly:
            raise InputError(f"{text}: {d} is on a read-only filesystem", key=key, hint=fix)
        # The only proof that a directory takes new entries (root, ACLs, immutable flags): make
        # one, and remove it at once.
        try:
            os.rmdir(tempfile.mkdtemp(prefix=".wqh-probe-", dir=d))
        except OSError as e:
            raise InputError(f"{text}: cannot create anything in {d}: {e.strerror}", key=key,
                             hint=fix) from None


def cache_env() -> None:
    """$WQH_CACHE, when set: a directory wqh can create or write, not a file or a pseudo fs."""
    env = os.environ.get("WQH_CACHE")
    if env is None:
        return
    try:
        out_path("WQH_CACHE", Path(env))
    except InputError as e:
        raise InputError(e.detail.replace("--out", "WQH_CACHE"), key="WQH_CACHE",
                         hint="point WQH_CACHE at a writable directory, or unset it "
                              "(default ~/.cache/wqh)") from None


def input_file(key: str, path: Path, what: str, hint: str = "", file: str = "", line: int = 0) -> Path:
    """An existing, regular, readable file (a FIFO or a device would block or never end)."""
    text = str(path)
    if "\0" in text or not text.strip():
        raise InputError(f"{text!r} is not a usable path", key=key, file=file, line=line, hint=hint)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{what} {text}: no such file", key=key, file=file, line=line,
                         hint=hint) from None
    except OSError as e:
        raise InputError(f"{what} {text}: {e.strerror}", key=key, file=file, line=line,
                         hint=hint) from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{what} {text} is a directory", key=key, file=file, line=line, hint=hint)
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{what} {text} is not a regular file (a FIFO, socket or device)",
                         key=key, file=file, line=line, hint=hint)
    if not os.access(path, os.R_OK):
        raise InputError(f"{what} {text} is not readable", key=key, file=file, line=line, hint=hint)
    return Path(path)


def read_text(path: Path, what: str, key: str = "", hint: str = "") -> str:
    """A text input as str: regular, readable, UTF-8 (the line of the first bad byte if not)."""
    input_file(key, path, what, hint)
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise InputError(f"{what} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset "
                         f"{e.start})", file=str(path), line=line, key=key,
                         hint=hint or "save the file as UTF-8") from None


def fragment(name: str, relative_to: Path | None = None, key: str = "--fragment",
             file: str = "", line: int = 0) -> Path:
    """A fragment that exists and whose every line is a valid kconfig assignment."""
    from harness import config, kconfig

    try:
        path = config.resolve_fragment(name, relative_to)
    except InputError as e:
        raise InputError(e.detail, hint=e.hint, key=key, file=file, line=line) from None
    except (OSError, ValueError) as e:
        raise InputError(f"fragment {name[:80]!r}: {getattr(e, 'strerror', None) or e}", key=key,
                         file=file, line=line, hint="give a fragment name or a path to one") from None
    try:
        kconfig.parse_fragment(path)
    except InputError as e:
        if e.key:
            raise
        raise InputError(e.detail, hint=e.hint, file=e.file, line=e.line, key=key) from None
    return path


def fragments(probs: Problems, names, relative_to: Path | None, key: str) -> None:
    for n in names:
        with probs.check():
            fragment(n, relative_to, key)


def kernel_spec(spec: str | None, key: str = "--kernel") -> None:
    """--kernel: absent (the Debian default), debian:SERIES of an installed linux-source
    package, PATH to a clean kernel tree, or PATH@REF of a git repository whose REF is a commit
    with a kernel tree. Reads only; unpacks and clones nothing."""
    from harness import source

    if spec is None:
        return
    hint = "pass the top directory of a Linux source tree, optionally PATH@REF, or debian:6.1"
    if not spec.strip() or "\0" in spec:
        raise InputError(f"{spec!r} is not a kernel tree", key=key, hint=hint)
    if spec.startswith(source.DEBIAN_PREFIX):
        source.check_debian(spec, key)
        return
    path_s, ref = spec, None
    if "@" in spec:
        path_s, _, ref = spec.rpartition("@")
        if not ref or not path_s:
            raise InputError(f"{spec!r}: PATH@REF needs both a path and a ref", key=key, hint=hint)
    path = Path(path_s).expanduser()
    if not path.exists():
        raise InputError(f"{path} does not exist", key=key, hint=hint)
    if not path.is_dir():
        raise InputError(f"{path} is not a directory", key=key, hint=hint)
    if ref is None:
        source._check_tree(path.resolve(), key)
        return
    if ref.startswith("-") or any(c.isspace() for c in ref):
        raise InputError(f"{ref!r} is not a git ref", key=key,
                         hint="give a branch, tag or commit, e.g. PATH@v6.1")
    sha = source.rev_parse(path.resolve(), ref)
    missing = [n for n in ("Makefile", "kernel") if not source.git_has(path.resolve(), sha, n)]
    if missing:
        raise InputError(f"{path}@{ref} is not a kernel source tree (no {'/'.join(missing)})",
                         key=key, hint=hint)


def kernel_specs(probs: Problems, specs, key: str = "--kernel") -> None:
    """A repeated --kernel: each one valid (every error reported), and no kernel named twice."""
    from harness import source

    specs = list(specs or [])
    before = len(probs.errors)
    for spec in specs:
        with probs.check():
            kernel_spec(spec, key)
    if len(probs.errors) == before and len(specs) > 1:
        with probs.check():
            source.check_distinct(specs, key)


def reproducer(path: Path, key: str = "file") -> None:
    """A C reproducer: a readable text file (a binary or an object is refused before gcc)."""
    hint = "give the path of a C reproducer (e.g. syzbot's repro.c)"
    input_file(key, path, "reproducer", hint)
    data = Path(path).read_bytes()
    if not data.strip():
        raise InputError("the reproducer is empty", file=str(path), line=1, key=key, hint=hint)
    if b"\0" in data or data[:4] == b"\x7fELF":
        raise InputError("not C source: the file is binary (an executable or object?)",
                         file=str(path), line=1, key=key, hint=hint)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"not UTF-8 text (byte 0x{data[e.start]:02x})", file=str(path),
                         line=data[:e.start].count(b"\n") + 1, key=key, hint=hint) from None


_CONFIG_DEF = re.compile(r"^\s*(?:menu)?config\s+([A-Za-z0-9_]+)\s*$", re.M)
_symbols_cache: dict[str, frozenset[str] | None] = {}


def tree_symbols(spec: str | None) -> frozenset[str] | None:
    """Every symbol the tree's Kconfig files define, where the tree is at hand without any work
    (a directory, the unpacked Debian source, a git ref); None when it is not."""
    from harness import source

    key = spec or ""
    if key in _symbols_cache:
        return _symbols_cache[key]
    found: set[str] | None = None
    root = source.tree_at_hand(spec)
    if isinstance(root, Path):
        found = set()
        for dirpath, dirnames, files in os.walk(root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for f in files:
                if f.startswith("Kconfig"):
                    try:
                        found.update(_CONFIG_DEF.findall(Path(dirpath, f).read_text(errors="replace")))
                    except OSError:
                        continue
    elif isinstance(root, tuple):  # (repository, commit)
        import subprocess

        r = subprocess.run(["git", "-C", str(root[0]), "grep", "-h", "-E",
                            r"^\s*(menu)?config\s+[A-Za-z0-9_]+\s*$", root[1], "--", "*Kconfig*"],
                           capture_output=True, text=True, errors="replace")
        if r.returncode == 0:
            found = set(_CONFIG_DEF.findall(r.stdout))
    result = frozenset(found) if found else None  # no symbol at all: not a tree we can read
    _symbols_cache[key] = result
    return result


def symbols_defined(probs: Problems, spec: str | None, fragment_paths) -> None:
    """Each option a fragment sets (but base.config, which serves several kernel versions) is
    defined by the tree: a misspelt CONFIG_WATCH_QEUE is an input error, not a failed merge."""
    from harness import config, kconfig

    if probs:
        return
    with probs.check():
        known = tree_symbols(spec)
        if known is None:
            return
        base = config.resolve_fragment(config.BASE_FRAGMENT)
        seen: set[Path] = set()
        for f in fragment_paths:
            if f in seen or f == base:
                continue
            seen.add(f)
            for o in kconfig.parse_fragment(f):
                if o.value != "n" and o.name not in known:
                    from harness import source

                    if source.absent_in(o.name, source.version(spec)):
                        # kconfigs/versions.yaml: the option is gone on this version, not misspelt.
                        print(f"wqh: note: {source.version_notes(o.name, source.version(spec))}; "
                              f"{o.file}:{o.line} does not apply here", file=sys.stderr)
                        continue
                    with probs.check():
                        raise InputError(f"CONFIG_{o.name} is not defined in any Kconfig of "
                                         f"{spec or 'the default source'}", file=o.file, line=o.line,
                                         key=f"CONFIG_{o.name}",
                                         hint="check the spelling, or drop the option")
