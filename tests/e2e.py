"""Helpers shared by the end-to-end (vm) tests: run wqh for real, read what it wrote."""

import json
import subprocess
import sys
from pathlib import Path

WQH = [sys.executable, "-m", "harness"]
DATA = Path(__file__).resolve().parent / "data"


def wqh(*args, timeout=3000, **kw):
    return subprocess.run(WQH + list(args), capture_output=True, text=True, timeout=timeout, **kw)


def results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def guest_results(out: Path) -> list[dict]:
    """The guest agent's own results file of each VM, in boot order."""
    return [json.loads(p.read_text()) for p in sorted(out.glob("vm*-*/guest/guest-results.json"))]
