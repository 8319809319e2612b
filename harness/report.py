"""Kernel log analysis: every report in a console log, titled the way syzbot titles it.

One pass over the log, chunk by chunk, so that a 100 MB log costs little time and memory:
outside reports one keyword search skips every line no report can start on; the lines of an
open report are collected until its end (report_rules: detection as data). When the log has
printk caller ids ("[ T1234]" / "[ C1]"), a report only takes the lines of its own caller, so
that another CPU's output neither cuts nor pollutes it.

Each report is titled from its own lines (`describe`), with syzbot's conventions: the format
table of its kind, the guilty frame after the skip list, `... in corrupted` when no frame can
be trusted, alternative titles. Titles are computed on the frames the kernel printed, as
syzbot does (it symbolizes after titling), so a log titles the same with or without a vmlinux.
The first report of a log is its primary one; a panic that follows a report (Fatal exception,
panic_on_warn) belongs to that report however far below it comes.
"""

from __future__ import annotations

import collections
import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from harness import console
from harness import report_rules as rr
from harness.errors import InputError

CHUNK = 8 << 20  # bytes read at a time
LEAD_MAX = 8     # lines looked back for a report's lead ("cut here", banner, WARN message)
TAIL = 4096      # characters of the previous chunk kept for that look-back
TITLE_LINES = 600  # lines of a report its title is computed on


@dataclass
class Frame:
    """One stack frame of a kernel report; file/line once symbolized (or as printed)."""

    func: str
    offset: int | None = None
    size: int | None = None
    module: str | None = None
    file: str | None = None
    line: int | None = None
    inline: bool = False  # an inlined call inside the next non-inline frame
    section: str = ""     # where in the report: header, rip, trace, alloc, free, backtrace, lock...
    irq: bool = False     # inside an <IRQ>/<NMI> part of a trace


@dataclass
class Report:
    """A kernel report, or several with the same title and owner (count)."""

    title: str  # syzbot-style, e.g. "KASAN: slab-out-of-bounds Write in watch_queue_set_filter"
    type: str   # KASAN, KFENCE, KMSAN, UBSAN, KCSAN, LEAK, LOCKDEP, WARNING, BUG, GPF, HANG, PANIC
    count: int = 1
    alt_titles: list[str] = field(default_factory=list)
    corrupted: bool = False
    corrupted_reason: str = ""
    frames: list[Frame] = field(default_factory=list)
    frame: str = ""  # the guilty function the title names ('' when it names none)
    format: str = ""  # the report_rules format that titled it
    test: str = ""  # owner: the test whose markers enclose its first line, 'boot' or 'teardown'
    text: str = ""  # the report's lines as the console printed them
    line: int = 0   # its first line's number in the log

    @classmethod
    def from_json(cls, d: dict) -> "Report":
        """The inverse of dataclasses.asdict (results.json, reports.json); unknown keys ignored."""
        kw = {k: v for k, v in d.items() if k in _REPORT_FIELDS}
        kw["frames"] = [Frame(**{k: v for k, v in f.items() if k in _FRAME_FIELDS})
                        for f in kw.get("frames") or [] if isinstance(f, dict)]
        return cls(**kw)


_REPORT_FIELDS = set(Report.__dataclass_fields__)
_FRAME_FIELDS = set(Frame.__dataclass_fields__)


_KEYWORDS = {k.header for k in rr.KINDS} | {"wqh: "}
# A keyword containing another adds nothing to the search.
_TRIGGER = re.compile("|".join(sorted(
    re.escape(k) for k in _KEYWORDS if not any(o != k and o in k for o in _KEYWORDS))))
# Compiler suffixes of a function name in free text (KCSAN's "%ps"): "pipe_read.isra.0".
_SUFFIX = re.compile(r"\b([A-Za-z_]\w*)\.(?:isra|constprop|part|cold|llvm|lto_priv)(?:\.\d+)*")
# The function a title names, as syzbot reads it back: after its last " in ".
_TITLE_FRAME = re.compile(r".* in ((?:<[a-zA-Z0-9_: ]+>)?[a-zA-Z0-9_:]+)")
_QUESTIONABLE = re.compile(r"(?:\[<[0-9a-f]+>\])? \? ")


