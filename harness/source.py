"""Kernel source trees: the Debian default, a user's path, or a git ref.

The user's tree is never written to: builds use O=, a git ref is checked out
in a private clone under the cache, the Debian tarball is unpacked once.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness import procs
from harness.errors import InfraError, InputError
from harness.paths import cache_dir

DEBIAN_TARBALLS = ("/usr/src/linux-source-6.1.tar.xz", "/usr/src/linux-source-6.1.tar.bz2")
DEBIAN_PACKAGE = "linux-source-6.1"


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
        vals = {}
        try:
            for line in (self.path / "Makefile").read_text().splitlines()[:12]:
                k, _, v = line.partition("=")
                vals[k.strip()] = v.strip()
        except OSError:
            return "unknown"
        v = ".".join(vals.get(k, "?") for k in ("VERSION", "PATCHLEVEL", "SUBLEVEL"))
        return v + vals.get("EXTRAVERSION", "")


def _check_tree(path: Path, what: str) -> None:
    if not (path / "Makefile").is_file() or not (path / "kernel").is_dir():
        raise InputError(f"{path} is not a kernel source tree (no Makefile/kernel/)", key="--kernel",
                         hint="pass --kernel PATH to the top of a Linux source tree")
    if (path / ".config").exists() or (path / "include" / "config").exists():
        raise InputError(f"{path} has in-tree build output (.config or include/config); "
                         "kbuild refuses O= builds from such a tree", key="--kernel",
                         hint=f"run 'make -C {path} mrproper', or pass PATH@REF to build a git ref "
                              "from a private checkout")


def _debian_version() -> str:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", DEBIAN_PACKAGE],
                             capture_output=True, text=True, check=False)
        return out.stdout.strip()
    except FileNotFoundError:
        return ""


def debian_tarball() -> Path | None:
    for t in DEBIAN_TARBALLS:
        if Path(t).is_file():
            return Path(t)
    return None


def _debian_layout() -> tuple[Path, Path, Path, str]:
    """(tarball, tree, stamp, identity) of the Debian default source; InfraError without it."""
    tarball = debian_tarball()
    if tarball is None:
        raise InfraError(f"no kernel source: {DEBIAN_TARBALLS[0]} is missing",
                         hint=f"apt-get install {DEBIAN_PACKAGE}, or pass --kernel PATH")
    st = tarball.stat()
    ver = _debian_version() or f"{st.st_size}-{int(st.st_mtime)}"
    identity = f"debian:{DEBIAN_PACKAGE}:{ver}"
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
    if not spec:
        try:
            _, tree, stamp, identity = _debian_layout()
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

    if not spec:
        try:
            tarball, tree, stamp, identity = _debian_layout()
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


def default_source() -> KernelSource:
    tarball, tree, stamp, identity = _debian_layout()
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
    """--kernel value -> KernelSource. None means the Debian default."""
    if not spec:
        return default_source()
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
