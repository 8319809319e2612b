"""KCIDB export (harness.kcidb): results directories written by wqh's own writers, checked
with kcidb-io's schema."""

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import kcidb_io
import pytest

from harness import kcidb, results, runner
from harness.build import BuildResult
from harness.config import ConfigResult
from harness.errors import InputError
from harness.report import Report
from harness.results import Outcome, RunSummary, TestResult

SCHEMA = kcidb_io.schema.LATEST
STATUSES = SCHEMA.json["$defs"]["status"]["enum"]
DATA = Path(__file__).parent / "data" / "kcidb"
DEBIAN = "debian:linux-source-6.1:6.1.192-3"
CC = "gcc (Debian 12.2.0-14+deb12u1) 12.2.0"
STARTED_AT = 1796277326.5


def save_kernel(out: Path, identity: str, key: str, wall_s: float = 0.0) -> dict:
    """kernels/<key>/ as a run saves it (runner._save_kernel_artifacts); its summary entry."""
    log = out / f"build-{key}.log"
    log.write_text("  CC      kernel/watch_queue.o\n  LD      vmlinux\n")
    b = BuildResult(key=key, builddir=out / "b", bzimage=out / "b/bzImage", vmlinux=out / "b/vmlinux",
                    log=log, reused=wall_s == 0.0, wall_s=wall_s, cpu_s=wall_s * 2, objects=3)
    cfg = ConfigResult(dotconfig=f'#\nCONFIG_CC_VERSION_TEXT="{CC}"\nCONFIG_WATCH_QUEUE=y\n',
                       hash=identity.rpartition("+")[2],
                       fragments=(Path("kconfigs/base.config"), Path("kconfigs/kasan.config")),
                       staging=out)
    kdir = runner._save_kernel_artifacts(out, b, cfg)
    log.unlink()
    return {"identity": identity, "artifacts": str(kdir), "reused": b.reused, "build_wall_s": wall_s}


def save_vm(out: Path, name: str) -> None:
    (out / name).mkdir(parents=True, exist_ok=True)
    (out / name / "console.log").write_text("[    0.000000] Linux version 6.1.192\n")
    (out / name / "vm.json").write_text(json.dumps({"end": "exited", "started_at": STARTED_AT,
                                                    "accel": "tcg"}))


def run_dir(out: Path, rs: list[TestResult], kernels: dict | None = None) -> Path:
    for r in rs:
        if r.vm and not (out / r.vm).exists():
            save_vm(out, r.vm)
    results.write_all(RunSummary(rs, 1796277300.0, 1796277400.0, out, kernels=kernels or {}))
    return out


def all_outcomes() -> list[TestResult]:
    """Every outcome wqh has (the enum, computed), against every expectation a scenario can
    state, plus the guest's 'lost', an infra-error that never ran, a flaky and waived ones."""
    k = f"{DEBIAN}+0123456789abcdef"
    crash = [Report("KASAN: slab-out-of-bounds Write in watch_queue_set_filter", "KASAN", 2)]
    rs = []
    for o in list(Outcome) + [kcidb.LOST]:
        for e in results.EXPECTABLE:
            rs.append(TestResult(scenario="all", test=f"guest-tests/test_x.py::test_{o}_{e}",
                                 kernel=k, outcome=str(o), expected=str(e), duration_s=0.5,
                                 reports=crash if o in ("crash", "xfail") else [],
                                 message=f"outcome {o}", vm="vm1-abc"))
    rs.append(TestResult(scenario="all", test="guest-tests/test_x.py::test_never", kernel=k,
                         outcome="infra-error", message="never ran: the VM ended (panic) "
                                                        "before any test started", vm="vm1-abc"))
    rs.append(TestResult(scenario="all", test="guest-tests/test_x.py::test_waived", kernel=k,
                         outcome="crash", reports=crash, waived="known (https://x.test/1)",
                         vm="vm1-abc"))
    return rs


def kernels_for(out: Path, rs: list[TestResult]) -> dict:
    idents = dict.fromkeys(r.kernel for r in rs)
    return {hashlib.sha256(i.encode()).hexdigest()[:16]: i for i in idents}


