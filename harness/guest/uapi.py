"""ctypes binding of the notification-queue and keyring uapi (x86_64).

Values from include/uapi/linux/watch_queue.h and keyctl.h; restated here
because <linux/watch_queue.h> clashes with glibc's <fcntl.h> in C.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import struct
from dataclasses import dataclass

O_NOTIFICATION_PIPE = os.O_EXCL  # 0x80 on x86_64
IOC_WATCH_QUEUE_SET_SIZE = 0x5760  # _IO('W', 0x60): the argument is the note count
IOC_WATCH_QUEUE_SET_FILTER = 0x5761  # _IO('W', 0x61): the argument is a pointer

WATCH_TYPE_META = 0
WATCH_TYPE_KEY_NOTIFY = 1
WATCH_TYPE__NR = 2
WATCH_META_REMOVAL_NOTIFICATION = 0
WATCH_META_LOSS_NOTIFICATION = 1

WATCH_INFO_LENGTH = 0x0000007F
WATCH_INFO_ID = 0x0000FF00
WATCH_INFO_ID__SHIFT = 8
WATCH_INFO_TYPE_INFO = 0xFFFF0000

NOTIFY_KEY_INSTANTIATED = 0
NOTIFY_KEY_UPDATED = 1
NOTIFY_KEY_LINKED = 2
NOTIFY_KEY_UNLINKED = 3
NOTIFY_KEY_CLEARED = 4
NOTIFY_KEY_REVOKED = 5
NOTIFY_KEY_INVALIDATED = 6
NOTIFY_KEY_SETATTR = 7

KEYCTL_GET_KEYRING_ID = 0
KEYCTL_JOIN_SESSION_KEYRING = 1
KEYCTL_UPDATE = 2
KEYCTL_REVOKE = 3
KEYCTL_CHOWN = 4
KEYCTL_SETPERM = 5
KEYCTL_DESCRIBE = 6
KEYCTL_CLEAR = 7
KEYCTL_LINK = 8
KEYCTL_UNLINK = 9
KEYCTL_READ = 11
KEYCTL_SET_TIMEOUT = 15
KEYCTL_INVALIDATE = 21
KEYCTL_RESTRICT_KEYRING = 29
KEYCTL_MOVE = 30
KEYCTL_CAPABILITIES = 31
KEYCTL_WATCH_KEY = 32
KEYCTL_CAPS1_NOTIFICATIONS = 0x04

KEY_SPEC_THREAD_KEYRING = -1
KEY_SPEC_PROCESS_KEYRING = -2
KEY_SPEC_SESSION_KEYRING = -3
KEY_SPEC_USER_KEYRING = -4

# Key permission bits (include/linux/key.h): possessor, user, group, other.
KEY_POS_VIEW = 0x01000000
KEY_POS_ALL = 0x3F000000
KEY_USR_VIEW = 0x00010000
KEY_USR_ALL = 0x003F0000

SYS_ioctl = 16
SYS_add_key = 248
SYS_request_key = 249
SYS_keyctl = 250
SYS_tee = 276
SYS_vmsplice = 278

F_SETPIPE_SZ = 1031
F_GETPIPE_SZ = 1032
FIONREAD = 0x541B

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


def _check(ret: int) -> int:
    if ret == -1:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return ret


def keyctl(op: int, *args) -> int:
    """keyctl(2): ints go as longs, bytes and None as pointers."""
    cargs = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    cargs += [ctypes.c_long(0)] * (4 - len(cargs))
    return _check(_syscall(ctypes.c_long(SYS_keyctl), ctypes.c_long(op), *cargs))


def add_key(ktype: str, desc: str, payload: bytes | None, keyring: int) -> int:
    buf = ctypes.create_string_buffer(payload, len(payload)) if payload is not None else None
    return _check(_syscall(ctypes.c_long(SYS_add_key), ctypes.c_char_p(ktype.encode()),
                           ctypes.c_char_p(desc.encode()), buf,
                           ctypes.c_size_t(len(payload) if payload else 0),
                           ctypes.c_long(keyring)))


def key_update(key: int, payload: bytes) -> None:
    buf = ctypes.create_string_buffer(payload, len(payload))
    _check(_syscall(ctypes.c_long(SYS_keyctl), ctypes.c_long(KEYCTL_UPDATE), ctypes.c_long(key),
                    buf, ctypes.c_size_t(len(payload)), ctypes.c_long(0)))


def watch_key(key: int, fd: int, watch_id: int) -> None:
    keyctl(KEYCTL_WATCH_KEY, key, fd, watch_id)


def unwatch_key(key: int, fd: int) -> None:
    keyctl(KEYCTL_WATCH_KEY, key, fd, -1)


def link(key: int, keyring: int) -> None:
    keyctl(KEYCTL_LINK, key, keyring)


def unlink(key: int, keyring: int) -> None:
    keyctl(KEYCTL_UNLINK, key, keyring)


def move(key: int, from_ring: int, to_ring: int, flags: int = 0) -> None:
    keyctl(KEYCTL_MOVE, key, from_ring, to_ring, flags)


def clear(keyring: int) -> None:
    keyctl(KEYCTL_CLEAR, keyring)


def revoke(key: int) -> None:
    keyctl(KEYCTL_REVOKE, key)


def invalidate(key: int) -> None:
    keyctl(KEYCTL_INVALIDATE, key)


def setperm(key: int, perm: int) -> None:
    keyctl(KEYCTL_SETPERM, key, perm)


def chown(key: int, uid: int, gid: int) -> None:
    keyctl(KEYCTL_CHOWN, key, uid, gid)


def set_timeout(key: int, seconds: int) -> None:
    keyctl(KEYCTL_SET_TIMEOUT, key, seconds)


def restrict_keyring(keyring: int) -> None:
    """No type and no restriction: the keyring refuses every further link."""
    keyctl(KEYCTL_RESTRICT_KEYRING, keyring, None, None)


def read_key(key: int, size: int = 4096) -> bytes:
    buf = ctypes.create_string_buffer(size)
    n = _check(_syscall(ctypes.c_long(SYS_keyctl), ctypes.c_long(KEYCTL_READ), ctypes.c_long(key),
                        buf, ctypes.c_size_t(size), ctypes.c_long(0)))
    return buf.raw[:min(n, size)]


def describe(key: int) -> str:
    buf = ctypes.create_string_buffer(4096)
    n = _check(_syscall(ctypes.c_long(SYS_keyctl), ctypes.c_long(KEYCTL_DESCRIBE), ctypes.c_long(key),
                        buf, ctypes.c_size_t(4096), ctypes.c_long(0)))
    return buf.raw[:max(n - 1, 0)].decode()


def request_key(ktype: str, desc: str, callout: str | None, keyring: int) -> int:
    info = ctypes.c_char_p(callout.encode()) if callout is not None else None
    return _check(_syscall(ctypes.c_long(SYS_request_key), ctypes.c_char_p(ktype.encode()),
                           ctypes.c_char_p(desc.encode()), info, ctypes.c_long(keyring)))


def join_session_keyring(name: str | None = None) -> int:
    arg = ctypes.c_char_p(name.encode()) if name else None
    return _check(_syscall(ctypes.c_long(SYS_keyctl), ctypes.c_long(KEYCTL_JOIN_SESSION_KEYRING),
                           arg, ctypes.c_long(0), ctypes.c_long(0), ctypes.c_long(0)))


def has_notifications() -> bool:
    """KEYCTL_CAPABILITIES says whether key notifications exist in this kernel."""
    buf = ctypes.create_string_buffer(2)
    try:
        _check(_syscall(ctypes.c_long(SYS_keyctl), ctypes.c_long(KEYCTL_CAPABILITIES), buf,
                        ctypes.c_size_t(2), ctypes.c_long(0), ctypes.c_long(0)))
    except OSError:
        return False
    return bool(buf.raw[1] & KEYCTL_CAPS1_NOTIFICATIONS)


def notification_pipe(flags: int = 0) -> tuple[int, int]:
    return os.pipe2(O_NOTIFICATION_PIPE | flags)


def ioctl(fd: int, request: int, arg) -> int:
    """Raw ioctl(2): an int goes as an unsigned long (no 32-bit clipping), a buffer as a pointer."""
    if isinstance(arg, int):
        arg = ctypes.c_ulong(arg & 0xFFFFFFFFFFFFFFFF)
    return _check(_syscall(ctypes.c_long(SYS_ioctl), ctypes.c_long(fd), ctypes.c_ulong(request), arg))


def set_size(fd: int, notes: int) -> None:
    ioctl(fd, IOC_WATCH_QUEUE_SET_SIZE, notes)


@dataclass(frozen=True)
class TypeFilter:
    """struct watch_notification_type_filter (44 bytes)."""
    type: int
    subtypes: int = 0xFFFFFFFF  # subtype_filter[0]: bit n passes subtype n
    info_filter: int = 0
    info_mask: int = 0
    more_subtypes: tuple[int, ...] = (0,) * 7  # subtype_filter[1..7], ignored by 6.1


TYPE_FILTER_SIZE = 44
FILTER_HEADER_SIZE = 8


def pack_filter(filters: list[TypeFilter], nr_filters: int | None = None, reserved: int = 0) -> bytes:
    """struct watch_notification_filter: {nr_filters, __reserved, filters[]}."""
    nr = len(filters) if nr_filters is None else nr_filters
    out = struct.pack("<II", nr, reserved)
    for f in filters:
        out += struct.pack("<III8I", f.type, f.info_filter, f.info_mask, f.subtypes, *f.more_subtypes)
    return out


def set_filter(fd: int, filters: list[TypeFilter] | bytes | None) -> None:
    """IOC_WATCH_QUEUE_SET_FILTER; None removes the filter (NULL pointer)."""
    if filters is None:
        ioctl(fd, IOC_WATCH_QUEUE_SET_FILTER, 0)
        return
    raw = filters if isinstance(filters, bytes) else pack_filter(filters)
    buf = ctypes.create_string_buffer(raw, len(raw))
    ioctl(fd, IOC_WATCH_QUEUE_SET_FILTER, buf)


def fionread(fd: int) -> int:
    return struct.unpack("<i", fcntl.ioctl(fd, FIONREAD, b"\0" * 4))[0]


def pipe_size(fd: int) -> int:
    return fcntl.fcntl(fd, F_GETPIPE_SZ)


def vmsplice(fd: int, data: bytes, flags: int = 0) -> int:
    buf = ctypes.create_string_buffer(data, len(data))
    iov = (ctypes.c_void_p * 2)(ctypes.cast(buf, ctypes.c_void_p), len(data))  # struct iovec
    return _check(_syscall(ctypes.c_long(SYS_vmsplice), ctypes.c_long(fd), iov,
                           ctypes.c_ulong(1), ctypes.c_uint(flags)))


def tee(fd_in: int, fd_out: int, length: int, flags: int = 0) -> int:
    return _check(_syscall(ctypes.c_long(SYS_tee), ctypes.c_long(fd_in), ctypes.c_long(fd_out),
                           ctypes.c_size_t(length), ctypes.c_uint(flags)))


@dataclass(frozen=True)
class Record:
    type: int
    subtype: int
    info: int
    payload: bytes

    @property
    def length(self) -> int:
        return self.info & WATCH_INFO_LENGTH

    @property
    def watch_id(self) -> int:
        return (self.info & WATCH_INFO_ID) >> WATCH_INFO_ID__SHIFT

    @property
    def key_id(self) -> int:
        return struct.unpack_from("<I", self.payload, 0)[0]

    @property
    def aux(self) -> int:
        return struct.unpack_from("<I", self.payload, 4)[0]

    @property
    def removal_id(self) -> int:
        """The 64-bit object id of a removal record (a key serial for keys)."""
        return struct.unpack_from("<Q", self.payload, 0)[0]

    def __str__(self) -> str:
        return describe_record(self)


KEY_SUBTYPES = ("INSTANTIATED", "UPDATED", "LINKED", "UNLINKED", "CLEARED", "REVOKED",
                "INVALIDATED", "SETATTR")


def key_record(subtype: int, watch_id: int, key_id: int, aux: int = 0) -> Record:
    """The record a key notification should produce (struct key_notification)."""
    return Record(WATCH_TYPE_KEY_NOTIFY, subtype, 16 | watch_id << WATCH_INFO_ID__SHIFT,
                  struct.pack("<II", key_id, aux & 0xFFFFFFFF))


def removal_record(watch_id: int, obj_id: int) -> Record:
    """struct watch_notification_removal: 16 bytes, id = key serial."""
    return Record(WATCH_TYPE_META, WATCH_META_REMOVAL_NOTIFICATION,
                  16 | watch_id << WATCH_INFO_ID__SHIFT, struct.pack("<Q", obj_id))


LOSS_RECORD = Record(WATCH_TYPE_META, WATCH_META_LOSS_NOTIFICATION, 8, b"")


def describe_record(r: Record) -> str:
    if r.type == WATCH_TYPE_KEY_NOTIFY and r.length == 16:
        name = KEY_SUBTYPES[r.subtype] if r.subtype < len(KEY_SUBTYPES) else str(r.subtype)
        return f"KEY/{name} id={r.watch_id} key={r.key_id} aux={r.aux:#x}"
    if r.type == WATCH_TYPE_META and r.subtype == WATCH_META_REMOVAL_NOTIFICATION and r.length == 16:
        return f"META/REMOVAL id={r.watch_id} obj={r.removal_id}"
    if r.type == WATCH_TYPE_META and r.subtype == WATCH_META_LOSS_NOTIFICATION:
        return f"META/LOSS info={r.info:#x}"
    return f"type={r.type} subtype={r.subtype} info={r.info:#x} payload={r.payload.hex()}"


def decode(buf: bytes) -> list[Record]:
    """Split a read() buffer into records using each header's length."""
    out = []
    pos = 0
    while pos + 8 <= len(buf):
        word0, info = struct.unpack_from("<II", buf, pos)
        length = info & WATCH_INFO_LENGTH
        if length < 8 or pos + length > len(buf):
            raise ValueError(f"bad record length {length} at offset {pos} of {len(buf)}")
        out.append(Record(word0 & 0xFFFFFF, word0 >> 24, info, bytes(buf[pos + 8:pos + length])))
        pos += length
    if pos != len(buf):
        raise ValueError(f"{len(buf) - pos} trailing bytes after records")
    return out


