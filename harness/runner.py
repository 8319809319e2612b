"""One `wqh run`: scenarios -> kernels -> one VM per kernel and VM shape -> verdicts."""

from __future__ import annotations

import json
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import accel as accel_mod
from harness import build as build_mod
from harness import config, results, source, verdict, vm
from harness.errors import WqhError
from harness.guest import protocol
from harness.paths import REPO
from harness.scenario import Scenario, VMShape

# Timeout multipliers: a sanitizer slows the guest, TCG is the baseline, KVM is faster.
SANITIZER_FACTORS = {"KASAN": 2.5, "DEBUG_KMEMLEAK": 1.5, "PROVE_LOCKING": 1.5, "KCSAN": 3.0}
KVM_FACTOR = 0.5
BOOT_ALLOWANCE_S = 90.0  # boot + agent start, under TCG on a plain kernel


@dataclass
class RunOptions:
    kernel: str | None = None
    out: Path | None = None
    accel: str = "auto"
    jobs: int | None = None
    echo: bool = False
    force_build: bool = False


@dataclass
class KernelGroup:
    fragments: tuple[Path, ...]
    patches: tuple[Path, ...]
    scenarios: list[Scenario] = field(default_factory=list)


def default_out_dir() -> Path:
    base = Path.cwd() / "wqh-results"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    d = base / stamp
    n = 1
    while d.exists():
        n += 1
        d = base / f"{stamp}-{n}"
    return d


def time_factor(cfg: config.ConfigResult, acc: accel_mod.Accel) -> float:
    f = KVM_FACTOR if acc.kvm else 1.0
    for sym, k in SANITIZER_FACTORS.items():
        if cfg.enabled(sym):
            f *= k
    return f


def group_kernels(scenarios: list[Scenario]) -> list[KernelGroup]:
    groups: dict[tuple, KernelGroup] = {}
    for s in scenarios:
        frags = config.fragment_list(list(s.kernel.fragments), s.file.parent)
        key = (frags, s.kernel.patches)
        groups.setdefault(key, KernelGroup(frags, s.kernel.patches)).scenarios.append(s)
    return list(groups.values())


