"""Per-user watch limit (RLIMIT_NOFILE) and pipe accounting of notification pipes
(watch_queue.md §1 "watches per user", §2+3 #1 and #26, §4.6).

Limits and uids are changed only in forked children, which report back through a pipe.
uid 65534, 65533, 65532, 65530 and 65529 are throw-away users: their user_struct state may
persist (65531 is test_clients.py's).
"""

import errno
import fcntl
import os
import resource
import time

import pytest

from harness.guest import uapi
from harness.guest.fixtures import in_child

LIMIT = 30
NOBODY = 65534
ACCOUNTING_UID = 65533
SOFT_LIMIT_UID = 65532
CLOSE_UID = 65530
SOFT_RLIMIT_UID = 65529
PIPE_PAGES_SOFT = "/proc/sys/fs/pipe-user-pages-soft"
SETTLE = 5.0  # bound for RCU-deferred watch-count decrements of closed queues

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to a throw-away uid")


def become(uid=None, nofile=LIMIT, hard=None):
    """Lower RLIMIT_NOFILE (soft nofile, hard `hard` or nofile; root may), then drop to uid;
    a fresh session keyring either way."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile if hard is None else hard))
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    uapi.join_session_keyring(None)


def make_keys(n):
    # A keyring of this process's own: a second "wqh-limit" added to a session keyring shared
    # with a parent would displace the parent's from it, and the key gc would then destroy the
    # parent's keys and their watches, lowering the uid's count under the test's feet.
    ring = uapi.add_key("keyring", f"wqh-limit-{os.getpid()}", None, uapi.KEY_SPEC_SESSION_KEYRING)
    return [uapi.add_key("user", f"wqh-limit-{i}", b"v", ring) for i in range(n)]


def fill_to(fd, keys, expected):
    """Add watches until EAGAIN and return how many were added.

    Watch counts of closed queues drop after an RCU grace period, so an early EAGAIN is retried
    until `expected` watches are in or SETTLE runs out; going past `expected` stops at once.
    Once `expected` were added nothing was pending (else one add would have failed), so the
    next add must be refused.
    """
    added = 0
    deadline = time.monotonic() + SETTLE
    while added <= expected and added < len(keys):
        try:
            uapi.watch_key(keys[added], fd, 1)
            added += 1
        except OSError as e:
            if e.errno != errno.EAGAIN:
                raise
            if added == expected or time.monotonic() > deadline:
                break
            time.sleep(0.01)
    return added


def refused(fd, key):
    try:
        uapi.watch_key(key, fd, 1)
    except OSError as e:
        return e.errno
    return 0


def child_fill(uid, expected, hard=None):
    become(uid, hard=hard)
    keys = make_keys(expected + 3)
    r, _ = uapi.notification_pipe(os.O_NONBLOCK)
    added = fill_to(r, keys, expected)
    return {"added": added, "next": refused(r, keys[added + 1] if added + 1 < len(keys) else keys[-1])}


def test_limit_counts_the_watches_of_other_processes_of_the_uid(new_queue, new_key):
    # This process (root in the guest) holds 3 watches; a child of the same uid with
    # RLIMIT_NOFILE 30 gets 27 more: root is limited too.
    q = new_queue(size=1)
    for _ in range(3):
        uapi.watch_key(new_key(), q.r, 1)
    got = in_child(child_fill, None, LIMIT - 3)
    assert got == {"added": LIMIT - 3, "next": errno.EAGAIN}


@needs_root
def test_unprivileged_uid_gets_exactly_rlimit_nofile_watches(watch_queue_kernel):
    got = in_child(child_fill, NOBODY, LIMIT)
    assert got == {"added": LIMIT, "next": errno.EAGAIN}


@needs_root
def test_the_limit_is_the_soft_rlimit_nofile(watch_queue_kernel):
    # Soft 30, hard 60: the 31st watch is refused (watch_queue.md §1: task_rlimit, the soft one).
    got = in_child(child_fill, SOFT_RLIMIT_UID, LIMIT, 2 * LIMIT)
    assert got == {"added": LIMIT, "next": errno.EAGAIN}


def child_close_and_refill(uid):
    """Fill a queue to the limit with watches of keys that stay alive, close it, fill a second
    queue: closing must have given back every watch of the first (watch_queue_clear), not
    only one, once an RCU grace period passed (fill_to waits that out)."""
    become(uid)
    keys = make_keys(LIMIT + 1)
    r, w = uapi.notification_pipe(os.O_NONBLOCK)
    first = fill_to(r, keys, LIMIT)
    os.close(r)
    os.close(w)
    r, _ = uapi.notification_pipe(os.O_NONBLOCK)
    second = fill_to(r, keys, LIMIT)
    return {"first": first, "second": second, "next": refused(r, keys[LIMIT])}


@needs_root
def test_closing_a_queue_gives_back_every_watch_it_had(watch_queue_kernel):
    got = in_child(child_close_and_refill, CLOSE_UID)
    assert got == {"first": LIMIT, "second": LIMIT, "next": errno.EAGAIN}


def child_two_processes(uid, held):
    """Hold `held` watches here, and let a grandchild of the same uid fill its own queue."""
    become(uid)
    keys = make_keys(held)
    r, _ = uapi.notification_pipe(os.O_NONBLOCK)
    for k in keys:
        uapi.watch_key(k, r, 1)
    pid = os.fork()
    if pid == 0:
        code = 255
        try:
            gkeys = make_keys(LIMIT)
            gr, _ = uapi.notification_pipe(os.O_NONBLOCK)
            added = fill_to(gr, gkeys, LIMIT - held)
            code = added if refused(gr, gkeys[-1]) == errno.EAGAIN else 254
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@needs_root
def test_limit_is_shared_by_the_processes_of_a_uid(watch_queue_kernel):
    # Parent of the same uid holds 10 watches: the second process stops at 20.
    assert in_child(child_two_processes, NOBODY, 10) == LIMIT - 10


def child_recover(uid):
    become(uid)
    keys = make_keys(LIMIT + 2)
    r, _ = uapi.notification_pipe(os.O_NONBLOCK)
    uapi.set_size(r, 32)
    added = fill_to(r, keys, LIMIT)
    at_limit = refused(r, keys[LIMIT])
    uapi.unwatch_key(keys[0], r)
    removal = [str(x) for x in uapi.drain(r)]
    # The count drops in an RCU callback: retry, bounded.
    tries = 0
    deadline = time.monotonic() + SETTLE
    while True:
        tries += 1
        err = refused(r, keys[LIMIT])
        if err != errno.EAGAIN or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    return {"added": added, "at_limit": at_limit, "removal": removal, "rewatch": err,
            "again": refused(r, keys[LIMIT + 1]), "tries": tries}


@needs_root
def test_limit_recovers_after_a_removal(watch_queue_kernel):
    got = in_child(child_recover, NOBODY)
    print("re-watch accepted after", got["tries"], "tries")
    assert got["added"] == LIMIT
    assert got["at_limit"] == errno.EAGAIN
    assert len(got["removal"]) == 1 and got["removal"][0].startswith("META/REMOVAL id=1 ")
    assert got["rewatch"] == 0
    assert got["again"] == errno.EAGAIN


def child_accounting(uid):
    become(uid, nofile=1024)
    sizes = []
    for _ in range(3):
        r, w = uapi.notification_pipe()
        sizes.append(uapi.pipe_size(r))
        uapi.set_size(r, 1)
        sizes.append(uapi.pipe_size(r))
        os.close(r)
        os.close(w)
    r, w = os.pipe()
    try:
        plain = uapi.pipe_size(r)
        grown = fcntl.fcntl(w, uapi.F_SETPIPE_SZ, 131072)
    finally:
        os.close(r)
        os.close(w)
    return {"sizes": sizes, "plain": plain, "grown": grown, "uid": os.getuid()}


@needs_root
def test_notification_pipes_leave_the_uids_pipe_accounting_intact(watch_queue_kernel):
    got = in_child(child_accounting, ACCOUNTING_UID)
    assert got == {"sizes": [65536, 4096] * 3, "plain": 65536, "grown": 131072, "uid": ACCOUNTING_UID}


def child_over_the_soft_limit(uid):
    """Two notification pipes made over the soft limit (2 slots each, F_GETPIPE_SZ 8192), one
    sized to 64 notes (2 pages: what it has), one to 65 (3 pages: more)."""
    become(uid, nofile=1024)
    got = {}
    for notes in (64, 65):
        r, w = uapi.notification_pipe(os.O_NONBLOCK)
        try:
            got[f"made-{notes}"] = uapi.pipe_size(r)
            try:
                uapi.set_size(r, notes)
                got[f"set-{notes}"] = uapi.pipe_size(r)
            except OSError as e:
                got[f"set-{notes}"] = errno.errorcode[e.errno]
        finally:
            os.close(r)
            os.close(w)
    return got


@needs_root
def test_set_size_over_the_soft_pipe_limit_is_eperm_only_to_grow(watch_queue_kernel):
    """An unprivileged uid over fs.pipe-user-pages-soft gets 2-slot pipes; SET_SIZE may keep
    what the pipe has (2 pages) but not grow it: EPERM (watch_queue.md §1.1)."""
    with open(PIPE_PAGES_SOFT) as fh:
        old = fh.read().strip()
    with open(PIPE_PAGES_SOFT, "w") as fh:
        fh.write("1")
    try:
        got = in_child(child_over_the_soft_limit, SOFT_LIMIT_UID)
    finally:
        with open(PIPE_PAGES_SOFT, "w") as fh:
            fh.write(old)
    assert got == {"made-64": 8192, "set-64": 8192, "made-65": 8192, "set-65": "EPERM"}
