"""`wqh wall`: the regression wall. Every known bug of scenarios/regressions/wall/bugs.yaml,
proven both ways in one run: the re-introduced tree shows the named symptom, and the same
reproducer on the fixed tree (same tests, same config, no patch) passes with no report or leak.

Deterministic bugs run as scenarios (one boot per kernel for all of them); racy bugs, with
--racy, as C reproducers N times on each tree, giving rates and the confidence they carry.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from harness import patches as patches_mod
from harness import repro, results, runner, scenario
from harness.errors import EXIT_FAIL, EXIT_INFRA, EXIT_OK, InputError
from harness.paths import SCENARIOS

INDEX = SCENARIOS / "regressions" / "wall" / "bugs.yaml"
KINDS = ("deterministic", "racy", "not reproduced")
_KEYS = {k: "" for k in ("fix", "bug", "ids", "kind", "reproducer", "expected", "also", "signature",
                         "scenarios", "patch", "config", "why")}
FIXED = "@fixed"


@dataclass
class Bug:
    fix: str
    bug: str
    ids: str
    kind: str = "deterministic"
    reproducer: str = ""
    expected: str = ""
    also: list[str] = field(default_factory=list)  # racy: other titles the same race gives
    # racy: a regex the report's text must match too, where the title alone also fires on the
    # fixed tree (KCSAN names functions, not the access the fix changed)
    signature: str = ""
    scenarios: list[str] = field(default_factory=list)
    patch: Path | None = None
    config: tuple[str, ...] = repro.DEFAULT_FRAGMENTS
    why: str = ""
    line: int = 0
    scenario_lines: list[int] = field(default_factory=list)
    # filled in by a run
    fixed_result: str = "not run"
    reintroduced_result: str = "not run"
    proven: bool | None = None


def load_index(file: Path = INDEX) -> list[Bug]:
    """The index, validated: each error names file:line and the key."""
    from harness import validate

    hint = "give --index a bugs.yaml like scenarios/regressions/wall/bugs.yaml"
    root = scenario.compose_index(file, "wall index", "bugs", hint)
    ctx = scenario._Ctx(file)
    top = ctx.mapping(root, "", {"bugs": ""})
    if "bugs" not in top:
        raise ctx.fail(root, "bugs", "missing key 'bugs'")
    out = []
    for i, node in enumerate(ctx.seq(top["bugs"][1], "bugs")):
        key = f"bugs[{i}]"
        m = ctx.mapping(node, key, _KEYS)
        for need in ("fix", "bug", "ids"):
            if need not in m:
                raise ctx.fail(node, f"{key}.{need}", f"missing key '{need}'")
        b = Bug(fix=str(ctx.scalar(m["fix"][1], f"{key}.fix", str)),
                bug=ctx.scalar(m["bug"][1], f"{key}.bug", str),
                ids=ctx.scalar(m["ids"][1], f"{key}.ids", str), line=node.start_mark.line + 1)
        for name in ("kind", "reproducer", "expected", "why", "signature"):
            if name in m:
                setattr(b, name, ctx.scalar(m[name][1], f"{key}.{name}", str))
        if b.signature:
            try:
                re.compile(b.signature, re.M)
            except re.error as e:
                raise ctx.fail(m["signature"][1], f"{key}.signature", f"bad regex: {e}",
                               hint="a Python regex matched against the report without timestamps")
        if b.kind not in KINDS:
            raise ctx.fail(m["kind"][1], f"{key}.kind", f"unknown kind {b.kind!r}",
                           hint=f"one of: {', '.join(KINDS)}")
        if "scenarios" in m:
            b.scenarios = [ctx.scalar(n, f"{key}.scenarios", str)
                           for n in ctx.seq(m["scenarios"][1], f"{key}.scenarios")]
        if "also" in m:
            b.also = [ctx.scalar(n, f"{key}.also", str) for n in ctx.seq(m["also"][1], f"{key}.also")]
        if "config" in m:
            b.config = tuple(ctx.scalar(n, f"{key}.config", str)
                             for n in ctx.seq(m["config"][1], f"{key}.config"))
        if "config" in m:
            for n, name in zip(m["config"][1].value, b.config):
                try:
                    validate.fragment(name, file.parent, f"{key}.config")
                except InputError as e:
                    raise ctx.fail(n, f"{key}.config", str(e).split("\n  fix: ")[0] if e.line else e.detail,
                                   e.hint) from None
        if "patch" in m:
            b.patch = (file.parent / ctx.scalar(m["patch"][1], f"{key}.patch", str)).resolve()
            if not b.patch.is_file():
                raise ctx.fail(m["patch"][1], f"{key}.patch", f"patch {b.patch} does not exist")
            try:
                patches_mod.check_form(b.patch, f"{key}.patch")
            except InputError as e:
                raise ctx.fail(m["patch"][1], f"{key}.patch", e.detail, e.hint) from None
        need = {"deterministic": ("scenarios", "expected", "reproducer"),
                "racy": ("reproducer", "patch", "expected"), "not reproduced": ("why",)}[b.kind]
        for name in need:
            if name not in m:
                raise ctx.fail(node, f"{key}.{name}", f"a {b.kind} bug needs '{name}'")
        if b.kind == "racy":
            rp = (file.parent / b.reproducer).resolve()
            if not rp.is_file():
                raise ctx.fail(m["reproducer"][1], f"{key}.reproducer", f"{rp} does not exist")
            try:
                validate.reproducer(rp, f"{key}.reproducer")
            except InputError as e:
                raise ctx.fail(m["reproducer"][1], f"{key}.reproducer", e.detail, e.hint) from None
            b.reproducer = str(rp)
        if b.kind == "deterministic":
            b.scenario_lines = [n.start_mark.line + 1 for n in m["scenarios"][1].value] \
                if isinstance(m["scenarios"][1], yaml.SequenceNode) else []
        if b.fix in {x.fix for x in out}:
            raise ctx.fail(m["fix"][1], f"{key}.fix", f"fix {b.fix!r} is listed twice",
                           hint="one entry per fix")
        out.append(b)
    return out


def fixed_twin(s: scenario.Scenario) -> scenario.Scenario:
    """The same tests on the same config without the patches: everything must pass cleanly."""
    return dataclasses.replace(
        s, name=s.name + FIXED, kernel=scenario.KernelSpec(s.kernel.fragments, ()), leak=None,
        tests=[dataclasses.replace(t, expect="pass", title=None) for t in s.tests])


def _titles(rs: list[results.TestResult]) -> str:
    seen: dict[str, int] = {}
    for r in rs:
        for rep in r.reports:
            seen[rep.title] = seen.get(rep.title, 0) + rep.count
    return "; ".join(f"{t} (x{n})" if n > 1 else t for t, n in seen.items())


def describe_reintroduced(rs: list[results.TestResult]) -> tuple[str, bool]:
    if not rs:
        return "not run", False
    bad = [r for r in rs if not r.as_expected]
    if bad:
        return "MISSED: " + "; ".join(f"{r.test.rsplit('::', 1)[-1]} {r.outcome}"
                                      f"{' (' + _titles([r]) + ')' if r.reports else ''}"
                                      for r in bad), False
    tests = [r for r in rs if r.test != "wqh:kmemleak"]
    fails = [r for r in tests if r.outcome == "fail"]
    parts = []
    if fails:
        parts.append(f"{len(fails)}/{len(tests)} tests fail")
    titled = [r for r in rs if r.outcome == "xfail"]
    if titled:
        parts.append(_titles(titled))
    return "caught: " + ", ".join(parts or ["as expected"]), True


def describe_fixed(rs: list[results.TestResult]) -> tuple[str, bool]:
    if not rs:
        return "not run", False
    bad = [r for r in rs if r.outcome != "pass" or r.reports]
    if bad:
        return "FAIL: " + "; ".join(f"{r.test.rsplit('::', 1)[-1]} {r.outcome}"
                                    f"{' (' + _titles([r]) + ')' if r.reports else ''}"
                                    for r in bad), False
    leak = any(r.test == "wqh:kmemleak" for r in rs)
    n = len([r for r in rs if r.test != "wqh:kmemleak"])
    return f"pass ({n} tests), no report" + (", no leak" if leak else ""), True


def chosen_scenarios(bugs: list[Bug], index: Path) -> list[scenario.Scenario]:
    """The scenarios the deterministic bugs name, loaded and validated; each unknown name an
    error at its line of INDEX."""
    from harness.errors import Problems

    if not any(b.kind == "deterministic" for b in bugs):
        return []
    by_name = {s.name: s for s in scenario.load_all([str(SCENARIOS / "regressions")])}
    chosen: list[scenario.Scenario] = []
    probs = Problems()
    for i, b in enumerate(bugs):
        if b.kind != "deterministic":
            continue
        for j, name in enumerate(b.scenarios):
            if name not in by_name:
                line = b.scenario_lines[j] if j < len(b.scenario_lines) else b.line
                probs.add(InputError(f"bug {b.fix}: no scenario named {name!r} in "
                                     f"{SCENARIOS / 'regressions'}", file=str(index), line=line,
                                     key="scenarios",
                                     hint="use the 'name' of a scenario there (wqh list "
                                          "scenarios/regressions)"))
                continue
            chosen.append(by_name[name])
    probs.raise_if_any()
    return chosen


def check(a) -> list[Bug]:
    """The validation phase of `wqh wall`: the index, --only, the scenarios it names."""
    index = a.index or INDEX
    bugs = load_index(index)
    if a.only:
        unknown = sorted(set(a.only) - {b.fix for b in bugs})
        if unknown:
            raise InputError(f"--only {', '.join(unknown)}: no such fix in {index}",
                             key="--only", hint="use the 'fix' ids of the index (wqh wall --help)")
        bugs = [b for b in bugs if b.fix in a.only]
    chosen_scenarios(bugs, index)
    return bugs


def run_deterministic(bugs: list[Bug], a) -> results.RunSummary | None:
    chosen = chosen_scenarios(bugs, a.index or INDEX)
    if not chosen:
        return None
    twins = [fixed_twin(s) for s in chosen]
    opts = runner.RunOptions(kernel=a.kernel, out=a.out / "scenarios", accel=a.accel, jobs=a.jobs)
    summary = runner.run(chosen + twins, opts)
    for b in bugs:
        if b.kind != "deterministic":
            continue
        re_cells, fx_cells, ok = [], [], True
        for name in b.scenarios:
            cell, good = describe_reintroduced([r for r in summary.results if r.scenario == name])
            re_cells.append(cell)
            fcell, fgood = describe_fixed([r for r in summary.results if r.scenario == name + FIXED])
            fx_cells.append(fcell)
            ok = ok and good and fgood
        b.reintroduced_result, b.fixed_result, b.proven = " | ".join(re_cells), " | ".join(fx_cells), ok
    return summary


def run_racy(bugs: list[Bug], a) -> None:
    for b in bugs:
        if b.kind != "racy":
            continue
        args = argparse.Namespace(file=Path(b.reproducer), repeat=a.repeat, timeout=a.timeout,
                                  config=list(b.config), kernel=a.kernel, accel=a.accel, jobs=a.jobs)
        with tempfile.TemporaryDirectory() as d:
            binary = repro.compile_c(Path(b.reproducer), Path(d) / "repro")
            out = a.out / "racy" / b.fix
            out.mkdir(parents=True, exist_ok=True)
            binary = Path(binary.replace(out / "repro"))
        base = repro.execute(binary, out / "reintroduced", args, (b.patch,), label=f"{b.fix} bug:   ")
        titles = [b.expected, *b.also]
        if not base.rate_of(*titles, signature=b.signature):
            # Nothing to compare against: the fixed tree's runs could prove nothing.
            b.reintroduced_result = _rate_cell(0, base) + (
                f" (not reproduced in {base.repeat} runs of {a.timeout:g} s)")
            b.fixed_result, b.proven = "not run (nothing to verify)", False
            print(f"{b.fix}: not reproduced on the re-introduced tree in {base.repeat} runs")
            continue
        fixed = repro.execute(binary, out / "fixed", args, (), label=f"{b.fix} fixed: ")
        # Only the expected title counts: a sanitizer kernel may report unrelated noise, which
        # is listed but proves nothing either way.
        k, kf = base.rate_of(*titles, signature=b.signature), fixed.rate_of(*titles, signature=b.signature)
        b.reintroduced_result = _rate_cell(k, base)
        b.fixed_result = _rate_cell(kf, fixed)
        counted_base = repro.Outcome(k, base.repeat, [b.expected] if k else [], base.infra)
        counted_fixed = repro.Outcome(kf, fixed.repeat, [b.expected] if kf else [], fixed.infra)
        text, proved = repro.statement(counted_base, counted_fixed)
        b.proven = proved
        print(f"{b.fix}: {text}")


def _rate_cell(k: int, o: repro.Outcome) -> str:
    """'k/N runs', plus every title the runs reported (expected or not)."""
    seen = sorted({t for r in o.runs for t in r.titles})
    return f"{k}/{o.repeat} runs" + (f" (reports: {'; '.join(seen)})" if seen else "")


def table(bugs: list[Bug], version: str = "") -> str:
    """The wall's table; VERSION (the tree's, 6.12.118) heads the fixed tree's column."""
    head = ("bug", "fix", "CVE / syzbot", "reproducer", "expected on the re-introduced tree",
            f"fixed tree ({version})" if version else "fixed tree", "re-introduced tree")
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for b in bugs:
        if b.kind == "not reproduced":
            cells = (b.bug, b.fix, b.ids, "-", "-", "-", "not reproduced: " + b.why)
        else:
            rep = Path(b.reproducer).name if b.kind == "racy" else b.reproducer
            cells = (b.bug, b.fix, b.ids, rep, b.expected, b.fixed_result, b.reintroduced_result)
        rows.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(rows)


