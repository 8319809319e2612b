"""pytest fixtures shared by guest-tests/ and other guest test directories, and in_child."""

import errno
import json
import os
import select
import signal
import time
import traceback

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


class Queue:
    """A notification pipe whose ends a test may close early; close() tolerates that."""

    def __init__(self, flags: int = os.O_NONBLOCK, size: int | None = None):
        self.r, self.w = uapi.notification_pipe(flags)
        if size is not None:
            uapi.set_size(self.r, size)

    def close_write(self):
        if self.w >= 0:
            os.close(self.w)
            self.w = -1

    def close(self):
        for fd in (self.r, self.w):
            if fd >= 0:
                os.close(fd)
        self.r = self.w = -1

    def drain(self):
        return uapi.drain(self.r)


@pytest.fixture
def new_queue(watch_queue_kernel):
    """Factory: new_queue(size=None, flags=O_NONBLOCK) -> Queue; all closed afterwards."""
    made = []

    def make(size: int | None = None, flags: int = os.O_NONBLOCK) -> Queue:
        q = Queue(flags, size)
        made.append(q)
        return q

    yield make
    for q in made:
        q.close()


@pytest.fixture
def new_key(session_keyring):
    """Factory: new_key(desc=None, ring=None, payload=b"v0", ktype="user") -> serial, in the test keyring."""
    count = iter(range(1_000_000))

    def make(desc: str | None = None, ring: int | None = None, payload: bytes | None = b"v0",
             ktype: str = "user") -> int:
        if ktype == "keyring":
            payload = None
        return uapi.add_key(ktype, desc or f"wqh-{ktype}-{next(count)}", payload,
                            session_keyring if ring is None else ring)

    return make


FACTS = os.path.join(os.path.dirname(__file__), "..", "..", "guest-tests", "version_facts.yaml")


def _series(release: str) -> tuple[int, int]:
    major, minor = release.split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


@pytest.fixture(scope="session")
def version_fact():
    """version_fact(ID) -> what guest-tests/version_facts.yaml expects of fact ID on the running
    kernel's series (uname -r). A series newer than every one listed gets the newest; one
    between two listed series whose expectations differ is unknown: the test skips, naming
    the fact, never silently."""
    import yaml

    with open(FACTS) as f:
        facts = yaml.safe_load(f)["facts"]
    running = _series(os.uname().release)

    def get(fact_id: str) -> dict:
        expect = facts[fact_id]["expect"]
        listed = sorted(expect, key=_series)
        if str(running[0]) + "." + str(running[1]) in expect:
            return expect[f"{running[0]}.{running[1]}"]
        if running > _series(listed[-1]):
            return expect[listed[-1]]
        older = [s for s in listed if _series(s) < running]
        newer = [s for s in listed if _series(s) > running]
        if older and newer and expect[older[-1]] == expect[newer[0]]:
            return expect[older[-1]]
        pytest.skip(f"fact {fact_id} differs between {older[-1] if older else '-'} and "
                    f"{newer[0] if newer else '-'}; {os.uname().release} was not read "
                    "(guest-tests/version_facts.yaml)")
    return get


def in_child(fn, *args, timeout=30.0, what="child"):
    """Run fn(*args) in a forked child and return its JSON result; re-raise its failure here."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(r)
            try:
                out = {"ok": fn(*args)}
            except BaseException:
                out = {"error": traceback.format_exc()}
            data = json.dumps(out).encode()
            while data:
                data = data[os.write(w, data):]
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    deadline = time.monotonic() + timeout
    p = select.poll()
    p.register(r, select.POLLIN)
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not p.poll(int(left * 1000) + 1):
                os.kill(pid, signal.SIGKILL)
                pytest.fail(f"{what} did not finish within {timeout} s")
            chunk = os.read(r, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"child exit status {status:#x}"
    out = json.loads(b"".join(chunks))
    if "error" in out:
        pytest.fail(f"in the {what}:\n" + out["error"])
    return out["ok"]
