"""Kernel log analysis: every report in a console log, titled the way syzbot titles it.

One pass over the log, chunk by chunk, so that a 100 MB log costs little time and memory:
outside reports one keyword search skips every line no report can start on; the lines of an
open report go through the rule table (report_rules.py, detection as data). When the log has
printk caller ids ("[ T1234]" / "[ C1]"), a report only takes the lines of its own caller, so
that another CPU's output neither cuts nor pollutes it.

A report's title is computed on the frames the kernel printed, as syzbot does (it symbolizes
after titling): inlined frames that symbolization adds never change it, so a log titles the
same with or without a vmlinux, and a report copied from syzbot (already symbolized, "[inline]"
frames, the header repeated per inlined level) gets syzbot's title.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from harness import console
from harness import report_rules as rr
from harness.errors import InputError
from harness.results import Frame, Report

CHUNK = 8 << 20  # bytes read at a time
LEAD_MAX = 8     # lines looked back for a report's lead ("cut here", banner, WARN message)
TAIL = 4096      # characters of the previous chunk kept for that look-back

_SKIP = {r.name: rr.skip_regex(r) for r in rr.RULES}
_KEYWORDS = {r.keyword for r in rr.RULES} | {"wqh: "}
# A keyword containing another adds nothing to the search.
_TRIGGER = re.compile("|".join(sorted(
    re.escape(k) for k in _KEYWORDS if not any(o != k and o in k for o in _KEYWORDS))))
_WARN_SRC = re.compile(r" at (\S+?):(\d+) \S+\+0x")
_OFFSETS = re.compile(r"\+0x[0-9a-f]+/0x[0-9a-f]+")
_SUFFIX = re.compile(r"\b([A-Za-z_]\w*)\.(?:isra|constprop|part|cold|llvm|lto_priv)(?:\.\d+)*")
_OPTIONAL = re.compile(r"\[([^\[\]]*)\]")
_FIELD = re.compile(r"\{(\w+)\}")


@dataclass
class _Open:
    """A report being read."""

    rule: rr.Rule
    match: re.Match
    key: str | None  # printk caller ('' without caller ids, None for lines without timestamp)
    owner: str
    line_no: int
    lines: list[str]   # as printed (lead lines first)
    bodies: list[str]  # the same, timestamp removed
    start: int         # index of the start line in lines
    headers: int = 0   # start lines repeated for inlined levels (symbolized logs) after it
    armed: bool = False
    panicked: bool = False  # a panic joined it: the kernel stops, nothing more is missing

    def add(self, raw: str, body: str) -> None:
        self.lines.append(raw)
        self.bodies.append(body)


@dataclass
class Scanner:
    """Feed it cleaned text (console.clean_text) chunk by chunk, ending at line ends; finish()."""

    owners: console.Owners = field(default_factory=console.Owners)
    line_no: int = 0
    open: dict[str | None, _Open] = field(default_factory=dict)
    done: list[Report] = field(default_factory=list)
    last: dict[str | None, tuple[Report, int]] = field(default_factory=dict)
    last_end: int = 0  # line number where the last report ended: look-backs stop there
    tail: str = ""
    # Whether the kernel's lines carry timestamps; then a line without one is user space
    # (pytest, the shell) and never starts a report.
    stamped: bool | None = None

    def feed(self, chunk: str) -> None:
        if self.stamped is None and chunk:
            self.stamped = bool(console.STAMP.search(chunk, 0, 1 << 16))
        pos, n = 0, len(chunk)
        while pos < n:
            if not self.open:
                m = _TRIGGER.search(chunk, pos)
                if not m:
                    self.line_no += chunk.count("\n", pos)
                    break
                i = chunk.rfind("\n", pos, m.start())
                ls = pos if i < 0 else i + 1
                self.line_no += chunk.count("\n", pos, ls)
                pos = ls
                if m.group() == "wqh: ":
                    # A marker with no report open: only the owner changes (most hits are these).
                    le = chunk.find("\n", m.start())
                    if le < 0:
                        le = n
                    if self.owners.see(chunk[m.start():le]):
                        self.line_no += 1
                        pos = le + 1
                        continue
            le = chunk.find("\n", pos)
            if le < 0:
                le = n
            self.line_no += 1
            self._line(chunk[pos:le], chunk, pos)
            pos = le + 1
        self.tail = chunk[-TAIL:]

    def finish(self) -> list[Report]:
        for rep in list(self.open.values()):
            self._close(rep, "truncated", self.line_no)  # the log ends inside it
        self.done.sort(key=lambda r: r.line)
        return self.done

    # --- one line ---

    def _line(self, raw: str, chunk: str, pos: int) -> None:
        body, key = console.split_line(raw)
        rep = self.open.get(key) or self._any_context()
        end = rep.rule.end if rep else None
        if rep and end.block is not None and not end.block.match(body):
            self._close(rep, "", self.line_no - 1)  # this line is no longer part of it
            rep = self.open.get(key) or self._any_context()
        if self.owners.see(body):
            own = self.open.get(key)
            if own:
                self._close(own, "truncated", self.line_no - 1)  # the test ended inside it
            return
        rule, m = _start(body) if key is not None or not self.stamped else (None, None)
        if rule:
            own = self.open.get(key)
            if own and own.rule is rule and len(own.lines) == own.start + own.headers + 1:
                own.add(raw, body)  # the start line again, for the next inlined level
                own.headers += 1
                return
            if rule.joins and own:
                own.add(raw, body)
                own.panicked = own.panicked or rule.type == "PANIC"
                return
            if rule.follows and not own and key in self.last:
                prev, ended = self.last[key]
                if self.line_no - ended <= rr.JOIN_WINDOW:
                    prev.text += "\n" + raw
                    return
            if own:
                self._close(own, "interleaved", self.line_no - 1)  # another report began
            self._begin(rule, m, key, raw, body, chunk, pos)
            return
        if rep is None:
            return
        rep.add(raw, body)
        self._check_end(rep, body)

    def _any_context(self) -> _Open | None:
        for rep in self.open.values():
            if rep.rule.any_context:
                return rep
        return None

    def _begin(self, rule: rr.Rule, m: re.Match, key: str | None, raw: str, body: str,
               chunk: str, pos: int) -> None:
        lead_raw: list[str] = []
        lead_body: list[str] = []
        if rule.lead is not None:
            back = min(LEAD_MAX, self.line_no - 1 - self.last_end)
            prev = [(ln, *console.split_line(ln)) for ln in self._previous(chunk, pos, back)]
            prev = [p for p in prev if p[2] == key]
            for i in range(len(prev) - 1, -1, -1):
                if rule.lead.search(prev[i][1]):
                    lead_raw = [p[0] for p in prev[i:]]
                    lead_body = [p[1] for p in prev[i:]]
                    break
        rep = _Open(rule, m, key, self.owners.current, self.line_no, lead_raw + [raw],
                    lead_body + [body], len(lead_raw))
        self.open[key] = rep

    def _previous(self, chunk: str, pos: int, n: int) -> list[str]:
        """Up to N lines before the one at POS, oldest first (into the previous chunk's tail)."""
        out: list[str] = []
        src, end = chunk, pos - 1
        while len(out) < n:
            if end < 0:
                if src is chunk and self.tail:
                    src, end = self.tail, len(self.tail) - 1
                    continue
                break
            start = src.rfind("\n", 0, end) + 1
            out.append(src[start:end])
            end = start - 1
        out.reverse()
        return out

    def _check_end(self, rep: _Open, body: str) -> None:
        end = rep.rule.end
        if end.armed_by is not None and not rep.armed and end.armed_by.search(body):
            rep.armed = True
        elif end.line is not None and (rep.armed or end.armed_by is None) and end.line.search(body):
            self._close(rep, "", self.line_no)
        elif rep.panicked and rr.PANIC_END.search(body):
            self._close(rep, "", self.line_no)
        elif len(rep.lines) >= rep.rule.max_lines:
            self._close(rep, "truncated", self.line_no)  # its end never came

    def _close(self, rep: _Open, reason: str, end_no: int) -> None:
        del self.open[rep.key]
        end = rep.rule.end
        if reason == "truncated" and (rep.panicked or end.eof_ok or end.block is not None):
            reason = ""  # nothing was missing: the kernel stopped, or the report has no end line
        report = build(rep.rule, rep.match, rep.bodies, rep.start, reason, rep.headers)
        report.test = rep.owner
        report.text = "\n".join(rep.lines)
        report.line = rep.line_no
        self.done.append(report)
        self.last[rep.key] = (report, end_no)
        self.last_end = max(self.last_end, end_no)


def _start(body: str) -> tuple[rr.Rule | None, re.Match | None]:
    if not _TRIGGER.search(body):
        return None, None
    for rule in rr.RULES:
        if rule.keyword in body:
            m = rule.start.match(body)
            if m:
                return rule, m
    return None, None


# --- from a report's lines to its frames and title ---------------------------------------------


def build(rule: rr.Rule, m: re.Match, bodies: list[str], start: int, reason: str = "",
          headers: int = 0) -> Report:
    """The Report of a rule matched on bodies[start] (lines without timestamps), followed by
    HEADERS more start lines (one per inlined level, in symbolized logs)."""
    frames = frames_of(bodies, start, headers)
    fields = {k: _tidy(v) for k, v in m.groupdict().items() if v}
    for name, frx in rule.fields:
        for b in bodies[start + headers + 1:]:
            fm = frx.search(b)
            if fm:
                fields[name] = _tidy(fm.group(name))
                break
    if "src" in fields:
        fields["src"] = tree_path(fields["src"])
    guilty = guilty_frame(rule, frames)
    if guilty:
        fields["frame"] = guilty
    title = normalize(render(rule.title, fields))
    alts = []
    for tpl in rule.alt:
        alt = normalize(render(tpl, fields))
        if alt and alt != title and alt not in alts:
            alts.append(alt)
    if not reason and rule.corrupted:
        reason = rule.corrupted
    if not reason and rule.needs_stack and not any(f.section != "header" for f in frames):
        reason = "no frames"
    return Report(title=title, type=rule.type, alt_titles=alts, corrupted=bool(reason),
                  corrupted_reason=reason, frames=frames)


def frames_of(bodies: list[str], start: int, headers: int = 0) -> list[Frame]:
    """Every reliable frame of a report, tagged with its section ('? func' frames are left out)."""
    frames: list[Frame] = []
    for head in bodies[start:start + headers + 1]:
        hm = rr.HEADER_INLINE.search(head)
        if not hm:
            for hm in rr.HEADER_FUNC.finditer(head):
                pass
        if hm:
            f = _frame(hm, "header", False)
            src = _WARN_SRC.search(head)
            if src and not f.file:
                f.file, f.line = tree_path(src.group(1)), int(src.group(2))
            frames.append(f)
    section, irq = "pre", False
    for b in bodies[start + headers + 1:]:
        for name, srx in rr.SECTIONS:
            if srx.search(b):
                section, irq = name, False
                break
        else:
            if rr.IRQ_ENTER.match(b):
                irq = True
                continue
            if rr.IRQ_LEAVE.match(b):
                irq = False
                continue
            m = rr.RIP.match(b)
            if m:
                m = rr.FRAME.match(m["rest"])
                if m and not m["q"] and (m["off"] or m["file"] or m["inl"]):
                    frames.append(_frame(m, "rip" if section in ("pre", "other") else section, irq))
                continue
            m = rr.FRAME.match(b)
            if m and (m["off"] or m["file"] or m["inl"]):
                if not m["q"]:
                    frames.append(_frame(m, section, irq))
                continue
            if section in ("lock", "held"):
                m = rr.AT.search(b)
                if m:
                    frames.append(_frame(m, section, irq))
    return frames


def _frame(m: re.Match, section: str, irq: bool) -> Frame:
    g = m.groupdict()
    return Frame(func=g["func"],
                 offset=int(g["off"], 16) if g.get("off") else None,
                 size=int(g["size"], 16) if g.get("size") else None,
                 module=g.get("mod"), file=g.get("file"),
                 line=int(g["line"]) if g.get("line") else None,
                 inline=bool(g.get("inl")), section=section, irq=irq)


def func_name(func: str) -> str:
    """The function a frame names, without compiler suffixes (foo.isra.0, foo.cold -> foo)."""
    return func.split(".", 1)[0]


def guilty_frame(rule: rr.Rule, frames: list[Frame]) -> str | None:
    """The function a title names: the first frame of the rule's sections no helper explains."""
    skip = _SKIP[rule.name]
    if rule.pick == "stall":
        return _stall(frames, skip)
    cands = [func_name(f.func) for s in rule.frames for f in frames
             if f.section == s and not f.inline]
    if rule.pick == "hung":
        return _hung(cands, skip)
    for name in cands:
        if not skip.match(name):
            return name
    return None


def _stall(frames: list[Frame], skip: re.Pattern) -> str | None:
    trace = [f for f in frames if f.section == "trace" and not f.inline]
    task = [f for f in trace if not f.irq]
    if not any(f.irq for f in trace):
        # The RIP line before the trace is where the looping code was caught, unless the trace
        # starts in an interrupt: then it is interrupt code and the task part has its own RIP.
        task = [f for f in frames if f.section == "rip"][:1] + task
    names = [func_name(f.func) for f in task]
    names = [n for n in names if rr.STALL_ANCHORS.match(n) or not skip.match(n)]
    prev = None
    for n in names:
        if rr.STALL_ANCHORS.match(n):
            return rr.STALL_STRIP.sub("", prev or n)
        prev = n
    return names[0] if names else None


def _hung(names: list[str], skip: re.Pattern) -> str | None:
    for n in names:
        for anchor, title_name in rr.HUNG_ANCHORS:
            if n.startswith(anchor):
                return title_name
    for n in names:
        if not skip.match(n) and not any(p in n for p in rr.HUNG_SKIP_PARTS):
            return n
    return None


def tree_path(path: str) -> str:
    """A source file name as in the tree, also when an O= build printed it through a relative
    source path ("../../src/linux-source-6.1/fs/pipe.c:304" -> "fs/pipe.c:304")."""
    if not path.startswith(("../", "/")):
        return path
    parts = path.split("/")
    for i, part in enumerate(parts):
        if part in rr.TREE_DIRS:
            return "/".join(parts[i:])
    return path


def _tidy(value: str) -> str:
    return _SUFFIX.sub(r"\1", _OFFSETS.sub("", value)).strip()


def render(template: str, fields: dict[str, str]) -> str:
    """Fill a title template; a [...] part with a missing field is left out."""
    out, pos = [], 0
    for m in _OPTIONAL.finditer(template):
        out.append(_fill(template[pos:m.start()], fields))
        part = m.group(1)
        if all(fields.get(n) for n in _FIELD.findall(part)):
            out.append(_fill(part, fields))
        pos = m.end()
    out.append(_fill(template[pos:], fields))
    return "".join(out)


def normalize(title: str) -> str:
    """What varies between reports of one bug out (report_rules.TITLE_NORMALIZE), printable,
    single spaces, at most TITLE_MAX characters."""
    for rx_, repl in rr.TITLE_NORMALIZE:
        title = rx_.sub(repl, title)
    title = "".join(c if c.isprintable() and c.isascii() else " " for c in title.replace("\t", " "))
    return " ".join(title.split())[:rr.TITLE_MAX].strip()


def _fill(s: str, fields: dict[str, str]) -> str:
    return _FIELD.sub(lambda m: fields.get(m.group(1)) or "?", s)


# --- entry points ------------------------------------------------------------------------------


def parse_chunks(chunks: Iterable[str]) -> list[Report]:
    s = Scanner()
    for c in chunks:
        s.feed(console.clean_text(c))
    return s.finish()


def parse_text(text: str) -> list[Report]:
    """Every report of a console log, in the order they start, each with its owner (test)."""
    return parse_chunks([text])


def parse_file(path: str | Path) -> list[Report]:
    """parse_text for a file of any size, read in CHUNK pieces cut at line ends."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file", hint="give the path of a saved console log")
    return parse_chunks(_read_chunks(p))


def _read_chunks(p: Path) -> Iterable[str]:
    with open(p, "rb") as fh:
        rest = b""
        while True:
            data = fh.read(CHUNK)
            if not data:
                break
            data = rest + data
            cut = data.rfind(b"\n") + 1
            if cut == 0 and len(data) < 8 * CHUNK:
                rest = data  # no line end yet: read on (a log is lines, not one huge line)
                continue
            cut = cut or len(data)
            rest = data[cut:]
            yield data[:cut].decode("utf-8", "replace")
        if rest:
            yield rest.decode("utf-8", "replace")


def merge(reports: list[Report]) -> list[Report]:
    """One entry per (owner, title), counting repeats; keeps an uncorrupted copy when there is one."""
    out: dict[tuple[str, str], Report] = {}
    for r in sorted(reports, key=lambda r: r.line):
        k = (r.test, r.title)
        have = out.get(k)
        if have is None:
            out[k] = dataclasses.replace(r)
            continue
        if have.corrupted and not r.corrupted:
            out[k] = dataclasses.replace(r, count=have.count + r.count, line=have.line)
        else:
            have.count += r.count
    return list(out.values())
