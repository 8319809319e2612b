"""The build module against a fake kernel Makefile: keys, reuse, stamps, failures."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import build
from harness.build import BuildKey
from harness.config import ConfigResult
from harness.errors import InfraError
from harness.source import KernelSource

DATA = Path(__file__).resolve().parent / "data"


def fake_source(tmp_path, immutable=True):
    tree = tmp_path / "tree"
    shutil.copytree(DATA / "fake-kernel", tree)
    return KernelSource(tree, f"fake:{tree}", "path", immutable)


def cfg(text="CONFIG_WATCH_QUEUE=y\n"):
    import hashlib

    return ConfigResult(text, hashlib.sha256(text.encode()).hexdigest()[:16], (), None)


def test_key_depends_on_source_config_and_patches():
    k = BuildKey("debian:6.1.192-2", "aaaa")
    assert k.digest == BuildKey("debian:6.1.192-2", "aaaa").digest
    others = {BuildKey("debian:6.1.191-1", "aaaa").digest, BuildKey("debian:6.1.192-2", "bbbb").digest,
              BuildKey("debian:6.1.192-2", "aaaa", ("p1",)).digest,
              BuildKey("debian:6.1.192-2", "aaaa", ("p1", "p2")).digest}
    assert k.digest not in others and len(others) == 4
    # Field boundaries are part of the hash: ('ab','c') != ('a','bc').
    assert BuildKey("ab", "c").digest != BuildKey("a", "bc").digest


def test_build_then_reuse_without_make(tmp_path, tmp_cache):
    src = fake_source(tmp_path)
    b = build.build(src, cfg(), ccache=False, quiet=True)
    assert not b.reused and b.bzimage.read_text() == "image\n"
    assert b.objects == 2
    assert set(b.phases) >= {"prepare", "compile", "link", "image"}
    assert (b.builddir / ".config").read_text() == "CONFIG_WATCH_QUEUE=y\n"
    b2 = build.build(src, cfg(), ccache=False, quiet=True)
    assert b2.reused and b2.builddir == b.builddir
    assert (b.builddir / "runs").read_text() == "run\n"  # make ran once
    b3 = build.build(src, cfg("CONFIG_KASAN=y\n"), ccache=False, quiet=True)
    assert b3.builddir != b.builddir and not b3.reused


def options(n, extra=""):
    return "".join(f"CONFIG_OPT{i}=y\n" for i in range(n)) + extra


def test_a_new_config_starts_from_the_nearest_finished_build_of_the_tree(tmp_path, tmp_cache):
    src = fake_source(tmp_path)
    far = build.build(src, cfg(options(40) + "".join(f"CONFIG_K{i}=y\n" for i in range(71))),
                      ccache=False, quiet=True)
    near = build.build(src, cfg(options(40)), ccache=False, quiet=True)
    assert far.seeded_from is None  # nothing to start from
    assert near.seeded_from is None  # 71 lines from the only donor: past the limit
    tool_cmd = near.builddir / "tools" / "objtool" / ".check.o.cmd"
    tool_cmd.parent.mkdir(parents=True)
    tool_cmd.write_text(f"cmd_{near.builddir}/tools/objtool/check.o := gcc -o {near.builddir}/x\n")
    # Two options off, one added: the nearest donor is copied, make goes on in the copy.
    b = build.build(src, cfg(options(38) + "CONFIG_VT=n\n"), ccache=False, quiet=True)
    assert (b.seeded_from, b.seed_delta) == (near.key, 3)
    # objtool's commands name their output directory: the copy's name the copy.
    copied = (b.builddir / "tools" / "objtool" / ".check.o.cmd").read_text()
    assert copied == f"cmd_{b.builddir}/tools/objtool/check.o := gcc -o {b.builddir}/x\n"
    assert str(near.builddir) in tool_cmd.read_text()
    assert (b.builddir / "runs").read_text() == "run\nrun\n"  # the donor's make, then ours
    assert (b.builddir / ".config").read_text() == options(38) + "CONFIG_VT=n\n"
    assert (near.builddir / "runs").read_text() == "run\n"  # the donor is left as it was
    assert build.build(src, cfg(options(38) + "CONFIG_VT=n\n"), ccache=False, quiet=True).reused


def test_builds_of_another_tree_or_an_unfinished_one_are_no_donors(tmp_path, tmp_cache):
    src = fake_source(tmp_path)
    other = KernelSource(src.path, "fake:other-version", "path", True)
    a = build.build(other, cfg(options(10)), ccache=False, quiet=True)
    (a.builddir / build.STAMP).unlink()
    b = build.build(src, cfg(options(10)), ccache=False, quiet=True)
    assert b.seeded_from is None  # other identity: its objects are of other sources
    c = build.build(src, cfg(options(9)), ccache=False, quiet=True)
    assert c.seeded_from == b.key
    (b.builddir / build.STAMP).unlink()
    (c.builddir / build.STAMP).unlink()
    assert build.build(src, cfg(options(8)), ccache=False, quiet=True).seeded_from is None


def test_config_delta_counts_option_lines_only():
    a = "# Automatically generated\nCONFIG_A=y\n# CONFIG_B is not set\n"
    b = "# other comment\nCONFIG_A=y\nCONFIG_B=y\n"
    assert build.config_delta(a, a) == 0
    assert build.config_delta(a, b) == 2


def test_mutable_tree_always_runs_make(tmp_path, tmp_cache):
    src = fake_source(tmp_path, immutable=False)
    build.build(src, cfg(), ccache=False, quiet=True)
    b = build.build(src, cfg(), ccache=False, quiet=True)
    assert not b.reused
    assert (b.builddir / "runs").read_text() == "run\nrun\n"


def test_failed_build_shows_first_error_and_is_not_stamped(tmp_path, tmp_cache, monkeypatch):
    src = fake_source(tmp_path)
    monkeypatch.setenv("FAKE_FAIL", "1")
    with pytest.raises(InfraError) as e:
        build.build(src, cfg(), ccache=False, quiet=True)
    assert "kernel/watch_queue.c:42:1: error: expected ';'" in str(e.value)
    assert e.value.exit_code == 2
    bdir = build.builddir_for(BuildKey(src.identity, cfg().hash))
    assert not (bdir / build.STAMP).exists()
    assert (bdir / "build.log").exists()
    monkeypatch.delenv("FAKE_FAIL")
    assert not build.build(src, cfg(), ccache=False, quiet=True).reused


def test_interrupted_build_is_not_reused_and_leaves_no_make(tmp_path, tmp_cache):
    """SIGTERM to a process building: make's whole group dies, no stamp, next build runs."""
    src = fake_source(tmp_path)
    code = ("import sys; from harness import build, procs; from harness.source import KernelSource;"
            "from harness.config import ConfigResult; procs.install_handlers();"
            f"src = KernelSource(__import__('pathlib').Path({str(src.path)!r}), {src.identity!r}, 'path', True);"
            f"build.build(src, ConfigResult('CONFIG_WATCH_QUEUE=y\\n', {cfg().hash!r}, (), None), ccache=False)")
    # A sleep no other process on the machine runs: pgrep must find only the build's child.
    naptime = f"60.{os.getpid()}{time.monotonic_ns() % 10000}"
    env = dict(os.environ, FAKE_SLEEP=naptime)
    p = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True)
    bdir = build.builddir_for(BuildKey(src.identity, cfg().hash))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (bdir / "build.log").exists():
        time.sleep(0.1)
    time.sleep(1.0)
    sleepers = subprocess.run(["pgrep", "-f", f"sleep {naptime}"], capture_output=True,
                              text=True).stdout.split()
    assert sleepers, "the fake build did not start"
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=15)
    assert p.returncode != 0
    assert _gone(sleepers), "make's child outlived wqh"
    assert not (bdir / build.STAMP).exists()
    b = build.build(src, cfg(), ccache=False, quiet=True)
    assert not b.reused and b.bzimage.exists()


def _gone(pids, timeout=3.0):
    """True once none of PIDS is a live process (a zombie awaiting its reaper is dead)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        live = []
        for pid in pids:
            try:
                state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z":
                live.append(pid)
        if not live:
            return True
        time.sleep(0.1)
    return False


def test_first_errors_picks_the_first_error_block():
    log = "\n".join(["  CC a.o", "  CC b.o", "b.c:1:2: error: x", "more", "make: *** [b.o] Error 1"])
    assert build.first_errors(log)[0] == "  CC a.o"
    assert "b.c:1:2: error: x" in build.first_errors(log)
