"""A pure-Python model of key notifications delivered through watch queues (Linux 6.1.192).

Given the key operations, the watches, the filter and the size of each queue, it predicts each
operation's errno and the exact records read() returns, loss records included. The rules are
those of watch_queue.md §1 and §1.3-§1.4 (kernel/watch_queue.c, fs/pipe.c, security/keys/):

* a queue holds 32 * ceil(n/32) records after SET_SIZE(n); before SET_SIZE every post is lost
  without trace;
* a post that finds the queue full is dropped and flags the last queued record; reading a flagged
  record makes the next read step emit one 8-byte META/LOSS record;
* read() copies whole records only (ENOBUFS if the first does not fit, else a short read), and
  a pending LOSS is emitted first in the next read() when it was the last record in the ring;
* key records go through the queue's filter, removal and loss records never do;
* keys are destroyed only by invalidation (the harness keeps every key linked from an anchor
  keyring), after which every queue watching them gets a removal record.

Keys are named by their serial numbers; queues by any hashable name.
"""

from __future__ import annotations

import errno
import random
from dataclasses import dataclass, field

from harness.guest.uapi import (
    LOSS_RECORD, NOTIFY_KEY_CLEARED, NOTIFY_KEY_INVALIDATED, NOTIFY_KEY_LINKED,
    NOTIFY_KEY_REVOKED, NOTIFY_KEY_SETATTR, NOTIFY_KEY_UNLINKED, NOTIFY_KEY_UPDATED,
    WATCH_INFO_ID, WATCH_INFO_LENGTH, WATCH_TYPE__NR, WATCH_TYPE_KEY_NOTIFY, Record, TypeFilter,
    key_record, removal_record)

NOTES_PER_PAGE = 32
MAX_NOTES = 512
MAX_FILTERS = 16


class ModelError(OSError):
    """The errno the kernel is predicted to fail an operation with."""

    def __init__(self, err: int):
        super().__init__(err, errno.errorcode.get(err, str(err)))


@dataclass
class Key:
    serial: int
    keyring: bool = False
    revoked: bool = False
    destroyed: bool = False
    members: set[int] = field(default_factory=set)


@dataclass
class Queue:
    name: object
    notes: int = 0  # capacity in records; 0 until SET_SIZE
    ring: list[list] = field(default_factory=list)  # [record, loss flag]
    note_loss: bool = False
    filter: list[TypeFilter] | None = None
    watches: dict[int, int] = field(default_factory=dict)  # key serial -> watch id

    def post(self, rec: Record) -> None:
        if len(self.ring) >= self.notes:
            if self.ring:  # unsized queue: the flag lands on a dead slot and is lost too
                self.ring[-1][1] = True
            return
        self.ring.append([rec, False])

    def passes(self, rec: Record) -> bool:
        if self.filter is None:
            return True
        if rec.type not in {f.type for f in self.filter}:
            return False
        return any(f.type == rec.type and f.subtypes >> rec.subtype & 1
                   and rec.info & f.info_mask == f.info_filter for f in self.filter)

    def read(self, size: int) -> list[Record]:
        """One read(2) of size bytes on a non-blocking read end whose write end is open."""
        if size == 0:
            return []
        out: list[Record] = []
        left = size
        while True:
            if self.note_loss:
                if left < LOSS_RECORD.length:
                    if not out:
                        raise ModelError(errno.ENOBUFS)
                    break
                out.append(LOSS_RECORD)
                left -= LOSS_RECORD.length
                self.note_loss = False
            if self.ring:
                rec, lost = self.ring[0]
                if rec.length > left:
                    if not out:
                        raise ModelError(errno.ENOBUFS)
                    break
                out.append(rec)
                left -= rec.length
                self.ring.pop(0)
                if lost:
                    self.note_loss = True
                if left == 0:
                    break
                if self.ring:
                    continue
            if out:
                break
            raise ModelError(errno.EAGAIN)
        return out

    def drain(self, size: int = 16384) -> list[Record]:
        """Read until EAGAIN, as uapi.drain() does."""
        out: list[Record] = []
        while True:
            try:
                out += self.read(size)
            except ModelError as e:
                if e.errno == errno.EAGAIN:
                    return out
                raise