def export_of(tmp_path: Path, rs: list[TestResult], built=True, **kw) -> dict:
    out = tmp_path / "run"
    out.mkdir(exist_ok=True)
    kernels = {key: save_kernel(out, i, key) for key, i in kernels_for(out, rs).items()} \
        if built else {}
    return kcidb.export(run_dir(out, rs, kernels), **kw)


def test_statuses_round_trip(tmp_path):
    rs = all_outcomes()
    doc = export_of(tmp_path, rs)
    text = json.dumps(doc)
    back = json.loads(text)
    SCHEMA.validate(back)  # kcidb-io itself, not only our wrapper
    assert SCHEMA.count(back) == len(rs) + 2  # one checkout, one build
    ids = SCHEMA.get_ids(back)
    assert len(set(ids["tests"])) == len(rs)
    got = kcidb.read_back(back)
    assert [(g["scenario"], g["test"], g["outcome"]) for g in got] == \
        [(r.scenario, r.test, r.outcome) for r in rs]
    # Every outcome of the enum is exported, each to a status of the schema.
    assert {g["outcome"] for g in got} >= set(results.OUTCOMES) | {kcidb.LOST}
    assert {g["status"] for g in got} <= set(STATUSES)
    # What each status means, from the results module's own notion of "as expected".
    for r, g in zip(rs, got):
        met = dataclasses.replace(r, waived="").as_expected
        if r.outcome == kcidb.LOST or r.message.startswith("never ran"):
            want = "MISS"
        elif r.outcome == results.INFRA:
            want = "ERROR"
        elif r.outcome == Outcome.SKIP:
            want = "SKIP"
        elif r.outcome in (Outcome.PASS, Outcome.XFAIL, Outcome.FLAKY) or met:
            want = "PASS"
        else:
            want = "FAIL"
        assert g["status"] == want == kcidb.status_of(r), (r.outcome, r.expected, g["status"])
    # The statuses a CI dashboard tells apart stay apart.
    by_class = {kcidb.status_of(TestResult("s", "t", "k", o, message=m))
                for o, m in (("fail", ""), ("infra-error", "VM ended"), ("lost", ""), ("skip", ""))}
    assert by_class == {"FAIL", "ERROR", "MISS", "SKIP"}


def test_an_unknown_outcome_is_an_input_error(tmp_path):
    r = TestResult("s", "t.py::test_a", f"{DEBIAN}+0123456789abcdef", "exploded")
    with pytest.raises(InputError, match="unknown outcome 'exploded'"):
        export_of(tmp_path, [r])


def test_flaky_and_waived_keep_their_story_in_misc(tmp_path):
    rs = all_outcomes()
    doc = export_of(tmp_path, rs)
    by_test = {t["misc"]["test"]: t for t in doc["tests"]}
    flaky = by_test["guest-tests/test_x.py::test_flaky_pass"]
    assert flaky["status"] == "PASS" and "flaky" in flaky["misc"]["note"]
    waived = by_test["guest-tests/test_x.py::test_waived"]
    assert waived["status"] == "FAIL"
    assert waived["misc"]["waived"] == "known (https://x.test/1)"
    assert waived["misc"]["reports"] == [
        {"title": "KASAN: slab-out-of-bounds Write in watch_queue_set_filter", "type": "KASAN",
         "count": 2, "corrupted": False}]
    assert "KASAN: slab-out-of-bounds Write in watch_queue_set_filter (x2)" in waived["log_excerpt"]


def test_the_same_directory_exports_the_same_bytes(tmp_path):
    out = run_dir(tmp_path / "run", all_outcomes(), {})
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    kcidb.write(kcidb.export(out), a)
    kcidb.write(kcidb.export(out), b)
    assert a.read_bytes() == b.read_bytes()
    doc = json.loads(a.read_text())
    assert doc["version"] == {"major": 5, "minor": SCHEMA.minor}
    objs = doc["checkouts"] + doc["builds"] + doc["tests"]
    assert all(o["id"].startswith("wqh:") and o["origin"] == "wqh" for o in objs)
    other = kcidb.export(out, origin="my_ci")
    assert all(o["id"].startswith("my_ci:") for o in other["tests"])
    # Another run (another results.json) gets other IDs.
    rs = all_outcomes()
    rs[0].duration_s = 9.0
    again = kcidb.export(run_dir(tmp_path / "run2", rs, {}))
    assert not {t["id"] for t in again["tests"]} & {t["id"] for t in doc["tests"]}


