"""One `wqh run`: scenarios -> kernels -> one VM per kernel and VM shape -> verdicts."""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import itertools
import json
import os
import shlex
import subprocess
import sys
import sysconfig
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from harness import accel as accel_mod
from harness import build as build_mod
from harness import config, patches, procs, report, results, shard, source, symbolize, verdict, vm
from harness import watch_test_build
from harness.errors import WqhError
from harness.guest import protocol
from harness.paths import GUEST_TESTS, REPO
from harness.results import Outcome
from harness.scenario import Scenario, TestRef, VMShape

# Timeout multipliers: a sanitizer slows the guest, TCG is the baseline, KVM is faster.
SANITIZER_FACTORS = {"KASAN": 2.5, "DEBUG_KMEMLEAK": 1.5, "PROVE_LOCKING": 1.5, "KCSAN": 3.0}
KVM_FACTOR = 0.5
BOOT_ALLOWANCE_S = 90.0  # boot + agent start, under TCG on a plain kernel
START_SILENCE_S = 150.0  # longest silence before the first test (boot, Python, collection)


@dataclass
class RunOptions:
    kernel: str | None = None
    kernels: list[str] = field(default_factory=list)  # a repeated --kernel: every scenario on each
    out: Path | None = None
    accel: str = "auto"
    jobs: int | None = None
    echo: bool = False
    force_build: bool = False
    vms: int | None = None  # VMs at once; None: default_vms()
    shard: dict | None = None  # shard.Plan.describe() of a `--shard K/N` run
    durations: dict | None = None  # (scenario, test) -> seconds of an earlier run
    build_only: bool = False
    strict: bool = False  # flaky fails the gate
    kernel_source: source.KernelSource | None = None  # instead of resolving `kernel` (bisect)
    retry_failed: int = 0  # re-runs of a failed test in a fresh VM (a pass then: flaky)
    known_issues: object | None = None  # known_issues.KnownIssues: waivers applied at the end
    reboot: bool = True  # a fresh VM for the tests a dead VM left; mutate: the dead VM is enough
    fail_fast: bool = False  # the guest stops at its first failure (pytest -x); mutate


@dataclass
class KernelGroup:
    fragments: tuple[Path, ...]
    patches: tuple[Path, ...]
    scenarios: list[Scenario] = field(default_factory=list)
    full_config: Path | None = None  # a full .config (kernel.config / --config-file)
    sources: tuple[str, ...] = ()  # its scenarios' kernel.sources (() for the run's kernels)
    source: source.KernelSource | None = None  # the tree it is built from
    version: str = ""  # that tree's kernel version (6.1.192)


def default_out_dir() -> Path:
    base = Path.cwd() / "wqh-results"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    d = base / stamp
    n = 1
    while d.exists():
        n += 1
        d = base / f"{stamp}-{n}"
    return d


# An oops kills the task that hit it, often with locks held: the guest then limps on and
# reads as a hang after the no-output timeout. Panicking ends the VM at once with the report
# on the console; sanitizer reports and WARNINGs are not oopses and do not panic.
GUEST_CMDLINE = ("oops=panic",)


