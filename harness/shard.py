"""Shards: scenario groups assigned to N CI jobs, stably and balanced; merging their results.

wqh does not schedule machines: the CI system's own matrix runs `wqh run --shard K/N` on N
jobs, and `wqh merge` makes one results directory of theirs. A group is every scenario of one
kernel (fragments + patches), so a kernel is built by one shard only. Every shard computes
the same plan from the same inputs (scenarios, N, durations file) without talking to the others.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import config, results
from harness.errors import InputError, Problems
from harness.paths import REPO
from harness.scenario import Scenario

_SPEC = re.compile(r"^(\d+)/(\d+)$")
VM_WEIGHT_S = 30.0  # one boot, counted with the recorded durations (a group boots at least once)


def parse_spec(text: str) -> tuple[int, int]:
    m = _SPEC.match(text.strip())
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise InputError(f"--shard {text!r} is not K/N with 1 <= K <= N", key="--shard",
                         hint="e.g. --shard 1/4 on the first of four CI jobs "
                              "(GitLab: $CI_NODE_INDEX/$CI_NODE_TOTAL)")
    return int(m.group(1)), int(m.group(2))


def _stable_name(p: Path) -> str:
    """A fragment or patch as every machine names it: repo-relative, else name + content hash."""
    try:
        return str(p.resolve().relative_to(REPO))
    except ValueError:
        h = hashlib.sha256(p.read_bytes()).hexdigest()[:12] if p.is_file() else "missing"
        return f"{p.name}@{h}"


@dataclass
class Group:
    id: str  # stable: the same on every machine for the same kernel spec
    scenarios: list[Scenario] = field(default_factory=list)
    weight: float = 0.0

    @property
    def tests(self) -> int:
        return sum(len(s.tests) for s in self.scenarios)


@dataclass
class Plan:
    total: int
    groups: list[Group]
    assignment: dict[str, int]  # group id -> shard index (1-based)
    by: str  # "durations" or "test counts"

    @property
    def hash(self) -> str:
        doc = json.dumps({"n": self.total, "a": sorted(self.assignment.items()),
                          "s": {g.id: sorted(s.name for s in g.scenarios) for g in self.groups}},
                         sort_keys=True)
        return hashlib.sha256(doc.encode()).hexdigest()[:16]

    def scenarios(self, k: int) -> list[Scenario]:
        return [s for g in self.groups if self.assignment[g.id] == k for s in g.scenarios]

    def load(self, k: int) -> float:
        return sum(g.weight for g in self.groups if self.assignment[g.id] == k)

    def describe(self, k: int) -> dict:
        """What results.json records of the plan (merge checks it)."""
        return {"index": k, "total": self.total, "plan": self.hash, "by": self.by,
                "groups": {g.id: {"shard": self.assignment[g.id],
                                  "scenarios": [s.name for s in g.scenarios],
                                  "tests": g.tests, "weight": round(g.weight, 1)}
                           for g in self.groups}}


def group_of(s: Scenario) -> str:
    if s.kernel.config is not None:
        parts = ["config:" + _stable_name(s.kernel.config)]
    else:
        parts = [_stable_name(f) for f in config.fragment_list(list(s.kernel.fragments), s.file.parent)]
    parts += ["patch:" + _stable_name(p) for p in s.kernel.patches]
    parts += ["on:" + spec for spec in s.kernel.sources]  # its own kernels: another group
    return "+".join(parts)


def durations_from(path: Path) -> dict[tuple[str, str], float]:
    """(scenario, requested test id) -> seconds, from an earlier results.json (or its directory)."""
    f = path / "results.json" if path.is_dir() else path
    try:
        doc = json.loads(f.read_text())
        tests = doc["tests"]
        out: dict[tuple[str, str], float] = {}
        for t in tests:
            if t.get("duration_s") is not None:
                key = (t["scenario"], t["test"].split("[")[0])
                out[key] = out.get(key, 0.0) + float(t["duration_s"])
        return out
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{f}: not a wqh results.json with test durations ({e})", key="--durations",
                         hint="pass results.json (or the results directory) of an earlier wqh run")


def weight(scenarios: list[Scenario], durations: dict[tuple[str, str], float] | None) -> float:
    """Seconds the scenarios' tests took in the recorded run, plus a boot (a requested id
    counts every test it expanded to; one not recorded counts as the median), or, with no
    record, the number of requested tests."""
    if not durations:
        return float(sum(len(s.tests) for s in scenarios))
    median = statistics.median(durations.values())
    total = VM_WEIGHT_S
    for s in scenarios:
        for t in s.tests:
            got = [v for (sc, tid), v in durations.items()
                   if sc == s.name and (tid == t.id or tid.startswith((t.id + "::", t.id + "[")))]
            total += sum(got) if got else median
    return total


def plan(scenarios: list[Scenario], total: int,
         durations: dict[tuple[str, str], float] | None = None) -> Plan:
    """Longest processing time first: the heaviest group to the least loaded shard.

    Weights are the recorded durations (a test not in the file counts as the median of those
    that are) plus one boot per group, else the number of tests. Ties break on the group id,
    so the plan depends only on its inputs."""
    groups: dict[str, Group] = {}
    for s in scenarios:
        gid = group_of(s)
        groups.setdefault(gid, Group(gid)).scenarios.append(s)
    by = "durations" if durations else "test counts"
    for g in groups.values():
        g.weight = weight(g.scenarios, durations)
    order = sorted(groups.values(), key=lambda g: (-g.weight, g.id))
    loads = [0.0] * total
    assignment: dict[str, int] = {}
    for g in order:
        k = min(range(total), key=lambda i: (loads[i], i))
        loads[k] += g.weight
        assignment[g.id] = k + 1
    return Plan(total, order, assignment, by)


# --- merge ---------------------------------------------------------------------------------


@dataclass
class Part:
    dir: Path
    doc: dict

    @property
    def shard(self) -> dict | None:
        return self.doc.get("shard")


def _read_part(d: Path) -> Part:
    f = d / "results.json"
    try:
        doc = json.loads(f.read_text())
        if not isinstance(doc, dict) or not isinstance(doc.get("tests"), list):
            raise ValueError("no 'tests' list")
    except (OSError, ValueError) as e:
        raise InputError(f"{f}: not a wqh results file ({e})", key="DIR",
                         hint="pass the --out directories of `wqh run --shard K/N`") from None
    return Part(d, doc)


def check_parts(dirs: list[Path]) -> list[Part]:
    """Every shard of one plan exactly once, or every part unsharded: else exit 3, all said."""
    probs = Problems()
    parts: list[Part] = []
    for d in dirs:
        with probs.check():
            parts.append(_read_part(d))
    probs.raise_if_any()
    sharded = [p for p in parts if p.shard]
    if sharded and len(sharded) != len(parts):
        plain = ", ".join(str(p.dir) for p in parts if not p.shard)
        probs.add(InputError(f"{plain}: not a shard, merged with shards", key="DIR",
                             hint="merge the shards of one run, or only unsharded results"))
    plans = {p.shard["plan"] for p in sharded}
    if len(plans) > 1:
        probs.add(InputError("the shards come from different plans: "
                             + "; ".join(f"{p.dir}: shard {p.shard['index']}/{p.shard['total']} "
                                         f"of plan {p.shard['plan']}" for p in sharded),
                             key="DIR", hint="every shard needs the same scenarios, N and "
                                             "--durations file"))
    elif sharded:
        seen: dict[int, Path] = {}
        for p in sharded:
            k = p.shard["index"]
            if k in seen:
                probs.add(InputError(f"shard {k}/{p.shard['total']} given twice: {seen[k]} and {p.dir}",
                                     key="DIR", hint="pass each shard's directory once"))
            seen[k] = p.dir
        total = sharded[0].shard["total"]
        for k in range(1, total + 1):
            if k not in seen:
                groups = sharded[0].shard["groups"]
                names = sorted(n for g in groups.values() if g["shard"] == k for n in g["scenarios"])
                probs.add(InputError(f"shard {k}/{total} is missing (its scenarios: "
                                     f"{', '.join(names) or 'none'})", key="DIR",
                                     hint="pass every shard's results directory; a shard that "
                                          "failed to run still writes one"))
    if not sharded:
        seen_tests: dict[tuple, Path] = {}
        for p in parts:
            for t in p.doc["tests"]:
                key = (t["scenario"], t["test"], t.get("kernel", ""))
                if key in seen_tests and seen_tests[key] != p.dir:
                    probs.add(InputError(f"{t['scenario']}: {t['test']} is in both {seen_tests[key]} "
                                         f"and {p.dir}", key="DIR",
                                         hint="merge results of different tests or kernels"))
                seen_tests[key] = p.dir
    probs.raise_if_any()
    return sorted(parts, key=lambda p: p.shard["index"] if p.shard else 0)


ADDITIVE = ("config_s", "build_s", "vm_s")  # timings that add up over shards


def _link_tree(src: Path, dst: Path) -> None:
    """Hard links where the file system allows (a merge costs no space), else copies."""
    def link(s, d):
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)
    shutil.copytree(src, dst, symlinks=True, copy_function=link, dirs_exist_ok=True)


def merge(parts: list[Part], out: Path) -> results.RunSummary:
    """One results directory from the parts: results, kernels, timings, artifacts."""
    first = min(_epoch(p.doc.get("started")) for p in parts)
    summary = results.RunSummary([], first, first, out)
    span = 0.0
    for p in parts:
        summary.results += [results.TestResult.from_json(t) for t in p.doc["tests"]]
        summary.kernels.update(p.doc.get("kernels", {}))
        for k, v in (p.doc.get("timings") or {}).items():
            if not isinstance(v, (int, float)) or not k.endswith("_s"):
                continue
            if k in ADDITIVE:
                summary.timings[k] = round(summary.timings.get(k, 0) + v, 2)
            else:  # the first verdict, the first test: the earliest shard's
                summary.timings[k] = min(v, summary.timings.get(k, v))
        span = max(span, float(p.doc.get("duration_s") or 0))
        summary.strict = summary.strict or bool(p.doc.get("strict"))
        if p.doc.get("interrupted"):
            summary.interrupted = (summary.interrupted or "") + f"{p.dir}: {p.doc['interrupted']} "
        for child in sorted(p.dir.iterdir()):
            if child.is_dir() and (child.name == "kernels" or (child / "console.log").exists()):
                _link_tree(child, out / child.name)
    summary.finished = summary.started + span  # the shards ran side by side: the longest one
    summary.timings["shards"] = len(parts)  # type: ignore[assignment]
    return summary


def _epoch(started) -> float:
    try:
        return time.mktime(time.strptime(started, "%Y-%m-%dT%H:%M:%S"))
    except (TypeError, ValueError):
        return time.time()
