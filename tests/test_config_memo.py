"""The merged .config is remembered: a warm run does not re-run Kconfig, a changed input does."""

import time

import pytest

from harness import config, source

pytestmark = pytest.mark.slow  # real merges on the default tree (unpacked on first use)


def fresh_fragment(tmp_path, name):
    """A fragment no earlier run has merged (a unique comment), and its fragment list."""
    frag = tmp_path / name
    frag.write_text(f"# {time.time_ns()}\nCONFIG_WATCH_QUEUE=y\n")
    return frag, config.fragment_list([str(frag)])


def no_make(*a, **kw):
    raise AssertionError("Kconfig ran for an input it has already merged")


def test_a_merge_is_remembered_and_a_changed_fragment_merges_again(tmp_path, monkeypatch):
    src = source.resolve(None)
    frag, frags = fresh_fragment(tmp_path, "mine.config")
    first = config.merge(src, frags)
    assert "CONFIG_WATCH_QUEUE=y" in first.dotconfig

    with monkeypatch.context() as m:
        m.setattr(config, "_make", no_make)
        again = config.merge(src, frags)
    assert (again.hash, again.dotconfig) == (first.hash, first.dotconfig)

    frag.write_text(frag.read_text() + "CONFIG_KEYS=y\nCONFIG_KEY_NOTIFICATIONS=y\n")
    with monkeypatch.context() as m:
        m.setattr(config, "_make", no_make)
        with pytest.raises(AssertionError, match="already merged"):
            config.merge(src, frags)
    changed = config.merge(src, frags)
    assert "CONFIG_KEY_NOTIFICATIONS=y" in changed.dotconfig and changed.hash != first.hash


def test_a_remembered_config_is_still_verified(tmp_path, monkeypatch):
    """The memo holds a .config, not a verdict: an impossible request still fails."""
    src = source.resolve(None)
    _, frags = fresh_fragment(tmp_path, "bad.config")
    res = config.merge(src, frags)
    monkeypatch.setattr(config.kconfig, "parse_fragment",
                        lambda f: [config.kconfig.Option("NO_SUCH_OPTION_WQH", "y", str(f), 1)])
    monkeypatch.setattr(config, "_make", no_make)
    memo = next((res.staging / "memo").glob(f"{config.memo_key(src, frags)}.config"))
    assert memo.read_text() == res.dotconfig
    with pytest.raises(config.ConfigError, match="NO_SUCH_OPTION_WQH"):
        config.merge(src, frags)
