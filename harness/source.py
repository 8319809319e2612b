"""Kernel source trees: Debian's linux-source packages by name, a user's path, or a git ref.

The user's tree is never written to: builds use O=, a git ref is checked out
in a private clone under the cache, a Debian tarball is unpacked once.

--kernel takes PATH, PATH@REF or debian:SERIES (debian:6.1, debian:6.12: the installed
linux-source-SERIES package's tarball in /usr/src); no --kernel is debian:6.1.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness import procs
from harness.errors import InfraError, InputError
from harness.paths import cache_dir

# The default source (no --kernel): debian:6.1. Its identity keys the cache's builds.
DEBIAN_DEFAULT = "6.1"
DEBIAN_TARBALLS = ("/usr/src/linux-source-6.1.tar.xz", "/usr/src/linux-source-6.1.tar.bz2")
DEBIAN_PACKAGE = "linux-source-6.1"
DEBIAN_PREFIX = "debian:"
DEBIAN_SERIES = re.compile(r"^[1-9][0-9]*\.[0-9]+$")  # 6.1, 6.12: linux-source-<series>


@dataclass(frozen=True)
class KernelSource:
    path: Path
    identity: str  # stable description of the contents, part of the build key
    kind: str  # 'debian' | 'path' | 'git'
    immutable: bool  # contents cannot change under the same identity

    @property
    def key(self) -> str:
        return hashlib.sha256(self.identity.encode()).hexdigest()[:12]

    def version(self) -> str:
        """Kernel version from the top Makefile, e.g. '6.1.192'."""
        return version(self)


_MAKEVAR = re.compile(r"^(VERSION|PATCHLEVEL|SUBLEVEL|EXTRAVERSION)\s*=\s*(\S*)\s*$")


def makefile_version(text: str) -> str:
    """'6.12.118' from a top Makefile's VERSION, PATCHLEVEL, SUBLEVEL (and EXTRAVERSION)."""
    vals: dict[str, str] = {}
    for line in text.splitlines()[:40]:
        m = _MAKEVAR.match(line)
        if m and m.group(1) not in vals:
            vals[m.group(1)] = m.group(2)
    if "VERSION" not in vals or "PATCHLEVEL" not in vals:
        return "unknown"
    v = ".".join(vals.get(k, "?") for k in ("VERSION", "PATCHLEVEL", "SUBLEVEL"))
    return v + vals.get("EXTRAVERSION", "")


def version(src: "KernelSource | str | None") -> str:
    """The kernel version ('6.1.192', '6.12.118') of a source: its Makefile's
    VERSION.PATCHLEVEL.SUBLEVEL(EXTRAVERSION), 'unknown' when unreadable. SRC is a KernelSource,
    or a --kernel spec (None: the default), read without unpacking or cloning: a Debian
    tarball that is not unpacked yet gives its top Makefile alone."""
    if isinstance(src, KernelSource):
        try:
            return makefile_version((src.path / "Makefile").read_text(errors="replace"))
        except OSError:
            return "unknown"
    try:
        read = file_reader(src)
        data = read("Makefile") if read is not None else None
    except (InputError, InfraError, OSError):
        return "unknown"
    return makefile_version(data.decode(errors="replace")) if data else "unknown"


def _check_tree(path: Path, what: str) -> None:
    if not (path / "Makefile").is_file() or not (path / "kernel").is_dir():
        raise InputError(f"{path} is not a kernel source tree (no Makefile/kernel/)", key="--kernel",
                         hint="pass --kernel PATH to the top of a Linux source tree")
    if (path / ".config").exists() or (path / "include" / "config").exists():
        raise InputError(f"{path} has in-tree build output (.config or include/config); "
                         "kbuild refuses O= builds from such a tree", key="--kernel",
                         hint=f"run 'make -C {path} mrproper', or pass PATH@REF to build a git ref "
                              "from a private checkout")


def debian_series(spec: str | None) -> str | None:
    """The Debian series SPEC names ('6.12' for debian:6.12, the default's for None), or None
    for a PATH or PATH@REF. The series is not checked here: see check_debian."""
    if not spec:
        return DEBIAN_DEFAULT
    if spec.startswith(DEBIAN_PREFIX):
        return spec[len(DEBIAN_PREFIX):]
    return None