@dataclass
class _Open:
    """A report being read."""

    kind: rr.Kind
    fmt: rr.Format  # the format its start line matched: where it ends, whose lines it takes
    key: str | None  # printk caller ('' without caller ids, None for lines without timestamp)
    owner: str
    line_no: int
    lines: list[str]   # as printed (lead lines first)
    bodies: list[str]  # the same, timestamp removed
    start: int         # index of the start line in lines
    armed: bool = False
    upto: int | None = None  # bodies past this index never decide the title (after a panic)

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
    last_end: int = 0  # line number where the last report ended: look-backs stop there
    # Reports cut by another report of their printk caller: syzbot titles them on every later
    # line of that caller, so they go on collecting lines for their title until they have
    # TITLE_LINES, a panic comes or the log ends.
    pending: dict[str, list[tuple[_Open, list[Frame]]]] = field(default_factory=dict)
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
            self._close(rep, self.line_no)  # the log ends inside it
        for key in list(self.pending):
            self._settle(key)
        self.done.sort(key=lambda r: r.line)
        return self.done

    # --- one line ---

    def _line(self, raw: str, chunk: str, pos: int) -> None:
        body, key = console.split_line(raw)
        if key in self.pending:
            self._feed_pending(key, body)
        rep = self.open.get(key) or (self._any_context() if self.open else None)
        if rep and rep.fmt.end.block is not None and not rep.fmt.end.block.match(body):
            self._close(rep, self.line_no - 1)  # this line is no longer part of it
            rep = self.open.get(key) or (self._any_context() if self.open else None)
        if self.owners.see(body):
            own = self.open.get(key)
            if own:
                self._close(own, self.line_no - 1)  # the test ended inside it
            for k in list(self.pending):
                self._settle(k)  # a test's reports are titled on its own lines
            return
        kind, fmt = _start(body) if key is not None or not self.stamped else (None, None)
        if kind is not None:
            own = self.open.get(key)
            if own and own.kind is kind and _same_header(own, body):
                own.add(raw, body)  # the start line again, for the next inlined level (symbolized)
                return
            if own and (kind.joins or (kind.header == own.fmt.absorbs
                                       and not any(kind.header in b for b in own.bodies))):
                own.add(raw, body)  # a panic or trap line of this report, or its leaked object
                if kind.header == "Kernel panic" and own.upto is None \
                        and len(own.bodies) - own.start > rr.CONSEQUENCE_AFTER:
                    own.upto = len(own.bodies) - 1
                return
            live = list(self.open.values()) + [r for reps in self.pending.values() for r, _ in reps]
            if fmt.follows and not own and (live or self.done):
                # The consequence of the report before it (another CPU's, or long closed).
                if live:
                    max(live, key=lambda o: o.line_no).lines.append(raw)
                else:
                    max(self.done, key=lambda r: r.line).text += "\n" + raw
                return
            if own:
                self._close(own, self.line_no - 1, cut=True)  # another report began
            self._begin(kind, fmt, key, raw, body, chunk, pos)
            return
        if rep is None:
            return
        rep.add(raw, body)
        self._check_end(rep, body)

    def _any_context(self) -> _Open | None:
        for rep in self.open.values():
            if rep.fmt.any_context:
                return rep
        return None

    def _begin(self, kind: rr.Kind, fmt: rr.Format, key: str | None, raw: str, body: str,
               chunk: str, pos: int) -> None:
        lead_raw: list[str] = []
        lead_body: list[str] = []
        if fmt.lead is not None:
            back = min(LEAD_MAX, self.line_no - 1 - self.last_end)
            prev = [(ln, *console.split_line(ln)) for ln in self._previous(chunk, pos, back)]
            prev = [p for p in prev if p[2] == key]
            for i in range(len(prev) - 1, -1, -1):
                if fmt.lead.search(prev[i][1]):
                    lead_raw = [p[0] for p in prev[i:]]
                    lead_body = [p[1] for p in prev[i:]]
                    break
        self.open[key] = _Open(kind, fmt, key, self.owners.current, self.line_no, lead_raw + [raw],
                               lead_body + [body], len(lead_raw))

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
        end = rep.fmt.end
        if end.armed_by is not None and not rep.armed and end.armed_by.search(body):
            rep.armed = True
        elif end.line is not None and (rep.armed or end.armed_by is None) and end.line.search(body):
            self._close(rep, self.line_no)
        elif rep.upto is not None and rr.PANIC_END.search(body):
            self._close(rep, self.line_no)
        elif len(rep.lines) >= 2000:
            self._close(rep, self.line_no)  # its end never came

    def _close(self, rep: _Open, end_no: int, cut: bool = False) -> None:
        del self.open[rep.key]
        self.last_end = max(self.last_end, end_no)
        frames = frames_of(rep.bodies, rep.start)
        if cut and rep.key and rep.upto is None and len(rep.bodies) - rep.start < TITLE_LINES:
            self.pending.setdefault(rep.key, []).append((rep, frames))
            return
        self._done(rep, frames)

    def _feed_pending(self, key: str, body: str) -> None:
        for rep, _ in self.pending[key]:
            if rep.upto is None:
                if "Kernel panic - not syncing" in body and len(rep.bodies) - rep.start > rr.CONSEQUENCE_AFTER:
                    rep.upto = len(rep.bodies)  # syzbot leaves out what follows the panic
                else:
                    rep.bodies.append(body)
        if all(rep.upto is not None or len(rep.bodies) - rep.start >= TITLE_LINES for rep, _ in self.pending[key]):
            self._settle(key)

    def _settle(self, key: str) -> None:
        for rep, frames in self.pending.pop(key):
            self._done(rep, frames)

    def _done(self, rep: _Open, frames: list[Frame]) -> None:
        report = build(rep.kind, rep.bodies[rep.start:rep.upto], frames)
        report.test = rep.owner
        report.text = "\n".join(rep.lines)
        report.line = rep.line_no
        self.done.append(report)


