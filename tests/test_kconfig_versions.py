"""kconfigs/versions.yaml: the options some kernel version lacks, and its claims against the
real trees (Debian's 6.1 and 6.12, when they are unpacked in the cache)."""

import subprocess
from pathlib import Path

import pytest

from harness import kconfig, source
from harness.paths import KCONFIGS

DATA = source.kconfig_versions()
FRAGMENTS = sorted(KCONFIGS.glob("*.config"))


def _names() -> set[str]:
    names = {o.name for f in FRAGMENTS for o in kconfig.parse_fragment(f)}
    return names | set(DATA) | {e["replaced_by"] for e in DATA.values() if e.get("replaced_by")}


def _tree_symbols(series: str) -> set[str]:
    """Which of the fragments' and versions.yaml's options the tree's Kconfig files define
    (one grep: validate.tree_symbols reads every symbol, ten times slower)."""
    spec = f"debian:{series}"
    tree = source.tree_at_hand(spec)
    if not isinstance(tree, Path):
        pytest.skip(f"{spec} is not unpacked in the cache (wqh build --kernel {spec} unpacks it)")
    alt = "|".join(sorted(_names()))
    r = subprocess.run(["grep", "-rhoE", "--include=Kconfig*", rf"^\s*(menu)?config\s+({alt})\s*$",
                        str(tree)], capture_output=True, text=True)
    found = {m.split()[-1] for m in r.stdout.splitlines()}
    assert "WATCH_QUEUE" in found, f"grep found nothing in {tree}: {r.stderr}"
    return found


def _set_by(fragment: str) -> set[str]:
    return {o.name for o in kconfig.parse_fragment(KCONFIGS / f"{fragment}.config") if o.value != "n"}


def test_every_entry_names_fragments_that_really_set_it():
    assert DATA, "versions.yaml lists no option"
    for name, e in DATA.items():
        assert e["fragments"], name
        for f in e["fragments"]:
            assert name in _set_by(f), f"{f}.config does not set CONFIG_{name}"
        if e.get("replaced_by"):
            assert e["replaced_by"] != name


@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_claims_hold_on_the_real_tree(series):
    syms = _tree_symbols(series)
    checked = 0
    for name, e in DATA.items():
        if series in e["absent_in"]:
            assert name not in syms, f"versions.yaml: CONFIG_{name} absent in {series}, but defined"
            checked += 1
        if series in e.get("present_in", []):
            assert name in syms, f"versions.yaml: CONFIG_{name} present in {series}, but undefined"
            checked += 1
        if e.get("replaced_by") and series in e["absent_in"]:
            assert e["replaced_by"] in syms, f"CONFIG_{e['replaced_by']} is not in {series}"
    assert checked


@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_every_fragment_option_is_defined_or_listed(series):
    """A fragment option missing on a version without a versions.yaml entry is a finding."""
    syms = _tree_symbols(series)
    unlisted = []
    for f in FRAGMENTS:
        for o in kconfig.parse_fragment(f):
            if o.value != "n" and o.name not in syms and not source.absent_in(o.name, series):
                unlisted.append(f"{f.name}:{o.line} CONFIG_{o.name}")
    assert not unlisted, f"undefined on {series} and not in versions.yaml: {unlisted}"


def test_version_notes_say_why_on_versions_without_the_option():
    n = source.version_notes("CONFIG_UBSAN_SANITIZE_ALL", "6.12.118")
    assert n.startswith("CONFIG_UBSAN_SANITIZE_ALL is not in 6.12.118") and "UBSAN" in n
    assert source.absent_in("UBSAN_SANITIZE_ALL", "6.12") and source.absent_in("BASE_FULL", "7.0.0")
    assert "BASE_SMALL" in source.version_notes("BASE_FULL", "6.13.0-rc2")
    assert source.version_notes("BASE_FULL", "6.1.192") is None  # 6.1 has it
    assert not source.absent_in("BASE_FULL", "6.1.192")
    between = source.version_notes("BASE_FULL", "6.6.60")
    assert "lies between" in between and not source.absent_in("BASE_FULL", "6.6.60")
    assert source.version_notes("WATCH_QUEUE", "6.12.118") is None  # not listed
    assert source.version_notes("BASE_FULL", "unknown") is None


