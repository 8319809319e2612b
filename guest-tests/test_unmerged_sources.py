"""Notification sources of David Howells' series that were never merged (watch_queue.md, "Older/
other items"): device, USB, block, mount and superblock watches. Only keys post to the queue in
6.1 and 6.12 (uapi WATCH_TYPE__NR = 2). Each source is probed on the running kernel by the symbols
its patches added, read from /proc/kallsyms (not by syscall numbers: the series' numbers were
never assigned, and a number taken since by another call would give a false answer). A source is
reported as a skip with what was found, never as a failure: absent is what every tree has; present
means an out-of-tree patch that wqh has no test for."""

from pathlib import Path

import pytest

KALLSYMS = Path("/proc/kallsyms")

# source -> (what it was in the series, symbols its patches added: any one of them means present)
SOURCES = {
    "device": ("watch_devices(2) and a global device watch list",
               ["sys_watch_devices", "post_device_notification"]),
    "usb": ("USB device and bus notifications (WATCH_TYPE_USB_NOTIFY)",
            ["post_usb_device_notification", "post_usb_bus_notification"]),
    "block": ("block layer notifications (WATCH_TYPE_BLOCK_NOTIFY)", ["post_block_notification"]),
    "mount": ("watch_mount(2) and mount topology notifications",
              ["sys_watch_mount", "post_mount_notification"]),
    "superblock": ("watch_sb(2) and superblock notifications",
                   ["sys_watch_sb", "post_sb_notification"]),
}


def kernel_symbols() -> set[str]:
    """Every symbol name of the running kernel ('t', 'T', 'd', ... alike), without the
    syscall wrappers' arch prefix (__x64_sys_watch_sb -> sys_watch_sb)."""
    names = set()
    with KALLSYMS.open() as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3:
                name = parts[2]
                for prefix in ("__x64_", "__ia32_", "__arm64_", "__se_", "__do_"):
                    if name.startswith(prefix):
                        name = name[len(prefix):]
                        break
                names.add(name)
    return names


@pytest.fixture(scope="module")
def symbols():
    try:
        names = kernel_symbols()
    except OSError as e:
        pytest.skip(f"cannot probe: {KALLSYMS} is not readable ({e.strerror}); the kernel needs "
                    "CONFIG_KALLSYMS")
    if not any(n.startswith("sys_") for n in names):
        pytest.skip(f"cannot probe: {KALLSYMS} lists no syscalls (CONFIG_KALLSYMS_ALL off?)")
    # The probe is sound only where it finds what was merged: the queue's own posting function.
    if "__post_watch_notification" not in names:
        pytest.skip("the kernel has no CONFIG_WATCH_QUEUE (no __post_watch_notification in "
                    f"{KALLSYMS}): no source to probe for")
    return names


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_never_merged_source_is_reported_as_a_skip(source, symbols):
    what, syms = SOURCES[source]
    found = [s for s in syms if s in symbols]
    if found:
        pytest.skip(f"{source}: {what} is present in this kernel ({', '.join(found)}): an out-of-tree "
                    "patch; wqh has no test for it")
    pytest.skip(f"{source}: {what} was never merged; none of {', '.join(syms)} in this kernel's "
                f"{KALLSYMS}")
