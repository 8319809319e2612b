"""Results: the terminal table, results.json, junit.xml, results.ktap, exit codes."""

from __future__ import annotations

import enum
import html
import json
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

from junitparser import Error, Failure, JUnitXml, Skipped, TestCase, TestSuite

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

# Where a result counts in junit.xml, results.ktap, the table and the GitHub report: one each.
ERROR, FAILURE, SKIPPED, PASSED = "error", "failure", "skipped", "passed"
BAD = (ERROR, FAILURE)  # the categories that fail the gate


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
    version: str = ""  # the kernel's version (6.1.192): a run on several kernels tells them apart

    @classmethod
    def from_json(cls, d: dict) -> "TestResult":
        """A result as results.json holds it (dataclasses.asdict), reports as Report objects;
        unknown keys ignored."""
        kw = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        kw["reports"] = [Report.from_json(r) for r in kw.get("reports") or [] if isinstance(r, dict)]
        return cls(**kw)

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

    def category(self, r: TestResult) -> str:
        """ERROR for an infra-error (waived or not: the exit code is 2), FAILURE for a result
        not as expected or, under --strict, a flaky one not waived; SKIPPED for an expected skip
        only; PASSED otherwise (flaky and waived results included). exit_code() is 0 exactly
        when no result is an ERROR or a FAILURE."""
        if r.outcome == INFRA:
            return ERROR
        if not r.as_expected or self.strict and r.outcome == Outcome.FLAKY and not r.waived:
            return FAILURE
        if r.outcome == Outcome.SKIP and r.expected == Outcome.SKIP:
            return SKIPPED
        return PASSED


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


def _by_scenario(summary: RunSummary) -> dict[str, list[TestResult]]:
    by_scen: dict[str, list[TestResult]] = {}
    for r in summary.results:
        by_scen.setdefault(r.scenario, []).append(r)
    return by_scen


def unexpected(summary: RunSummary) -> list[TestResult]:
    """The results that fail the gate (an error or a failure), in run order."""
    return [r for r in summary.results if summary.category(r) in BAD]


def _case_names(rs: list[TestResult]) -> list[str]:
    """Names of one scenario's results: the test id, with the kernel when it ran on several."""
    several = len({r.kernel for r in rs}) > 1
    return [f"{r.test} on {r.kernel}" if several else r.test for r in rs]


def _retries(r: TestResult) -> str:
    n = len(r.attempts)
    return f"{n} retr{'y' if n == 1 else 'ies'}"


def flaky_note(r: TestResult) -> str:
    """'flaky: attempt 1 fail in vm1-..., attempt 2 pass in vm3-...', the passing one last."""
    tries = [(a["outcome"], a["vm"]) for a in r.attempts] + [(Outcome.PASS.value, r.vm)]
    return "flaky: " + ", ".join(f"attempt {i} {o} in {vm or '?'}" for i, (o, vm) in enumerate(tries, 1))


def waived_note(r: TestResult) -> str:
    return f"waived: {r.waived}; was {r.outcome}, expected {r.expected}"


def notes(r: TestResult) -> list[str]:
    """What a gate that passed a flaky or waived result says about it."""
    return ([flaky_note(r)] if r.outcome == Outcome.FLAKY else []) + ([waived_note(r)] if r.waived else [])


def shown_outcome(r: TestResult) -> str:
    """The outcome as the table shows it: 'flaky (1 retry)', 'fail (waived: reason (link))'."""
    extra = ([_retries(r)] if r.outcome == Outcome.FLAKY else []) + ([f"waived: {r.waived}"] if r.waived else [])
    return r.outcome + (f" ({', '.join(extra)})" if extra else "")


def _verdict_line(r: TestResult) -> str:
    """Why an error or failure is one."""
    if r.outcome == Outcome.FLAKY:
        return f"flaky, which fails under --strict ({_retries(r)})"
    return f"outcome {r.outcome}, expected {r.expected}"


