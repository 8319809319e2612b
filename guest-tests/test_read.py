"""read() and poll() on a notification pipe: record layout, whole records, EOF (watch_queue.md §1.3)."""

import errno
import fcntl
import os
import select
import signal
import struct
import threading
import time

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


def _blocked_in_read(tid, fd):
    """Whether thread TID sleeps in read(FD): /proc/PID/task/TID/syscall names the call a
    blocked task is in (x86_64 read is 0), "running" otherwise."""
    try:
        with open(f"/proc/self/task/{tid}/syscall") as fh:
            fields = fh.read().split()
    except OSError:
        return False
    return len(fields) > 1 and fields[0] == "0" and int(fields[1], 16) == fd


def test_a_post_wakes_a_reader_blocked_in_read(new_queue, new_key):
    q = new_queue(size=32, flags=0)
    key = new_key()
    uapi.watch_key(key, q.r, 3)
    reader = threading.get_native_id()

    def post_once_the_reader_sleeps():
        # Post only once the reader is asleep in read(): a post before it would be read at once
        # and prove nothing about the wake-up. After 5 s post anyway (the test then still says
        # whether the record arrives).
        deadline = time.monotonic() + 5.0
        while not _blocked_in_read(reader, q.r) and time.monotonic() < deadline:
            time.sleep(0.01)
        uapi.key_update(key, b"x")

    def expired(signum, frame):
        raise TimeoutError("a reader blocked in read() was not woken by a post")

    poster = threading.Thread(target=post_once_the_reader_sleeps, daemon=True)
    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, 15)
    try:
        poster.start()
        buf = os.read(q.r, 4096)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        poster.join(10.0)
    assert uapi.decode(buf) == [uapi.key_record(UPDATED, 3, key)]


def test_a_post_sends_sigio_to_an_async_reader(watched):
    q, key = watched
    got = []
    # A handler, not a blocked signal: SIGIO goes to the process, and any thread of it that
    # does not block it (default action: terminate) may take it.
    old = signal.signal(signal.SIGIO, lambda signum, frame: got.append(signum))
    flags = fcntl.fcntl(q.r, fcntl.F_GETFL)
    try:
        fcntl.fcntl(q.r, fcntl.F_SETOWN, os.getpid())
        fcntl.fcntl(q.r, fcntl.F_SETFL, flags | os.O_ASYNC)
        time.sleep(0.05)
        assert got == []  # nothing before the post
        uapi.key_update(key, b"x")
        deadline = time.monotonic() + 5.0
        while not got and time.monotonic() < deadline:
            time.sleep(0.01)  # the handler runs in the main thread, between bytecodes
        assert got == [signal.SIGIO]
        assert uapi.decode(os.read(q.r, 4096)) == [uapi.key_record(UPDATED, 7, key)]
    finally:
        fcntl.fcntl(q.r, fcntl.F_SETFL, flags)
        signal.signal(signal.SIGIO, old)
