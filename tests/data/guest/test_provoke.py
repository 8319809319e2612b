"""Kernel reports on purpose, through lkdtm (CONFIG_LKDTM, kconfigs/crashkit.config), to capture
real console logs of each report kind for the parser's golden files (tests/data/reports/).

Each trigger runs in a child shell, so an oops kills the child and not the guest agent (with
oops=panic it ends the VM anyway; tests/data/scenarios/reports-*.yaml give those their own VM).
"""

import subprocess
import time

import pytest

DIRECT = "/sys/kernel/debug/provoke-crash/DIRECT"


def provoke(name, wait=True):
    p = subprocess.Popen(["sh", "-c", f"echo {name} > {DIRECT}"])
    if wait:
        p.wait(timeout=120)
    return p


@pytest.fixture(autouse=True, scope="module")
def lkdtm():
    subprocess.run(["mount", "-t", "debugfs", "debugfs", "/sys/kernel/debug"], capture_output=True)
    try:
        open(DIRECT, "w").close()
    except OSError as e:
        pytest.skip(f"kernel has no lkdtm ({DIRECT}: {e.strerror})")


@pytest.mark.parametrize("name", [
    "WARNING", "WARNING_MESSAGE", "REFCOUNT_INC_OVERFLOW", "REFCOUNT_DEC_ZERO",
    "SLAB_LINEAR_OVERFLOW", "READ_AFTER_FREE", "WRITE_AFTER_FREE", "SLAB_FREE_DOUBLE",
    "ARRAY_BOUNDS",  # SLAB_FREE_CROSS, OVERFLOW_SIGNED: nothing reports them in this kernel
])
def test_report_and_go_on(name):
    provoke(name)


def test_hung_task():
    provoke("HUNG_TASK", wait=False)  # sleeps in D state for ever
    time.sleep(50)  # hung task timeout 20 s, checked every 20 s


def test_spinlockup_then_panic():
    # Recursive spinlock: lockdep's report, then a CPU spinning with preemption off (soft
    # lockup, RCU stall); then end the VM.
    provoke("SPINLOCKUP", wait=False)
    time.sleep(60)
    provoke("PANIC", wait=False)
    time.sleep(30)


@pytest.mark.parametrize("name", ["BUG", "EXCEPTION", "ACCESS_NULL", "WRITE_KERN"])
def test_oops(name):
    provoke(name)


def test_softlockup_then_panic():
    # A CPU spinning with preemption off: the soft lockup detector (20 s here) and RCU's stall
    # detector report it; then end the VM.
    provoke("SOFTLOCKUP", wait=False)
    time.sleep(70)
    provoke("PANIC", wait=False)
    time.sleep(30)