class Model:
    def __init__(self):
        self.keys: dict[int, Key] = {}
        self.queues: dict[object, Queue] = {}

    # --- setup ------------------------------------------------------------------------

    def add_key(self, serial: int, keyring: bool = False, members=()) -> Key:
        k = self.keys[serial] = Key(serial, keyring, members=set(members))
        return k

    def add_queue(self, name) -> Queue:
        q = self.queues[name] = Queue(name)
        return q

    # --- helpers ----------------------------------------------------------------------

    def _lookup(self, serial: int) -> Key:
        """lookup_user_key() without KEY_LOOKUP_PARTIAL, or with it plus key_validate()."""
        k = self.keys.get(serial)
        if k is None or k.destroyed:
            raise ModelError(errno.ENOKEY)
        if k.revoked:
            raise ModelError(errno.EKEYREVOKED)
        return k

    def _ring(self, serial: int) -> Key:
        k = self._lookup(serial)
        if not k.keyring:
            raise ModelError(errno.ENOTDIR)
        return k

    def _notify(self, k: Key, subtype: int, aux: int = 0) -> None:
        for q in self.queues.values():
            wid = q.watches.get(k.serial)
            if wid is None:
                continue
            rec = key_record(subtype, wid, k.serial, aux)
            if q.passes(rec):
                q.post(rec)

    # --- queue operations -------------------------------------------------------------

    def set_size(self, qname, n: int) -> None:
        q = self.queues[qname]
        if q.notes:
            raise ModelError(errno.EBUSY)
        n &= 0xFFFFFFFF  # the ioctl's unsigned long becomes an unsigned int
        if not 1 <= n <= MAX_NOTES:
            raise ModelError(errno.EINVAL)
        q.notes = -(-n // NOTES_PER_PAGE) * NOTES_PER_PAGE

    def set_filter(self, qname, filters: list[TypeFilter] | None, nr_filters: int | None = None,
                   reserved: int = 0) -> None:
        q = self.queues[qname]
        if filters is None:
            q.filter = None
            return
        nr = len(filters) if nr_filters is None else nr_filters
        if nr == 0 or nr > MAX_FILTERS or reserved:
            raise ModelError(errno.EINVAL)
        for f in filters[:nr]:
            if f.info_filter & ~f.info_mask & 0xFFFFFFFF or f.info_mask & WATCH_INFO_LENGTH:
                raise ModelError(errno.EINVAL)
        q.filter = [f for f in filters[:nr] if f.type < WATCH_TYPE__NR]

    def read(self, qname, size: int = 16384) -> list[Record]:
        return self.queues[qname].read(size)

    def drain(self, qname) -> list[Record]:
        return self.queues[qname].drain()

    # --- KEYCTL_WATCH_KEY -------------------------------------------------------------

    def watch(self, qname, serial: int, watch_id: int) -> None:
        if not -1 <= watch_id <= 255:
            raise ModelError(errno.EINVAL)
        k = self._lookup(serial)
        q = self.queues[qname]
        if watch_id == -1:
            if serial not in q.watches:
                raise ModelError(errno.EBADSLT)
            q.post(removal_record(q.watches.pop(serial), serial))
            return
        if serial in q.watches:
            raise ModelError(errno.EBUSY)
        q.watches[k.serial] = watch_id

    def unwatch(self, qname, serial: int) -> None:
        self.watch(qname, serial, -1)

    # --- key operations ---------------------------------------------------------------

    def update(self, serial: int) -> None:
        k = self._lookup(serial)
        if k.keyring:
            raise ModelError(errno.EOPNOTSUPP)
        self._notify(k, NOTIFY_KEY_UPDATED)

    def link(self, ring: int, serial: int) -> None:
        r = self._ring(ring)
        k = self._lookup(serial)
        if k.keyring:
            raise NotImplementedError("the model does not link keyrings into keyrings")
        r.members.add(serial)  # an existing link is replaced, and notified again
        self._notify(r, NOTIFY_KEY_LINKED, serial)

    def unlink(self, ring: int, serial: int) -> None:
        r = self._ring(ring)
        k = self.keys.get(serial)
        if k is None or k.destroyed:  # the key needs no permission, but must exist
            raise ModelError(errno.ENOKEY)
        if serial not in r.members:
            raise ModelError(errno.ENOENT)
        r.members.discard(serial)
        self._notify(r, NOTIFY_KEY_UNLINKED, serial)

    def clear(self, ring: int) -> None:
        r = self._ring(ring)
        r.members.clear()
        self._notify(r, NOTIFY_KEY_CLEARED)  # also when already empty

    def revoke(self, serial: int) -> None:
        k = self._lookup(serial)
        k.revoked = True
        self._notify(k, NOTIFY_KEY_REVOKED)
        k.members.clear()  # a revoked keyring drops its links, silently

    def setperm(self, serial: int) -> None:
        self._notify(self._lookup(serial), NOTIFY_KEY_SETATTR)

    def invalidate(self, serial: int) -> None:
        """INVALIDATED now, then (the harness waits for the gc) a removal for every watch."""
        k = self._lookup(serial)
        self._notify(k, NOTIFY_KEY_INVALIDATED)
        k.destroyed = True
        k.members.clear()
        for other in self.keys.values():
            other.members.discard(serial)  # keyring_gc: no UNLINKED
        for q in self.queues.values():
            wid = q.watches.pop(serial, None)
            if wid is not None:
                q.post(removal_record(wid, serial))


# --- random operation sequences ---------------------------------------------------------

KEY_TYPE = WATCH_TYPE_KEY_NOTIFY
FILTERS: dict[str, list[TypeFilter] | None] = {
    "none": None,
    "key-all": [TypeFilter(KEY_TYPE)],
    "updated-only": [TypeFilter(KEY_TYPE, 1 << NOTIFY_KEY_UPDATED)],
    "ring-events": [TypeFilter(KEY_TYPE, 1 << NOTIFY_KEY_LINKED | 1 << NOTIFY_KEY_UNLINKED
                               | 1 << NOTIFY_KEY_CLEARED)],
    "no-updates": [TypeFilter(KEY_TYPE, 0xFF & ~(1 << NOTIFY_KEY_UPDATED))],
    "block-all": [TypeFilter(1000)],
    "invalid": [TypeFilter(KEY_TYPE, info_mask=1)],  # a length bit in the mask: EINVAL
}
WATCH_IDS = (0, 1, 7, 255)


def filter_spec(name: str) -> list[TypeFilter] | None:
    """A named filter: FILTERS, or 'id-N' for watch id N only."""
    if name.startswith("id-"):
        wid = int(name[3:])
        return [TypeFilter(KEY_TYPE, info_filter=wid << 8, info_mask=WATCH_INFO_ID)]
    return FILTERS[name]


@dataclass(frozen=True)
class Plan:
    """What generate() returns: symbolic keys, the main queue's SET_SIZE, the operations."""
    seed: int
    rings: tuple[str, ...]
    users: tuple[str, ...]
    ops: tuple[tuple, ...]


def generate(seed: int, n_ops: int = 60) -> Plan:
    """A reproducible operation sequence on keyrings R0, R1 and user keys k0..k3 for queue 'main'.

    Ops (symbolic key names): ("watch", key, id), ("unwatch", key), ("update", key),
    ("burst", key, n), ("link", ring, key), ("unlink", ring, key), ("clear", ring),
    ("revoke", key), ("invalidate", key), ("setperm", key), ("filter", name), ("read", size),
    ("set_size", n). It starts with a few watches and maybe posts before SET_SIZE (those vanish).
    The sequence is steered by a model of its own, so posts mostly hit watched keys.
    """
    rng = random.Random(seed)
    rings, users = ("R0", "R1"), ("k0", "k1", "k2", "k3")
    serial = {n: i + 1 for i, n in enumerate(rings + users)}
    model = Model()
    for n in rings + users:
        model.add_key(serial[n], keyring=n in rings)
    main = model.add_queue("main")
    gone: set[str] = set()  # invalidated: never named again
    ops: list[tuple] = []

    def alive(names):
        return [n for n in names if n not in gone]

    def watched(names):
        w = [n for n in alive(names) if serial[n] in main.watches]
        return w if w and rng.random() < 0.85 else alive(names)

    def add(op):
        ops.append(op)
        apply(model, "main", op, serial)

    def post_op(kind):
        rs, us = alive(rings), alive(users)
        if kind == "update" and us:
            return ("update", rng.choice(watched(users)))
        if kind == "burst" and us:
            return ("burst", rng.choice(watched(users)), rng.randrange(8, 40))
        if kind == "link" and rs and us:
            return ("link", rng.choice(watched(rings)), rng.choice(us))
        if kind == "unlink" and rs and us:
            return ("unlink", rng.choice(watched(rings)), rng.choice(us))
        if kind == "clear" and rs:
            return ("clear", rng.choice(watched(rings)))
        if kind == "setperm" and (rs or us):
            return ("setperm", rng.choice(watched(rings + users)))
        return None

    for _ in range(rng.randint(2, 4)):
        add(("watch", rng.choice(rings + users), rng.choice(WATCH_IDS)))
    for _ in range(rng.randrange(0, 3)):  # vanish: the queue has no notes yet
        add(post_op(rng.choice(("update", "link", "setperm"))))
    add(("set_size", rng.choice((1, 2, 32, 33, 40))))

    weights = {"watch": 8, "unwatch": 3, "update": 14, "burst": 5, "link": 10, "unlink": 6,
               "clear": 3, "revoke": 1, "invalidate": 2, "setperm": 5, "filter": 3, "read": 6}
    kinds = list(weights)
    while len(ops) < n_ops:
        kind = rng.choices(kinds, [weights[k] for k in kinds])[0]
        keys = alive(rings + users)
        op = None
        if kind == "watch" and keys:
            op = ("watch", rng.choice(keys), rng.choice(WATCH_IDS))
        elif kind == "unwatch" and keys:
            op = ("unwatch", rng.choice(watched(rings + users)))
        elif kind in ("revoke", "invalidate") and keys:
            op = (kind, rng.choice(keys))
            if kind == "invalidate":
                gone.add(op[1])
        elif kind == "filter":
            op = ("filter", rng.choice(list(FILTERS) + ["none", "none", f"id-{rng.choice(WATCH_IDS)}"]))
        elif kind == "read":
            op = ("read", rng.choice((8, 24, 40, 100, 512, 16384, 16384)))
        else:
            op = post_op(kind)
        if op is not None:
            add(op)
    if rng.random() < 0.3:
        add(("set_size", rng.choice((1, 0, 600))))  # EBUSY whatever the value
    return Plan(seed, rings, users, tuple(ops))


def apply(model: Model, qname, op: tuple, serial: dict[str, int]):
    """Apply one op to the model: (errno or 0, records for a read op or None)."""
    kind, *args = op
    try:
        if kind == "read":
            return 0, model.read(qname, args[0])
        if kind == "set_size":
            model.set_size(qname, args[0])
        elif kind == "filter":
            model.set_filter(qname, filter_spec(args[0]))
        elif kind == "watch":
            model.watch(qname, serial[args[0]], args[1])
        elif kind == "unwatch":
            model.unwatch(qname, serial[args[0]])
        elif kind == "burst":
            for _ in range(args[1]):
                model.update(serial[args[0]])
        elif kind in ("link", "unlink"):
            getattr(model, kind)(serial[args[0]], serial[args[1]])
        else:
            getattr(model, kind)(serial[args[0]])
    except ModelError as e:
        return e.errno, None
    return 0, None


def first_difference(expected: list[Record], got: list[Record]) -> str | None:
    """None if equal, else where the two record lists part, with a little context."""
    if expected == got:
        return None
    i = next((i for i, (e, g) in enumerate(zip(expected, got)) if e != g), min(len(expected), len(got)))
    exp = str(expected[i]) if i < len(expected) else "(nothing more)"
    act = str(got[i]) if i < len(got) else "(nothing more)"
    before = ", ".join(str(r) for r in expected[max(0, i - 2):i]) or "(start)"
    return (f"record #{i}: expected {exp}, got {act} "
            f"(expected {len(expected)} records, got {len(got)}; preceded by {before})")
