"""Pieces of the runner that need no VM."""

from pathlib import Path

from harness import mutate, runner
from harness.config import ConfigResult
from harness.scenario import Scenario, TestRef

F = Path("/repo/guest-tests/test_x.py")


def test_lost_expansions_are_retried_each_by_its_own_node_id():
    s = Scenario("s", Path("/s.yaml"))
    whole = TestRef("guest-tests/test_x.py::test_p", F, "crash")
    untouched = TestRef("guest-tests/test_x.py::test_never", F)
    done = TestRef("guest-tests/test_x.py::test_done", F)
    lost = ["guest-tests/test_x.py::test_p[b]", "guest-tests/test_x.py::test_p[c]",
            "guest-tests/test_x.py::test_never"]
    again = runner.retry_items([(s, whole), (s, untouched), (s, done)], lost)
    assert [t.id for _, t in again] == lost
    assert [t.node for _, t in again][:2] == [f"{F}::test_p[b]", f"{F}::test_p[c]"]
    assert all(t.expect == "crash" for _, t in again[:2])  # expectations carry over
    assert again[2][1] is untouched


def test_a_whole_file_request_retries_its_lost_tests():
    s = Scenario("s", Path("/s.yaml"))
    f = TestRef("guest-tests/test_x.py", F)
    again = runner.retry_items([(s, f)], ["guest-tests/test_x.py::test_b"])
    assert [(t.id, t.node) for _, t in again] == [("guest-tests/test_x.py::test_b", f"{F}::test_b")]


def test_guest_cmdline_panics_on_oops_and_shows_every_kasan_report():
    def cfg(text):
        return ConfigResult(text, "h", (), Path("/s"))
    assert runner.guest_cmdline(cfg("CONFIG_X=y\n")) == ("oops=panic",)
    assert "kasan_multi_shot" in runner.guest_cmdline(cfg("CONFIG_X=y\nCONFIG_KASAN=y\n"))
    # A full config's own settings (syzbot's panic_on_warn=1) come after ours.
    assert runner.guest_cmdline(cfg("CONFIG_KASAN=y\n"), ("panic_on_warn=1",))[-1] == "panic_on_warn=1"


def _fake_vm(ends):
    """run_vm stand-in: each boot ends as ENDS says; 'ok' runs every test, else none starts."""
    from harness import results, vm
    from harness.guest import protocol

    boots = []

    def run_vm(ctx, name, items):
        end = ends[len(boots)]
        boots.append(name)
        outcome = "pass" if end == "ok" else protocol.LOST
        rs = [results.TestResult(s.name, t.id, "k", outcome) for s, t in items]
        return rs, vm.VMResult([], Path("c"), "exited" if end == "ok" else end, 0, 1.0)
    return run_vm, boots


def test_a_boot_that_dies_before_the_first_test_is_retried_once(monkeypatch):
    s = Scenario("s", Path("/s.yaml"))
    items = [(s, TestRef("guest-tests/test_x.py::test_a", F))]
    names = iter(f"vm{i}" for i in range(1, 10))
    fake, boots = _fake_vm(["exited", "ok"])
    monkeypatch.setattr(runner, "run_vm", fake)
    rs, _ = runner.run_items(runner.Boots(Path("/o"), None, None, 1.0, False, lambda: next(names)), items)
    assert boots == ["vm1", "vm2"] and [r.outcome for r in rs] == ["pass"]
    # Twice in a row: the kernel cannot boot, an infrastructure error, no third boot.
    fake, boots = _fake_vm(["exited", "panic", "ok"])
    monkeypatch.setattr(runner, "run_vm", fake)
    rs, _ = runner.run_items(runner.Boots(Path("/o"), None, None, 1.0, False, lambda: next(names)), items)
    assert len(boots) == 2 and [r.outcome for r in rs] == ["infra-error"]
    # A hang is not a flake: no second boot.
    fake, boots = _fake_vm(["hang", "ok"])
    monkeypatch.setattr(runner, "run_vm", fake)
    rs, _ = runner.run_items(runner.Boots(Path("/o"), None, None, 1.0, False, lambda: next(names)), items)
    assert len(boots) == 1 and [r.outcome for r in rs] == ["infra-error"]


