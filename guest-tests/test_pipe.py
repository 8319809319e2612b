"""Notification pipes: creation flags, sizing, and every pipe operation they refuse.

Values from watch_queue.md §1, §1.1 and §1.2 (6.1.192).
"""

import errno
import fcntl
import os
import signal

import pytest

from harness.guest import uapi

PAGE = 4096


def _errno(fn, *args):
    """The errno fn(*args) fails with; fails the test if the call succeeds."""
    with pytest.raises(OSError) as e:
        fn(*args)
    return e.value.errno


def _watched_key(new_key, q, watch_id=1):
    key = new_key()
    uapi.watch_key(key, q.r, watch_id)
    return key


@pytest.mark.parametrize("flag", [os.O_TRUNC, os.O_TMPFILE], ids=["O_TRUNC", "O_TMPFILE"])
def test_pipe2_refuses_flags_outside_the_four_known(watch_queue_kernel, flag):
    assert _errno(os.pipe2, uapi.O_NOTIFICATION_PIPE | flag) == errno.EINVAL
    assert _errno(os.pipe2, flag) == errno.EINVAL


def test_pipe2_accepts_notification_cloexec_nonblock_direct(watch_queue_kernel):
    r, w = os.pipe2(uapi.O_NOTIFICATION_PIPE | os.O_CLOEXEC | os.O_NONBLOCK | os.O_DIRECT)
    try:
        for fd in (r, w):
            assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        # As for any pipe, O_DIRECT (packet mode) is kept on the write end only.
        assert fcntl.fcntl(r, fcntl.F_GETFL) & (os.O_NONBLOCK | os.O_DIRECT) == os.O_NONBLOCK
        assert fcntl.fcntl(w, fcntl.F_GETFL) & (os.O_NONBLOCK | os.O_DIRECT) == os.O_NONBLOCK | os.O_DIRECT
        # A notification pipe (a normal pipe would say ENODEV), unsized, empty.
        assert uapi.ioctl(r, uapi.IOC_WATCH_QUEUE_SET_SIZE, 1) == 0
        assert uapi.pipe_size(r) == PAGE
        with pytest.raises(BlockingIOError):
            os.read(r, 4096)
    finally:
        os.close(r)
        os.close(w)


def test_pipe_size_is_64k_before_set_size(new_queue):
    q = new_queue()
    assert uapi.pipe_size(q.r) == 65536
    assert uapi.pipe_size(q.w) == 65536


