"""`wqh mutate`: the suite measures itself.

scenarios/mutants/index.yaml lists one-line edits (mutants) of the notification code: the queue,
the pipe it lives in, the key notification sites. None is a known bug: those are the wall's
(scenarios/regressions), and an edit one of the wall's patches makes is refused. Each mutant
becomes a patch made from the tree's own text, applied to a private variant of the tree (built
incrementally from the cache, never in the user's tree) on which its scenario runs.

Verdicts: killed (a test not as expected, or a kernel report), killed (build) (the variant does
not build: counted apart, not in the score), survived (everything as expected), unknown (the
run could not tell: an infra error; not counted), equivalent (the index says why no test can
see it: not run). Score = killed / (killed + survived). The unmutated tree runs the same
scenarios in the same run: a test that is not as expected there proves nothing on a mutant.

Mutants run one at a time, each verdict written as it comes in. A variant's build directory
(185-500 MB) is removed once its verdict is in, but for the newest of each config: the next
mutant's build is seeded from it (--keep-builds keeps them all).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from harness import results, runner, scenario
from harness.errors import EXIT_FAIL, EXIT_INFRA, EXIT_OK, InfraError, InputError, Problems
from harness.guest.protocol import KMEMLEAK_ID
from harness.paths import REPO, SCENARIOS, cache_dir

INDEX = SCENARIOS / "mutants" / "index.yaml"
WALL_PATCHES = SCENARIOS / "regressions" / "patches"
KINDS = ("boundary", "dropped-flag", "wrong-id", "inverted-logic", "missing-notify", "missing-free",
         "other")
DEFAULT_SCENARIO = "functional"
_KEYS = {k: "" for k in ("id", "file", "find", "replace", "occurrence", "kind", "scenario",
                         "equivalent", "killed_by")}
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_NEED = {
    "id": "a short name of your own, e.g. wq-loss-flag",
    "file": "the file to edit, relative to the tree's top, e.g. kernel/watch_queue.c",
    "find": "one line of that file, exactly (in double quotes, a tab is \\t)",
    "replace": "the mutated line; \"\" deletes the line",
    "kind": "one of: " + ", ".join(KINDS),
}
FIND_HINT = "copy the line exactly, whitespace included: in double quotes, a tab is \\t"

KILLED, BUILD, SURVIVED, UNKNOWN, EQUIVALENT, NOT_RUN = (
    "killed", "killed (build)", "survived", "unknown", "equivalent", "not run")
JUDGED = (KILLED, BUILD, SURVIVED)  # verdicts a --resume keeps
BUILD_FAILED = "kernel build failed"  # build.py's InfraError, as the runner records it
BASE = "base"


@dataclass
class Mutant:
    id: str
    file: str
    find: str
    replace: str
    kind: str
    scenario: str = DEFAULT_SCENARIO
    occurrence: int = 0  # 0: the find line must be unique in the file
    equivalent: str = ""  # why no test can tell it from the tree: not run
    killed_by: list[str] = field(default_factory=list)  # informative: the test expected to kill it
    key: str = ""  # mutants[i]
    line: int = 0  # of the entry in the index
    lines: dict[str, int] = field(default_factory=dict)  # of its keys
    tree_line: int = 0  # of the edited line in the tree, once located
    # a run's
    verdict: str = NOT_RUN
    killers: list[str] = field(default_factory=list)
    note: str = ""
    build_s: float | None = None
    run_s: float | None = None
    artifacts: str = ""  # the run directory (relative to --out) its results are in

    @property
    def where(self) -> str:
        return f"{self.file}:{self.tree_line}" if self.tree_line else self.file

    @property
    def edit(self) -> str:
        new = self.replace.strip()
        return f"{self.find.strip()} -> {new if new else '(line deleted)'}"

    def same_edit(self, d: dict) -> bool:
        return all(d.get(k) == getattr(self, k) for k in ("file", "find", "replace", "occurrence",
                                                           "scenario"))

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        for k in ("key", "line", "lines"):
            d.pop(k)
        d["edit"] = self.edit
        return d


# --- the index ---------------------------------------------------------------------------


def wall_edits(root: Path = WALL_PATCHES) -> dict[tuple[str, str, str], str]:
    """(file, removed line, its replacement) of every change block of the wall's patches ->
    patch name; lines stripped. A block's removed line pairs with each added line and with ''
    (deleting any line a wall patch removes counts as that patch)."""
    out: dict[tuple[str, str, str], str] = {}
    for p in sorted(root.rglob("*.patch")):
        name = str(p.relative_to(root))
        target = ""
        minus: list[str] = []
        plus: list[str] = []

        def flush() -> None:
            for m in minus:
                for new in plus + [""]:
                    out.setdefault((target, m, new), name)
            minus.clear()
            plus.clear()

        for ln in p.read_text(errors="replace").splitlines():
            if ln.startswith("+++ "):
                flush()
                target = ln[4:].split("\t")[0].strip()
                target = target[2:] if target.startswith("b/") else target
            elif ln.startswith("--- ") or ln.startswith("@@"):
                flush()
            elif ln.startswith("-"):
                if plus:
                    flush()
                minus.append(ln[1:].strip())
            elif ln.startswith("+"):
                plus.append(ln[1:].strip())
            else:
                flush()
        flush()
    return out


def load_index(file: Path = INDEX) -> list[Mutant]:
    """The index, validated; every error of it reported together, each naming file:line and
    the key."""
    hint = "give --index a mutant index like scenarios/mutants/index.yaml"
    root = scenario.compose_index(file, "mutant index", "mutants", hint)
    ctx = scenario._Ctx(file)
    top = ctx.mapping(root, "", {"mutants": ""})
    if "mutants" not in top:
        raise ctx.fail(root, "mutants", "missing key 'mutants'", hint="a list of mutants")
    nodes = ctx.seq(top["mutants"][1], "mutants")
    if not nodes:
        raise ctx.fail(top["mutants"][1], "mutants", "the list of mutants is empty",
                       hint="add at least one mutant")
    wall = wall_edits()
    probs = Problems()
    out: list[Mutant] = []
    seen: dict[str, int] = {}
    for i, node in enumerate(nodes):
        with probs.check():
            m = _entry(ctx, node, f"mutants[{i}]", wall)
            if m.id in seen:
                raise InputError(f"id {m.id!r} is also the id of the mutant at line {seen[m.id]}",
                                 file=str(file), line=m.lines["id"], key=f"{m.key}.id",
                                 hint="give each mutant its own id")
            seen[m.id] = m.line
            out.append(m)
    probs.raise_if_any()
    return out


def _entry(ctx: scenario._Ctx, node: yaml.Node, key: str, wall: dict) -> Mutant:
    m = ctx.mapping(node, key, _KEYS)
    for need in ("id", "file", "find", "replace", "kind"):
        if need not in m:
            raise ctx.fail(node, f"{key}.{need}", f"missing key '{need}'", hint=_NEED[need])
    lines = {k: v.start_mark.line + 1 for k, (_, v) in m.items()}

    def text(name: str) -> str:
        n = m[name][1]
        if name == "replace" and isinstance(n, yaml.ScalarNode) and n.tag.endswith(":null") \
                and n.value in ("", "~", "null"):
            return ""  # `replace:` left empty: the line is deleted
        value = ctx.scalar(n, f"{key}.{name}", str)
        if "\n" in value or "\r" in value:
            raise ctx.fail(n, f"{key}.{name}", "more than one line",
                           hint="a mutant edits one line: give that line alone")
        return value

    mid = text("id")
    if not _ID.match(mid):
        raise ctx.fail(m["id"][1], f"{key}.id", f"bad mutant id {mid!r}",
                       hint="letters, digits, '.', '_' and '-', at most 64, e.g. wq-loss-flag")
    rel = text("file")
    parts = Path(rel).parts
    if not rel.strip() or rel != rel.strip() or rel.startswith("/") or ".." in parts:
        raise ctx.fail(m["file"][1], f"{key}.file", f"{rel!r} is not a path inside the kernel tree",
                       hint=_NEED["file"])
    find = text("find")
    if not find.strip():
        raise ctx.fail(m["find"][1], f"{key}.find", "the line to find is empty", hint=FIND_HINT)
    replace = text("replace")
    if replace == find:
        raise ctx.fail(m["replace"][1], f"{key}.replace", "the same as 'find': not a mutant",
                       hint="give the mutated line, or \"\" to delete the line")
    kind = text("kind")
    if kind not in KINDS:
        raise ctx.fail(m["kind"][1], f"{key}.kind", f"unknown kind {kind!r}", hint=_NEED["kind"])
    mut = Mutant(mid, rel, find, replace, kind, key=key, line=node.start_mark.line + 1, lines=lines)
    if "scenario" in m:
        mut.scenario = text("scenario")
        if not _scenario_file(mut.scenario).is_file():
            have = ", ".join(sorted(p.stem for p in SCENARIOS.glob("*.yaml")))
            raise ctx.fail(m["scenario"][1], f"{key}.scenario", f"no scenario {mut.scenario!r} "
                           f"in {SCENARIOS}", hint=f"name a scenarios/NAME.yaml: {have}")
    if "occurrence" in m:
        mut.occurrence = ctx.scalar(m["occurrence"][1], f"{key}.occurrence", int)
        if mut.occurrence < 1:
            raise ctx.fail(m["occurrence"][1], f"{key}.occurrence",
                           f"occurrence {mut.occurrence}: must be 1 or more",
                           hint="the Nth line of the file equal to 'find', counted from the top")
    if "equivalent" in m:
        mut.equivalent = text("equivalent").strip()
        if not mut.equivalent:
            raise ctx.fail(m["equivalent"][1], f"{key}.equivalent", "an empty reason",
                           hint="say why no test can tell this mutant from the tree")
    if "killed_by" in m:
        n = m["killed_by"][1]
        names = ([ctx.scalar(x, f"{key}.killed_by", str) for x in ctx.seq(n, f"{key}.killed_by")]
                 if isinstance(n, yaml.SequenceNode) else [ctx.scalar(n, f"{key}.killed_by", str)])
        for t in names:
            path = t.partition("::")[0]
            if t != KMEMLEAK_ID and (not path.endswith(".py") or not (REPO / path).is_file()):
                raise ctx.fail(n, f"{key}.killed_by", f"{t!r} names no test file of this repository",
                               hint=f"a test id (guest-tests/test_x.py::test_name) or {KMEMLEAK_ID}")
        mut.killed_by = names
    name = wall.get((rel, find.strip(), replace.strip()))
    if name:
        raise ctx.fail(m["find"][1], f"{key}.find", f"this edit is a known bug: the wall's {name} "
                       "makes it (scenarios/regressions, `wqh wall`)",
                       hint="a mutant is an edit no known bug makes: pick another line or edit")
    return mut


def _scenario_file(name: str) -> Path:
    return SCENARIOS / f"{name}.yaml"


# --- the tree ----------------------------------------------------------------------------


def locate(mutants: list[Mutant], read, what: str, index: Path) -> None:
    """Each mutant's line in the tree READ gives (rel -> bytes | None): every find line must be
    there, once (or as often as its occurrence says); errors at the index's file:line."""
    probs = Problems()
    if hasattr(read, "prefetch"):
        read.prefetch(sorted({m.file for m in mutants}))
    texts: dict[str, list[str] | None] = {}
    for m in mutants:
        with probs.check():
            if m.file not in texts:
                data = read(m.file)
                texts[m.file] = None if data is None else _lines(data)
            lines = texts[m.file]
            if lines is None:
                raise InputError(f"{m.file}: no such file in {what}", file=str(index),
                                 line=m.lines.get("file", m.line), key=f"{m.key}.file",
                                 hint="a path relative to the tree's top, e.g. kernel/watch_queue.c")
            m.tree_line = find_line(lines, m, what, index)
    probs.raise_if_any()


