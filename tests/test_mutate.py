"""`wqh mutate`: the mutant index, its patches, the verdicts, the score and the command line.
Fast tests use a tiny fake tree; the real index is checked against Debian's 6.1 tree when it is
unpacked in the cache. The heavy test runs two mutants for real."""

import argparse
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from harness import build, mutate, patches, results, source
from harness.errors import InputError
from harness.paths import SCENARIOS, cache_dir
from harness.report import Report
from harness.results import TestResult

WQ = """\
// SPDX-License-Identifier: GPL-2.0
static bool post_one_notification(struct watch_queue *wqueue)
{
\tif (note >= nr_notes)
\t\tgoto lost;
\tbuf->flags = PIPE_BUF_FLAG_WHOLE;
\tkfree(x);
\treturn true;
lost:
\tkfree(x);
\tbuf->flags |= PIPE_BUF_FLAG_LOSS;
\treturn false;
}
"""


@pytest.fixture
def tree(tmp_path):
    t = tmp_path / "linux"
    (t / "kernel").mkdir(parents=True)
    (t / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 192\nEXTRAVERSION =\n")
    (t / "kernel" / "watch_queue.c").write_text(WQ)
    return t


def _reader(root: Path):
    return lambda rel: (root / rel).read_bytes() if (root / rel).is_file() else None


def _index(tmp_path, body: str) -> Path:
    f = tmp_path / "index.yaml"
    f.write_text("mutants:\n" + body)
    return f


ONE = ('  - id: m1\n    file: kernel/watch_queue.c\n    find: "\\tif (note >= nr_notes)"\n'
       '    replace: "\\tif (note > nr_notes)"\n    kind: boundary\n')


# --- the index ---------------------------------------------------------------------------


@pytest.mark.parametrize("body, line, key", [
    (ONE + "    colour: red\n", 7, "mutants[0].colour"),
    ('  - id: m1\n    file: kernel/watch_queue.c\n    replace: ""\n    kind: boundary\n', 2,
     "mutants[0].find"),
    (ONE + ONE, 7, "mutants[1].id"),
    (ONE.replace("kind: boundary", "kind: typo"), 6, "mutants[0].kind"),
    (ONE + "    scenario: nope\n", 7, "mutants[0].scenario"),
    (ONE + "    occurrence: 0\n", 7, "mutants[0].occurrence"),
    (ONE + "    equivalent: ' '\n", 7, "mutants[0].equivalent"),
    (ONE + "    killed_by: guest-tests/test_nope.py::test_x\n", 7, "mutants[0].killed_by"),
    (ONE.replace('"\\tif (note > nr_notes)"', '"\\tif (note >= nr_notes)"'), 5, "mutants[0].replace"),
    (ONE.replace("kernel/watch_queue.c", "../etc/passwd"), 3, "mutants[0].file"),
    (ONE.replace("id: m1", "id: 'a b'"), 2, "mutants[0].id"),
    (ONE.replace('"\\tif (note >= nr_notes)"', '"a\\nb"'), 4, "mutants[0].find"),
    # the wall's 3d8dcf278b deletes this line: a known bug, not a mutant
    ('  - id: w\n    file: kernel/watch_queue.c\n    find: "\\tkfree(watch);"\n    replace: ""\n'
     '    kind: missing-free\n', 4, "mutants[0].find"),
])
def test_a_bad_index_names_file_line_and_key(tmp_path, body, line, key):
    f = _index(tmp_path, body)
    with pytest.raises(InputError) as e:
        mutate.load_index(f)
    assert e.value.exit_code == 3
    assert f"{f}:{line}: key '{key}'" in str(e.value)
    assert "fix: " in str(e.value)


def test_every_error_of_the_index_is_reported_together(tmp_path):
    f = _index(tmp_path, ONE.replace("kind: boundary", "kind: x") + ONE.replace("id: m1", "id: m2")
               + "    occurrence: -1\n")
    with pytest.raises(InputError) as e:
        mutate.load_index(f)
    assert "key 'mutants[0].kind'" in str(e.value) and "key 'mutants[1].occurrence'" in str(e.value)


def test_an_empty_replace_deletes_and_killed_by_takes_a_list(tmp_path):
    f = _index(tmp_path, ONE.replace('"\\tif (note > nr_notes)"', "") + "    killed_by: [wqh:kmemleak,"
               " guest-tests/test_loss.py::test_capacity_is_32_per_page_then_one_loss]\n")
    (m,) = mutate.load_index(f)
    assert m.replace == "" and m.edit == "if (note >= nr_notes) -> (line deleted)"
    assert m.killed_by[0] == "wqh:kmemleak" and m.scenario == "functional" and m.occurrence == 0


# --- the tree ----------------------------------------------------------------------------


@pytest.mark.parametrize("find, extra, message, key", [
    ("\\tif (note < nr_notes)", "", "not a line of kernel/watch_queue.c", "find"),
    ("if (note >= nr_notes)", "", "line 4 has the same text with other whitespace", "find"),
    ("\\tkfree(x);", "", "2 lines of kernel/watch_queue.c are this line (lines 7, 10)", "find"),
    ("\\tkfree(x);", "    occurrence: 3\n", "occurrence 3, but kernel/watch_queue.c has 2", "occurrence"),
])
def test_a_find_line_must_be_in_the_tree_once(tmp_path, tree, find, extra, message, key):
    f = _index(tmp_path, ONE.replace('"\\tif (note >= nr_notes)"', f'"{find}"') + extra)
    ms = mutate.load_index(f)
    with pytest.raises(InputError) as e:
        mutate.locate(ms, _reader(tree), "the fake tree", f)
    assert message in str(e.value), str(e.value)
    assert f"{f}:{ms[0].lines[key]}: key 'mutants[0].{key}'" in str(e.value)
    if "lines 7, 10" in message:
        assert "occurrence: N" in str(e.value)


def test_a_file_missing_from_the_tree_is_named_at_its_line(tmp_path, tree):
    f = _index(tmp_path, ONE.replace("kernel/watch_queue.c", "fs/pipe.c"))
    with pytest.raises(InputError) as e:
        mutate.locate(mutate.load_index(f), _reader(tree), "the fake tree", f)
    assert f"{f}:3: key 'mutants[0].file'" in str(e.value) and "fs/pipe.c: no such file" in str(e.value)


def _changed(before: str, after: str) -> list[tuple[str, str]]:
    import difflib

    sm = difflib.SequenceMatcher(a=before.splitlines(), b=after.splitlines())
    return [("\n".join(sm.a[i1:i2]), "\n".join(sm.b[j1:j2]))
            for op, i1, i2, j1, j2 in sm.get_opcodes() if op != "equal"]


@pytest.mark.parametrize("find, occurrence, replace, line", [
    ("\\tif (note >= nr_notes)", 0, "\\tif (note > nr_notes)", 4),
    ("\\tkfree(x);", 2, "", 10),
    ("\\tbuf->flags |= PIPE_BUF_FLAG_LOSS;", 0, "\\tbuf->flags |= 0;", 11),
])
def test_the_patch_applies_to_the_tree_and_changes_exactly_that_line(tmp_path, tree, find,
                                                                      occurrence, replace, line):
    f = _index(tmp_path, ONE.replace('"\\tif (note >= nr_notes)"', f'"{find}"')
               .replace('"\\tif (note > nr_notes)"', f'"{replace}"')
               + (f"    occurrence: {occurrence}\n" if occurrence else ""))
    (m,) = mutate.load_index(f)
    read = _reader(tree)
    mutate.locate([m], read, "the fake tree", f)
    assert m.tree_line == line and m.where == f"kernel/watch_queue.c:{line}"
    p = mutate.write_patch(m, read(m.file), tmp_path / "patches")
    assert p.name == "m1.patch"
    patches.check_form(p)
    patches.check_applies(read, (p,), "the fake tree")
    assert patches.touched_files(p) == ["kernel/watch_queue.c"]
    work = tmp_path / "work"
    subprocess.run(["cp", "-a", str(tree), str(work)], check=True)
    subprocess.run(["patch", "-p1", "-s", "-d", str(work), "-i", str(p)], check=True)
    after = (work / "kernel" / "watch_queue.c").read_text()
    assert _changed(WQ, after) == [(m.find, m.replace)]
    assert WQ.splitlines()[line - 1] == m.find
    assert (tree / "kernel" / "watch_queue.c").read_text() == WQ  # the tree is never written


# --- verdicts ----------------------------------------------------------------------------


def _r(test, outcome, expected="pass", titles=(), message="", scen="functional~m1", dur=1.0, kernel="k1"):
    return TestResult(scen, test, kernel, outcome, expected, duration_s=dur, message=message,
                      reports=[Report(t, "KASAN") for t in titles])


T1, T2 = "guest-tests/test_a.py::test_one", "guest-tests/test_a.py::test_two[3]"


def test_a_test_not_as_expected_or_a_report_kills():
    v, kills, note = mutate.classify([_r(T1, "pass"), _r(T2, "fail")])
    assert v == mutate.KILLED and kills == ["test_a.py::test_two[3] fail"] and note == ""
    v, kills, _ = mutate.classify([_r(T1, "crash", titles=["KASAN: use-after-free Read in x"]),
                                   _r("wqh:kmemleak", "crash", titles=["memory leak in y"])])
    assert v == mutate.KILLED
    assert kills == ["test_a.py::test_one crash (KASAN: use-after-free Read in x)",
                     "wqh:kmemleak crash (memory leak in y)"]
    # a kernel that crashed before the tests could run: infra-error, with the boot's report
    v, kills, _ = mutate.classify([_r(T1, "infra-error", titles=["BUG: kernel NULL pointer dereference"])])
    assert v == mutate.KILLED
    # a hang or a skip is not what the tree does either
    assert mutate.classify([_r(T1, "hang")])[0] == mutate.KILLED
    assert mutate.classify([_r(T1, "skip")])[0] == mutate.KILLED


def test_everything_as_expected_survives_and_expected_crashes_do_not_kill():
    v, kills, note = mutate.classify([_r(T1, "pass"), _r(T2, "xfail", "crash", ["KASAN: x"])])
    assert v == mutate.SURVIVED and kills == [] and note == "2 results as on the tree"


def test_a_build_failure_is_counted_apart_and_other_infra_errors_are_unknown():
    msg = ("kernel build failed (make exit 2) in /c/builds/x:\nkernel/watch_queue.c:120: error: "
           "expected ';'\n  fix: look at the build log")
    v, kills, note = mutate.classify([_r(T1, "infra-error", message=msg), _r(T2, "infra-error", message=msg)])
    assert v == mutate.BUILD and kills == []
    assert note.startswith("kernel build failed (make exit 2)") and "expected ';'" in note
    v, _, note = mutate.classify([_r(T1, "pass"), _r(T2, "infra-error", message="VM would not boot")])
    assert v == mutate.UNKNOWN and note == "1 of 2 results infra-error: VM would not boot"
    assert mutate.classify([])[0] == mutate.UNKNOWN
    # a failing test beside an infra error still kills
    assert mutate.classify([_r(T1, "fail"), _r(T2, "infra-error", message="lost")])[0] == mutate.KILLED


def test_tests_that_fail_on_the_unmutated_tree_kill_nothing():
    rs = [_r(T1, "pass", scen="functional~base"), _r(T2, "fail", scen="functional~base")]
    noisy = mutate.noisy_tests(rs)
    assert noisy == {"functional": frozenset({T2})}
    v, kills, note = mutate.classify([_r(T1, "pass"), _r(T2, "fail")], noisy["functional"])
    assert v == mutate.SURVIVED and "1 not as expected on the unmutated tree too" in note
    assert mutate.classify([_r(T1, "fail"), _r(T2, "fail")], noisy["functional"])[1] == \
        ["test_a.py::test_one fail"]


def _mutant(mid, verdict, kind="boundary", line=10, **kw):
    m = mutate.Mutant(mid, "kernel/watch_queue.c", "\tif (a < b)", "\tif (a <= b)", kind,
                      tree_line=line, verdict=verdict, **kw)
    return m


def test_judge_maps_results_builds_and_times_to_each_mutant():
    a, b = _mutant("m1", mutate.NOT_RUN), _mutant("m2", mutate.NOT_RUN)
    rs = [_r(T1, "pass", scen="functional~base", kernel="base"),
          _r(T1, "fail", dur=2.0), _r(T2, "pass", dur=0.5),
          _r(T1, "pass", scen="functional~m2", kernel="k2"), _r(T2, "pass", scen="functional~m2", kernel="k2")]
    kernels = {"aaa": {"identity": "k1", "build_wall_s": 61.24}, "bbb": {"identity": "k2", "build_wall_s": 0.0}}
    mutate.judge([a, b], rs, kernels, "run-1", mutate.noisy_tests(rs))
    assert (a.verdict, a.build_s, a.run_s, a.artifacts) == (mutate.KILLED, 61.2, 2.5, "run-1")
    assert (b.verdict, b.killers, b.build_s, b.run_s) == (mutate.SURVIVED, [], 0.0, 2.0)


def test_the_score_table_and_survivors():
    ms = [_mutant("m1", mutate.KILLED, killers=["t1 fail", "t2 fail", "t3 fail", "t4 crash"],
                  build_s=60.4, run_s=30.2),
          _mutant("m2", mutate.KILLED, kind="missing-free", killers=["wqh:kmemleak crash (memory leak in x)"]),
          _mutant("m3", mutate.SURVIVED, line=12),
          _mutant("m4", mutate.BUILD, note="kernel build failed (make exit 2)"),
          _mutant("m5", mutate.EQUIVALENT, equivalent="never reached", note="never reached")]
    s = mutate.score(ms)
    assert (s.killed, s.survived, s.build, s.equivalent) == (2, 1, 1, 1)
    assert s.text() == ("mutation score: 2/3 killed (67%) = killed / (killed + survived); 1 killed "
                        "by the build (not counted), 1 equivalent (not run)")
    text = mutate.table(ms)
    lines = text.splitlines()
    assert lines[0] == ("| mutant | kind | file:line | edit | verdict | killing tests | build s | "
                        "run s |")
    assert len(lines) == 2 + len(ms)
    assert lines[2] == ("| m1 | boundary | kernel/watch_queue.c:10 | `if (a < b) -> if (a <= b)` | "
                        "killed | t1 fail; t2 fail; t3 fail; +1 more | 60 | 30 |")
    assert "| m3 | boundary | kernel/watch_queue.c:12 |" in lines[4] and "| survived | - | - | - |" in lines[4]
    assert "| killed (build) | kernel build failed (make exit 2) |" in lines[5]
    assert "| equivalent | never reached |" in lines[6]
    ms[4].note = "x" * 150
    assert f"| equivalent | {'x' * 97}... |" in mutate.table(ms).splitlines()[6]
    sv = mutate.survivors(ms)
    assert sv.splitlines()[1] == "  m3  kernel/watch_queue.c:12  if (a < b) -> if (a <= b)"
    rep = mutate.report(ms, 125.0)
    assert rep.splitlines()[-1] == "time: 125 s (mutant builds 60 s, mutant tests 30 s)"
    assert mutate.score([_mutant("e", mutate.EQUIVALENT)]).text().startswith("mutation score: n/a")


def test_exit_code_survivors_1_unknown_2_all_killed_0():
    k, s, u, e = (_mutant("k", mutate.KILLED), _mutant("s", mutate.SURVIVED),
                  _mutant("u", mutate.UNKNOWN), _mutant("e", mutate.EQUIVALENT))
    assert mutate.exit_code([k, e, _mutant("b", mutate.BUILD)]) == 0
    assert mutate.exit_code([k, s]) == 1
    assert mutate.exit_code([k, s, u]) == 2


# --- a run, with the runner faked ----------------------------------------------------------


def _args(**kw):
    d = dict(index=None, only=[], kind=None, kernel=None, list=False, resume=False, out=None,
             accel="tcg", jobs=None, keep_builds=False)
    d.update(kw)
    return argparse.Namespace(**d)


def _fake_build(name: str, patch: Path, config: str = "c1", finished: bool = True) -> Path:
    """A variant build directory in the cache, as build.py leaves one for PATCH."""
    d = cache_dir() / "variants" / "linux-x" / "builds" / name
    d.mkdir(parents=True, exist_ok=True)  # there already: a build reused
    (d / build.SOURCE_META).write_text(json.dumps({
        "path": "/x", "identity": "t+patches:" + patches.patch_hashes((patch,))[0], "config": config}))
    if finished:
        (d / build.STAMP).write_text("k\n")
    return d


def _fake_runner(monkeypatch, outcome_of):
    """runner.run replaced: each scenario's tests get outcome_of(scenario name, test id); a
    mutant's variant leaves its build directory in the cache."""
    from harness import runner

    calls = []

    def run(scs, opts):
        calls.append([s.name for s in scs])
        for s in scs:
            if "~m" in s.name:
                (p,) = s.kernel.patches
                assert p.is_file() and p.parent.name == "patches"
                assert s.kernel.fragments == ("watch-queue",)
                _fake_build(s.name, p)
        rs = [TestResult(s.name, t.id, "k-" + s.name, outcome_of(s.name, t.id), duration_s=0.1)
              for s in scs for t in s.tests[:3]]
        kernels = {s.name: {"identity": "k-" + s.name, "build_wall_s": 50.0} for s in scs}
        return results.RunSummary(rs, 0.0, 1.0, opts.out, kernels=kernels)

    monkeypatch.setattr(runner, "run", run)
    return calls


TWO = (ONE + '  - id: m2\n    file: kernel/watch_queue.c\n    find: "\\tbuf->flags = PIPE_BUF_FLAG_WHOLE;"\n'
       '    replace: "\\tbuf->flags = 0;"\n    kind: dropped-flag\n'
       '  - id: m3\n    file: kernel/watch_queue.c\n    find: "\\treturn true;"\n'
       '    replace: "\\treturn false;"\n    kind: inverted-logic\n    equivalent: a reason\n')


def test_a_run_writes_the_table_json_and_patches_and_exits_1_on_a_survivor(tmp_path, tree, monkeypatch, capsys,
                                                                           tmp_cache):
    f = _index(tmp_path, TWO)
    calls = _fake_runner(monkeypatch, lambda scen, t: "fail" if scen == "functional~m1" else "pass")
    a = _args(index=f, kernel=str(tree), out=tmp_path / "out")
    plan = mutate.check(a)
    assert mutate.main(a, plan) == 1
    # The unmutated tree, then one mutant at a time; m3 is not run.
    assert calls == [["functional~base"], ["functional~m1"], ["functional~m2"]]
    out = tmp_path / "out"
    doc = json.loads((out / "mutate.json").read_text())
    by = {m["id"]: m for m in doc["mutants"]}
    assert by["m1"]["verdict"] == "killed" and by["m2"]["verdict"] == "survived"
    assert by["m3"]["verdict"] == "equivalent" and by["m3"]["note"] == "a reason"
    assert by["m1"]["build_s"] == 50.0 and re.fullmatch(r"run-[0-9-]+/m1", by["m1"]["artifacts"])
    assert doc["score"]["score"] == 0.5 and doc["exit_code"] == 1
    assert doc["unmutated_not_as_expected"] == {}
    assert sorted(p.name for p in (out / "patches").iterdir()) == ["m1.patch", "m2.patch"]
    md = (out / "mutate.md").read_text()
    assert md.startswith("# Mutation testing") and "mutation score: 1/2 killed (50%)" in md
    printed = capsys.readouterr().out
    assert "survived (each needs a test that kills it" in printed and "  m2  kernel/watch_queue.c:6  " in printed
    assert (tree / "kernel" / "watch_queue.c").read_text() == WQ


def test_a_test_failing_on_the_unmutated_tree_is_named_and_kills_no_mutant(tmp_path, tree, monkeypatch, tmp_cache):
    f = _index(tmp_path, ONE)
    first = "guest-tests/test_smoke.py::test_key_update_gives_one_record"
    _fake_runner(monkeypatch, lambda scen, t: "fail" if t == first else "pass")
    a = _args(index=f, kernel=str(tree), out=tmp_path / "out")
    assert mutate.main(a, mutate.check(a)) == 1
    doc = json.loads((tmp_path / "out" / "mutate.json").read_text())
    assert doc["unmutated_not_as_expected"] == {"functional": [first]}
    assert doc["mutants"][0]["verdict"] == "survived"


def test_resume_runs_only_what_has_no_verdict_yet(tmp_path, tree, monkeypatch, tmp_cache):
    f = _index(tmp_path, TWO)
    out = tmp_path / "out"
    _fake_runner(monkeypatch, lambda scen, t: {"functional~m1": "fail"}.get(scen, "infra-error"))
    a = _args(index=f, kernel=str(tree), out=out)
    assert mutate.main(a, mutate.check(a)) == 2  # m2 unknown: infra error
    calls = _fake_runner(monkeypatch, lambda scen, t: "pass")
    a = _args(index=f, kernel=str(tree), out=out, resume=True)
    assert mutate.main(a, mutate.check(a)) == 1
    assert calls == [["functional~base"], ["functional~m2"]]
    by = {m["id"]: m for m in json.loads((out / "mutate.json").read_text())["mutants"]}
    assert by["m1"]["verdict"] == "killed" and by["m2"]["verdict"] == "survived"
    assert {p.name for p in (out / "patches").iterdir()} == {"m1.patch", "m2.patch"}
    with pytest.raises(InputError) as e:
        mutate.check(_args(index=f, kernel=str(tree), resume=True))
    assert "key '--resume'" in str(e.value)
    with pytest.raises(InputError) as e:
        mutate.check(_args(index=f, kernel=str(tree / "kernel") + "/..", out=out, resume=True))
    assert "the earlier run was on --kernel" in str(e.value)


@pytest.mark.parametrize("keep", [False, True])
def test_a_mutants_build_directory_goes_once_the_next_one_is_judged(tmp_path, tree, monkeypatch,
                                                                    tmp_cache, capsys, keep):
    f = _index(tmp_path, TWO)
    _fake_runner(monkeypatch, lambda scen, t: "pass")
    a = _args(index=f, kernel=str(tree), out=tmp_path / "out", keep_builds=keep)
    assert mutate.main(a, mutate.check(a)) == 1
    builds = tmp_cache / "variants" / "linux-x" / "builds"
    left = sorted(d.name for d in builds.iterdir())
    printed = capsys.readouterr().out
    if keep:
        assert left == ["functional~m1", "functional~m2"]
        assert not list(builds.glob(f"*/{mutate.MARK}")) and "removed the build" not in printed
    else:
        # m2's build stays: the seed of the next mutant's incremental build.
        assert left == ["functional~m2"]
        assert (builds / "functional~m2" / mutate.MARK).read_text() == "m2\n"
        assert f"wqh: removed the build directory {builds / 'functional~m1'}" in printed
    assert "wqh: mutant 1/2 m1: survived" in printed and "wqh: mutant 2/2 m2: survived" in printed


def test_prune_keeps_the_newest_finished_mutant_build_of_each_config_and_nothing_else(tmp_path, tmp_cache):
    def patch(name):
        p = tmp_path / f"{name}.patch"
        p.write_text(f"a mutant {name}\n")
        return p

    a, b, c, k, w = (patch(x) for x in "abckw")
    old = _fake_build("a", a)
    other = _fake_build("k", k, config="c2")  # another scenario's config: its own seed
    wall = _fake_build("w", w)  # a variant no mutant made (the wall's): never touched
    assert mutate.prune(a, "a") == [] and (old / mutate.MARK).is_file()
    assert mutate.prune(k, "k") == [] and (other / mutate.MARK).is_file()
    failed = _fake_build("b", b, finished=False)
    assert mutate.prune(b, "b") == [failed]  # a failed build seeds nothing; a's stays the seed
    new = _fake_build("c", c)
    assert mutate.mutant_builds(c) == [new]
    assert mutate.prune(c, "c") == [old]
    assert sorted(d.name for d in new.parent.iterdir()) == ["c", "k", "w"]
    assert not (wall / mutate.MARK).exists()


def test_only_and_kind_select_and_unknown_ones_are_input_errors(tmp_path, tree):
    f = _index(tmp_path, TWO)
    plan = mutate.check(_args(index=f, kernel=str(tree), only=["m2", "m3"], list=True))
    assert [m.id for m in plan.selected] == ["m2", "m3"]
    plan = mutate.check(_args(index=f, kernel=str(tree), kind="boundary", list=True))
    assert [m.id for m in plan.selected] == ["m1"]
    for kw, key in (({"only": ["zz"]}, "--only"), ({"kind": "typo"}, "--kind"),
                    ({"only": ["m1"], "kind": "other"}, "--kind")):
        with pytest.raises(InputError) as e:
            mutate.check(_args(index=f, kernel=str(tree), **kw))
        assert f"key '{key}'" in str(e.value)


# --- the command line --------------------------------------------------------------------


def test_mutate_list_prints_file_line_and_edit_and_builds_nothing(tmp_path, tree, wqh_cmd, tmp_cache):
    f = _index(tmp_path, TWO)
    r = subprocess.run(wqh_cmd + ["mutate", "--list", "--index", str(f), "--kernel", str(tree)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert re.match(r"m1 +boundary +kernel/watch_queue.c:4 +functional +if \(note >= nr_notes\) -> "
                    r"if \(note > nr_notes\)$", lines[0])
    assert "equivalent: a reason" in r.stdout
    assert lines[-1] == ("3 mutants (boundary 1, dropped-flag 1, inverted-logic 1), 1 marked "
                         "equivalent (not run)")
    assert not tmp_cache.exists()


def test_mutate_with_a_bad_index_exits_3_and_writes_nothing(tmp_path, tree, wqh_cmd):
    f = _index(tmp_path, ONE.replace('"\\tif (note >= nr_notes)"', '"\\tif (note < nr_notes)"'))
    out = tmp_path / "out"
    r = subprocess.run(wqh_cmd + ["mutate", "--index", str(f), "--kernel", str(tree), "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 3, r.stderr
    assert f"{f}:4: key 'mutants[0].find': not a line of kernel/watch_queue.c" in r.stderr
    assert not out.exists()
    r = subprocess.run(wqh_cmd + ["mutate", "--list", "--only", "nope", "--index", str(f)],
                       capture_output=True, text=True)
    assert r.returncode == 3 and "--only nope: no such mutant" in r.stderr


def test_mutate_is_a_subcommand(wqh_cmd):
    r = subprocess.run(wqh_cmd + ["mutate", "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    for opt in ("--index", "--only", "--kind", "--kernel", "--out", "--accel", "--jobs", "--list",
                "--resume", "--keep-builds"):
        assert opt in r.stdout


# --- the real index ----------------------------------------------------------------------


def test_the_real_index_is_valid_and_spans_the_kinds():
    ms = mutate.load_index()
    assert 45 <= len(ms) <= 100  # 59 in the first batch, 25 in the second
    assert sum(1 for m in ms if not m.equivalent) >= 45  # issue 17: at least 40, and some margin
    assert {m.kind for m in ms} == set(mutate.KINDS)
    assert len({m.id for m in ms}) == len(ms)
    assert {m.scenario for m in ms} <= {"functional", "functional-kasan"}
    assert all(m.scenario == "functional-kasan" for m in ms if m.kind == "missing-free")
    assert 1 <= sum(1 for m in ms if m.equivalent) <= 5
    assert {m.file for m in ms} >= {"kernel/watch_queue.c", "fs/pipe.c", "security/keys/key.c",
                                    "security/keys/keyring.c", "security/keys/keyctl.c"}


def test_no_two_mutants_of_the_real_index_make_the_same_edit():
    ms = mutate.load_index()
    edits = [(m.file, m.find, m.occurrence, m.replace) for m in ms]
    assert len(set(edits)) == len(edits)


def test_every_killed_by_of_the_real_index_is_a_test_its_scenario_runs():
    """killed_by names a test function that exists in its file, and the mutant's scenario lists
    that test (or its whole file): a killer the run never starts kills nothing."""
    from harness import scenario
    from harness.paths import REPO

    listed = {}
    for m in mutate.load_index():
        if m.scenario not in listed:
            listed[m.scenario] = {t.id for t in scenario.load(SCENARIOS / f"{m.scenario}.yaml").tests}
        for t in m.killed_by:
            if t == "wqh:kmemleak":
                continue
            path, _, name = t.partition("::")
            assert name, f"{m.id}: {t} names a file, not a test"
            assert re.search(rf"^def {re.escape(name)}\(", (REPO / path).read_text(), re.M), f"{m.id}: {t}"
            assert t in listed[m.scenario] or path in listed[m.scenario], f"{m.id}: {m.scenario} does not run {t}"


def _wall_pairs() -> set[tuple[str, str]]:
    """(removed, added) line pairs of the wall's patches, read here independently of mutate.py:
    within each change block, every removed line with every added one and with nothing."""
    pairs = set()
    for p in (SCENARIOS / "regressions" / "patches").rglob("*.patch"):
        minus, plus = [], []
        for ln in p.read_text().splitlines() + [" "]:
            if ln.startswith(("---", "+++")):
                continue
            if ln.startswith("-"):
                minus.append(ln[1:].strip())
            elif ln.startswith("+"):
                plus.append(ln[1:].strip())
            else:
                pairs |= {(m, a) for m in minus for a in plus + [""]}
                minus, plus = [], []
    return pairs


def test_no_mutant_is_an_edit_of_the_wall():
    pairs = _wall_pairs()
    assert ("kfree(watch);", "") in pairs  # 3d8dcf278b, as read
    assert ("ret = pipe_resize_ring(pipe, roundup_pow_of_two(nr_notes));",
            "ret = pipe_resize_ring(pipe, nr_notes);") in pairs
    wall_files = set()
    for p in (SCENARIOS / "regressions" / "patches").rglob("*.patch"):
        wall_files |= set(patches.touched_files(p))
    for m in mutate.load_index():
        if m.file in wall_files:  # keyctl.c's kfree(watch) is not watch_queue.c's free_watch one
            assert (m.find.strip(), m.replace.strip()) not in pairs, m.id


def _tree_61() -> Path:
    tree = source.tree_at_hand("debian:6.1")
    if not isinstance(tree, Path) or not tree.is_dir():
        pytest.skip("debian:6.1 is not unpacked in the cache (wqh build unpacks it)")
    return tree


def test_every_mutant_applies_to_the_6_1_tree_and_changes_its_line(tmp_path):
    tree = _tree_61()
    read = _reader(tree)
    ms = mutate.load_index()
    mutate.locate(ms, read, str(tree), mutate.INDEX)
    for m in ms:
        p = mutate.write_patch(m, read(m.file), tmp_path)
        patches.check_applies(read, (p,), str(tree))
        minus = [ln[1:] for ln in p.read_text().splitlines() if ln.startswith("-") and not ln.startswith("---")]
        plus = [ln[1:] for ln in p.read_text().splitlines() if ln.startswith("+") and not ln.startswith("+++")]
        assert minus == [m.find] and plus == ([m.replace] if m.replace else []), m.id


def test_mutate_list_on_the_6_1_tree(wqh_cmd):
    tree = _tree_61()
    r = subprocess.run(wqh_cmd + ["mutate", "--list", "--kernel", str(tree)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^wq-loss-flag +dropped-flag +kernel/watch_queue.c:\d+ ", r.stdout, re.M)


# --- for real ----------------------------------------------------------------------------


@pytest.mark.vm
@pytest.mark.skipif(os.environ.get("WQH_HEAVY") != "1",
                    reason="heavy: builds a mutant variant of the default kernel and boots it with "
                           "functional.yaml (minutes on 2 cores); set WQH_HEAVY=1")
def test_two_mutants_for_real(tmp_path):
    """wq-info-id-missing drops the watch id from every record: functional.yaml must kill it.
    key-instantiate-not-notified is marked equivalent: listed, never built or run."""
    from e2e import wqh

    out = tmp_path / "m"
    r = wqh("mutate", "--only", "wq-info-id-missing", "--only", "key-instantiate-not-notified",
            "--out", str(out))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    doc = json.loads((out / "mutate.json").read_text())
    by = {m["id"]: m for m in doc["mutants"]}
    killed = by["wq-info-id-missing"]
    assert killed["verdict"] == "killed", killed
    assert any("test_watch_id_is_carried_in_info_bits_8_to_15" in k for k in killed["killers"])
    assert killed["build_s"] is not None and killed["run_s"]
    assert by["key-instantiate-not-notified"]["verdict"] == "equivalent"
    assert doc["score"]["killed"] == 1 and doc["score"]["score"] == 1.0
    assert "mutation score: 1/1 killed (100%)" in r.stdout
    assert sorted(p.name for p in (out / "patches").iterdir()) == ["wq-info-id-missing.patch"]
    run = next(out.glob("run-*"))
    scen = {t["scenario"] for part in ("base", "wq-info-id-missing")
            for t in json.loads((run / part / "results.json").read_text())["tests"]}
    assert scen == {"functional~base", "functional~wq-info-id-missing"}
    # Its build directory stays, marked: the seed of the next mutant's build.
    (d,) = mutate.mutant_builds(out / "patches" / "wq-info-id-missing.patch")
    assert (d / mutate.MARK).read_text() == "wq-info-id-missing\n"