def _same_header(rep: _Open, body: str) -> bool:
    """A symbolized report (syzbot's) repeats its start line once per inlined level first:
    "BUG: KASAN: slab-out-of-bounds in ___set_bit include/...h:28 [inline]", then the real one."""
    heads = rep.bodies[rep.start:]
    head = heads[0]
    i = head.find(" in ")
    return i > 0 and all(b.startswith(head[:i + 4]) for b in heads) and body.startswith(head[:i + 4]) \
        and heads[-1].endswith("[inline]")


def _start(body: str) -> tuple[rr.Kind | None, rr.Format | None]:
    """The kind of report a line starts, and the format its own text matches (None, None)."""
    if not _TRIGGER.search(body):
        return None, None
    for kind in rr.KINDS:
        if kind.header in body and not any(i.search(body) for i in kind.ignore):
            for fmt in kind.formats:
                if fmt.title.search(body):
                    return kind, fmt
            return kind, kind.formats[0]
    return None, None


# --- titles: syzbot's conventions ---------------------------------------------------------------


@dataclass
class Description:
    title: str
    alt_titles: list[str]
    corrupted: str  # why the report cannot be trusted ('' when it can)
    format: str
    frame: str


def title_lines(bodies: Iterable[str]) -> list[str]:
    """The lines a title is computed on: no unreliable '? func' frames, no taint notice."""
    return [b for b in bodies if not (_QUESTIONABLE.match(b) and "<EOI>" not in b)
            and "Disabling lock debugging due to kernel taint" not in b][:TITLE_LINES]


