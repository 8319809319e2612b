"""Key notifications: every subtype with key_id and aux, watch ids, several watches and queues,
and the KEYCTL_WATCH_KEY errno order (watch_queue.md §1.1, §1.4, §4.2, §4.3, §4.7, §4.10)."""

import errno
import itertools
import os
import re
import threading
import time

import pytest

from harness.guest import uapi
from harness.guest.fixtures import in_child

(INSTANTIATED, UPDATED, LINKED, UNLINKED, CLEARED, REVOKED, INVALIDATED,
 SETATTR) = range(8)
PERM = uapi.KEY_POS_ALL | uapi.KEY_USR_ALL
rec = uapi.key_record


def _errno(fn, *args):
    with pytest.raises(OSError) as e:
        fn(*args)
    return e.value.errno


@pytest.fixture
def q(new_queue):
    return new_queue(size=32)


# --- one test per subtype ----------------------------------------------------------


def test_updated_by_keyctl_update(q, new_key):
    key = new_key()
    uapi.watch_key(key, q.r, 1)
    uapi.key_update(key, b"new")
    assert q.drain() == [rec(UPDATED, 1, key, 0)]
    assert uapi.read_key(key) == b"new"


def test_updated_by_add_key_on_an_existing_description(q, new_key):
    ring = new_key(ktype="keyring")
    key = new_key("wqh-same", ring=ring)
    uapi.watch_key(key, q.r, 1)
    uapi.watch_key(ring, q.r, 2)
    assert uapi.add_key("user", "wqh-same", b"v2", ring) == key
    # The keyring already links the key: no LINKED, just the update.
    assert q.drain() == [rec(UPDATED, 1, key, 0)]
    assert uapi.read_key(key) == b"v2"


def test_linked_carries_the_linked_key_in_aux(q, new_key):
    ring = new_key(ktype="keyring")
    uapi.watch_key(ring, q.r, 2)
    added = new_key(ring=ring)  # add_key straight into the keyring
    other = new_key()
    uapi.link(other, ring)  # KEYCTL_LINK
    uapi.link(other, ring)  # linking again replaces the link and notifies again
    assert q.drain() == [rec(LINKED, 2, ring, added), rec(LINKED, 2, ring, other),
                         rec(LINKED, 2, ring, other)]


def test_unlinked_carries_the_unlinked_key_in_aux(q, new_key):
    ring = new_key(ktype="keyring")
    key = new_key()
    uapi.link(key, ring)
    uapi.watch_key(ring, q.r, 3)
    uapi.unlink(key, ring)
    assert _errno(uapi.unlink, key, ring) == errno.ENOENT
    assert q.drain() == [rec(UNLINKED, 3, ring, key)]


def test_move_gives_unlinked_then_linked(q, new_key):
    src, dst = new_key(ktype="keyring"), new_key(ktype="keyring")
    key = new_key(ring=src)
    uapi.watch_key(src, q.r, 1)
    uapi.watch_key(dst, q.r, 2)
    uapi.move(key, src, dst)
    assert q.drain() == [rec(UNLINKED, 1, src, key), rec(LINKED, 2, dst, key)]


def test_cleared_once_per_clear_even_on_an_empty_keyring(q, new_key):
    ring = new_key(ktype="keyring")
    for _ in range(2):
        new_key(ring=ring)
    uapi.watch_key(ring, q.r, 4)
    uapi.clear(ring)  # no UNLINKED per key
    uapi.clear(ring)  # already empty
    assert q.drain() == [rec(CLEARED, 4, ring, 0), rec(CLEARED, 4, ring, 0)]


def test_revoked_once_then_the_key_refuses_changes(q, new_key):
    key = new_key()
    uapi.watch_key(key, q.r, 5)
    uapi.revoke(key)
    assert _errno(uapi.revoke, key) == errno.EKEYREVOKED
    assert _errno(uapi.key_update, key, b"x") == errno.EKEYREVOKED
    assert _errno(uapi.setperm, key, PERM) == errno.EKEYREVOKED
    assert q.drain() == [rec(REVOKED, 5, key, 0)]


def test_revoking_a_keyring_drops_its_links_silently(q, new_key):
    ring = new_key(ktype="keyring")
    new_key(ring=ring)
    uapi.watch_key(ring, q.r, 6)
    uapi.revoke(ring)
    assert q.drain() == [rec(REVOKED, 6, ring, 0)]


def test_invalidated_keyring_then_its_removal(q, new_key):
    ring = new_key(ktype="keyring")
    new_key(ring=ring)
    uapi.watch_key(ring, q.r, 7)
    uapi.invalidate(ring)
    got = uapi.wait_records(q.r, lambda rs: len(rs) >= 2, 5.0)
    assert got == [rec(INVALIDATED, 7, ring, 0), uapi.removal_record(7, ring)]