def debian_package(series: str = DEBIAN_DEFAULT) -> str:
    return DEBIAN_PACKAGE if series == DEBIAN_DEFAULT else f"linux-source-{series}"


def _debian_tarballs(series: str) -> tuple[str, ...]:
    if series == DEBIAN_DEFAULT:
        return DEBIAN_TARBALLS
    return tuple(f"/usr/src/linux-source-{series}.tar.{z}" for z in ("xz", "bz2"))


def _package_version(package: str) -> str:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package],
                             capture_output=True, text=True, check=False)
        return out.stdout.strip()
    except FileNotFoundError:
        return ""


def _debian_version() -> str:
    """The installed version of the default package (linux-source-6.1)."""
    return _package_version(DEBIAN_PACKAGE)


def debian_tarball(series: str = DEBIAN_DEFAULT) -> Path | None:
    for t in _debian_tarballs(series):
        if Path(t).is_file():
            return Path(t)
    return None


def installed_series() -> list[str]:
    """Series whose linux-source tarball is in /usr/src, oldest first (for messages)."""
    found = {DEBIAN_DEFAULT} if debian_tarball() else set()
    for t in Path("/usr/src").glob("linux-source-*.tar.*"):
        ser = t.name[len("linux-source-"):].split(".tar")[0]
        if DEBIAN_SERIES.match(ser):
            found.add(ser)
    return sorted(found, key=lambda v: tuple(int(x) for x in v.split(".")))


def check_debian(spec: str, key: str = "--kernel") -> str:
    """debian:SERIES -> SERIES, or an InputError naming the option and the fix: a malformed
    series, an @REF, or a series whose linux-source package is not installed."""
    series = spec[len(DEBIAN_PREFIX):]
    have = ", ".join(f"debian:{v}" for v in installed_series()) or "none"
    if "@" in series:
        raise InputError(f"{spec!r}: a Debian source has no git refs", key=key,
                         hint="drop @REF, or give PATH@REF of a git clone of Linux")
    if not DEBIAN_SERIES.match(series):
        raise InputError(f"{spec!r} names no Debian kernel series", key=key,
                         hint=f"write debian:MAJOR.MINOR, e.g. debian:6.1 or debian:6.12 "
                              f"(installed here: {have})")
    if debian_tarball(series) is None:
        pkg = debian_package(series)
        raise InputError(f"{spec}: {_debian_tarballs(series)[0]} is missing ({pkg} is not "
                         "installed)", key=key,
                         hint=f"apt-get install {pkg}, or use one that is installed: {have}")
    return series


def _debian_layout(series: str = DEBIAN_DEFAULT) -> tuple[Path, Path, Path, str]:
    """(tarball, tree, stamp, identity) of a Debian source; InfraError without it."""
    tarball = debian_tarball(series)
    pkg = debian_package(series)
    if tarball is None:
        raise InfraError(f"no kernel source: {_debian_tarballs(series)[0]} is missing",
                         hint=f"apt-get install {pkg}, or pass --kernel PATH")
    st = tarball.stat()
    ver = (_debian_version() if series == DEBIAN_DEFAULT else _package_version(pkg)) \
        or f"{st.st_size}-{int(st.st_mtime)}"
    identity = f"debian:{pkg}:{ver}"
    # The tree's absolute path is fixed (src/linux-source-6.1): ccache keys include it.
    srcdir = cache_dir() / "src"
    tree = srcdir / tarball.name.split(".tar")[0]
    stamp = srcdir / f"{tree.name}.wqh-unpacked"
    return tarball, tree, stamp, identity


def _unpacked(tree: Path, stamp: Path, identity: str) -> bool:
    try:
        return stamp.read_text().strip() == identity and tree.is_dir()
    except OSError:
        return False


