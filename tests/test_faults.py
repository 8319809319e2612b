"""Failures under load and faults, each typed, logs kept, no process left, the next run works.

Fast ones use a fake kernel tree (a Makefile with allnoconfig/olddefconfig/bzImage targets and a
merge_config.sh that concatenates fragments) and a fake Debian tarball; the guest faults (QEMU
killed, OOM) need a real kernel and are marked vm.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from harness import procs, source

REPO = Path(__file__).resolve().parent.parent
WQH = [sys.executable, "-m", "harness"]

MAKEFILE = """\
O ?= .
VERSION = 6
PATCHLEVEL = 1
SUBLEVEL = 0
EXTRAVERSION =

allnoconfig:
\t@cp $(KCONFIG_ALLCONFIG) $(O)/.config
olddefconfig:
\t@true
bzImage:
\t@echo "  CC      kernel/watch_queue.o"
\t@if [ -n "$(FAKE_SLEEP)" ]; then echo $$$$ > $(O)/make.pid; exec sleep $(FAKE_SLEEP); fi
\t@if [ -n "$(FAKE_BIG)" ]; then head -c $(FAKE_BIG) /dev/zero > $(O)/big.o; fi
\t@mkdir -p $(O)/arch/x86/boot && echo image > $(O)/arch/x86/boot/bzImage && echo elf > $(O)/vmlinux
"""

MERGE_SH = """\
#!/bin/sh
# merge_config.sh -m -O DIR FRAGMENT...: the fragments, concatenated (later ones win)
shift; shift; out=$1; shift
if [ -n "$FAKE_MERGE_SLEEP" ]; then echo $$ > "$out/merge.pid"; exec sleep "$FAKE_MERGE_SLEEP"; fi
cat "$@" > "$out/.config"
"""


@pytest.fixture
def tree(tmp_path):
    t = tmp_path / "linux"
    (t / "kernel").mkdir(parents=True)
    (t / "kernel" / "watch_queue.c").write_text("fixed\n")
    (t / "scripts" / "kconfig").mkdir(parents=True)
    (t / "scripts" / "kconfig" / "merge_config.sh").write_text(MERGE_SH)
    (t / "Makefile").write_text(MAKEFILE)
    return t


def _env(cache: Path, **extra) -> dict:
    env = dict(os.environ, WQH_CACHE=str(cache), WQH_NO_CCACHE="1", PYTHONPATH=str(REPO), **extra)
    return env


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def _wait_for(path: Path, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text().strip():
            return int(path.read_text().split()[0])
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def _build(tree: Path, cache: Path, **extra) -> subprocess.CompletedProcess:
    return subprocess.run(WQH + ["build", "--kernel", str(tree)], capture_output=True, text=True,
                          env=_env(cache, **extra), cwd=tree.parent, timeout=120)


def test_the_fake_tree_builds(tree, tmp_path):
    r = _build(tree, tmp_path / "cache")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("bzImage")


@pytest.mark.parametrize("phase,var,pidfile", [("merge", "FAKE_MERGE_SLEEP", "merge.pid"),
                                               ("build", "FAKE_SLEEP", "make.pid")])
def test_sigint_stops_the_phase_leaves_no_process_and_the_next_run_works(tree, tmp_path, phase, var,
                                                                         pidfile):
    cache = tmp_path / "cache"
    env = _env(cache, **{var: "300"})  # make reads FAKE_SLEEP from the environment
    cmd = WQH + ["build", "--kernel", str(tree)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         cwd=tmp_path)
    try:
        where = cache / "configs" if phase == "merge" else cache / "builds"
        deadline = time.monotonic() + 60
        found = []
        while not found and time.monotonic() < deadline:
            found = list(where.rglob(pidfile)) if where.exists() else []
            time.sleep(0.05)
        assert found, f"the {phase} never started"
        child = _wait_for(found[0])
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 128 + signal.SIGINT, err
    assert "interrupted" in err and "Traceback" not in err
    time.sleep(0.2)
    assert not _alive(child), f"the {phase}'s process {child} outlived wqh"
    r = _build(tree, cache)
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip().splitlines()[-1]).is_file()


@pytest.fixture
def small_cache(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    d = tmp_path / "smallcache"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(d)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.decode().strip()}")
    yield d
    subprocess.run(["umount", "-l", str(d)], capture_output=True)


def test_disk_full_during_a_build_is_infra_keeps_the_log_and_the_next_run_works(tree, small_cache):
    r = _build(tree, small_cache, FAKE_BIG="8000000")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    assert "build failed" in r.stderr or "No space left" in r.stderr, r.stderr
    logs = list((small_cache / "builds").glob("*/build.log"))
    assert logs and "$ make" in logs[0].read_text()
    assert not list((small_cache / "builds").glob("*/.wqh-complete"))  # never a finished build
    for big in (small_cache / "builds").glob("*/big.o"):
        big.unlink()  # the user frees space
    r = _build(tree, small_cache)
    assert r.returncode == 0, r.stderr


def _fake_tarball(tmp_path: Path) -> Path:
    top = tmp_path / "tar-src" / "linux-source-6.1"
    (top / "kernel").mkdir(parents=True)
    (top / "Makefile").write_text(MAKEFILE)
    for i in range(200):
        (top / "kernel" / f"f{i}.c").write_text("x" * 1000)
    tb = tmp_path / "linux-source-6.1.tar.xz"
    with tarfile.open(tb, "w:xz") as t:
        t.add(top, arcname="linux-source-6.1")
    return tb


@pytest.fixture
def fake_debian(tmp_path, tmp_cache, monkeypatch):
    tb = _fake_tarball(tmp_path)
    monkeypatch.setattr(source, "DEBIAN_TARBALLS", (str(tb),))
    monkeypatch.setattr(source, "_debian_version", lambda: "1")
    return tb


def test_an_interrupted_unpack_is_never_used_and_the_next_run_unpacks(fake_debian, tmp_cache, monkeypatch):
    real_run = procs.run

    def interrupted(cmd, **kw):
        real_run(cmd, **kw)  # tar got some way (here: all the way) when the signal came
        raise procs.Interrupted(signal.SIGINT)

    monkeypatch.setattr(procs, "run", interrupted)
    with pytest.raises(procs.Interrupted):
        source.default_source()
    srcdir = tmp_cache / "src"
    assert not (srcdir / "linux-source-6.1").exists()
    assert not list(srcdir.glob(".partial-*"))
    # A run killed with SIGKILL leaves its staging directory: the next run removes it.
    (srcdir / ".partial-linux-source-6.1-999999999" / "linux-source-6.1").mkdir(parents=True)
    monkeypatch.setattr(procs, "run", real_run)
    s = source.default_source()
    assert (s.path / "Makefile").is_file() and len(list((s.path / "kernel").iterdir())) == 200
    assert sorted(p.name for p in srcdir.iterdir()) == [".unpack.lock", "linux-source-6.1",
                                                        "linux-source-6.1.wqh-unpacked"]


def test_two_runs_at_once_unpack_once_and_both_get_the_tree(fake_debian, tmp_cache):
    script = textwrap.dedent(f"""
        from harness import source
        source.DEBIAN_TARBALLS = ({str(fake_debian)!r},)
        source._debian_version = lambda: "1"
        print(source.default_source().path)
    """)
    env = _env(tmp_cache)
    ps = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, env=env) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in ps]
    assert [p.returncode for p in ps] == [0, 0, 0], outs
    assert len({o.strip().splitlines()[-1] for o, _ in outs}) == 1
    assert sum(e.count("unpacking") + o.count("unpacking") for o, e in outs) == 1, outs
    assert not list((tmp_cache / "src").glob(".partial-*"))


def test_two_builds_at_once_on_one_cache_both_succeed(tree, tmp_path):
    cache = tmp_path / "cache"
    results = []

    def one():
        results.append(_build(tree, cache))
    ts = [threading.Thread(target=one) for _ in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert results[0].stdout.splitlines()[-1] == results[1].stdout.splitlines()[-1]


# --- guest faults: a real kernel (the default watch-queue one) ------------------------------

FAULTS = REPO / "tests" / "data" / "faults"


def _qemu_pids(mention: str) -> list[int]:
    r = subprocess.run(["pgrep", "-f", mention], capture_output=True, text=True)
    return [int(x) for x in r.stdout.split()]


@pytest.mark.vm
def test_qemu_killed_mid_test_is_infra_logs_kept_next_run_works(tmp_path):
    out = tmp_path / "run"
    p = subprocess.Popen(WQH + ["run", str(FAULTS / "slow.yaml"), "--out", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    prefix = f"{tmp_path}/.run"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            logs = list(tmp_path.glob(".run*/vm1-*/console.log"))
            if logs and "wqh: begin" in logs[0].read_text(errors="replace"):
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the test never began")
        qemu = [pid for pid in _qemu_pids(prefix)
                if "qemu" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")]
        assert qemu, "no QEMU found"
        for pid in qemu:
            os.kill(pid, signal.SIGKILL)
        stdout, _ = p.communicate(timeout=600)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert "Traceback" not in stdout
    # QEMU dying under a test is infrastructure: exit 2, the test named, never a pass.
    assert p.returncode == 2, stdout
    res = __import__("json").loads((out / "results.json").read_text())
    (t,) = res["tests"]
    assert t["outcome"] == "infra-error" and "VM ended" in t["message"], t
    assert (next(out.glob("vm1-*")) / "console.log").stat().st_size > 0  # the killed VM's log
    assert (next(out.glob("vm1-*")) / "vng-command.txt").is_file()
    time.sleep(0.5)
    assert not _qemu_pids(prefix), "QEMU outlived wqh"
    r = subprocess.run(WQH + ["run", str(REPO / "scenarios" / "smoke.yaml"), "--out", str(tmp_path / "next")],
                       capture_output=True, text=True, timeout=900, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.vm
def test_guest_oom_is_a_verdict_and_the_next_run_works(tmp_path):
    out = tmp_path / "oom"
    r = subprocess.run(WQH + ["run", str(FAULTS / "oom.yaml"), "--out", str(out)], capture_output=True,
                       text=True, timeout=900, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert "Traceback" not in r.stdout + r.stderr
    res = __import__("json").loads((out / "results.json").read_text())
    (t,) = [t for t in res["tests"] if "allocates" in t["test"]]
    assert t["outcome"] == "fail", t  # the child was OOM-killed; the agent carried on
    console = next(out.glob("vm1-*/console.log")).read_text(errors="replace")
    assert "Out of memory" in console or "oom-kill" in console
    assert r.returncode == 0, r.stdout + r.stderr
    assert not _qemu_pids(str(tmp_path)), "QEMU outlived wqh"
    r = subprocess.run(WQH + ["run", str(REPO / "scenarios" / "smoke.yaml"), "--out", str(tmp_path / "next")],
                       capture_output=True, text=True, timeout=900, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert r.returncode == 0, r.stdout + r.stderr


def test_an_internal_error_mid_run_never_leaves_a_passing_results_json(tmp_path, monkeypatch):
    from harness import results, runner
    from harness.scenario import Scenario, TestRef

    t = TestRef("guest-tests/test_smoke.py::a", REPO / "guest-tests" / "test_smoke.py")
    scs = [Scenario("s", tmp_path / "s.yaml", tests=[t, TestRef("guest-tests/test_smoke.py::b", t.path)])]

    def half(scenarios, opts, summary):
        summary.results.append(results.TestResult("s", t.id, "k", "pass"))
        raise KeyError("surprise")

    monkeypatch.setattr(runner, "_run", half)
    with pytest.raises(KeyError):
        runner.run(scs, runner.RunOptions(out=tmp_path / "out"))
    res = __import__("json").loads((tmp_path / "out" / "results.json").read_text())
    assert res["exit_code"] == 2 and res["interrupted"].startswith("wqh stopped on an internal error")
    assert [x["outcome"] for x in res["tests"]] == ["pass", "infra-error"]


def test_sigint_during_wall_keeps_what_ran_marked_interrupted(tmp_path, tmp_cache, monkeypatch, capsys):
    """The wall's runs are staged like any run: a signal mid-wall moves what it has into --out,
    its results.json says interrupted, and nothing is left beside it."""
    from harness import cli, results, runner, wall

    det = next(b for b in wall.load_index() if b.kind == "deterministic")

    def interrupted_run(scenarios, opts):
        s = results.RunSummary([], 0.0, 0.0, opts.out)
        s.interrupted = "SIGINT"
        results.write_all(s)
        raise procs.Interrupted(signal.SIGINT)

    monkeypatch.setattr(procs, "install_handlers", lambda: None)
    monkeypatch.setattr(runner, "run", interrupted_run)
    monkeypatch.setattr(cli, "_patches_apply", lambda *a: None)  # no tree needed here
    out = tmp_path / "wall"
    rc = cli.main(["wall", "--only", det.fix, "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 128 + signal.SIGINT and "interrupted" in err and "Traceback" not in err
    res = __import__("json").loads((out / "scenarios" / "results.json").read_text())
    assert res["interrupted"] == "SIGINT"
    assert not list(tmp_path.glob(".wall*")), "a staging directory was left beside --out"