@pytest.mark.parametrize("origin", ["", "My-CI", "a:b", "wqh ci", 7])
def test_an_origin_outside_the_schema_is_an_input_error(tmp_path, origin):
    out = run_dir(tmp_path, all_outcomes()[:1], {})
    with pytest.raises(InputError, match="origin") as e:
        kcidb.export(out, origin=origin)
    assert e.value.key == "--origin"


def test_builds_link_config_and_log_and_name_the_compiler(tmp_path):
    k = f"{DEBIAN}+0123456789abcdef"
    out = tmp_path / "run"
    out.mkdir()
    kernels = {"aaaabbbbccccdddd": save_kernel(out, k, "aaaabbbbccccdddd", wall_s=81.5)}
    rs = [TestResult("smoke", "guest-tests/test_smoke.py::test_a", k, "pass", vm="vm1-aaaabbbb")]
    doc = kcidb.export(run_dir(out, rs, kernels))
    (b,) = doc["builds"]
    assert b["status"] == "PASS" and b["architecture"] == "x86_64"
    assert b["compiler"] == CC
    assert b["duration"] == 81.5
    assert b["config_name"] == "base+kasan"
    assert b["config_url"] == (out / "kernels/aaaabbbbccccdddd/config").resolve().as_uri()
    assert b["log_url"] == (out / "kernels/aaaabbbbccccdddd/build-log-tail.txt").resolve().as_uri()
    (t,) = doc["tests"]
    assert t["build_id"] == b["id"]
    assert t["log_url"] == (out / "vm1-aaaabbbb/console.log").resolve().as_uri()
    assert t["start_time"].startswith("2026-12-03T") and t["start_time"].endswith("+00:00")
    (c,) = doc["checkouts"]
    assert b["checkout_id"] == c["id"] and c["valid"] is True
    assert c["patchset_hash"] == "" and c["tree_name"] == "debian"
    # Published elsewhere: links under the base URL, relative to the directory.
    pub = kcidb.export(out, base_url="https://ci.example.org/runs/42/")
    assert pub["builds"][0]["config_url"] == \
        "https://ci.example.org/runs/42/kernels/aaaabbbbccccdddd/config"
    assert pub["tests"][0]["log_url"] == "https://ci.example.org/runs/42/vm1-aaaabbbb/console.log"


def test_a_kernel_that_did_not_build_is_a_failed_build_whose_tests_are_missing(tmp_path):
    made = f"{DEBIAN}+0123456789abcdef"
    broken, unconfigurable = "git:" + "a" * 40, "path:/src/linux"
    rs = [TestResult("ok", "t.py::test_a", made, "pass"),
          TestResult("b", "t.py::test_a", broken, "infra-error",
                     message="kernel build failed (make exit 2) in /c/builds/x:\n"
                             "kernel/watch_queue.c:12: error: expected ';'"),
          TestResult("b", "t.py::test_b", broken, "infra-error",
                     message="kernel build failed (make exit 2) in /c/builds/x:\n"
                             "kernel/watch_queue.c:12: error: expected ';'"),
          TestResult("c", "t.py::test_a", unconfigurable, "infra-error",
                     message="kconfig fragments ask for options the final .config does not "
                             "have:\n  CONFIG_USB_STORAGE=y"),
          TestResult("d", "t.py::test_a", "", "infra-error",
                     message="not run: wqh was interrupted by SIGTERM")]
    out = tmp_path / "run"
    out.mkdir()
    doc = kcidb.export(run_dir(out, rs, {"k1": save_kernel(out, made, "k1")}))
    builds = {b["misc"]["identity"]: b for b in doc["builds"]}
    assert builds[made]["status"] == "PASS"
    assert builds[broken]["status"] == "FAIL"
    assert "expected ';'" in builds[broken]["log_excerpt"]
    assert builds[broken]["log_excerpt"].count("kernel build failed") == 1
    assert builds[unconfigurable]["status"] == "FAIL"
    assert builds[""]["status"] == "MISS"
    assert [t["status"] for t in doc["tests"]] == ["PASS", "MISS", "MISS", "MISS", "MISS"]
    checkouts = {c["misc"]["identity"]: c for c in doc["checkouts"]}
    assert checkouts["git:" + "a" * 40]["git_commit_hash"] == "a" * 40
    assert "valid" not in checkouts["git:" + "a" * 40]  # the build failed: unknown
    assert set(checkouts) == {DEBIAN, "git:" + "a" * 40, "path:/src/linux", ""}