def read_records(fd: int, size: int = 4096) -> list[Record]:
    try:
        return decode(os.read(fd, size))
    except BlockingIOError:
        return []


def drain(fd: int, size: int = 16384, max_reads: int = 64) -> list[Record]:
    """Every record a non-blocking read end holds, a pending LOSS included (read until EAGAIN)."""
    out: list[Record] = []
    for _ in range(max_reads):
        try:
            buf = os.read(fd, size)
        except BlockingIOError:
            return out
        if not buf:  # EOF: no writer left
            return out
        out += decode(buf)
    raise AssertionError(f"queue still not empty after {max_reads} reads of {size} bytes")


def wait_records(fd: int, done, timeout: float = 5.0) -> list[Record]:
    """Collect records with poll() until done(records) or the timeout; returns what arrived.

    For asynchronous posts (key garbage collection). fd must be non-blocking.
    """
    import select
    import time

    got: list[Record] = []
    deadline = time.monotonic() + timeout
    p = select.poll()
    p.register(fd, select.POLLIN)
    while not done(got):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        if p.poll(int(left * 1000) + 1):
            got += drain(fd)
    return got


__all__ = [n for n in dir() if n.isupper()] + [
    "Record", "TypeFilter", "add_key", "chown", "clear", "decode", "describe", "describe_record",
    "drain", "fionread", "has_notifications", "invalidate", "ioctl", "join_session_keyring",
    "key_record", "key_update", "keyctl", "link", "move", "notification_pipe", "pack_filter",
    "pipe_size", "read_key", "read_records", "removal_record", "request_key", "restrict_keyring",
    "revoke", "set_filter", "set_size", "set_timeout", "setperm", "tee", "unlink", "unwatch_key",
    "vmsplice", "wait_records", "watch_key", "errno"]