def _report_lines(r: TestResult) -> list[str]:
    return [f"{x.title} (x{x.count})" for x in r.reports]


# XML 1.0 has no place for most control characters (pytest's colours, a console's junk).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml(text: str) -> str:
    return _NOT_XML.sub("", text)


def _junit_case(summary: RunSummary, r: TestResult, name: str) -> TestCase:
    case = TestCase(name, r.scenario, r.duration_s or 0.0)
    category = summary.category(r)
    text = _xml("\n".join(notes(r) + _report_lines(r)
                          + [f"attempt {i} ({a['outcome']}): {a['message']}"
                             for i, a in enumerate(r.attempts, 1) if a["message"]]
                          + ([r.message] if r.message else [])))
    if category == PASSED:
        if notes(r):
            case.system_out = text
        return case
    if category == SKIPPED:
        case.result = [Skipped(_xml(r.message[:200]))]
        return case
    res = (Error(INFRA.value, INFRA.value) if category == ERROR
           else Failure(_verdict_line(r), r.outcome))
    res.text = text
    case.result = [res]
    return case


def write_junit(summary: RunSummary, path: Path) -> None:
    """One <testsuite> per scenario, its kernels, builds and VMs as properties; each case in
    exactly one category (RunSummary.category); flaky and waived passes say so in system-out."""
    xml = JUnitXml("wqh")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(summary.started))
    for scen, rs in _by_scenario(summary).items():
        suite = TestSuite(scen)
        suite.timestamp = stamp
        idents = sorted({r.kernel for r in rs if r.kernel})
        for ident in idents:
            suite.add_property("kernel", ident)
        for key, k in sorted(summary.kernels.items()):
            if k.get("identity") in idents:
                suite.add_property("kernel.build", key)
        for vm in sorted({r.vm for r in rs if r.vm}):
            suite.add_property("vm", vm)
        suite.add_testcases([_junit_case(summary, r, n) for r, n in zip(rs, _case_names(rs))])
        xml.add_testsuite(suite)
    xml.update_statistics()
    xml.write(str(path), pretty=True)


# kunit_parser.py ends the KTAP output at any line containing one of these.
_KTAP_END = re.compile(r"List of all partitions:|Kernel panic - not syncing: VFS:|reboot: System halted")


def _ktap_text(text: str) -> str:
    """One line of free text that kunit.py's parser neither splits nor takes for the end."""
    return _KTAP_END.sub(lambda m: m.group().replace(":", " :"), " ".join(text.split()))


def ktap_name(text: str) -> str:
    """A name kunit_parser.py reads back whole: no '#' (it starts a directive), no leading
    '- ' (TAP's separator), no line breaks or edge blanks, never empty."""
    name = _ktap_text(text).replace("#", "_")
    if name.startswith("- "):
        name = "_" + name[1:]
    return name or "_"


def _ktap_diagnostics(r: TestResult, category: str) -> list[str]:
    if category in BAD:
        return [_verdict_line(r)] + [f"report: {t}" for t in _report_lines(r)] + notes(r)
    return notes(r)


def write_ktap(summary: RunSummary, path: Path) -> None:
    """KTAP version 1: one subtest per scenario, its results nested (4 spaces), 'not ok' for
    an error or failure, '# SKIP' for an expected skip only, flaky/waived as '# ' notes."""
    by_scen = _by_scenario(summary)
    lines = ["KTAP version 1", f"1..{len(by_scen)}"]
    for i, (scen, rs) in enumerate(by_scen.items(), 1):
        name = ktap_name(scen)
        lines += ["    KTAP version 1", f"    # Subtest: {name}", f"    1..{len(rs)}"]
        categories = [summary.category(r) for r in rs]
        for j, (r, case, category) in enumerate(zip(rs, _case_names(rs), categories), 1):
            lines += [f"    # {_ktap_text(d)}" for d in _ktap_diagnostics(r, category)]
            ok = "not ok" if category in BAD else "ok"
            reason = _ktap_text(r.message)[:200].replace("#", "_")
            skip = f" # SKIP {reason}".rstrip() if category == SKIPPED else ""
            lines.append(f"    {ok} {j} {ktap_name(case)}{skip}")
        ok = "not ok" if set(BAD) & set(categories) else "ok"
        skip = " # SKIP" if set(categories) == {SKIPPED} else ""
        lines.append(f"{ok} {i} {name}{skip}")
    path.write_text("\n".join(lines) + "\n")