def guest_cmdline(cfg: config.ConfigResult, own: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The VM's kernel command line: ours, then OWN (a full config's own settings, e.g.
    syzbot's panic_on_warn=1, then the scenario's vm.cmdline, e.g. lsm=smack)."""
    # KASAN reports only its first bug unless told otherwise; every test deserves its own.
    extra = ("kasan_multi_shot",) if cfg.enabled("KASAN") else ()
    return GUEST_CMDLINE + extra + tuple(own)


def time_factor(cfg: config.ConfigResult, acc: accel_mod.Accel) -> float:
    f = KVM_FACTOR if acc.kvm else 1.0
    for sym, k in SANITIZER_FACTORS.items():
        if cfg.enabled(sym):
            f *= k
    return f


def group_kernels(scenarios: list[Scenario]) -> list[KernelGroup]:
    groups: dict[tuple, KernelGroup] = {}
    for s in scenarios:
        full = s.kernel.config
        frags = () if full else config.fragment_list(list(s.kernel.fragments), s.file.parent)
        key = (frags, s.kernel.patches, full, s.kernel.sources)
        groups.setdefault(key, KernelGroup(frags, s.kernel.patches, full_config=full,
                                           sources=s.kernel.sources)).scenarios.append(s)
    return list(groups.values())


def kernels_of(groups: list[KernelGroup], given: list[source.KernelSource] | None,
               resolve=source.resolve) -> list[KernelGroup]:
    """Each group once per kernel it runs on, kernel by kernel (the order kernels are first
    named): the kernels GIVEN on the command line for every group, else a group's own
    kernel.sources, else the default. Each source is resolved (unpacked, cloned) once."""
    known: dict[str, source.KernelSource] = {}

    def get(spec: str | None) -> source.KernelSource:
        name = source.canonical(spec)
        if name not in known:
            known[name] = resolve(spec)
        return known[name]
    pairs = [(src, g) for g in groups
             for src in (given if given is not None else [get(s) for s in g.sources or (None,)])]
    by_kernel: dict[str, tuple[source.KernelSource, list[KernelGroup]]] = {}
    for src, g in pairs:
        by_kernel.setdefault(src.identity, (src, []))[1].append(g)
    out = []
    for src, gs in by_kernel.values():
        v = source.version(src)
        out += [dataclasses.replace(g, source=src, version=v, patches=patches.for_version(g.patches, v))
                for g in gs]
    return out


def _infra(scenarios: list[Scenario], kernel: str, msg: str, version: str = "") -> list[results.TestResult]:
    return [results.TestResult(scenario=s.name, test=t.id, kernel=kernel, outcome=results.INFRA,
                               expected=t.expect, message=msg, version=version)
            for s in scenarios for t in s.tests]


def _save_kernel_artifacts(out: Path, b: build_mod.BuildResult, cfg: config.ConfigResult) -> Path:
    d = out / "kernels" / b.key
    d.mkdir(parents=True, exist_ok=True)
    (d / ".config").write_text(cfg.dotconfig)
    (d / "config").write_text(cfg.dotconfig)  # visible without ls -a
    if b.log.exists():
        lines = b.log.read_text(errors="replace").splitlines()
        (d / "build-log-tail.txt").write_text("\n".join(lines[-200:]) + "\n")
    (d / "build.json").write_text(json.dumps({
        "key": b.key, "builddir": str(b.builddir), "bzimage": str(b.bzimage),
        "vmlinux": str(b.vmlinux), "reused": b.reused, "wall_s": b.wall_s, "cpu_s": b.cpu_s,
        "objects": b.objects, "phases": b.phases, "ccache": b.ccache,
        "fragments": [str(f) for f in cfg.fragments]}, indent=2) + "\n")
    return d


Item = tuple[Scenario, TestRef]


def run_vm(boots: "Boots", name: str, items: list[Item]) -> tuple[list[results.TestResult], vm.VMResult]:
    """One boot running ITEMS in order. Tests it never started come back as 'lost'."""
    job, out, acc, factor = boots.job, boots.out, boots.acc, boots.factor
    shape, b, cfg, kernel_id = job.shape, job.build, job.config, job.kernel_id
    vdir = out / name
    gdir = vdir / "guest"
    gdir.mkdir(parents=True, exist_ok=True)
    plan_tests = [{"id": t.id, "node": t.node} for _, t in items]
    order = [(s.name, t.id, t.expect, t.title) for s, t in items]
    hz = cfg.value("HZ")
    plan = {"results_dir": str(gdir), "tests": plan_tests, "kmemleak": cfg.enabled("DEBUG_KMEMLEAK"),
            "hz": int(hz) if hz and hz.isdigit() else None, "fail_fast": boots.fail_fast}
    if job.watch_test is not None and any(runs_clients(t) for _, t in items):
        plan["watch_test"] = job.watch_test  # the agent exports it as WQH_WATCH_TEST(_SKIP)
    plan_file = vdir / "plan.json"
    plan_file.write_text(json.dumps(plan, indent=1))
    # Pre-written as lost: a VM that dies reads as a failure, never as a pass.
    protocol.write_atomic(str(gdir / protocol.RESULTS), protocol.initial([t["id"] for t in plan_tests]))

    scs = list({id(s): s for s, _ in items}.values())
    no_output = max(s.timeouts.no_output for s in scs) * factor
    total = (sum(s.timeouts.total for s in scs) + BOOT_ALLOWANCE_S) * factor
    spec = vm.VMSpec(bzimage=b.bzimage, cpus=shape.cpus, memory=shape.memory,
                     rwdirs=(vdir,), append=guest_cmdline(cfg, job.cmdline + shape.cmdline),
                     no_output_s=no_output,
                     start_no_output_s=START_SILENCE_S * factor, total_s=total)
    warm_bytecode([t["node"] for t in plan_tests])
    exec_cmd = agent_command(plan_file)
    own = f", {' '.join(shape.cmdline)}" if shape.cmdline else ""
    print(f"wqh: booting {name} ({acc.name}, {shape.cpus} cpus, {shape.memory}{own}; {len(items)} tests; "
          f"no-output timeout {no_output:.0f}s, total {total:.0f}s)", flush=True)
    started = time.time()
    vres = vm.run(spec, acc, exec_cmd, vdir / "console.log", echo=boots.echo)
    ended = time.time()
    try:
        guest = protocol.read(str(gdir / protocol.RESULTS))
    except (OSError, ValueError):
        guest = None
    with open(vdir / "console.log", encoding="utf-8", errors="replace", newline="") as fh:
        text = fh.read()  # newline="": report line numbers match the file's
    sym = None
    if cfg.enabled("DEBUG_INFO") and b.vmlinux.is_file():
        # addr2line, not decode_stacktrace.sh: the same file:line, a fraction of the time.
        sym = symbolize.Symbolizer.for_build(b.vmlinux, use_script=False)
    # The console is parsed once; its reports go to the verdicts, the leak check and reports.json
    # (every report unmerged, with its text: what repro and the wall count).
    found = report.parse_text(text)
    per_owner = verdict.reports_by_owner(found)
    if sym is not None:
        sym.symbolize([r for reps in per_owner.values() for r in reps])
    write_reports(vdir / "reports.json", found)
    rs = verdict.decide(order, guest, vres, per_owner, kernel_id, name)
    for sc in scs:
        leak = verdict.leak_check(sc.name, sc.leak, guest, per_owner, kernel_id, name)
        if leak is not None:
            rs.append(leak)
    for r in rs:
        r.version = job.version
    (vdir / "vm.json").write_text(json.dumps({
        "end": vres.end, "exit_status": vres.exit_status, "duration_s": vres.duration_s,
        "first_test_s": vres.first_test_s, "started_at": started, "ended_at": ended,
        "accel": acc.name, "accel_reason": acc.reason, "append": list(spec.append),
        "agent_done": bool(guest and guest.get("done")), "notes": vres.notes}, indent=2) + "\n")
    for note in vres.notes:
        print(f"wqh: {name}: {note}", flush=True)
    return rs, vres


def write_reports(path: Path, found: list) -> None:
    """Every report of a VM's console, unmerged, with its text (repro and the wall count them)."""
    path.write_text(json.dumps(
        [{"title": r.title, "type": r.type, "test": r.test, "line": r.line, "corrupted": r.corrupted,
          "alt_titles": r.alt_titles, "text": r.text} for r in found], indent=1) + "\n")