def test_setattr_by_setperm_chown_chgrp_set_timeout_and_restrict(q, new_key):
    key = new_key()
    ring = new_key(ktype="keyring")
    uapi.watch_key(key, q.r, 8)
    uapi.watch_key(ring, q.r, 9)
    uapi.setperm(key, PERM)
    uapi.chown(key, os.getuid(), -1)  # same owner: still notified
    uapi.chown(key, -1, os.getgid())  # group only
    uapi.chown(key, -1, -1)  # nothing to change: returns before notifying
    uapi.set_timeout(key, 3600)
    uapi.set_timeout(key, 0)
    uapi.restrict_keyring(ring)
    assert _errno(uapi.link, key, ring) == errno.EPERM  # restricted: no LINKED
    assert q.drain() == [rec(SETATTR, 8, key, 0)] * 5 + [rec(SETATTR, 9, ring, 0)]


# --- INSTANTIATED: only a key under construction can be instantiated -----------------

_RK_LINES = {
    "negate": r"^create\s+user\s+debug:\*\s+negate\s+\S*keyctl\s+negate\b",
    "rejected": r"^create\s+user\s+debug:\*\s+rejected\s+\S*keyctl\s+reject\b",
    "expired": r"^create\s+user\s+debug:\*\s+expired\s+\S*keyctl\s+reject\b",
    "revoked": r"^create\s+user\s+debug:\*\s+revoked\s+\S*keyctl\s+reject\b",
    "ok": r"^create\s+user\s+debug:\*\s+\*\s+\S*request-key-debug\.sh\b",
}
_serial = itertools.count()


def _request_key_callout(callout):
    """Skip unless keyutils' /sbin/request-key has the stock 'debug:*' handlers for callout."""
    if not os.access("/sbin/request-key", os.X_OK):
        pytest.skip("no /sbin/request-key: the kernel cannot run a key constructor")
    try:
        with open("/etc/request-key.conf") as fh:
            conf = fh.read()
    except OSError:
        pytest.skip("no /etc/request-key.conf")
    if not re.search(_RK_LINES[callout], conf, re.M):
        pytest.skip(f"/etc/request-key.conf has no stock 'create user debug:* {callout}' line")
    return f"debug:wqh-{os.getpid()}-{next(_serial)}-{time.monotonic_ns()}"


def test_instantiated_cannot_be_seen_a_watch_waits_for_construction(new_queue, new_key):
    """INSTANTIATED (key.c:450) goes to the key's own watchers, but KEYCTL_WATCH_KEY looks the key up
    without KEY_LOOKUP_PARTIAL, so it waits until construction is over: no watch can exist when the
    record is posted. What is observable: LINKED on the destination keyring during construction,
    a watch that returns once the constructor (KEYCTL_ASSUME_AUTHORITY + KEYCTL_INSTANTIATE, run by
    /sbin/request-key) is done, and no INSTANTIATED record anywhere."""
    desc = _request_key_callout("ok")
    rq, kq = new_queue(size=32), new_queue(size=32)
    ring = new_key(ktype="keyring")
    uapi.watch_key(ring, rq.r, 1)
    result = {}

    def requester():
        try:
            result["key"] = uapi.request_key("user", desc, "ok", ring)
        except OSError as e:
            result["errno"] = e.errno

    t = threading.Thread(target=requester, daemon=True)
    t.start()
    try:
        # The key is linked into the destination keyring when it is allocated, before construction.
        got = uapi.wait_records(rq.r, lambda rs: len(rs) >= 1, 10.0)
        assert len(got) == 1 and got[0].subtype == LINKED, got
        new = got[0].aux
        assert got == [rec(LINKED, 1, ring, new)]
        uapi.watch_key(new, kq.r, 2)  # blocks while the key is under construction
    finally:
        t.join(10.0)
    assert not t.is_alive()
    assert result == {"key": new}
    assert uapi.read_key(new) == b"Debug ok"  # instantiated by the handler script
    uapi.key_update(new, b"x")
    assert kq.drain() == [rec(UPDATED, 2, new, 0)]  # and nothing before it
    assert rq.drain() == []


@pytest.mark.parametrize("callout, err", [("negate", errno.ENOKEY), ("rejected", errno.EKEYREJECTED),
                                          ("expired", errno.EKEYEXPIRED), ("revoked", errno.EKEYREVOKED)])
