"""Variants: patched private copies of a tree, switched in place, never touching the base."""

import os
import shutil
from pathlib import Path

import pytest

from harness import build, patches
from harness.config import ConfigResult
from harness.errors import InputError
from harness.source import KernelSource

DATA = Path(__file__).resolve().parent / "data"


def diff(tmp_path, name, old, new, path="kernel/watch_queue.c"):
    p = tmp_path / name
    p.write_text(f"--- a/{path}\n+++ b/{path}\n@@ -1 +1 @@\n-{old}\n+{new}\n")
    return p


@pytest.fixture
def base(tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(DATA / "fake-kernel", tree)
    (tree / "kernel" / "watch_queue.c").write_text("fixed\n")
    (tree / "kernel" / "pipe.c").write_text("pipe fixed\n")
    return KernelSource(tree, "fake:base", "path", immutable=True)


def test_variant_applies_switches_and_leaves_base_alone(base, tmp_path, tmp_cache):
    wq = base.path / "kernel" / "watch_queue.c"
    a = diff(tmp_path, "a.patch", "fixed", "buggy A")
    b = diff(tmp_path, "b.patch", "pipe fixed", "pipe buggy B", "kernel/pipe.c")
    va = patches.materialize(base, (a,))
    assert va.kind == "variant" and va.identity.startswith("fake:base+patches:")
    assert (va.path / "kernel" / "watch_queue.c").read_text() == "buggy A\n"
    # The base file is untouched and no longer shared; untouched files stay hardlinks.
    assert wq.read_text() == "fixed\n"
    assert wq.stat().st_ino != (va.path / "kernel" / "watch_queue.c").stat().st_ino
    assert (base.path / "Makefile").stat().st_ino == (va.path / "Makefile").stat().st_ino
    vb = patches.materialize(base, (b,))
    assert vb.path == va.path and vb.identity != va.identity
    assert (vb.path / "kernel" / "watch_queue.c").read_text() == "fixed\n"
    assert (vb.path / "kernel" / "pipe.c").read_text() == "pipe buggy B\n"
    assert (base.path / "kernel" / "pipe.c").read_text() == "pipe fixed\n"
    v0 = patches.materialize(base, ())
    assert (v0.path / "kernel" / "pipe.c").read_text() == "pipe fixed\n"


def test_patches_of_one_file_stack_in_order(base, tmp_path, tmp_cache):
    """A bug and then its fix on the same file (`verify --bug B --fix F`): the fix applies to the
    tree with the bug, so the variant is the base again, and the base is untouched."""
    bug = diff(tmp_path, "bug.patch", "fixed", "buggy")
    fix = diff(tmp_path, "fix.patch", "buggy", "fixed")
    patches.check_applies(patches.tree_reader(base), (bug, fix), "the base")
    v = patches.materialize(base, (bug,))
    assert (v.path / "kernel" / "watch_queue.c").read_text() == "buggy\n"
    v = patches.materialize(base, (bug, fix))
    assert (v.path / "kernel" / "watch_queue.c").read_text() == "fixed\n"
    assert v.identity != base.identity
    assert (base.path / "kernel" / "watch_queue.c").read_text() == "fixed\n"


def test_a_patch_that_does_not_apply_is_an_input_error(base, tmp_path, tmp_cache):
    bad = diff(tmp_path, "bad.patch", "no such line", "x")
    with pytest.raises(InputError, match="does not apply"):
        patches.materialize(base, (bad,))
    good = diff(tmp_path, "a.patch", "fixed", "buggy A")
    v = patches.materialize(base, (good,))  # the slot is usable after a failed switch
    assert (v.path / "kernel" / "watch_queue.c").read_text() == "buggy A\n"


def test_a_new_variant_build_is_seeded_from_a_finished_one(base, tmp_path, tmp_cache):
    cfg = ConfigResult("CONFIG_WATCH_QUEUE=y\n", "c0ffee", (), None)
    a = diff(tmp_path, "a.patch", "fixed", "buggy A")
    b = diff(tmp_path, "b.patch", "pipe fixed", "pipe buggy B", "kernel/pipe.c")
    va = patches.materialize(base, (a,))
    ba = build.build(va, cfg, patches.patch_hashes((a,)), ccache=False, quiet=True)
    assert ba.seeded_from is None
    vb = patches.materialize(base, (b,))
    bb = build.build(vb, cfg, patches.patch_hashes((b,)), ccache=False, quiet=True)
    assert bb.seeded_from == ba.key and bb.builddir != ba.builddir
    assert (bb.builddir / "runs").read_text() == "run\nrun\n"  # A's make, then B's


def test_variant_builds_see_their_tree_where_base_builds_see_theirs(tmp_path, tmp_cache):
    # A base tree in the cache (as the Debian one is): ccache's base dir makes compile commands
    # relative, so they match only if the build-dir-to-tree path is the same for both.
    tree = tmp_cache / "src" / "linux-x"
    shutil.copytree(DATA / "fake-kernel", tree)
    base = KernelSource(tree, "fake:x", "debian", immutable=True)
    (tree / "kernel" / "watch_queue.c").write_text("fixed\n")
    v = patches.materialize(base, (diff(tmp_path, "p.patch", "fixed", "buggy"),))
    key = build.BuildKey(v.identity, "cfg")
    vdir = build.builddir_for(key, v)
    bdir = build.builddir_for(build.BuildKey(base.identity, "cfg"), base)
    assert vdir.is_relative_to(patches.variant_root(base)) and vdir != bdir
    assert os.path.relpath(v.path, vdir) == os.path.relpath(tree, bdir)


WALL_PATCHES = Path(__file__).resolve().parent.parent / "scenarios" / "regressions" / "patches"


def _changed_lines(p: Path) -> list[str]:
    return [ln for ln in p.read_text().splitlines()
            if ln[:1] in ("+", "-") and not ln.startswith(("+++ ", "--- "))]


def test_a_rebased_copy_is_used_for_its_series_only(tmp_path):
    (tmp_path / "6.12").mkdir()
    a, b = tmp_path / "a.patch", tmp_path / "b.patch"
    for p in (a, b, tmp_path / "6.12" / "a.patch"):
        p.write_text("--- a/x\n+++ b/x\n")
    assert patches.for_version((a, b), "6.12.118") == (tmp_path / "6.12" / "a.patch", b)
    assert patches.for_version((a, b), "6.1.192") == (a, b)
    assert patches.for_version((a, b), "6.120.1") == (a, b)  # a series, not a prefix
    assert patches.for_version((a, b), "unknown") == (a, b)


def test_every_rebased_wall_patch_changes_the_same_lines_as_its_original():
    """A rebased copy may only move context: the bug it puts back must be the same one."""
    copies = sorted(WALL_PATCHES.glob("*/*.patch"))
    assert copies
    for c in copies:
        orig = WALL_PATCHES / c.name
        assert orig.is_file(), f"{c} has no original {orig.name}"
        assert _changed_lines(c) == _changed_lines(orig), f"{c} changes other lines than {orig}"
        patches.check_form(c)


@pytest.mark.slow
def test_every_wall_patch_applies_to_6_12_as_is_or_rebased():
    """Read from Debian's linux-source-6.12 tarball (no unpacking, ~15 s): each re-introduction
    applies to 6.12 itself or through its copy in patches/6.12/."""
    from harness import source

    try:
        read = source.file_reader("debian:6.12")
    except Exception as e:  # not installed: nothing to check against
        pytest.skip(f"linux-source-6.12 is not installed ({e})")
    version = source.version("debian:6.12")
    assert patches.series(version) == "6.12"
    originals = tuple(sorted(WALL_PATCHES.glob("*.patch")))
    chosen = patches.for_version(originals, version)
    if hasattr(read, "prefetch"):  # a tarball; an unpacked tree reads files as they come
        read.prefetch([rel for p in chosen for rel in patches._all_files(p)])
    for p in chosen:
        patches.check_applies(read, (p,), "linux-source-6.12")
