"""Queue capacity and LOSS records (watch_queue.md §1 "Internal limits", §1.3, §4.5)."""

import errno
import os
import select
import signal

import pytest

from harness.guest import uapi

UPDATED, LINKED = uapi.NOTIFY_KEY_UPDATED, uapi.NOTIFY_KEY_LINKED
LOSS_BYTES = uapi.LOSS_RECORD.length


def _errno(fn, *args):
    with pytest.raises(OSError) as e:
        fn(*args)
    return e.value.errno


def _pollin(fd):
    p = select.poll()
    p.register(fd, select.POLLIN)
    return bool(p.poll(0))


class Source:
    """A key (watch id 1) for bulk UPDATEs and a keyring (watch id 2) for distinguishable LINKEDs."""

    def __init__(self, q, new_key, links=4):
        self.key = new_key()
        self.ring = new_key(ktype="keyring")
        self.members = [new_key() for _ in range(links)]
        uapi.watch_key(self.key, q.r, 1)
        uapi.watch_key(self.ring, q.r, 2)

    def updates(self, n):
        for _ in range(n):
            uapi.key_update(self.key, b"x")

    def link(self, i):
        uapi.link(self.members[i], self.ring)

    def updated(self):
        return uapi.key_record(UPDATED, 1, self.key)

    def linked(self, i):
        return uapi.key_record(LINKED, 2, self.ring, self.members[i])


@pytest.mark.parametrize("notes", [1, 31, 32, 33, 64, 65, 96, 255, 512])
def test_capacity_is_32_per_page_then_one_loss(new_queue, new_key, notes):
    q = new_queue(size=notes)
    cap = 32 * -(-notes // 32)
    assert uapi.pipe_size(q.r) == cap // 32 * 4096
    src = Source(q, new_key)
    # cap-1 UPDATEs and one LINKED fill the queue; three more LINKEDs are lost.
    src.updates(cap - 1)
    for i in range(4):
        src.link(i)
    assert uapi.fionread(q.r) == cap * 16
    first = uapi.decode(os.read(q.r, 16384))
    assert first == [src.updated()] * (cap - 1) + [src.linked(0)]
    # The flagged record was the last one in the ring: the LOSS comes with the next read.
    assert uapi.decode(os.read(q.r, 16384)) == [uapi.LOSS_RECORD]
    assert _errno(os.read, q.r, 16384) == errno.EAGAIN


@pytest.mark.parametrize("notes", [64, 512])
def test_the_notes_of_every_page_are_reused(new_queue, new_key, notes):
    # A record read gives its note back to its own page's share of the pool (page->index):
    # the full capacity is there again on every round, not only the first page's 32.
    q = new_queue(size=notes)
    src = Source(q, new_key)
    for _ in range(2):
        src.updates(notes)
        assert q.drain() == [src.updated()] * notes


def test_several_losses_between_reads_give_one_loss_record(new_queue, new_key):
    q = new_queue(size=32)
    src = Source(q, new_key)
    src.updates(32 + 10)
    assert q.drain() == [src.updated()] * 32 + [uapi.LOSS_RECORD]
    # After the queue drained, posts are delivered again and no loss is reported.
    src.link(0)
    assert q.drain() == [src.linked(0)]


def test_losses_in_separate_rounds_give_one_loss_each(new_queue, new_key):
    q = new_queue(size=1)
    src = Source(q, new_key)
    for _ in range(3):
        src.updates(34)
        assert q.drain() == [src.updated()] * 32 + [uapi.LOSS_RECORD]


def test_loss_follows_the_record_that_was_last_when_it_happened(new_queue, new_key):
    q = new_queue(size=32)
    src = Source(q, new_key)
    src.updates(31)
    src.link(0)  # 32nd record: the queue is full
    src.link(1)  # lost: flags the LINKED of member 0
    assert len(os.read(q.r, 31 * 16)) == 31 * 16  # leaves the flagged record unread
    src.link(2)  # a note is free again
    buf = os.read(q.r, 4096)
    assert len(buf) == 16 + LOSS_BYTES + 16
    assert uapi.decode(buf) == [src.linked(0), uapi.LOSS_RECORD, src.linked(2)]


def test_poll_does_not_announce_a_pending_loss(new_queue, new_key):
    q = new_queue(size=1)
    src = Source(q, new_key)
    src.updates(33)
    assert len(os.read(q.r, 32 * 16)) == 32 * 16  # exactly the ring; the LOSS is pending
    assert not _pollin(q.r)
    assert uapi.fionread(q.r) == 0
    # ... yet a read returns it.
    assert uapi.decode(os.read(q.r, 4096)) == [uapi.LOSS_RECORD]
    assert not _pollin(q.r)
    assert _errno(os.read, q.r, 4096) == errno.EAGAIN


def test_pending_loss_needs_an_8_byte_buffer(new_queue, new_key):
    q = new_queue(size=1)
    src = Source(q, new_key)
    src.updates(33)
    assert len(os.read(q.r, 32 * 16)) == 32 * 16
    assert _errno(os.read, q.r, LOSS_BYTES - 1) == errno.ENOBUFS
    assert uapi.decode(os.read(q.r, LOSS_BYTES)) == [uapi.LOSS_RECORD]
    assert _errno(os.read, q.r, 8) == errno.EAGAIN


def test_blocking_read_returns_a_pending_loss_at_once(new_queue, new_key):
    q = new_queue(size=1, flags=0)
    src = Source(q, new_key)
    src.updates(33)
    assert len(os.read(q.r, 32 * 16)) == 32 * 16

    def expired(signum, frame):
        raise TimeoutError("blocking read of a pending LOSS did not return")

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, 5)
    try:
        buf = os.read(q.r, 4096)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert uapi.decode(buf) == [uapi.LOSS_RECORD]


def test_posts_before_set_size_vanish_without_a_loss_record(new_queue, new_key):
    q = new_queue()
    src = Source(q, new_key)  # watches work on an unsized queue
    src.updates(5)
    src.link(0)
    assert uapi.fionread(q.r) == 0
    assert _errno(os.read, q.r, 4096) == errno.EAGAIN
    uapi.set_size(q.r, 1)
    src.link(1)
    assert q.drain() == [src.linked(1)]


def test_removal_record_takes_a_note_and_can_be_lost(new_queue, new_key):
    q = new_queue(size=1)
    src = Source(q, new_key)
    src.updates(31)
    uapi.unwatch_key(src.ring, q.r)  # the 32nd note
    uapi.unwatch_key(src.key, q.r)  # lost
    assert q.drain() == [src.updated()] * 31 + [uapi.removal_record(2, src.ring), uapi.LOSS_RECORD]
    # The watch is gone although its removal record was lost.
    assert _errno(uapi.unwatch_key, src.key, q.r) == errno.EBADSLT
