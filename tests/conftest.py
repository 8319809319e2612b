import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"


@pytest.fixture
def wqh_cmd():
    """The wqh command line of this checkout's interpreter."""
    return [sys.executable, "-m", "harness"]


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("WQH_CACHE", str(d))
    return d


@pytest.fixture(scope="session")
def full_run(tmp_path_factory):
    """One unsharded `wqh run scenarios/` (every kernel of the default run), shared by the
    suite's checks and the shard tests: (results directory, completed process)."""
    from e2e import wqh

    out = tmp_path_factory.mktemp("full-run") / "out"
    r = wqh("run", str(REPO / "scenarios"), "--out", str(out))
    (out.parent / "wqh-run.log").write_text(r.stdout + r.stderr)  # kept with pytest's tmp dirs
    return out, r


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true",
                     help="rewrite the headers of tests/data/reports/*.log from what the parser says now "
                          "(review the diff before committing it)")


def pytest_collection_modifyitems(config, items):
    # vm tests build and boot real kernels: run them last, fast feedback first. Among them the
    # session's one run of scenarios/ comes first: from an empty cache it builds the default
    # run's kernels, each VM booting as soon as its kernel is built.
    items.sort(key=lambda i: (1 if i.get_closest_marker("vm") else 0,
                              0 if "full_run" in getattr(i, "fixturenames", ()) else 1))


os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
