"""wqh stress without a VM: the program on the host, the known list against recorded consoles,
the generated guest module, reading a run back, the numbers, bad input."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness import cli, report, runner, stress, wall
from harness.results import RunSummary, TestResult
from harness.scenario import VMShape

REPORTS = Path(__file__).resolve().parent / "data" / "reports"
PATCHES = stress.SCENARIOS / "regressions" / "patches"


def _reports(log: str) -> list[dict]:
    """A recorded console's reports as the runner's reports.json holds them."""
    found = report.parse_text((REPORTS / log).read_text())
    return [{"title": r.title, "type": r.type, "test": r.test, "line": r.line, "corrupted": r.corrupted,
             "alt_titles": r.alt_titles, "text": r.text} for r in found]


# --- the program ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def program(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    binary = tmp_path_factory.mktemp("stress") / "wq-stress"
    r = subprocess.run(["gcc", "-Wall", "-Wextra", "-Werror", "-O1", "-pthread", "-o", str(binary),
                        str(stress.PROGRAM)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return binary


def _plan(program, seed):
    r = subprocess.run([str(program), "--seed", str(seed), "--plan", "20"], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def test_a_seed_chooses_every_threads_operations(program):
    plan = _plan(program, 7)
    assert len(plan) == 14  # seven pairs, two threads each
    assert {ln.split(":")[0] for ln in plan} >= {"read reader", "set-size sizer", "set-filter filterer",
                                                  "close closer", "unwatch watcher", "gc collector",
                                                  "clear clearer", "gc poster"}
    assert all(len(ln.split(": ", 1)[1].split()) == 20 for ln in plan)
    assert _plan(program, 7) == plan
    assert _plan(program, 8) != plan


@pytest.mark.parametrize("args, why", [
    (["--seconds", "1"], "--seed is required"),
    (["--seed", "-1", "--seconds", "1"], "--seed"),
    (["--seed", "1", "--seconds", "0"], "--seconds"),
    (["--seed", "1", "--bogus", "1"], "unknown option"),
    (["--seed"], "every option takes a value"),
])
def test_the_program_refuses_bad_arguments_with_exit_2(program, args, why):
    r = subprocess.run([str(program), *args], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and why in r.stderr and "usage:" in r.stderr


def _has_watch_queue() -> bool:
    try:
        r, w = os.pipe2(0o200)  # O_NOTIFICATION_PIPE (O_EXCL on x86_64)
    except OSError:
        return False
    os.close(r)
    os.close(w)
    return True


@pytest.mark.skipif(_has_watch_queue(), reason="this host's kernel has CONFIG_WATCH_QUEUE")
def test_without_the_feature_the_program_says_so_and_exits_1(program):
    r = subprocess.run([str(program), "--seed", "1", "--seconds", "1"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1
    assert "no CONFIG_WATCH_QUEUE" in r.stderr or "KEYCTL_JOIN_SESSION_KEYRING" in r.stderr


@pytest.mark.skipif(not _has_watch_queue(),
                    reason="this host's kernel has no CONFIG_WATCH_QUEUE (pipe2(O_NOTIFICATION_PIPE) fails)")
def test_the_program_runs_a_second_on_this_host_and_every_thread_works(program):
    r = subprocess.run([str(program), "--seed", "3", "--seconds", "1"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    d = stress.program_output(r.stdout)
    assert d["final"] and d["seed"] == 3 and 1 <= d["seconds"] < 30
    assert set(d["pairs"]) == {"read", "set-size", "set-filter", "close", "unwatch", "gc", "clear"}
    assert stress.idle_roles(d["pairs"]) == []


# --- the known list ------------------------------------------------------------------------

def test_every_shipped_entry_has_a_reason_versions_and_where_it_was_seen():
    known = stress.load_known()
    assert len(known) >= 5
    for k in known:
        assert k.reason and k.versions == ["6.1"] and k.seen
        for log in (w for w in k.seen.replace(",", " ").split() if w.endswith(".log")):
            assert (REPORTS / Path(log).name).is_file(), log


@pytest.mark.parametrize("log", ["kcsan-marked-head-store.log", "kcsan-release-nr-notes-store.log",
                                 "kcsan-stress-fixed.log", "kcsan-stress-fixed-2.log"])
def test_the_fixed_trees_recorded_kcsan_consoles_are_all_known(log):
    reps = _reports(log)
    got = stress.classify(reps, stress.load_known(), "6.1.192")
    assert len(got) >= 7
    assert [r["title"] for r in got if r["known"] is None] == []


def test_fionread_against_a_plain_head_store_stays_new():
    """The FIONREAD race is known with the post's marked store; 2ed147f015's plain one is new."""
    reps = [r for r in _reports("kcsan-stress-fixed.log") if "pipe_ioctl" in r["title"]]
    assert len(reps) == 1 and "write (marked) to" in reps[0]["text"]
    known = stress.load_known()
    assert stress.classify(reps, known, "6.1.192")[0]["known"]
    reps[0]["text"] = reps[0]["text"].replace("write (marked) to", "write to")
    assert stress.classify(reps, known, "6.1.192")[0]["known"] is None


def test_the_bugs_own_form_of_a_known_title_stays_new():
    """2ed147f015 re-introduced: the plain head store gives the fixed tree's title, but new."""
    known = stress.load_known()
    got = stress.classify(_reports("kcsan-plain-head-store.log"), known, "6.1.192")
    new = [r["title"] for r in got if r["known"] is None]
    assert new and set(new) == {"KCSAN: data-race in pipe_read / post_one_notification"}
    got = stress.classify(_reports("kcsan-plain-nr-notes-store.log"), known, "6.1.192")
    title = "KCSAN: data-race in post_one_notification / watch_queue_set_size"
    assert [r["title"] for r in got if r["known"] is None] == [title] * 3
    assert [r["entry"] for r in got if r["title"] == title and r["known"]] == ["known[6]"] * 2