def _infra(scenarios: list[Scenario], kernel: str, msg: str) -> list[results.TestResult]:
    return [results.TestResult(scenario=s.name, test=t.id, kernel=kernel, outcome=results.INFRA,
                               expected=t.expect, message=msg)
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


def run_vm(out: Path, name: str, scenarios: list[Scenario], shape: VMShape,
           b: build_mod.BuildResult, acc: accel_mod.Accel, factor: float, kernel_id: str,
           echo: bool) -> tuple[list[results.TestResult], vm.VMResult | None]:
    vdir = out / name
    gdir = vdir / "guest"
    gdir.mkdir(parents=True, exist_ok=True)
    plan_tests = []
    order = []
    for s in scenarios:
        for t in s.tests:
            plan_tests.append({"id": t.id, "node": t.node})
            order.append((s.name, t.id, t.expect))
    plan = {"results_dir": str(gdir), "tests": plan_tests}
    plan_file = vdir / "plan.json"
    plan_file.write_text(json.dumps(plan, indent=1))
    # Pre-written as lost: a VM that dies reads as a failure, never as a pass.
    protocol.write_atomic(str(gdir / protocol.RESULTS), protocol.initial([t["id"] for t in plan_tests]))

    no_output = max(s.timeouts.no_output for s in scenarios) * factor
    total = (sum(s.timeouts.total for s in scenarios) + BOOT_ALLOWANCE_S) * factor
    spec = vm.VMSpec(bzimage=b.bzimage, cpus=shape.cpus, memory=shape.memory,
                     rwdirs=(vdir,), no_output_s=no_output, total_s=total)
    py = shlex.quote(sys.executable)
    exec_cmd = (f"cd {shlex.quote(str(REPO))} && PYTHONPATH={shlex.quote(str(REPO))} "
                f"PYTHONDONTWRITEBYTECODE=1 {py} -m harness.guest.agent {shlex.quote(str(plan_file))}")
    print(f"wqh: booting {name} ({acc.name}, {shape.cpus} cpus, {shape.memory}; "
          f"no-output timeout {no_output:.0f}s, total {total:.0f}s)", flush=True)
    vres = vm.run(spec, acc, exec_cmd, vdir / "console.log", echo=echo)
    try:
        guest = protocol.read(str(gdir / protocol.RESULTS))
    except (OSError, ValueError):
        guest = None
    text = (vdir / "console.log").read_text(errors="replace")
    rs = verdict.decide(order, guest, vres, text, kernel_id, name)
    (vdir / "vm.json").write_text(json.dumps({
        "end": vres.end, "exit_status": vres.exit_status, "duration_s": vres.duration_s,
        "first_test_s": vres.first_test_s, "accel": acc.name, "accel_reason": acc.reason,
        "agent_done": bool(guest and guest.get("done"))}, indent=2) + "\n")
    return rs, vres


def run(scenarios: list[Scenario], opts: RunOptions) -> results.RunSummary:
    t0 = time.time()
    out = (opts.out or default_out_dir()).resolve()
    out.mkdir(parents=True, exist_ok=True)
    summary = results.RunSummary([], t0, t0, out)
    try:
        _run(scenarios, opts, summary)
    finally:
        summary.finished = time.time()
        results.write_all(summary)
    return summary


def _run(scenarios: list[Scenario], opts: RunOptions, summary: results.RunSummary) -> None:
    out = summary.out_dir
    src = source.resolve(opts.kernel)
    acc: accel_mod.Accel | None = None
    vm_index = 0
    for g in group_kernels(scenarios):
        kernel_id = src.identity
        try:
            t = time.monotonic()
            cfg = config.merge(src, g.fragments)
            summary.timings["config_s"] = summary.timings.get("config_s", 0) + round(time.monotonic() - t, 2)
            kernel_id = f"{src.identity}+{cfg.hash}"
            if g.patches:
                raise WqhError("kernel.patches is not supported by this version of wqh",
                               hint="build the patched tree yourself and pass it with --kernel")
            b = build_mod.build(src, cfg, jobs=opts.jobs, force=opts.force_build)
        except WqhError as e:
            print(f"wqh: {e}", file=sys.stderr)
            summary.results += _infra(g.scenarios, kernel_id, str(e))
            continue
        kdir = _save_kernel_artifacts(out, b, cfg)
        how = "reused" if b.reused else f"built in {b.wall_s:.0f}s wall, {b.cpu_s:.0f}s CPU"
        print(f"wqh: kernel {b.key} {how} ({b.bzimage})", flush=True)
        summary.timings["build_s"] = summary.timings.get("build_s", 0) + b.wall_s
        summary.kernels[b.key] = {"identity": kernel_id, "artifacts": str(kdir),
                                  "reused": b.reused, "build_wall_s": b.wall_s}
        if acc is None:
            acc = accel_mod.choose(b.bzimage, opts.accel)
            print(f"wqh: accelerator {acc.name}: {acc.reason}", flush=True)
            summary.timings["accel"] = acc.name  # type: ignore[assignment]
        factor = time_factor(cfg, acc)
        shapes: dict[VMShape, list[Scenario]] = {}
        for s in g.scenarios:
            shapes.setdefault(s.vm, []).append(s)
        for shape, scs in shapes.items():
            vm_index += 1
            name = f"vm{vm_index}-{b.key[:8]}"
            try:
                rs, vres = run_vm(out, name, scs, shape, b, acc, factor, kernel_id, opts.echo)
            except WqhError as e:
                print(f"wqh: {e}", file=sys.stderr)
                summary.results += _infra(scs, kernel_id, str(e))
                continue
            summary.results += rs
            summary.timings["vm_s"] = summary.timings.get("vm_s", 0) + vres.duration_s
            if vres.first_test_s is not None and "boot_to_first_test_s" not in summary.timings:
                summary.timings["boot_to_first_test_s"] = round(vres.first_test_s, 2)


def copy_artifact(src: Path, dst: Path) -> None:
    if src.exists():
        shutil.copy2(src, dst)
