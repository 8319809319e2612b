"""pytest fixtures shared by guest-tests/ and other guest test directories."""

import errno
import os

import pytest

from harness.guest import uapi


@pytest.fixture(scope="session")
def watch_queue_kernel():
    """Skip (with the reason) on kernels without notification pipes."""
    try:
        r, w = uapi.notification_pipe()
    except OSError as e:
        if e.errno == errno.ENOPKG:
            pytest.skip("kernel has no CONFIG_WATCH_QUEUE (pipe2(O_NOTIFICATION_PIPE) -> ENOPKG)")
        raise
    os.close(r)
    os.close(w)
    if not uapi.has_notifications():
        pytest.skip("kernel has no CONFIG_KEY_NOTIFICATIONS (KEYCTL_CAPABILITIES)")


@pytest.fixture
def session_keyring(watch_queue_kernel):
    """A fresh anonymous session keyring for this process, and a keyring inside it."""
    uapi.join_session_keyring(None)
    return uapi.add_key("keyring", "wqh-test", None, uapi.KEY_SPEC_SESSION_KEYRING)


@pytest.fixture
def queue(watch_queue_kernel):
    """A non-blocking notification pipe (read end, write end), closed afterwards."""
    r, w = uapi.notification_pipe(os.O_NONBLOCK)
    yield r, w
    os.close(r)
    os.close(w)
