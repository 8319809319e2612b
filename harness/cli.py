"""Command line: wqh run | build | shell | list | wall | repro | verify | doctor | bench | parse."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import traceback
from pathlib import Path

from harness import procs, validate
from harness.config import SANITIZER_FRAGMENTS as _SANITIZER
from harness.errors import EXIT_INFRA, EXIT_INPUT, EXIT_OK, InputError, Problems, WqhError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # usage errors are input errors: exit 3
        self.print_usage(sys.stderr)
        self.exit(EXIT_INPUT, f"{self.prog}: error: {message}\n")


def bisect_runs() -> int:
    from harness import bisect

    return bisect.RUNS


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got '{text}'")
    return n


def _kernel_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kernel", metavar="PATH[@REF]",
                   help="kernel tree (default: Debian's linux-source-6.1, unpacked into the cache); "
                        "PATH@REF builds a git ref from a private checkout")
    p.add_argument("-j", "--jobs", type=int, help="make jobs (default: number of CPUs)")


def make_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="wqh", description="Build, boot and test the kernel's notification queue.")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)

    r = sub.add_parser("run", help="build the kernels scenarios need, boot them, run the tests")
    r.add_argument("scenarios", nargs="*", help="scenario files or directories (default: scenarios/)")
    r.add_argument("--kernel", action="append", default=[], metavar="PATH[@REF]|debian:X.Y",
                   help="kernel tree (default: debian:6.1, Debian's linux-source-6.1); PATH@REF "
                        "builds a git ref from a private checkout; repeat it to run every "
                        "scenario on each kernel (the results show a test x kernel matrix)")
    r.add_argument("-j", "--jobs", type=int, help="make jobs (default: number of CPUs)")
    r.add_argument("--out", type=Path, help="artifacts directory (default: ./wqh-results/<time>)")
    r.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto",
                   help="auto: KVM only if a probe boot works (cached per machine)")
    r.add_argument("--console", action="store_true", help="echo the guest console live")
    r.add_argument("--rebuild", action="store_true", help="run make even for a cached build")
    r.add_argument("--vms", type=_positive, metavar="N",
                   help="VMs to run at once (default: one per 2 CPUs, at least 2; "
                        "1 with --console); timeouts stretch with the load")
    r.add_argument("--config-file", type=Path, metavar="PATH",
                   help="a full kernel .config (e.g. syzbot's) for every scenario, instead of "
                        "its fragments: used as it is plus what the VM and the tests need")
    r.add_argument("--shard", metavar="K/N",
                   help="run only shard K of N: scenario groups (one kernel each) assigned stably "
                        "and balanced; merge the N results directories with `wqh merge`")
    r.add_argument("--durations", type=Path, metavar="RESULTS",
                   help="balance shards and order VMs by the test durations of an earlier run "
                        "(its results.json or directory; every shard must get the same file)")
    r.add_argument("--retry-failed", type=int, default=0, metavar="N",
                   help="run a failed test (no kernel report) again in a fresh VM, up to N times; "
                        "one that then passes is flaky and does not fail the run")
    r.add_argument("--strict", action="store_true", help="flaky tests fail the run")
    r.add_argument("--known-issues", type=Path, metavar="FILE",
                   help="known-issues.yaml: failures and reports it matches are waived (shown as "
                        "waived, not failing the run); expired entries are warned about")
    r.add_argument("--baseline", type=Path, metavar="RESULTS",
                   help="compare with an earlier run (results dir or results.json): exit 1 only "
                        "on failures that are new")
    r.add_argument("--kcidb", type=Path, metavar="FILE",
                   help="also write the run as a KCIDB v5 document (validated with kcidb-io)")
    r.add_argument("--origin", default="wqh", help="KCIDB origin of --kcidb (default: wqh)")
    r.add_argument("--build-only", action="store_true",
                   help="build the kernels the scenarios (or the shard) need; boot nothing")

    mg = sub.add_parser("merge", help="one results directory from the shards' (wqh run --shard K/N)")
    mg.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="results directories")
    mg.add_argument("--out", type=Path, required=True, help="the merged results directory")
    mg.add_argument("--kcidb", type=Path, metavar="FILE",
                   help="also write the run as a KCIDB v5 document (validated with kcidb-io)")
    mg.add_argument("--origin", default="wqh", help="KCIDB origin of --kcidb (default: wqh)")
    mg.add_argument("--known-issues", type=Path, metavar="FILE",
                    help="apply this known-issues.yaml to the merged results")
    mg.add_argument("--baseline", type=Path, metavar="RESULTS",
                    help="compare the merged results with an earlier run: exit 1 only on new failures")

    ex = sub.add_parser("export", help="a results directory in another format (KCIDB v5)")
    ex.add_argument("results", type=Path, metavar="RESULTS_DIR")
    ex.add_argument("--kcidb", action="store_true", required=True,
                    help="as a KCIDB v5 document, validated with kcidb-io's schema")
    ex.add_argument("--out", type=Path, metavar="FILE", help="write it here (default: stdout)")
    ex.add_argument("--origin", default="wqh", help="KCIDB origin (default: wqh)")
    ex.add_argument("--base-url", default="",
                    help="where the results directory is published (default: file:// links)")

    ga = sub.add_parser("gate", help="new, persisting and fixed failures of a run against a baseline")
    ga.add_argument("new", type=Path, metavar="NEW_RESULTS", help="results dir or results.json")
    ga.add_argument("--baseline", type=Path, required=True, metavar="RESULTS",
                    help="the baseline run's results dir or results.json")
    ga.add_argument("--json", action="store_true", help="print the comparison as JSON")

    b = sub.add_parser("build", help="build a kernel (base fragment + --fragment ...)")
    _kernel_opts(b)
    b.add_argument("--fragment", "-f", action="append", default=[],
                   help="kconfig fragment name (kconfigs/NAME.config) or path; repeatable; "
                        "default: watch-queue")
    b.add_argument("--patch", action="append", default=[], type=Path,
                   help="apply this patch (-p1) to a private variant of the tree; repeatable")
    b.add_argument("--config-file", type=Path, metavar="PATH",
                   help="a full kernel .config (e.g. syzbot's) instead of fragments: used as it "
                        "is plus what the VM needs to boot")
    b.add_argument("--rebuild", action="store_true", help="run make even for a cached build")

    s = sub.add_parser("shell", help="interactive guest on a built kernel")
    _kernel_opts(s)
    s.add_argument("--fragment", "-f", action="append", default=[])
    s.add_argument("--cpus", type=int, default=2)
    s.add_argument("--memory", default="1G")
    s.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto")

    ls = sub.add_parser("list", help="scenarios and their tests")
    ls.add_argument("scenarios", nargs="*")

    rp = sub.add_parser("repro", help="run a C reproducer N times in the guest; rate and titles")
    _kernel_opts(rp)
    rp.add_argument("file", type=Path, nargs="?",
                    help="C reproducer (e.g. syzbot's repro.c), built -static; or --report DIR")
    rp.add_argument("--report", type=Path, metavar="DIR",
                    help="a saved syzbot report: config, repro.c (repro.syz alone is not enough), "
                         "log, and the title (a 'title' file or the report email)")
    rp.add_argument("--config-file", type=Path, metavar="PATH",
                    help="a full kernel .config instead of fragments (default with --report: its config)")
    rp.add_argument("--config", action="append", default=[], metavar="FRAGMENT",
                    help="kconfig fragment (repeatable; default: the sanitizer kernel's, "
                         + " ".join(_SANITIZER) + ")")
    rp.add_argument("--patch", type=Path, action="append", default=[],
                    help="apply this patch to a private variant of the tree (repeatable)")
    rp.add_argument("--repeat", type=int, default=1, help="runs (default 1)")
    rp.add_argument("--timeout", type=float, default=60.0, help="seconds per run (default 60)")
    rp.add_argument("--out", type=Path, help="artifacts directory (default: ./wqh-results/<time>)")
    rp.add_argument("--accel", choices=["auto", "kvm", "tcg"], default="auto")

    vf = sub.add_parser("verify", help="a reproducer on the tree with and without a patch, N runs each")
    _kernel_opts(vf)
    vf.add_argument("file", type=Path, nargs="?",
                    help="C reproducer (e.g. syzbot's repro.c), built -static; or --report DIR")
    vf.add_argument("--report", type=Path, metavar="DIR",
                    help="a saved syzbot report: config, repro.c (repro.syz alone is not enough), "
                         "log, and the title (a 'title' file or the report email)")
    vf.add_argument("--config-file", type=Path, metavar="PATH",
                    help="a full kernel .config instead of fragments (default with --report: its config)")
    vf.add_argument("--fix", type=Path, action="append", default=[],
                    help="the fix: base = the tree, fixed = the tree + this patch (with --bug: "
                         "base = the tree + the bug, fixed = the tree + the bug + the fix)")
    vf.add_argument("--bug", type=Path, action="append", default=[],
                    help="the bug: base = the tree + this patch, fixed = the tree (or, with --fix, "
                         "the tree + this patch + the fix)")
    vf.add_argument("--config", action="append", default=[], metavar="FRAGMENT",
                    help="kconfig fragment (repeatable; default: the sanitizer kernel's, "
                         + " ".join(_SANITIZER) + ")")
    vf.add_argument("--repeat", type=int, default=10, help="runs on each tree (default 10)")
    vf.add_argument("--timeout", type=float, default=60.0, help="seconds per run (default 60)")
    vf.add_argument("--out", type=Path, help="artifacts directory (default: ./wqh-results/<time>)")
    vf.add_argument("--accel", choices=["auto", "kvm", "tcg"], default="auto")

    w = sub.add_parser("wall", help="the regression wall: every known bug re-introduced and fixed, "
                                    "as a table")
    _kernel_opts(w)
    w.add_argument("--racy", action="store_true",
                   help="also run the racy bugs' C reproducers --repeat times on both trees")
    w.add_argument("--repeat", type=int, default=20, help="runs per tree of a racy reproducer (default 20)")
    w.add_argument("--timeout", type=float, default=15.0,
                   help="seconds per racy run (default 15; the reproducers stop after 5)")
    w.add_argument("--only", action="append", default=[], metavar="FIX",
                   help="only this bug (its fix id in the index, e.g. 353f7988dd); repeatable")
    w.add_argument("--index", type=Path, help="the bug index (default: scenarios/regressions/wall/bugs.yaml)")
    w.add_argument("--out", type=Path, help="artifacts directory (default: ./wqh-results/<time>)")
    w.add_argument("--accel", choices=["auto", "kvm", "tcg"], default="auto")

    st = sub.add_parser("stress", help="race stress of the queue for a set time on 1, 2, 4 vCPUs: "
                                        "each kernel report known or new, reports per CPU-hour")
    _kernel_opts(st)
    st.add_argument("--seconds", type=float, default=60.0,
                    help="seconds of stress per vCPU count (default 60)")
    st.add_argument("--cpus", default="1,2,4", metavar="N,N,...",
                    help="vCPU counts, one VM each, one at a time (default 1,2,4)")
    st.add_argument("--profile", choices=("sanitizers", "kcsan"), default="sanitizers",
                    help="sanitizers: the sanitizer kernel (KASAN, kmemleak, lockdep, fault "
                         "injection); kcsan: the wall's KCSAN kernel (default sanitizers)")
    st.add_argument("--seed", type=int, help="the operations' seed (default: a random one, printed)")
    st.add_argument("--patch", type=Path, action="append", default=[],
                    help="apply this patch to a private variant of the tree (repeatable), e.g. "
                         "a bug of scenarios/regressions/patches/ put back")
    st.add_argument("--known", type=Path, metavar="FILE",
                    help="the known reports (default: scenarios/stress/known.yaml)")
    st.add_argument("--out", type=Path, help="artifacts directory (default: ./wqh-results/<time>)")
    st.add_argument("--accel", choices=["auto", "kvm", "tcg"], default="auto")

    mu = sub.add_parser("mutate", help="the suite's mutation score: one-line kernel mutants, each "
                                       "built as a variant and run with its scenario")
    _kernel_opts(mu)
    mu.add_argument("--index", type=Path, help="the mutant index (default: scenarios/mutants/index.yaml)")
    mu.add_argument("--only", action="append", default=[], metavar="ID",
                    help="only this mutant (its id in the index); repeatable")
    mu.add_argument("--kind", metavar="K", help="only mutants of this kind (boundary, dropped-flag, "
                                                 "wrong-id, inverted-logic, missing-notify, missing-free, other)")
    mu.add_argument("--out", type=Path, help="artifacts directory (default: ./wqh-results/<time>)")
    mu.add_argument("--accel", choices=["auto", "kvm", "tcg"], default="auto")
    mu.add_argument("--list", action="store_true",
                    help="print the mutants with file:line and edit, and exit (builds nothing)")
    mu.add_argument("--resume", action="store_true",
                    help="keep the verdicts of the mutate.json in --out; run only the others")
    mu.add_argument("--keep-builds", action="store_true",
                    help="keep every mutant's build directory (default: removed once its verdict "
                         "is in, but for the newest of each config, the next one's seed)")

    bi = sub.add_parser("bisect", help="the commit that introduced (or --fix: fixed) a bug, "
                                       "flaky-aware, with a reproducer, a report or a scenario")
    bi.add_argument("--kernel", metavar="REPO", required=True, help="a git repository of the kernel")
    bi.add_argument("--good", required=True, metavar="REF", help="a commit without the bug")
    bi.add_argument("--bad", required=True, metavar="REF", help="a commit with the bug")
    bi.add_argument("--fix", action="store_true",
                    help="find the commit that fixed it: --bad is the older, crashing commit")
    bi.add_argument("file", type=Path, nargs="?", help="a C reproducer (or --report / --scenario)")
    bi.add_argument("--report", type=Path, metavar="DIR", help="a saved syzbot report directory")
    bi.add_argument("--scenario", type=Path, metavar="FILE",
                    help="a scenario: a run 'crashes' when a test is not as expected")
    bi.add_argument("--title", help="count only crashes with this title (default: the report's "
                                    "title, else any crash, as syzbot does)")
    bi.add_argument("--config", action="append", default=[], metavar="FRAGMENT",
                    help="kconfig fragment for a reproducer (default: the sanitizer kernel's, "
                         + " ".join(_SANITIZER) + ")")
    bi.add_argument("--config-file", type=Path, metavar="PATH", help="a full kernel .config")
    bi.add_argument("--runs", type=_positive, default=bisect_runs(), metavar="N",
                    help="runs per commit (default 10; twice as many on the endpoints and once "
                         "the bug shows flaky)")
    bi.add_argument("--timeout", type=float, default=60.0, help="seconds per reproducer run (default 60)")
    bi.add_argument("--out", type=Path, required=True,
                    help="artifacts and the state file bisect.json (run again with the same "
                         "--out to resume)")
    bi.add_argument("--accel", choices=["auto", "kvm", "tcg"], default="auto")
    bi.add_argument("-j", "--jobs", type=int, help="make jobs (default: number of CPUs)")

    d = sub.add_parser("doctor", help="what is missing here, and how to install it")
    d.add_argument("--no-probe", action="store_true", help="do not boot a KVM probe")

    be = sub.add_parser("bench", help="measure build, boot and run times against baselines")
    _kernel_opts(be)
    be.add_argument("--out", type=Path, required=True, help="directory for bench.json")
    be.add_argument("--skip-cold", action="store_true",
                    help="skip the two cold builds (ours and vng --kconfig's)")
    be.add_argument("--skip-kasan", action="store_true",
                    help="skip the functional suite on the sanitizer kernel")
    be.add_argument("--cold-run", action="store_true",
                    help="also time the whole default run from an empty cache (builds every kernel)")
    be.add_argument("--boots-only", action="store_true",
                    help="only the boot figures: smoke warm re-run, bare boots, sanitizer profiles")
    be.add_argument("--parse-only", action="store_true",
                    help="only the log parser's throughput (a 100 MB log of real consoles; and a dense one)")
    be.add_argument("--samples", type=_positive, default=3, metavar="N",
                    help="boots measured per boot figure; the median is reported (default 3)")
    be.add_argument("--versions", action="append", metavar="KERNEL",
                    help="only the cold build (no ccache) of wqh's default config on each of these "
                         "sources, side by side: repeat it, e.g. --versions debian:6.1 --versions "
                         "debian:6.12; the first is the baseline")

    pa = sub.add_parser("parse",
                        help="find, title and attribute the kernel reports of a saved console log")
    pa.add_argument("log", type=Path, help="a console log: wqh's console.log, or one copied from syzbot")
    pa.add_argument("--vmlinux", type=Path, help="vmlinux with debug info: frames get file:line")
    pa.add_argument("--kernel-tree", type=Path,
                    help="its source tree (default: the 'source' link of an O= build directory)")
    pa.add_argument("--json", action="store_true",
                    help='print {"reports": [{"title", "type", "corrupted", "frames", "test", "text", ...}]}')
    return p


def _fragments(names: list[str]) -> tuple:
    from harness import config

    return config.fragment_list(names or ["watch-queue"], Path.cwd())


# --- the validation phase: every option and input file, before any work ----------------------


def _common(probs: Problems, a) -> None:
    """The options several commands share: --kernel, --jobs, --out."""
    if hasattr(a, "kernel"):
        with probs.check():
            validate.cache_env()
        if isinstance(a.kernel, list):  # run: --kernel repeats
            validate.kernel_specs(probs, a.kernel)
        else:
            with probs.check():
                validate.kernel_spec(a.kernel)
    if getattr(a, "vms", None) is not None:
        with probs.check():
            validate.whole("--vms", a.vms, 1, validate.MAX_CPUS)
    if getattr(a, "samples", None) is not None:
        with probs.check():
            validate.whole("--samples", a.samples, 1, 1000)
    if hasattr(a, "jobs"):
        with probs.check():
            validate.whole("--jobs", a.jobs, 1, validate.MAX_JOBS)
    if hasattr(a, "out"):
        with probs.check():
            validate.out_path("--out", a.out)


def _kernel_config(probs: Problems, a, fragments, key: str) -> None:
    """--config-file PATH (a full .config, used as it is) or fragments (KEY): each checked,
    and not both."""
    if a.config_file is None:
        validate.fragments(probs, fragments, Path.cwd(), key)
        return
    from harness import fullconfig

    if fragments:
        probs.add(InputError(f"{key} and --config-file together", key="--config-file",
                             hint=f"a full .config is used as it is: drop {key}"))
    with probs.check():
        fullconfig.check(a.config_file)


def _patch_forms(probs: Problems, paths, key: str) -> tuple[Path, ...]:
    from harness import patches

    out = []
    for p in paths:
        with probs.check():
            patches.check_form(Path(p), key)
            out.append(Path(p).resolve())
    return tuple(out)


def _patches_apply(probs: Problems, kernel: str | None, sets) -> None:
    """SETS: (patches in order, {patch: option or key}[, note]) each checked against the tree, where
    the tree is at hand without unpacking or cloning; the runner checks again once it is."""
    from harness import patches, source

    if probs or not any(s[0] for s in sets):
        return  # a patch of a bad form or a bad --kernel: already reported
    with probs.check():
        read = source.file_reader(kernel)
        if read is None:
            return
        what = kernel or "the default source"
        version = source.version(kernel)
        for ps, keys, *note in sets:
            rebased = patches.for_version(ps, version)  # as the runner will build them
            with probs.check():
                patches.check_applies(read, rebased, what + "".join(note),
                                      {new: keys[old] for old, new in zip(ps, rebased) if old in keys})


def _numbers(probs: Problems, a) -> None:
    if getattr(a, "repeat", None) is not None:
        with probs.check():
            validate.whole("--repeat", a.repeat, 1, validate.MAX_REPEAT)
    if getattr(a, "timeout", None) is not None:
        with probs.check():
            validate.seconds("--timeout", a.timeout)


def _gate_inputs(probs: Problems, a):
    """--known-issues and --baseline, loaded (and so checked) before any work."""
    from harness import gate, known_issues

    known = base = None
    if getattr(a, "kcidb", None) is not None:
        from harness import kcidb

        with probs.check():
            kcidb.check_origin(a.origin)
        with probs.check():
            validate.out_path("--kcidb", a.kcidb)
    if a.known_issues is not None:
        with probs.check():
            known = known_issues.load(a.known_issues)
    if a.baseline is not None:
        with probs.check():
            base = gate.load_results(a.baseline, key="--baseline")
    return known, base


def _finish(summary, base, out: Path, a) -> int:
    """Print the results (and write --kcidb); with a baseline, the gate's verdict decides the
    exit code."""
    from harness import gate, kcidb, results

    if a.kcidb is not None:
        kcidb.write(kcidb.export(out, origin=a.origin, checkout=_checkout()), a.kcidb)
        print(f"wqh: KCIDB document: {a.kcidb}")
    results.print_summary(summary)
    if base is None:
        return summary.exit_code()
    g = gate.compare(base, results.to_json(summary))
    (out / "gate.json").write_text(json.dumps(g.to_json(), indent=2) + "\n")
    print(g.text())
    return g.exit_code()


def _checkout():
    """What KCIDB needs beyond results.json: the patch files, for the patchset hash."""
    from harness import kcidb
    from harness.paths import SCENARIOS

    return kcidb.CheckoutInfo(patches=(SCENARIOS,))


def cmd_export(a) -> int:
    from harness import kcidb

    probs = Problems()
    if not (a.results / "results.json").is_file():
        probs.add(InputError(f"{a.results}: no results.json here", key="RESULTS_DIR",
                             hint="pass the --out directory of a wqh run or merge"))
    with probs.check():
        kcidb.check_origin(a.origin)
    if a.out is not None:
        with probs.check():
            validate.out_path("--out", a.out)
    probs.raise_if_any()
    doc = kcidb.export(a.results.resolve(), origin=a.origin, checkout=_checkout(), base_url=a.base_url)
    if a.out is None:
        print(json.dumps(doc, indent=2))
    else:
        kcidb.write(doc, a.out)
        print(f"wqh: KCIDB document: {a.out} ({len(doc.get('tests', []))} tests)")
    return EXIT_OK


def cmd_gate(a) -> int:
    from harness import gate

    probs = Problems()
    base = new = None
    with probs.check():
        base = gate.load_results(a.baseline, key="--baseline")
    with probs.check():
        new = gate.load_results(a.new, key="NEW_RESULTS")
    probs.raise_if_any()
    g = gate.compare(base, new)
    print(json.dumps(g.to_json(), indent=2) if a.json else g.text())
    return g.exit_code()


def cmd_run(a) -> int:
    from harness import config, outdir, runner, scenario, shard

    probs = Problems()
    _common(probs, a)
    scs = []
    with probs.check():
        scs = scenario.load_all(a.scenarios)
    for spec in a.kernel or [None]:  # every scenario on each kernel
        _patches_apply(probs, spec, [(s.kernel.patches, {p: "kernel.patches" for p in s.kernel.patches},
                                      f" (kernel.patches of {s.file})") for s in scs])
        with probs.check():
            frags = [f for s in scs for f in config.fragment_list(list(s.kernel.fragments), s.file.parent)]
            validate.symbols_defined(probs, spec, frags)
    with probs.check():
        validate.whole("--retry-failed", a.retry_failed, 0, 10)
    k = n = 0
    if a.shard is not None:
        with probs.check():
            k, n = shard.parse_spec(a.shard)
    durations = None
    if a.durations is not None:
        with probs.check():
            durations = shard.durations_from(a.durations)
    known, base = _gate_inputs(probs, a)
    if a.config_file is not None:
        _kernel_config(probs, a, (), "fragments")
    probs.raise_if_any()
    if a.config_file is not None:  # every scenario's kernel: the full config, its patches kept
        full = a.config_file.resolve()
        scs = [dataclasses.replace(s, kernel=dataclasses.replace(s.kernel, fragments=(), config=full))
               for s in scs]
    shard_info = None
    if n:
        p = shard.plan(scs, n, durations)
        scs = p.scenarios(k)
        shard_info = p.describe(k)
        names = ", ".join(s.name for s in scs) or "nothing (more shards than kernel groups)"
        print(f"wqh: shard {k}/{n} (plan {p.hash}, by {p.by}, load {p.load(k):.0f}): {names}",
              flush=True)
    out = Path(os.path.abspath(a.out or runner.default_out_dir()))
    with outdir.staged(out) as stage:
        opts = runner.RunOptions(kernels=a.kernel, out=stage, accel=a.accel, jobs=a.jobs,
                                 echo=a.console, force_build=a.rebuild, vms=a.vms,
                                 shard=shard_info, durations=durations, build_only=a.build_only,
                                 retry_failed=a.retry_failed, strict=a.strict, known_issues=known)
        summary = runner.run(scs, opts)
    summary.out_dir = out
    if a.build_only:
        print(f"wqh: {len(summary.kernels)} kernels ready; artifacts: {out}")
        return summary.exit_code()
    return _finish(summary, base, out, a)


def cmd_merge(a) -> int:
    from harness import outdir, results, runner, shard

    probs = Problems()
    with probs.check():
        validate.out_path("--out", a.out)
    for d in a.dirs:
        if not d.is_dir():
            probs.add(InputError(f"{d}: no such results directory", key="DIR",
                                 hint="pass the --out directories of the shards' wqh run"))
    known, base = _gate_inputs(probs, a)
    probs.raise_if_any()
    parts = shard.check_parts([d.resolve() for d in a.dirs])
    out = Path(os.path.abspath(a.out))
    with outdir.staged(out) as stage:
        summary = shard.merge(parts, stage)
        if known is not None:
            runner.waive(known, summary)
        results.write_all(summary)
    summary.out_dir = out
    return _finish(summary, base, out, a)


def cmd_build(a) -> int:
    from harness import build, config, patches, source

    probs = Problems()
    _common(probs, a)
    pl = _patch_forms(probs, a.patch, "--patch")
    _patches_apply(probs, a.kernel, [(pl, {})])
    _kernel_config(probs, a, a.fragment, "--fragment")
    if a.config_file is None:
        with probs.check():
            validate.symbols_defined(probs, a.kernel, _fragments(a.fragment) if not probs else ())
    probs.raise_if_any()
    src = source.resolve(a.kernel)
    with build.machine_lock():
        patches.check_applies(patches.tree_reader(src), pl, src.identity)
        ksrc = patches.materialize(src, pl) if pl else src
        if a.config_file is not None:
            from harness import fullconfig

            full = fullconfig.prepare(ksrc, a.config_file)
            print(full.report_text())
            cfg = full.config
        else:
            cfg = config.merge(ksrc, _fragments(a.fragment))
        b = build.build(ksrc, cfg, patches.patch_hashes(pl), jobs=a.jobs, force=a.rebuild)
    if b.seeded_from:
        print(f"wqh: build directory {b.seed_note}")
    if b.reused:
        print(f"wqh: cached build {b.key}")
    else:
        phases = ", ".join(f"{k} {v:.0f}s" for k, v in b.phases.items())
        print(f"wqh: built {b.key} in {b.wall_s:.0f}s wall, {b.cpu_s:.0f}s CPU, "
              f"{b.objects} objects ({phases})")
    print(b.bzimage)
    return EXIT_OK


def cmd_shell(a) -> int:
    from harness import accel, build, config, source, vm

    probs = Problems()
    _common(probs, a)
    validate.fragments(probs, a.fragment, Path.cwd(), "--fragment")
    with probs.check():
        validate.whole("--cpus", a.cpus, 1, validate.MAX_CPUS)
    with probs.check():
        validate.memory("--memory", a.memory)
    with probs.check():
        validate.symbols_defined(probs, a.kernel, _fragments(a.fragment) if not probs else ())
    probs.raise_if_any()
    src = source.resolve(a.kernel)
    cfg = config.merge(src, _fragments(a.fragment))
    b = build.build(src, cfg, jobs=a.jobs)
    acc = accel.choose(b.bzimage, a.accel)
    return vm.shell(vm.VMSpec(b.bzimage, cpus=a.cpus, memory=a.memory), acc)


def cmd_list(a) -> int:
    from harness import scenario

    for s in scenario.load_all(a.scenarios):
        frags = ", ".join(("base",) + s.kernel.fragments)
        frags += "".join(f" + {p.name}" for p in s.kernel.patches)
        print(f"{s.name}  ({s.file.name}; kernel: {frags}; vm: {s.vm.cpus} cpus, {s.vm.memory})")
        if s.description:
            print(f"    {s.description}")
        for t in s.tests:
            exp = "" if t.expect == "pass" else f"  [expect {t.expect}{': ' + t.title if t.title else ''}]"
            print(f"    {t.id}{exp}")
        if s.leak:
            print(f"    (leak check expects: {s.leak})")
    return EXIT_OK


def cmd_doctor(a) -> int:
    from harness import doctor

    cs = doctor.checks(probe_kvm=not a.no_probe)
    print(doctor.report(cs))
    return EXIT_OK if all(c.ok for c in cs) else EXIT_INFRA


def _check_repro(a, patch_sets, verify: bool = False) -> None:
    """repro/verify: options, fragments or the full config, the reproducer (compiled: gcc is
    the form check) or the syzbot report directory, patches; PATCH_SETS: [(option, paths)]."""
    from harness import repro, syzreport

    probs = Problems()
    if verify and not (a.fix or a.bug):
        probs.add(InputError("needs --fix, --bug or both", key="--fix/--bug",
                             hint="give --fix PATCH (the tree has the bug), --bug PATCH (the patch "
                                  "puts the bug back), or both (the fix checked on the tree with "
                                  "the bug put back)"))
    _common(probs, a)
    _numbers(probs, a)
    a.syzbot = None
    if (a.file is None) == (a.report is None):
        probs.add(InputError("needs a reproducer: FILE or --report DIR (not both)", key="FILE/--report",
                             hint="give the C reproducer's path, or the directory of a saved "
                                  "syzbot report (config, repro.c, title or the email)"))
    elif a.report is not None:
        with probs.check():
            a.syzbot = syzreport.load(a.report)
            a.file = a.syzbot.repro_c
            if a.config_file is None and not a.config:
                a.config_file = a.syzbot.config
    _kernel_config(probs, a, a.config, "--config")
    forms = {key: _patch_forms(probs, paths, key) for key, paths in patch_sets}
    if verify:  # the base tree has the bug put back, the fixed one the fix on top of it
        sets = repro.verify_chains(forms.get("--bug", ()), forms.get("--fix", ()))
    else:
        sets = [(ps, {p: key for p in ps}) for key, ps in forms.items()]
    if a.file is not None:
        with probs.check():
            validate.reproducer(a.file)
            repro.check_compiles(a.file, repro.cflags_of(a))
    _patches_apply(probs, a.kernel, sets)
    if a.config_file is None:
        with probs.check():
            validate.symbols_defined(probs, a.kernel, _fragments(list(a.config or repro.DEFAULT_FRAGMENTS))
                                     if not probs else ())
    probs.raise_if_any()


def cmd_bisect(a) -> int:
    from harness import bisect, bisect_run, repro, scenario, syzreport

    probs = Problems()
    _common(probs, a)
    _numbers(probs, a)
    repo = Path(a.kernel).expanduser().resolve()
    oracles = [x for x in (a.file, a.report, a.scenario) if x is not None]
    if len(oracles) != 1:
        probs.add(InputError("needs one oracle: a reproducer FILE, --report DIR or --scenario FILE",
                             key="FILE/--report/--scenario",
                             hint="the C reproducer, a saved syzbot report, or a scenario whose "
                                  "tests fail on the bug"))
    a.syzbot = scen = None
    if a.report is not None:
        with probs.check():
            a.syzbot = syzreport.load(a.report)
            a.file = a.syzbot.repro_c
            if a.config_file is None and not a.config:
                a.config_file = a.syzbot.config
    if a.scenario is not None:
        with probs.check():
            (scen,) = scenario.load_all([str(a.scenario)])
    _kernel_config(probs, a, a.config, "--config")
    if a.file is not None:
        with probs.check():
            validate.reproducer(a.file)
            repro.check_compiles(a.file, repro.cflags_of(a))
    with probs.check():
        validate.out_path("--out", a.out)
    if not (repo / ".git").exists():
        probs.add(InputError(f"{repo} is not a git repository", key="--kernel",
                             hint="wqh bisect needs the kernel's git history"))
    else:
        title = a.title or (a.syzbot.title if a.syzbot else None)
        alts = a.syzbot.alt_titles if a.syzbot and not a.title else ()
        with probs.check():  # refs that resolve, ancestry: before any clone or build
            a.bisection = bisect.Bisection(
                repo, a.good, a.bad, None, Path(os.path.abspath(a.out)) / "bisect.json",
                bisect_run.workdir_for(repo), fix=a.fix, title=title, alt_titles=alts,
                runs=a.runs, first_runs=2 * a.runs)
    probs.raise_if_any()
    return bisect_run.main(a, scen)


def cmd_repro(a) -> int:
    from harness import repro

    _check_repro(a, [("--patch", a.patch)])
    return repro.main(a)


def cmd_verify(a) -> int:
    from harness import repro

    _check_repro(a, [("--fix", a.fix), ("--bug", a.bug)], verify=True)
    return repro.verify(a)


def cmd_wall(a) -> int:
    from harness import wall

    probs = Problems()
    _common(probs, a)
    _numbers(probs, a)
    bugs = []
    with probs.check():
        bugs = wall.check(a)
    index = a.index or wall.INDEX
    sets = [(s.kernel.patches, {p: "kernel.patches" for p in s.kernel.patches},
             f" (kernel.patches of {s.file})") for s in wall.chosen_scenarios(bugs, index)] if not probs else []
    sets += [((b.patch,), {b.patch: "patch"}, f" (patch of {b.fix} in {index})")
             for b in bugs if b.kind == "racy" and b.patch and a.racy]
    _patches_apply(probs, a.kernel, sets)
    probs.raise_if_any()
    return wall.main(a)


def cmd_stress(a) -> int:
    from harness import stress

    probs = Problems()
    _common(probs, a)
    known = []
    with probs.check():
        known = stress.check(a)
    pl = _patch_forms(probs, a.patch, "--patch")
    _patches_apply(probs, a.kernel, [(pl, {p: "--patch" for p in pl})])
    with probs.check():
        validate.symbols_defined(probs, a.kernel, _fragments(list(stress.PROFILES[a.profile]))
                                 if not probs else ())
    probs.raise_if_any()
    return stress.main(a, known)


def cmd_mutate(a) -> int:
    from harness import mutate

    probs = Problems()
    _common(probs, a)
    plan = None
    with probs.check():
        plan = mutate.check(a, read_tree=not probs)
    probs.raise_if_any()
    return mutate.main(a, plan)


def cmd_bench(a) -> int:
    from harness import bench

    probs = Problems()
    _common(probs, a)
    if a.versions:
        validate.kernel_specs(probs, a.versions, key="--versions")
    probs.raise_if_any()
    return bench.main(a)


def cmd_parse(a) -> int:
    import json
    from dataclasses import asdict

    from harness import report, symbolize

    probs = Problems()
    with probs.check():
        validate.input_file("log", a.log, "console log", "give the path of a saved console log")
    if a.vmlinux is not None:
        with probs.check():
            validate.input_file("--vmlinux", a.vmlinux, "vmlinux",
                                "give the vmlinux of the kernel that printed the log")
    with probs.check():
        if a.kernel_tree is not None and not a.kernel_tree.is_dir():
            raise InputError(f"--kernel-tree {a.kernel_tree}: no such directory", key="--kernel-tree",
                             hint="give the source tree of that kernel, or leave the option out")
    probs.raise_if_any()
    reports = report.merge(report.parse_file(a.log))
    if a.vmlinux is not None:
        sym = symbolize.Symbolizer.for_build(a.vmlinux, a.kernel_tree)
        sym.symbolize(reports)
        if sym.error:
            print(f"wqh: warning: {sym.error}", file=sys.stderr)
    if a.json:
        # The first report of a log is its primary one: the title syzbot would give the log.
        first = reports[0] if reports else None
        primary = {k: getattr(first, k) for k in ("title", "alt_titles", "type", "frame", "corrupted",
                                                   "corrupted_reason")} if first else None
        print(json.dumps({"primary": primary, "reports": [asdict(r) for r in reports]}, indent=1))
    else:
        print(report_text(reports, a.log))
    return EXIT_OK


_SHOWN_SECTIONS = ("header", "rip", "trace", "backtrace", "access", "lock", "held")


def report_text(reports, log: Path, top: int = 8) -> str:
    """One block per report: title, type, owner, corrupted, the frames its title comes from."""
    if not reports:
        return f"{log}: no kernel report"
    out = []
    for r in reports:
        count = f" (x{r.count})" if r.count > 1 else ""
        out.append(f"{r.title}{count}")
        out.append(f"  type: {r.type}   test: {r.test}   line: {r.line}")
        out.append("  corrupted: " + (f"yes ({r.corrupted_reason})" if r.corrupted else "no")
                   + (f"   frame: {r.frame}" if r.frame else ""))
        for alt in r.alt_titles:
            out.append(f"  also: {alt}")
        shown = []
        for f in r.frames:
            # the header and RIP lines often name the same frame: once is enough
            same = shown and (f.func, f.offset, f.inline) == (shown[-1].func, shown[-1].offset,
                                                               shown[-1].inline)
            if f.section in _SHOWN_SECTIONS and not same:
                shown.append(f)
        for f in shown[:top]:
            where = f" {f.file}:{f.line}" if f.file else ""
            off = f"+0x{f.offset:x}/0x{f.size:x}" if f.offset is not None and f.size is not None else ""
            mod = f" [{f.module}]" if f.module else ""
            out.append(f"    {f.func}{off}{mod}{where}" + (" [inline]" if f.inline else ""))
        if len(shown) > top:
            out.append(f"    ... {len(shown) - top} more")
        out.append("")
    return "\n".join(out).rstrip()


COMMANDS = {"run": cmd_run, "merge": cmd_merge, "gate": cmd_gate, "export": cmd_export,
            "bisect": cmd_bisect, "build": cmd_build, "shell": cmd_shell, "list": cmd_list,
            "doctor": cmd_doctor, "bench": cmd_bench,
            "repro": cmd_repro, "verify": cmd_verify, "parse": cmd_parse, "wall": cmd_wall,
            "mutate": cmd_mutate, "stress": cmd_stress}


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    procs.install_handlers()
    try:
        return COMMANDS[args.cmd](args)
    except WqhError as e:  # InputError (3), InfraError (2): typed, one message
        print(f"wqh: error: {e}", file=sys.stderr)
        return e.exit_code
    except procs.Interrupted as e:
        procs.kill_all()
        print(f"wqh: interrupted by {e}; children stopped", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:
        procs.kill_all()
        print("wqh: interrupted; children stopped", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (wqh list | head): nothing more to say to it.
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_INFRA
    except OSError as e:
        # The machine refused (disk full, permission, a path gone): infrastructure, not a bug.
        procs.kill_all()
        where = f": {e.filename}" if e.filename else ""
        saved = save_traceback()
        print(f"wqh: error: {e.strerror or e}{where} (details: {saved})", file=sys.stderr)
        return EXIT_INFRA
    except Exception as e:  # noqa: BLE001 - a bug of wqh: one line, the traceback saved
        procs.kill_all()
        saved = save_traceback()
        print(f"wqh: internal error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
              f" (traceback saved in {saved}; please report it)", file=sys.stderr)
        return EXIT_INFRA


def save_traceback() -> str:
    """The current exception's traceback in a file (cache/crashes, else the temp dir): its path."""
    import tempfile

    from harness.paths import cache_dir

    text = traceback.format_exc()
    name = f"wqh-traceback-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt"
    for d in (cache_dir() / "crashes", Path(tempfile.gettempdir())):
        try:
            d.mkdir(parents=True, exist_ok=True)
            (d / name).write_text(text)
            return str(d / name)
        except OSError:
            continue
    return "(nowhere: no writable directory)"
