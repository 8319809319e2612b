"""The contract of kernels built without the feature (watch_queue.md §0).

Each group skips, with the reason, on a kernel that has what it checks the absence of:
- CONFIG_WATCH_QUEUE=n: pipe2(O_NOTIFICATION_PIPE) ENOPKG, the ioctls ENOTTY, KEYCTL_WATCH_KEY EOPNOTSUPP;
- CONFIG_WATCH_QUEUE=y, CONFIG_KEY_NOTIFICATIONS=n: pipes work, KEYCTL_WATCH_KEY EOPNOTSUPP.
"""

import errno
import os

import pytest

from harness.guest import uapi


def _errno(fn, *args):
    with pytest.raises(OSError) as e:
        fn(*args)
    return e.value.errno


def _notification_pipes():
    """True if pipe2(O_NOTIFICATION_PIPE) works, False on ENOPKG; skips on anything else."""
    try:
        r, w = uapi.notification_pipe()
    except OSError as e:
        if e.errno == errno.ENOPKG:
            return False
        pytest.skip(f"pipe2(O_NOTIFICATION_PIPE) fails with {errno.errorcode.get(e.errno, e.errno)}: "
                    "a kernel that predates notification pipes")
    os.close(r)
    os.close(w)
    return True


def _keyctl_works():
    try:
        uapi.keyctl(uapi.KEYCTL_GET_KEYRING_ID, uapi.KEY_SPEC_SESSION_KEYRING, 1)
    except OSError as e:
        if e.errno == errno.ENOSYS:
            return False
        raise
    return True


@pytest.fixture(scope="module")
def no_watch_queue():
    if _notification_pipes():
        pytest.skip("kernel has CONFIG_WATCH_QUEUE (pipe2(O_NOTIFICATION_PIPE) works)")


@pytest.fixture(scope="module")
def watch_queue_without_key_notifications():
    if not _notification_pipes():
        pytest.skip("kernel has no CONFIG_WATCH_QUEUE (pipe2(O_NOTIFICATION_PIPE) -> ENOPKG)")
    if uapi.has_notifications():
        pytest.skip("kernel has CONFIG_KEY_NOTIFICATIONS (KEYCTL_CAPABILITIES)")


@pytest.fixture
def keys():
    """A fresh session keyring and a key in it; skips without CONFIG_KEYS."""
    if not _keyctl_works():
        pytest.skip("kernel has no CONFIG_KEYS (keyctl -> ENOSYS)")
    uapi.join_session_keyring(None)
    ring = uapi.add_key("keyring", "wqh-neg", None, uapi.KEY_SPEC_SESSION_KEYRING)
    return ring, uapi.add_key("user", "wqh-neg-key", b"v", ring)


# --- CONFIG_WATCH_QUEUE=n -------------------------------------------------------------


@pytest.mark.parametrize("extra", [0, os.O_CLOEXEC | os.O_NONBLOCK | os.O_DIRECT], ids=["plain", "all-flags"])
def test_notification_pipe_is_enopkg(no_watch_queue, extra):
    assert _errno(os.pipe2, uapi.O_NOTIFICATION_PIPE | extra) == errno.ENOPKG


def test_unknown_pipe2_flags_are_still_einval(no_watch_queue):
    # The flag check comes before pipe creation: EINVAL, not ENOPKG.
    assert _errno(os.pipe2, uapi.O_NOTIFICATION_PIPE | os.O_TRUNC) == errno.EINVAL


def test_watch_queue_ioctls_are_enotty(no_watch_queue):
    r, w = os.pipe()
    try:
        for fd in (r, w):
            assert _errno(uapi.ioctl, fd, uapi.IOC_WATCH_QUEUE_SET_SIZE, 1) == errno.ENOTTY
            assert _errno(uapi.set_filter, fd, [uapi.TypeFilter(uapi.WATCH_TYPE_KEY_NOTIFY)]) == errno.ENOTTY
            assert _errno(uapi.ioctl, fd, uapi.IOC_WATCH_QUEUE_SET_FILTER, 0) == errno.ENOTTY
        assert uapi.pipe_size(r) == 65536  # an ordinary pipe all the same
    finally:
        os.close(r)
        os.close(w)


def test_watch_key_is_eopnotsupp_without_watch_queue(no_watch_queue, keys):
    _, key = keys
    r, w = os.pipe()
    try:
        assert _errno(uapi.watch_key, key, r, 1) == errno.EOPNOTSUPP
        # The stub answers before any argument is looked at.
        assert _errno(uapi.keyctl, uapi.KEYCTL_WATCH_KEY, 0, -1, 256) == errno.EOPNOTSUPP
        assert _errno(uapi.unwatch_key, key, r) == errno.EOPNOTSUPP
    finally:
        os.close(r)
        os.close(w)
    assert not uapi.has_notifications()


# --- CONFIG_WATCH_QUEUE=y, CONFIG_KEY_NOTIFICATIONS=n ---------------------------------


def test_notification_pipe_works_without_key_notifications(watch_queue_without_key_notifications):
    r, w = uapi.notification_pipe(os.O_NONBLOCK)
    try:
        uapi.set_size(r, 1)
        assert uapi.pipe_size(r) == 4096
        uapi.set_filter(r, [uapi.TypeFilter(uapi.WATCH_TYPE_KEY_NOTIFY)])
        uapi.set_filter(r, None)
        assert _errno(uapi.set_size, r, 1) == errno.EBUSY
        assert _errno(os.write, w, b"x") == errno.EXDEV
        assert _errno(os.read, r, 4096) == errno.EAGAIN
    finally:
        os.close(r)
        os.close(w)
    pr, pw = os.pipe()
    try:
        assert _errno(uapi.set_size, pr, 1) == errno.ENODEV
    finally:
        os.close(pr)
        os.close(pw)


def test_watch_key_is_eopnotsupp_without_key_notifications(watch_queue_without_key_notifications, keys):
    ring, key = keys
    r, w = uapi.notification_pipe(os.O_NONBLOCK)
    try:
        uapi.set_size(r, 1)
        for k in (key, ring):
            assert _errno(uapi.watch_key, k, r, 1) == errno.EOPNOTSUPP
        assert _errno(uapi.keyctl, uapi.KEYCTL_WATCH_KEY, 0, -1, 256) == errno.EOPNOTSUPP
        assert _errno(uapi.unwatch_key, key, r) == errno.EOPNOTSUPP
        uapi.key_update(key, b"v2")
        assert _errno(os.read, r, 4096) == errno.EAGAIN
    finally:
        os.close(r)
        os.close(w)