def test_patched_variants_are_checkouts_with_the_patchset_hash(tmp_path):
    p1, p2 = tmp_path / "1-bug.patch", tmp_path / "2-more.patch"
    p1.write_text("--- a/kernel/watch_queue.c\n+++ b/kernel/watch_queue.c\n@@ -1 +1 @@\n-a\n+b\n")
    p2.write_text("--- a/kernel/watch_queue.c\n+++ b/kernel/watch_queue.c\n@@ -2 +2 @@\n-c\n+d\n")
    h = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (p1, p2)]
    variant = f"{DEBIAN}+patches:{h[0][:16]},{h[1][:16]}+fedcba9876543210"
    rs = [TestResult("fixed", "t.py::test_a", f"{DEBIAN}+0123456789abcdef", "pass"),
          TestResult("bug", "t.py::test_a", variant, "xfail", expected="crash", variant="bug")]
    # The schema's recipe: sha256 over the newline-terminated sha256 of each patch, in order.
    want = hashlib.sha256("".join(x + "\n" for x in h).encode()).hexdigest()
    for patches in ([p1, p2], [tmp_path]):  # files, or a directory holding them
        doc = export_of(tmp_path, rs, checkout=kcidb.CheckoutInfo(patches=tuple(patches)))
        base, var = doc["checkouts"]
        assert base["patchset_hash"] == ""
        assert var["patchset_hash"] == want
        assert [f["name"] for f in var["patchset_files"]] == ["1-bug.patch", "2-more.patch"]
        assert doc["builds"][1]["checkout_id"] == var["id"]
    # Patches not at hand: the hash is unknown, so absent (not "", which says "no patches").
    doc = export_of(tmp_path, rs)
    assert "patchset_hash" not in doc["checkouts"][1]
    assert doc["checkouts"][1]["misc"]["patches"] == [h[0][:16], h[1][:16]]
    assert doc["tests"][1]["misc"]["variant"] == "bug"


def test_checkout_info_fills_what_results_json_does_not_know(tmp_path):
    rs = [TestResult("s", "t.py::test_a", "path:/src/linux+0123456789abcdef", "pass")]
    info = kcidb.CheckoutInfo(tree_name="mainline", git_commit_hash="b" * 40,
                              git_repository_url="https://git.kernel.org/pub/scm/linux/kernel/"
                                                 "git/torvalds/linux.git",
                              git_repository_branch="master", comment="my patch v2")
    (c,) = export_of(tmp_path, rs, checkout=info)["checkouts"]
    assert (c["tree_name"], c["git_commit_hash"], c["git_repository_branch"], c["comment"]) == \
        ("mainline", "b" * 40, "master", "my patch v2")
    # The schema takes https:// repository URLs only; the error says where and why.
    with pytest.raises(InputError, match=r"checkouts\[0\]\.git_repository_url"):
        export_of(tmp_path, rs, checkout=dataclasses.replace(info, git_repository_url="git@x:y"))
    # Restricted to another tree: not applied.
    (c,) = export_of(tmp_path, rs, checkout=dataclasses.replace(info, identity="git:x"))["checkouts"]
    assert "tree_name" not in c


def test_paths_are_dotted_and_sanitized():
    assert kcidb.test_path("functional", "guest-tests/test_pipe.py::test_flags[O_TRUNC]") == \
        "wqh.functional.test_pipe.test_flags_O_TRUNC"
    assert kcidb.test_path("wall.2ed147f015", "../guest/t.py::TestK::test_b[a/b-c.d]") == \
        "wqh.wall_2ed147f015.t.TestK.test_b_a_b-c_d"
    assert kcidb.test_path("s", "guest-tests/test_smoke.py") == "wqh.s.test_smoke"
    assert kcidb.test_path("ü", "::") == "wqh._._"
    for p in ("wqh.functional.test_pipe.test_flags_O_TRUNC", "wqh._._"):
        assert SCHEMA.test_path_re.match(p)


