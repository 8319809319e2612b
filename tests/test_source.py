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


# --- Debian sources by name: debian:6.1 (the default), debian:6.12 -----------------------------

from harness import validate  # noqa: E402


def _tarball(where: Path, series: str, sublevel: int, extra: str = "") -> Path:
    """A linux-source-SERIES.tar.xz whose top Makefile says SERIES.SUBLEVEL."""
    major, minor = series.split(".")
    top = where / f"tar-{series}" / f"linux-source-{series}"
    (top / "kernel").mkdir(parents=True)
    (top / "Makefile").write_text(f"# SPDX-License-Identifier: GPL-2.0\nVERSION = {major}\n"
                                  f"PATCHLEVEL = {minor}\nSUBLEVEL = {sublevel}\n"
                                  f"EXTRAVERSION ={extra}\nNAME = x\n")
    (top / "kernel" / "watch_queue.c").write_text(f"/* {series} */\n")
    tb = where / f"linux-source-{series}.tar.xz"
    import tarfile

    with tarfile.open(tb, "w:xz") as t:
        t.add(top, arcname=top.name)
    return tb


@pytest.fixture
def debian(tmp_path, tmp_cache, monkeypatch):
    """Fake installed packages linux-source-6.1 (6.1.192-3) and -6.12 (6.12.118-1~deb12u1)."""
    tbs = {"6.1": _tarball(tmp_path, "6.1", 192), "6.12": _tarball(tmp_path, "6.12", 118)}
    versions = {"linux-source-6.1": "6.1.192-3", "linux-source-6.12": "6.12.118-1~deb12u1"}
    monkeypatch.setattr(source, "DEBIAN_TARBALLS", (str(tbs["6.1"]),))
    monkeypatch.setattr(source, "_debian_tarballs",
                        lambda s: (str(tbs[s]),) if s in tbs else (f"/nonexistent/linux-source-{s}.tar.xz",))
    monkeypatch.setattr(source, "_package_version", lambda p: versions.get(p, ""))
    monkeypatch.setattr(source, "_debian_version", lambda: versions["linux-source-6.1"])
    monkeypatch.setattr(source, "installed_series", lambda: sorted(tbs))
    return tbs


def test_debian_612_is_unpacked_once_beside_the_default(debian, tmp_cache, capsys):
    s = source.resolve("debian:6.12")
    assert s.identity == "debian:linux-source-6.12:6.12.118-1~deb12u1"
    assert s.kind == "debian" and s.immutable
    assert s.path == tmp_cache / "src" / "linux-source-6.12"
    assert (s.path / "kernel" / "watch_queue.c").read_text() == "/* 6.12 */\n"
    assert capsys.readouterr().out.count("unpacking") == 1
    assert source.resolve("debian:6.12") == s and "unpacking" not in capsys.readouterr().out
    assert s.version() == source.version(s) == "6.12.118"
    assert source.tree_at_hand("debian:6.12") == s.path
    assert source.file_reader("debian:6.12")("kernel/watch_queue.c") == b"/* 6.12 */\n"


def test_the_default_keeps_its_identity_and_is_debian_61(debian, tmp_cache):
    d = source.resolve(None)
    assert d.identity == "debian:linux-source-6.1:6.1.192-3"  # the cache's build keys
    assert d.path == tmp_cache / "src" / "linux-source-6.1"
    assert source.resolve("debian:6.1") == d
    assert source.resolve("debian:6.12").path != d.path
    assert d.version() == "6.1.192"


def test_version_of_a_tarball_is_read_without_unpacking(debian, tmp_cache, tmp_path):
    assert source.version("debian:6.12") == "6.12.118"
    assert source.version(None) == source.version("debian:6.1") == "6.1.192"
    assert not (tmp_cache / "src").exists()
    assert source.tree_at_hand("debian:6.12") is None
    assert source.version("debian:5.10") == "unknown"
    _tarball(tmp_path, "6.13", 0, " -rc3")
    mk = tmp_path / "tar-6.13" / "linux-source-6.13" / "Makefile"
    assert source.makefile_version(mk.read_text()) == "6.13.0-rc3"
    assert source.makefile_version("NAME = nothing\n") == "unknown"