def _lines(data: bytes) -> list[str]:
    return data.decode("utf-8", "surrogateescape").split("\n")


def find_line(lines: list[str], m: Mutant, what: str = "the tree", index: Path = INDEX) -> int:
    """The 1-based line of LINES that M edits."""
    hits = [i + 1 for i, ln in enumerate(lines) if ln == m.find]
    at = {"file": str(index), "line": m.lines.get("find", m.line), "key": f"{m.key}.find"}
    if not hits:
        near = [i + 1 for i, ln in enumerate(lines) if ln.strip() == m.find.strip()]
        if near:
            raise InputError(f"not a line of {m.file} in {what}: line {near[0]} has the same text "
                             f"with other whitespace ({lines[near[0] - 1]!r})",
                             hint=FIND_HINT, **at)
        raise InputError(f"not a line of {m.file} in {what}", hint=FIND_HINT + "; the index is "
                         "written against Debian's linux-source-6.1", **at)
    if m.occurrence:
        if m.occurrence > len(hits):
            at.update(line=m.lines.get("occurrence", m.line), key=f"{m.key}.occurrence")
            raise InputError(f"occurrence {m.occurrence}, but {m.file} has {len(hits)} such "
                             f"line{'s' if len(hits) > 1 else ''} (line {', '.join(map(str, hits))})",
                             hint=f"give 1 to {len(hits)}", **at)
        return hits[m.occurrence - 1]
    if len(hits) > 1:
        raise InputError(f"{len(hits)} lines of {m.file} are this line (lines "
                         f"{', '.join(map(str, hits))}): which one is meant?",
                         hint=f"add 'occurrence: N' (1 to {len(hits)}, counted from the top)", **at)
    return hits[0]


