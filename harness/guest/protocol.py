"""The results file shared by host and guest: names and outcomes, nothing else.

The host pre-writes it with every test 'lost'; the agent rewrites it after
each test. A VM that dies leaves 'lost' (or 'running') behind, never 'pass'.
"""

import json
import os

RESULTS = "guest-results.json"
DMESG = "dmesg.txt"
MARK_BEGIN = "wqh: begin"
MARK_END = "wqh: end"
MARK_DONE = "wqh: agent done"
# Ends a marker: pytest's own output may follow it on the same console line ("collecting ...
# collected 1 item" around a kmsg line), and the node id must not run into it.
MARK_TAIL = " ."
# The owner of reports printed by the end-of-run leak check (not a pytest node id).
KMEMLEAK_ID = "wqh:kmemleak"

LOST = "lost"
RUNNING = "running"


def initial(test_ids):
    return {"done": False, "tests": [{"id": t, "outcome": LOST, "duration_s": None,
                                      "message": ""} for t in test_ids]}


def write_atomic(path, data):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read(path):
    with open(path) as fh:
        return json.load(fh)
