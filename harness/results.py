"""Results: the terminal table, results.json, junit.xml, results.ktap, exit codes."""

from __future__ import annotations

import enum
import json
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.errors import EXIT_FAIL, EXIT_INFRA, EXIT_OK
from harness.report import Report

class Outcome(str, enum.Enum):
    """The one outcome type of scenario expectations, verdicts and results.

    A str: results.json and the guest's own file hold the plain value."""

    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"
    CRASH = "crash"        # a kernel report during the test
    HANG = "hang"          # the VM went silent while the test ran
    TIMEOUT = "timeout"    # the VM outlived its total allowance
    INFRA = "infra-error"  # wqh could not run it (build, boot, VM that started nothing)
    XFAIL = "xfail"        # an expected crash, with the expected title
    XPASS = "xpass"        # an expected crash that did not happen
    FLAKY = "flaky"        # failed, then passed in a fresh VM with no kernel report

    def __str__(self) -> str:
        return self.value


# What a scenario may expect of a test.
EXPECTABLE = (Outcome.PASS, Outcome.FAIL, Outcome.SKIP, Outcome.CRASH, Outcome.HANG, Outcome.TIMEOUT)
OUTCOMES = tuple(o.value for o in Outcome)
INFRA = Outcome.INFRA


@dataclass
class TestResult:
    __test__ = False  # not a pytest class

    scenario: str
    test: str
    kernel: str  # source identity + config hash
    outcome: str
    expected: str = "pass"
    variant: str | None = None
    duration_s: float | None = None
    reports: list[Report] = field(default_factory=list)
    message: str = ""
    vm: str = ""  # artifacts subdirectory of the VM that ran it
    # Earlier attempts of a retried test ({"outcome", "vm", "message"}), oldest first.
    attempts: list[dict] = field(default_factory=list)
    # The known-issues entry that waives this result ("reason (link)"); a waived result gates
    # as expected and is shown as waived.
    waived: str = ""

    @property
    def as_expected(self) -> bool:
        # A skip is not a pass: on a kernel wqh built for the test, a skip means it did not run.
        # An expected crash is met only as xfail (the report it names was seen): a "crash"
        # left as it is had no report, or one of another title.
        if self.waived or self.outcome == Outcome.FLAKY:
            return True  # flaky fails the gate only under --strict (RunSummary.exit_code)
        if self.expected == "crash":
            return self.outcome == "xfail"
        return self.outcome == self.expected or self.outcome == "xfail"


@dataclass
class RunSummary:
    results: list[TestResult]
    started: float
    finished: float
    out_dir: Path
    timings: dict[str, float] = field(default_factory=dict)
    kernels: dict[str, dict] = field(default_factory=dict)
    interrupted: str | None = None  # the signal's name when the run was cut short
    strict: bool = False  # flaky tests fail the gate
    shard: dict | None = None  # {"index", "total", "plan", "groups"} of a `--shard K/N` run

    def counts(self) -> dict[str, int]:
        return dict(Counter(r.outcome for r in self.results))

    def exit_code(self) -> int:
        if any(r.outcome == INFRA for r in self.results):
            return EXIT_INFRA
        if any(not r.as_expected for r in self.results):
            return EXIT_FAIL
        if self.strict and any(r.outcome == Outcome.FLAKY and not r.waived for r in self.results):
            return EXIT_FAIL
        return EXIT_OK


def to_json(summary: RunSummary) -> dict:
    return {
        "version": 1,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(summary.started)),
        "duration_s": round(summary.finished - summary.started, 2),
        "tests": [asdict(r) for r in summary.results],
        "summary": summary.counts(),
        "exit_code": summary.exit_code(),
        "interrupted": summary.interrupted,
        "timings": summary.timings,
        "kernels": summary.kernels,
        "strict": summary.strict,
        "shard": summary.shard,
    }


def write_json(summary: RunSummary, path: Path) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(to_json(summary), indent=2) + "\n")
    tmp.replace(path)


