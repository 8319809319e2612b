"""A full kernel .config as input (what syzbot hands out), used as it is plus what the VM needs.

wqh's own kernels are base.config + fragments merged onto allnoconfig (config.py). A syzbot
report comes with the whole .config its kernel was built from; reproducing it means keeping
that file as it is. prepare() checks the file is a .config (before any work), adds ONLY the
options a virtme-ng guest cannot boot without (VM_NEEDS; never turning an option of the file
off), switches CONFIG_CMDLINE_OVERRIDE off when set (a baked command line that replaces the
VM's own root= and console= cannot boot under virtme-ng: the one forced change), runs
`make olddefconfig` with the local compiler in a private O= directory, and says what changed
and why, grouped by cause:

  compiler      options the local compiler cannot have (clang-only options under gcc, cc-option
                probes that fail, CC_*/*_VERSION symbols Kconfig recomputes from the compiler)
  vm            options added for the VM
  olddefconfig  options olddefconfig dropped or changed, with the unmet dependency
  cmdline       the built-in command line: CMDLINE_OVERRIDE switched off, parameters the VM's
                own command line overrides, the report's own panic settings (cmdline_params)

The result is a FullConfig whose .config is a config.ConfigResult (build.build() takes it).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness import config, kconfig
from harness.errors import ConfigError, InputError
from harness.paths import cache_dir
from harness.source import KernelSource

# What a virtme-ng guest needs to boot and run wqh's guest agent: (symbol, value, why).
# Data, not code: each line is one need, checked after olddefconfig like a fragment's.
VM_NEEDS: tuple[tuple[str, str, str], ...] = (
    ("PCI", "y", "virtio devices sit on the (q35) PCI bus"),
    ("VIRTIO_MENU", "y", "the virtio drivers' menu"),
    ("VIRTIO_PCI", "y", "virtio over PCI: console, 9p and virtio-fs devices"),
    ("VIRTIO_MMIO", "y", "virtio over MMIO (microvm under KVM)"),
    ("TTY", "y", "consoles"),
    ("VIRTIO_CONSOLE", "y", "the hvc0 console virtme-ng talks to"),
    ("SERIAL_8250", "y", "the ttyS0 serial console"),
    ("SERIAL_8250_CONSOLE", "y", "kernel messages on ttyS0: the console log wqh reads"),
    ("NET", "y", "9p runs over the network stack's 9p client"),
    ("INET", "y", "9P_FS depends on INET"),
    ("NETWORK_FILESYSTEMS", "y", "the menu of 9p"),
    ("NET_9P", "y", "the guest's root is the host's / over 9p"),
    ("NET_9P_VIRTIO", "y", "9p over virtio"),
    ("9P_FS", "y", "the 9p root filesystem (built in: it is the root)"),
    ("9P_FS_POSIX_ACL", "y", "virtme-ng mounts the 9p root with ACLs"),
    ("FUSE_FS", "y", "virtio-fs is a FUSE filesystem"),
    ("VIRTIO_FS", "y", "the root over virtio-fs where a Rust virtiofsd is installed"),
    ("DEVTMPFS", "y", "/dev in the guest"),
    ("DEVTMPFS_MOUNT", "y", "/dev mounted before init"),
    ("TMPFS", "y", "virtme-ng-init's writable /tmp, /run, overlays"),
    ("TMPFS_XATTR", "y", "overlayfs on tmpfs needs xattrs"),
    ("OVERLAY_FS", "y", "virtme-ng-init overlays /etc, /var on the read-only root"),
    ("PROC_FS", "y", "/proc in the guest"),
    ("SYSFS", "y", "/sys in the guest"),
    ("BINFMT_ELF", "y", "the host's binaries run in the guest"),
    ("BINFMT_SCRIPT", "y", "the guest agent is a #! script"),
    ("UNIX", "y", "unix sockets: udev, the host's Python"),
    ("FUTEX", "y", "threads of the host's Python"),
    ("EPOLL", "y", "the host's Python and udev"),
    ("MULTIUSER", "y", "uids: virtme-ng-init and the guest tests"),
    ("PRINTK", "y", "wqh's begin/end markers go through /dev/kmsg"),
    ("ACPI", "y", "a clean power-off at the end of --exec"),
)
# The feature under test: only for `wqh run` (guest tests), not to reproduce a report.
GUEST_TEST_NEEDS: tuple[tuple[str, str, str], ...] = (
    ("KEYS", "y", "wqh's guest tests: key notifications"),
    ("WATCH_QUEUE", "y", "wqh's guest tests: the notification queue"),
    ("KEY_NOTIFICATIONS", "y", "wqh's guest tests: key notifications"),
)
# Parameters virtme-ng sets on its own command line: a built-in value is overridden.
VM_OWN_PARAMS = ("root", "rootfstype", "rootflags", "init", "console", "earlyprintk", "ro", "rw",
                 "rootwait")
# A report's own crash settings in a built-in command line: passed on the VM's (cmdline_params).
REPORT_PARAMS = ("panic_on_warn", "panic_on_oops", "oops", "softlockup_panic", "hung_task_panic",
                 "panic_on_rcu_stall", "kasan_multi_shot", "kasan.fault")
# A .config has hundreds of option lines; fewer than this is a fragment.
FULL_MIN_OPTIONS = 100
# Symbols Kconfig computes from the toolchain, or options that name one.
_COMPILER_SYMBOL = re.compile(
    r"^(?:CC|AS|LD)_|^(?:CLANG|GCC|LLD|RUSTC|PAHOLE|BINDGEN)_VERSION$|COMPILER|^TOOLS_SUPPORT_"
    r"|^RUSTC_|CLANG")
# Prompt-less facts Kconfig probes from the toolchain (CC_HAS_*, AS_HAS_*...): a user's
# CC_OPTIMIZE_FOR_SIZE is not one.
_TOOLCHAIN_FACT = re.compile(r"^(?:CC|AS|LD)_(?:IS|HAS|CAN|VERSION|HAVE)_|_VERSION$|_VERSION_TEXT$"
                             r"|^TOOLS_SUPPORT_|_COMPILER$")
_TOOLCHAIN_TEXT = ("CC_VERSION_TEXT", "CC_IS_GCC", "CC_IS_CLANG", "GCC_VERSION", "CLANG_VERSION",
                   "LD_IS_BFD", "LD_IS_LLD", "LD_VERSION", "LLD_VERSION", "AS_IS_GNU",
                   "AS_IS_LLVM", "AS_VERSION", "PAHOLE_VERSION", "RUSTC_VERSION")
_OTHER_ARCHES = ("ARM64", "ARM", "RISCV", "S390", "PPC", "MIPS", "LOONGARCH", "SPARC", "PARISC",
                 "M68K", "SH", "ALPHA", "XTENSA", "ARC", "MICROBLAZE", "NIOS2", "OPENRISC", "UML")
_CAUSES = ("compiler", "vm", "olddefconfig", "cmdline")
_CAUSE_TITLES = {
    "compiler": "options the local compiler cannot have",
    "vm": "options added for the VM",
    "olddefconfig": "options olddefconfig dropped or changed",
    "cmdline": "kernel command line",
}
MEMO_VERSION = "1"


@dataclass(frozen=True)
class Change:
    symbol: str
    was: str  # value in the file ('n' = not set, '' = absent)
    now: str  # value in the final .config ('n' = not set, '' = absent)
    cause: str  # one of _CAUSES
    why: str


@dataclass
class FullConfig:
    file: Path
    config: config.ConfigResult  # what build.build() takes
    changes: list[Change]
    new_symbols: list[tuple[str, str]]  # symbols the file lacks, at this tree's defaults
    cmdline_params: list[str]  # the report's own settings to pass on the VM command line
    cmdline_overridden: list[str]  # built-in parameters the VM's own command line overrides
    cmdline_builtin: str  # CONFIG_CMDLINE as the file has it
    compiler_file: str  # CONFIG_CC_VERSION_TEXT of the file
    compiler_local: str  # first line of the local `gcc --version`
    options: int = 0  # option lines of the file
    vm_needs: list[str] = field(default_factory=list)

    # --- what build.build() and friends read of a ConfigResult
    @property
    def dotconfig(self) -> str:
        return self.config.dotconfig

    @property
    def hash(self) -> str:
        return self.config.hash

    @property
    def fragments(self) -> tuple[Path, ...]:
        return self.config.fragments

    @property
    def staging(self) -> Path:
        return self.config.staging

    def enabled(self, symbol: str) -> bool:
        return self.config.enabled(symbol)

    def by_cause(self, cause: str) -> list[Change]:
        return [c for c in self.changes if c.cause == cause]

    @property
    def compiler_differs(self) -> bool:
        return _norm_cc(self.compiler_file) != _norm_cc(self.compiler_local)

    def to_json(self) -> dict:
        return {
            "file": str(self.file), "hash": self.hash, "options": self.options,
            "compiler": {"file": self.compiler_file, "local": self.compiler_local,
                         "differs": self.compiler_differs},
            "changes": {c: [asdict(x) for x in self.by_cause(c)] for c in _CAUSES},
            "cmdline": {"builtin": self.cmdline_builtin, "overridden": self.cmdline_overridden,
                        "params": self.cmdline_params},
            "new_symbols": [list(x) for x in self.new_symbols],
            "vm_needs": self.vm_needs,
        }

    def report_text(self) -> str:
        lines = [f"full config {self.file}: {self.options} options, final .config {self.hash}"]
        if self.compiler_differs:
            lines.append(f"  built by  {self.compiler_file or '(no CONFIG_CC_VERSION_TEXT)'}")
            lines.append(f"  here with {self.compiler_local}")
        for i, cause in enumerate(_CAUSES):
            items = self.by_cause(cause)
            extra = cause == "cmdline" and (self.cmdline_overridden or self.cmdline_params)
            count = f"{len(items)}" if items else ("" if extra else "none")
            lines.append(f"({'abcd'[i]}) {_CAUSE_TITLES[cause]}: {count}".rstrip())
            for c in items:
                lines.append(f"  CONFIG_{c.symbol}: {_show(c.was)} -> {_show(c.now)}  ({c.why})")
            if cause == "cmdline":
                if self.cmdline_overridden:
                    lines.append(f"  built-in CONFIG_CMDLINE: {' '.join(self.cmdline_overridden)}"
                                 " overridden by the VM's own command line")
                if self.cmdline_params:
                    lines.append(f"  the report's own settings, passed on the VM command line: "
                                 f"{' '.join(self.cmdline_params)}")
        if self.new_symbols:
            names = ", ".join(s for s, _ in self.new_symbols[:8])
            more = f", ... ({len(self.new_symbols)} in changes.json)" if len(self.new_symbols) > 8 else ""
            lines.append(f"not in the file, at this tree's defaults: {len(self.new_symbols)} "
                         f"({names}{more})")
        return "\n".join(lines) + "\n"

    def save(self, out: Path) -> None:
        """changes.json and changes.txt into OUT (a run's or build's directory)."""
        out.mkdir(parents=True, exist_ok=True)
        (out / "changes.json").write_text(json.dumps(self.to_json(), indent=1) + "\n")
        (out / "changes.txt").write_text(self.report_text())


def _show(v: str) -> str:
    return "absent" if v == "" else "not set" if v == "n" else v


def _norm_cc(text: str) -> str:
    return text.strip().strip('"')


def _unquote(v: str) -> str:
    if len(v) >= 2 and v[0] == v[-1] == '"':
        return v[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return v


# --- reading and checking the file ---------------------------------------------------------

_HINT_NOT_CONFIG = ("give a kernel .config (syzbot's 'kernel config' link saved as a file, or "
                    "O=dir/.config of a build)")


def read(path: Path, key: str = "--config-file") -> tuple[str, dict[str, str], int]:
    """(text, values, option lines) of a full .config; InputError (exit 3) with file:line else.

    Reads only: called by the validation phase before anything is unpacked or built."""
    from harness import validate

    path = Path(path)
    text = validate.read_text(path, "kernel config", key=key, hint=_HINT_NOT_CONFIG)
    values: dict[str, str] = {}
    n_opts = 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        m = kconfig._SET.match(line)
        if m:
            value = m.group(2).strip()
            if not validate.KCONFIG_VALUE.match(value):
                raise InputError(f"CONFIG_{m.group(1)}={value}: not a kconfig value",
                                 file=str(path), line=n, key=f"CONFIG_{m.group(1)}",
                                 hint="use y, m, a number, 0x-hex or a \"quoted string\"; "
                                      + _HINT_NOT_CONFIG)
            values[m.group(1)] = "n" if value == "n" else value
            n_opts += 1
            continue
        m = kconfig._UNSET.match(line)
        if m:
            values[m.group(1)] = "n"
            n_opts += 1
            continue
        if line.startswith("#"):
            continue
        raise InputError(f"not a kernel .config: line {raw[:80]!r} is no kconfig assignment",
                         file=str(path), line=n, key=key, hint=_HINT_NOT_CONFIG)
    if n_opts < FULL_MIN_OPTIONS:
        raise InputError(f"has {n_opts} option line(s): a fragment, not a full kernel .config "
                         f"(one has hundreds)", file=str(path), key=key,
                         hint=f"pass a fragment with --config {path} (merged onto wqh's base), "
                              "or give the whole .config")
    others = [a for a in _OTHER_ARCHES if values.get(a, "n") == "y"]
    if values.get("X86", "n") != "y" and others:
        raise InputError(f"a .config for {others[0].lower()}, not x86", file=str(path), key=key,
                         hint="wqh builds and boots x86_64 kernels: give an x86_64 .config")
    if values.get("64BIT") == "n":
        raise InputError("a 32-bit (i386) kernel .config (# CONFIG_64BIT is not set)",
                         file=str(path), key=key,
                         hint="wqh boots x86_64 kernels: give the x86_64 .config (a report with "
                              "'userspace arch: i386' still has an x86_64 kernel)")
    return text, values, n_opts


def check(path: Path, key: str = "--config-file") -> None:
    """The validation phase's check of --config-file / kernel: {config: PATH}."""
    read(path, key)