def patch_text(m: Mutant, data: bytes) -> str:
    """M as a unified diff (-p1) of its file, whose text is DATA; M located (tree_line)."""
    old = data.decode("utf-8", "surrogateescape").splitlines(keepends=True)
    new = list(old)
    i = m.tree_line - 1
    if m.replace == "":
        del new[i]
    else:
        new[i] = m.replace + old[i][len(old[i].rstrip("\r\n")):]
    diff = "".join(difflib.unified_diff(old, new, f"a/{m.file}", f"b/{m.file}", n=3))
    return f"wqh mutant {m.id} ({m.kind}): {m.where}: {m.edit}\n\n{diff}"


def write_patch(m: Mutant, data: bytes, d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    p = d / f"{m.id}.patch"
    p.write_text(patch_text(m, data), errors="surrogateescape")
    return p


# --- selection and the validation phase ----------------------------------------------------


def select(mutants: list[Mutant], only: list[str], kind: str | None, index: Path) -> list[Mutant]:
    probs = Problems()
    unknown = sorted(set(only) - {m.id for m in mutants})
    if unknown:
        probs.add(InputError(f"--only {', '.join(unknown)}: no such mutant in {index}", key="--only",
                             hint="use the ids of the index (wqh mutate --list)"))
    if kind is not None and kind not in KINDS:
        probs.add(InputError(f"--kind {kind}: no such kind", key="--kind",
                             hint="one of: " + ", ".join(KINDS)))
    probs.raise_if_any()
    chosen = [m for m in mutants if (not only or m.id in only) and (kind is None or m.kind == kind)]
    if not chosen:
        raise InputError(f"no mutant of {index} is both --only {', '.join(only)} and --kind {kind}",
                         key="--kind", hint="drop one of the two (wqh mutate --list)")
    return chosen


@dataclass
class Plan:
    index: Path
    mutants: list[Mutant]  # the whole index
    selected: list[Mutant]
    read: object | None  # rel -> bytes of the tree, None when no tree is at hand
    what: str
    scenarios: dict[str, scenario.Scenario]  # of the selected, by name
    previous: dict[str, dict] = field(default_factory=dict)  # --resume: id -> mutate.json entry
    noisy: dict[str, list[str]] = field(default_factory=dict)  # not as expected unmutated too


def check(a, read_tree: bool = True) -> Plan:
    """The validation phase of `wqh mutate`, before any unpack, build or boot: the index (and
    each mutant's line in the tree when the tree is at hand: a file of the Debian tarball is
    read without unpacking it), --only, --kind, the scenarios, --resume."""
    from harness import source

    index = Path(a.index) if a.index else INDEX
    mutants = load_index(index)
    selected = select(mutants, a.only or [], a.kind, index)
    read, what = None, a.kernel or "the default source"
    if read_tree:
        read = source.file_reader(a.kernel)
        if read is not None:
            locate(mutants, read, what, index)
    scs: dict[str, scenario.Scenario] = {}
    probs = Problems()
    if not a.list:
        for name in sorted({m.scenario for m in selected if not m.equivalent}):
            with probs.check():
                scs[name] = scenario.load(_scenario_file(name))
    plan = Plan(index, mutants, selected, read, what, scs)
    if getattr(a, "resume", False) and not a.list:
        with probs.check():
            plan.previous = _previous(a)
    probs.raise_if_any()
    return plan


def _previous(a) -> dict[str, dict]:
    if a.out is None:
        raise InputError("--resume needs the --out of the run to resume", key="--resume",
                         hint="give --out DIR, the directory of an earlier wqh mutate")
    f = Path(a.out) / "mutate.json"
    if not f.exists():
        return {}
    hint = "remove it, or run without --resume"
    try:
        doc = json.loads(f.read_text())
        entries = {d["id"]: d for d in doc["mutants"]}
        kernel = doc.get("kernel")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"not a mutate.json of wqh: {e}", file=str(f), key="--resume",
                         hint=hint) from None
    if kernel != a.kernel:
        raise InputError(f"the earlier run was on --kernel {kernel or '(default)'}, this one on "
                         f"{a.kernel or '(default)'}", file=str(f), key="--resume",
                         hint="resume with the same --kernel, or give another --out")
    return entries