def test_a_kasan_report_is_new_and_a_known_title_on_another_version_too():
    known = stress.load_known()
    (kasan,) = stress.classify(_reports("kasan-uaf-queue-freed-before-ring.log"), known, "6.1.192")
    assert kasan["known"] is None and kasan["type"] == "KASAN"
    reps = _reports("kcsan-marked-head-store.log")
    for version in ("6.12.1", "6.10", ""):  # "6.1" is a prefix at a dot only
        assert all(r["known"] is None for r in stress.classify(reps, known, version))


def test_a_bad_known_list_names_file_line_and_key(tmp_path):
    bad = tmp_path / "known.yaml"
    bad.write_text(textwrap.dedent("""\
        known:
          - title: "KCSAN: x"
            versions: ["6.1"]
            seen: here
          - title: "KCSAN: ("
            versions: ["6.1"]
            seen: here
            reason: r
        """))
    with pytest.raises(stress.InputError) as e:
        stress.load_known(bad)
    assert f"{bad}:2: key 'known[0].reason'" in str(e.value)
    bad.write_text('known:\n  - {title: "KCSAN: (", versions: ["6.1"], seen: s, reason: r}\n')
    with pytest.raises(stress.InputError) as e:
        stress.load_known(bad)
    assert "key 'known[0].title': bad regex" in str(e.value)
    bad.write_text('known:\n  - {title: x, versions: [6.10], seen: s, reason: r}\n')
    with pytest.raises(stress.InputError) as e:
        stress.load_known(bad)
    assert "key 'known[0].versions'" in str(e.value)  # 6.10 read as a number: 6.1


# --- numbers, the guest module, the scenarios ----------------------------------------------

def test_reports_per_cpu_hour():
    assert stress.per_cpu_hour(3, 2, 1800) == 3.0
    assert stress.per_cpu_hour(9, 1, 60) == 540.0
    assert stress.per_cpu_hour(0, 4, 60) == 0.0
    assert stress.per_cpu_hour(5, 4, 0) == 0.0


def test_cpu_counts():
    assert stress.parse_cpus("1,2,4") == (1, 2, 4)
    assert stress.parse_cpus(" 8 ") == (8,)
    for bad in ("", "1,,2", "0", "65", "2,2", "x", "-1"):
        with pytest.raises(stress.InputError) as e:
            stress.parse_cpus(bad)
        assert e.value.key == "--cpus"


def test_one_vm_per_cpu_count_on_one_kernel(tmp_path):
    case = stress.write_case(tmp_path, tmp_path / "wq-stress", 5, 30.0)
    scs = stress.scenarios_for(case, (1, 2, 4), 30.0, stress.PROFILES["kcsan"], ())
    assert [s.vm for s in scs] == [VMShape(cpus=1), VMShape(cpus=2), VMShape(cpus=4)]
    (g,) = runner.group_kernels(scs)
    assert len(runner.vm_shapes(g)) == 3
    assert all(s.timeouts.no_output > 30 + stress.GRACE_S for s in scs)


def test_the_kcsan_profile_is_the_walls_kcsan_kernel():
    kcsan = {b.config for b in wall.load_index() if "kcsan" in b.config}
    assert kcsan == {stress.KCSAN_FRAGMENTS}


