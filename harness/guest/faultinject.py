"""fail-nth fault injection from the guest (Documentation/fault-injection/fault-injection.rst).

`/proc/thread-self/fail-nth` makes the n-th allocation that passes the debugfs filters fail in
this thread's next syscalls; reading it back gives 0 once the fault was injected. 6.1's defaults
skip sleeping (GFP_KERNEL) and order-0 allocations, which are exactly the ones the queue makes,
so enable() turns those filters off.
"""

from __future__ import annotations

import ctypes
import os

DEBUGFS = "/sys/kernel/debug"
_SETTINGS = {
    "failslab/ignore-gfp-wait": "N",
    "failslab/verbose": "0",
    "fail_page_alloc/ignore-gfp-wait": "N",
    "fail_page_alloc/min-order": "0",
    "fail_page_alloc/verbose": "0",
}


def available() -> str | None:
    """None when fail-nth is usable here, else why not."""
    if not os.path.exists("/proc/thread-self/fail-nth"):
        return "kernel has no CONFIG_FAULT_INJECTION (/proc/thread-self/fail-nth)"
    if not os.path.isdir(f"{DEBUGFS}/failslab") or not os.path.isdir(f"{DEBUGFS}/fail_page_alloc"):
        return "kernel has no FAILSLAB/FAIL_PAGE_ALLOC debugfs entries"
    return None


def enable() -> None:
    for rel, value in _SETTINGS.items():
        with open(f"{DEBUGFS}/{rel}", "w") as f:
            f.write(value)


class FailNth:
    """One thread's fail-nth file, kept open so arming it costs a single pwrite."""

    def __init__(self):
        self.fd = os.open("/proc/thread-self/fail-nth", os.O_RDWR)

    def arm(self, n: int) -> None:
        os.pwrite(self.fd, str(n).encode(), 0)

    def injected(self) -> bool:
        """True when the armed fault was injected; disarms either way."""
        left = int(os.pread(self.fd, 32, 0).decode().strip() or "0")
        os.pwrite(self.fd, b"0", 0)
        return left == 0

    def close(self) -> None:
        os.close(self.fd)


def syscall_with_fault(nth: int, call) -> tuple[int, int, bool]:
    """Arm fail-nth, run call() (a ctypes call returning -1/errno), disarm.

    Returns (return value, errno, whether the fault was injected inside the call). Nothing
    between arming and the call makes a syscall, so the fault lands in that call.
    """
    f = FailNth()
    try:
        f.arm(nth)
        ctypes.set_errno(0)
        ret = call()
        err = ctypes.get_errno()
        return ret, err, f.injected()
    finally:
        f.close()

