"""The bad-input corpus: every case exits 3 before any expensive work, names the file:line or
the option (key) at fault, prints no traceback, and writes nothing to --out or the cache.

The CLI runs in-process (harness.cli.main) with the cache in a temporary directory; anything
expensive (unpack, clone, merge, build, boot, a run) is replaced by a trap, so a case that
slipped through validation fails here instead of unpacking a 1.5 GB source.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness import cli

DATA = Path(__file__).resolve().parent / "data"
BAD = DATA / "bad"
REPO = DATA.parent.parent
SMOKE = str(REPO / "scenarios" / "smoke.yaml")
OKC = str(BAD / "repro" / "ok.c")
GOOD_PATCH = str(BAD / "patches" / "good.patch")
WALL_OK = str(BAD / "wall" / "good.yaml")


class ExpensiveStart(Exception):
    """Raised by the traps: validation let a bad input through to real work."""


def _trap(name):
    def trap(*a, **k):
        raise ExpensiveStart(f"EXPENSIVE START: {name} was called")
    return trap


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Shared inputs: a clean fake kernel tree, a dirty one, a git repo, a file, a FIFO."""
    root = tmp_path_factory.mktemp("world")
    fake = root / "fake"
    shutil.copytree(DATA / "fake-kernel", fake)
    (fake / "kernel" / "watch_queue.c").write_text("fixed\n")
    dirty = root / "dirty"
    shutil.copytree(fake, dirty)
    (dirty / ".config").write_text("CONFIG_X=y\n")
    repo = root / "repo"
    shutil.copytree(fake, repo)
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")
    for cmd in (["init", "-q"], ["add", "."], ["commit", "-qm", "one"]):
        subprocess.run(["git", "-C", str(repo), *cmd], check=True, env=env, capture_output=True)
    kconf = root / "kconf"  # a tree whose Kconfig defines the options of watch-queue.config
    shutil.copytree(fake, kconf)
    (kconf / "Kconfig").write_text("".join(f"config {n}\n\tbool\n" for n in (
        "WATCH_QUEUE", "KEYS", "KEY_NOTIFICATIONS")))
    plain = root / "plain.txt"
    plain.write_text("x\n")
    fifo = root / "fifo"
    os.mkfifo(fifo)
    notkernel = root / "notkernel"
    notkernel.mkdir()
    return {"FAKE": str(fake), "DIRTY": str(dirty), "REPO": str(repo), "FILE": str(plain),
            "FIFO": str(fifo), "NOTKERNEL": str(notkernel), "B": str(BAD),
            "KCONF": str(kconf)}


def K(*argv, key: str = "", where: str = "", code: int = 3):
    """A case: argv (with {PLACEHOLDERS}), the key it must name, the file:line it must name."""
    return (list(argv), key, where, code)


# The commands, each with otherwise valid arguments; --out where the command takes one.
BASE = {
    "run": ["run", SMOKE, "--out", "{OUT}"],
    "build": ["build"],
    "shell": ["shell"],
    "repro": ["repro", OKC, "--out", "{OUT}"],
    "verify": ["verify", OKC, "--fix", GOOD_PATCH, "--out", "{OUT}"],
    "wall": ["wall", "--index", WALL_OK, "--out", "{OUT}"],
    "bench": ["bench", "--out", "{OUT}"],
}
WITH_OUT = ("run", "repro", "verify", "wall", "bench")
ALL = tuple(BASE)

CASES: dict[str, tuple] = {}


def add(name: str, case) -> None:
    assert name not in CASES, name
    CASES[name] = case


def _with(cmd: str, *extra: str, drop_out: bool = False) -> list[str]:
    argv = list(BASE[cmd])
    if drop_out and "--out" in argv:
        i = argv.index("--out")
        del argv[i:i + 2]
    return argv + list(extra)


for cmd in ALL:
    for v in ("0", "-1", "99999"):
        add(f"{cmd}-jobs-{v}", K(*_with(cmd, "--jobs", v), key="--jobs"))
    for label, v in (("missing", "{NOTKERNEL}/nope"), ("file", "{FILE}"), ("not-a-tree", "{NOTKERNEL}"),
                     ("non-git-ref", "{FAKE}@HEAD"), ("bad-ref", "{REPO}@no-such-ref"),
                     ("empty-ref", "{REPO}@"), ("in-tree-config", "{DIRTY}"), ("empty", ""),
                     ("option-ref", "{REPO}@--all")):
        add(f"{cmd}-kernel-{label}", K(*_with(cmd, "--kernel", v), key="--kernel"))

