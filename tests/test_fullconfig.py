"""Full .config input: checked before any work, the file kept as it is plus what the VM needs,
changes reported by cause. The make tests use the unpacked Debian tree (read-only, O= in tmp)."""

import json
import subprocess
from pathlib import Path

import pytest

from harness import build, config, fullconfig, kconfig, source
from harness.errors import InputError

DATA = Path(__file__).resolve().parent / "data" / "fullconfig"


def _tree() -> Path | None:
    try:
        _, tree, stamp, identity = source._debian_layout()
    except Exception:
        return None
    return tree if source._unpacked(tree, stamp, identity) else None


TREE = _tree()
needs_tree = pytest.mark.skipif(TREE is None, reason="the Debian kernel tree is not unpacked in "
                                                     "the cache (run wqh build once)")


def _src() -> source.KernelSource:
    return source.KernelSource(TREE, "debian:test-fullconfig", "debian", immutable=True)


@pytest.fixture(scope="module")
def defconfig(tmp_path_factory) -> Path:
    """x86_64 defconfig + kvm_guest.config from the real tree: a full .config (seconds)."""
    out = tmp_path_factory.mktemp("defconfig")
    for target in ("defconfig", "kvm_guest.config"):
        subprocess.run(["make", "-s", "-C", str(TREE), f"O={out}", target], check=True,
                       capture_output=True)
    return out / ".config"


# --- not a full config: exit 3 before any work -------------------------------------------

def test_a_c_file_is_not_a_config():
    p = DATA / "not-a-config.c"
    with pytest.raises(InputError) as e:
        fullconfig.check(p)
    assert f"{p}:1" in str(e.value) and "not a kernel .config" in str(e.value)
    assert "fix:" in str(e.value) and e.value.exit_code == 3


def test_a_fragment_is_not_a_full_config():
    p = DATA / "fragment.config"
    with pytest.raises(InputError) as e:
        fullconfig.check(p)
    msg = str(e.value)
    assert str(p) in msg and "3 option line(s)" in msg and f"--config {p}" in msg


def test_bad_values_binary_and_missing_files(tmp_path):
    lines = [f"# CONFIG_F{i} is not set" for i in range(150)]
    bad = tmp_path / "bad"
    bad.write_text("\n".join(lines[:5] + ["CONFIG_KASAN=yes please"] + lines) + "\n")
    with pytest.raises(InputError) as e:
        fullconfig.check(bad)
    assert f"{bad}:6" in str(e.value)
    binf = tmp_path / "bin"
    binf.write_bytes(b"CONFIG_A=y\n\xff\xfe\n")
    with pytest.raises(InputError) as e:
        fullconfig.check(binf)
    assert f"{binf}:2" in str(e.value)
    with pytest.raises(InputError) as e:
        fullconfig.check(tmp_path / "nope")
    assert "no such file" in str(e.value)
    with pytest.raises(InputError):
        fullconfig.check(tmp_path)


def test_other_arches_and_32_bit_kernels(tmp_path):
    lines = [f"# CONFIG_F{i} is not set" for i in range(150)]
    arm = tmp_path / "arm"
    arm.write_text("\n".join(["CONFIG_ARM64=y"] + lines) + "\n")
    with pytest.raises(InputError) as e:
        fullconfig.check(arm)
    assert "arm64" in str(e.value) and "x86_64" in str(e.value)
    i386 = tmp_path / "i386"
    i386.write_text("\n".join(["CONFIG_X86=y", "# CONFIG_64BIT is not set"] + lines) + "\n")
    with pytest.raises(InputError) as e:
        fullconfig.check(i386)
    assert "32-bit" in str(e.value)


def test_cmdline_parsing():
    vals = kconfig.parse_dotconfig('CONFIG_CMDLINE_BOOL=y\nCONFIG_CMDLINE="root=/dev/sda '
                                   'console=ttyS0 earlyprintk=serial oops=panic panic_on_warn=1 '
                                   'ima_policy=tcb"\n')
    builtin, overridden, own = fullconfig.cmdline_of(vals)
    assert overridden == ["root=/dev/sda", "console=ttyS0", "earlyprintk=serial"]
    assert own == ["oops=panic", "panic_on_warn=1"]
    assert fullconfig.cmdline_of({"CMDLINE": '"panic_on_warn=1"'}) == ("", [], [])


def test_vm_needs_are_data_and_include_the_roots():
    names = {s for s, _, _ in fullconfig.VM_NEEDS}
    for s in ("VIRTIO_CONSOLE", "SERIAL_8250_CONSOLE", "VIRTIO_PCI", "NET_9P", "NET_9P_VIRTIO",
              "9P_FS", "9P_FS_POSIX_ACL", "FUSE_FS", "VIRTIO_FS", "DEVTMPFS", "DEVTMPFS_MOUNT",
              "TMPFS"):
        assert s in names
    assert all(v == "y" and why for _, v, why in fullconfig.VM_NEEDS)


# --- the real tree ----------------------------------------------------------------------