# --- verdicts ----------------------------------------------------------------------------


def _kills(r: results.TestResult) -> bool:
    if r.outcome == results.INFRA:
        return bool(r.reports)  # the kernel reported something before the test could run
    return not r.as_expected or (bool(r.reports) and r.outcome != results.Outcome.XFAIL)


def killer(r: results.TestResult) -> str:
    titles = "; ".join(dict.fromkeys(rep.title for rep in r.reports))
    return f"{r.test.split('/')[-1]} {r.outcome}" + (f" ({titles})" if titles else "")


def classify(rs: list[results.TestResult], noisy: frozenset[str] = frozenset()) -> tuple[str, list[str], str]:
    """(verdict, killing tests, note) of a mutant from its scenario's results. NOISY: tests not
    as expected on the unmutated tree, which prove nothing here."""
    if not rs:
        return UNKNOWN, [], "no results"
    kills = [r for r in rs if _kills(r) and r.test not in noisy]
    if kills:
        return KILLED, [killer(r) for r in kills], ""
    infra = [r for r in rs if r.outcome == results.INFRA]
    if infra:
        first = (infra[0].message or "").strip().splitlines() or [""]
        if BUILD_FAILED in first[0]:
            errors = [ln.strip() for ln in first[1:] if ln.strip() and not ln.strip().startswith("fix:")]
            return BUILD, [], "; ".join([first[0]] + errors[:2])
        return UNKNOWN, [], f"{len(infra)} of {len(rs)} results infra-error: {first[0]}"
    ignored = [r for r in rs if _kills(r)]
    return SURVIVED, [], f"{len(rs)} results as on the tree" + (
        f" ({len(ignored)} not as expected on the unmutated tree too)" if ignored else "")


