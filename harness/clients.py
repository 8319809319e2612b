"""Real userspace clients of the notification queue as a second oracle.

keyutils' ``keyctl watch`` / ``watch_session`` (+ ``watch_add``/``watch_rm``) and the kernel's
``samples/watch_queue/watch_test`` read the same records wqh's binding reads, and print one text
line per record. This module parses that text and wqh's own decoded records into one event type,
and says where the two readings of one operation disagree.

The text formats are the printf formats of the clients' sources, kept here as data so a test can
hold them against the installed binary:

* keyutils 1.6.3 ``keyctl_watch.c`` (Debian bookworm's keyutils 1.6.3-2 source package):
  ``saw_key_change()`` prints ``"%u inst"``, ``"%u upd"``, ``"%u link %u"``, ``"%u unlk %u"``,
  ``"%u clr"``, ``"%u rev"``, ``"%u inv"``, ``"%u attr"`` (key_id, and aux for link/unlk only);
  ``saw_removal_notification()`` prints ``"%u gc"`` (the removal record's id, a key serial) for
  any removal record, an explicit ``watch_rm`` included; ``consumer()`` prints ``"-- LOSS --"``
  for a loss record, ``"-- END --"`` on EOF (to stdout) and ``"Monitoring terminated"`` after
  SIGTERM. Other record types and key records whose length is not 16 print nothing. The watch
  id is never printed (``watch`` uses 1, ``watch_add`` 2). ``watch_session`` writes key records
  and loss to its notify log, removals to its gc log, and ``"Joined session keyring: %d"`` to
  stderr.
* Linux ``samples/watch_queue/watch_test.c`` (6.1 and 6.12 alike): ``"read() = %zd"`` per read,
  then per record the header ``"NOTIFY[%03zx]: ty=%06x sy=%02x i=%08x"`` followed by
  ``"KEY %08x change=%u[%s] aux=%u"``, ``"REMOVAL of watchpoint %08x"`` (the watch id, not the
  object), ``"-- LOSS --"``, ``"other meta record"`` or ``"other type"``; ``"-- END --"`` on EOF.

A field a client does not show is None in its reading and is not compared.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

KEY_SUBTYPES = ("instantiated", "updated", "linked", "unlinked", "cleared", "revoked",
                "invalidated", "setattr")

KEY, REMOVAL, LOSS, OTHER = "key", "removal", "loss", "other"

KEYCTL_WATCH = "keyctl watch"
KEYCTL_WATCH_SESSION = "keyctl watch_session"
WATCH_TEST = "watch_test"

# keyctl_watch.c (keyutils 1.6.3): subtype -> the format saw_key_change() prints.
KEYCTL_KEY_FORMATS = {
    "instantiated": "%u inst",
    "updated": "%u upd",
    "linked": "%u link %u",
    "unlinked": "%u unlk %u",
    "cleared": "%u clr",
    "revoked": "%u rev",
    "invalidated": "%u inv",
    "setattr": "%u attr",
}
KEYCTL_REMOVAL_FORMAT = "%u gc"
KEYCTL_LOSS_LINE = "-- LOSS --"
KEYCTL_END_LINE = "-- END --"
KEYCTL_TERMINATED_LINE = "Monitoring terminated"
KEYCTL_SESSION_FORMAT = "Joined session keyring: %d"

# samples/watch_queue/watch_test.c
WATCH_TEST_FORMATS = {
    "read": "read() = %zd",
    "header": "NOTIFY[%03zx]: ty=%06x sy=%02x i=%08x",
    "key": "KEY %08x change=%u[%s] aux=%u",
    "removal": "REMOVAL of watchpoint %08x",
    "loss": "-- LOSS --",
    "other meta": "other meta record",
    "other type": "other type",
    "end": "-- END --",
}

# include/uapi/linux/watch_queue.h
_TYPE_META, _TYPE_KEY = 0, 1
_META_REMOVAL, _META_LOSS = 0, 1
_INFO_LENGTH, _INFO_ID, _INFO_ID_SHIFT = 0x7F, 0xFF00, 8


def subtype_name(subtype: int) -> str:
    return KEY_SUBTYPES[subtype] if 0 <= subtype < len(KEY_SUBTYPES) else f"subtype-{subtype}"


@dataclass(frozen=True)
class Event:
    """One record as a reader saw it. kind: key, removal, loss or other.

    key: subtype name, key_id, aux; removal: key_id = the removed object's id; other: subtype
    says type and subtype. watch_id is the id in the record's info. None = not shown by the
    reader (never compared)."""
    kind: str
    subtype: str | None = None
    key_id: int | None = None
    aux: int | None = None
    watch_id: int | None = None

    def agrees(self, other: Event) -> bool:
        if self.kind != other.kind:
            return False
        for name in ("subtype", "key_id", "aux", "watch_id"):
            a, b = getattr(self, name), getattr(other, name)
            if a is not None and b is not None and a != b:
                return False
        return True

    def __str__(self) -> str:
        out = self.kind if self.subtype is None else f"{self.kind}/{self.subtype}"
        for name, label in (("key_id", "key"), ("aux", "aux"), ("watch_id", "watch")):
            v = getattr(self, name)
            if v is not None:
                out += f" {label}={v}"
        return out


@dataclass(frozen=True)
class Note:
    """A line that is not a record: end (EOF), terminated (SIGTERM), session (joined keyring
    id), read (watch_test's read() size)."""
    what: str
    value: int | None = None


@dataclass
class ClientOutput:
    client: str
    events: list[Event] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)

    @property
    def ended(self) -> str | None:
        """'end' (the queue's EOF), 'terminated' (SIGTERM) or None (output stops without a word)."""
        ends = [n.what for n in self.notes if n.what in ("end", "terminated")]
        return ends[-1] if ends else None


