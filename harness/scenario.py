"""Scenarios: YAML files naming a kernel, guest tests, VM shape, timeouts, expectations.

Validated against a small schema on the YAML node tree, so every error names
file:line and the key at fault. Nothing runs before every file is valid.
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from harness.errors import InputError, Problems
from harness.paths import REPO
from harness.results import EXPECTABLE

OUTCOMES = tuple(o.value for o in EXPECTABLE)
_FLOAT12 = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)$")
_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


@dataclass(frozen=True)
class TestRef:
    __test__ = False  # not a pytest class, whatever its name
    id: str  # pytest node id as given (relative path::name)
    path: Path  # resolved file
    expect: str = "pass"
    line: int = 0
    title: str | None = None  # with expect: crash, the report title that makes it expected

    @property
    def node(self) -> str:
        """Node id with an absolute file path, as the guest agent passes it to pytest."""
        _, sep, rest = self.id.partition("::")
        return f"{self.path}{sep}{rest}"


@dataclass(frozen=True)
class KernelSpec:
    fragments: tuple[str, ...] = ()
    patches: tuple[Path, ...] = ()
    config: Path | None = None  # a full .config (syzbot's), used instead of the fragments
    # The kernels it runs on (debian:6.12, a tree's absolute path, PATH@REF), each in turn;
    # () is the run's --kernel (or the default). A --kernel on the command line replaces them.
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class VMShape:
    cpus: int = 2
    memory: str = "1G"
    # Kernel parameters of the scenario's own (lsm=smack), after wqh's on the VM's command
    # line. Part of the shape: scenarios that differ here never share a boot.
    cmdline: tuple[str, ...] = ()


@dataclass(frozen=True)
class Timeouts:
    no_output: float = 60.0
    total: float = 300.0


@dataclass
class Scenario:
    name: str
    file: Path
    description: str = ""
    kernel: KernelSpec = field(default_factory=KernelSpec)
    vm: VMShape = field(default_factory=VMShape)
    timeouts: Timeouts = field(default_factory=Timeouts)
    tests: list[TestRef] = field(default_factory=list)
    # The end-of-run kmemleak check (kmemleak kernels only): None = no leak allowed, else the
    # title of the leak this scenario expects (e.g. a re-introduced bug).
    leak: str | None = None
    own_vm: bool = False  # boots alone even beside scenarios of the same shape (repro's shares)
    name_line: int = 1  # where the name is set (line 1 when it is the file's stem)


# --- schema walking ------------------------------------------------------------------


class _Ctx:
    def __init__(self, file: Path):
        self.file = file

    def fail(self, node: yaml.Node | None, key: str, msg: str, hint: str = "") -> InputError:
        line = node.start_mark.line + 1 if node is not None else 0
        return InputError(msg, hint=hint, file=str(self.file), line=line, key=key)

    def mapping(self, node: yaml.Node, key: str, allowed: dict[str, str]) -> dict[str, tuple]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, key, f"expected a mapping, got {_kind(node)}",
                            hint="write 'key: value' lines here")
        out = {}
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode):
                raise self.fail(k, key, "mapping keys must be plain names",
                                hint="write the key as a plain word")
            name = k.value
            full = f"{key}.{name}" if key else name
            if name not in allowed:
                raise self.fail(k, full, "unknown key",
                                hint=f"allowed here: {', '.join(sorted(allowed))}")
            if name in out:
                raise self.fail(k, full, "duplicate key", hint="keep one of the two")
            out[name] = (k, v)
        return out

    def scalar(self, node: yaml.Node, key: str, typ: type):
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, key, f"expected {_TYPE_NAMES[typ]}, got {_kind(node)}",
                            hint=f"write {_TYPE_NAMES[typ]} here")
        try:
            value = yaml.constructor.SafeConstructor().construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as e:
            problem = getattr(e, "problem", None) or str(e)
            raise self.fail(node, key, f"cannot read this value: {problem}",
                            hint=f"write {_TYPE_NAMES[typ]} here, without a '!!' tag") from None
        if typ is float and isinstance(value, str) and node.style is None and _FLOAT12.match(value):
            value = float(value)  # YAML 1.2 reads 1e3 as a number; PyYAML (1.1) as a string
        if typ is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if typ is float and isinstance(value, float) and not math.isfinite(value):
            raise self.fail(node, key, f"expected a finite number, got {node.value!r}",
                            hint="give a number of seconds, e.g. 60")
        if typ is str and isinstance(value, str) and ("\0" in value):
            raise self.fail(node, key, "the string has a NUL character", hint="remove the \\0")
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            raise self.fail(node, key, f"expected {_TYPE_NAMES[typ]}, got {type(value).__name__} "
                                       f"{node.value!r}",
                            hint=f"write {_TYPE_NAMES[typ]} here" + (" (quote it)" if typ is str else ""))
        return value

    def seq(self, node: yaml.Node, key: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, key, f"expected a list, got {_kind(node)}",
                            hint="write a list: [a, b] or '- a' lines")
        return list(node.value)


def _kind(node: yaml.Node | None) -> str:
    return {yaml.ScalarNode: "a scalar", yaml.SequenceNode: "a list",
            yaml.MappingNode: "a mapping"}.get(type(node), "nothing")


def _resolve_test_file(rel: str, scen_dir: Path) -> Path | None:
    for base in (scen_dir, REPO):
        p = (base / rel).resolve()
        if p.is_file():
            return p
    return None


def _test_names(path: Path) -> set[str]:
    from harness import validate

    text = validate.read_text(path, "test file", hint="guest tests are UTF-8 Python files")
    try:
        tree = ast.parse(text, str(path))
    except (SyntaxError, ValueError):
        return set()  # pytest will report it as a collection error in the guest
    names = set()
    for n in tree.body:
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(n.name)
    return names


def _test_ref(ctx: _Ctx, node: yaml.Node, key: str, default_expect: str) -> TestRef:
    expect = default_expect
    id_node = node
    if isinstance(node, yaml.MappingNode):
        m = ctx.mapping(node, key, {"test": "", "expect": "", "title": ""})
        if "test" not in m:
            raise ctx.fail(node, f"{key}.test", "missing key 'test' (a pytest node id)",
                           hint="add test: guest-tests/test_x.py::test_name")
        id_node = m["test"][1]
        if "expect" in m:
            expect = ctx.scalar(m["expect"][1], f"{key}.expect", str)
            if expect not in OUTCOMES:
                raise ctx.fail(m["expect"][1], f"{key}.expect", f"unknown outcome {expect!r}",
                               hint=f"one of: {', '.join(OUTCOMES)}")
    title = None
    if isinstance(node, yaml.MappingNode) and "title" in m:
        title = ctx.scalar(m["title"][1], f"{key}.title", str)
        if expect != "crash":
            raise ctx.fail(m["title"][1], f"{key}.title", "a title only goes with 'expect: crash'",
                           hint="add 'expect: crash' or remove the title")
    test_id = ctx.scalar(id_node, key, str)
    rel, sep, name = test_id.partition("::")
    node_hint = "a pytest node id: guest-tests/test_x.py or guest-tests/test_x.py::test_name"
    if not rel.strip() or rel != rel.strip() or any(c in test_id for c in "\n\r\t"):
        raise ctx.fail(id_node, key, f"{test_id!r} is not a test file path", hint=node_hint)
    if not rel.endswith(".py"):
        raise ctx.fail(id_node, key, f"{rel!r} is not a Python test file (.py)", hint=node_hint)
    if sep and (not name or any(not part or part != part.strip() for part in name.split("::"))):
        raise ctx.fail(id_node, key, f"{test_id!r} has an empty or blank test name after '::'",
                       hint=node_hint)
    path = _resolve_test_file(rel, ctx.file.parent)
    if path is None:
        raise ctx.fail(id_node, key, f"test file {rel!r} does not exist",
                       hint=f"paths are relative to {ctx.file.parent} or to {REPO}")
    if name:
        top = name.split("::")[0].split("[")[0]
        try:
            names = _test_names(path)
        except InputError as e:
            raise ctx.fail(id_node, key, e.detail, e.hint) from None
        if names and top not in names:
            raise ctx.fail(id_node, key, f"{rel} has no test {top!r}",
                           hint=f"tests there: {', '.join(sorted(n for n in names if n.startswith(('test', 'Test'))))}")
    return TestRef(test_id, path, expect, id_node.start_mark.line + 1, title)


_TOP = {"name": "", "description": "", "kernel": "", "vm": "", "timeouts": "",
        "tests": "", "expect": "", "leak": ""}

# One kernel parameter: name or name=value, no blanks or quotes (one entry, one parameter).
_PARAM = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(?:=[^\s\"'\\]*)?$")
# Set by virtme-ng or wqh for the guest to boot, mount its root and be watched; another value
# would leave no VM or no console to judge.
_OWN_PARAMS = ("console", "init", "root", "rootfstype", "rootflags")


def _kernel_param(ctx: _Ctx, node: yaml.Node) -> str:
    param = ctx.scalar(node, "vm.cmdline", str)
    if not _PARAM.match(param):
        raise ctx.fail(node, "vm.cmdline", f"{param!r} is not one kernel parameter",
                       hint="one name or name=value per entry, without blanks or quotes, "
                            "e.g. lsm=smack")
    name = param.split("=", 1)[0]
    if name in _OWN_PARAMS:
        raise ctx.fail(node, "vm.cmdline", f"{name}= is set by virtme-ng and wqh",
                       hint=f"leave {', '.join(_OWN_PARAMS)} to them")
    return param


def compose_index(file: Path, what: str, top_key: str, hint: str) -> yaml.Node:
    """The YAML node tree of an index file (the wall's, the mutants'), read and parsed with
    every failure an InputError naming the file (and line) and the key --index."""
    from harness import validate

    try:
        root = yaml.compose(validate.read_text(file, what, key="--index", hint=hint))
    except OSError as e:
        raise InputError(f"cannot read the {what}: {e.strerror}", file=str(file),
                         key="--index", hint=hint) from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise InputError(f"invalid YAML: {getattr(e, 'problem', e)}", file=str(file),
                         line=mark.line + 1 if mark else 0,
                         hint="fix the YAML syntax (indentation, quotes, colons)") from e
    except RecursionError:
        raise InputError("invalid YAML: nested too deeply", file=str(file), line=1) from None
    if root is None:
        raise InputError(f"empty {what}", file=str(file), line=1, hint=f"it needs '{top_key}:'")
    return root


def load(file: Path) -> Scenario:
    """One scenario, validated; every error of the file reported together (InputErrors)."""
    from harness import validate

    file = Path(file)
    try:
        text = validate.read_text(file, "scenario", hint="pass a path to a scenarios/*.yaml file")
    except OSError as e:
        raise InputError(f"cannot read scenario: {e.strerror}", file=str(file),
                         hint="pass a path to a scenarios/*.yaml file") from e
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else 0
        problem = getattr(e, "problem", None) or str(e)
        raise InputError(f"invalid YAML: {problem}", file=str(file), line=line,
                         hint="fix the YAML syntax (indentation, quotes, colons)") from e
    except RecursionError:
        raise InputError("invalid YAML: nested too deeply", file=str(file), line=1,
                         hint="a scenario is a flat mapping") from None
    ctx = _Ctx(file)
    if root is None:
        raise InputError("empty scenario", file=str(file), line=1,
                         hint="a scenario needs at least 'tests:'")
    top = ctx.mapping(root, "", _TOP)
    sc = Scenario(name=file.stem, file=file.resolve())
    probs = Problems()
    with probs.check():
        if "name" in top:
            sc.name = ctx.scalar(top["name"][1], "name", str)
            sc.name_line = top["name"][1].start_mark.line + 1
            if not sc.name.strip() or any(not c.isprintable() for c in sc.name) or "/" in sc.name:
                raise ctx.fail(top["name"][1], "name", f"bad scenario name {sc.name!r}",
                               hint="a short printable name without '/', e.g. smoke")
    with probs.check():
        if "description" in top:
            sc.description = ctx.scalar(top["description"][1], "description", str)
    with probs.check():
        if "kernel" in top:
            sc.kernel = _kernel(ctx, probs, top["kernel"][1], file)
    with probs.check():
        if "vm" in top:
            v = ctx.mapping(top["vm"][1], "vm", {"cpus": "", "memory": "", "cmdline": ""})
            cpus, mem, cmdline = 2, "1G", ()
            if "cpus" in v:
                cpus = ctx.scalar(v["cpus"][1], "vm.cpus", int)
                if not 1 <= cpus <= validate.MAX_CPUS:
                    raise ctx.fail(v["cpus"][1], "vm.cpus",
                                   f"cpus must be 1..{validate.MAX_CPUS}, got {cpus}",
                                   hint=f"give a whole number from 1 to {validate.MAX_CPUS}")
            if "memory" in v:
                mem = str(ctx.scalar(v["memory"][1], "vm.memory", str))
                try:
                    validate.memory("vm.memory", mem)
                except InputError as e:
                    raise ctx.fail(v["memory"][1], "vm.memory", e.detail, e.hint) from None
            if "cmdline" in v:
                cmdline = tuple(_kernel_param(ctx, n) for n in ctx.seq(v["cmdline"][1], "vm.cmdline"))
            sc.vm = VMShape(cpus, mem, cmdline)
    with probs.check():
        if "timeouts" in top:
            t = ctx.mapping(top["timeouts"][1], "timeouts", {"no_output": "", "total": ""})
            vals = {}
            for name in ("no_output", "total"):
                if name in t:
                    val = ctx.scalar(t[name][1], f"timeouts.{name}", float)
                    if val <= 0:
                        raise ctx.fail(t[name][1], f"timeouts.{name}", "must be > 0 seconds",
                                       hint="give a number of seconds, e.g. 60")
                    try:
                        vals[name] = validate.seconds(f"timeouts.{name}", val)
                    except InputError as e:
                        raise ctx.fail(t[name][1], f"timeouts.{name}", e.detail, e.hint) from None
            sc.timeouts = Timeouts(**vals)
    default_expect = "pass"
    with probs.check():
        if "expect" in top:
            default_expect = ctx.scalar(top["expect"][1], "expect", str)
            if default_expect not in OUTCOMES:
                bad, default_expect = default_expect, "pass"
                raise ctx.fail(top["expect"][1], "expect", f"unknown outcome {bad!r}",
                               hint=f"one of: {', '.join(OUTCOMES)}")
    with probs.check():
        if "leak" in top:
            sc.leak = ctx.scalar(top["leak"][1], "leak", str)
            if not sc.leak.startswith("memory leak in ") or not sc.leak[15:].strip():
                raise ctx.fail(top["leak"][1], "leak", f"not a kmemleak title: {sc.leak!r}",
                               hint="write the expected title, e.g. 'memory leak in watch_queue_set_size'")
    with probs.check():
        if "tests" not in top:
            raise ctx.fail(root, "tests", "missing key 'tests' (a list of pytest node ids)",
                           hint="add tests: [guest-tests/test_x.py::test_name]")
        nodes = ctx.seq(top["tests"][1], "tests")
        if not nodes:
            raise ctx.fail(top["tests"][1], "tests", "the list of tests is empty",
                           hint="name at least one pytest node id")
        for i, n in enumerate(nodes):
            with probs.check():
                sc.tests.append(_test_ref(ctx, n, f"tests[{i}]", default_expect))
    probs.raise_if_any()
    return sc


def _kernel(ctx: _Ctx, probs: Problems, node: yaml.Node, file: Path) -> KernelSpec:
    from harness import patches as patches_mod
    from harness import validate

    k = ctx.mapping(node, "kernel", {"fragments": "", "patches": "", "config": "", "sources": ""})
    frags: tuple[str, ...] = ()
    plist: list[Path] = []
    full: Path | None = None
    srcs: list[str] = []
    if "sources" in k:
        srcs = _sources(ctx, probs, k["sources"][1], file)
    if "config" in k:
        from harness import fullconfig

        n = k["config"][1]
        with probs.check():
            rel = ctx.scalar(n, "kernel.config", str)
            full = (file.parent / rel).resolve()
            if "fragments" in k:
                raise ctx.fail(n, "kernel.config", "a full config and fragments together",
                               hint="a full .config is used as it is: drop kernel.fragments, or "
                                    "give fragments only")
            if not full.is_file():
                raise ctx.fail(n, "kernel.config", f"config {full} does not exist",
                               hint=f"paths are relative to {file.parent}")
            try:
                fullconfig.check(full, "kernel.config")
            except InputError as e:
                raise ctx.fail(n, "kernel.config", str(e).split("\n  fix: ")[0], e.hint) from None
    if "fragments" in k:
        frags = tuple(ctx.scalar(n, "kernel.fragments", str)
                      for n in ctx.seq(k["fragments"][1], "kernel.fragments"))
        for n, name in zip(k["fragments"][1].value, frags):
            with probs.check():
                try:
                    validate.fragment(name, file.parent)
                except InputError as e:
                    if e.file and e.line:  # an error inside the fragment: its own file:line
                        raise ctx.fail(n, "kernel.fragments", str(e).split("\n  fix: ")[0], e.hint) from None
                    raise ctx.fail(n, "kernel.fragments", e.detail, e.hint) from None
    if "patches" in k:
        for n in ctx.seq(k["patches"][1], "kernel.patches"):
            with probs.check():
                rel = ctx.scalar(n, "kernel.patches", str)
                p = (file.parent / rel).resolve() if rel.strip() else file.parent / rel
                if not p.is_file() and not p.exists():
                    raise ctx.fail(n, "kernel.patches", f"patch {p} does not exist",
                                   hint=f"paths are relative to {file.parent}")
                try:
                    patches_mod.check_form(p, "kernel.patches")
                except InputError as e:
                    raise ctx.fail(n, "kernel.patches", e.detail, e.hint) from None
                plist.append(p)
    return KernelSpec(frags, tuple(plist), full, tuple(srcs))


def _sources(ctx: _Ctx, probs: Problems, node: yaml.Node, file: Path) -> list[str]:
    """kernel.sources: each a kernel as --kernel takes it (a relative path is relative to the
    scenario's directory), checked without unpacking or cloning; none named twice."""
    from harness import source, validate

    out: list[str] = []
    seen: dict[str, int] = {}
    if not ctx.seq(node, "kernel.sources"):
        raise ctx.fail(node, "kernel.sources", "no kernel in the list",
                       hint="name at least one, e.g. [debian:6.1, debian:6.12], or drop the key")
    for n in ctx.seq(node, "kernel.sources"):
        with probs.check():
            spec = ctx.scalar(n, "kernel.sources", str).strip()
            if spec and not spec.startswith(source.DEBIAN_PREFIX):
                path_s, at, ref = spec.rpartition("@") if "@" in spec else (spec, "", "")
                spec = str((file.parent / Path(path_s).expanduser()).resolve()) + at + ref
            try:
                validate.kernel_spec(spec, "kernel.sources")
                name = source.canonical(spec)
            except InputError as e:
                raise ctx.fail(n, "kernel.sources", e.detail, e.hint) from None
            if name in seen:
                raise ctx.fail(n, "kernel.sources", f"{name} is named twice (first on line {seen[name]})",
                               hint="give each kernel once")
            seen[name] = n.start_mark.line + 1
            out.append(spec)
    return out


def discover(paths: list[str]) -> list[Path]:
    """Scenario files from arguments (files or directories); default: scenarios/*.yaml."""
    from harness.paths import SCENARIOS

    if not paths:
        return sorted(SCENARIOS.glob("*.yaml"))
    out = []
    probs = Problems()
    for arg in paths:
        with probs.check():
            if not arg.strip() or "\0" in arg:
                raise InputError(f"{arg!r} is not a path", key="scenarios",
                                 hint="pass a YAML file or a directory of them (see 'wqh list')")
            p = Path(arg)
            if p.is_dir():
                found = sorted(f for f in p.glob("*.yaml") if f.is_file())
                if not found:
                    yml = sorted(p.glob("*.yml"))
                    why = (f"only {', '.join(f.name for f in yml[:3])} (.yml)" if yml
                           else "no *.yaml file")
                    raise InputError(f"scenario directory {p} has {why}: nothing to run",
                                     key="scenarios",
                                     hint="name scenario files *.yaml, or pass the files themselves")
                out += found
            elif p.exists() or p.is_symlink():
                out.append(p)
            else:
                raise InputError(f"scenario {p} does not exist", key="scenarios",
                                 hint="pass a YAML file or a directory of them (see 'wqh list')")
    probs.raise_if_any()
    return out


def load_all(paths: list[str]) -> list[Scenario]:
    """Every scenario of PATHS, validated; the errors of all files reported together."""
    probs = Problems()
    scs = []
    for p in discover(paths):
        with probs.check():
            scs.append(load(p))
    seen: dict[str, Path] = {}
    for s in scs:
        if s.name in seen:
            probs.add(InputError(f"scenario name {s.name!r} is also used by {seen[s.name]}",
                                 file=str(s.file), line=s.name_line, key="name",
                                 hint="give each scenario its own name"))
            continue
        seen[s.name] = s.file
    probs.raise_if_any()
    return scs
