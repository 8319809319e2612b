"""Reading a console log: its lines without terminal noise, and who owns each of them.

The marker lines ('wqh: begin <id>' / 'wqh: end <id> <outcome> <dur>') come from the guest
agent through /dev/kmsg, so they are ordered with the kernel's own lines. Every line belongs
to 'boot', to one test, or to 'teardown'. Finding and titling kernel reports is report.py's job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.guest import protocol

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")
# "[   12.345678] " and syzbot's "[   12.345678][ T1234] " (CONFIG_PRINTK_CALLER), optionally
# after a "<6>" level. At the start of a line any number of decimals (hand-edited logs); further
# on (pytest output before it on the same line) the kernel's six, so that a test parameter like
# "[0.5]" is never taken for a timestamp.
STAMP = re.compile(r"(?:^(?:<\d+>)?\[\s*\d+\.\d+\]|\[\s*\d+\.\d{6}\])(?:\[\s*([TC]\d+)\])? ?")
# With its tail the id is exact whatever follows; logs of older agents have no tail.
_BEGIN = re.compile(re.escape(protocol.MARK_BEGIN) + r" (?:(\S+)" + re.escape(protocol.MARK_TAIL)
                    + r"|(\S+))")
_END = re.compile(re.escape(protocol.MARK_END) + r" (\S+) (\S+)")
BOOT, TEARDOWN = "boot", "teardown"


@dataclass
class Segment:
    owner: str  # 'boot', a test node id, or 'teardown'
    lines: list[str]


def split_line(line: str) -> tuple[str, str | None]:
    """(text after the timestamp, printk caller): caller '' for a kernel line without caller id,
    None for a line that is not the kernel's (no timestamp: pytest, the shell, the firmware)."""
    m = STAMP.search(line)
    if not m:
        return line, None
    return line[m.end():], m.group(1) or ""


class Owners:
    """Who owns the line being read: 'boot', the test between its markers, then 'teardown'."""

    def __init__(self) -> None:
        self.current = BOOT

    def see(self, text: str) -> bool:
        """Follow a marker line (the text after its timestamp); False if it is not one."""
        i = text.find("wqh: ")
        if i < 0:
            return False
        text = text[i:]  # also a marker the agent printed to stdout, after pytest's output
        m = _BEGIN.match(text)
        if m:
            self.current = m.group(1) or m.group(2)
            return True
        m = _END.match(text)
        if m:
            if m.group(1) == self.current:
                self.current = TEARDOWN
            return True
        return False


def clean_text(text: str) -> str:
    """Without carriage returns and terminal escapes (cheap when there are none)."""
    if "\r" in text:
        text = text.replace("\r", "")
    if "\x1b" in text:
        text = ANSI.sub("", text)
    return text


def clean(text: str) -> list[str]:
    return [ANSI.sub("", ln) for ln in text.split("\n")]


def segments(text: str) -> list[Segment]:
    segs = [Segment(BOOT, [])]
    owners = Owners()
    for line in clean(text):
        before = owners.current
        if owners.see(split_line(line)[0]) and owners.current != before:
            if owners.current == TEARDOWN:
                segs[-1].lines.append(line)
                segs.append(Segment(TEARDOWN, []))
            else:
                segs.append(Segment(owners.current, [line]))
            continue
        segs[-1].lines.append(line)
    return [s for s in segs if s.lines]
