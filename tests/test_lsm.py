"""LSM scenarios without a VM: a scenario's own kernel parameters (vm.cmdline) from the YAML
to vng's --append, the Smack scenarios and fragment, and the patch of the wall-style variant."""

import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from harness import accel, config, patches, runner, scenario, source, vm
from harness.build import BuildResult
from harness.config import ConfigResult
from harness.errors import InputError
from harness.paths import KCONFIGS, REPO, SCENARIOS

LSM = SCENARIOS / "lsm"
SMOKE = "guest-tests/test_smoke.py"


def write(tmp_path, text, name="s.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_vm_cmdline_is_read_into_the_vm_shape(tmp_path):
    p = write(tmp_path, f"""\
        vm:
          cpus: 1
          cmdline: [lsm=smack, "slub_debug=FZ", quiet, lsm.debug]
        tests: [{SMOKE}]
        """)
    assert scenario.load(p).vm == scenario.VMShape(1, "1G", ("lsm=smack", "slub_debug=FZ", "quiet",
                                                             "lsm.debug"))
    assert scenario.load(write(tmp_path, f"tests: [{SMOKE}]\n")).vm.cmdline == ()


BAD = [
    ("not a list", "vm:\n  cmdline: lsm=smack\n", 2, "expected a list"),
    ("two parameters in one", "vm:\n  cmdline: [lsm=smack quiet]\n", 2, "is not one kernel parameter"),
    ("quotes", "vm:\n  cmdline:\n    - 'dyndbg=\"file x +p\"'\n", 3, "is not one kernel parameter"),
    ("empty", "vm:\n  cmdline: ['']\n", 2, "is not one kernel parameter"),
    ("a number", "vm:\n  cmdline: [1]\n", 2, "expected a string"),
    ("a mapping", "vm:\n  cmdline: [{lsm: smack}]\n", 2, "expected a string"),
    ("virtme-ng's own", "vm:\n  cmdline: [quiet, console=ttyS1]\n", 2, "console= is set by virtme-ng"),
    ("wqh's own root flags", "vm:\n  cmdline:\n    - lsm=smack\n    - rootflags=cache=none\n", 4,
     "rootflags= is set by virtme-ng"),
]


@pytest.mark.parametrize("text,line,msg", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_a_bad_cmdline_names_file_line_and_key(tmp_path, text, line, msg):
    p = write(tmp_path, text + f"tests: [{SMOKE}]\n")
    with pytest.raises(InputError) as e:
        scenario.load(p)
    err = e.value
    assert (err.exit_code, err.file, err.line, err.key) == (3, str(p), line, "vm.cmdline")
    assert msg in str(err) and f"{p}:{line}" in str(err)
    assert err.hint


def test_wqh_run_with_a_bad_cmdline_is_exit_3_before_anything_runs(tmp_path, wqh_cmd):
    p = write(tmp_path, f"vm:\n  cmdline: [init=/bin/sh]\ntests: [{SMOKE}]\n")
    r = subprocess.run(wqh_cmd + ["run", str(p)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 3, r.stdout + r.stderr
    assert f"{p}:2" in r.stderr and "vm.cmdline" in r.stderr and "init=" in r.stderr
    assert not (tmp_path / "wqh-results").exists()


def test_a_different_cmdline_shares_the_kernel_but_not_the_boot(tmp_path):
    common = f"kernel: {{fragments: [watch-queue]}}\ntests: [{SMOKE}]\n"
    a = scenario.load(write(tmp_path, "vm: {cmdline: [lsm=smack]}\n" + common, "a.yaml"))
    b = scenario.load(write(tmp_path, "vm: {cmdline: [lsm=capability]}\n" + common, "b.yaml"))
    c = scenario.load(write(tmp_path, "vm: {cmdline: [lsm=smack]}\n" + common, "c.yaml"))
    (group,) = runner.group_kernels([a, b, c])
    boots = [(shape.cmdline, [s.name for s in scs]) for shape, scs in runner.vm_shapes(group)]
    assert boots == [(("lsm=smack",), ["a", "c"]), (("lsm=capability",), ["b"])]


def test_the_scenarios_cmdline_reaches_vng_after_wqhs_own(tmp_path, monkeypatch):
    s = scenario.load(write(tmp_path, f"vm: {{cmdline: [lsm=smack]}}\ntests: [{SMOKE}]\n"))
    seen = {}

    def fake_run(spec, acc, exec_cmd, console, echo=False):
        seen["cmd"] = vm.vng_command(spec, acc, exec_cmd)
        console.write_text("")
        return vm.VMResult(seen["cmd"], console, "exited", 0, 1.0)
    monkeypatch.setattr(runner.vm, "run", fake_run)
    monkeypatch.setattr(runner, "warm_bytecode", lambda nodes: None)
    cfg = ConfigResult("CONFIG_KASAN=y\n", "h", (), tmp_path)
    b = BuildResult("k" * 16, tmp_path, tmp_path / "bzImage", tmp_path / "vmlinux", tmp_path / "log", True)
    items = [(s, t) for t in s.tests]
    job = runner.VMJob("vm1-k", items, s.vm, b, 1.0, "id", [s], cfg, ("panic_on_warn=1",), "6.1.192")
    boots = runner.Boots(tmp_path, job, accel.Accel("tcg", "test"), 1.0, False, lambda: "vm1")
    runner.run_vm(boots, "vm1", items)
    cmd = seen["cmd"]
    appended = [cmd[i + 1] for i, w in enumerate(cmd) if w == "--append" and cmd[i + 1] != vm.ROOTFLAGS_9P]
    # wqh's, then the full config's own, then the scenario's: the last word on the line wins.
    assert appended == ["oops=panic", "kasan_multi_shot", "panic_on_warn=1", "lsm=smack"]
    assert cmd.index("--exec") > max(i for i, w in enumerate(cmd) if w == "--append")
    saved = json.loads((tmp_path / "vm1" / "vm.json").read_text())
    assert saved["append"] == appended


# --- the shipped Smack scenarios, fragment and patch ---------------------------------------


def test_the_default_run_builds_no_smack_kernel():
    default = scenario.load_all([])
    assert default and all("smack" not in s.kernel.fragments for s in default)
    assert not any(s.vm.cmdline for s in default)
    assert not [p for p in scenario.discover([]) if p.parent != SCENARIOS]


def test_the_smack_scenarios():
    scs = {s.name: s for s in scenario.load_all([str(LSM)])}
    assert set(scs) == {"smack", "smack-post-check-removed", "smack-absent", "smack-inactive"}
    smack, variant = scs["smack"], scs["smack-post-check-removed"]
    assert smack.kernel.fragments == ("watch-queue", "smack") and not smack.kernel.patches
    assert smack.vm.cmdline == ("lsm=smack",) and {t.expect for t in smack.tests} == {"pass"}
    # Every test of the guest file, by name (the host matches results to entries by node id).
    names = {n.split("::")[1] for n in (t.id for t in smack.tests)}
    defined = scenario._test_names(REPO / "guest-tests" / "test_smack.py")
    assert names == {n for n in defined if n.startswith("test_")}
    # The variant: the same kernel and boot plus the patch, the same tests in the same order.
    assert variant.kernel.fragments == smack.kernel.fragments and variant.vm == smack.vm
    assert [p.name for p in variant.kernel.patches] == ["smack-post-check-removed.patch"]
    assert [t.id for t in variant.tests] == [t.id for t in smack.tests]
    assert scs["smack-inactive"].kernel == smack.kernel
    assert scs["smack-inactive"].vm.cmdline == ("lsm=capability",)
    assert scs["smack-absent"].kernel.fragments == ("watch-queue",)
    for s in (scs["smack-inactive"], scs["smack-absent"]):
        assert [(t.id, t.expect) for t in s.tests] == [("guest-tests/test_smack.py", "skip")]


@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_the_variant_patch_removes_only_the_post_check_and_applies(series):
    (patch,) = (LSM / "patches").glob("*.patch")
    assert patches.touched_files(patch) == ["security/smack/smack_lsm.c"]
    text = patch.read_text()
    removed = [ln[1:].strip() for ln in text.splitlines() if ln.startswith("-") and not ln.startswith("---")]
    assert "rc = smk_access(subj, obj, MAY_WRITE, &ad);" in removed
    assert "if (n->type == WATCH_TYPE_META)" not in removed  # META was never checked
    tree = source.tree_at_hand(f"debian:{series}")
    if not isinstance(tree, Path):
        pytest.skip(f"debian:{series} is not unpacked in the cache")
    patches.check_applies(patches.tree_reader(source.KernelSource(tree, f"t{series}", "path", True)),
                          (patch,), f"debian:{series}")


@pytest.mark.slow
@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_every_option_of_the_smack_fragment_survives_the_merge(series):
    tree = source.tree_at_hand(f"debian:{series}")
    if not isinstance(tree, Path):
        pytest.skip(f"debian:{series} is not unpacked in the cache")
    frags = config.fragment_list(["watch-queue", "smack"])
    assert KCONFIGS / "smack.config" in frags
    cfg = config.merge(source.resolve(f"debian:{series}"), frags)  # ConfigError if one is lost
    assert cfg.enabled("SECURITY_SMACK") and cfg.enabled("KEY_NOTIFICATIONS")
