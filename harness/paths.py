"""Where things live: the repo, the cache, the run directories."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KCONFIGS = REPO / "kconfigs"
SCENARIOS = REPO / "scenarios"
GUEST_TESTS = REPO / "guest-tests"


def cache_dir() -> Path:
    env = os.environ.get("WQH_CACHE")
    if env:
        return Path(env).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return (base / "wqh").resolve()