def _format_re(fmt: str) -> re.Pattern:
    """A printf format as an anchored regex: %u/%zd -> decimal, %d -> signed, %0Nx/%0Nzx -> hex,
    %s -> non-space text."""
    conv = {"u": r"(\d+)", "d": r"(-?\d+)", "zd": r"(-?\d+)", "x": r"([0-9a-f]+)",
            "zx": r"([0-9a-f]+)", "s": r"(\S+?)"}
    out, pos = "", 0
    for m in re.finditer(r"%(?:0\d+)?(zd|zx|u|d|x|s)", fmt):
        out += re.escape(fmt[pos:m.start()]) + conv[m.group(1)]
        pos = m.end()
    return re.compile(out + re.escape(fmt[pos:]) + r"$")


_KEYCTL_KEY = [(sub, _format_re(fmt)) for sub, fmt in KEYCTL_KEY_FORMATS.items()]
_KEYCTL_REMOVAL = _format_re(KEYCTL_REMOVAL_FORMAT)
_KEYCTL_SESSION = _format_re(KEYCTL_SESSION_FORMAT)
_WT = {k: _format_re(v) for k, v in WATCH_TEST_FORMATS.items()}


def parse_keyctl_line(line: str, client: str = KEYCTL_WATCH) -> Event | Note | None:
    """One line of keyctl watch's stdout or of watch_session's notify/gc log (None: blank).
    A line keyctl_watch.c does not print raises ValueError."""
    line = line.rstrip("\r\n")
    if not line.strip():
        return None
    for sub, rx in _KEYCTL_KEY:
        m = rx.match(line)
        if m:
            aux = int(m.group(2)) if rx.groups == 2 else None
            return Event(KEY, sub, int(m.group(1)), aux)
    m = _KEYCTL_REMOVAL.match(line)
    if m:
        return Event(REMOVAL, key_id=int(m.group(1)))
    if line == KEYCTL_LOSS_LINE:
        return Event(LOSS)
    if line == KEYCTL_END_LINE:
        return Note("end")
    if line == KEYCTL_TERMINATED_LINE:
        return Note("terminated")
    m = _KEYCTL_SESSION.match(line)
    if m:
        return Note("session", int(m.group(1)))
    raise ValueError(f"{client}: {line!r} is not a line keyutils' keyctl_watch.c prints")