def main(a) -> int:
    from harness import outdir

    if a.repeat < 1:
        raise InputError(f"--repeat {a.repeat}: must be at least 1", key="--repeat")
    if a.timeout <= 0:
        raise InputError(f"--timeout {a.timeout}: must be > 0 seconds", key="--timeout")
    bugs = check(a)
    final = Path(os.path.abspath(a.out or runner.default_out_dir()))
    with outdir.staged(final) as stage:
        a.out = stage
        summary, text = _wall(bugs, a)
    print(f"artifacts: {final}")
    if summary is not None and any(r.outcome == results.INFRA for r in summary.results):
        return EXIT_INFRA
    det = [b for b in bugs if b.kind == "deterministic"]
    # Racy bugs are measured, not gated: a race that did not fire is reported, not a failure.
    return EXIT_OK if all(b.proven for b in det) else EXIT_FAIL


def _wall(bugs: list[Bug], a):
    summary = run_deterministic(bugs, a)
    if a.racy:
        run_racy(bugs, a)
    versions = sorted({k.get("version") for k in (summary.kernels if summary else {}).values()} - {None, ""})
    text = table(bugs, ", ".join(versions))
    print(text)
    det = [b for b in bugs if b.kind == "deterministic"]
    proven = [b for b in bugs if b.proven]
    print(f"\nproven (caught re-introduced, clean fixed): {len(proven)} of {len(bugs)} bugs "
          f"({len([b for b in det if b.proven])}/{len(det)} deterministic)")
    (a.out / "wall.md").write_text(text + "\n")
    (a.out / "wall.json").write_text(json.dumps({"bugs": [
        {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(b).items()
         if k != "scenario_lines"} for b in bugs]}, indent=1) + "\n")
    return summary, text