class _TarReader:
    """Files of the Debian tarball without unpacking it: the members a patch names, extracted
    in one pass into a temporary directory (seconds, against half a minute for the tree)."""

    def __init__(self, tarball: Path, top: str):
        self.tarball, self.top = tarball, top
        self.files: dict[str, bytes | None] = {}

    def prefetch(self, rels: list[str]) -> None:
        import tempfile

        want = [r for r in dict.fromkeys(rels) if r not in self.files]
        if not want:
            return
        with tempfile.TemporaryDirectory(prefix="wqh-tar-check-") as d:
            procs.run(["tar", "-xf", str(self.tarball), "-C", d, "--occurrence=1",
                       *(f"{self.top}/{r}" for r in want)],
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for r in want:
                p = Path(d) / self.top / r
                self.files[r] = p.read_bytes() if p.is_file() else None

    def __call__(self, rel: str) -> bytes | None:
        if rel not in self.files:
            self.prefetch([rel])
        return self.files[rel]


def tree_at_hand(spec: str | None):
    """The tree SPEC names, without unpacking or cloning: a directory, (repository, commit) for
    PATH@REF, or None (the Debian source not unpacked yet)."""
    series = debian_series(spec)
    if series is not None:
        try:
            _, tree, stamp, identity = _debian_layout(series)
        except InfraError:
            return None
        return tree if _unpacked(tree, stamp, identity) else None
    path_s, ref = spec, None
    if "@" in spec:
        path_s, _, ref = spec.rpartition("@")
    path = Path(path_s).expanduser().resolve()
    return (path, rev_parse(path, ref)) if ref else path


def file_reader(spec: str | None):
    """rel path -> the tree's bytes of it (None: no such file), without unpacking or cloning
    anything; None when the tree is not at hand (the Debian source not unpacked yet)."""
    def from_dir(root: Path):
        def read(rel: str) -> bytes | None:
            p = root / rel
            return p.read_bytes() if p.is_file() else None
        return read

    series = debian_series(spec)
    if series is not None:
        try:
            tarball, tree, stamp, identity = _debian_layout(series)
        except InfraError:
            return None
        return from_dir(tree) if _unpacked(tree, stamp, identity) else _TarReader(tarball, tree.name)
    path_s, ref = spec, None
    if "@" in spec:
        path_s, _, ref = spec.rpartition("@")
    path = Path(path_s).expanduser().resolve()
    if not ref:
        return from_dir(path)
    sha = rev_parse(path, ref)
    return lambda rel: git_show(path, sha, rel)


def _pid_alive(pid: str) -> bool:
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _unpack(tarball: Path, tree: Path, stamp: Path, identity: str) -> None:
    srcdir = tree.parent
    for old in srcdir.glob(f".partial-{tree.name}*"):
        shutil.rmtree(old, ignore_errors=True)
    tmp = srcdir / f".partial-{tree.name}-{os.getpid()}"
    stamp.unlink(missing_ok=True)
    shutil.rmtree(tree, ignore_errors=True)
    tmp.mkdir(parents=True)
    print(f"wqh: unpacking {tarball} into {tree} (once)", flush=True)
    try:
        rc = procs.run(["tar", "-xf", str(tarball), "-C", str(tmp)])
        inner = tmp / tree.name
        if rc != 0 or not inner.is_dir():
            raise InfraError(f"could not unpack {tarball} (tar exit {rc})",
                             hint=f"check free space in {cache_dir()}")
        inner.rename(tree)
        stamp.write_text(identity + "\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def debian_source(series: str = DEBIAN_DEFAULT) -> KernelSource:
    """Debian's linux-source-SERIES, unpacked once into the cache."""
    tarball, tree, stamp, identity = _debian_layout(series)
    srcdir = tree.parent
    if not _unpacked(tree, stamp, identity):
        srcdir.mkdir(parents=True, exist_ok=True)
        # One unpack at a time (two runs on one cache wait for each other, the second then
        # finds the tree); unpack beside, then rename: an interrupted unpack is never used,
        # and the next run removes what it left.
        with (srcdir / ".unpack.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not _unpacked(tree, stamp, identity):
                _unpack(tarball, tree, stamp, identity)
    return KernelSource(tree, identity, "debian", immutable=True)


def default_source() -> KernelSource:
    return debian_source(DEBIAN_DEFAULT)


def _git(path: Path, *args: str) -> str:
    try:
        out = subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True,
                             errors="replace")
    except OSError as e:
        raise InfraError(f"cannot run git: {e.strerror}", hint="apt-get install git") from e
    if out.returncode != 0:
        raise InputError(f"git {' '.join(args)} in {path} failed: {out.stderr.strip()}",
                         key="--kernel",
                         hint="check that the path is a git repository and the ref exists")
    return out.stdout.strip()


def rev_parse(repo: Path, ref: str) -> str:
    """The commit REF names in REPO (an InputError if REPO is no repository or REF no commit)."""
    if _git_dir(repo) is None:
        raise InputError(f"{repo} is not a git repository, so @REF cannot be checked out",
                         key="--kernel", hint="drop @REF to build the tree as it is, or give "
                                              "the top of a git clone of Linux")
    r = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", "--quiet",
                        "--end-of-options", f"{ref}^{{commit}}"],
                       capture_output=True, text=True, errors="replace")
    if r.returncode != 0 or not r.stdout.strip():
        raise InputError(f"{ref!r} is not a commit of {repo}", key="--kernel",
                         hint="give a branch, tag or commit that 'git -C PATH log REF' shows")
    return r.stdout.strip()