for cmd in WITH_OUT:
    for label, v in (("existing-file", "{FILE}"), ("proc", "/proc/wqh-out"), ("sys", "/sys/wqh-out"),
                     ("under-a-file", "{FILE}/sub"), ("root", "/"), ("dev-null", "/dev/null"),
                     ("long-name", "{T}/" + "x" * 300), ("not-utf8", "{T}/\udcff")):
        add(f"{cmd}-out-{label}", K(*_with(cmd, drop_out=True), "--out", v, key="--out"))

for cmd in ("repro", "verify", "wall"):
    for v in ("nan", "inf", "-inf", "0", "-5", "1e9"):
        add(f"{cmd}-timeout-{v}", K(*_with(cmd, f"--timeout={v}"), key="--timeout"))
    for v in ("0", "-1", "10000000"):
        add(f"{cmd}-repeat-{v}", K(*_with(cmd, "--repeat", v), key="--repeat"))

FRAGS = (("unknown", "kasn", "", ""), ("bad-value", "{B}/frag/bad-value.config", "bad-value.config:2",
                                        "CONFIG_KEYS"),
         ("syntax", "{B}/frag/syntax.config", "syntax.config:2", ""),
         ("space", "{B}/frag/space.config", "space.config:2", ""),
         ("latin1", "{B}/frag/latin1.config", "latin1.config:2", ""),
         ("directory", "{B}/frag/", "", ""), ("missing-path", "{B}/frag/nope.config", "", ""))
for cmd, opt in (("build", "--fragment"), ("shell", "--fragment"), ("repro", "--config"),
                 ("verify", "--config")):
    for label, v, where, key in FRAGS:
        add(f"{cmd}-fragment-{label}", K(*_with(cmd, opt, v), key=key or opt, where=where))

PATCHES = (("missing", "{B}/patches/nope.patch", ""), ("not-a-diff", "{B}/patches/not-a-diff.patch",
                                                         "not-a-diff.patch:1"),
           ("no-hunk", "{B}/patches/no-hunk.patch", "no-hunk.patch:2"),
           ("escape", "{B}/patches/escape.patch", "escape.patch:2"),
           ("binary", "{B}/patches/binary.patch", "binary.patch:1"), ("empty", "{B}/patches/empty.patch",
                                                                     "empty.patch:1"),
           ("directory", "{B}/patches", ""), ("fifo", "{FIFO}", ""))
for cmd, opt in (("build", "--patch"), ("repro", "--patch"), ("verify", "--bug")):
    base = _with(cmd) if cmd != "verify" else ["verify", OKC, "--out", "{OUT}"]
    for label, v, where in PATCHES:
        add(f"{cmd}-patch-{label}", K(*base, opt, v, key=opt, where=where))
    add(f"{cmd}-patch-does-not-apply", K(*base, "--kernel", "{FAKE}", opt,
                                         "{B}/patches/does-not-apply.patch", key=opt,
                                         where="does-not-apply.patch:5"))
    add(f"{cmd}-patch-does-not-apply-at-ref", K(*base, "--kernel", "{REPO}@HEAD", opt,
                                                "{B}/patches/does-not-apply.patch", key=opt,
                                                where="does-not-apply.patch:5"))
for label, v, where in PATCHES:
    add(f"verify-fix-{label}", K("verify", OKC, "--out", "{OUT}", "--fix", v, key="--fix", where=where))
add("verify-fix-does-not-apply", K("verify", OKC, "--out", "{OUT}", "--kernel", "{FAKE}", "--fix",
                                   "{B}/patches/does-not-apply.patch", key="--fix",
                                   where="does-not-apply.patch:5"))
add("verify-fix-applied-twice", K("verify", OKC, "--out", "{OUT}", "--kernel", "{FAKE}", "--fix",
                                  GOOD_PATCH, "--fix", GOOD_PATCH, key="--fix", where="good.patch:"))
