"""Child processes that never outlive wqh.

Every long-lived child (make, vng/QEMU) runs in its own process group, is
registered here, and is killed as a group on exit, on Ctrl-C and on SIGTERM.
Children also get PR_SET_PDEATHSIG so a SIGKILLed wqh does not leave them.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import subprocess
import time
from contextlib import contextmanager

_groups: set[int] = set()
_PR_SET_PDEATHSIG = 1


class Interrupted(BaseException):
    """Raised in the main thread when wqh gets SIGTERM/SIGINT."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _pdeathsig() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except OSError:
        pass


def child_setup() -> None:
    """preexec_fn for children: new session, die with us."""
    os.setsid()
    _pdeathsig()


def register(pgid: int) -> None:
    _groups.add(pgid)


def unregister(pgid: int) -> None:
    _groups.discard(pgid)


def kill_group(pgid: int, grace: float = 3.0) -> None:
    """SIGTERM the group, wait up to GRACE seconds, then SIGKILL what is left."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        _groups.discard(pgid)
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not group_alive(pgid):
            break
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _groups.discard(pgid)


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group, read from /proc.

    Never reaps: the owner of a child (pexpect, subprocess) must do its own waitpid.
    """
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            out.append(int(d))
    return out


def group_alive(pgid: int) -> bool:
    return bool(group_members(pgid))


def kill_all() -> None:
    for pgid in list(_groups):
        kill_group(pgid, grace=2.0)


_stopping = False


def stopping() -> bool:
    """True once wqh got a stop signal: worker threads start no new child."""
    return _stopping


def _on_signal(signum, frame):  # noqa: ARG001
    global _stopping
    _stopping = True
    # Kill children first so nothing is left even if the caller's cleanup is slow.
    kill_all()
    raise Interrupted(signum)


def install_handlers() -> None:
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    atexit.register(kill_all)


@contextmanager
def popen(cmd: list[str], **kw):
    """subprocess.Popen in its own group, registered, killed on the way out if alive."""
    p = subprocess.Popen(cmd, preexec_fn=child_setup, **kw)
    register(p.pid)
    try:
        yield p
    finally:
        if p.poll() is None:
            kill_group(p.pid)
            p.wait()
        elif group_alive(p.pid):
            kill_group(p.pid)  # grandchildren left behind
        unregister(p.pid)


def run(cmd: list[str], **kw) -> int:
    with popen(cmd, **kw) as p:
        return p.wait()