def describe(kind: rr.Kind, lines: list[str]) -> Description:
    """Title a report of KIND from its lines (timestamps removed), as syzbot does: the format
    whose title matches earliest; its report regex and stack decide the fields."""
    text = "\n".join(lines) + "\n"
    desc, alts, corrupted, used = "", [], "", None
    first = len(text)
    matched = False
    # A format whose title matches in the first line matches before any other: look there first.
    line0 = lines[0] if lines else ""
    head = len(line0)
    formats = [f for f in kind.formats if f.literal in line0 and (f.title.search(text, 0, head) or (
        f.multiline and (m := f.title.search(text)) is not None and m.start() < head))] or kind.formats
    for f in formats:
        m = f.title.search(text)
        if not m or m.start() > first or (m.start() == first and desc):
            continue
        if m.start() < first:
            desc, alts, used, first = "", [], None, m.start()
        matched = True
        if f.report is not None:
            m = f.report.search(text)
            if not m:
                continue
        groups = [g or "" for g in m.groups()]
        corrupted, keys = "", []
        if f.stack is not None:
            keys, ok = extract_frames(f.stack, text[m.start():].split("\n"))
            if not ok:
                corrupted = "no frames"
        args = groups + [k[0] for k in keys]
        desc = _fmt(f.fmt, args)
        alts = [_fmt(a, args) for a in f.alt]
        for variant in _partly_stripped(keys):
            vargs = groups + variant
            alt = _fmt(f.fmt, vargs)
            if alt != desc:
                alts.append(alt)
            alts += [_fmt(a, vargs) for a in f.alt]
        used = f
    if not desc:
        if matched:
            corrupted = "header without the rest of its report"
        i = text.find(kind.header)
        desc = text[i:text.find("\n", i)] if i >= 0 else ""
    if not corrupted and used is not None and used.corrupted:
        corrupted = "only a fragment of a report"
    title = normalize(desc)
    if not corrupted:
        corrupted = _corrupted(desc, text, used)  # the title as printed: timestamps still in it
    alts = [a for a in dict.fromkeys(normalize(a) for a in alts) if a != title]
    fm = _TITLE_FRAME.match(title)
    frame = fm.group(1) if fm and fm.group(1) != "corrupted" else ""
    return Description(title, alts, corrupted, used.name if used else "", frame)


def _fmt(template: str, args: list[str]) -> str:
    try:
        return template.format(*args)
    except IndexError:
        return template


def _strip(name: str) -> str:
    """A syscall wrapper cut to the syscall: the shortest of the single-prefix cuts."""
    best = name
    for p in rr.STRIP_PREFIXES:
        if name.startswith(p) and len(name) - len(p) < len(best):
            best = name[len(p):]
    return best


def _partly_stripped(keys: list[tuple[str, str]]) -> list[list[str]]:
    """The frames as printed, then cut by each prefix alone: more titles one bug may have had."""
    out = [[raw for _, raw in keys]] if keys else []
    for p in rr.STRIP_PREFIXES:
        cut = [raw[len(p):] if raw.startswith(p) else raw for _, raw in keys]
        if any(raw.startswith(p) for _, raw in keys):
            out.append(cut)
    return out


def extract_frames(stack: rr.Stack, lines: list[str]) -> tuple[list[tuple[str, str]], bool]:
    """The guilty frame of each stack the STACK's parts read, as (title name, printed name);
    ok is False when one of them had no frame to give (its name is then 'corrupted')."""
    skip = _SKIP[stack]
    keys, ok = _extract(stack, stack.parts, lines, skip)
    if ok or not stack.parts2:
        return keys, ok
    return _extract(stack, stack.parts2, lines, skip)


