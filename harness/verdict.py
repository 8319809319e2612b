"""From what the guest wrote and what the console showed to one outcome per test.

Pure functions: the runner feeds them the guest results file, the VM's end
and the console text; the unit tests feed them recorded ones.
"""

from __future__ import annotations

import dataclasses

from harness import report
from harness.guest import protocol
from harness.report import Report
from harness.results import INFRA, TestResult
from harness.vm import VMResult

# How a VM's end explains a test that was running when it ended.
_RUNNING_END = {"hang": "hang", "timeout": "timeout", "panic": "crash"}


def reports_by_owner(found: list[Report]) -> dict[str, list[Report]]:
    """A console's kernel reports (report.parse_*) per owner (test id, 'boot', 'teardown',
    'wqh:kmemleak'), one entry per title with its count."""
    per_owner: dict[str, list[Report]] = {}
    for r in report.merge(found):
        per_owner.setdefault(r.test, []).append(r)
    return per_owner


# Documentation/admin-guide/tainted-kernels.rst: bit -> letter.
TAINT_FLAGS = "PFSRMBUDAWCIOELKXTN"


def taint_letters(mask: int) -> str:
    return "".join(c for bit, c in enumerate(TAINT_FLAGS) if mask >> bit & 1)


def _taint_report(entry: dict) -> Report | None:
    """A taint flag the test added, as a report of its own (used when nothing was parsed)."""
    t = entry.get("taint")
    if not t:
        return None
    new = t["after"] & ~t["before"]
    if not new:
        return None
    return Report(title=f"kernel tainted: {taint_letters(new)}", type="TAINT", test=entry["id"],
                  text=f"/proc/sys/kernel/tainted {t['before']} -> {t['after']}")


def _has_title(reps: list[Report], title: str | None) -> bool:
    """An expected crash with a title is expected only with a report of that title."""
    return title is None or any(report.same_bug(title, t) for r in reps for t in (r.title, *r.alt_titles))


def _expected(outcome: str, expected: str, title: str | None, reps: list[Report]) -> tuple[str, str]:
    """(outcome, note) once the expectation is applied."""
    if expected == "crash" and outcome == "crash":
        if _has_title(reps, title):
            return "xfail", ""
        return "crash", f"expected a report titled {title!r}, got {[r.title for r in reps]}. "
    if expected == "crash" and outcome == "pass":
        return "xpass", ""
    return outcome, ""


def decide(scenario_tests: list[tuple], guest: dict | None, vm: VMResult | None,
           per_owner: dict[str, list[Report]], kernel: str, vm_name: str) -> list[TestResult]:
    """scenario_tests: (scenario, test id, expected outcome[, expected title]) in run order;
    per_owner: the VM console's reports (reports_by_owner), parsed once per VM by the caller."""
    by_id = {}
    if guest:
        for t in guest.get("tests", []):
            by_id[t["id"]] = t
    boot_reports = per_owner.get("boot", [])
    end = vm.end if vm else "no-vm"

    results = []
    # Parametrized tests expand to several guest entries sharing the requested id as prefix.
    for scen, tid, expected, *rest in scenario_tests:
        title = rest[0] if rest else None
        # A whole file expands to its tests, a parametrized test to its cases.
        entries = [t for i, t in by_id.items() if i == tid or i.startswith((tid + "[", tid + "::"))]
        if not entries:
            entries = [{"id": tid, "outcome": protocol.LOST, "duration_s": None, "message": ""}]
        for e in entries:
            outcome = e["outcome"]
            msg = e.get("message", "")
            reps = per_owner.get(e["id"], [])
            if not reps:
                tr = _taint_report(e)
                reps = [tr] if tr else []
            if outcome == protocol.RUNNING:
                # A report from this test explains the VM's end better than the end itself.
                outcome = "crash" if reps else _RUNNING_END.get(end, INFRA)
                msg = f"VM ended ({end}) while this test ran. " + msg
            elif outcome == protocol.LOST:
                # Never started: the runner retries it in a fresh VM, or calls it infra-error.
                msg = f"never ran: VM ended ({end}) before this test started"
                if boot_reports:
                    reps = [dataclasses.replace(r) for r in boot_reports]
            elif reps and outcome in ("pass", "fail", "skip"):
                # A kernel report inside a test is a crash, whatever pytest said.
                msg = f"kernel report during the test (pytest said {outcome}). " + msg
                outcome = "crash"
            outcome, note = _expected(outcome, expected, title, reps)
            msg = note + msg
            results.append(TestResult(scenario=scen, test=e["id"], kernel=kernel,
                                      outcome=outcome, expected=expected,
                                      duration_s=e.get("duration_s"), reports=reps,
                                      message=msg.strip(), vm=vm_name))
    return results


def leak_check(scenario: str, expected_leak: str | None, guest: dict | None,
               per_owner: dict[str, list[Report]], kernel: str, vm_name: str) -> TestResult | None:
    """The end-of-run kmemleak check as a result of its own (None if the VM did not run it).

    Leaks fail the scenario unless it names the leak it expects (scenario key 'leak')."""
    if not guest or "kmemleak" not in guest:
        return None
    reps = per_owner.get(protocol.KMEMLEAK_ID, [])
    found = guest["kmemleak"].get("leaks", 0)
    outcome = "crash" if reps or found else "pass"
    msg = ""
    if found and not reps:
        msg = f"the guest confirmed {found} leaks but the console shows no leak report. "
    outcome, note = _expected(outcome, "crash" if expected_leak else "pass", expected_leak, reps)
    return TestResult(scenario=scenario, test=protocol.KMEMLEAK_ID, kernel=kernel, outcome=outcome,
                      expected="crash" if expected_leak else "pass",
                      duration_s=guest["kmemleak"].get("duration_s"), reports=reps,
                      message=(note + msg).strip(), vm=vm_name)
