"""Guest agent: runs the scenario's pytest node ids, one marker pair per test.

    python -m harness.guest.agent PLAN.json

The plan holds the results directory and the tests: {"id": name in reports,
"node": pytest node id with an absolute path}; "watch_test", when a test runs it, is
{"path": binary} or {"skip": why there is none}, exported as WQH_WATCH_TEST or
WQH_WATCH_TEST_SKIP (see watch_test_env).

Begin/end markers go to /dev/kmsg so the host can place kernel reports
between them; outcomes go to RESULTS_DIR/guest-results.json after every test.
"""

import json
import os
import sys
import time

from harness.guest import kmemleak, protocol

_OUTCOME = {"passed": "pass", "failed": "fail", "skipped": "skip"}


KMSG = "/dev/kmsg"

# pytest's built-in plugins the guest tests never use: each is a module less to import at
# every boot (under TCG about a second for these together, measured in a guest). The cache
# would also write into the read-only repo.
UNUSED_PLUGINS = [a for name in ("cacheprovider", "doctest", "pastebin", "junitxml", "legacypath",
                                 "unittest", "stepwise", "setuponly", "setupplan", "debugging")
                  for a in ("-p", f"no:{name}")]


TAINTED = "/proc/sys/kernel/tainted"


def tainted():
    try:
        with open(TAINTED) as fh:
            return int(fh.read().strip() or 0)
    except (OSError, ValueError):
        return None


def kmsg(text):
    """A line in the kernel log, level notice; falls back to stdout without /dev/kmsg."""
    try:
        fd = os.open(KMSG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"<5>{text}\n".encode())
        finally:
            os.close(fd)
    except OSError:
        print(text, flush=True)


class Recorder:
    """pytest plugin: markers around each test and the shared results file."""

    def __init__(self, outdir, plan):
        self.path = os.path.join(outdir, protocol.RESULTS)
        self.plan = plan
        self.state = protocol.initial([t["id"] for t in plan])
        self.index = {t["id"]: i for i, t in enumerate(plan)}
        self.names = {}  # pytest nodeid -> our id
        self.started = 0.0
        self.last_end = time.monotonic()
        self.taint0 = None
        self.phases = {}
        self.before_first = None
        self.leak_epoch = None  # jiffies: objects born before it are not the tests' leaks

    def _entry(self, nodeid):
        i = self.index.get(nodeid)
        if i is None:  # a parametrized expansion of a requested id, or a whole file
            self.state["tests"].append({"id": nodeid, "outcome": protocol.LOST,
                                        "duration_s": None, "message": ""})
            i = self.index[nodeid] = len(self.state["tests"]) - 1
        return self.state["tests"][i]

    def save(self):
        protocol.write_atomic(self.path, self.state)

    def pytest_collection_modifyitems(self, session, config, items):
        for item in items:
            parts = item.nodeid.split("::", 1)
            absid = f"{item.path}::{parts[1]}" if len(parts) > 1 else str(item.path)
            for t in self.plan:
                node = t["node"]
                if absid == node or absid.startswith(node + "[") or absid.startswith(node + "::"):
                    self.names[item.nodeid] = t["id"] + absid[len(node):]
                    break
            else:
                self.names[item.nodeid] = absid
        # A requested file or parametrized test expands to several items: list those instead.
        ran = set(self.names.values())
        expanded = [t for t in self.state["tests"] if t["id"] not in ran and any(
            r.startswith(t["id"] + "[") or r.startswith(t["id"] + "::") for r in ran)]
        for t in expanded:
            self.state["tests"].remove(t)
        self.index = {t["id"]: i for i, t in enumerate(self.state["tests"])}
        for name in self.names.values():
            self._entry(name)
        self.save()

    def _our(self, nodeid):
        return self.names.get(nodeid, nodeid)

    def wait_first(self):
        """Run before_first once: setup that overlaps pytest's start must end before a test."""
        wait, self.before_first = self.before_first, None
        if wait is not None:
            wait()

    def pytest_runtest_logstart(self, nodeid, location):
        self.wait_first()
        nodeid = self._our(nodeid)
        kmsg(f"{protocol.MARK_BEGIN} {nodeid}{protocol.MARK_TAIL}")
        e = self._entry(nodeid)
        e["outcome"] = protocol.RUNNING
        self.phases = {}
        self.taint0 = tainted()
        self.started = time.monotonic()
        self.save()

    def pytest_runtest_logreport(self, report):
        self.phases[report.when] = report
        e = self._entry(self._our(report.nodeid))
        if report.failed and not e["message"]:
            e["message"] = (str(report.longrepr) if report.longrepr else "")[-2000:]

    def pytest_runtest_logfinish(self, nodeid, location):
        nodeid = self._our(nodeid)
        dur = round(time.monotonic() - self.started, 3)
        reps = self.phases
        if any(r.failed for r in reps.values()):
            outcome = "fail"
        elif any(r.skipped for r in reps.values()):
            outcome = "skip"
            call = reps.get("call") or reps.get("setup")
            if call is not None and isinstance(call.longrepr, tuple):
                self._entry(nodeid)["message"] = str(call.longrepr[2])
        else:
            outcome = "pass"
        e = self._entry(nodeid)
        e["outcome"], e["duration_s"] = outcome, dur
        t1 = tainted()
        if t1 is not None and self.taint0 is not None and t1 != self.taint0:
            e["taint"] = {"before": self.taint0, "after": t1}
        self.last_end = time.monotonic()
        self.save()
        kmsg(f"{protocol.MARK_END} {nodeid} {outcome} {dur:.3f}s{protocol.MARK_TAIL}")

    def pytest_collectreport(self, report):
        if report.failed:
            # A module that does not import: every requested test in it fails.
            for t in self.plan:
                if t["node"].split("::")[0].endswith(report.nodeid.split("::")[0]):
                    i = self.index[t["id"]]
                    e = self.state["tests"][i]
                    e["outcome"] = "fail"
                    e["message"] = ("collection failed: " + str(report.longrepr))[-2000:]
            self.save()