def _git_dir(repo: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "--git-dir"],
                             capture_output=True, text=True, errors="replace")
    except OSError:
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_has(repo: Path, sha: str, name: str) -> bool:
    """Whether commit SHA of REPO has the top-level entry NAME."""
    r = subprocess.run(["git", "-C", str(repo), "cat-file", "-e", f"{sha}:{name}"],
                       capture_output=True)
    return r.returncode == 0


def git_show(repo: Path, sha: str, rel: str) -> bytes | None:
    """A file of commit SHA, or None where it has none."""
    r = subprocess.run(["git", "-C", str(repo), "show", f"{sha}:{rel}"], capture_output=True)
    return r.stdout if r.returncode == 0 else None


def git_source(repo: Path, ref: str) -> KernelSource:
    sha = rev_parse(repo, ref)
    root = cache_dir() / "src" / f"git-{sha[:16]}"
    done = root / ".wqh-checkout"
    if not done.exists():
        root.parent.mkdir(parents=True, exist_ok=True)
        for old in root.parent.glob(root.name + ".partial*"):  # left by an interrupted run
            if not _pid_alive(old.name.rpartition("-")[2]):
                shutil.rmtree(old, ignore_errors=True)
        tmp = root.with_name(f"{root.name}.partial-{os.getpid()}")
        # --shared borrows objects read-only; nothing is written to the user's repository.
        for cmd in (["git", "clone", "-q", "--shared", "--no-checkout", str(repo), str(tmp)],
                    ["git", "-C", str(tmp), "checkout", "-q", "--detach", sha]):
            if procs.run(cmd) != 0:
                shutil.rmtree(tmp, ignore_errors=True)
                raise InfraError(f"private checkout of {repo}@{ref} failed: {' '.join(cmd)}")
        (tmp / ".wqh-checkout").write_text(sha + "\n")
        try:
            tmp.rename(root)
        except OSError:  # another run finished the same checkout first
            shutil.rmtree(tmp, ignore_errors=True)
            if not done.exists():
                raise
    return KernelSource(root, f"git:{sha}", "git", immutable=True)


def resolve(spec: str | None) -> KernelSource:
    """--kernel value -> KernelSource. None means the Debian default (debian:6.1)."""
    if not spec:
        return default_source()
    if spec.startswith(DEBIAN_PREFIX):
        return debian_source(check_debian(spec))
    path_s, ref = spec, None
    if "@" in spec:
        path_s, _, ref = spec.rpartition("@")
    path = Path(path_s).expanduser()
    if not path.exists():
        raise InputError(f"--kernel: {path} does not exist", key="--kernel",
                         hint="pass the top directory of a Linux source tree, optionally PATH@REF")
    path = path.resolve()
    if ref:
        src = git_source(path, ref)
        _check_tree(src.path, "checkout")
        return src
    _check_tree(path, "--kernel")
    # A working tree changes under us: identity is its location; make decides what to rebuild.
    return KernelSource(path, f"path:{path}", "path", immutable=False)


def canonical(spec: str | None) -> str:
    """What SPEC names, read without unpacking or cloning: 'debian:6.1' (also for None), an
    absolute path, or 'path@<commit>'. Two specs of one canonical name are one kernel."""
    if not spec:
        return DEBIAN_PREFIX + DEBIAN_DEFAULT
    if spec.startswith(DEBIAN_PREFIX):
        return DEBIAN_PREFIX + check_debian(spec)
    path_s, ref = spec, None
    if "@" in spec:
        path_s, _, ref = spec.rpartition("@")
    path = Path(path_s).expanduser().resolve()
    return f"{path}@{rev_parse(path, ref)}" if ref else str(path)