def variant_name(m: Mutant) -> str:
    return f"{m.scenario}~{m.id}"


def noisy_tests(rs: list[results.TestResult]) -> dict[str, frozenset[str]]:
    """Scenario -> its tests that are not as expected (or report) on the unmutated tree."""
    out: dict[str, set[str]] = {}
    for r in rs:
        if r.scenario.endswith("~" + BASE) and _kills(r):
            out.setdefault(r.scenario[:-len(BASE) - 1], set()).add(r.test)
    return {k: frozenset(v) for k, v in out.items()}


def judge(mutants: list[Mutant], rs: list[results.TestResult], kernels: dict, run_dir: str,
          noisy: dict[str, frozenset[str]]) -> None:
    """Verdicts of MUTANTS from their variants' results RS; NOISY: noisy_tests() of the
    unmutated tree's run."""
    by: dict[str, list[results.TestResult]] = {}
    for r in rs:
        by.setdefault(r.scenario, []).append(r)
    build_s = {k.get("identity"): k.get("build_wall_s") for k in kernels.values()}
    for m in mutants:
        mine = by.get(variant_name(m), [])
        m.verdict, m.killers, m.note = classify(mine, noisy.get(m.scenario, frozenset()))
        ident = next((r.kernel for r in mine if r.kernel), "")
        b = build_s.get(ident)
        m.build_s = round(b, 1) if isinstance(b, (int, float)) else None
        durs = [r.duration_s for r in mine if r.duration_s is not None]
        m.run_s = round(sum(durs), 1) if durs else None
        m.artifacts = run_dir