def test_negated_or_rejected_key_refuses_a_watch_with_its_error(new_queue, new_key, callout, err):
    desc = _request_key_callout(callout)
    q = new_queue(size=32)
    ring = new_key(ktype="keyring")
    uapi.watch_key(ring, q.r, 1)
    assert _errno(uapi.request_key, "user", desc, callout, ring) == err
    (linked,) = q.drain()
    new = linked.aux
    assert linked == rec(LINKED, 1, ring, new)
    assert _errno(uapi.watch_key, new, q.r, 2) == err


# --- watch ids, several watches, several queues ----------------------------------------


@pytest.mark.parametrize("watch_id", [0, 1, 127, 128, 255])
def test_watch_id_is_carried_in_info_bits_8_to_15(q, new_key, watch_id):
    key = new_key()
    uapi.watch_key(key, q.r, watch_id)
    uapi.key_update(key, b"x")
    (r,) = q.drain()
    assert r.info == 16 | watch_id << 8
    assert r == rec(UPDATED, watch_id, key, 0)


def test_several_watches_on_one_queue_keep_their_ids(q, new_key):
    a, b, c = new_key(), new_key(), new_key()
    uapi.watch_key(a, q.r, 1)
    uapi.watch_key(b, q.r, 1)  # the same id on another key is fine
    uapi.watch_key(c, q.r, 2)
    uapi.key_update(a, b"x")
    uapi.key_update(c, b"x")
    uapi.key_update(b, b"x")
    uapi.revoke(a)
    assert q.drain() == [rec(UPDATED, 1, a), rec(UPDATED, 2, c), rec(UPDATED, 1, b), rec(REVOKED, 1, a)]


def test_one_key_two_queues_each_with_its_own_id(new_queue, new_key):
    q1, q2 = new_queue(size=32), new_queue(size=1)
    key = new_key()
    uapi.watch_key(key, q1.r, 10)
    uapi.watch_key(key, q2.r, 20)
    uapi.revoke(key)
    assert q1.drain() == [rec(REVOKED, 10, key)]
    assert q2.drain() == [rec(REVOKED, 20, key)]


def test_watch_through_the_write_end(q, new_key):
    key = new_key()
    uapi.watch_key(key, q.w, 3)
    uapi.key_update(key, b"x")
    assert q.drain() == [rec(UPDATED, 3, key)]


def test_special_keyring_id_resolves_to_the_session_keyring(q, new_key):
    session = uapi.keyctl(uapi.KEYCTL_GET_KEYRING_ID, uapi.KEY_SPEC_SESSION_KEYRING, 0)
    uapi.watch_key(uapi.KEY_SPEC_SESSION_KEYRING, q.r, 1)
    key = new_key(ring=session)
    assert q.drain() == [rec(LINKED, 1, session, key)]


def _watch_the_thread_keyring():
    """In a forked child (no thread keyring: fork never inherits one): watch @t, which
    KEYCTL_WATCH_KEY creates on demand (KEY_LOOKUP_CREATE), then add a key to it."""
    try:
        uapi.keyctl(uapi.KEYCTL_GET_KEYRING_ID, uapi.KEY_SPEC_THREAD_KEYRING, 0)
        before = 0
    except OSError as e:
        before = e.errno
    r, _ = uapi.notification_pipe(os.O_NONBLOCK)
    uapi.set_size(r, 32)
    uapi.watch_key(uapi.KEY_SPEC_THREAD_KEYRING, r, 5)
    ring = uapi.keyctl(uapi.KEYCTL_GET_KEYRING_ID, uapi.KEY_SPEC_THREAD_KEYRING, 0)
    key = uapi.add_key("user", "wqh-thread", b"v", uapi.KEY_SPEC_THREAD_KEYRING)
    return {"before": before, "ring": ring, "key": key, "records": [str(x) for x in uapi.drain(r)]}


def test_watching_a_missing_thread_keyring_creates_it(watch_queue_kernel):
    got = in_child(_watch_the_thread_keyring, what="child watching @t")
    assert got["before"] == errno.ENOKEY  # none yet, and GET_KEYRING_ID(create=0) made none
    assert got["records"] == [str(rec(LINKED, 5, got["ring"], got["key"]))]


def test_duplicate_watch_of_a_key_is_ebusy_whatever_the_id(q, new_key):
    key = new_key()
    uapi.watch_key(key, q.r, 1)
    assert _errno(uapi.watch_key, key, q.r, 1) == errno.EBUSY
    assert _errno(uapi.watch_key, key, q.r, 2) == errno.EBUSY
    assert _errno(uapi.watch_key, key, q.w, 3) == errno.EBUSY  # same queue, other end
    uapi.key_update(key, b"x")
    assert q.drain() == [rec(UPDATED, 1, key)]


# --- KEYCTL_WATCH_KEY errors, in the kernel's order -------------------------------------