def test_a_vm_that_dies_in_a_test_gets_a_fresh_vm_unless_reboot_is_off(monkeypatch):
    """The tests a dead VM left run in a fresh one; mutate turns that off (reboot=False): the
    test the VM died in has decided, and a mutant that hangs every test would cost a boot and
    a timeout each."""
    from harness import results, vm
    from harness.guest import protocol
    s = Scenario("s", Path("/s.yaml"))
    items = [(s, TestRef(f"guest-tests/test_x.py::test_{c}", F)) for c in "abc"]
    boots = []

    def run_vm(ctx, name, its):
        boots.append(name)
        rs = [results.TestResult(s.name, t.id, "k", protocol.LOST) for _, t in its]
        rs[0].outcome = results.Outcome.HANG  # every boot hangs in its first test
        return rs, vm.VMResult([], Path("c"), "hang", 0, 1.0)
    monkeypatch.setattr(runner, "run_vm", run_vm)
    names = iter(f"vm{i}" for i in range(1, 10))
    rs, _ = runner.run_items(runner.Boots(Path("/o"), None, None, 1.0, False, lambda: next(names)), items)
    assert len(boots) == 3 and [r.outcome for r in rs] == ["hang"] * 3
    boots.clear()
    rs, _ = runner.run_items(runner.Boots(Path("/o"), None, None, 1.0, False, lambda: next(names),
                                          reboot=False), items)
    assert len(boots) == 1 and [r.outcome for r in rs] == ["hang", "infra-error", "infra-error"]
    assert "no fresh VM" in rs[1].message
    assert mutate.classify(rs) == (mutate.KILLED, ["test_x.py::test_a hang"], "")


def test_vms_at_once_and_the_timeout_stretch_follow_the_host_cpus():
    from harness.runner import default_vms, load_factor

    assert [default_vms(n) for n in (1, 2, 3, 4, 8, 64)] == [1, 2, 2, 2, 4, 8]
    assert load_factor(1, 2, host_cpus=2) == 1.0
    assert load_factor(2, 2, host_cpus=2) == 2.0  # two 2-vCPU guests on 2 cores
    assert load_factor(2, 2, host_cpus=8) == 1.0


def test_each_group_runs_on_its_own_sources_unless_the_command_line_names_kernels(monkeypatch):
    """kernel.sources puts a scenario on each of its kernels, kernel by kernel, each source
    resolved once; --kernel replaces every scenario's sources; none means the default."""
    from harness import scenario, source

    def src(spec):
        return source.KernelSource(Path(f"/k/{spec}"), f"id:{spec}", "path", immutable=True)
    resolved = []

    def resolve(spec):
        resolved.append(spec)
        return src(spec or "default")
    monkeypatch.setattr(runner.source, "canonical", lambda spec: spec or "default")
    monkeypatch.setattr(runner.source, "version", lambda s: "v-" + s.identity)

    def sc(name, sources=()):
        s = Scenario(name, Path(f"/{name}.yaml"))
        s.kernel = scenario.KernelSpec((), (), None, sources)
        return s
    groups = runner.group_kernels([sc("both", ("new", "old")), sc("plain"), sc("old-only", ("old",))])
    got = [(g.source.identity, g.version, [s.name for s in g.scenarios])
           for g in runner.kernels_of(groups, None, resolve)]
    assert got == [("id:new", "v-id:new", ["both"]), ("id:old", "v-id:old", ["both"]),
                   ("id:old", "v-id:old", ["old-only"]), ("id:default", "v-id:default", ["plain"])]
    assert sorted(resolved, key=str) == sorted(["new", "old", None], key=str)  # each once
    given = [src("mine")]
    got = [(g.source.identity, [s.name for s in g.scenarios]) for g in runner.kernels_of(groups, given)]
    assert got == [("id:mine", ["both"]), ("id:mine", ["plain"]), ("id:mine", ["old-only"])]