@pytest.mark.parametrize("spec, says, fix", [
    ("debian:", "names no Debian kernel series", "debian:6.1 or debian:6.12"),
    ("debian:six", "names no Debian kernel series", "installed here: debian:6.1, debian:6.12"),
    ("debian:6.12.118", "names no Debian kernel series", "debian:MAJOR.MINOR"),
    ("debian:5.10", "linux-source-5.10 is not installed", "apt-get install linux-source-5.10"),
    ("debian:6.1@v6.1", "has no git refs", "drop @REF"),
])
def test_bad_debian_names_are_input_errors_before_any_work(debian, tmp_cache, spec, says, fix):
    for check in (source.resolve, validate.kernel_spec):
        with pytest.raises(InputError, match=says) as e:
            check(spec)
        assert e.value.key == "--kernel" and fix in e.value.hint
    assert not (tmp_cache / "src").exists()


def test_debian_612_without_its_package_names_the_package(debian, tmp_cache, monkeypatch):
    del debian["6.12"]
    with pytest.raises(InputError, match="linux-source-6.12 is not installed") as e:
        validate.kernel_spec("debian:6.12")
    assert "apt-get install linux-source-6.12" in e.value.hint
    assert "debian:6.1" in e.value.hint  # what is installed instead
    with pytest.raises(InputError):
        source.resolve_all(["debian:6.1", "debian:6.12"])
    assert not (tmp_cache / "src").exists()  # refused before 6.1 was unpacked


def test_resolve_all_keeps_order_and_refuses_duplicates(debian, repo, tmp_cache):
    assert source.resolve_all([]) == [source.default_source()]
    got = source.resolve_all(["debian:6.12", str(repo), "debian:6.1", f"{repo}@HEAD~1"])
    assert [s.kind for s in got] == ["debian", "path", "debian", "git"]
    assert got[0].version() == "6.12.118" and got[2].version() == "6.1.192"
    for dup in (["debian:6.12", "debian:6.12"], [str(repo), f"{repo}/../{repo.name}"],
                [f"{repo}@HEAD", f"{repo}@master"] if git(repo, "branch", "--show-current") == "master"
                else [f"{repo}@HEAD", f"{repo}@{git(repo, 'rev-parse', 'HEAD')}"]):
        with pytest.raises(InputError, match="same kernel") as e:
            source.resolve_all(dup)
        assert e.value.key == "--kernel"


def test_kernel_specs_reports_every_bad_one_then_duplicates(debian, repo, tmp_cache):
    from harness.errors import Problems

    probs = Problems()
    validate.kernel_specs(probs, ["debian:5.10", str(repo), "debian:", "/no/such/tree"])
    assert len(probs.errors) == 3
    probs = Problems()
    validate.kernel_specs(probs, ["debian:6.12", "debian:6.12"])
    assert len(probs.errors) == 1 and "same kernel" in probs.errors[0].detail
    probs = Problems()
    validate.kernel_specs(probs, ["debian:6.1", "debian:6.12", str(repo)])
    assert not probs
    assert not (tmp_cache / "src").exists()


def test_the_installed_tarballs_say_their_versions():
    """The real packages' top Makefiles (read from the tarballs, or the unpacked trees)."""
    have = [s for s in ("6.1", "6.12") if source.debian_tarball(s)]
    if not have:
        pytest.skip("no linux-source-6.1 or -6.12 installed (apt-get install linux-source-6.12)")
    for s in have:
        v = source.version(f"debian:{s}")
        assert v.startswith(s + "."), v
        assert v.split(".")[2].isdigit()
        ident = source._debian_layout(s)[3]
        assert ident.startswith(f"debian:linux-source-{s}:{v}")