def _run_case(tmp_path, script: str):
    tmp_path.mkdir(exist_ok=True)
    fake = tmp_path / "fake-stress"
    fake.write_text("#!/bin/sh\n" + script)
    fake.chmod(0o755)
    case = stress.write_case(tmp_path, fake, 11, 0.5)
    out = tmp_path / "guest"
    out.mkdir()
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(case)],
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "WQH_GUEST_OUT": str(out)})
    return r, out / stress.OUTPUT


def test_the_guest_module_keeps_the_programs_output_and_its_arguments(tmp_path):
    r, out = _run_case(tmp_path, 'echo "args: $*"\n')
    assert r.returncode == 0, r.stdout
    assert out.read_text() == "args: --seed 11 --seconds 0.5\n"
    r, out = _run_case(tmp_path / "failing", 'echo "setup failed" >&2; exit 1\n')
    assert r.returncode == 1 and "the stress program exited 1: setup failed" in r.stdout


# --- a run read back -----------------------------------------------------------------------

def _output(final=True, gc_ok=5):
    pairs = {"read": {"poster.update": [10, 0], "reader.read": [3, 7], "reader.fionread": [0, 0]},
             "gc": {"poster.update": [gc_ok, 4], "collector.create": [gc_ok, 0]}}
    line = json.dumps({"wq_stress": 1, "seed": 11, "seconds": 29.5, "final": final, "pairs": pairs})
    return f"wq-stress: seed 11\nread  poster: update 10 (0 failed)\n{line}\n"


def _vm(tmp_path, name, log=None, output=None):
    d = tmp_path / name
    (d / "guest").mkdir(parents=True)
    runner.write_reports(d / "reports.json", report.parse_text((REPORTS / log).read_text()) if log else [])
    if output is not None:
        (d / "guest" / stress.OUTPUT).write_text(output)


def test_a_run_is_read_back_counted_and_classified(tmp_path):
    case = str(tmp_path / "test_stress_case.py") + "::test_stress"
    _vm(tmp_path, "vm1-a", output=_output())
    _vm(tmp_path, "vm2-a", log="kcsan-plain-head-store.log", output=_output(gc_ok=0))
    _vm(tmp_path, "vm3-a")
    s = RunSummary([TestResult("stress-1cpu", case, "k", "pass", vm="vm1-a", version="6.1.192"),
                    TestResult("stress-2cpu", case, "k", "crash", vm="vm2-a", version="6.1.192"),
                    TestResult("stress-4cpu", case, "k", "fail", vm="vm3-a", version="6.1.192",
                               message="the stress program exited 1: setup failed")], 0, 0, tmp_path)
    one, two, four = stress.collect(s, (1, 2, 4), 30.0, stress.load_known())
    assert (one.program, one.operations, one.seconds, one.idle, one.reports) == ("ran", 23, 29.5, [], [])
    assert (one.kernel, one.version) == ("k", "6.1.192")
    assert one.problem() == "" and one.rate == 0.0
    assert (two.known, two.new) == (5, 14)
    assert two.rate == pytest.approx(19 / (2 * 29.5 / 3600))
    assert two.idle == ["gc.poster", "gc.collector"]
    assert "threads that did nothing: gc.poster, gc.collector" in two.problem()
    assert four.program == "failed" and "setup failed" in four.problem()
    assert (four.seconds, four.seconds_measured) == (30.0, False)
    text = stress.table([one, two, four])
    assert text.splitlines()[2].split() == ["2", "30", "13", "5", "14", f"{two.rate:.1f}"]
    assert text.splitlines()[3].split()[:3] == ["4", "30?", "?"]
    assert "NEW              KCSAN: data-race in pipe_read / post_one_notification (x14)" in \
        stress.details([two])


def test_a_run_stopped_by_a_crash_keeps_its_last_progress(tmp_path):
    case = str(tmp_path / "c.py") + "::test_stress"
    _vm(tmp_path, "vm1-b", log="kasan-uaf-queue-freed-before-ring.log", output=_output(final=False))
    s = RunSummary([TestResult("stress-2cpu", case, "k", "crash", vm="vm1-b", version="6.1.192")],
                   0, 0, tmp_path)
    (run,) = stress.collect(s, (2,), 60.0, stress.load_known())
    assert (run.program, run.seconds, run.new, run.idle) == ("interrupted", 29.5, 1, [])
    assert run.problem() == ""  # the new report says what happened
    lost = RunSummary([], 0, 0, tmp_path)
    (run,) = stress.collect(lost, (2,), 60.0, [])
    assert run.outcome == "lost" and "did not run" in run.problem()


