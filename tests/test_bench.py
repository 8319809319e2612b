"""The bench's edit loop works on a private copy of the tree and edits it like a developer."""

from pathlib import Path

from harness import bench, source


def fake_tree(root: Path) -> Path:
    (root / "kernel").mkdir(parents=True)
    (root / "kernel" / "watch_queue.c").write_text("// SPDX\n#include <x.h>\nint a;\n")
    (root / "Makefile").write_text("VERSION = 6\n")
    return root


def test_the_edit_tree_is_a_copy_kept_until_the_source_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("WQH_CACHE", str(tmp_path / "cache"))
    orig = fake_tree(tmp_path / "linux")
    src = source.KernelSource(orig, "debian:linux-source-6.1:1", "debian", immutable=True)
    tree = bench.edit_tree(src)
    assert tree.is_relative_to(tmp_path / "cache") and (tree / "Makefile").read_text() == "VERSION = 6\n"
    (tree / "marker").write_text("kept")
    assert bench.edit_tree(src) == tree and (tree / "marker").exists()  # reused as is
    newer = source.KernelSource(orig, "debian:linux-source-6.1:2", "debian", immutable=True)
    assert not (bench.edit_tree(newer) / "marker").exists()  # another tree: a fresh copy


def test_the_edit_moves_every_line_and_never_touches_the_original(tmp_path):
    orig = fake_tree(tmp_path / "linux")
    before = (orig / "kernel" / "watch_queue.c").read_text()
    tree = fake_tree(tmp_path / "copy")
    first = bench.edit_watch_queue(orig, tree)
    second = bench.edit_watch_queue(orig, tree)
    lines = (tree / "kernel" / "watch_queue.c").read_text().splitlines(keepends=True)
    assert lines[1] == second != first and lines[0] + "".join(lines[2:]) == before
    assert (orig / "kernel" / "watch_queue.c").read_text() == before


def test_a_figure_reports_the_median_and_the_spread_of_its_samples():
    from harness.bench import Figure, median

    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 2.0, 3.0]) == 2.5
    f = Figure("boot", median([10.4, 9.1, 9.7]), "s", 9.0, "bare", 9.7 / 9.0, samples=[10.4, 9.1, 9.7])
    assert "9.70 s" in f.line() and "(median of 3: 9.10-10.40)" in f.line()
    assert "median" not in Figure("one", 1.0, "s", samples=[1.0]).line()


def test_a_version_figure_is_named_by_the_series_or_the_trees_makefile(tmp_path):
    tree = fake_tree(tmp_path / "linux")
    (tree / "Makefile").write_text("# SPDX\nVERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 118\nEXTRAVERSION =\n")
    src = source.KernelSource(tree, f"path:{tree}", "path", immutable=False)
    assert bench._version_label(src, "debian:6.12") == "6.12"
    assert bench._version_label(src, str(tree)) == "6.12.118"
    (tree / "Makefile").write_text("all:\n")
    assert bench._version_label(src, str(tree)) == str(tree)  # no version lines: the spec


def test_cold_versions_build_each_source_and_compare_with_the_first(tmp_path, monkeypatch):
    """Each --versions source is built in its own fresh directory, removed after; the figures
    carry the first's wall and CPU as baseline."""
    monkeypatch.setenv("WQH_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    trees = {spec: fake_tree(tmp_path / spec.replace(":", "-")) for spec in ("debian:6.1", "debian:6.12")}
    monkeypatch.setattr(bench.source, "resolve",
                        lambda spec: source.KernelSource(trees[spec], spec, "debian", immutable=True))
    costs = {trees["debian:6.1"]: (600.0, 1100.0), trees["debian:6.12"]: (900.0, 1760.0)}
    dirs = []

    def fake_build(src, work, log):
        dirs.append(work)
        assert work.is_dir() and work.is_relative_to(tmp_path / "cache")
        return costs[src.path]
    monkeypatch.setattr(bench, "_cold_build_ours", fake_build)
    figs = []

    class A:
        versions = ["debian:6.1", "debian:6.12"]
    bench._cold_versions(A, tmp_path, None, figs.append)
    got = {f.name: (f.value, f.baseline, round(f.ratio, 3)) for f in figs}
    assert got == {"cold_build_wall_6.1": (600.0, 600.0, 1.0), "cold_build_cpu_6.1": (1100.0, 1100.0, 1.0),
                   "cold_build_wall_6.12": (900.0, 600.0, 1.5), "cold_build_cpu_6.12": (1760.0, 1100.0, 1.6)}
    assert len(dirs) == 2 and not any(d.exists() for d in dirs)