# --- build directories --------------------------------------------------------------------

MARK = ".wqh-mutant"  # in a mutant's build directory, once its verdict is in: the mutant's id


def mutant_builds(patch: Path) -> list[Path]:
    """The build directories of the variant made of PATCH alone, on any tree and config."""
    from harness import build, patches

    suffix = "+patches:" + patches.patch_hashes((patch,))[0]
    found = []
    for meta in sorted((cache_dir() / "variants").glob(f"*/builds/*/{build.SOURCE_META}")):
        try:
            identity = json.loads(meta.read_text()).get("identity", "")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(identity, str) and identity.endswith(suffix):
            found.append(meta.parent)
    return found


def _config(d: Path) -> str:
    from harness import build

    try:
        return str(json.loads((d / build.SOURCE_META).read_text()).get("config", ""))
    except (OSError, ValueError, AttributeError):
        return ""


def prune(patch: Path, mid: str) -> list[Path]:
    """Once a mutant's verdict is in: mark its build directories (MARK), then remove every
    marked one but the newest finished build of each config, the seed of the next mutant's
    incremental build (a failed build is no seed). Returns what was removed."""
    from harness import build

    removed = []
    for d in mutant_builds(patch):
        (d / MARK).write_text(mid + "\n")
        config = _config(d)
        same = [x for x in d.parent.iterdir() if (x / MARK).is_file() and _config(x) == config]
        finished = [x for x in same if (x / build.STAMP).is_file()]
        seed = max(finished, key=lambda x: (x / MARK).stat().st_mtime_ns, default=None)
        for x in same:
            if x != seed:
                shutil.rmtree(x, ignore_errors=True)
                removed.append(x)
    return removed


# --- the report --------------------------------------------------------------------------


@dataclass
class Score:
    killed: int
    build: int
    survived: int
    unknown: int
    equivalent: int
    not_run: int

    @property
    def value(self) -> float | None:
        n = self.killed + self.survived
        return self.killed / n if n else None

    def text(self) -> str:
        v = self.value
        head = (f"mutation score: {self.killed}/{self.killed + self.survived} killed ({v:.0%})"
                if v is not None else "mutation score: n/a (no mutant killed or survived)")
        extra = [f"{self.build} killed by the build (not counted)" if self.build else "",
                 f"{self.unknown} unknown (infra error, not counted)" if self.unknown else "",
                 f"{self.equivalent} equivalent (not run)" if self.equivalent else "",
                 f"{self.not_run} not run" if self.not_run else ""]
        extra = [e for e in extra if e]
        return head + " = killed / (killed + survived)" + (f"; {', '.join(extra)}" if extra else "")