# --- the command line ----------------------------------------------------------------------

def test_arguments_and_their_defaults():
    a = cli.make_parser().parse_args(["stress"])
    assert (a.seconds, a.cpus, a.profile, a.seed, a.patch, a.known) == (60.0, "1,2,4", "sanitizers",
                                                                        None, [], None)
    a = cli.make_parser().parse_args(["stress", "--seconds", "300", "--cpus", "2", "--profile", "kcsan",
                                      "--seed", "42", "--patch", "x.patch", "--patch", "y.patch"])
    assert (a.seconds, a.cpus, a.profile, a.seed, a.patch) == (300.0, "2", "kcsan", 42,
                                                              [Path("x.patch"), Path("y.patch")])


def test_bad_input_is_exit_3_before_any_work_and_names_every_option(tmp_path, wqh_cmd, tmp_cache):
    out = tmp_path / "out"
    r = subprocess.run(wqh_cmd + ["stress", "--cpus", "1,x", "--seconds", "0", "--seed", str(2 ** 64),
                                  "--patch", str(tmp_path / "none.patch"),
                                  "--known", str(tmp_path / "none.yaml"), "--out", str(out)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 3, r.stderr
    for key in ("--cpus", "--seconds", "--seed", "--patch", "--known"):
        assert f"key '{key}'" in r.stderr
    assert "Traceback" not in r.stderr and not out.exists() and not tmp_cache.exists()
    r = subprocess.run(wqh_cmd + ["stress", "--profile", "kasan"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 3 and "invalid choice: 'kasan'" in r.stderr


@pytest.mark.parametrize("bug", ["189b0ddc24-resize-race.patch", "353f7988dd-defunct-race.patch"])
def test_the_two_racy_bugs_pass_the_checks_as_patches(monkeypatch, bug):
    """The checks (the patch applies to the default tree where it is at hand) let them through
    to the run, which is replaced here."""
    seen = []

    def run(a, known):
        seen.append((a, known))
        return 0
    monkeypatch.setattr(stress, "main", run)
    assert cli.main(["stress", "--patch", str(PATCHES / bug), "--cpus", "2", "--seconds", "5"]) == 0
    ((a, known),) = seen
    assert a.cpu_counts == (2,) and known and a.patch == [PATCHES / bug]


@pytest.mark.parametrize("log, rc", [(None, 0), ("kcsan-marked-head-store.log", 0),
                                     ("kasan-uaf-queue-freed-before-ring.log", 1)])
def test_a_whole_run_with_the_vms_replaced(tmp_path, monkeypatch, capsys, log, rc):
    """main(): the program compiled into the run, one scenario per vCPU count run one VM at a
    time, stress.json and the exit code from the reports."""
    calls = []

    def fake_run(scs, opts):
        calls.append((scs, opts))
        rs = []
        for i, s in enumerate(scs):
            _vm(opts.out, f"vm{i + 1}-k", log=log, output=_output())
            rs.append(TestResult(s.name, s.tests[0].id, "k", "crash" if log else "pass",
                                 vm=f"vm{i + 1}-k", version="6.1.192"))
        return RunSummary(rs, 0, 0, opts.out)
    monkeypatch.setattr(stress.runner, "run", fake_run)
    a = cli.make_parser().parse_args(["stress", "--cpus", "1,2", "--seconds", "30", "--seed", "9",
                                      "--profile", "kcsan", "--out", str(tmp_path / "out")])
    assert stress.main(a, stress.check(a)) == rc
    ((scs, opts),) = calls
    assert opts.vms == 1 and [s.vm.cpus for s in scs] == [1, 2]
    assert scs[0].kernel.fragments == stress.KCSAN_FRAGMENTS
    out = tmp_path / "out"
    assert os.access(out / "wq-stress", os.X_OK)
    assert "'--seed', '9', '--seconds', '30'" in (out / "test_stress_case.py").read_text()
    d = json.loads((out / "stress.json").read_text())
    assert (d["seed"], [r["cpus"] for r in d["runs"]]) == (9, [1, 2])
    assert all(r["operations"] == 23 and r["per_cpu_hour"] >= 0 for r in d["runs"])
    printed = capsys.readouterr().out
    assert "reports/CPU-hour" in printed
    if rc:
        assert d["new_titles"] == ["KASAN: use-after-free Write in watch_queue_pipe_buf_release"]
        assert "1 new report titles" in printed
    else:
        assert d["new_titles"] == [] and "no report beyond the known ones" in printed
