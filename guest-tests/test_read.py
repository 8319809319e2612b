"""read() and poll() on a notification pipe: record layout, whole records, EOF (watch_queue.md §1.3)."""

import errno
import os
import select
import struct

import pytest

from harness.guest import uapi

UPDATED = uapi.NOTIFY_KEY_UPDATED
POLLIN = select.POLLIN | select.POLLRDNORM  # what pipe_poll sets for a non-empty ring


def _errno(fn, *args):
    with pytest.raises(OSError) as e:
        fn(*args)
    return e.value.errno


ALL_EVENTS = select.POLLIN | select.POLLRDNORM | select.POLLPRI | select.POLLOUT | select.POLLWRNORM


def _revents(fd, events=ALL_EVENTS):
    """poll() with a zero timeout; the kernel masks revents with what was asked for."""
    p = select.poll()
    p.register(fd, events)
    got = p.poll(0)
    return got[0][1] if got else 0


@pytest.fixture
def watched(new_queue, new_key):
    """A sized queue and a key it watches with id 7."""
    q = new_queue(size=32)
    key = new_key()
    uapi.watch_key(key, q.r, 7)
    return q, key


def test_record_bytes_are_header_then_key_id_and_aux(watched):
    q, key = watched
    uapi.key_update(key, b"v1")
    buf = os.read(q.r, 4096)
    # word0: type KEY_NOTIFY (1) in bits 0-23, subtype UPDATED (1) in bits 24-31; info 16 | 7<<8.
    assert buf == struct.pack("<IIII", 0x01000001, 0x710, key, 0)


def test_several_records_per_read_in_posting_order(new_queue, new_key):
    q = new_queue(size=32)
    ring = new_key(ktype="keyring")
    key = new_key()
    other = new_key()
    uapi.watch_key(key, q.r, 1)
    uapi.watch_key(ring, q.r, 2)
    uapi.key_update(key, b"v1")
    uapi.link(other, ring)
    uapi.setperm(key, uapi.KEY_POS_ALL | uapi.KEY_USR_ALL)
    uapi.revoke(key)
    buf = os.read(q.r, 4096)
    assert len(buf) == 64
    assert uapi.decode(buf) == [
        uapi.key_record(UPDATED, 1, key),
        uapi.key_record(uapi.NOTIFY_KEY_LINKED, 2, ring, other),
        uapi.key_record(uapi.NOTIFY_KEY_SETATTR, 1, key),
        uapi.key_record(uapi.NOTIFY_KEY_REVOKED, 1, key),
    ]


def test_a_record_is_never_split(watched):
    q, key = watched
    for _ in range(3):
        uapi.key_update(key, b"x")
    assert _errno(os.read, q.r, 8) == errno.ENOBUFS
    assert _errno(os.read, q.r, 15) == errno.ENOBUFS
    assert uapi.fionread(q.r) == 48  # nothing consumed by the failed reads
    assert len(os.read(q.r, 24)) == 16  # short read at a record boundary
    assert len(os.read(q.r, 40)) == 32
    assert _errno(os.read, q.r, 4096) == errno.EAGAIN


def test_read_of_zero_bytes_returns_zero(watched):
    q, key = watched
    assert os.read(q.r, 0) == b""  # empty and non-blocking, still 0 rather than EAGAIN
    uapi.key_update(key, b"x")
    assert os.read(q.r, 0) == b""
    assert uapi.fionread(q.r) == 16


def test_nonblocking_read_of_empty_queue_is_eagain(watched):
    q, _ = watched
    assert _errno(os.read, q.r, 4096) == errno.EAGAIN
    assert _errno(os.read, q.r, 8) == errno.EAGAIN


def test_eof_once_the_write_end_is_closed(watched):
    q, key = watched
    uapi.key_update(key, b"x")
    q.close_write()
    assert uapi.decode(os.read(q.r, 4096)) == [uapi.key_record(UPDATED, 7, key)]
    assert os.read(q.r, 4096) == b""  # EOF, not EAGAIN
    # The queue still takes posts while the read end is open.
    uapi.key_update(key, b"y")
    assert uapi.decode(os.read(q.r, 4096)) == [uapi.key_record(UPDATED, 7, key)]
    assert os.read(q.r, 4096) == b""


def test_poll_reports_pollin_only_while_records_are_queued(watched):
    q, key = watched
    assert _revents(q.r) == 0
    uapi.key_update(key, b"x")
    uapi.key_update(key, b"y")
    assert _revents(q.r) == POLLIN
    os.read(q.r, 16)
    assert _revents(q.r) == POLLIN
    os.read(q.r, 16)
    assert _revents(q.r) == 0


def test_poll_reports_pollhup_without_a_writer(watched):
    q, key = watched
    q.close_write()
    assert _revents(q.r) == select.POLLHUP
    uapi.key_update(key, b"x")
    assert _revents(q.r) == POLLIN | select.POLLHUP


def test_poll_on_the_write_end_reports_pollout_though_writes_fail(new_queue):
    q = new_queue(size=32)
    assert _revents(q.w) == select.POLLOUT | select.POLLWRNORM
    assert _errno(os.write, q.w, b"x") == errno.EXDEV
