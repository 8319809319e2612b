"""The CI gate: a run's results against a baseline's, failures sorted into new / persisting / fixed.

`wqh gate --baseline RESULTS NEW_RESULTS` (and `wqh run --baseline RESULTS`) compare two
results.json documents (results.to_json; merged shards are one document like any other).

Matching tests across the two runs. A test is (scenario, test id, variant) on a kernel. The
kernel identity (`debian:...+CONFIGHASH`, `git:SHA+CONFIGHASH`, `path:...+CONFIGHASH`)
changes with every commit and every config change, so it cannot be the key. The config hash
is dropped (a scenario names its fragments, so the scenario already fixes the config); what
is left is the kernel *source*. Each run's sources are listed in the order they first appear
in its tests (the order of `--kernel` options). Sources of the same name in both runs are
paired (a matrix run on debian:6.1 and debian:6.12 against the same matrix); the others are
paired by position among those left (a one-kernel run: baseline commit against new commit).
A source with no partner makes its tests "disappeared" or "appeared". Results with no kernel
(an infra-error before the source was known) go with the run's only source, if it has one.

A failing test is one that is not as expected, counted exactly as results.py counts it: a
waived result is as expected, a flaky one too unless its run was --strict. Each key is:

- new: fails now, and was as expected in the baseline, or absent there, or did not run there
  (infra-error: nothing shows it failed before). A failure that the baseline waived counts as
  new too (its waiver did not reach this run); the note says so.
- persisting: failed in both runs (the notes say when the outcome or the report titles changed).
- fixed: failed in the baseline, as expected now.
- infra: not run now (an infra-error that is not waived): the gate cannot judge it.
- appeared / disappeared: in one run only (a failing appeared test is also new).

Exit code, as results.RunSummary.exit_code decides a run's: 2 (EXIT_INFRA) when the new run
has an infra-error that is not waived, or was interrupted (what it did not run cannot be
judged); otherwise 1 (EXIT_FAIL) when there are new failures; otherwise 0. Persisting
failures and disappeared tests do not fail the gate; the report lists them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import EXIT_FAIL, EXIT_INFRA, EXIT_OK, InputError, Problems
from harness.results import OUTCOMES, Outcome, TestResult

_CONFIG_HASH = re.compile(r"\+[0-9a-f]{16}$")
_HINT = "give {key} a wqh results directory (the --out of `wqh run` or `wqh merge`) or its results.json"
MAX_ERRORS = 10  # of one file: a file of the wrong kind would list every test


def source_of(kernel: str) -> str:
    """The kernel source of a result's kernel identity: the config hash dropped."""
    return _CONFIG_HASH.sub("", kernel or "")


# --- loading -------------------------------------------------------------------------------


def load_results(path, key: str = "RESULTS") -> dict:
    """A results.json document (or the one in a results directory), checked to be one that
    compare() can read; InputError naming the file (and test) otherwise."""
    from harness import validate

    hint = _HINT.format(key=key)
    p = Path(path)
    f = p / "results.json" if p.is_dir() else p
    if p.is_dir() and not f.exists():
        raise InputError(f"{p} is a directory without results.json", key=key, hint=hint)
    text = validate.read_text(f, "results file", key=key, hint=hint)
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise InputError(f"not a wqh results file: invalid JSON: {getattr(e, 'msg', e)}",
                         file=str(f), line=getattr(e, "lineno", 0), key=key, hint=hint) from None
    except RecursionError:
        raise InputError("not a wqh results file: nested too deeply", file=str(f), key=key,
                         hint=hint) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("tests"), list):
        raise InputError("not a wqh results file (no 'tests' list)", file=str(f), key=key,
                         hint=hint)
    if "version" not in doc:
        raise InputError("not a wqh results file (no 'version')", file=str(f), key=key, hint=hint)
    if doc["version"] != 1:
        raise InputError(f"results version {doc['version']!r}: this wqh reads version 1",
                         file=str(f), key=key,
                         hint="compare results written by the same wqh version, or rerun the "
                              "baseline with this one")
    probs = Problems()
    for i, t in enumerate(doc["tests"]):
        if len(probs.errors) >= MAX_ERRORS:
            break
        with probs.check():
            _check_test(t, f"tests[{i}]", str(f), hint)
    probs.raise_if_any()
    doc["_file"] = str(f)
    return doc


