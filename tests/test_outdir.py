"""Outputs all or nothing: staged beside --out, renamed into place, discarded on an input error."""

import json
import os

import pytest

from harness import outdir, procs
from harness.errors import InfraError, InputError


def test_a_run_appears_at_once_with_paths_naming_the_final_directory(tmp_path):
    final = tmp_path / "out"
    with outdir.staged(final) as stage:
        assert stage.parent == tmp_path and not final.exists()
        (stage / "vm1").mkdir()
        (stage / "vm1" / "vng-command.txt").write_text(f"vng --rwdir {stage}/vm1\n")
        (stage / "results.json").write_text(json.dumps({"dir": str(stage)}))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (final / "vm1" / "vng-command.txt").read_text() == f"vng --rwdir {final}/vm1\n"
    assert json.loads((final / "results.json").read_text()) == {"dir": str(final)}


def test_an_input_error_leaves_nothing(tmp_path):
    with pytest.raises(InputError):
        with outdir.staged(tmp_path / "out") as stage:
            (stage / "results.json").write_text("{}")
            raise InputError("patch does not apply")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("exc", [InfraError("build failed"), procs.Interrupted(2), RuntimeError("bug")])
def test_infra_errors_interrupts_and_bugs_keep_what_was_written(tmp_path, exc):
    with pytest.raises(type(exc)):
        with outdir.staged(tmp_path / "out") as stage:
            (stage / "console.log").write_text("boot\n")
            raise exc
    assert (tmp_path / "out" / "console.log").read_text() == "boot\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_an_existing_directory_gets_the_new_entries_results_last(tmp_path):
    final = tmp_path / "out"
    (final / "vm1").mkdir(parents=True)
    (final / "vm1" / "old.log").write_text("old")
    (final / "keep.txt").write_text("mine")
    with outdir.staged(final) as stage:
        (stage / "vm1").mkdir()
        (stage / "vm1" / "console.log").write_text("new")
        (stage / "results.json").write_text("{}")
    assert sorted(p.name for p in final.iterdir()) == ["keep.txt", "results.json", "vm1"]
    assert [p.name for p in (final / "vm1").iterdir()] == ["console.log"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_dead_runs_staging_directory_is_swept(tmp_path):
    final = tmp_path / "out"
    dead = tmp_path / f".out{outdir.PARTIAL}999999999"
    dead.mkdir()
    mine_alive = tmp_path / f".out{outdir.PARTIAL}{os.getppid()}"
    mine_alive.mkdir()
    with outdir.staged(final):
        pass
    assert not dead.exists() and mine_alive.exists()
