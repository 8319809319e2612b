"""kmemleak in the guest, done the careful way (as syzkaller's executor does it).

Boot leaves objects kmemleak would call leaks (init code, early allocations): they are scanned
and cleared before the first test. At the end: wait past kmemleak's minimum object age (5 s in
mm/kmemleak.c, MSECS_MIN_AGE), scan twice (an object must stay unreferenced across scans),
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


def flush_boot(path=None):
    """Forget what boot left behind: scan once so it is known, then mark it all reported."""
    path = path or PATH
    _command("scan", path)
    _command("clear", path)


def split(text):
    """kmemleak's report text -> {object address: its block}."""
    starts = [m.start() for m in _OBJ.finditer(text)]
    blocks = {}
    for i, s in enumerate(starts):
        block = text[s:starts[i + 1] if i + 1 < len(starts) else len(text)].rstrip("\n")
        blocks[_OBJ.match(block).group(1)] = block
    return blocks


def confirmed_leaks(path=None, since=None, sleep=time.sleep, clock=time.monotonic):
    """Blocks for the objects reported by two reads separated by a scan, in report order."""
    path = path or PATH
    if since is not None:
        wait = MIN_AGE_S - (clock() - since)
        if wait > 0:
            sleep(wait)
    _command("scan", path)
    _command("scan", path)
    first = split(_read(path))
    if not first:
        return []
    _command("scan", path)
    second = split(_read(path))
    _command("clear", path)  # reported once, never again in this VM
    return [b for addr, b in first.items() if addr in second]