def _check_test(t, where: str, file: str, hint: str) -> None:
    def bad(k: str, msg: str):
        return InputError(msg, file=file, key=f"{where}.{k}" if k else where, hint=hint)

    if not isinstance(t, dict):
        raise bad("", f"a test must be an object, got {type(t).__name__}")
    for k in ("scenario", "test", "outcome"):
        if not isinstance(t.get(k), str):
            raise bad(k, f"missing or not a string: {t.get(k)!r}")
    for k in ("kernel", "expected", "waived", "variant"):
        if t.get(k) is not None and not isinstance(t[k], str):
            raise bad(k, f"not a string: {t[k]!r}")
    if t["outcome"] not in OUTCOMES:
        raise bad("outcome", f"unknown outcome {t['outcome']!r}; one of: {', '.join(OUTCOMES)}")
    reps = t.get("reports") or []
    if not isinstance(reps, list) or any(not isinstance(r, dict) or not isinstance(r.get("title"), str)
                                         for r in reps):
        raise bad("reports", "reports must be a list of objects with a 'title'")


# --- comparing -----------------------------------------------------------------------------


@dataclass
class Side:
    """One test in one run, as the gate sees it."""

    outcome: str
    expected: str
    kernel: str
    titles: list[str]
    waived: str
    failing: bool
    message: str = ""

    def to_json(self) -> dict:
        return {"outcome": self.outcome, "expected": self.expected, "kernel": self.kernel,
                "titles": self.titles, "waived": self.waived, "failing": self.failing}

    def describe(self) -> str:
        s = self.outcome if self.outcome == self.expected else f"{self.outcome} (expected {self.expected})"
        if self.waived:
            s += f", waived: {self.waived}"
        return s


@dataclass
class Item:
    scenario: str
    test: str
    variant: str | None
    baseline: Side | None
    new: Side | None
    notes: list[str] = field(default_factory=list)

    @property
    def kernel(self) -> str:
        return (self.new or self.baseline).kernel

    @property
    def name(self) -> str:
        v = f" [{self.variant}]" if self.variant else ""
        return f"{self.scenario}: {self.test}{v}"

    def to_json(self) -> dict:
        return {"scenario": self.scenario, "test": self.test, "variant": self.variant,
                "kernel": self.kernel,
                "baseline": self.baseline.to_json() if self.baseline else None,
                "new": self.new.to_json() if self.new else None, "notes": self.notes}


