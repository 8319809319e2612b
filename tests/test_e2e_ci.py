"""CI gating for real: shards and merge against one unsharded run of scenarios/, retries that
find a flaky test. The unsharded run is the session's `full_run` (conftest.py), shared with the
suite's own checks (test_e2e_suite.py)."""

import json

import pytest

from e2e import DATA, results, wqh
from harness.paths import SCENARIOS

pytestmark = pytest.mark.vm


def _verdicts(res: dict) -> list[tuple]:
    return sorted((t["scenario"], t["test"], t["outcome"], t["expected"]) for t in res["tests"])


def test_two_shards_merged_equal_one_unsharded_run(full_run, tmp_path):
    full, r_full = full_run
    ref = results(full)
    outs = []
    for k in (1, 2):
        out = tmp_path / f"shard{k}"
        # Balanced by the unsharded run's durations; every shard gets the same file.
        r = wqh("run", str(SCENARIOS), "--shard", f"{k}/2", "--durations", str(full), "--out", str(out))
        assert r.returncode in (0, 1, 2), r.stderr
        assert f"shard {k}/2" in r.stdout and "by durations" in r.stdout
        outs.append(out)
    parts = [results(o) for o in outs]
    # Each kernel is built (or reused) by one shard only, and both shards got work.
    assert all(p["tests"] for p in parts)
    assert not set(parts[0]["kernels"]) & set(parts[1]["kernels"])
    merged = tmp_path / "merged"
    m = wqh("merge", *map(str, outs), "--out", str(merged))
    got = results(merged)
    assert _verdicts(got) == _verdicts(ref)
    assert m.returncode == got["exit_code"] == ref["exit_code"] == r_full.returncode
    assert set(got["kernels"]) == set(ref["kernels"])
    # Every result's VM directory came along with its console.
    for t in got["tests"]:
        assert (merged / t["vm"] / "console.log").is_file(), t["vm"]
    for name in ("junit.xml", "results.ktap", "summary.txt"):
        assert (merged / name).is_file()
    # Merging one shard alone is refused, naming the missing one, and writes nothing.
    bad = wqh("merge", str(outs[0]), "--out", str(tmp_path / "half"))
    assert bad.returncode == 3 and "shard 2/2 is missing" in bad.stderr
    assert not (tmp_path / "half").exists()


def test_a_test_that_fails_then_passes_is_flaky_and_does_not_fail_the_run(tmp_path):
    scen = DATA / "scenarios" / "flaky-on-purpose.yaml"
    r = wqh("run", str(scen), "--retry-failed", "1", "--out", str(tmp_path / "retry"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    (t,) = results(tmp_path / "retry")["tests"]
    assert t["outcome"] == "flaky"
    (first,) = t["attempts"]
    assert first["outcome"] == "fail" and "failing on purpose" in first["message"]
    assert first["vm"] != t["vm"]  # the pass came from a fresh VM
    assert "retrying 1 failed tests" in r.stdout
    # --strict: a flaky test fails the run.
    again = wqh("run", str(scen), "--retry-failed", "1", "--strict", "--out", str(tmp_path / "strict"))
    assert again.returncode == 1
    assert json.loads((tmp_path / "strict" / "results.json").read_text())["strict"] is True


def test_every_vm_prints_its_verdict_as_it_ends(full_run):
    full, r = full_run
    res = results(full)
    lines = [ln for ln in r.stdout.splitlines() if " done: " in ln]
    assert len(lines) == len({t["vm"] for t in res["tests"]})
    assert res["timings"]["first_verdict_s"] <= res["duration_s"]


def test_a_real_run_exports_to_kcidb_and_reads_the_same_in_kunit(full_run, tmp_path):
    """The outputs CI systems read, of a real run: KCIDB validated by kcidb-io (export validates;
    its statuses read back one per test), KTAP read by the kernel's own kunit.py parser with our
    counts."""
    import kcidb_io
    from test_results import kunit_parse

    full, r = full_run
    res = results(full)
    doc_file = tmp_path / "kcidb.json"
    ex = wqh("export", "--kcidb", str(full), "--out", str(doc_file), "--origin", "wqh_ci")
    assert ex.returncode == 0, ex.stderr
    doc = json.loads(doc_file.read_text())
    kcidb_io.schema.LATEST.validate(doc)  # kcidb-io's own schema, not ours
    assert len(doc["tests"]) == len(res["tests"])
    assert len(doc["builds"]) == len(res["kernels"])
    assert all(t["origin"] == "wqh_ci" for t in doc["tests"])
    # A clean run is PASS, and SKIP for exactly the tests expected to skip (the never-merged
    # sources), nothing else.
    expected_skips = sum(1 for t in res["tests"] if t["outcome"] == t["expected"] == "skip")
    statuses = [t["status"] for t in doc["tests"]]
    clean = set(statuses) <= {"PASS", "SKIP"} and statuses.count("SKIP") == expected_skips
    assert clean == (r.returncode == 0), sorted(set(statuses))
    p, counts, _ = kunit_parse(full / "results.ktap", tmp_path)
    assert counts.get("passed", 0) == len(res["tests"]) - expected_skips - counts.get("failed", 0)
    assert counts.get("failed", 0) == sum(1 for t in res["tests"] if t["outcome"] != t["expected"]
                                          and t["outcome"] not in ("xfail", "flaky"))
    assert (p.returncode == 0) == (r.returncode == 0)
