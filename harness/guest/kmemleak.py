"""kmemleak in the guest, done the careful way (as syzkaller's executor does it).

Boot leaves objects kmemleak would call leaks (init code, early allocations): only objects
allocated after the first test began count (their jiffies in the report). At the end: wait
past kmemleak's minimum object age (5 s in mm/kmemleak.c, MSECS_MIN_AGE), scan twice (an object must stay unreferenced across scans),
read, then scan and read again and keep only the objects seen both times, so that memory in
flight (RCU callbacks, deferred frees) is not reported. Confirmed reports go to the kernel log
between markers, where the host's parser titles them and attributes them.
"""

import os
import re
import time

PATH = "/sys/kernel/debug/kmemleak"
MIN_AGE_S = 5.0
_OBJ = re.compile(r"^unreferenced object (0x[0-9a-f]+)", re.M)


def _mount_debugfs():
    if os.path.exists(PATH) or not os.path.isdir("/sys/kernel/debug"):
        return
    os.system("mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null")


def available(path=None):
    path = path or PATH
    if path == PATH:
        _mount_debugfs()
    try:
        with open(path):
            return True
    except OSError:  # absent, or kmemleak disabled itself (EPERM/EBUSY after an error)
        return False


def _command(cmd, path):
    with open(path, "w") as fh:
        fh.write(cmd)


def _read(path):
    with open(path) as fh:
        return fh.read()


# '  comm "repro", pid 210, jiffies 4294893504 (age 5.120s)' in 6.1; newer kernels drop the age.
_JIFFIES = re.compile(r"^\s+comm \".*\", pid -?\d+, jiffies (\d+)", re.M)


def jiffies_now(hz, uptime_path="/proc/uptime", timer_list="/proc/timer_list"):
    """The kernel's jiffies: /proc/timer_list prints them. Without it, from the uptime (they
    start at INITIAL_JIFFIES, (u32)(-300 * HZ)) minus 2 s, as they start up to a second or
    so after the boot clock (seen under TCG: 0.5-0.9 s)."""
    try:
        with open(timer_list) as fh:
            for line in fh:
                if line.startswith("jiffies: "):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    with open(uptime_path) as fh:
        up = float(fh.read().split()[0])
    return (2**32 - 300 * hz) + int((up - 2.0) * hz)


def born_before(block, jiffies):
    """Whether the object of a report block was allocated before JIFFIES (unknown: no)."""
    m = _JIFFIES.search(block)
    return bool(m) and int(m.group(1)) < jiffies


def split(text):
    """kmemleak's report text -> {object address: its block}."""
    starts = [m.start() for m in _OBJ.finditer(text)]
    blocks = {}
    for i, s in enumerate(starts):
        block = text[s:starts[i + 1] if i + 1 < len(starts) else len(text)].rstrip("\n")
        blocks[_OBJ.match(block).group(1)] = block
    return blocks


def confirmed_leaks(path=None, since=None, sleep=time.sleep, clock=time.monotonic, born_after=None):
    """Blocks for the objects reported by two reads separated by a scan, in report order.

    With BORN_AFTER (jiffies), objects allocated before it are not counted: what boot and
    the agent's start left behind."""
    path = path or PATH
    if since is not None:
        wait = MIN_AGE_S - (clock() - since)
        if wait > 0:
            sleep(wait)
    _command("scan", path)
    _command("scan", path)
    first = split(_read(path))
    if born_after is not None:
        first = {a: b for a, b in first.items() if not born_before(b, born_after)}
    if not first:
        return []
    _command("scan", path)
    second = split(_read(path))
    _command("clear", path)  # reported once, never again in this VM
    return [b for addr, b in first.items() if addr in second]
