"""Guest tests that end the VM on purpose, to check wqh's crash and hang verdicts.

Never run these on a host: one panics the kernel, the other goes silent.
"""

import os
import time

import pytest



@pytest.fixture(autouse=True)
def guest_only():
    if not os.path.exists("/proc/sys/kernel/sysrq") or os.uname().nodename != "virtme-ng":
        pytest.skip("only inside a wqh guest")


def test_panic():
    """sysrq 'c' panics the kernel: the verdict must be crash, with the panic as report."""
    with open("/proc/sysrq-trigger", "w") as f:
        f.write("c")
    time.sleep(30)


def test_silence():
    """No output at all: the host's no-output timeout must call it a hang."""
    time.sleep(3600)


def test_after():
    """Never reached: the VM is gone by then; must read as not run, never as pass."""