def test_the_log_excerpt_fits_the_schema_and_keeps_titles_first(tmp_path):
    k = f"{DEBIAN}+0123456789abcdef"
    limit = SCHEMA.json["$defs"]["test"]["properties"]["log_excerpt"]["maxLength"]
    r = TestResult("s", "t.py::test_a", k, "crash", message="x\0" * limit,
                   reports=[Report("WARNING in watch_queue_clear", "WARNING")])
    (t,) = export_of(tmp_path, [r])["tests"]
    assert len(t["log_excerpt"]) <= limit and "\0" not in t["log_excerpt"]
    assert t["log_excerpt"].startswith("WARNING in watch_queue_clear\n")
    assert t["log_excerpt"].endswith("length limit]")


def test_validate_names_the_offending_place():
    with pytest.raises(InputError, match=r"tests\[0\].*'build_id' is a required property"):
        kcidb.validate({"version": {"major": 5, "minor": SCHEMA.minor},
                        "tests": [{"id": "wqh:1", "origin": "wqh"}]})
    with pytest.raises(InputError, match="not a valid KCIDB"):
        kcidb.validate({"checkouts": []})
    doc = {"version": {"major": 5, "minor": SCHEMA.minor}, "checkouts": []}
    assert kcidb.validate(doc) is doc


def test_write_is_atomic_and_refuses_an_invalid_document(tmp_path):
    f = tmp_path / "kcidb.json"
    f.write_text("old\n")
    with pytest.raises(InputError):
        kcidb.write({"version": {"major": 5, "minor": SCHEMA.minor}, "tests": [{}]}, f)
    assert f.read_text() == "old\n"
    kcidb.write({"version": {"major": 5, "minor": SCHEMA.minor}}, f)
    assert json.loads(f.read_text()) == {"version": {"major": 5, "minor": SCHEMA.minor}}
    assert [p.name for p in tmp_path.iterdir()] == ["kcidb.json"]
    with pytest.raises(InputError, match="cannot write there"):
        kcidb.write({"version": {"major": 5, "minor": SCHEMA.minor}}, tmp_path / "no" / "f.json")


def test_what_is_not_a_results_directory_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such directory"):
        kcidb.export(tmp_path / "nope")
    with pytest.raises(InputError, match="not a wqh results directory"):
        kcidb.export(tmp_path)
    (tmp_path / "results.json").write_text("{")
    with pytest.raises(InputError, match="results.json"):
        kcidb.export(tmp_path)
    (tmp_path / "results.json").write_text('{"tests": [{"scenario": 1}]}')
    with pytest.raises(InputError, match=r"tests\[0\]"):
        kcidb.export(tmp_path)


def test_a_real_run(tmp_path):
    """A real run's directory (4 kernels, 4 VMs, all passing; trimmed: 12 of its 299 tests,
    the head of each config, the ends of each log)."""
    out = shutil.copytree(DATA / "run", tmp_path / "run")
    doc = kcidb.export(out)
    SCHEMA.validate(doc)
    data = json.loads((out / "results.json").read_text())
    assert len(doc["tests"]) == len(data["tests"]) == 12
    assert len(doc["checkouts"]) == 1 and len(doc["builds"]) == len(data["kernels"]) == 4
    (c,) = doc["checkouts"]
    assert c["misc"]["identity"] == DEBIAN and c["patchset_hash"] == ""
    for b in doc["builds"]:
        assert b["status"] == "PASS" and b["compiler"] == CC
        assert "duration" not in b  # reused: no build ran
        assert Path(b["config_url"].removeprefix("file://")).is_file()
    kasan = [b for b in doc["builds"] if "kasan" in b["config_name"]]
    assert len(kasan) == 1
    for t, r in zip(doc["tests"], data["tests"]):
        assert t["status"] == kcidb.status_of(TestResult(**r)) == "PASS"
        assert t["path"].startswith(f"wqh.{r['scenario']}.")
        assert t["log_url"] == (out / r["vm"] / "console.log").resolve().as_uri()
        vm = json.loads((out / r["vm"] / "vm.json").read_text())
        assert t["start_time"] == kcidb._iso(vm["started_at"])
    assert kcidb.write(doc, tmp_path / "k.json") is None
