"""Error paths of the queue under fail-nth fault injection (kconfigs/fault-injection.config).

Each test walks n = 1, 2, ... failing the n-th allocation of one syscall until a call completes
with no fault injected, so every allocation the call makes fails once.
  a635415a06: a failed note page allocation in SET_SIZE freed the NULL entries of the page
              array too (syzbot: "KASAN: null-ptr-deref Read in __free_pages").
  03e1d60e17: after the ring was resized, a failed page-array, page or bitmap allocation made
              SET_SIZE return 0: a queue that silently drops everything.
  8a018eb55e: a failed watch_queue_init() in pipe2 leaked the new pipe (kmemleak: memory leak
              in alloc_pipe_info); the end-of-run leak check decides.
"""

import ctypes
import errno
import os

import pytest

from harness.guest import faultinject, uapi

MAX_POINTS = 64  # bound on the walk; SET_SIZE(512) makes about 19 allocations
SYS_pipe2 = 293


@pytest.fixture(scope="module")
def fail_nth():
    why = faultinject.available()
    if why:
        pytest.skip(why)
    faultinject.enable()


def _set_size(fd: int, notes: int):
    return lambda: uapi._syscall(ctypes.c_long(uapi.SYS_ioctl), ctypes.c_long(fd),
                                 ctypes.c_ulong(uapi.IOC_WATCH_QUEUE_SET_SIZE), ctypes.c_ulong(notes))


def test_set_size_fails_with_enomem_at_every_allocation(fail_nth, new_key):
    key = new_key()
    outcomes = []
    for n in range(1, MAX_POINTS + 1):
        r, w = uapi.notification_pipe(os.O_NONBLOCK)
        try:
            ret, err, injected = faultinject.syscall_with_fault(n, _set_size(r, 512))
            if not injected:
                assert ret == 0, f"n={n}: SET_SIZE failed with no fault injected: {os.strerror(err)}"
                break
            outcomes.append((n, ret, errno.errorcode.get(err, err) if ret else "ok"))
            if ret == 0:
                # A queue that claims its size must deliver; the bug leaves one that drops all.
                uapi.watch_key(key, r, 1)
                uapi.key_update(key, b"x")
                got = uapi.read_records(r)
                outcomes[-1] += (len(got),)
        finally:
            os.close(r)
            os.close(w)
    else:
        pytest.fail(f"SET_SIZE still hit injected faults after {MAX_POINTS} allocations")
    print("n, return, errno[, records delivered]:", outcomes)
    enomem = [o for o in outcomes if o[1:3] == (-1, "ENOMEM")]
    assert len(enomem) >= 18  # ring, page array, 16 pages, bitmap
    # Anything else must be an allocation with a fallback: a queue that works.
    assert [o for o in outcomes if o not in enomem and o[1:] != (0, "ok", 1)] == []


def _pipe2(fds):
    return lambda: uapi._syscall(ctypes.c_long(SYS_pipe2), fds,
                                 ctypes.c_long(uapi.O_NOTIFICATION_PIPE | os.O_NONBLOCK))


ROUNDS = 10


def test_pipe2_failing_at_every_allocation_frees_what_it_made(fail_nth):
    failed = set()
    for _ in range(ROUNDS):
        for n in range(1, MAX_POINTS + 1):
            fds = (ctypes.c_int * 2)()
            ret, err, injected = faultinject.syscall_with_fault(n, _pipe2(fds))
            if ret == 0:
                os.close(fds[0])
                os.close(fds[1])
            if not injected:
                assert ret == 0, f"n={n}: pipe2 failed with no fault injected: {os.strerror(err)}"
                break
            if ret != 0:  # (an allocation with a fallback may absorb the fault)
                assert err in (errno.ENOMEM, errno.ENFILE), (n, ret, os.strerror(err))
                failed.add(n)
        else:
            pytest.fail(f"pipe2 still hit injected faults after {MAX_POINTS} allocations")
    print("allocations of pipe2(O_NOTIFICATION_PIPE) that were failed:", sorted(failed))
    assert len(failed) >= 3  # inode, pipe_inode_info, ring, watch queue, files...