def table(summary: RunSummary) -> str:
    rows = [("SCENARIO", "TEST", "OUTCOME", "EXPECTED", "TIME")]
    for r in summary.results:
        mark = "  <--" if summary.category(r) in BAD else ""
        dur = f"{r.duration_s:.2f}s" if r.duration_s is not None else "-"
        rows.append((r.scenario, r.test.split("/")[-1], shown_outcome(r) + mark, r.expected, dur))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    out = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    for r in unexpected(summary):
        out.append("")
        out.append(f"--- {r.scenario}: {r.test}: {r.outcome} (expected {r.expected})")
        for rep in r.reports:
            out.append(f"    report: {rep.title}" + (f" (x{rep.count})" if rep.count > 1 else ""))
        out += [f"    {n}" for n in notes(r)]
        if r.message:
            out += ["    " + ln for ln in r.message.strip().splitlines()[-15:]]
    c = summary.counts()
    m = matrix(summary)
    if m is not None:
        out += ["", m]
    out.append("")
    out.append("summary: " + ", ".join(f"{n} {k}" for k, n in sorted(c.items()))
               + f" in {summary.finished - summary.started:.1f}s")
    return "\n".join(out)


def kernel_label(r: TestResult) -> str:
    """A kernel as the matrix names it: its version, else its identity."""
    return r.version or r.kernel