def score(mutants: list[Mutant]) -> Score:
    c = Counter(m.verdict for m in mutants)
    return Score(c[KILLED], c[BUILD], c[SURVIVED], c[UNKNOWN], c[EQUIVALENT], c[NOT_RUN])


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _short(text: str, width: int = 100) -> str:
    """A note as a table cell: the reasons in full are in mutate.json and `--list`."""
    return text if len(text) <= width else text[:width - 3].rstrip() + "..."


def _secs(v: float | None) -> str:
    return f"{v:.0f}" if v is not None else "-"


def table(mutants: list[Mutant]) -> str:
    head = ("mutant", "kind", "file:line", "edit", "verdict", "killing tests", "build s", "run s")
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * 6 + "---:|" * 2]
    for m in mutants:
        kill = "; ".join(m.killers[:3]) + (f"; +{len(m.killers) - 3} more" if len(m.killers) > 3 else "")
        if not kill and m.verdict != KILLED:
            kill = _short(m.note) if m.verdict in (BUILD, UNKNOWN, EQUIVALENT) else "-"
        cells = (m.id, m.kind, m.where, f"`{m.edit}`", m.verdict, kill or "-", _secs(m.build_s),
                 _secs(m.run_s))
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(rows)


def survivors(mutants: list[Mutant]) -> str:
    left = [m for m in mutants if m.verdict == SURVIVED]
    if not left:
        return ""
    lines = ["survived (each needs a test that kills it, or an 'equivalent:' reason in the index):"]
    lines += [f"  {m.id}  {m.where}  {m.edit}" for m in left]
    return "\n".join(lines)


def report(mutants: list[Mutant], seconds: float) -> str:
    ran = [m for m in mutants if m.verdict not in (EQUIVALENT, NOT_RUN)]
    build = sum(m.build_s or 0 for m in ran)
    run = sum(m.run_s or 0 for m in ran)
    parts = [table(mutants), "", score(mutants).text()]
    s = survivors(mutants)
    if s:
        parts.append(s)
    parts.append(f"time: {seconds:.0f} s (mutant builds {build:.0f} s, mutant tests {run:.0f} s)")
    return "\n".join(parts)


def listing(mutants: list[Mutant]) -> str:
    w = [max(len(getattr(m, k)) for m in mutants) for k in ("id", "kind", "where", "scenario")]
    out = []
    for m in mutants:
        out.append(f"{m.id:<{w[0]}}  {m.kind:<{w[1]}}  {m.where:<{w[2]}}  {m.scenario:<{w[3]}}  {m.edit}")
        if m.equivalent:
            out.append(f"{'':<{w[0]}}  equivalent: {m.equivalent}")
    kinds = Counter(m.kind for m in mutants)
    eq = sum(1 for m in mutants if m.equivalent)
    out.append(f"{len(mutants)} mutants ({', '.join(f'{k} {kinds[k]}' for k in KINDS if kinds[k])})"
               f", {eq} marked equivalent (not run)")
    return "\n".join(out)


def exit_code(mutants: list[Mutant]) -> int:
    judged = [m for m in mutants if m.verdict != EQUIVALENT]
    if any(m.verdict in (UNKNOWN, NOT_RUN) for m in judged):
        return EXIT_INFRA
    return EXIT_FAIL if any(m.verdict == SURVIVED for m in judged) else EXIT_OK


def write(plan: Plan, a, out: Path, started: float) -> str:
    seconds = time.time() - started
    text = report(plan.selected, seconds)
    s = score(plan.selected)
    (out / "mutate.md").write_text("# Mutation testing\n\n" + text + "\n")
    doc = {"version": 1, "index": str(plan.index), "kernel": a.kernel,
           "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
           "duration_s": round(seconds, 1),
           "score": {**dataclasses.asdict(s), "score": s.value},
           "exit_code": exit_code(plan.selected),
           "unmutated_not_as_expected": plan.noisy,
           "mutants": [m.to_json() for m in plan.selected]}
    tmp = out / "mutate.json.tmp"
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(out / "mutate.json")
    return text


# --- the run -----------------------------------------------------------------------------


