"""Watch removal: explicit (watch id -1) and by key destruction (watch_queue.md §1.1 step 5, §1.4, §4.4)."""

import errno
import os
import struct

import pytest

from harness.guest import uapi

GC_TIMEOUT = 5.0  # key garbage collection is a work item; observed within ms under TCG


def _errno(fn, *args):
    with pytest.raises(OSError) as e:
        fn(*args)
    return e.value.errno


def _has_removal(obj):
    def done(recs):
        return any(r.type == uapi.WATCH_TYPE_META and r.subtype == uapi.WATCH_META_REMOVAL_NOTIFICATION
                   and r.removal_id == obj for r in recs)
    return done


def test_explicit_removal_record_bytes(new_queue, new_key):
    q = new_queue(size=32)
    key = new_key()
    uapi.watch_key(key, q.r, 9)
    uapi.unwatch_key(key, q.r)
    buf = os.read(q.r, 4096)
    # META (0) / REMOVAL (0), info 16 | 9<<8, then the 64-bit id: the key serial.
    assert buf == struct.pack("<IIQ", 0, 0x910, key)
    uapi.key_update(key, b"x")  # no watch any more
    assert q.drain() == []


def test_repeated_removal_is_ebadslt(new_queue, new_key):
    q = new_queue(size=32)
    other = new_queue(size=32)
    key = new_key()
    never = new_key()
    uapi.watch_key(key, q.r, 1)
    assert _errno(uapi.unwatch_key, key, other.r) == errno.EBADSLT  # watched, but by another queue
    assert _errno(uapi.unwatch_key, never, q.r) == errno.EBADSLT  # never watched at all
    uapi.unwatch_key(key, q.r)
    assert _errno(uapi.unwatch_key, key, q.r) == errno.EBADSLT
    assert _errno(uapi.unwatch_key, key, q.w) == errno.EBADSLT
    assert q.drain() == [uapi.removal_record(1, key)]
    assert other.drain() == []


def test_removal_through_the_write_end_and_rewatch_with_another_id(new_queue, new_key):
    q = new_queue(size=32)
    key = new_key()
    uapi.watch_key(key, q.r, 1)
    uapi.unwatch_key(key, q.w)  # the same queue through its other end
    uapi.watch_key(key, q.r, 4)
    uapi.key_update(key, b"x")
    assert q.drain() == [uapi.removal_record(1, key), uapi.key_record(uapi.NOTIFY_KEY_UPDATED, 4, key)]


def test_removing_one_queues_watch_leaves_the_others(new_queue, new_key):
    q1, q2 = new_queue(size=32), new_queue(size=32)
    key = new_key()
    uapi.watch_key(key, q1.r, 1)
    uapi.watch_key(key, q2.r, 2)
    uapi.unwatch_key(key, q1.r)
    uapi.key_update(key, b"x")
    assert q1.drain() == [uapi.removal_record(1, key)]
    assert q2.drain() == [uapi.key_record(uapi.NOTIFY_KEY_UPDATED, 2, key)]


def test_invalidate_gives_invalidated_then_removal(new_queue, new_key):
    q = new_queue(size=32)
    ring = new_key(ktype="keyring")
    key = new_key(ring=ring)
    uapi.watch_key(key, q.r, 3)
    uapi.watch_key(ring, q.r, 4)
    uapi.invalidate(key)
    got = uapi.wait_records(q.r, _has_removal(key), GC_TIMEOUT)
    # The gc drops the key from the keyring without an UNLINKED record.
    assert got == [uapi.key_record(uapi.NOTIFY_KEY_INVALIDATED, 3, key), uapi.removal_record(3, key)]
    assert _errno(uapi.watch_key, key, q.r, 3) == errno.ENOKEY
    assert _errno(uapi.unwatch_key, key, q.r) == errno.ENOKEY


def test_unlink_from_the_last_keyring_gives_removal(new_queue, new_key):
    q = new_queue(size=32)
    ring = new_key(ktype="keyring")
    key = new_key(ring=ring)  # its only link
    uapi.watch_key(key, q.r, 5)
    uapi.watch_key(ring, q.r, 6)
    uapi.unlink(key, ring)
    got = uapi.wait_records(q.r, _has_removal(key), GC_TIMEOUT)
    assert got == [uapi.key_record(uapi.NOTIFY_KEY_UNLINKED, 6, ring, key), uapi.removal_record(5, key)]
    assert _errno(uapi.watch_key, key, q.r, 5) == errno.ENOKEY


def test_destroyed_key_sends_removal_to_every_queue(new_queue, new_key):
    q1, q2 = new_queue(size=32), new_queue(size=32)
    key = new_key()
    uapi.watch_key(key, q1.r, 1)
    uapi.watch_key(key, q2.r, 2)
    uapi.invalidate(key)
    assert uapi.wait_records(q1.r, _has_removal(key), GC_TIMEOUT) == [
        uapi.key_record(uapi.NOTIFY_KEY_INVALIDATED, 1, key), uapi.removal_record(1, key)]
    assert uapi.wait_records(q2.r, _has_removal(key), GC_TIMEOUT) == [
        uapi.key_record(uapi.NOTIFY_KEY_INVALIDATED, 2, key), uapi.removal_record(2, key)]


def test_explicitly_removed_watch_gets_nothing_at_destruction(new_queue, new_key):
    q = new_queue(size=32)
    key = new_key()
    sentinel = new_queue(size=32)
    uapi.watch_key(key, sentinel.r, 1)
    uapi.watch_key(key, q.r, 2)
    uapi.unwatch_key(key, q.r)
    uapi.invalidate(key)
    # Wait on a second queue for the gc, then check the first got nothing more.
    assert uapi.wait_records(sentinel.r, _has_removal(key), GC_TIMEOUT)[-1] == uapi.removal_record(1, key)
    assert q.drain() == [uapi.removal_record(2, key)]


def test_closing_a_queue_drops_its_watches_without_a_record(new_queue, new_key):
    closed, q = new_queue(size=32), new_queue(size=32)
    key = new_key()
    uapi.watch_key(key, closed.r, 1)
    uapi.watch_key(key, q.r, 2)
    closed.close()  # its watch goes with it: posts to the key no longer reach that pipe
    uapi.key_update(key, b"x")
    uapi.invalidate(key)
    assert uapi.wait_records(q.r, _has_removal(key), GC_TIMEOUT) == [
        uapi.key_record(uapi.NOTIFY_KEY_UPDATED, 2, key),
        uapi.key_record(uapi.NOTIFY_KEY_INVALIDATED, 2, key), uapi.removal_record(2, key)]


def test_a_revoked_key_cannot_be_unwatched(new_queue, new_key):
    q = new_queue(size=32)
    key = new_key()
    uapi.watch_key(key, q.r, 1)
    uapi.revoke(key)
    # The lookup refuses the revoked key before the watch is looked for.
    assert _errno(uapi.unwatch_key, key, q.r) == errno.EKEYREVOKED
    assert q.drain() == [uapi.key_record(uapi.NOTIFY_KEY_REVOKED, 1, key)]