def _extract(stack: rr.Stack, parts: tuple, lines: list[str], skip: re.Pattern):
    raw: list[str] = []
    keys: list[tuple[str, str]] = []
    ok, traces, i, p = True, 0, 0, 0
    while True:
        if p == len(parts) or (parts[p] is rr.TRACE and traces):
            key = _key(stack, raw)
            if key is None:
                key, ok = ("corrupted", "corrupted"), False
            keys.append(key)
            raw = []
        if p == len(parts):
            return keys, ok
        part = parts[p]
        nxt = parts[p + 1] if part is rr.TRACE and p + 1 < len(parts) else None
        traces += part is rr.TRACE
        while i < len(lines):
            ln = lines[i]
            i += 1
            if _injected(ln):
                ok = False
                break
            if part is not rr.TRACE:  # a line to find: it may name a frame
                m = part.search(ln)
                if m:
                    _append(raw, m, skip)
                    break
                continue
            if _maybe_stack_start(ln) and rr.STACK_START_ANY.search(ln):
                break  # the next stack: this one is over
            m = nxt.search(ln) if nxt is not None else None
            if m:  # the next part's line ends the trace
                _append(raw, m, skip)
                p += 1
                break
            m = rr.FRAME_LINE[0].match(ln) or (" from " in ln and rr.FRAME_LINE[1].match(ln))
            if m:
                _append(raw, m, skip)
        p += 1


def _injected(ln: str) -> bool:
    """A fault-injection frame: the report around it mixes two stacks."""
    return "should_fail" in ln and rr.CORRUPTED_ANY.search(ln) is not None


def _maybe_stack_start(ln: str) -> bool:
    """A cheap test every line of rr.STACK_START passes."""
    return "race" in ln or "Allocated" in ln or "Freed" in ln or "Uninit" in ln


def _append(raw: list[str], m: re.Match, skip: re.Pattern) -> None:
    known = _SKIPPED[id(skip)]
    for name in m.groups():
        if name:
            s = known.get(name)
            if s is None:
                s = known[name] = bool(skip.search(name))
            if not s:
                raw.append(name)


def _key(stack: rr.Stack, raw: list[str]) -> tuple[str, str] | None:
    if not raw:
        return None
    names = [_strip(r) for r in raw]
    if stack.extractor == "stall":
        prev, idx = names[0], 0
        for i, n in enumerate(names):
            if any(a.search(n) for a in rr.STALL_ANCHORS):
                if "smp_call_function" in n:
                    prev, idx = "smp_call_function", i
                return prev, raw[idx]
            prev, idx = n, i
        return None
    if stack.extractor == "hung":
        for i, n in enumerate(names):
            for anchor, name in rr.HUNG_ANCHORS:
                if anchor in n:
                    return name, raw[i]
        for i, n in enumerate(names):
            if not any(s in n for s in rr.HUNG_SKIP):
                return n, raw[i]
        return None
    return names[0], raw[0]


def _corrupted(title: str, text: str, fmt: rr.Format | None) -> str:
    """Why a titled report cannot be trusted, as syzbot decides it ('' when it can)."""
    if rr.CORRUPTED_TITLE.search(title):
        return "a timestamp in the title: another line cut into it"
    if fmt is None or fmt.no_stack:
        return ""
    seen = False
    firsts = (m.start() for m in (k.search(text) for k in rr.STACK_START) if m)
    for start in firsts:  # each kind of stack start, where it first comes
        after = text[start:].split("\n", 17)
        if len(after) < 4:
            return "stack cut off after its first line"
        for ln in after[1:16]:
            if rr.STACK_START_ANY.search(ln):
                return "a stack without frames"
            if "(stack is not available)" in ln or any(f.search(ln) for f in rr.FRAME_LINE):
                seen = True
                break
        else:
            return "a stack without frames"
    return "" if seen else "no stack trace"


def type_of(title: str) -> str:
    for pat, typ in rr.TYPES:
        if pat.search(title):
            return typ
    return "BUG"


def build(kind: rr.Kind, bodies: list[str], frames: list[Frame]) -> Report:
    """The Report of a report of KIND whose lines (timestamps removed, lead left out) are BODIES."""
    d = describe(kind, title_lines(bodies))
    return Report(title=d.title, type=type_of(d.title), alt_titles=d.alt_titles, corrupted=bool(d.corrupted),
                  corrupted_reason=d.corrupted, frames=frames, frame=d.frame, format=d.format)


def _older_form(title: str) -> str:
    for pat, repl in rr.TITLE_ACROSS_VERSIONS:
        title = pat.sub(repl, title)
    return title


