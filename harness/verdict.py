"""From what the guest wrote and what the console showed to one outcome per test.

Pure functions: the runner feeds them the guest results file, the VM's end
and the console text; the unit tests feed them recorded ones.
"""

from __future__ import annotations

from harness import console
from harness.guest import protocol
from harness.results import INFRA, Report, TestResult
from harness.vm import VMResult

# How a VM's end explains a test that was running when it ended.
_RUNNING_END = {"hang": "hang", "timeout": "timeout", "panic": "crash"}


def _reports(findings: list[console.Finding]) -> list[Report]:
    """One entry per distinct first line, with a count (titles proper come from the analyser)."""
    out: dict[str, Report] = {}
    for f in findings:
        title = f.first_line.split("] ", 1)[-1] if "] " in f.first_line else f.first_line
        if title in out:
            out[title].count += 1
        else:
            out[title] = Report(title=title, type=f.kind)
    return list(out.values())


def decide(scenario_tests: list[tuple[str, str, str]], guest: dict | None, vm: VMResult | None,
           console_text: str, kernel: str, vm_name: str) -> list[TestResult]:
    """scenario_tests: (scenario, test id, expected outcome) in run order."""
    by_id = {}
    if guest:
        for t in guest.get("tests", []):
            by_id[t["id"]] = t
    found = console.findings(console_text)
    per_owner: dict[str, list[console.Finding]] = {}
    for f in found:
        per_owner.setdefault(f.owner, []).append(f)
    boot_reports = per_owner.get("boot", [])
    end = vm.end if vm else "no-vm"

    results = []
    # Parametrized tests expand to several guest entries sharing the requested id as prefix.
    for scen, tid, expected in scenario_tests:
        entries = [t for i, t in by_id.items() if i == tid or i.startswith(tid + "[")]
        if not entries:
            entries = [{"id": tid, "outcome": protocol.LOST, "duration_s": None, "message": ""}]
        for e in entries:
            outcome = e["outcome"]
            msg = e.get("message", "")
            reps = _reports(per_owner.get(e["id"], []))
            if outcome == protocol.RUNNING:
                outcome = _RUNNING_END.get(end, "crash" if reps else INFRA)
                msg = f"VM ended ({end}) while this test ran. " + msg
            elif outcome == protocol.LOST:
                # Never started: the runner retries it in a fresh VM, or calls it infra-error.
                msg = f"never ran: VM ended ({end}) before this test started"
                if boot_reports:
                    reps = _reports(boot_reports)
            elif reps and outcome in ("pass", "fail", "skip"):
                # A kernel report inside a test is a crash, whatever pytest said.
                msg = f"kernel report during the test (pytest said {outcome}). " + msg
                outcome = "crash"
            if expected == "crash" and outcome == "crash":
                outcome = "xfail"
            elif expected == "crash" and outcome == "pass":
                outcome = "xpass"
            results.append(TestResult(scenario=scen, test=e["id"], kernel=kernel,
                                      outcome=outcome, expected=expected,
                                      duration_s=e.get("duration_s"), reports=reps,
                                      message=msg.strip(), vm=vm_name))
    return results