add("verify-no-patch", K("verify", OKC, "--out", "{OUT}", key="--fix/--bug"))
# --bug and --fix together: the fix applies on top of the bug, so the same patch twice is refused.
add("verify-fix-on-top-of-the-same-bug", K("verify", OKC, "--out", "{OUT}", "--kernel", "{FAKE}", "--fix",
                                           GOOD_PATCH, "--bug", GOOD_PATCH, key="--fix", where="good.patch:"))

REPROS = (("elf", "{B}/repro/elf.c", "elf.c:1"), ("syntax", "{B}/repro/syntax.c", "syntax.c:1"),
          ("latin1", "{B}/repro/latin1.c", "latin1.c:1"), ("empty", "{B}/repro/empty.c", "empty.c:1"),
          ("missing", "{B}/repro/nope.c", ""), ("directory", "{B}/repro", ""), ("fifo", "{FIFO}", ""))
for label, v, where in REPROS:
    add(f"repro-file-{label}", K("repro", v, "--out", "{OUT}", key="file", where=where))
    add(f"verify-file-{label}", K("verify", v, "--fix", GOOD_PATCH, "--out", "{OUT}", key="file",
                                  where=where))

for label, argv, key in (("cpus-0", ("--cpus", "0"), "--cpus"), ("cpus-neg", ("--cpus", "-1"), "--cpus"),
                         ("cpus-65", ("--cpus", "65"), "--cpus"), ("memory-0M", ("--memory", "0M"), "--memory"),
                         ("memory-huge", ("--memory", "99999999999999G"), "--memory"),
                         ("memory-word", ("--memory", "lots"), "--memory"),
                         ("memory-1M", ("--memory", "1M"), "--memory")):
    add(f"shell-{label}", K("shell", *argv, key=key))

# Scenario files: (file, line, key); each through `run` and `list`.
SCENS = {
    "timeout-nan": (3, "timeouts.total"), "timeout-inf": (3, "timeouts.no_output"),
    "timeout-neg-inf": (2, "timeouts.total"), "timeout-huge": (2, "timeouts.total"),
    "timeout-string": (2, "timeouts.total"), "memory-zero": (2, "vm.memory"),
    "memory-huge": (2, "vm.memory"), "memory-tiny": (2, "vm.memory"), "memory-number": (2, "vm.memory"),
    "cpus-zero": (2, "vm.cpus"), "cpus-float": (2, "vm.cpus"), "readme-test": (2, "tests[0]"),
    "empty-node": (2, "tests[0]"), "blank-node": (2, "tests[0]"), "empty-path": (2, "tests[0]"),
    "empty-test-string": (2, "tests[0]"), "test-null": (2, "tests[0]"), "test-dir": (2, "tests[0]"),
    "name-empty": (1, "name"), "name-slash": (1, "name"), "leak-bare": (1, "leak"),
    "fragment-unknown": (2, "kernel.fragments"), "fragment-bad-value": (2, "kernel.fragments"),
    "fragment-syntax": (2, "kernel.fragments"), "fragment-latin1": (2, "kernel.fragments"),
    "patch-missing": (2, "kernel.patches"), "patch-not-diff": (2, "kernel.patches"),
    "patch-escape": (2, "kernel.patches"), "patch-dir": (2, "kernel.patches"),
    "test-latin1-file": (2, "tests[0]"), "two-errors": (2, "vm.cpus"), "expect-bad": (1, "expect"),
    "dup-key": (2, "name"), "tab-indent": (2, ""), "latin1": (1, ""), "utf16": (1, ""),
    "python-tag": (2, "vm.cpus"), "bad-float-tag": (2, "timeouts.total"),
    "fragment-name-too-long": (2, "kernel.fragments"),
}
for stem, (line, key) in SCENS.items():
    f = f"{{B}}/scen/{stem}.yaml"
    add(f"run-scenario-{stem}", K("run", f, "--out", "{OUT}", key=key, where=f"{stem}.yaml:{line}"))
    add(f"list-scenario-{stem}", K("list", f, key=key, where=f"{stem}.yaml:{line}"))