# --- the command line -----------------------------------------------------------------------

def _params(cmdline: str) -> list[str]:
    try:
        return shlex.split(cmdline)
    except ValueError:
        return cmdline.split()


def _param_name(p: str) -> str:
    return p.split("=", 1)[0]


def cmdline_of(values: dict[str, str]) -> tuple[str, list[str], list[str]]:
    """(built-in command line, parameters the VM overrides, the report's own settings)."""
    if values.get("CMDLINE_BOOL", "n") != "y":
        return "", [], []
    builtin = _unquote(values.get("CMDLINE", '""'))
    params = _params(builtin)
    overridden = [p for p in params if _param_name(p) in VM_OWN_PARAMS]
    own = [p for p in params if _param_name(p) in REPORT_PARAMS]
    return builtin, overridden, own


# --- the dependency of a change -------------------------------------------------------------

class _Explainer:
    """Why olddefconfig changed a symbol: kconfig.find_dependency, followed a few levels down
    to a toolchain symbol or a $(cc-option ...) probe when there is one."""

    def __init__(self, srctree: Path, final: dict[str, str]):
        self.srctree, self.final = srctree, final
        self.cache: dict[str, kconfig.Dependency | None] = {}

    def dep(self, sym: str) -> kconfig.Dependency | None:
        if sym not in self.cache:
            self.cache[sym] = kconfig.find_dependency(self.srctree, sym, self.final)
        return self.cache[sym]

    def compiler_root(self, sym: str, depth: int = 3, seen: set | None = None) -> str | None:
        """A chain 'A <- B <- CC_IS_CLANG' (or '... <- $(cc-option ...)') if SYM is off because of
        the toolchain, else None."""
        seen = set() if seen is None else seen
        if sym in seen:
            return None
        seen.add(sym)
        d = self.dep(sym)
        if d is None:
            return None
        probes = [e for e in d.expressions if "$(" in e]
        tool = [s for s in d.unmet if _COMPILER_SYMBOL.search(s) and s != "CC"]
        if tool:
            return f"{sym} <- {tool[0]}"
        if probes and not [s for s in d.unmet if s != "CC"]:
            return f"{sym} <- {probes[0]}"
        if depth > 1:
            for s in d.unmet:
                sub = self.compiler_root(s, depth - 1, seen)
                if sub:
                    return f"{sym} <- {sub}"
        return None

    def why(self, sym: str) -> tuple[str, str]:
        """(cause, explanation) of a symbol whose value the final .config does not keep."""
        if sym in _TOOLCHAIN_TEXT or _TOOLCHAIN_FACT.search(sym):
            return "compiler", "computed by Kconfig from the local toolchain"
        root = self.compiler_root(sym)
        if root:
            return "compiler", f"needs {root.split(' <- ', 1)[1]} ({root})"
        d = self.dep(sym)
        if d is None:
            return "olddefconfig", "not defined in any Kconfig of this tree"
        if not d.unmet and "CLANG" in sym and self.final.get("CC_IS_CLANG", "n") != "y":
            return "compiler", (f"clang only ({d.defined_at}): selected only by options the local "
                                "compiler cannot have")
        if d.unmet:
            return "olddefconfig", (f"unmet dependency ({d.defined_at}): "
                                    + kconfig.unmet_text(d.unmet, self.final)
                                    + f" in 'depends on {' && '.join(d.expressions)}'")
        return "olddefconfig", (f"dependencies met ({d.defined_at}); set by a 'select', a 'choice' "
                                "or a range")