# make olddefconfig on the real tree: 5-10 s each on two busy cores, so marked slow.
@pytest.mark.slow
@needs_tree
def test_defconfig_kept_plus_vm_needs(defconfig, tmp_cache, tmp_path):
    fc = fullconfig.prepare(_src(), defconfig)
    final = kconfig.parse_dotconfig(fc.dotconfig)
    given = kconfig.parse_dotconfig(defconfig.read_text())
    for s, v, _ in fullconfig.VM_NEEDS:
        assert final[s] == v, s
    # nothing the file set is turned off; every change is a VM need
    assert {c.cause for c in fc.changes} == {"vm"}
    for s, v in given.items():
        if v != "n":
            assert final.get(s, "n") != "n", s
    assert "FUSE_FS" in {c.symbol for c in fc.by_cause("vm")}
    assert not fc.compiler_differs and fc.cmdline_params == []
    # usable where a ConfigResult is
    assert isinstance(fc.config, config.ConfigResult)
    assert fc.hash == fc.config.hash and len(fc.hash) == 16 and fc.fragments == (defconfig,)
    assert build.BuildKey("x", fc.hash).digest
    assert fc.staging.is_dir() and str(tmp_cache) in str(fc.staging)
    # remembered: the second call runs no make and gives the same result
    again = fullconfig.prepare(_src(), defconfig)
    assert again.hash == fc.hash and again.changes == fc.changes
    fc.save(tmp_path / "out")
    j = json.loads((tmp_path / "out" / "changes.json").read_text())
    assert j["hash"] == fc.hash and j["changes"]["vm"]
    assert "(b) options added for the VM" in (tmp_path / "out" / "changes.txt").read_text()
    # with guest_tests, the feature under test too
    gt = fullconfig.prepare(_src(), defconfig, guest_tests=True)
    assert gt.enabled("WATCH_QUEUE") and gt.enabled("KEY_NOTIFICATIONS")


@pytest.mark.slow
@needs_tree
def test_clang_config_with_a_baked_cmdline(defconfig, tmp_cache, tmp_path):
    text = defconfig.read_text()
    extra = (DATA / "clang-extra.config").read_text()
    sets = kconfig.parse_dotconfig(extra)
    keep = [ln for ln in text.splitlines()
            if not any(ln.startswith((f"CONFIG_{s}=", f"# CONFIG_{s} is not set")) for s in sets)]
    p = tmp_path / "config"
    p.write_text("\n".join(keep) + "\n" + extra)
    fc = fullconfig.prepare(_src(), p)
    report = fc.report_text()
    compiler = {c.symbol: c for c in fc.by_cause("compiler")}
    for s in ("CC_IS_CLANG", "CLANG_VERSION", "CC_VERSION_TEXT", "LTO_CLANG_THIN", "LTO_CLANG",
              "CFI_CLANG"):
        assert s in compiler, report
    assert "HAS_LTO_CLANG" in compiler["LTO_CLANG_THIN"].why
    assert "cc-option" in compiler["CFI_CLANG"].why
    assert fc.compiler_differs and "clang version 15.0.6" in report
    # the one forced change
    (forced,) = fc.by_cause("cmdline")
    assert (forced.symbol, forced.was, forced.now) == ("CMDLINE_OVERRIDE", "y", "n")
    assert fc.cmdline_params == ["panic_on_warn=1"]
    assert fc.cmdline_overridden == ["root=/dev/sda", "console=ttyS0"]
    assert not fc.enabled("CMDLINE_OVERRIDE") and fc.enabled("CMDLINE_BOOL")
    # a VM need built as a module is made built in
    vm = {c.symbol: c for c in fc.by_cause("vm")}
    assert (vm["9P_FS"].was, vm["9P_FS"].now) == ("m", "y")
    # olddefconfig's drop, with the dependency that is off
    old = {c.symbol: c for c in fc.by_cause("olddefconfig")}
    assert "CONFIG_WATCH_QUEUE=n" in old["KEY_NOTIFICATIONS"].why
    for head in ("(a) options the local compiler cannot have", "(b) options added for the VM",
                 "(c) options olddefconfig dropped or changed", "(d) kernel command line",
                 "overridden by the VM's own command line", "panic_on_warn=1"):
        assert head in report


def test_vm_needs_are_set_in_place_never_duplicated():
    text = "CONFIG_A=y\n# CONFIG_9P_FS is not set\nCONFIG_FUSE_FS=m\nCONFIG_FUSE_FS=m\n"
    out = fullconfig._apply(text, {"9P_FS": "y", "FUSE_FS": "y", "NEW": "y", "OFF": "n"})
    assert out == ("CONFIG_A=y\nCONFIG_9P_FS=y\nCONFIG_FUSE_FS=y\nCONFIG_NEW=y\n"
                   "# CONFIG_OFF is not set\n")


def test_explainer_follows_dependencies_down_to_the_toolchain(tmp_path):
    (tmp_path / "Kconfig").write_text(
        "config CC_IS_CLANG\n\tdef_bool n\n"
        "config HAS_LTO\n\tdef_bool y\n\tdepends on CC_IS_CLANG\n"
        "config LTO_THIN\n\tbool \"thin\"\n\tdepends on HAS_LTO\n"
        "config KCFI\n\tbool \"cfi\"\n\tdepends on $(cc-option,-fsanitize=kcfi)\n"
        "config NET\n\tbool \"net\"\n"
        "config NINEP\n\tbool \"9p\"\n\tdepends on NET\n")
    ex = fullconfig._Explainer(tmp_path, {"HAS_LTO": "n", "LTO_THIN": "n", "NET": "n"})
    cause, why = ex.why("LTO_THIN")
    assert cause == "compiler" and "CC_IS_CLANG" in why
    assert ex.why("KCFI")[0] == "compiler" and "cc-option" in ex.why("KCFI")[1]
    assert ex.why("CLANG_VERSION") == ("compiler", "computed by Kconfig from the local toolchain")
    cause, why = ex.why("NINEP")
    assert cause == "olddefconfig" and "CONFIG_NET=n" in why
    assert ex.why("GONE") == ("olddefconfig", "not defined in any Kconfig of this tree")
