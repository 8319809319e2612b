"""wqh stress for real on the Debian 6.1 tree and the sanitizer kernel (KASAN, kmemleak):

- the fixed tree, 1 and 2 vCPUs: every thread of the program worked, no report beyond the
  known list (exit 0);
- 189b0ddc24 put back (CVE-2022-2959): the SET_SIZE pair's race gives a new KASAN report of
  the stale ring (exit 1).

Heavy (the sanitizer kernel, its 189b0ddc24 variant, three boots of a minute or more under
TCG): skipped unless WQH_HEAVY=1."""

import json
import os

import pytest

from e2e import wqh
from harness.paths import REPO

pytestmark = [pytest.mark.vm, pytest.mark.skipif(os.environ.get("WQH_HEAVY") != "1",
                                                 reason="heavy: the sanitizer kernel and a variant, "
                                                        "three stress boots; set WQH_HEAVY=1")]

PATCH = REPO / "scenarios" / "regressions" / "patches" / "189b0ddc24-resize-race.patch"


def _stress(out, *args):
    r = wqh("stress", "--seed", "1", "--out", str(out), *args)
    d = json.loads((out / "stress.json").read_text()) if (out / "stress.json").is_file() else None
    return r, d


def test_the_fixed_tree_gives_no_new_report_on_1_and_2_cpus(tmp_path):
    r, d = _stress(tmp_path / "fixed", "--seconds", "30", "--cpus", "1,2")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert [x["cpus"] for x in d["runs"]] == [1, 2]
    for x in d["runs"]:
        assert (x["program"], x["idle"], x["new"], x["problem"]) == ("ran", [], 0, ""), x
        assert x["operations"] > 0 and x["seconds"] >= 30
    assert d["new_titles"] == []


def test_189b0ddc24_put_back_gives_a_new_kasan_report(tmp_path):
    r, d = _stress(tmp_path / "bug", "--seconds", "60", "--cpus", "2", "--patch", str(PATCH))
    assert r.returncode == 1, r.stdout[-4000:] + r.stderr[-2000:]
    assert any(t.startswith("KASAN: use-after-free") and t.endswith("in post_one_notification")
               for t in d["new_titles"]), d["new_titles"]
    (run,) = d["runs"]
    assert run["new"] >= 1 and run["per_cpu_hour"] > 0