@dataclass
class GateResult:
    new: list[Item] = field(default_factory=list)
    persisting: list[Item] = field(default_factory=list)
    fixed: list[Item] = field(default_factory=list)
    infra: list[Item] = field(default_factory=list)
    appeared: list[Item] = field(default_factory=list)
    disappeared: list[Item] = field(default_factory=list)
    unchanged: int = 0  # as expected in both
    kernels: list[dict] = field(default_factory=list)  # {"baseline", "new", "by"}
    baseline_info: dict = field(default_factory=dict)
    new_info: dict = field(default_factory=dict)

    def exit_code(self) -> int:
        if self.infra or self.new_info.get("interrupted"):
            return EXIT_INFRA
        if self.new:
            return EXIT_FAIL
        return EXIT_OK

    def verdict(self) -> str:
        code = self.exit_code()
        if code == EXIT_INFRA:
            why = []
            if self.new_info.get("interrupted"):
                why.append(f"the new run was interrupted ({self.new_info['interrupted']})")
            if self.infra:
                why.append(f"{_n(len(self.infra), 'test')} did not run (infra-error)")
            if self.new:
                why.append(_n(len(self.new), "new failure"))
            return f"INFRA (exit 2): {'; '.join(why)}"
        if code == EXIT_FAIL:
            return f"FAIL (exit 1): {_n(len(self.new), 'new failure')}"
        return "PASS (exit 0): no new failures"

    def text(self) -> str:
        b, n = self.baseline_info, self.new_info
        def run(d):
            where = ", ".join(x for x in (d.get("file"), d.get("started")) if x)
            return _n(d.get("tests", 0), "test") + (f" ({where})" if where else "")
        out = [f"wqh gate: {self.verdict()}", f"baseline: {run(b)}", f"new:      {run(n)}"]
        for k in self.kernels:
            if k["baseline"] == k["new"]:
                out.append(f"kernel:   {k['new'] or '(none)'}")
            else:
                out.append(f"kernel:   {k['baseline'] or '(none)'} -> {k['new'] or '(none)'} "
                           f"(paired by {k['by']})")
        if n.get("interrupted"):
            out.append(f"warning: the new run was interrupted ({n['interrupted']}): "
                       "tests it did not reach are missing")
        sections = (
            ("new failure", self.new, "fail the gate"),
            ("test not run (infra-error)", self.infra, "the gate cannot judge them"),
            ("persisting failure", self.persisting, "failed in the baseline too"),
            ("fixed test", self.fixed, "failed in the baseline, as expected now"),
            ("appeared test", self.appeared, "not in the baseline"),
            ("disappeared test", self.disappeared, "in the baseline, not in the new run"),
        )
        for label, items, what in sections:
            if not items:
                continue
            out += ["", f"{_n(len(items), label)} ({what}):"]
            for it in items:
                out += _item_lines(it, label, len(self.kernels) > 1)
        out += ["", f"summary: {len(self.new)} new, {len(self.persisting)} persisting, "
                    f"{len(self.fixed)} fixed, {len(self.infra)} not run, {len(self.appeared)} "
                    f"appeared, {len(self.disappeared)} disappeared, {self.unchanged} as expected "
                    f"in both"]
        return "\n".join(out)

    def to_json(self) -> dict:
        return {
            "version": 1,
            "exit_code": self.exit_code(),
            "verdict": self.verdict(),
            "counts": {"new": len(self.new), "persisting": len(self.persisting),
                       "fixed": len(self.fixed), "infra": len(self.infra),
                       "appeared": len(self.appeared), "disappeared": len(self.disappeared),
                       "unchanged": self.unchanged},
            "kernels": self.kernels,
            "baseline": self.baseline_info,
            "new_run": self.new_info,
            **{k: [i.to_json() for i in getattr(self, k)]
               for k in ("new", "persisting", "fixed", "infra", "appeared", "disappeared")},
        }


def _n(k: int, word: str) -> str:
    return f"{k} {word}{'' if k == 1 else 's'}"


def _item_lines(it: Item, label: str, kernels: bool) -> list[str]:
    lines = [f"  {it.name}" + (f"  [{it.kernel or 'no kernel'}]" if kernels else "")]
    if it.new and it.baseline:
        lines.append(f"      now: {it.new.describe()}; baseline: {it.baseline.describe()}")
    elif it.new:
        lines.append(f"      now: {it.new.describe()}")
    else:
        lines.append(f"      baseline: {it.baseline.describe()}")
    side = it.new if it.new and it.new.failing else it.baseline
    if side and side.titles and "title changed" not in " ".join(it.notes):
        lines += [f"      report: {t}" for t in side.titles]
    lines += [f"      {n}" for n in it.notes]
    if it.new and it.new.failing and it.new.message and label == "new failure":
        lines += ["      | " + ln for ln in it.new.message.strip().splitlines()[-5:]]
    return lines


def _side(t: dict, strict: bool) -> Side:
    r = TestResult(scenario=t["scenario"], test=t["test"], kernel=t.get("kernel") or "",
                   outcome=t["outcome"], expected=t.get("expected") or "pass",
                   waived=t.get("waived") or "")
    failing = not r.as_expected or (strict and r.outcome == Outcome.FLAKY and not r.waived)
    titles = list(dict.fromkeys(rep["title"] for rep in t.get("reports") or []))
    return Side(r.outcome, r.expected, r.kernel, titles, r.waived, failing, t.get("message") or "")


def _sources(doc: dict) -> list[str]:
    seen: dict[str, None] = {}
    for t in doc["tests"]:
        s = source_of(t.get("kernel") or "")
        if s:
            seen.setdefault(s, None)
    return list(seen)