# --- prepare ----------------------------------------------------------------------------------

def local_compiler() -> str:
    return config._toolchain().splitlines()[0]


def _memo_key(src: KernelSource, path: Path, needs) -> str:
    h = hashlib.sha256()
    h.update(MEMO_VERSION.encode() + b"\0" + config.memo_key(src, (path,)).encode() + b"\0")
    h.update(repr(needs).encode())
    return h.hexdigest()[:24]


def _apply(text: str, sets: dict[str, str]) -> str:
    """TEXT with each symbol of SETS assigned its value (line replaced in place, or appended)."""
    out, done = [], set()
    for raw in text.splitlines():
        line = raw.strip()
        m = kconfig._SET.match(line) or kconfig._UNSET.match(line)
        if m and m.group(1) in sets:
            sym = m.group(1)
            if sym in done:
                continue
            done.add(sym)
            v = sets[sym]
            out.append(f"# CONFIG_{sym} is not set" if v == "n" else f"CONFIG_{sym}={v}")
            continue
        out.append(raw)
    for sym, v in sets.items():
        if sym not in done:
            out.append(f"# CONFIG_{sym} is not set" if v == "n" else f"CONFIG_{sym}={v}")
    return "\n".join(out) + "\n"


def prepare(src: KernelSource, path: Path, guest_tests: bool = False,
            key: str = "--config-file") -> FullConfig:
    """PATH (a full .config) as it is, plus what the VM needs (and, with GUEST_TESTS, what wqh's
    guest tests need), through olddefconfig in a private O= directory of the cache.

    InputError (exit 3) when PATH is no .config; ConfigError (exit 2) when a VM need cannot be
    met in this tree, naming the dependency that is off."""
    path = Path(path).resolve()
    text, values, n_opts = read(path, key)
    needs = VM_NEEDS + (GUEST_TEST_NEEDS if guest_tests else ())
    mkey = _memo_key(src, path, needs)
    root = cache_dir() / "configs" / src.key / "full"
    staging = root / mkey
    memo = root / f"{mkey}.json"
    if memo.is_file():
        try:
            return _from_memo(json.loads(memo.read_text()), path, staging)
        except (OSError, ValueError, KeyError, TypeError):
            pass
    staging.mkdir(parents=True, exist_ok=True)
    with (staging / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        fc = _prepare_locked(src, path, text, values, n_opts, needs, staging)
    tmp = memo.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(_to_memo(fc)))
    tmp.replace(memo)
    return fc