def parse_keyctl(text: str, client: str = KEYCTL_WATCH) -> ClientOutput:
    """Everything `keyctl watch KEY` printed, or a watch_session log (notify and gc in one file)."""
    out = ClientOutput(client)
    for n, line in enumerate(text.splitlines(), 1):
        try:
            got = parse_keyctl_line(line, client)
        except ValueError as e:
            raise ValueError(f"line {n}: {e}") from None
        if isinstance(got, Event):
            out.events.append(got)
        elif isinstance(got, Note):
            out.notes.append(got)
    return out


def parse_watch_test(text: str, client: str = WATCH_TEST) -> ClientOutput:
    """The stdout of the kernel's samples/watch_queue/watch_test: each record is a NOTIFY header
    line (type, subtype, info: the watch id is in info) and a line for its body."""
    out = ClientOutput(client)
    header: tuple[int, int, int] | None = None  # (type, subtype, info) awaiting its body line

    def other(h):
        ty, sy, info = h
        return Event(OTHER, f"type-{ty}.{sy}", watch_id=(info & _INFO_ID) >> _INFO_ID_SHIFT)

    for n, line in enumerate(text.splitlines(), 1):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue

        def bad(why):
            return ValueError(f"{client}: line {n}: {line!r} {why}")

        m = _WT["header"].match(line)
        if m:
            if header is not None:  # a header whose body line never came
                out.events.append(other(header))
            header = (int(m.group(2), 16), int(m.group(3), 16), int(m.group(4), 16))
            continue
        m = _WT["read"].match(line)
        if m or line == WATCH_TEST_FORMATS["end"]:
            if header is not None:
                out.events.append(other(header))
                header = None
            out.notes.append(Note("read", int(m.group(1))) if m else Note("end"))
            continue
        if header is None:
            raise bad("is not a line watch_test.c prints, or lacks its NOTIFY header")
        ty, sy, info = header
        wid = (info & _INFO_ID) >> _INFO_ID_SHIFT
        m = _WT["key"].match(line)
        if m:
            subtype = int(m.group(2))
            if ty != _TYPE_KEY or subtype != sy:
                raise bad(f"does not match its header ty={ty:x} sy={sy:x}")
            if m.group(3) not in (subtype_name(subtype), "(null)"):
                raise bad(f"names subtype {subtype} {m.group(3)!r}")
            out.events.append(Event(KEY, subtype_name(subtype), int(m.group(1), 16),
                                    int(m.group(4)), wid))
        elif _WT["removal"].match(line):
            printed = int(_WT["removal"].match(line).group(1), 16)
            if (ty, sy) != (_TYPE_META, _META_REMOVAL) or printed != wid:
                raise bad(f"does not match its header ty={ty:x} sy={sy:x} i={info:x}")
            out.events.append(Event(REMOVAL, watch_id=wid))  # watch_test does not print the id
        elif line == WATCH_TEST_FORMATS["loss"]:
            if (ty, sy) != (_TYPE_META, _META_LOSS):
                raise bad(f"does not match its header ty={ty:x} sy={sy:x}")
            out.events.append(Event(LOSS, watch_id=wid))
        elif line in (WATCH_TEST_FORMATS["other meta"], WATCH_TEST_FORMATS["other type"]):
            out.events.append(other(header))
        else:
            raise bad("is not a line watch_test.c prints")
        header = None
    if header is not None:
        out.events.append(other(header))
    return out