def _pair_sources(bs: list[str], ns: list[str]) -> tuple[dict, dict, list[dict]]:
    """Slot numbers of each run's sources: same names paired, then the rest by position."""
    bslot, nslot, pairs = {}, {}, []
    common = [s for s in bs if s in ns]
    for s in common:
        bslot[s] = nslot[s] = len(pairs)
        pairs.append({"baseline": s, "new": s, "by": "name"})
    rb = [s for s in bs if s not in common]
    rn = [s for s in ns if s not in common]
    for i in range(max(len(rb), len(rn))):
        b = rb[i] if i < len(rb) else None
        n = rn[i] if i < len(rn) else None
        slot = len(pairs)
        if b is not None:
            bslot[b] = slot
        if n is not None:
            nslot[n] = slot
        pairs.append({"baseline": b, "new": n, "by": "position" if b and n else "none"})
    return bslot, nslot, pairs


def _keyed(doc: dict, slots: dict[str, int]) -> dict[tuple, Side]:
    strict = bool(doc.get("strict"))
    only = next(iter(slots.values())) if len(slots) == 1 else None
    out: dict[tuple, Side] = {}
    for t in doc["tests"]:
        src = source_of(t.get("kernel") or "")
        slot = slots.get(src, only if not src else None)
        base = (t["scenario"], t["test"], t.get("variant"), slot)
        key, k = base + (0,), 0
        while key in out:  # the same test twice on one source: paired in run order
            k += 1
            key = base + (k,)
        out[key] = _side(t, strict)
    return out


def _info(doc: dict) -> dict:
    return {"file": doc.get("_file", ""), "started": doc.get("started"),
            "tests": len(doc["tests"]), "interrupted": doc.get("interrupted"),
            "strict": bool(doc.get("strict")), "shard": doc.get("shard")}


def compare(baseline: dict, new: dict) -> GateResult:
    """Each test of NEW against the same test of BASELINE (see the module doc for the matching)."""
    bslot, nslot, pairs = _pair_sources(_sources(baseline), _sources(new))
    bk, nk = _keyed(baseline, bslot), _keyed(new, nslot)
    g = GateResult(kernels=pairs, baseline_info=_info(baseline), new_info=_info(new))
    for key in list(dict.fromkeys(list(nk) + list(bk))):
        b, n = bk.get(key), nk.get(key)
        it = Item(key[0], key[1], key[2], b, n)
        if n is None:
            if b.failing:
                it.notes.append("it was failing in the baseline")
            g.disappeared.append(it)
            continue
        if b is None:
            g.appeared.append(it)
        if n.failing and n.outcome == Outcome.INFRA:
            if b is not None and b.failing:
                it.notes.append(f"failed in the baseline too ({b.outcome})")
            g.infra.append(it)
        elif n.failing:
            if b is None:
                it.notes.append("not in the baseline")
                g.new.append(it)
            elif not b.failing:
                if b.waived:
                    it.notes.append("the baseline waived it; this run did not (known issue "
                                    "expired or not applied?)")
                g.new.append(it)
            elif b.outcome == Outcome.INFRA:
                it.notes.append("the baseline did not run it (infra-error): not known to fail before")
                g.new.append(it)
            else:
                it.notes += _changes(b, n)
                g.persisting.append(it)
        elif b is not None and b.failing:
            if b.outcome == Outcome.INFRA:
                it.notes.append("the baseline did not run it (infra-error)")
            g.fixed.append(it)
        elif b is not None:
            g.unchanged += 1
    for lst in (g.new, g.persisting, g.fixed, g.infra, g.appeared, g.disappeared):
        lst.sort(key=lambda i: (i.scenario, i.test, i.variant or ""))
    return g


def _changes(b: Side, n: Side) -> list[str]:
    notes = []
    if b.outcome != n.outcome:
        notes.append(f"outcome changed: {b.outcome} -> {n.outcome}")
    if b.titles != n.titles and (b.titles or n.titles):
        gone = [t for t in b.titles if t not in n.titles]
        came = [t for t in n.titles if t not in b.titles]
        if gone or came:
            notes.append("title changed: " + ("; ".join(gone) or "(no report)") + " -> "
                         + ("; ".join(came) or "(no report)"))
    return notes