def agent_command(plan_file: Path) -> str:
    """The guest's command line: our interpreter on the repo, without `site`.

    `site` costs more than a second per start under TCG (it runs the .pth hooks, the editable
    install's finder among them, which the guest does not need: the repo is on PYTHONPATH).
    The environment's site-packages go on PYTHONPATH instead; pytest's plugin autoload, a scan
    of every installed distribution, is off because the guest uses no third-party plugin."""
    paths = [str(REPO)] + list(dict.fromkeys(sysconfig.get_path(k) for k in ("purelib", "platlib")))
    env = {"PYTHONPATH": os.pathsep.join(paths), "PYTHONDONTWRITEBYTECODE": "1",
           "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    assign = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    return (f"cd {shlex.quote(str(REPO))} && {assign} {shlex.quote(sys.executable)} -S "
            f"-m harness.guest.agent {shlex.quote(str(plan_file))}")


def warm_bytecode(nodes: list[str]) -> None:
    """Compile the agent and the tests on the host, pytest's assertion rewriting included.

    The guest sees the repo read-only and runs the same interpreter: it loads these caches
    instead of compiling and rewriting every module itself, which under TCG costs tens of
    seconds of the boot-to-first-test time. Best effort: a failure only costs that time."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    files = sorted({n.split("::")[0] for n in nodes})
    procs.run([sys.executable, "-m", "compileall", "-q", str(REPO / "harness")], env=env,
              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
               "--rootdir", str(REPO), *files], env=env, cwd=str(REPO),
              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def retry_items(items: list[Item], lost_ids: list[str]) -> list[Item]:
    """The items to run again for the results the VM left 'lost'.

    A requested id that expanded in the guest (a parametrized test, a whole file) may have run
    in part: only its lost expansions are retried, each by its own node id.
    """
    out: list[Item] = []
    for s, t in items:
        mine = [i for i in lost_ids if i == t.id or i.startswith((t.id + "[", t.id + "::"))]
        if mine == [t.id]:
            out.append((s, t))
        else:
            out += [(s, dataclasses.replace(t, id=i)) for i in mine]
    return out


def run_items(boots: "Boots", items: list[Item]) -> tuple[list[results.TestResult], list[vm.VMResult]]:
    """Run ITEMS, booting a fresh VM for the tests a dead VM never started.

    A VM that started no test at all is an infrastructure failure: no retry.
    """
    done: list[results.TestResult] = []
    vms: list[vm.VMResult] = []
    pending = list(items)
    boot_retried = False
    while pending:
        if procs.stopping():
            break  # interrupted: the main thread reports what never ran
        rs, vres = run_vm(boots, boots.next_name(), pending)
        vms.append(vres)
        lost_ids = [r.test for r in rs if r.outcome == protocol.LOST]
        started = [r for r in rs if r.outcome != protocol.LOST]
        done += started
        if not lost_ids:
            break
        if not started and not boot_retried and vres.end in ("exited", "panic"):
            # QEMU under TCG now and then dies on its own during boot (seen: an assertion in
            # hw/pci/msix.c): one more boot tells a flake from a kernel that cannot boot.
            boot_retried = True
            print(f"wqh: VM ended ({vres.end}) before the first test; booting it once more", flush=True)
            continue
        if not started:
            for r in rs:
                r.outcome = results.INFRA
                r.message = f"never ran: the VM ended ({vres.end}) before any test started"
            done += rs
            break
        if not boots.reboot and any(not r.as_expected for r in started):
            print(f"wqh: VM ended ({vres.end}); {len(lost_ids)} tests left not run (no fresh VM: "
                  f"the test the VM died in decides)", flush=True)
            for r in rs:
                if r.outcome == protocol.LOST:
                    r.outcome = results.INFRA
                    r.message = f"not run: the VM ended ({vres.end}) in an earlier test (no fresh VM)"
                    done.append(r)
            break
        pending = retry_items(pending, lost_ids)
        print(f"wqh: VM ended ({vres.end}); {len(pending)} tests left, booting a fresh VM", flush=True)
    # Every boot runs its own leak check: a scenario keeps one, the one that found leaks.
    checks = [r for r in done if r.test == protocol.KMEMLEAK_ID]
    for sc in {r.scenario for r in checks}:
        keep = max((r for r in checks if r.scenario == sc), key=lambda r: bool(r.reports))
        done = [r for r in done if r.test != protocol.KMEMLEAK_ID or r.scenario != sc or r is keep]
    return done, vms


# What a retry may turn into flaky: a test that failed with no kernel report. A report is the
# kernel's own word and never flaky; an expected crash or skip is not retried.
RETRYABLE = (Outcome.FAIL, Outcome.HANG, Outcome.TIMEOUT)


def retry_failed(boots: "Boots", rs: list[results.TestResult], times: int) -> list[vm.VMResult]:
    """Run the job's failed tests again in fresh VMs, up to TIMES. A test that passes with no
    kernel report becomes flaky, its failures kept as attempts; one that fails again keeps
    its latest outcome. RS is updated in place; returns the extra boots."""
    vms: list[vm.VMResult] = []
    for _ in range(times):
        failing = [r for r in rs if r.outcome in RETRYABLE and not r.as_expected and not r.reports
                   and r.expected == Outcome.PASS and r.test != protocol.KMEMLEAK_ID]
        if not failing or procs.stopping():
            break
        items = retry_items(boots.job.items, [r.test for r in failing])
        print(f"wqh: retrying {len(failing)} failed tests of {boots.job.name} in a fresh VM", flush=True)
        again, more = run_items(boots, items)
        vms += more
        latest = {(r.scenario, r.test): r for r in again}
        for r in failing:
            n = latest.get((r.scenario, r.test))
            if n is None:
                continue
            r.attempts.append({"outcome": str(r.outcome), "vm": r.vm, "message": r.message[-500:]})
            if n.outcome == Outcome.PASS and not n.reports:
                r.outcome, r.vm, r.duration_s = Outcome.FLAKY, n.vm, n.duration_s
                r.message = (f"flaky: {' then '.join(a['outcome'] for a in r.attempts)}, then passed "
                             f"in {n.vm}. First failure: {r.attempts[0]['message']}")
            else:
                r.outcome, r.vm, r.duration_s, r.reports, r.message = (
                    n.outcome, n.vm, n.duration_s, n.reports, n.message)
    return vms


def run(scenarios: list[Scenario], opts: RunOptions) -> results.RunSummary:
    t0 = time.time()
    out = (opts.out or default_out_dir()).resolve()
    out.mkdir(parents=True, exist_ok=True)
    summary = results.RunSummary([], t0, t0, out, shard=opts.shard, strict=opts.strict)
    try:
        _run(scenarios, opts, summary)
    except (procs.Interrupted, Exception) as e:
        # Tests that had no verdict yet: say so rather than leave them out (an unexpected error
        # too: results.json must never read as a pass while wqh exits 2).
        why = (f"wqh was interrupted by {e}" if isinstance(e, procs.Interrupted)
               else f"wqh stopped on an internal error ({type(e).__name__})")
        decided = {(r.scenario, r.test) for r in summary.results}
        for s in scenarios:
            for t in s.tests:
                if (s.name, t.id) not in decided:
                    summary.results.append(results.TestResult(
                        scenario=s.name, test=t.id, kernel="", outcome=results.INFRA,
                        expected=t.expect, message=f"not run: {why}"))
        summary.interrupted = str(e) if isinstance(e, procs.Interrupted) else why
        raise
    finally:
        summary.finished = time.time()
        if opts.known_issues is not None:
            waive(opts.known_issues, summary)
        results.write_all(summary)
    return summary


def waive(known, summary: results.RunSummary) -> None:
    """Apply a known-issues file to a run's results; what it did goes to known-issues.json."""
    import datetime

    applied = known.apply(summary.results, datetime.date.today())
    for w in applied.warnings():
        print(f"wqh: warning: {w}", file=sys.stderr)
    if applied.matched or applied.expired:
        print(applied.text(), flush=True)
    summary.out_dir.mkdir(parents=True, exist_ok=True)
    (summary.out_dir / "known-issues.json").write_text(json.dumps(applied.to_json(), indent=2) + "\n")