def _missing_serial():
    """A serial no key has (KEYCTL_DESCRIBE says ENOKEY)."""
    for cand in range(0x7FFFFF00, 0x7FFFFFFF):
        try:
            uapi.describe(cand)
        except OSError as e:
            if e.errno == errno.ENOKEY:
                return cand
    pytest.fail("no unused key serial found")


@pytest.mark.parametrize("watch_id", [256, -2, 0x7FFFFFFF, -(2 ** 31)])
def test_watch_id_out_of_range_is_einval_before_anything_else(q, watch_id):
    assert _errno(uapi.keyctl, uapi.KEYCTL_WATCH_KEY, _missing_serial(), -1, watch_id) == errno.EINVAL


def test_key_zero_is_einval(q):
    assert _errno(uapi.watch_key, 0, q.r, 1) == errno.EINVAL


def test_missing_key_is_enokey_even_with_a_bad_fd(q):
    missing = _missing_serial()
    assert _errno(uapi.watch_key, missing, q.r, 1) == errno.ENOKEY
    assert _errno(uapi.watch_key, missing, -1, 1) == errno.ENOKEY  # the key is checked first
    assert _errno(uapi.unwatch_key, missing, q.r) == errno.ENOKEY


def test_revoked_key_is_ekeyrevoked_even_with_a_bad_fd(q, new_key):
    key = new_key()
    uapi.revoke(key)
    assert _errno(uapi.watch_key, key, q.r, 1) == errno.EKEYREVOKED
    assert _errno(uapi.watch_key, key, -1, 1) == errno.EKEYREVOKED


def test_expired_key_is_ekeyexpired(q, new_key):
    key = new_key()
    uapi.set_timeout(key, 1)
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:  # expiry is 1 s of wall time, so at most ~1 s
        try:
            uapi.describe(key)
        except OSError as e:
            assert e.errno == errno.EKEYEXPIRED
            break
        time.sleep(0.05)
    else:
        pytest.fail("key with a 1 s timeout did not expire within 3 s")
    assert _errno(uapi.watch_key, key, q.r, 1) == errno.EKEYEXPIRED
    assert _errno(uapi.watch_key, key, -1, 1) == errno.EKEYEXPIRED


def test_key_without_view_permission_is_eacces(q, new_key):
    key = new_key()
    uapi.setperm(key, uapi.KEY_POS_ALL)  # only a possessor may view it
    uapi.watch_key(key, q.r, 1)  # we possess it through our session keyring
    uapi.unwatch_key(key, q.r)
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: a new session keyring, so the key is no longer possessed
        code = 100
        try:
            os.close(rfd)
            uapi.join_session_keyring(None)
            for fd in (q.r, -1):
                try:
                    uapi.watch_key(key, fd, 1)
                    os.write(wfd, b"0,")
                except OSError as e:
                    os.write(wfd, f"{e.errno},".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(wfd)
    with os.fdopen(rfd) as fh:
        out = fh.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert out == f"{errno.EACCES},{errno.EACCES},"
    assert q.drain() == [uapi.removal_record(1, key)]


def _read_and_watch_unpossessed(key, fd):
    """In a new session keyring (the key no longer possessed): KEYCTL_READ, KEYCTL_WATCH_KEY."""
    uapi.join_session_keyring(None)
    out = {}
    for name, call in (("read", lambda: uapi.read_key(key)), ("watch", lambda: uapi.watch_key(key, fd, 2))):
        try:
            call()
            out[name] = 0
        except OSError as e:
            out[name] = e.errno
    return out


def test_view_permission_alone_is_enough_to_watch(q, new_key):
    # The owner may view the key but not read it; watching asks for KEY_NEED_VIEW only.
    key = new_key()
    uapi.setperm(key, uapi.KEY_POS_ALL | uapi.KEY_USR_VIEW)
    got = in_child(_read_and_watch_unpossessed, key, q.r, what="unpossessing child")
    assert got == {"read": errno.EACCES, "watch": 0}
    uapi.key_update(key, b"x")  # the watch outlives the child: the queue holds it
    assert q.drain() == [rec(UPDATED, 2, key)]


def test_bad_queue_fd_is_einval_never_ebadf(q, new_key):
    key = new_key()
    r, w = os.pipe()
    f = os.memfd_create("wqh-file")
    closed_fd = os.dup(r)
    os.close(closed_fd)
    try:
        for fd in (-1, closed_fd, 100000, r, w, f):
            assert _errno(uapi.watch_key, key, fd, 1) == errno.EINVAL, fd
            assert _errno(uapi.unwatch_key, key, fd) == errno.EINVAL, fd
    finally:
        for fd in (r, w, f):
            os.close(fd)
    assert q.drain() == []