def same_bug(expected: str, title: str) -> bool:
    """EXPECTED names the bug TITLE reports, also where this kernel's version spells the title
    differently from the version the expectation was written on (TITLE_ACROSS_VERSIONS)."""
    return expected == title or _older_form(expected) == _older_form(title)


def normalize(title: str) -> str:
    """What varies between reports of one bug out (report_rules.TITLE_NORMALIZE), printable,
    single spaces, at most TITLE_MAX characters."""
    done = _NORMALIZED.get(title)
    if done is None:
        if len(_NORMALIZED) > 100_000:
            _NORMALIZED.clear()
        done = _NORMALIZED[title] = _normalize(title)
    return done


def _normalize(title: str) -> str:
    title = _SUFFIX.sub(r"\1", title)
    for pat, repl in rr.TITLE_NORMALIZE:
        while True:
            new = pat.sub(repl, title)
            if new == title:
                break
            title = new
    out, prev = [], " "
    for ch in title[:rr.TITLE_MAX]:
        if ch == "\t":
            ch = " "
        elif ch < " " or ch >= "\x7f":
            continue
        if ch == " " and prev == " ":
            continue
        out.append(ch)
        prev = ch
    return "".join(out).strip()


class _SkipCache(dict):
    def __missing__(self, stack: rr.Stack) -> re.Pattern:
        self[stack] = rx = rr.skip_regex(stack)
        return rx


_SKIP = _SkipCache()
# Whether a function is skipped, per skip regex: names repeat from report to report.
_SKIPPED: dict[int, dict[str, bool]] = collections.defaultdict(dict)  # by id() of a cached regex
_NORMALIZED: dict[str, str] = {}

# --- frames: every frame of a report, for symbolizing and for the reader ------------------------

# A line of a stack: "[<ffffffff81266510>] ? func+0x3b0/0x6a0 [module] file.c:380 [inline]",
# also decode_stacktrace.sh's "func (file.c:380)". A frame needs an offset, a file or [inline].
FRAME = re.compile(
    r"^\s*(?:\[<?[0-9a-f]+>?\]\s*)?(?P<q>\?\s+)?"
    r"(?P<func>[A-Za-z_][\w.$]*)"
    r"(?:\+0x(?P<off>[0-9a-f]+)/0x(?P<size>[0-9a-f]+))?"
    r"(?:\s+\[(?P<mod>[\w-]+)(?:\s+[0-9a-f]+)?\])?"
    r"(?:\s+\(?(?P<file>[\w./+-]+):(?P<line>\d+)(?::\d+)?\)?)?"
    r"(?P<inl>\s+\[inline\])?\s*$")
# "RIP: 0010:watch_queue_set_filter+0x3b0/0x6a0": the rest is a frame; "RIP: 0033:0x7f.." is not.
RIP_LINE = re.compile(r"^RIP: (?:[0-9a-f]{4}:)?(?P<rest>.*)$")
# lockdep's held-lock lines: "ffff888...(&pipe->mutex/1){+.+.}-{3:3}, at: pipe_write+0x10a/0x1460"
AT = re.compile(r", at: (?:\[<[0-9a-f]+>\] )?(?P<func>[A-Za-z_][\w.$]*)\+0x(?P<off>[0-9a-f]+)/0x(?P<size>[0-9a-f]+)")
# The function a start line names ("BUG: KASAN: ... in func+0x1f/0x2c0", symbolized logs add
# " file.c:380"); the last one wins.
HEADER_FUNC = re.compile(r"(?<![\w.])(?P<func>[A-Za-z_][\w.$]*)\+0x(?P<off>[0-9a-f]+)/0x(?P<size>[0-9a-f]+)"
                         r"(?:\s+(?P<file>[\w./+-]+):(?P<line>\d+)(?::\d+)?)?")
HEADER_INLINE = re.compile(r" in (?P<func>[A-Za-z_][\w.$]*) (?P<file>[\w./+-]+):(?P<line>\d+)(?::\d+)?"
                           r" (?P<inl>\[inline\])\s*$")