def _finished_variant(src: source.KernelSource, g: KernelGroup):
    """(variant source, config, build) of a patched group already built, found lock-free."""
    if not g.patches:
        return None
    vsrc = patches.planned(src, g.patches)
    if vsrc is None:
        return None
    cfg, full = configure(src, g)  # no patched Kconfig: the base tree's config is the same
    b = build_mod.reusable(vsrc, cfg, patches.patch_hashes(g.patches))
    return (vsrc, cfg, full, b) if b else None


def configure(src: source.KernelSource, g: KernelGroup):
    """(ConfigResult, FullConfig or None): the group's fragments merged, or its full config
    prepared (as it is, plus what the VM and the guest tests need)."""
    if g.full_config is None:
        return config.merge(src, g.fragments), None
    from harness import fullconfig

    full = fullconfig.prepare(src, g.full_config, guest_tests=True)
    return full.config, full


@dataclass
class VMJob:
    """One boot to make: a kernel's tests of one VM shape (and one leak-checked scenario)."""

    name: str
    items: list[Item]
    shape: VMShape
    build: build_mod.BuildResult
    factor: float
    kernel_id: str
    scenarios: list[Scenario]
    config: config.ConfigResult
    cmdline: tuple[str, ...] = ()  # a full config's own settings (panic_on_warn=1), after ours
    version: str = ""  # the kernel's version, e.g. 6.1.192
    watch_test: dict | None = None  # WatchTest.plan() of its tree, for test_clients.py


