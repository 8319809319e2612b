"""samples/watch_queue/watch_test built from the tree under test (harness/watch_test_build.py),
and its way to the guest: the runner's plan, the agent's environment."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness import accel, procs, runner, scenario, source, vm, watch_test_build
from harness.build import BuildResult
from harness.config import ConfigResult
from harness.guest import agent, protocol
from harness.paths import REPO

TREE_61 = Path("/root/.cache/wqh/src/linux-source-6.1")
CLIENTS = "guest-tests/test_clients.py::test_watch_test_agrees_with_wqh"
SMOKE = "guest-tests/test_smoke.py::test_key_update_gives_one_record"


def fake_tree(root: Path, sample=True) -> Path:
    t = root / "tree"
    (t / "include/uapi/linux").mkdir(parents=True)
    (t / "include/uapi/linux/watch_queue.h").write_text("/* wq */\n")
    (t / "include/uapi/linux/keyctl.h").write_text("/* keyctl */\n")
    if sample:
        (t / "samples/watch_queue").mkdir(parents=True)
        (t / watch_test_build.SAMPLE).write_text("int main(void) { return 0; }\n")
    return t


def fake_tools(root: Path, monkeypatch, make: str, gcc: str) -> Path:
    """make and gcc stand-ins first on PATH (shell scripts)."""
    bindir = root / "bin"
    bindir.mkdir()
    for name, body in (("make", make), ("gcc", gcc)):
        p = bindir / name
        p.write_text("#!/bin/sh\n" + textwrap.dedent(body))
        p.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return bindir


# gcc stand-in: writes its -o file the way gcc does (the last argument is the source).
GCC_OK = """\
    while [ $# -gt 0 ]; do [ "$1" = -o ] && out=$2; shift; done
    printf '#!/bin/sh\\nexit 0\\n' > "$out"
    """


def no_children(monkeypatch):
    def refuse(cmd, **kw):
        raise AssertionError(f"ran {cmd}")
    monkeypatch.setattr(procs, "run", refuse)


# --- the build ------------------------------------------------------------------------------


def test_a_tree_without_the_sample_gives_no_binary_and_the_reason(tmp_path, tmp_cache, monkeypatch):
    no_children(monkeypatch)
    t = fake_tree(tmp_path, sample=False)
    wt = watch_test_build.build(t)
    assert wt.path is None and not wt.built
    assert str(t) in wt.reason and watch_test_build.SAMPLE in wt.reason
    assert wt.plan() == {"skip": wt.reason}
    assert not tmp_cache.exists() or not any(tmp_cache.rglob("watch_test*"))


def test_the_key_is_the_sample_and_the_two_uapi_headers(tmp_path):
    t = fake_tree(tmp_path)
    k = watch_test_build.key(t)
    (t / "Makefile").write_text("VERSION = 6\n")  # not an input
    assert watch_test_build.key(t) == k
    for rel in watch_test_build.INPUTS:
        old = (t / rel).read_text()
        (t / rel).write_text(old + "/* patched */\n")
        assert watch_test_build.key(t) != k, rel
        (t / rel).write_text(old)
    assert watch_test_build.key(t) == k


def test_a_cached_binary_is_used_without_running_make_or_gcc(tmp_path, tmp_cache, monkeypatch):
    t = fake_tree(tmp_path)
    cached = watch_test_build.cache_root() / watch_test_build.key(t) / "watch_test"
    cached.parent.mkdir(parents=True)
    cached.write_text("#!/bin/sh\n")
    cached.chmod(0o755)
    no_children(monkeypatch)
    assert watch_test_build.build(t) == watch_test_build.WatchTest(cached)
    assert watch_test_build.build(t).plan() == {"path": str(cached)}


def test_the_build_runs_make_headers_install_then_gcc_static_and_renames(tmp_path, tmp_cache, monkeypatch):
    log = tmp_path / "calls"
    fake_tools(tmp_path, monkeypatch, make=f'echo "make $*" >> {log}\n',
               gcc=f'echo "gcc $*" >> {log}\n' + GCC_OK)
    t = fake_tree(tmp_path)
    wt = watch_test_build.build(t)
    assert wt.built and wt.path == watch_test_build.cache_root() / watch_test_build.key(t) / "watch_test"
    assert os.access(wt.path, os.X_OK)
    make, gcc = log.read_text().splitlines()
    words = make.split()
    assert words[:4] == ["make", "-s", "-C", str(t)] and "ARCH=x86" in words
    assert "headers_install" in words
    obj = next(w for w in words if w.startswith("O="))[2:]
    hdr = next(w for w in words if w.startswith("INSTALL_HDR_PATH="))[len("INSTALL_HDR_PATH="):]
    assert not obj.startswith(str(t)) and not hdr.startswith(str(t))  # nothing into the tree
    assert gcc.split()[:4] == ["gcc", "-static", "-O2", f"-I{hdr}/include"]
    assert gcc.split()[-1] == str(t / watch_test_build.SAMPLE)
    assert not Path(obj).exists() and not Path(hdr).exists()  # the private tmp dir is gone
    assert [p.name for p in wt.path.parent.iterdir()] == ["watch_test"]  # no .part left
    # The second call: the cache, nothing run.
    no_children(monkeypatch)
    again = watch_test_build.build(t)
    assert again.path == wt.path and not again.built


def test_a_failed_build_gives_the_command_and_its_output_and_caches_nothing(tmp_path, tmp_cache, monkeypatch):
    fake_tools(tmp_path, monkeypatch, make="exit 0\n",
               gcc='echo "watch_test.c:42: error: IOC_WATCH_QUEUE_SET_SIZE undeclared" >&2\n'
                   'while [ $# -gt 0 ]; do [ "$1" = -o ] && out=$2; shift; done\n'
                   'echo half > "$out"; exit 1\n')
    t = fake_tree(tmp_path)
    wt = watch_test_build.build(t)
    assert wt.path is None
    assert "gcc -static" in wt.reason and "exited 1" in wt.reason
    assert "IOC_WATCH_QUEUE_SET_SIZE undeclared" in wt.reason
    d = watch_test_build.cache_root() / watch_test_build.key(t)
    assert not d.exists() or not list(d.iterdir())  # neither a binary nor a half-written one


def test_no_compiler_is_a_reason_not_an_error(tmp_path, tmp_cache, monkeypatch):
    monkeypatch.setattr(watch_test_build.shutil, "which", lambda name: None if name == "gcc" else "/x")
    wt = watch_test_build.build(fake_tree(tmp_path))
    assert wt.path is None and "no gcc" in wt.reason


def test_ctrl_c_kills_make_and_leaves_nothing(tmp_path, tmp_cache):
    """make runs in its own group, registered with harness.procs: SIGINT to wqh ends it (and
    what it started), and neither the private tmp dir nor a cache entry is left."""
    pidfile = tmp_path / "make.pid"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "make").write_text(f"#!/bin/sh\necho $$ > {pidfile}.tmp; mv {pidfile}.tmp {pidfile}\n"
                                 f"for a in \"$@\"; do case $a in O=*) echo ${{a#O=}} > {pidfile}.obj;; esac; done\n"
                                 "sleep 300\n")
    (bindir / "make").chmod(0o755)
    (bindir / "gcc").write_text("#!/bin/sh\nexit 1\n")
    (bindir / "gcc").chmod(0o755)
    t = fake_tree(tmp_path)
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}")
    code = ("import sys; from harness import procs, watch_test_build as w; procs.install_handlers()\n"
            "try:\n    w.build(sys.argv[1])\nexcept procs.Interrupted:\n    sys.exit(130)\n")
    p = subprocess.Popen([sys.executable, "-c", code, str(t)], env=env, cwd=REPO)
    try:
        deadline = time.monotonic() + 30
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pidfile.exists(), "make never started"
        make_pid = int(pidfile.read_text())
        obj = Path((tmp_path / "make.pid.obj").read_text().strip())
        p.send_signal(signal.SIGINT)
        assert p.wait(30) == 130
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert procs.group_members(make_pid) == []  # make and its sleep: its group is gone
    assert not obj.parent.exists()  # the private tmp dir
    assert [p for p in watch_test_build.cache_root().rglob("*") if p.is_file()] == []


@pytest.mark.slow
def test_the_real_6_1_tree_builds_a_static_watch_test_and_is_not_written_to(tmp_path, tmp_cache):
    if not (TREE_61 / watch_test_build.SAMPLE).is_file():
        pytest.skip(f"no unpacked {TREE_61} (wqh unpacks it on its first run)")
    marker = tmp_path / "before"
    marker.write_text("")
    time.sleep(0.05)
    t0 = time.monotonic()
    wt = watch_test_build.build(TREE_61)
    took = time.monotonic() - t0
    assert wt.path is not None, wt.reason
    assert wt.built and wt.path.is_relative_to(tmp_cache)
    newer = subprocess.run(["find", str(TREE_61), "-newer", str(marker)], capture_output=True, text=True)
    assert newer.returncode == 0 and newer.stdout == "", f"written in the tree: {newer.stdout[:2000]}"
    with open(wt.path, "rb") as fh:
        elf = fh.read()
    assert elf[:4] == b"\x7fELF" and b"/lib64/ld-linux" not in elf  # static: no interpreter
    # It runs: on a host without notification pipes pipe2() fails at once; with them it watches
    # this session's keyrings until it is stopped.
    p = subprocess.Popen([str(wt.path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True)
    try:
        _, err = p.communicate(timeout=2)
        assert p.returncode == 1 and b"pipe2" in err, err
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
    # The second call: the cache, in no time.
    t0 = time.monotonic()
    again = watch_test_build.build(TREE_61)
    assert again.path == wt.path and not again.built and time.monotonic() - t0 < took / 5
    print(f"built in {took:.1f} s")


# --- to the guest: the runner's plan, the agent's environment -------------------------------


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return scenario.load(p)


def test_only_groups_that_run_test_clients_build_watch_test(tmp_path, monkeypatch):
    built = []
    monkeypatch.setattr(watch_test_build, "build",
                        lambda tree, nice=0: built.append(tree) or watch_test_build.WatchTest(Path("/wt")))
    src = source.KernelSource(tmp_path / "linux", "id", "path", immutable=True)
    smoke = write(tmp_path, "a.yaml", f"tests: [{SMOKE}]\n")
    both = write(tmp_path, "b.yaml", f"tests: [{SMOKE}, guest-tests/test_clients.py]\n")
    g_smoke = runner.KernelGroup((), (), [smoke], source=src)
    g_both = runner.KernelGroup((), (), [smoke, both], source=src)
    assert runner.watch_test_for(g_smoke) is None and built == []
    assert runner.watch_test_for(g_both).path == Path("/wt") and built == [src.path]
    assert [runner.runs_clients(t) for t in both.tests] == [False, True]


def _run_vm(tmp_path, monkeypatch, tests, watch_test):
    s = write(tmp_path, "s.yaml", f"tests: {json.dumps(tests)}\n")

    def fake_run(spec, acc, exec_cmd, console, echo=False):
        console.write_text("")
        return vm.VMResult([], console, "exited", 0, 1.0)
    monkeypatch.setattr(runner.vm, "run", fake_run)
    monkeypatch.setattr(runner, "warm_bytecode", lambda nodes: None)
    cfg = ConfigResult("CONFIG_X=y\n", "h", (), tmp_path)
    b = BuildResult("k" * 16, tmp_path, tmp_path / "bzImage", tmp_path / "vmlinux", tmp_path / "log", True)
    items = [(s, t) for t in s.tests]
    job = runner.VMJob("vm1-k", items, s.vm, b, 1.0, "id", [s], cfg, (), "6.1.192", watch_test)
    out = tmp_path / "out"
    runner.run_vm(runner.Boots(out, job, accel.Accel("tcg", "test"), 1.0, False, lambda: "vm1"), "vm1", items)
    return json.loads((out / "vm1" / "plan.json").read_text())


def test_the_plan_carries_watch_test_for_test_clients_only(tmp_path, monkeypatch):
    plan = _run_vm(tmp_path, monkeypatch, [SMOKE, CLIENTS], {"path": "/cache/watch_test"})
    assert plan["watch_test"] == {"path": "/cache/watch_test"}
    plan = _run_vm(tmp_path, monkeypatch, [CLIENTS], {"skip": "no sample in the tree"})
    assert plan["watch_test"] == {"skip": "no sample in the tree"}
    assert "watch_test" not in _run_vm(tmp_path, monkeypatch, [SMOKE], {"path": "/cache/watch_test"})
    assert "watch_test" not in _run_vm(tmp_path, monkeypatch, [CLIENTS], None)


def test_a_run_builds_watch_test_once_per_kernel_and_gives_it_to_the_jobs_that_run_test_clients(
        tmp_path, monkeypatch):
    smoke = write(tmp_path, "smoke.yaml", f"vm: {{cpus: 1}}\ntests: [{SMOKE}]\n")
    clients = write(tmp_path, "clients.yaml", f"tests: [{CLIENTS}]\n")
    src = source.KernelSource(tmp_path / "linux", "id", "path", immutable=True)
    built, jobs = [], []
    monkeypatch.setattr(watch_test_build, "build",
                        lambda tree, nice=0: built.append(tree) or watch_test_build.WatchTest(Path("/wt/watch_test")))
    monkeypatch.setattr(runner.source, "version", lambda s: "6.1.192")
    monkeypatch.setattr(runner.patches, "check_applies", lambda *a: None)
    cfg = ConfigResult("CONFIG_X=y\n", "h", (), tmp_path)
    b = BuildResult("k" * 16, tmp_path, tmp_path / "bzImage", tmp_path / "vmlinux", tmp_path / "log", True)
    monkeypatch.setattr(runner, "_prepare", lambda *a: runner.Kernel(cfg, b, "id+h"))
    monkeypatch.setattr(runner.accel_mod, "choose", lambda *a: accel.Accel("tcg", "test"))

    def run_items(boots, items):
        jobs.append((sorted({s.name for s, _ in items}), boots.job.watch_test))
        return [], []
    monkeypatch.setattr(runner, "run_items", run_items)
    summary = runner.results.RunSummary([], 0.0, 0.0, tmp_path / "out")
    runner._run([smoke, clients], runner.RunOptions(kernel_source=src, out=tmp_path / "out"), summary)
    assert built == [src.path]
    assert sorted(jobs) == [(["clients"], {"path": "/wt/watch_test"}), (["smoke"], None)]


def run_agent(tmp_path, watch_test, env=None):
    tmp_path.mkdir()
    test = tmp_path / "test_env.py"
    test.write_text("import json, os\n\ndef test_env():\n"
                    f"    with open({str(tmp_path / 'env.json')!r}, 'w') as fh:\n"
                    "        json.dump({k: os.environ.get(k) for k in ('WQH_WATCH_TEST', 'WQH_WATCH_TEST_SKIP')}, fh)\n")
    out = tmp_path / "out"
    out.mkdir()
    plan = {"results_dir": str(out), "kmsg": str(tmp_path / "kmsg.txt"),
            "tests": [{"id": "test_env.py::test_env", "node": f"{test}::test_env"}]}
    if watch_test is not None:
        plan["watch_test"] = watch_test
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    r = subprocess.run([sys.executable, "-m", "harness.guest.agent", str(tmp_path / "plan.json")],
                       capture_output=True, text=True, cwd=REPO, env=dict(os.environ, **(env or {})))
    assert r.returncode == 0, r.stderr
    res = protocol.read(str(out / protocol.RESULTS))
    assert [t["outcome"] for t in res["tests"]] == ["pass"], res
    return json.loads((tmp_path / "env.json").read_text())


def test_the_agent_exports_the_path_or_the_skip_reason(tmp_path):
    assert run_agent(tmp_path / "a", {"path": "/cache/wt"}, {"WQH_WATCH_TEST_SKIP": "stale"}) == \
        {"WQH_WATCH_TEST": "/cache/wt", "WQH_WATCH_TEST_SKIP": None}
    assert run_agent(tmp_path / "b", {"skip": "gcc failed"}, {"WQH_WATCH_TEST": "/stale"}) == \
        {"WQH_WATCH_TEST": None, "WQH_WATCH_TEST_SKIP": "gcc failed"}
    assert agent.watch_test_env({}) == {}