IRQ_ENTER = re.compile(r"^\s*<(?:IRQ|NMI|SOFTIRQ)>\s*$")
IRQ_LEAVE = re.compile(r"^\s*(?:</(?:IRQ|NMI|SOFTIRQ)>|<TASK>|<EOI>)\s*$")
_WARN_SRC = re.compile(r" at (\S+?):(\d+) \S+\+0x")
# A line matching one of these starts a section of the report; frames carry its name.
_SECTIONS = (
    ("trace", r"^Call Trace:|^Call trace:"),
    ("backtrace", r"^\s*backtrace(?: \(crc [0-9a-f]+\))?:\s*$"),  # kmemleak
    ("alloc", r"^(?:Allocated|allocated) by task \d+"),
    ("free", r"^(?:Freed|freed) by task \d+"),
    ("aux", r"^(?:Second to last p|Last p)otentially related work creation:"),
    ("access", r"^(?:Out-of-bounds|Use-after-free|Invalid) (?:read|write|free) (?:at|of) 0x|^Corrupted memory at 0x"
               r"|^(?:race at unknown origin, with )?(?:read|write)[\w() -]* to 0x[0-9a-f]+ of \d+ bytes by"),
    ("lock", r"is trying to acquire lock:|is trying to acquire:|\] takes:$|is trying to release lock \("
             r"|just changed the state of lock:"),
    ("held", r"^but task is already holding lock:|^and this task is already holding:|^\d+ locks? held by "
             r"|^but this lock was taken by another|^other info that might help"),
    ("chain", r"^-> #\d+ |^the existing dependency chain|^\s*\.\.\. acquired at:"),
    ("other", r"^The buggy address |^Memory state around the buggy address|^kfence-#\d+"),
)
SECTIONS = re.compile("|".join(f"(?P<{n}>{p})" for n, p in _SECTIONS))


def frames_of(bodies: list[str], start: int) -> list[Frame]:
    """Every reliable frame of a report, tagged with its section ('? func' frames are left out)."""
    frames: list[Frame] = []
    head = bodies[start]
    i = head.find(" in ")
    n = 1
    while i > 0 and start + n < len(bodies) and bodies[start + n - 1].endswith("[inline]") \
            and bodies[start + n].startswith(head[:i + 4]):
        n += 1  # the start line repeated per inlined level (symbolized logs)
    for head in bodies[start:start + n]:
        hm = HEADER_INLINE.search(head)
        if not hm:
            for hm in HEADER_FUNC.finditer(head):
                pass
        if hm:
            f = _frame(hm, "header", False)
            src = _WARN_SRC.search(head)
            if src and not f.file:
                f.file, f.line = tree_path(src.group(1)), int(src.group(2))
            frames.append(f)
    section, irq = "pre", False
    for b in bodies[start + n:]:
        m = FRAME.match(b) if b[:1] == " " else None  # most lines of a report: a frame
        if m and (m["off"] or m["file"] or m["inl"]):
            if not m["q"]:
                frames.append(_frame(m, section, irq))
            continue
        sm = SECTIONS.search(b) if b[:1] != " " or "backtrace" in b or "acquired at" in b else None
        if sm:
            section, irq = sm.lastgroup, False
        else:
            if IRQ_ENTER.match(b):
                irq = True
                continue
            if IRQ_LEAVE.match(b):
                irq = False
                continue
            m = RIP_LINE.match(b)
            if m:
                m = FRAME.match(m["rest"])
                if m and not m["q"] and (m["off"] or m["file"] or m["inl"]):
                    frames.append(_frame(m, "rip" if section in ("pre", "other") else section, irq))
                continue
            m = FRAME.match(b)
            if m and (m["off"] or m["file"] or m["inl"]):
                if not m["q"]:
                    frames.append(_frame(m, section, irq))
                continue
            if section in ("lock", "held"):
                m = AT.search(b)
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