@dataclass
class Boots:
    """What every boot of one job shares: where it writes, the accelerator, the timeout factor
    (the job's, stretched by the load), the console echo, and how the next boot is named."""

    out: Path
    job: VMJob
    acc: accel_mod.Accel
    factor: float
    echo: bool
    next_name: Callable[[], str]
    reboot: bool = True  # RunOptions.reboot
    fail_fast: bool = False  # RunOptions.fail_fast


def default_vms(host_cpus: int | None = None) -> int:
    """VMs at once: one per two host CPUs, and two even on two CPUs.

    Measured on 2 cores under TCG: two 2-vCPU guests side by side took 0.76 of the time of
    the same two in a row (a guest waits on 9p and timers much of its boot)."""
    n = host_cpus or os.cpu_count() or 1
    return 1 if n < 2 else max(2, min(8, n // 2))


def load_factor(vms: int, cpus_per_vm: int, host_cpus: int | None = None) -> float:
    """Timeouts stretch by how far the VMs at once oversubscribe the host's CPUs."""
    n = host_cpus or os.cpu_count() or 1
    return max(1.0, vms * cpus_per_vm / n)


# A VM that boots while a kernel builds: the build runs niced (BUILD_NICE) and only one VM runs
# beside it, yet the guest still shares the host's CPUs and caches with make. Its timeouts
# stretch by this much (see docs/performance.md, "First verdict early").
BUILD_NICE = 10
OVERLAP_FACTOR = 2.0


class Slots:
    """How many VMs may run now: WIDTH, or one while a kernel builds."""

    def __init__(self, width: int):
        self.width = width
        self.busy = 0
        self.building = False
        self.cv = threading.Condition()

    def set_building(self, on: bool) -> None:
        with self.cv:
            self.building = on
            self.cv.notify_all()

    @contextlib.contextmanager
    def vm(self):
        """Wait for a slot; yields whether a build runs beside this VM."""
        with self.cv:
            # Polled too: on Ctrl-C a waiting job must see the stop without a notify.
            while not (self.busy < (1 if self.building else self.width) or procs.stopping()):
                self.cv.wait(1.0)
            self.busy += 1
            overlap = self.building
        try:
            yield overlap
        finally:
            with self.cv:
                self.busy -= 1
                self.cv.notify_all()


@dataclass
class Kernel:
    """A group's kernel, built: its config, build, identity and, from a full config, what
    was changed in it and the settings of its own to boot with."""

    config: config.ConfigResult
    build: build_mod.BuildResult
    id: str
    full: object | None = None  # fullconfig.FullConfig

    @property
    def cmdline(self) -> tuple[str, ...]:
        return tuple(self.full.cmdline_params) if self.full is not None else ()


def _prepare(src: source.KernelSource, g: KernelGroup, opts: RunOptions,
             summary: results.RunSummary) -> Kernel:
    """A group's kernel, built now if not cached."""
    t = time.monotonic()
    found = None if opts.force_build else _finished_variant(src, g)
    if found:
        ksrc, cfg, full, b = found
    else:
        # A patched variant's slot must not switch under a build: hold the machine lock. A
        # plain tree needs none here (merges lock per source, finished builds are reused
        # lock-free), so a run on a built kernel never waits behind a build.
        with build_mod.machine_lock() if g.patches else contextlib.nullcontext():
            ksrc = patches.materialize(src, g.patches) if g.patches else src
            cfg, full = configure(ksrc, g)
            if full is not None:
                print(full.report_text(), flush=True)
            summary.timings["config_s"] = round(summary.timings.get("config_s", 0)
                                                + time.monotonic() - t, 2)
            b = build_mod.build(ksrc, cfg, patches.patch_hashes(g.patches), jobs=opts.jobs,
                                force=opts.force_build, nice=BUILD_NICE)
    return Kernel(cfg, b, f"{ksrc.identity}+{cfg.hash}", full)


CLIENTS_TESTS = GUEST_TESTS / "test_clients.py"


def runs_clients(t: TestRef) -> bool:
    """Whether a test is (in) guest-tests/test_clients.py, the one that runs watch_test."""
    return t.path.resolve() == CLIENTS_TESTS.resolve()


def watch_test_for(g: KernelGroup) -> watch_test_build.WatchTest | None:
    """samples/watch_queue/watch_test of the group's tree (cached; its plan entry carries the
    path or why there is none), or None when no test of the group runs it."""
    if not any(runs_clients(t) for s in g.scenarios for t in s.tests):
        return None
    touched = {f for p in g.patches for f in patches.touched_files(p)}
    if not touched & set(watch_test_build.INPUTS):
        # The patched variant's copies of the sample and headers are the base tree's.
        return watch_test_build.build(g.source.path, nice=BUILD_NICE)
    try:
        with build_mod.machine_lock():  # the variant slot holds this group's patches only under it
            tree = patches.materialize(g.source, g.patches).path
            return watch_test_build.build(tree, nice=BUILD_NICE)
    except WqhError as e:  # the tests of the kernel still run; test_clients.py skips watch_test
        return watch_test_build.WatchTest(None, f"no tree with the patches to build watch_test from: {e}")


def vm_shapes(g: KernelGroup) -> list[tuple[VMShape, list[Scenario]]]:
    """The boots a kernel group needs: one per VM shape, and one per leak-checked scenario
    (the leak check is per VM) or scenario that asks for its own VM."""
    shapes: dict[tuple, list[Scenario]] = {}
    for s in g.scenarios:
        shapes.setdefault((s.vm, s.name if s.leak or s.own_vm else None), []).append(s)
    return [(shape, scs) for (shape, _), scs in shapes.items()]


def verdict_line(rs: list[results.TestResult]) -> str:
    """'146 pass' or '140 pass, 2 fail (functional: test_x, ...)': a VM's verdict as it ends."""
    counts = Counter(r.outcome for r in rs)
    line = ", ".join(f"{n} {o}" for o, n in sorted(counts.items()))
    bad = [f"{r.scenario}: {r.test.split('/')[-1]}" for r in rs if not r.as_expected]
    if bad:
        line += " - unexpected: " + "; ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
    return line or "no tests"


def _run(scenarios: list[Scenario], opts: RunOptions, summary: results.RunSummary) -> None:
    """Kernels one at a time (a build owns the CPUs); each kernel's VMs boot as soon as it is
    built, beside the next build, so the first verdict comes after one build and one boot."""
    out = summary.out_dir
    given = opts.kernels or ([opts.kernel] if opts.kernel else [])
    if opts.kernel_source is not None:
        srcs: list[source.KernelSource] | None = [opts.kernel_source]
    else:
        srcs = source.resolve_all(given) if given else None
    # The same scenarios on each kernel, kernel by kernel (a scenario's kernel.sources unless
    # --kernel says otherwise). A patch with a copy rebased for a tree's version
    # (patches/6.12/...) is built as that copy.
    groups = kernels_of(group_kernels(scenarios), srcs)
    # Every group's patches apply to its tree, or nothing starts (an input error, exit 3).
    for g in groups:
        patches.check_applies(patches.tree_reader(g.source), g.patches, g.source.identity)
    if opts.durations:
        groups.sort(key=lambda g: -shard.weight(g.scenarios, opts.durations))  # longest first
    acc: accel_mod.Accel | None = None
    plans = [vm_shapes(g) for g in groups]
    n_vms = sum(map(len, plans))
    width = 1 if opts.echo else max(1, min(opts.vms or default_vms(), n_vms or 1))
    slots = Slots(width)
    summary.timings["vms_at_once"] = width  # type: ignore[assignment]
    if width > 1 and not opts.build_only:
        cpus = max(shape.cpus for p in plans for shape, _ in p)
        print(f"wqh: {n_vms} VMs, {width} at once (timeouts x{load_factor(width, cpus):.1f}; "
              f"x{OVERLAP_FACTOR:.1f} for one beside a build)", flush=True)
    # Boots are numbered in the order they are planned; a boot after a dead VM draws the next
    # free number (count() is atomic under the GIL, shared by the threads).
    names = itertools.count(1)
    jobs: list[tuple[VMJob, concurrent.futures.Future]] = []

    def run_job(job: VMJob):
        with slots.vm() as overlap:
            own = iter([job.name])
            factor = job.factor * (OVERLAP_FACTOR if overlap else load_factor(width, job.shape.cpus))
            if overlap:
                print(f"wqh: {job.name} boots while a kernel builds (timeouts x{OVERLAP_FACTOR:.1f})",
                      flush=True)

            def next_name() -> str:
                return next(own, None) or f"vm{next(names)}-{job.build.key[:8]}"
            boots = Boots(out, job, acc, factor, opts.echo, next_name, opts.reboot, opts.fail_fast)
            rs, vms = run_items(boots, job.items)
            if opts.retry_failed:
                vms += retry_failed(boots, rs, opts.retry_failed)
        summary.timings.setdefault("first_verdict_s", round(time.time() - summary.started, 2))
        print(f"wqh: {job.name} done: {verdict_line(rs)}", flush=True)
        return rs, vms

    pool = None if opts.build_only else concurrent.futures.ThreadPoolExecutor(
        max_workers=width, thread_name_prefix="vm")
    try:
        for i, g in enumerate(groups):
            kernel_id = g.source.identity
            slots.set_building(True)
            try:
                k = _prepare(g.source, g, opts, summary)
                wt = None if opts.build_only else watch_test_for(g)
            except WqhError as e:
                print(f"wqh: {e}", file=sys.stderr)
                summary.results += _infra(g.scenarios, kernel_id, str(e), g.version)
                continue
            finally:
                slots.set_building(False)
            cfg, b, kernel_id = k.config, k.build, k.id
            kdir = _save_kernel_artifacts(out, b, cfg)
            if k.full is not None:
                k.full.save(kdir)  # changes.json / changes.txt: what differs from the file, by cause
            phases = ", ".join(f"{ph} {v:.0f}s" for ph, v in b.phases.items())
            how = ("reused" if b.reused else
                   f"built in {b.wall_s:.0f}s wall, {b.cpu_s:.0f}s CPU, {b.objects} objects ({phases})")
            if b.seeded_from:
                how += ", " + b.seed_note
            print(f"wqh: kernel {b.key} {how} ({b.bzimage})", flush=True)
            summary.timings["build_s"] = summary.timings.get("build_s", 0) + b.wall_s
            summary.kernels[b.key] = {"identity": kernel_id, "artifacts": str(kdir),
                                      "reused": b.reused, "build_wall_s": b.wall_s,
                                      "version": g.version}
            if wt is not None:
                print(f"wqh: watch_test {'built' if wt.built else 'cached'}: {wt.path}" if wt.path
                      else f"wqh: no watch_test (test_clients.py skips it): {wt.reason}", flush=True)
            if pool is None:
                continue
            if acc is None:
                acc = accel_mod.choose(b.bzimage, opts.accel)
                print(f"wqh: accelerator {acc.name}: {acc.reason}", flush=True)
                summary.timings["accel"] = acc.name  # type: ignore[assignment]
            factor = time_factor(cfg, acc)
            for shape, scs in plans[i]:
                items = [(s, t) for s in scs for t in s.tests]
                job = VMJob(f"vm{next(names)}-{b.key[:8]}", items, shape, b, factor, kernel_id, scs,
                            cfg, k.cmdline, g.version,
                            wt.plan() if wt is not None and any(runs_clients(t) for _, t in items)
                            else None)
                jobs.append((job, pool.submit(run_job, job)))
        if pool is None:
            return
        for job, fut in jobs:  # results in job order, whatever finishes first
            try:
                rs, vms = fut.result()
            except WqhError as e:
                print(f"wqh: {e}", file=sys.stderr)
                summary.results += _infra(job.scenarios, job.kernel_id, str(e))
                continue
            summary.results += rs
            for vres in vms:
                summary.timings["vm_s"] = round(summary.timings.get("vm_s", 0) + vres.duration_s, 2)
                if vres.first_test_s is not None and "boot_to_first_test_s" not in summary.timings:
                    summary.timings["boot_to_first_test_s"] = round(vres.first_test_s, 2)
    finally:
        if pool is not None:
            # On Ctrl-C the signal handler has killed every VM; boots not begun never begin.
            pool.shutdown(wait=True, cancel_futures=True)