@pytest.mark.parametrize("notes", [1, 31, 32, 33, 64, 65, 96, 255, 256, 257, 512])
def test_set_size_pipe_size_is_pages_times_4096(new_queue, notes):
    q = new_queue()
    uapi.set_size(q.r, notes)
    pages = -(-notes // 32)
    assert uapi.pipe_size(q.r) == pages * PAGE
    assert uapi.pipe_size(q.w) == pages * PAGE
    assert uapi.fionread(q.r) == 0


def test_set_size_from_the_write_end(new_queue):
    q = new_queue()
    uapi.set_size(q.w, 65)
    assert uapi.pipe_size(q.r) == 3 * PAGE


def test_set_size_second_call_is_ebusy_before_range_check(new_queue):
    q = new_queue()
    uapi.set_size(q.r, 40)
    for n in (40, 1, 0, 513):
        assert _errno(uapi.set_size, q.r, n) == errno.EBUSY, n
    assert _errno(uapi.set_size, q.w, 1) == errno.EBUSY
    assert uapi.pipe_size(q.r) == 2 * PAGE


@pytest.mark.parametrize("notes", [0, 513, 0xFFFFFFFF, 0x100000000])
def test_set_size_out_of_range_is_einval_and_leaves_the_queue_unsized(new_queue, notes):
    q = new_queue()
    assert _errno(uapi.set_size, q.r, notes) == errno.EINVAL
    assert uapi.pipe_size(q.r) == 65536
    uapi.set_size(q.r, 512)  # not EBUSY: the failed call sized nothing
    assert uapi.pipe_size(q.r) == 16 * PAGE


def test_set_size_argument_is_truncated_to_32_bits(new_queue, new_key):
    q = new_queue()
    uapi.set_size(q.r, 0x100000001)  # unsigned long -> unsigned int: 1
    assert uapi.pipe_size(q.r) == PAGE
    key = _watched_key(new_key, q)
    for _ in range(33):
        uapi.key_update(key, b"x")
    recs = q.drain()
    assert len(recs) == 33  # 32 records, then the LOSS
    assert recs[:32] == [uapi.key_record(uapi.NOTIFY_KEY_UPDATED, 1, key)] * 32
    assert recs[32] == uapi.LOSS_RECORD


def _mem_free_kib():
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemFree:"):
                return int(line.split()[1])
    pytest.fail("no MemFree in /proc/meminfo")


def test_closed_queues_give_their_note_pages_back(watch_queue_kernel):
    """The notes live in whole pages (alloc_page), which kmemleak does not track: 1024 queues of
    512 notes (16 pages each, 64 MiB in all) made and closed one after another leave MemFree
    where it was, give or take what the allocator keeps in its per-cpu lists."""
    queues, pages = 1024, 16

    def cycle():
        r, w = uapi.notification_pipe()
        try:
            uapi.set_size(r, 512)
        finally:
            os.close(r)
            os.close(w)

    cycle()  # the slab caches warm
    before = _mem_free_kib()
    for _ in range(queues):
        cycle()
    lost = before - _mem_free_kib()
    assert lost < queues * pages * PAGE // 1024 // 2, f"{lost} KiB less free after {queues} queues"


def test_watch_queue_ioctls_on_a_normal_pipe_are_enodev(watch_queue_kernel):
    r, w = os.pipe()
    try:
        flt = [uapi.TypeFilter(uapi.WATCH_TYPE_KEY_NOTIFY)]
        for fd in (r, w):
            assert _errno(uapi.set_size, fd, 1) == errno.ENODEV
            assert _errno(uapi.set_filter, fd, flt) == errno.ENODEV
            assert _errno(uapi.set_filter, fd, None) == errno.ENODEV
    finally:
        os.close(r)
        os.close(w)


def test_fionread_counts_queued_record_bytes(new_queue, new_key):
    q = new_queue(size=32)
    key = _watched_key(new_key, q)
    assert uapi.fionread(q.r) == 0
    for _ in range(3):
        uapi.key_update(key, b"x")
    assert uapi.fionread(q.r) == 48
    assert len(os.read(q.r, 16)) == 16
    assert uapi.fionread(q.r) == 32


def test_write_is_exdev_even_for_zero_bytes(new_queue):
    q = new_queue(size=1)
    assert _errno(os.write, q.w, b"x") == errno.EXDEV
    assert _errno(os.write, q.w, b"") == errno.EXDEV
    assert _errno(os.writev, q.w, [b"ab", b"cd"]) == errno.EXDEV
    assert _errno(os.writev, q.w, [b"", b"x"]) == errno.EXDEV
    # A writev of 0 bytes in total never reaches pipe_write(): the VFS returns 0 first.
    assert os.writev(q.w, [b""]) == 0
    assert uapi.fionread(q.r) == 0


def test_rwf_nowait_read_is_what_the_version_does(new_queue, version_fact):
    """preadv2(RWF_NOWAIT) on an empty queue: 6.1's pipes lack FMODE_NOWAIT (EOPNOTSUPP),
    6.12's have it (EAGAIN). version_facts.yaml: rwf-nowait-read."""
    want = version_fact("rwf-nowait-read")
    q = new_queue(size=1, flags=0)  # blocking: RWF_NOWAIT alone must keep it from sleeping
    assert _errno(os.preadv, q.r, [bytearray(128)], -1, os.RWF_NOWAIT) == getattr(errno, want["errno"])


def test_rwf_nowait_write_is_what_the_version_does(new_queue, version_fact, sigpipe_blocked):
    """pwritev2(RWF_NOWAIT) on the write end: EOPNOTSUPP on 6.1 before the pipe is reached,
    the queue's own EXDEV on 6.12. version_facts.yaml: rwf-nowait-write."""
    want = version_fact("rwf-nowait-write")
    q = new_queue(size=1)
    assert _errno(os.pwritev, q.w, [b"x"], -1, os.RWF_NOWAIT) == getattr(errno, want["errno"])
    assert signal.SIGPIPE not in signal.sigpending()


@pytest.fixture
def sigpipe_blocked():
    """SIGPIPE blocked, so a sent one stays pending where sigpending() sees it."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGPIPE})
    yield
    while signal.SIGPIPE in signal.sigpending():
        signal.sigtimedwait({signal.SIGPIPE}, 0)
    signal.pthread_sigmask(signal.SIG_SETMASK, old)


def test_write_with_reader_closed_is_exdev_without_sigpipe(new_queue, sigpipe_blocked):
    # Control: a normal pipe without reader gives EPIPE and a pending SIGPIPE.
    r, w = os.pipe()
    os.close(r)
    try:
        assert _errno(os.write, w, b"x") == errno.EPIPE
    finally:
        os.close(w)
    assert signal.SIGPIPE in signal.sigpending()
    assert signal.sigtimedwait({signal.SIGPIPE}, 0).si_signo == signal.SIGPIPE

    q = new_queue(size=1)
    os.close(q.r)
    q.r = -1
    assert _errno(os.write, q.w, b"x") == errno.EXDEV
    assert _errno(os.write, q.w, b"") == errno.EXDEV
    assert signal.SIGPIPE not in signal.sigpending()


def test_vmsplice_is_ebadf_on_both_ends(new_queue):
    q = new_queue(size=1)
    assert _errno(uapi.vmsplice, q.w, b"x") == errno.EBADF
    assert _errno(uapi.vmsplice, q.r, b"\0" * 16) == errno.EBADF
    # Control: the binding works on a normal pipe.
    r, w = os.pipe()
    try:
        assert uapi.vmsplice(w, b"xyz") == 3
        assert os.read(r, 8) == b"xyz"
    finally:
        os.close(r)
        os.close(w)


def test_splice_normal_pipe_into_notification_pipe_is_exdev(new_queue):
    q = new_queue(size=1)
    r, w = os.pipe2(os.O_NONBLOCK)
    try:
        # Empty source: splice waits for data first (EAGAIN when non-blocking).
        assert _errno(os.splice, r, q.w, 1, None, None, os.SPLICE_F_NONBLOCK) == errno.EAGAIN
        os.write(w, b"x")
        assert _errno(os.splice, r, q.w, 1) == errno.EXDEV
        assert uapi.fionread(r) == 1  # nothing consumed from the source
        assert uapi.fionread(q.r) == 0
    finally:
        os.close(r)
        os.close(w)


def test_splice_out_of_notification_pipe_is_einval(new_queue, new_key):
    q = new_queue(size=1)
    key = _watched_key(new_key, q)
    uapi.key_update(key, b"x")
    r, w = os.pipe()
    try:
        assert _errno(os.splice, q.r, w, 16) == errno.EINVAL
        assert uapi.fionread(w) == 0
        assert uapi.fionread(q.r) == 16  # the record is still there
    finally:
        os.close(r)
        os.close(w)


def test_tee_with_a_notification_pipe_is_einval(new_queue, new_key):
    q = new_queue(size=1)
    key = _watched_key(new_key, q)
    uapi.key_update(key, b"x")
    r, w = os.pipe()
    try:
        os.write(w, b"y")
        assert _errno(uapi.tee, q.r, w, 16) == errno.EINVAL
        assert _errno(uapi.tee, r, q.w, 1) == errno.EINVAL
        assert uapi.fionread(q.r) == 16
        assert uapi.fionread(r) == 1
    finally:
        os.close(r)
        os.close(w)


def test_sendfile_into_is_exdev_and_out_of_is_einval(new_queue, new_key):
    q = new_queue(size=1)
    key = _watched_key(new_key, q)
    uapi.key_update(key, b"x")
    f = os.memfd_create("wqh-data")  # a regular file; the guest's root is read-only
    try:
        os.write(f, b"data")
        assert _errno(os.sendfile, q.w, f, 0, 4) == errno.EXDEV
    finally:
        os.close(f)
    r, w = os.pipe()
    try:
        assert _errno(os.sendfile, w, q.r, None, 16) == errno.EINVAL
        assert uapi.fionread(q.r) == 16
    finally:
        os.close(r)
        os.close(w)


def test_f_setpipe_sz_is_ebusy_before_and_after_set_size(new_queue):
    q = new_queue()
    assert _errno(fcntl.fcntl, q.r, uapi.F_SETPIPE_SZ, 8192) == errno.EBUSY
    assert _errno(fcntl.fcntl, q.w, uapi.F_SETPIPE_SZ, 1 << 20) == errno.EBUSY
    uapi.set_size(q.r, 1)
    assert _errno(fcntl.fcntl, q.r, uapi.F_SETPIPE_SZ, 8192) == errno.EBUSY
    assert uapi.pipe_size(q.r) == PAGE