def test_a_malformed_file_is_refused(tmp_path):
    bad = tmp_path / "v.yaml"
    bad.write_text("options:\n  X:\n    present_in: ['6.1']\n")
    with pytest.raises(ValueError, match="needs absent_in and reason"):
        source.kconfig_versions(bad)
    bad.write_text("options:\n  X:\n    absent_in: ['6.12.1']\n    reason: r\n")
    with pytest.raises(ValueError, match="not a MAJOR.MINOR"):
        source.kconfig_versions(bad)


# --- guest-tests/version_facts.yaml: behaviour that differs between 6.1 and 6.12 ---------------

import yaml  # noqa: E402

from harness.paths import REPO  # noqa: E402

FACTS = yaml.safe_load((REPO / "guest-tests" / "version_facts.yaml").read_text())["facts"]
AREAS = {"pipe", "filter", "keys", "locking", "uapi", "sources"}


def test_every_fact_is_complete_and_says_whether_it_differs():
    assert len(FACTS) >= 10
    for fid, f in FACTS.items():
        assert f["area"] in AREAS, fid
        assert f["where"] and f["summary"] and isinstance(f["differs"], bool), fid
        assert set(f["expect"]) == set(f["evidence"]) == {"6.1", "6.12"}, fid
        same = f["expect"]["6.1"] == f["expect"]["6.12"]
        if f["area"] != "locking":  # locking facts differ in code, not in what a test sees
            assert same != f["differs"], f"{fid}: differs={f['differs']} but expect says otherwise"
        for ev in f["evidence"].values():
            assert ev and all(set(e) in ({"file", "contains"}, {"file", "lacks"}) for e in ev), fid


@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_fact_evidence_holds_in_the_real_tree(series):
    tree = source.tree_at_hand(f"debian:{series}")
    if not isinstance(tree, Path):
        pytest.skip(f"debian:{series} is not unpacked in the cache")
    wrong = []
    for fid, f in FACTS.items():
        for e in f["evidence"][series]:
            text = (tree / e["file"]).read_text(errors="replace")
            if "contains" in e and e["contains"] not in text:
                wrong.append(f"{fid}: {e['file']} lacks {e['contains']!r}")
            if "lacks" in e and e["lacks"] in text:
                wrong.append(f"{fid}: {e['file']} contains {e['lacks']!r}")
    assert not wrong, wrong


def test_the_uapi_header_and_the_notification_sites_are_the_same_on_both():
    trees = {s: source.tree_at_hand(f"debian:{s}") for s in ("6.1", "6.12")}
    if not all(isinstance(t, Path) for t in trees.values()):
        pytest.skip("debian:6.1 and debian:6.12 are not both unpacked in the cache")
    hdr = "include/uapi/linux/watch_queue.h"
    assert (trees["6.1"] / hdr).read_bytes() == (trees["6.12"] / hdr).read_bytes()

    def sites(t):
        out = []
        for f in sorted((t / "security" / "keys").glob("*.c")):
            out += [f"{f.name}:{line.strip()}" for line in f.read_text().splitlines()
                    if line.strip().startswith("notify_key(")]
        return out
    assert sites(trees["6.1"]) == sites(trees["6.12"])
    assert len(sites(trees["6.1"])) == FACTS["key-notification-sites-unchanged"]["expect"]["6.1"]["sites"]


def test_a_fragment_option_gone_on_a_version_is_a_note_there_not_an_error(capsys):
    """crashkit.config asks for UBSAN_SANITIZE_ALL, which 6.12 dropped: on 6.12 the validation
    phase says so with the reason (kconfigs/versions.yaml) and goes on; on 6.1 it is defined."""
    from harness import config, source, validate
    from harness.errors import Problems

    if "6.12" not in source.installed_series() or source.tree_at_hand("debian:6.12") is None:
        pytest.skip("linux-source-6.12 is not installed and unpacked (ci/setup.sh installs it)")
    p = Problems()
    validate.symbols_defined(p, "debian:6.12", config.fragment_list(["crashkit"]))
    assert not p.errors
    err = capsys.readouterr().err
    assert "CONFIG_UBSAN_SANITIZE_ALL is not in 6.12" in err and "crashkit.config:" in err
