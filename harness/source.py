"""Kernel source trees: the Debian default, a user's path, or a git ref.

The user's tree is never written to: builds use O=, a git ref is checked out
in a private clone under the cache, the Debian tarball is unpacked once.
"""

from __future__ import annotations

import hashlib
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
        raise InputError(f"{what} {path} is not a kernel source tree (no Makefile/kernel/)",
                         hint="pass --kernel PATH to the top of a Linux source tree")
    if (path / ".config").exists() or (path / "include" / "config").exists():
        raise InputError(f"{what} {path} has in-tree build output (.config or include/config); "
                         "kbuild refuses O= builds from such a tree",
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


def default_source() -> KernelSource:
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
    if not (stamp.exists() and stamp.read_text().strip() == identity and tree.is_dir()):
        # Unpack beside, then rename: an interrupted unpack is never used.
        tmp = srcdir / f".partial-{tree.name}"
        shutil.rmtree(tmp, ignore_errors=True)
        stamp.unlink(missing_ok=True)
        shutil.rmtree(tree, ignore_errors=True)
        tmp.mkdir(parents=True)
        print(f"wqh: unpacking {tarball} into {tree} (once)", flush=True)
        rc = procs.run(["tar", "-xf", str(tarball), "-C", str(tmp)])
        inner = tmp / tree.name
        if rc != 0 or not inner.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
            raise InfraError(f"could not unpack {tarball} (tar exit {rc})",
                             hint=f"check free space in {cache_dir()}")
        inner.rename(tree)
        shutil.rmtree(tmp, ignore_errors=True)
        stamp.write_text(identity + "\n")
    return KernelSource(tree, identity, "debian", immutable=True)


def _git(path: Path, *args: str) -> str:
    out = subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise InputError(f"git {' '.join(args)} in {path} failed: {out.stderr.strip()}",
                         hint="check that the path is a git repository and the ref exists")
    return out.stdout.strip()


def git_source(repo: Path, ref: str) -> KernelSource:
    sha = _git(repo, "rev-parse", "--verify", f"{ref}^{{commit}}")
    root = cache_dir() / "src" / f"git-{sha[:16]}"
    done = root / ".wqh-checkout"
    if not done.exists():
        tmp = root.with_name(root.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        # --shared borrows objects read-only; nothing is written to the user's repository.
        for cmd in (["git", "clone", "-q", "--shared", "--no-checkout", str(repo), str(tmp)],
                    ["git", "-C", str(tmp), "checkout", "-q", "--detach", sha]):
            if procs.run(cmd) != 0:
                shutil.rmtree(tmp, ignore_errors=True)
                raise InfraError(f"private checkout of {repo}@{ref} failed: {' '.join(cmd)}")
        (tmp / ".wqh-checkout").write_text(sha + "\n")
        tmp.rename(root)
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