def check_leaks(rec, path):
    """The scenario-level leak check: confirmed leaks go to the kernel log between markers."""
    t0 = time.monotonic()
    kmsg(f"{protocol.MARK_BEGIN} {protocol.KMEMLEAK_ID}{protocol.MARK_TAIL}")
    # Objects from the last test must reach kmemleak's minimum age before they count.
    blocks = kmemleak.confirmed_leaks(path, since=rec.last_end, born_after=rec.leak_epoch)
    for block in blocks:
        for line in block.splitlines():
            kmsg(line)
    outcome = "fail" if blocks else "pass"
    dur = time.monotonic() - t0
    rec.state["kmemleak"] = {"leaks": len(blocks), "duration_s": round(dur, 3)}
    kmsg(f"{protocol.MARK_END} {protocol.KMEMLEAK_ID} {outcome} {dur:.3f}s{protocol.MARK_TAIL}")


def root_mount(mounts="/proc/self/mounts"):
    """The guest's '/' line of the mount table: how the root came (9p cache mode, virtiofs)."""
    try:
        with open(mounts) as fh:
            return next((ln.strip() for ln in fh if ln.split()[1:2] == ["/"]), "")
    except OSError:
        return ""


def dump_dmesg(outdir):
    """The kernel log as the guest sees it at the end (the host also has the console)."""
    lines = []
    if KMSG != "/dev/kmsg":
        return
    try:
        fd = os.open(KMSG, os.O_RDONLY | os.O_NONBLOCK)
        try:
            while True:
                try:
                    rec = os.read(fd, 8192)
                except BlockingIOError:
                    break
                except OSError:  # EPIPE: record overwritten while reading; go on
                    continue
                if not rec:
                    break
                prefix, _, msg = rec.decode(errors="replace").partition(";")
                parts = prefix.split(",")
                ts = int(parts[2]) / 1e6 if len(parts) > 2 else 0.0
                lines.append(f"[{ts:12.6f}] {msg.splitlines()[0] if msg else ''}")
        finally:
            os.close(fd)
    except OSError as e:
        lines.append(f"(could not read /dev/kmsg: {e})")
    with open(os.path.join(outdir, protocol.DMESG), "w") as fh:
        fh.write("\n".join(lines) + "\n")


WATCH_TEST_ENV = "WQH_WATCH_TEST"
WATCH_TEST_SKIP_ENV = "WQH_WATCH_TEST_SKIP"


def watch_test_env(plan):
    """The environment guest-tests/test_clients.py reads for the kernel's watch_test sample
    (harness/watch_test_build.py built it on the host; the guest sees the host's files).
    None: the variable is removed (one of the two is set, never both)."""
    wt = plan.get("watch_test")
    if not wt:
        return {}
    if wt.get("path"):
        return {WATCH_TEST_ENV: wt["path"], WATCH_TEST_SKIP_ENV: None}
    return {WATCH_TEST_ENV: None,
            WATCH_TEST_SKIP_ENV: wt.get("skip") or "the host gave no watch_test and no reason"}


def main(argv):
    if len(argv) != 1:
        print("usage: python -m harness.guest.agent PLAN.json", file=sys.stderr)
        return 2
    with open(argv[0]) as fh:
        plan = json.load(fh)
    outdir = plan["results_dir"]
    global KMSG
    KMSG = plan.get("kmsg", KMSG)  # host-side tests point this at a file
    leakpath = plan.get("kmemleak_path")  # host-side tests point this at a fake
    leaks = plan.get("kmemleak", False) and kmemleak.available(leakpath)
    import pytest

    # Where a guest test may leave files for the host (the VM's guest/ artifacts directory).
    os.environ["WQH_GUEST_OUT"] = outdir
    for name, value in watch_test_env(plan).items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    rec = Recorder(outdir, plan["tests"])
    rec.state["root"] = root_mount()
    rec.state["python"] = sys.executable
    if leaks:
        # No scan before the tests (under KASAN, even alongside pytest's start, it cost 3 s):
        # the leak check ignores objects born before the first test began.
        hz = plan.get("hz") or 250  # only for the uptime fallback of jiffies_now

        def epoch():
            rec.leak_epoch = kmemleak.jiffies_now(hz)
        rec.before_first = epoch
    rec.save()
    # The repo is read-only in the guest: no cache, no bytecode.
    sys.dont_write_bytecode = True
    args = [*UNUSED_PLUGINS, "-o", "console_output_style=classic",
            "--tb=short", "-v", *(["-x"] if plan.get("fail_fast") else []),
            *[t["node"] for t in plan["tests"]]]
    rc = pytest.main(args, plugins=[rec])
    rec.state["pytest_exit"] = int(rc)
    rec.wait_first()
    if leaks:
        check_leaks(rec, leakpath)
    rec.state["done"] = True
    rec.save()
    dump_dmesg(outdir)
    kmsg(protocol.MARK_DONE)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