def write_junit(summary: RunSummary, path: Path) -> None:
    by_scen: dict[str, list[TestResult]] = {}
    for r in summary.results:
        by_scen.setdefault(r.scenario, []).append(r)
    suites = ET.Element("testsuites", name="wqh")
    for scen, rs in by_scen.items():
        c = Counter(r.outcome for r in rs)
        suite = ET.SubElement(
            suites, "testsuite", name=scen, tests=str(len(rs)),
            failures=str(sum(1 for r in rs if not r.as_expected and r.outcome != INFRA)),
            # each case in one category: a skip nobody expected is a failure, not also a skip
            errors=str(c[INFRA]), skipped=str(sum(1 for r in rs if r.outcome == "skip" and r.as_expected)),
            time=f"{sum(r.duration_s or 0 for r in rs):.3f}")
        for r in rs:
            case = ET.SubElement(suite, "testcase", classname=scen, name=r.test,
                                 time=f"{r.duration_s or 0:.3f}")
            detail = r.message
            if r.reports:
                detail = "\n".join(f"{x.title} (x{x.count})" for x in r.reports) + "\n" + detail
            if r.outcome == INFRA:
                ET.SubElement(case, "error", message=INFRA).text = detail
            elif not r.as_expected:
                ET.SubElement(case, "failure",
                              message=f"outcome {r.outcome}, expected {r.expected}").text = detail
            elif r.outcome == "skip":
                ET.SubElement(case, "skipped", message=r.message[:200])
    ET.indent(suites)
    path.write_text(ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n")


def write_ktap(summary: RunSummary, path: Path) -> None:
    lines = ["KTAP version 1", f"1..{len(summary.results)}"]
    for i, r in enumerate(summary.results, 1):
        ok = "ok" if r.as_expected else "not ok"
        # "# SKIP" makes KTAP readers count the test as skipped whatever precedes it: only on an
        # expected skip, so that an unexpected one stays a failure there too.
        directive = " # SKIP" if r.outcome == "skip" and r.as_expected else ""
        lines.append(f"{ok} {i} {r.scenario}:{r.test}{directive}")
        if not r.as_expected:
            lines.append(f"# outcome {r.outcome}, expected {r.expected}")
    path.write_text("\n".join(lines) + "\n")


def table(summary: RunSummary) -> str:
    rows = [("SCENARIO", "TEST", "OUTCOME", "EXPECTED", "TIME")]
    for r in summary.results:
        mark = "" if r.as_expected else "  <--"
        dur = f"{r.duration_s:.2f}s" if r.duration_s is not None else "-"
        rows.append((r.scenario, r.test.split("/")[-1], r.outcome + mark, r.expected, dur))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    out = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    for r in summary.results:
        if not r.as_expected:
            out.append("")
            out.append(f"--- {r.scenario}: {r.test}: {r.outcome} (expected {r.expected})")
            for rep in r.reports:
                out.append(f"    report: {rep.title}" + (f" (x{rep.count})" if rep.count > 1 else ""))
            if r.message:
                out += ["    " + ln for ln in r.message.strip().splitlines()[-15:]]
    c = summary.counts()
    out.append("")
    out.append("summary: " + ", ".join(f"{n} {k}" for k, n in sorted(c.items()))
               + f" in {summary.finished - summary.started:.1f}s")
    return "\n".join(out)


def write_all(summary: RunSummary) -> None:
    d = summary.out_dir
    d.mkdir(parents=True, exist_ok=True)
    write_json(summary, d / "results.json")
    write_junit(summary, d / "junit.xml")
    write_ktap(summary, d / "results.ktap")
    (d / "summary.txt").write_text(table(summary) + "\n")


def print_summary(summary: RunSummary, stream=sys.stdout) -> None:
    print(table(summary), file=stream)
    print(f"artifacts: {summary.out_dir}", file=stream)