def main(a, plan: Plan) -> int:
    from harness import outdir

    if a.list:
        print(listing(plan.selected))
        return EXIT_OK
    if plan.read is None:
        raise InfraError(f"no kernel source to make the mutants' patches from ({plan.what})",
                         hint="apt-get install linux-source-6.1, or pass --kernel PATH")
    started = time.time()
    final = Path(os.path.abspath(a.out or runner.default_out_dir()))
    with outdir.staged(final) as stage:
        text = _mutate(plan, a, stage, started)
    print(text)
    print(f"artifacts: {final}")
    return exit_code(plan.selected)


def _mutate(plan: Plan, a, stage: Path, started: float) -> str:
    todo = []
    for m in plan.selected:
        prev = plan.previous.get(m.id)
        if m.equivalent:
            m.verdict, m.note = EQUIVALENT, m.equivalent
        elif prev and m.same_edit(prev) and prev.get("verdict") in JUDGED:
            for k in ("verdict", "killers", "note", "build_s", "run_s", "artifacts"):
                setattr(m, k, prev.get(k, getattr(m, k)))
        else:
            todo.append(m)
    if plan.previous:
        print(f"wqh: --resume: {len(plan.selected) - len(todo)} mutants judged before, "
              f"{len(todo)} to run", flush=True)
    patches = {}
    for m in plan.selected:
        if not m.equivalent:
            patches[m.id] = write_patch(m, plan.read(m.file), stage / "patches")
    if todo:
        run_dir = time.strftime("run-%Y%m%d-%H%M%S")

        def opts(part: str) -> runner.RunOptions:
            # A mutant's first unexpected result kills it: its guest stops at the first failure
            # (pytest -x) and a VM that dies (a hang, a panic) gets no fresh VM for the rest,
            # which could cost one boot and one timeout per test. The unmutated tree runs whole;
            # with a test not as expected there, its mutants run whole too (that test proves
            # nothing, and stopping at it would hide the others).
            mutant = part != BASE
            fast = mutant and not plan.noisy
            return runner.RunOptions(kernel=a.kernel, out=stage / run_dir / part, accel=a.accel,
                                     jobs=a.jobs, reboot=not mutant, fail_fast=fast)

        # The unmutated tree first (its kernel is usually built already): a test not as
        # expected there proves nothing on a mutant.
        base = [dataclasses.replace(s, name=f"{name}~{BASE}") for name, s in plan.scenarios.items()
                if any(m.scenario == name for m in todo)]
        try:
            summary = runner.run(base, opts(BASE))
        except BaseException:
            write(plan, a, stage, started)
            raise
        noisy = noisy_tests(summary.results)
        plan.noisy = {k: sorted(v) for k, v in sorted(noisy.items())}
        for name, tests in plan.noisy.items():
            print(f"wqh: not as expected on the unmutated tree too, not counted against mutants: "
                  f"{name}: {', '.join(t.split('/')[-1] for t in tests)}", flush=True)
        # Then one mutant at a time, grouped by scenario (each build is seeded from the one
        # before, of the same config): its verdict is written as soon as it is in, and its
        # build directory goes once the next one of its config no longer needs it as a seed.
        for n, m in enumerate(sorted(todo, key=lambda m: m.scenario), 1):
            s = plan.scenarios[m.scenario]
            variant = dataclasses.replace(s, name=variant_name(m), kernel=scenario.KernelSpec(
                s.kernel.fragments, (patches[m.id],), s.kernel.config))
            try:
                summary = runner.run([variant], opts(m.id))
            except BaseException:
                write(plan, a, stage, started)  # the verdicts so far stand (--resume keeps them)
                raise
            judge([m], summary.results, summary.kernels, f"{run_dir}/{m.id}", noisy)
            write(plan, a, stage, started)
            print(f"wqh: mutant {n}/{len(todo)} {m.id}: {m.verdict}", flush=True)
            if not a.keep_builds:
                for d in prune(patches[m.id], m.id):
                    print(f"wqh: removed the build directory {d}", flush=True)
    return write(plan, a, stage, started)