def matrix(summary: RunSummary) -> str | None:
    """With several kernels: each test's outcome per kernel, then the tests whose verdict
    differs between kernels, named with where they pass and where they fail (None with one)."""
    kernels = list(dict.fromkeys(kernel_label(r) for r in summary.results))
    if len(kernels) < 2:
        return None
    cells: dict[tuple[str, str], dict[str, TestResult]] = {}
    for r in summary.results:
        cells.setdefault((r.scenario, r.test), {})[kernel_label(r)] = r
    rows = [("SCENARIO", "TEST", *kernels)]
    differs = []
    for (scen, test), by in cells.items():
        rows.append((scen, test.split("/")[-1], *(shown_outcome(by[k]) if k in by else "-" for k in kernels)))
        ok = {k: summary.category(by[k]) not in BAD for k in kernels if k in by}
        if len(set(ok.values())) > 1 or len(ok) < len(kernels):
            good = [k for k, v in ok.items() if v]
            bad = [k for k, v in ok.items() if not v]
            missing = [k for k in kernels if k not in by]
            differs.append(f"{scen}: {test.split('/')[-1]}: as expected on {', '.join(good) or 'none'}"
                           f"; not on {', '.join(bad) or 'none'}"
                           + (f"; not run on {', '.join(missing)}" if missing else ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["matrix (test x kernel):"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.append(f"{len(differs)} tests differ between kernels" + (":" if differs else ""))
    lines += ["  " + d for d in differs]
    return "\n".join(lines)


# Results the GitHub step summary details and annotates at most (it takes 1 MiB; the UI shows
# 10 error annotations of a step): the rest are in junit.xml and summary.txt.
GITHUB_MAX = 50


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def github_markdown(summary: RunSummary) -> str:
    """The step summary: scenario x outcome counts, then each unexpected result and its reports."""
    by_scen = _by_scenario(summary)
    present = [o.value for o in Outcome if any(r.outcome == o for r in summary.results)]
    bad = unexpected(summary)
    where = f" (shard {summary.shard['index']}/{summary.shard['total']})" if summary.shard else ""
    strict = ", --strict" if summary.strict else ""
    out = [f"### wqh{where}: {len(summary.results)} results, {len(bad)} unexpected "
           f"(exit {summary.exit_code()}{strict})", "",
           "| scenario | " + " | ".join(present) + " | unexpected |",
           "|---|" + "---:|" * (len(present) + 1)]
    for scen, rs in by_scen.items():
        c = Counter(r.outcome for r in rs)
        n_bad = sum(1 for r in rs if summary.category(r) in BAD)
        out.append(f"| {_md_cell(scen)} | " + " | ".join(str(c[o]) for o in present) + f" | {n_bad} |")
    if bad:
        out += ["", "#### Unexpected results", ""]
    for r in bad[:GITHUB_MAX]:
        out.append(f"- **{html.escape(r.scenario)}** <code>{html.escape(r.test)}</code>: "
                   f"{html.escape(_verdict_line(r))}")
        out += [f"  - {html.escape(t)}" for t in _report_lines(r) + notes(r)]
        # no blank line inside: it would end the HTML block
        tail = "\n".join(ln for ln in r.message.strip().splitlines()[-15:] if ln.strip())
        if tail:
            out.append(f"  <details><summary>output</summary><pre>{html.escape(tail)}</pre></details>")
    if len(bad) > GITHUB_MAX:
        out.append(f"- ... and {len(bad) - GITHUB_MAX} more: see junit.xml or summary.txt")
    return "\n".join(out) + "\n\n"


def _gh(text: str, prop: bool = False) -> str:
    """Escaped for a workflow command's message, or (prop) for one of its properties."""
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if prop else text


def github_report(summary: RunSummary, env: Mapping[str, str] = os.environ,
                  stream: TextIO | None = None) -> None:
    """On GitHub Actions (GITHUB_ACTIONS=true): the step summary appended to
    $GITHUB_STEP_SUMMARY, an ::error annotation per unexpected result and a ::warning per flaky
    or waived one that passed the gate, on STREAM (default: stdout)."""
    if env.get("GITHUB_ACTIONS") != "true":
        return
    if env.get("GITHUB_STEP_SUMMARY"):
        with open(env["GITHUB_STEP_SUMMARY"], "a") as f:
            f.write(github_markdown(summary))
    stream = stream or sys.stdout
    bad = unexpected(summary)
    for r in bad[:GITHUB_MAX]:
        tail = r.message.strip().splitlines()[-10:]
        body = "\n".join([_verdict_line(r)] + _report_lines(r) + notes(r) + tail)
        print(f"::error title={_gh(f'{r.scenario}: {r.test}: {r.outcome}', True)}::{_gh(body)}", file=stream)
    if len(bad) > GITHUB_MAX:
        print(f"::error title=wqh::{len(bad) - GITHUB_MAX} more unexpected results: see the step summary",
              file=stream)
    for r in summary.results:
        if summary.category(r) == PASSED and notes(r):
            kind = "flaky" if r.outcome == Outcome.FLAKY else "waived"
            title = _gh(f"{kind}: {r.scenario}: {r.test}", True)
            print(f"::warning title={title}::{_gh('; '.join(notes(r)))}", file=stream)


def write_all(summary: RunSummary) -> None:
    d = summary.out_dir
    d.mkdir(parents=True, exist_ok=True)
    write_json(summary, d / "results.json")
    write_junit(summary, d / "junit.xml")
    write_ktap(summary, d / "results.ktap")
    (d / "summary.txt").write_text(table(summary) + "\n")


def print_summary(summary: RunSummary, stream=sys.stdout) -> None:
    """The end of `wqh run` and `wqh merge`, once per command (unlike write_all, which repro,
    verify and the wall also call on runs whose expected crashes are not the verdict)."""
    print(table(summary), file=stream)
    print(f"artifacts: {summary.out_dir}", file=stream)
    github_report(summary, stream=stream)
