"""Splitting a console log by the guest agent's markers, and spotting kernel reports.

The marker lines ('wqh: begin <id>' / 'wqh: end <id> <outcome> <dur>') come
from the agent through /dev/kmsg, so they are ordered with the kernel's own
lines. Every line belongs to 'boot', to one test, or to 'teardown'.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")
_BEGIN = re.compile(r"wqh: begin (\S+)")
_END = re.compile(r"wqh: end (\S+) (\S+)")

# Start lines of kernel reports. The full table (titles, ends, kinds) belongs
# to the log analyser; this is what the runner needs to call a test 'crash'.
REPORT_START = [
    ("KASAN", re.compile(r"BUG: KASAN: ")),
    ("KFENCE", re.compile(r"BUG: KFENCE: ")),
    ("UBSAN", re.compile(r"UBSAN: ")),
    ("KCSAN", re.compile(r"BUG: KCSAN: ")),
    ("LOCKDEP", re.compile(r"WARNING: (possible (circular|recursive)|inconsistent lock|suspicious RCU|bad unlock)")),
    ("WARNING", re.compile(r"WARNING: CPU: \d+ PID: \d+ at ")),
    ("BUG", re.compile(r"kernel BUG at |BUG: (unable to handle|kernel NULL pointer|sleeping function|scheduling while atomic|soft lockup|workqueue lockup)")),
    ("GPF", re.compile(r"general protection fault")),
    ("HANG", re.compile(r"INFO: task .* blocked for more than|INFO: rcu_\w+ (self-)?detected stall")),
    ("LEAK", re.compile(r"unreferenced object 0x")),
    ("PANIC", re.compile(r"Kernel panic - not syncing")),
]


@dataclass
class Segment:
    owner: str  # 'boot', a test node id, or 'teardown'
    lines: list[str]


@dataclass
class Finding:
    kind: str
    first_line: str
    owner: str
    line_no: int


def clean(text: str) -> list[str]:
    return [_ANSI.sub("", ln) for ln in text.split("\n")]


def segments(text: str) -> list[Segment]:
    segs = [Segment("boot", [])]
    current = segs[0]
    for line in clean(text):
        m = _BEGIN.search(line)
        if m:
            current = Segment(m.group(1), [line])
            segs.append(current)
            continue
        current.lines.append(line)
        m = _END.search(line)
        if m and m.group(1) == current.owner:
            current = Segment("teardown", [])
            segs.append(current)
    return [s for s in segs if s.lines]


def findings(text: str) -> list[Finding]:
    out = []
    owner = "boot"
    for n, line in enumerate(clean(text), 1):
        m = _BEGIN.search(line)
        if m:
            owner = m.group(1)
            continue
        m = _END.search(line)
        if m:
            owner = "teardown"
            continue
        for kind, rx in REPORT_START:
            if rx.search(line):
                out.append(Finding(kind, line.strip(), owner, n))
                break
    return out
