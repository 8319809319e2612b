from pathlib import Path

import pytest

from harness import kconfig
from harness.errors import InputError

DATA = Path(__file__).resolve().parent / "data"


def test_fragment_lines_carry_file_and_line(tmp_path):
    f = tmp_path / "x.config"
    f.write_text("# comment\n\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=n\nCONFIG_D=\"str\"\n")
    opts = kconfig.parse_fragment(f)
    assert [(o.name, o.value, o.line) for o in opts] == [
        ("A", "y", 3), ("B", "n", 4), ("C", "n", 5), ("D", '"str"', 6)]


def test_fragment_garbage_is_an_input_error_with_line(tmp_path):
    f = tmp_path / "bad.config"
    f.write_text("CONFIG_A=y\nENABLE KASAN PLEASE\n")
    with pytest.raises(InputError) as e:
        kconfig.parse_fragment(f)
    assert f"{f}:2" in str(e.value)
    assert e.value.exit_code == 3


def test_dotconfig_and_missing_requests(tmp_path):
    final = kconfig.parse_dotconfig("CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_N=16\n")
    assert final == {"A": "y", "B": "n", "N": "16"}
    reqs = [kconfig.Option("A", "y", "f", 1), kconfig.Option("B", "y", "f", 2),
            kconfig.Option("C", "n", "f", 3), kconfig.Option("N", "32", "f", 4),
            kconfig.Option("N", "16", "g", 1)]  # a later fragment overrides
    missing = kconfig.requested_missing(reqs, final)
    assert [(o.name, have) for o, have in missing] == [("B", "n")]


def test_dependency_reader_follows_source_if_and_menu():
    tree = DATA / "kconfig-tree"
    dep = kconfig.find_dependency(tree, "NINEP", {"NET": "y", "FREE": "y"})
    assert dep.defined_at == "Kconfig:16"
    assert dep.expressions == ["NET", "INET", "NET && !OTHER"]
    # OTHER is undefined, so n: '!OTHER' holds and does not hold NINEP back; once set it does.
    assert dep.unmet == ["INET"]
    on = kconfig.find_dependency(tree, "NINEP", {"NET": "y", "FREE": "y", "OTHER": "y"})
    assert on.unmet == ["INET", "OTHER"]
    assert kconfig.unmet_text(on.unmet, {"OTHER": "y"}) == "CONFIG_INET=n, CONFIG_OTHER=y"

    sub = kconfig.find_dependency(tree, "SUBOPT", {})
    assert sub.defined_at == "sub/Kconfig:1"
    assert sub.unmet == ["FREE", "NET"]
    assert kconfig.find_dependency(tree, "FREE", {}).unmet == []
    assert kconfig.find_dependency(tree, "NOPE", {}) is None


def test_base_options_a_tree_does_not_define_are_skipped_but_user_ones_fail(tmp_path):
    from harness import config
    from harness.errors import ConfigError
    from harness.source import KernelSource

    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "Kconfig").write_text("config WATCH_QUEUE\n\tbool \"wq\"\n")
    src = KernelSource(tree, "fake:tree", "path", immutable=True)
    base = str(config.resolve_fragment(config.BASE_FRAGMENT))
    gone = kconfig.Option("BASE_FULL", "y", base, 81)
    config.verify(src, [gone], "# CONFIG_WATCH_QUEUE is not set\n")  # not this tree's option
    for req in (kconfig.Option("WATCH_QUEUE", "y", base, 3),  # defined here, and off
                kconfig.Option("WATCH_QUEU", "y", str(tmp_path / "mine.config"), 1)):  # typo
        with pytest.raises(ConfigError) as e:
            config.verify(src, [gone, req], "# CONFIG_WATCH_QUEUE is not set\n")
        assert f"CONFIG_{req.name}=y ({req.file}:{req.line})" in str(e.value)
        assert "BASE_FULL" not in str(e.value)


def test_a_version_note_is_printed_once_per_run_not_once_per_kernel(tmp_path, capsys, monkeypatch):
    """The wall builds a dozen variants of one 6.12 tree: its note about BASE_FULL (gone by
    6.12) is said once."""
    from harness import config
    from harness.source import KernelSource

    monkeypatch.setattr(config, "_NOTED", set())
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 118\nEXTRAVERSION =\n")
    (tree / "Kconfig").write_text("config WATCH_QUEUE\n\tbool \"wq\"\n")
    src = KernelSource(tree, "fake:tree", "path", immutable=True)
    gone = kconfig.Option("BASE_FULL", "y", str(config.resolve_fragment(config.BASE_FRAGMENT)), 81)
    for _ in range(3):
        config.verify(src, [gone], "CONFIG_WATCH_QUEUE=y\n")
    err = capsys.readouterr().err
    assert err.count("note: CONFIG_BASE_FULL is not in 6.12.118") == 1