def check_distinct(specs: list[str | None], key: str = "--kernel") -> None:
    """A repeated --kernel names each kernel once: debian:6.1 and no --kernel, a path and the
    same path through a symlink, two refs of one commit are duplicates (InputError)."""
    seen: dict[str, str | None] = {}
    for spec in specs:
        c = canonical(spec)
        if c in seen:
            first = seen[c] or "the default (debian:6.1)"
            raise InputError(f"{spec or 'the default'} and {first} are the same kernel ({c})",
                             key=key, hint="give each kernel once")
        seen[c] = spec


def resolve_all(specs: list[str]) -> list[KernelSource]:
    """A repeated --kernel -> its sources, in order; [] means the default. Duplicates (by
    canonical name, then by identity) are an InputError before anything is unpacked."""
    if not specs:
        return [default_source()]
    check_distinct(specs)
    out: list[KernelSource] = []
    for spec in specs:
        src = resolve(spec)
        if any(o.identity == src.identity for o in out):
            raise InputError(f"{spec} is a kernel named twice ({src.identity})", key="--kernel",
                             hint="give each kernel once")
        out.append(src)
    return out


# --- Kconfig options that differ by version (kconfigs/versions.yaml) --------------------------

def _vtuple(v: str) -> tuple[int, ...]:
    """'6.12.118-rc1' -> (6, 12, 118); ' 6.1' -> (6, 1)."""
    out = []
    for part in str(v).strip().split(".")[:3]:
        digits = re.match(r"\d+", part)
        if not digits:
            break
        out.append(int(digits.group()))
    return tuple(out)


def _series_of(v: str) -> tuple[int, ...]:
    return _vtuple(v)[:2]


@functools.lru_cache(maxsize=None)
def kconfig_versions(path: Path | None = None) -> dict[str, dict]:
    """kconfigs/versions.yaml: option (without CONFIG_) -> its entry. Fails loudly on a
    malformed file (a test checks it)."""
    import yaml

    from harness.paths import KCONFIGS

    p = path or KCONFIGS / "versions.yaml"
    data = yaml.safe_load(p.read_text()) or {}
    opts = data.get("options") or {}
    for name, e in opts.items():
        if not isinstance(e, dict) or not e.get("absent_in") or not e.get("reason"):
            raise ValueError(f"{p}: option {name}: needs absent_in and reason")
        for v in list(e.get("present_in", [])) + list(e["absent_in"]):
            if len(_vtuple(v)) != 2:
                raise ValueError(f"{p}: option {name}: {v!r} is not a MAJOR.MINOR version")
    return opts


def absent_in(option: str, version: str) -> bool:
    """Whether versions.yaml says OPTION is not defined on VERSION ('6.12.118', '6.12'): a
    version at or after its first recorded absent_in."""
    e = kconfig_versions().get(option.removeprefix("CONFIG_"))
    v = _series_of(version)
    if e is None or len(v) != 2:
        return False
    return v >= min(_vtuple(a) for a in e["absent_in"])


def version_notes(option: str, version: str) -> str | None:
    """What versions.yaml knows about OPTION on VERSION, for config verification to print
    instead of a bare 'not defined' or unmet dependency; None when nothing applies (the
    option is not listed, or VERSION is one that has it)."""
    name = option.removeprefix("CONFIG_")
    e = kconfig_versions().get(name)
    v = _series_of(version)
    if e is None or len(v) != 2:
        return None
    first_absent = min(e["absent_in"], key=_vtuple)
    present = sorted(e.get("present_in", []), key=_vtuple)
    repl = f"; replaced by CONFIG_{e['replaced_by']}" if e.get("replaced_by") else ""
    if absent_in(name, version):
        since = f"after {present[-1]}, " if present else ""
        return (f"CONFIG_{name} is not in {version}: removed {since}gone by {first_absent}"
                f"{repl} ({e['reason']})")
    if present and v > _vtuple(present[-1]):
        return (f"CONFIG_{name} is in {present[-1]} and gone by {first_absent}; {version} lies "
                f"between: check its Kconfig{repl} ({e['reason']})")
    return None