add("run-scenario-two-errors-both", K("run", "{B}/scen/two-errors.yaml", "--out", "{OUT}",
                                      key="timeouts.total", where="two-errors.yaml:4"))
add("run-two-files-both-reported", K("run", "{B}/scen/cpus-zero.yaml", "{B}/scen/memory-zero.yaml",
                                     "--out", "{OUT}", key="vm.memory", where="memory-zero.yaml:2"))
add("run-scenario-and-option-both", K("run", "{B}/scen/cpus-zero.yaml", "--jobs", "0", "--out", "{OUT}",
                                      key="--jobs", where="cpus-zero.yaml:2"))
add("run-duplicate-scenario-names", K("run", "{B}/scen/name-slash.yaml", "{B}/dup-name/a.yaml",
                                     "{B}/dup-name/b.yaml", "--out", "{OUT}", key="name", where="b.yaml:1"))
add("run-scenario-patch-does-not-apply", K("run", "{B}/scen/patch-does-not-apply.yaml", "--kernel",
                                           "{FAKE}", "--out", "{OUT}", key="kernel.patches",
                                           where="does-not-apply.patch:5"))
add("run-scenario-patch-twice", K("run", "{B}/scen/patch-twice.yaml", "--kernel", "{FAKE}",
                                  "--out", "{OUT}", key="kernel.patches", where="good.patch:"))
for label, v in (("only-yml", "{B}/only-yml"), ("only-subdirs", "{B}/only-subdirs"),
                 ("empty-dir", "{B}/empty-dir-keep"), ("missing", "{B}/nope.yaml"), ("fifo", "{FIFO}"),
                 ("empty-arg", "")):
    add(f"run-scenarios-{label}", K("run", v, "--out", "{OUT}", key="scenarios" if label != "fifo" else ""))
    add(f"list-scenarios-{label}", K("list", v, key="scenarios" if label != "fifo" else ""))

WALLS = {"missing-scenario": (9, "scenarios"), "bad-yaml": (3, ""), "unknown-key": (5, "bugs[0].colour"),
         "bad-kind": (5, "bugs[0].kind"), "dup-fix": (7, "bugs[1].fix"),
         "racy-elf": (6, "bugs[0].reproducer"), "racy-bad-patch": (7, "bugs[0].patch"),
         "bad-config": (7, "bugs[0].config"), "bad-signature": (7, "bugs[0].signature"),
         "empty": (1, ""), "latin1": (2, "--index")}
for stem, (line, key) in WALLS.items():
    add(f"wall-index-{stem}", K("wall", "--index", f"{{B}}/wall/{stem}.yaml", "--out", "{OUT}", key=key,
                                where=f"{stem}.yaml:{line}"))
add("wall-index-missing", K("wall", "--index", "{B}/wall/nope.yaml", "--out", "{OUT}", key="--index"))
add("wall-index-directory", K("wall", "--index", "{B}/wall", "--out", "{OUT}", key="--index"))
add("wall-only-unknown", K("wall", "--index", WALL_OK, "--only", "nope", "--out", "{OUT}", key="--only"))

for cmd in ALL:
    for label, v in (("a-file", "{FILE}"), ("proc", "/proc/wqh-cache"), ("under-a-file", "{FILE}/c")):
        add(f"{cmd}-cache-env-{label}", K(*_with(cmd), "#WQH_CACHE=" + v, key="WQH_CACHE"))
add("run-vms-too-many", K("run", SMOKE, "--vms", "1000", "--out", "{OUT}", key="--vms"))
add("bench-samples-too-many", K("bench", "--out", "{OUT}", "--samples", "5000", key="--samples"))
for cmd, opt in (("build", "--fragment"), ("shell", "--fragment"), ("repro", "--config"),
                 ("verify", "--config")):
    add(f"{cmd}-fragment-misspelt-symbol", K(*_with(cmd, "--kernel", "{KCONF}", opt, "{B}/frag/misspelt.config"),
                                             key="CONFIG_WATCH_QEUE", where="misspelt.config:1"))
add("run-fragment-misspelt-symbol", K("run", "{B}/scen/fragment-misspelt.yaml", "--kernel", "{KCONF}",
                                      "--out", "{OUT}", key="CONFIG_WATCH_QEUE", where="misspelt.config:1"))
