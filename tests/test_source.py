"""Kernel sources: plain trees, git refs in private checkouts, refusals."""

import shutil
import subprocess
from pathlib import Path

import pytest

from harness import source
from harness.errors import InputError

DATA = Path(__file__).resolve().parent / "data"


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    r = tmp_path / "linux"
    shutil.copytree(DATA / "fake-kernel", r)
    git(r, "init", "-q")
    git(r, "-c", "user.email=a@b", "-c", "user.name=a", "add", ".")
    git(r, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "one")
    (r / "kernel" / "watch_queue.c").write_text("/* two */\n")
    git(r, "-c", "user.email=a@b", "-c", "user.name=a", "add", ".")
    git(r, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "two")
    return r


def test_plain_tree_is_identified_by_path(repo):
    s = source.resolve(str(repo))
    assert s.path == repo and s.kind == "path" and not s.immutable
    assert s.identity == f"path:{repo}"
    assert s.version() == "6.1.0"


def test_git_ref_is_a_private_checkout_and_the_repo_is_untouched(repo, tmp_cache):
    before = sorted(p.relative_to(repo) for p in repo.rglob("*"))
    s = source.resolve(f"{repo}@HEAD~1")
    sha = git(repo, "rev-parse", "HEAD~1")
    assert s.identity == f"git:{sha}" and s.immutable and s.kind == "git"
    assert s.path.is_relative_to(tmp_cache)
    assert not (s.path / "kernel" / "watch_queue.c").exists()  # commit 'one' has no such file
    assert sorted(p.relative_to(repo) for p in repo.rglob("*")) == before
    assert git(repo, "status", "--porcelain") == ""
    assert source.resolve(f"{repo}@HEAD~1").path == s.path  # reused


def test_bad_ref_and_bad_paths_are_input_errors(repo, tmp_path, tmp_cache):
    with pytest.raises(InputError, match="is not a commit of"):
        source.resolve(f"{repo}@no-such-branch")
    with pytest.raises(InputError, match="does not exist"):
        source.resolve(str(tmp_path / "nope"))
    with pytest.raises(InputError, match="not a kernel source tree"):
        source.resolve(str(tmp_path))


def test_tree_with_in_tree_build_output_is_refused(repo):
    (repo / ".config").write_text("CONFIG_X=y\n")
    with pytest.raises(InputError, match="mrproper"):
        source.resolve(str(repo))
