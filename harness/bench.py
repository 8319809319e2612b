"""`wqh bench --out DIR`: figures with their own baselines, measured in the same run.

- cold build (wall, CPU) of the default config vs `vng --kconfig` on the same tree,
  both without ccache, each in a fresh build directory;
- boot to first test of wqh's VM vs a bare `vng --exec true` of the same kernel (medians of
  --samples runs, interleaved);
- the warm re-run of smoke.yaml (whole `wqh run` wall time);
- the functional suite, default and KASAN+kmemleak kernels: time in the guest, whole run, boot;
- the edit loop: kernel/watch_queue.c changed in a private working copy of the tree, then
  `wqh run scenarios/functional.yaml --kernel COPY` (incremental make, boot, suite) to verdict;
- boot to first test of every sanitizer profile whose kernel is built (smoke test on it);
- the whole default run (`wqh run`, every scenario of scenarios/), warm, against the same
  run one VM at a time; cold (from an empty cache, building every kernel) with --cold-run;
- `wqh parse` throughput on a ~100 MB log of real console logs;
- with --versions A --versions B: only the cold build of the default config on each source
  (e.g. debian:6.1 and debian:6.12), each against the first.
Figures go to DIR/bench.json: {name, value, unit, baseline, ratio, target}.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from harness import accel, build, config, procs, source, vm
from harness.paths import SCENARIOS


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str | None = None
    ratio: float | None = None
    target: str | None = None
    samples: list[float] | None = None  # the measurements a median was taken of

    def line(self) -> str:
        s = f"{self.name:<34} {self.value:10.2f} {self.unit}"
        if self.baseline is not None:
            s += f"   baseline {self.baseline_name} {self.baseline:.2f} {self.unit}, ratio {self.ratio:.3f}"
        if self.target:
            s += f"   target {self.target}"
        if self.samples and len(self.samples) > 1:
            s += f"   (median of {len(self.samples)}: {min(self.samples):.2f}-{max(self.samples):.2f})"
        return s


def median(xs: list[float]) -> float:
    ys = sorted(xs)
    mid = len(ys) // 2
    return ys[mid] if len(ys) % 2 else (ys[mid - 1] + ys[mid]) / 2


def _timed(cmd: list[str], **kw) -> tuple[int, float, float]:
    """(exit code, wall s, CPU s of the command and all its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    rc = procs.run(cmd, **kw)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return rc, wall, cpu


def _cold_build_ours(src: source.KernelSource, work: Path, log) -> tuple[float, float]:
    cfg = config.merge(src, config.fragment_list(["watch-queue"]))
    out = work / "ours"
    out.mkdir()
    (out / ".config").write_text(cfg.dotconfig)
    env = dict(os.environ, CCACHE_DISABLE="1")
    cmd = ["make", "-C", str(src.path), f"O={out}", f"-j{os.cpu_count() or 2}", "bzImage"]
    rc, wall, cpu = _timed(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    if rc != 0:
        raise RuntimeError(f"cold build of our config failed (exit {rc})")
    return wall, cpu


def _version_label(src: source.KernelSource, spec: str) -> str:
    """The name a --versions figure carries: the series of debian:X.Y, else the tree's version
    (its Makefile's), else the spec."""
    if spec.startswith(source.DEBIAN_PREFIX):
        return spec[len(source.DEBIAN_PREFIX):]
    v = source.version(src)
    return spec if v == "unknown" else v


def _cold_versions(a, out: Path, log, add) -> None:
    """The default config built cold (no ccache, a private O= directory) on each --versions
    source in turn, one after the other on this machine: wall and CPU per version, each
    against the first's (the same run's baseline)."""
    base: tuple[str, float, float] | None = None
    for spec in a.versions:
        src = source.resolve(spec)
        label = _version_label(src, spec)
        work = Path(tempfile.mkdtemp(prefix="wqh-bench-", dir=str(build.cache_dir())))
        try:
            print(f"bench: cold build of wqh's default config on {spec} ({label}, no ccache)...",
                  flush=True)
            wall, cpu = _cold_build_ours(src, work, log)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if base is None:
            base = (label, wall, cpu)
        add(Figure(f"cold_build_wall_{label}", wall, "s", base[1], f"{base[0]}'s", wall / base[1]))
        add(Figure(f"cold_build_cpu_{label}", cpu, "s", base[2], f"{base[0]}'s", cpu / base[2]))


def _cold_build_vng(src: source.KernelSource, work: Path, log) -> tuple[float, float]:
    out = work / "vng"
    out.mkdir()
    env = vm.vng_env()
    env["CCACHE_DISABLE"] = "1"
    # vng --kconfig writes the .config of its own minimal profile into O=.
    rc = procs.run([vm.vng_binary(), "--kconfig", f"O={out}"], cwd=src.path, env=env,
                   stdout=log, stderr=subprocess.STDOUT)
    if rc != 0 or not (out / ".config").exists():
        raise RuntimeError(f"vng --kconfig failed (exit {rc})")
    cmd = ["make", "-C", str(src.path), f"O={out}", f"-j{os.cpu_count() or 2}", "bzImage"]
    rc, wall, cpu = _timed(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    if rc != 0:
        raise RuntimeError(f"cold build of vng's config failed (exit {rc})")
    return wall, cpu


def _bare_boot(bz: Path, acc: accel.Accel, tuned_root: bool = False) -> float:
    """`vng --run BZ --exec true`, by default with vng's own root file system choice."""
    spec = vm.VMSpec(bz, cpus=2, memory="1G", no_output_s=120, total_s=300, tuned_root=tuned_root)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.monotonic()
        res = vm.run(spec, acc, "true", Path(d) / "console.log")
        if res.end != "exited":
            raise RuntimeError(f"bare vng boot ended with {res.end}")
        return time.monotonic() - t0


def _two_bare_boots(bz: Path, acc: accel.Accel, parallel: bool) -> float:
    """Wall time of two bare boots of the same kernel, one after the other or at once."""
    import threading

    errors: list[BaseException] = []

    def one():
        try:
            _bare_boot(bz, acc)
        except BaseException as e:  # noqa: BLE001 - re-raised below
            errors.append(e)

    t0 = time.monotonic()
    if parallel:
        ts = [threading.Thread(target=one) for _ in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    else:
        one()
        one()
    if errors:
        raise errors[0]
    return time.monotonic() - t0


def _wqh_run(out: Path, kernel: str | None, scenario: str = "smoke.yaml") -> tuple[float, dict]:
    cmd = [sys.executable, "-m", "harness", "run", str(SCENARIOS / scenario), "--out", str(out)]
    if kernel:
        cmd += ["--kernel", kernel]
    t0 = time.monotonic()
    rc = procs.run(cmd, stdout=subprocess.DEVNULL)
    wall = time.monotonic() - t0
    if rc != 0:
        raise RuntimeError(f"wqh run {scenario} failed (exit {rc}); see {out}")
    return wall, json.loads((out / "results.json").read_text())


def edit_tree(src: source.KernelSource) -> Path:
    """A private copy of SRC for the edit loop, kept in the cache between bench runs.

    The bench edits kernel/watch_queue.c the way a developer does, in a working tree built with
    `--kernel`; the tree it was given (or Debian's) is never touched."""
    root = build.cache_dir() / "bench"
    tree, stamp = root / "tree", root / "tree.identity"
    if tree.is_dir() and stamp.exists() and stamp.read_text() == src.identity:
        return tree
    root.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(tree, ignore_errors=True)
    tmp = root / "tree.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    if procs.run(["cp", "-a", f"{src.path}/.", str(tmp)]) != 0:
        raise RuntimeError(f"could not copy {src.path} to {tmp}")
    tmp.rename(tree)
    stamp.write_text(src.identity)
    return tree


def edit_watch_queue(orig_tree: Path, tree: Path) -> str:
    """TREE's kernel/watch_queue.c := ORIG_TREE's with a new line 2 (a stamped comment).

    Every later line moves, so the object really changes (__LINE__ in WARN_ON), as after a
    developer's edit; rewritten from the original each time, so edits never pile up."""
    orig = (orig_tree / "kernel" / "watch_queue.c").read_text().splitlines(keepends=True)
    stamp = f"/* wqh bench edit {time.time_ns()} */\n"
    (tree / "kernel" / "watch_queue.c").write_text("".join([orig[0], stamp, *orig[1:]]))
    return stamp


def _edit_loop(out: Path, src: source.KernelSource) -> tuple[float, dict, float]:
    """Change kernel/watch_queue.c in a working tree, then `wqh run functional.yaml --kernel
    TREE` to its verdict: make rebuilds one object and relinks, as after a developer's edit.

    Returns (wall s, results, wall s of the untimed first run that brought the tree's build
    up to date)."""
    tree = edit_tree(src)
    first, _ = _wqh_run(out / "run-edit-first", str(tree), "functional.yaml")
    edit_watch_queue(src.path, tree)
    wall, r = _wqh_run(out / "run-edit", str(tree), "functional.yaml")
    return wall, r, first


# Sanitizer profiles, as the scenarios and `wqh repro` build them.
PROFILES = {
    "kasan": ("watch-queue", "kasan", "debug-info"),
    "kasan_kmemleak": ("watch-queue", "kasan", "kmemleak", "debug-info"),
    "sanitizers": config.SANITIZER_FRAGMENTS,  # KASAN+kmemleak+lockdep+fault injection: the one CI builds
    "reports": ("watch-queue", "kasan", "kmemleak", "lockdep", "debug-info", "crashkit"),
    "kcsan": ("watch-queue", "kcsan", "debug-info"),
}


def _profile_boot(out: Path, kernel: str | None, src: source.KernelSource, name: str,
                  frags: tuple[str, ...], sample: int = 1) -> float | None:
    """Boot to first test of the smoke test on this profile's kernel; None if not built."""
    cfg = config.merge(src, config.fragment_list(list(frags), SCENARIOS))
    if build.reusable(src, cfg) is None:
        print(f"bench: profile {name}: kernel not built, skipped (wqh build "
              + " ".join(f"-f {f}" for f in frags) + ")", flush=True)
        return None
    scen = out / f"smoke-{name}.yaml"
    scen.write_text(f"name: smoke-{name}\nkernel:\n  fragments: [{', '.join(frags)}]\n"
                    "timeouts: {no_output: 240, total: 480}\n"
                    f"tests:\n  - {SCENARIOS.parent}/guest-tests/test_smoke.py::test_key_update_gives_one_record\n")
    _, r = _wqh_run(out / f"run-profile-{name}-{sample}", kernel, str(scen))
    return r["timings"].get("boot_to_first_test_s")


def _default_run(out: Path, kernel: str | None, cache: Path | None = None,
                 vms: int | None = None) -> float:
    """The whole `wqh run` of scenarios/ (every scenario), to its verdict."""
    cmd = [sys.executable, "-m", "harness", "run", "--out", str(out)]
    if vms:
        cmd += ["--vms", str(vms)]
    if kernel:
        cmd += ["--kernel", kernel]
    env = dict(os.environ, **({"WQH_CACHE": str(cache)} if cache else {}))
    t0 = time.monotonic()
    rc = procs.run(cmd, stdout=subprocess.DEVNULL, env=env)
    wall = time.monotonic() - t0
    if rc != 0:
        raise RuntimeError(f"wqh run (default) failed (exit {rc}); see {out}")
    return wall


def _profile_figures(a, out: Path, src: source.KernelSource, plain: float | None, add) -> None:
    """Boot to first test of each sanitizer profile whose kernel is built, against the default."""
    for name, frags in PROFILES.items():
        got = [b for i in range(a.samples)
               if (b := _profile_boot(out, a.kernel, src, name, frags, i + 1)) is not None]
        if got:
            b2f = median(got)
            add(Figure(f"boot_to_first_test_{name}", b2f, "s", plain, "default kernel",
                       b2f / plain if plain else None,
                       target="<= 25" if name == "kasan_kmemleak" else None, samples=got))


def _parse_throughput(out: Path, dense: bool) -> tuple[float, float]:
    """(MB/s of CPU time, MB) of report.parse_file on a ~100 MB log made of real console logs.

    Not dense: the full-run consoles of tests/data/reports (no report in them) one after the
    other, with one of the golden logs that hold reports after every MB of them (each of those
    in turn): the shape of a day of CI consoles. Dense: every golden log repeated, so that
    nearly every line is inside a report (the worst case)."""
    from harness import report

    logs = sorted((SCENARIOS.parent / "tests" / "data" / "reports").glob("*.log"))
    texts = {p: p.read_text(errors="replace") for p in logs}
    clean = [t for p, t in texts.items() if "\n# NO REPORT" in "\n" + t[:4096] and len(t) > 50_000]
    crashes = [t for t in texts.values() if "\n# TITLE:" in "\n" + t[:4096]]
    big = out / "parse-100mb.log"
    size = 0
    with big.open("w") as fh:
        i = 0
        while size < 100_000_000:
            if dense:
                chunk = "".join(texts.values())
            else:
                chunk = ""
                while len(chunk) < 1_000_000:
                    chunk += clean[i % len(clean)]
                    i += 1
                chunk += crashes[i % len(crashes)]
            fh.write(chunk)
            size += len(chunk)
    mb = big.stat().st_size / 1e6
    t0 = time.process_time()
    report.parse_file(big)
    dt = time.process_time() - t0
    big.unlink()
    return mb / dt, mb


def _parse_figures(out: Path) -> list[Figure]:
    rate, mb = _parse_throughput(out, dense=False)
    dense, _ = _parse_throughput(out, dense=True)
    return [Figure("parse_throughput", rate, "MB/s", target=">= 25"), Figure("parse_log_size", mb, "MB"),
            Figure("parse_throughput_dense", dense, "MB/s")]


def _parse_only(out: Path) -> int:
    figs = []
    for f in _parse_figures(out):
        figs.append(f)
        print(f.line(), flush=True)
    (out / "bench.json").write_text(json.dumps({"cpus": os.cpu_count(), "figures": [asdict(f) for f in figs]},
                                               indent=2) + "\n")
    print(f"bench: wrote {out / 'bench.json'}")
    return 0


def main(a) -> int:
    out: Path = a.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    figs: list[Figure] = []
    if a.parse_only:
        return _parse_only(out)
    src = source.resolve(a.kernel)
    log = (out / "bench-build.log").open("w")
    acc: accel.Accel | None = None

    def add(f: Figure) -> None:
        figs.append(f)
        print(f.line(), flush=True)
        write()  # after every figure: a bench cut short keeps what it measured

    def write() -> None:
        tmp = out / "bench.json.tmp"
        tmp.write_text(json.dumps({
            "accel": acc.name if acc else None, "kernel": src.identity, "cpus": os.cpu_count(),
            "figures": [asdict(f) for f in figs]}, indent=2) + "\n")
        tmp.replace(out / "bench.json")

    def finish() -> int:
        write()
        print(f"bench: wrote {out / 'bench.json'}")
        return 0

    if a.versions:
        _cold_versions(a, out, log, add)
        return finish()
    if not a.skip_cold and not a.boots_only:
        work = Path(tempfile.mkdtemp(prefix="wqh-bench-", dir=str(build.cache_dir())))
        try:
            print("bench: cold build of wqh's default config (no ccache)...", flush=True)
            w_ours, c_ours = _cold_build_ours(src, work, log)
            print("bench: cold build of vng --kconfig's config (no ccache)...", flush=True)
            w_vng, c_vng = _cold_build_vng(src, work, log)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        add(Figure("cold_build_cpu", c_ours, "s", c_vng, "vng --kconfig", c_ours / c_vng, "<= 0.40"))
        add(Figure("cold_build_wall", w_ours, "s", w_vng, "vng --kconfig", w_ours / w_vng))

    # First run builds (or reuses) the kernel; then warm re-runs and bare boots, interleaved
    # so that a slow spell of the host weighs on both sides; medians of --samples each.
    _wqh_run(out / "run-first", a.kernel)
    warms, firsts, bares, bares_tuned = [], [], [], []
    for i in range(a.samples):
        warm, res = _wqh_run(out / f"run-warm-{i + 1}", a.kernel)
        if acc is None:
            kinfo = next(iter(res["kernels"].values()))
            bz = Path(json.loads((Path(kinfo["artifacts"]) / "build.json").read_text())["bzimage"])
            acc = accel.choose(bz)
        warms.append(warm)
        if res["timings"].get("boot_to_first_test_s") is not None:
            firsts.append(res["timings"]["boot_to_first_test_s"])
        bares.append(_bare_boot(bz, acc))
        bares_tuned.append(_bare_boot(bz, acc, tuned_root=True))
    bare, tuned = median(bares), median(bares_tuned)
    first = median(firsts) if firsts else None
    add(Figure("warm_rerun_smoke", median(warms), "s", target="<= 30", samples=warms))
    if first is not None:
        add(Figure("boot_to_first_test", first, "s", bare, "bare vng --exec true", first / bare,
                   target="<= 1.10 x bare", samples=firsts))
    add(Figure("bare_vng_exec_true", bare, "s", samples=bares))
    add(Figure("bare_vng_exec_true_wqh_root", tuned, "s", bare, "bare vng --exec true",
               tuned / bare, samples=bares_tuned))
    # Do two TCG guests at once beat two in a row on this machine's cores?
    try:
        seq = _two_bare_boots(bz, acc, parallel=False)
        par = _two_bare_boots(bz, acc, parallel=True)
        add(Figure("two_boots_parallel", par, "s", seq, "two boots in a row", par / seq))
    except RuntimeError as e:
        print(f"bench: two VMs at once could not be measured: {e}", flush=True)

    if a.boots_only:
        _profile_figures(a, out, src, first, add)
        return finish()

    # The functional suite: the whole `wqh run` (kernel reused) and the suite's own time in the
    # guest (sum of the tests' durations; collection and boot excluded).
    for name, scen in (("functional", "functional.yaml"), ("functional_kasan", "functional-kasan.yaml")):
        if name == "functional_kasan" and a.skip_kasan:
            continue
        wall, r = _wqh_run(out / f"run-{name}", a.kernel, scen)
        suite = sum(t["duration_s"] or 0 for t in r["tests"])
        add(Figure(f"{name}_suite_in_guest", suite, "s", target="<= 60"))
        add(Figure(f"{name}_tests", len(r["tests"]), "tests"))
        add(Figure(f"{name}_wqh_run", wall, "s"))
        b2f = r["timings"].get("boot_to_first_test_s")
        if b2f is not None:
            add(Figure(f"{name}_boot_to_first_test", b2f, "s",
                       target="<= 25" if name == "functional_kasan" else None))
    wall, r, first_edit = _edit_loop(out, src)
    add(Figure("edit_loop_functional", wall, "s", target="<= 60"))
    kinfo = next(iter(r["kernels"].values()))
    add(Figure("edit_loop_build", kinfo["build_wall_s"], "s"))
    b2f = r["timings"].get("boot_to_first_test_s")
    if b2f is not None:
        add(Figure("edit_loop_boot_to_first_test", b2f, "s"))
    add(Figure("edit_loop_suite_in_guest", sum(t["duration_s"] or 0 for t in r["tests"]), "s"))
    add(Figure("edit_tree_first_run", first_edit, "s"))

    _profile_figures(a, out, src, first, add)

    one_vm = _default_run(out / "run-default-warm-1vm", a.kernel, vms=1)
    both = _default_run(out / "run-default-warm", a.kernel)
    add(Figure("default_run_warm", both, "s", one_vm, "one VM at a time", both / one_vm,
               target="<= 300"))
    if a.cold_run:
        cold_cache = Path(tempfile.mkdtemp(prefix="wqh-bench-cache-", dir=str(build.cache_dir().parent)))
        try:
            add(Figure("default_run_cold", _default_run(out / "run-default-cold", a.kernel, cold_cache),
                       "s", target="<= 1800"))
        finally:
            shutil.rmtree(cold_cache, ignore_errors=True)

    for f in _parse_figures(out):
        add(f)

    return finish()