def from_record(r) -> Event:
    """wqh's reading of one record (a harness.guest.uapi.Record, or anything with type, subtype,
    info and payload)."""
    length = r.info & _INFO_LENGTH
    wid = (r.info & _INFO_ID) >> _INFO_ID_SHIFT
    if r.type == _TYPE_KEY and length == 16 and len(r.payload) >= 8:
        key_id, aux = struct.unpack_from("<II", r.payload, 0)
        return Event(KEY, subtype_name(r.subtype), key_id, aux, wid)
    if r.type == _TYPE_META and r.subtype == _META_REMOVAL:
        obj = struct.unpack_from("<Q", r.payload, 0)[0] if length >= 16 and len(r.payload) >= 8 else None
        return Event(REMOVAL, key_id=obj, watch_id=wid)
    if r.type == _TYPE_META and r.subtype == _META_LOSS:
        return Event(LOSS, watch_id=wid)
    return Event(OTHER, f"type-{r.type}.{r.subtype}", watch_id=wid)


def from_records(records) -> list[Event]:
    return [from_record(r) for r in records]


def visible(client: str, events: list[Event]) -> list[Event]:
    """The part of wqh's reading a client prints at all: keyctl says nothing for other record
    types nor for key records of another length (both 'other' here); watch_test prints them."""
    if client.startswith("keyctl"):
        return [e for e in events if e.kind != OTHER]
    return list(events)


@dataclass(frozen=True)
class Disagreement:
    client: str
    operation: str
    client_reading: Event | None  # None: the client printed nothing where wqh read an event
    wqh_reading: Event | None  # None: the client printed an event wqh did not read
    position: int  # 1-based, in wqh's reading (or the client's, for an extra event)

    def __str__(self) -> str:
        c = f"[{self.client_reading}]" if self.client_reading else "nothing"
        w = f"[{self.wqh_reading}]" if self.wqh_reading else "nothing"
        return (f"{self.client} disagrees with wqh on {self.operation!r} (event {self.position}): "
                f"{self.client} read {c}, wqh read {w}")


def _lcs(a: list[Event], b: list[Event]) -> list[list[int]]:
    n, m = len(a), len(b)
    t = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            t[i][j] = t[i + 1][j + 1] + 1 if a[i].agrees(b[j]) else max(t[i + 1][j], t[i][j + 1])
    return t


def compare(client: str, operation: str, client_events: list[Event],
            wqh_events: list[Event]) -> list[Disagreement]:
    """Where the client's reading of one operation differs from wqh's, in order.

    The two sequences are aligned on events that agree (fields one side does not show are not
    compared); between two aligned events, the client's and wqh's unaligned events are paired
    as one differing reading each, and what is left over is a missing or an extra event."""
    a, b = list(client_events), list(wqh_events)
    t = _lcs(a, b)
    out: list[Disagreement] = []
    gap_a: list[int] = []
    gap_b: list[int] = []

    def flush():
        for k in range(max(len(gap_a), len(gap_b))):
            ca = a[gap_a[k]] if k < len(gap_a) else None
            wb = b[gap_b[k]] if k < len(gap_b) else None
            pos = gap_b[k] + 1 if k < len(gap_b) else gap_a[k] + 1
            out.append(Disagreement(client, operation, ca, wb, pos))
        gap_a.clear()
        gap_b.clear()

    i = j = 0
    while i < len(a) and j < len(b):
        if a[i].agrees(b[j]) and t[i][j] == t[i + 1][j + 1] + 1:
            flush()
            i += 1
            j += 1
        elif t[i + 1][j] >= t[i][j + 1]:
            gap_a.append(i)
            i += 1
        else:
            gap_b.append(j)
            j += 1
    gap_a.extend(range(i, len(a)))
    gap_b.extend(range(j, len(b)))
    flush()
    return out


__all__ = ["ClientOutput", "Disagreement", "Event", "KEYCTL_KEY_FORMATS", "KEYCTL_WATCH",
           "KEYCTL_WATCH_SESSION", "KEY_SUBTYPES", "Note", "WATCH_TEST", "WATCH_TEST_FORMATS",
           "compare", "from_record", "from_records", "parse_keyctl", "parse_keyctl_line",
           "parse_watch_test", "subtype_name", "visible"]