def _prepare_locked(src: KernelSource, path: Path, text: str, values: dict[str, str], n_opts: int,
                    needs, staging: Path) -> FullConfig:
    sets: dict[str, str] = {}
    vm_why: dict[str, str] = {}
    for sym, want, why in needs:
        if values.get(sym, "") != want:
            sets[sym] = want
            vm_why[sym] = why
    forced: dict[str, str] = {}
    if values.get("CMDLINE_OVERRIDE", "n") == "y":
        sets["CMDLINE_OVERRIDE"] = "n"
        forced["CMDLINE_OVERRIDE"] = (
            "forced: a built-in command line that replaces the boot loader's leaves no room for "
            "virtme-ng's own root= and console=, so the VM could not boot at all; the built-in "
            "CONFIG_CMDLINE now comes first and the VM's parameters after it")
    log = staging / "config.log"
    log.write_text("")
    (staging / "input.config").write_text(text)
    (staging / ".config").write_text(_apply(text, sets))
    config._make(src, staging, "olddefconfig", log=log)
    final_text = (staging / ".config").read_text()
    final = kconfig.parse_dotconfig(final_text)

    missing = [(s, w) for s, w, _ in needs if final.get(s, "n") != w]
    if missing:
        ex = _Explainer(src.path, final)
        lines = []
        for s, w in missing:
            d = ex.dep(s)
            how = ("not defined in any Kconfig of this tree" if d is None else
                   "unmet dependency (" + d.defined_at + "): "
                   + kconfig.unmet_text(d.unmet, final) if d.unmet else
                   f"dependencies met ({d.defined_at}); a 'choice' or a select against it")
            lines.append(f"  CONFIG_{s}={w} (the VM needs it: {vm_why.get(s, 'VM need')}) -> final "
                         f".config has it {_show(final.get(s, 'n'))}: {how}")
        raise ConfigError(f"{path}: the VM's needs cannot all be met in this tree:\n"
                          + "\n".join(lines),
                          hint="enable the unmet dependencies in the .config, or use a tree that "
                               "has them")

    ex = _Explainer(src.path, final)
    changes: list[Change] = []
    for sym, why in forced.items():
        changes.append(Change(sym, values.get(sym, ""), final.get(sym, ""), "cmdline", why))
    for sym in sets:
        if sym in vm_why:
            changes.append(Change(sym, values.get(sym, ""), final.get(sym, ""), "vm", vm_why[sym]))
    compiler_file = _unquote(values.get("CC_VERSION_TEXT", '""'))
    compiler_local = _unquote(final.get("CC_VERSION_TEXT", "")) or local_compiler()
    for sym, was in values.items():
        if sym in sets:
            continue
        now = final.get(sym, "")
        if now == was or (was == "n" and now == ""):
            continue
        cause, why = ex.why(sym)
        if sym in ("CC_VERSION_TEXT",):
            why = "the file was built by another compiler"
        changes.append(Change(sym, was, now, cause, why))
    order = {c: i for i, c in enumerate(_CAUSES)}
    changes.sort(key=lambda c: (order[c.cause], c.symbol))
    new_symbols = sorted((s, v) for s, v in final.items()
                         if s not in values and s not in sets and v != "n")
    builtin, overridden, own = cmdline_of(kconfig.parse_dotconfig(_apply(text, sets)))
    res = config._result(final_text, (path,), staging)
    return FullConfig(path, res, changes, new_symbols, own, overridden, builtin, compiler_file,
                      compiler_local, n_opts, [s for s, _, _ in needs])


def _to_memo(fc: FullConfig) -> dict:
    return {"dotconfig": fc.dotconfig, "changes": [asdict(c) for c in fc.changes],
            "new_symbols": fc.new_symbols, "cmdline_params": fc.cmdline_params,
            "cmdline_overridden": fc.cmdline_overridden, "cmdline_builtin": fc.cmdline_builtin,
            "compiler_file": fc.compiler_file, "compiler_local": fc.compiler_local,
            "options": fc.options, "vm_needs": fc.vm_needs}


def _from_memo(m: dict, path: Path, staging: Path) -> FullConfig:
    res = config._result(m["dotconfig"], (path,), staging)
    return FullConfig(path, res, [Change(**c) for c in m["changes"]],
                      [tuple(x) for x in m["new_symbols"]], m["cmdline_params"],
                      m["cmdline_overridden"], m["cmdline_builtin"], m["compiler_file"],
                      m["compiler_local"], m["options"], m["vm_needs"])
