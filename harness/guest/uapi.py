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

KEYCTL_UPDATE = 2
KEYCTL_REVOKE = 3
KEYCTL_JOIN_SESSION_KEYRING = 1
KEYCTL_UNLINK = 9
KEYCTL_INVALIDATE = 21
KEYCTL_CAPABILITIES = 31
KEYCTL_WATCH_KEY = 32
KEYCTL_CAPS1_NOTIFICATIONS = 0x04

KEY_SPEC_THREAD_KEYRING = -1
KEY_SPEC_PROCESS_KEYRING = -2
KEY_SPEC_SESSION_KEYRING = -3

SYS_add_key = 248
SYS_keyctl = 250

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


def _check(ret: int) -> int:
    if ret == -1:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return ret


def keyctl(op: int, *args: int) -> int:
    cargs = [ctypes.c_long(a) for a in args]
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


def set_size(fd: int, notes: int) -> None:
    fcntl.ioctl(fd, IOC_WATCH_QUEUE_SET_SIZE, notes)


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


__all__ = [n for n in dir() if n.isupper()] + [
    "Record", "add_key", "decode", "has_notifications", "join_session_keyring", "key_update",
    "keyctl", "notification_pipe", "read_records", "set_size", "watch_key", "errno"]