add("parse-log-missing", K("parse", "{B}/nope.log", key="log"))
add("parse-log-directory", K("parse", "{B}", key="log"))
add("parse-log-fifo", K("parse", "{FIFO}", key="log"))
add("parse-vmlinux-missing", K("parse", "{FILE}", "--vmlinux", "{B}/nope", key="--vmlinux"))
add("parse-vmlinux-fifo", K("parse", "{FILE}", "--vmlinux", "{FIFO}", key="--vmlinux"))
add("parse-kernel-tree-missing", K("parse", "{FILE}", "--kernel-tree", "{B}/nope", key="--kernel-tree"))
add("parse-kernel-tree-too-long", K("parse", "{FILE}", "--kernel-tree", "x" * 5000))
add("list-scenario-path-too-long", K("list", "x" * 5000 + ".yaml"))
add("unknown-option", K("run", "--frobnicate"))
add("jobs-not-a-number", K("build", "--jobs", "many"))
add("accel-unknown", K("run", SMOKE, "--accel", "fast"))


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    from harness import bench, build, config, patches, procs, runner, source, vm

    cache = tmp_path / "cache"
    monkeypatch.setenv("WQH_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(procs, "install_handlers", lambda: None)
    for mod, name in ((source, "default_source"), (source, "_unpack"), (source, "git_source"),
                      (source, "resolve"), (config, "merge"), (build, "build"), (runner, "run"),
                      (patches, "materialize"), (vm, "run"), (vm, "shell"), (bench, "main")):
        monkeypatch.setattr(mod, name, _trap(f"{mod.__name__}.{name}"))
    return tmp_path


def _fill(argv, world, tmp: Path) -> list[str]:
    subst = dict(world, T=str(tmp), OUT=str(tmp / "out"))
    return [a.format(**subst) for a in argv]


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name, world, sandbox, capsys, monkeypatch):
    argv, key, where, code = CASES[name]
    before = sorted(p.name for p in sandbox.iterdir())
    argv = _fill(argv, world, sandbox)
    for a in [a for a in argv if a.startswith("#WQH_CACHE=")]:
        argv.remove(a)
        monkeypatch.setenv("WQH_CACHE", a.split("=", 1)[1])
    try:
        rc = cli.main(argv)
    except SystemExit as e:  # argparse's own usage errors
        rc = e.code
    cap = capsys.readouterr()
    text = cap.out + cap.err
    assert "EXPENSIVE START" not in text, text
    assert "Traceback" not in text and "internal error" not in text, text
    assert rc == code, text
    if key:
        assert f"key '{key}'" in cap.err, cap.err
    if where:
        assert where in cap.err, cap.err
    assert "fix:" in cap.err or "usage:" in cap.err or "invalid choice" in cap.err, cap.err
    # Nothing written: no --out, no staging directory, no default results, no cache.
    assert sorted(p.name for p in sandbox.iterdir()) == before, sorted(sandbox.iterdir())
    assert not (sandbox / "cache").exists()


def test_corpus_is_large():
    assert len(CASES) >= 120


def test_all_errors_of_a_run_are_reported_together(world, sandbox, capsys):
    rc = cli.main(["run", f"{BAD}/scen/two-errors.yaml", f"{BAD}/scen/memory-zero.yaml", "--jobs", "0",
                   "--out", world["FILE"]])
    err = capsys.readouterr().err
    assert rc == 3
    assert "5 input errors" in err or "4 input errors" in err, err
    for frag in ("two-errors.yaml:2: key 'vm.cpus'", "two-errors.yaml:4: key 'timeouts.total'",
                 "memory-zero.yaml:2: key 'vm.memory'", "key '--jobs'", "key '--out'"):
        assert frag in err, err


def test_an_unexpected_exception_is_one_line_and_exit_2(sandbox, capsys, monkeypatch):
    from harness import scenario

    def boom(paths):
        raise KeyError("surprise")
    monkeypatch.setattr(scenario, "load_all", boom)
    rc = cli.main(["list"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    saved = Path(err.split("traceback saved in ")[1].split(";")[0])
    assert "KeyError" in saved.read_text()
