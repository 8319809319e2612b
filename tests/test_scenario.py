import subprocess
import textwrap

import pytest

from harness import scenario
from harness.errors import InputError
from harness.paths import REPO, SCENARIOS


def write(tmp_path, text, name="s.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_smoke_scenario_loads():
    s = scenario.load(SCENARIOS / "smoke.yaml")
    assert s.name == "smoke"
    assert s.kernel.fragments == ("watch-queue",)
    assert s.vm == scenario.VMShape(cpus=2, memory="1G")
    assert [t.id for t in s.tests] == ["guest-tests/test_smoke.py::test_key_update_gives_one_record"]
    t = s.tests[0]
    assert t.path == REPO / "guest-tests" / "test_smoke.py"
    assert t.node == f"{t.path}::test_key_update_gives_one_record"
    assert t.expect == "pass"


def test_every_shipped_scenario_is_valid():
    scs = scenario.load_all([])
    assert scs, "scenarios/ has no scenario"
    assert len({s.name for s in scs}) == len(scs)


def test_every_shipped_sanitizer_scenario_shares_one_kernel_config():
    """CI's cost from an empty cache is its number of distinct configs: each is a full build
    (7-10 min here), where a wall variant of a shared one is ~30 s. So every shipped KASAN
    scenario uses the one sanitizer list that `wqh repro` and the wall default to."""
    from harness import config, repro

    assert repro.DEFAULT_FRAGMENTS == config.SANITIZER_FRAGMENTS
    shipped = [scenario.load(f) for f in sorted(SCENARIOS.rglob("*.yaml"))
               if f.parent.name not in ("wall", "mutants", "stress")]  # indexes, not scenarios
    kasan = [s for s in shipped if "kasan" in s.kernel.fragments]
    assert len(kasan) >= 10
    odd = {s.name: s.kernel.fragments for s in kasan if s.kernel.fragments != config.SANITIZER_FRAGMENTS}
    assert not odd, f"sanitizer scenarios off the shared list {config.SANITIZER_FRAGMENTS}: {odd}"


def test_test_entries_may_carry_their_own_expectation(tmp_path):
    p = write(tmp_path, f"""\
        expect: pass
        leak: memory leak in watch_queue_set_size
        timeouts: {{no_output: 5, total: 30.5}}
        tests:
          - {REPO}/guest-tests/test_smoke.py
          - test: {REPO}/guest-tests/test_smoke.py::test_key_update_gives_one_record
            expect: crash
            title: "WARNING in lkdtm_WARNING"
        """)
    s = scenario.load(p)
    assert [t.expect for t in s.tests] == ["pass", "crash"]
    assert [t.title for t in s.tests] == [None, "WARNING in lkdtm_WARNING"]
    assert s.leak == "memory leak in watch_queue_set_size"
    assert s.timeouts == scenario.Timeouts(no_output=5.0, total=30.5)
    assert s.name == "s"


CASES = [
    ("syntax", "tests: [a\nname: x\n", 2, None, "invalid YAML"),
    ("unknown top key", "name: x\ncolour: red\ntests: [guest-tests/test_smoke.py]\n", 2, "colour",
     "unknown key"),
    ("unknown nested key", "vm:\n  cpus: 2\n  ram: 1G\ntests: [guest-tests/test_smoke.py]\n", 3,
     "vm.ram", "unknown key"),
    ("wrong type", "vm:\n  cpus: two\ntests: [guest-tests/test_smoke.py]\n", 2, "vm.cpus",
     "expected an integer"),
    ("bool is not int", "vm:\n  cpus: true\ntests: [guest-tests/test_smoke.py]\n", 2, "vm.cpus",
     "expected an integer"),
    ("bad memory", "vm:\n  memory: lots\ntests: [guest-tests/test_smoke.py]\n", 2, "vm.memory",
     "bad memory size"),
    ("missing test file", "tests:\n  - guest-tests/test_nope.py::test_x\n", 2, "tests[0]",
     "does not exist"),
    ("missing test function", "tests:\n  - guest-tests/test_smoke.py::test_nope\n", 2, "tests[0]",
     "has no test 'test_nope'"),
    ("bad expect", "tests:\n  - test: guest-tests/test_smoke.py\n    expect: maybe\n", 3,
     "tests[0].expect", "unknown outcome"),
    ("unknown fragment", "kernel:\n  fragments: [watch-queue, kasann]\ntests: [guest-tests/test_smoke.py]\n",
     2, "kernel.fragments", "unknown kconfig fragment 'kasann'"),
    ("no tests", "name: x\n", 1, "tests", "missing key 'tests'"),
    ("empty tests", "tests: []\n", 1, "tests", "empty"),
    ("negative timeout", "timeouts:\n  total: -1\ntests: [guest-tests/test_smoke.py]\n", 2,
     "timeouts.total", "must be > 0"),
    ("not a mapping", "- a\n- b\n", 1, None, "expected a mapping"),
    ("title without crash", "tests:\n  - test: guest-tests/test_smoke.py\n    title: WARNING in x\n", 3,
     "tests[0].title", "only goes with 'expect: crash'"),
    ("leak not a leak title", "leak: \"KASAN: x\"\ntests: [guest-tests/test_smoke.py]\n", 1, "leak",
     "not a kmemleak title"),
]


@pytest.mark.parametrize("text,line,key,msg", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_scenarios_name_file_line_and_key(tmp_path, text, line, key, msg):
    # Scenario files outside the repo resolve test paths against the repo root.
    p = write(tmp_path, text)
    with pytest.raises(InputError) as e:
        scenario.load(p)
    err = e.value
    assert err.exit_code == 3
    assert err.file == str(p)
    assert err.line == line
    if key:
        assert err.key == key
    assert msg in str(err)
    assert f"{p}:{line}" in str(err)


def test_duplicate_names_are_refused(tmp_path):
    a = write(tmp_path, "name: same\ntests: [guest-tests/test_smoke.py]\n", "a.yaml")
    write(tmp_path, "name: same\ntests: [guest-tests/test_smoke.py]\n", "b.yaml")
    with pytest.raises(InputError, match="also used by"):
        scenario.load_all([str(a.parent)])


def test_cli_exit_code_3_and_location_on_bad_yaml(tmp_path, wqh_cmd):
    p = write(tmp_path, "tests:\n  - guest-tests/test_smoke.py::test_nope\n")
    r = subprocess.run(wqh_cmd + ["run", str(p)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 3
    assert f"{p}:2" in r.stderr and "tests[0]" in r.stderr
    # Nothing half-written: no results directory was created for an invalid run.
    assert not (tmp_path / "wqh-results").exists()


def test_cli_unknown_option_is_exit_3(wqh_cmd):
    r = subprocess.run(wqh_cmd + ["run", "--frobnicate"], capture_output=True, text=True)
    assert r.returncode == 3
    assert "unrecognized arguments: --frobnicate" in r.stderr


def _tree(root):
    (root / "kernel").mkdir(parents=True)
    (root / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 1\n")
    return root


def test_kernel_sources_name_the_kernels_a_scenario_runs_on(tmp_path):
    a, b = _tree(tmp_path / "trees" / "a"), _tree(tmp_path / "b")
    p = write(tmp_path / "trees", f"""\
        name: on-two
        kernel:
          fragments: [watch-queue]
          sources: [a, {b}]
        tests: [{REPO}/guest-tests/test_smoke.py]
        """)
    s = scenario.load(p)
    assert s.kernel.sources == (str(a), str(b))  # relative to the scenario's directory


@pytest.mark.parametrize("sources,msg", [
    ("[]", "no kernel in the list"),
    ("[debian:6.x]", "names no Debian kernel series"),
    ("[nowhere]", "does not exist"),
    ("[a, ./a]", "is named twice (first on line 4)"),
    ("a", "expected a list"),
])
def test_bad_kernel_sources_name_file_line_and_key(tmp_path, sources, msg):
    _tree(tmp_path / "a")
    p = write(tmp_path, f"""\
        name: on-two
        kernel:
          fragments: [watch-queue]
          sources: {sources}
        tests: [{REPO}/guest-tests/test_smoke.py]
        """)
    with pytest.raises(InputError) as e:
        scenario.load(p)
    assert e.value.key == "kernel.sources" and e.value.line == 4 and msg in str(e.value)
