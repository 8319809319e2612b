"""Symbolization of report frames (harness/symbolize.py).

The parsers are tested on the output formats of the tools; the end-to-end tests use a real
KASAN build of this machine when it is there (skipped elsewhere): a frame of
watch_queue_set_filter must come back as kernel/watch_queue.c with the right line and the
calls inlined at that address, through decode_stacktrace.sh and through addr2line alike.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from harness import build, report, symbolize
from harness.report import Frame, Report


def _kasan_debug_build() -> Path:
    """A finished KASAN build with debug info of the default tree in the cache, if any."""
    for d in sorted((build.cache_dir() / "builds").glob("*")):
        cfg = d / ".config"
        if (d / build.STAMP).exists() and (d / "vmlinux").is_file() and cfg.is_file():
            text = cfg.read_text(errors="replace")
            if "\nCONFIG_KASAN=y\n" in text and "\nCONFIG_DEBUG_INFO=y\n" in text:
                return d
    return Path("/nonexistent")


BUILD = _kasan_debug_build()
VMLINUX = BUILD / "vmlinux"
TREE = (BUILD / "source").resolve()  # make O= links the build to its tree


def test_parse_decoded_6_1_format():
    # decode_stacktrace.sh of 6.1: the inlined levels first, by file:line only
    line = ("watch_queue_set_filter (/b/../../src/l/include/linux/instrumented.h:42 "
            "/b/../../src/l/include/asm-generic/bitops/instrumented-non-atomic.h:28 "
            "/b/../../src/l/kernel/watch_queue.c:380) ")
    assert symbolize.parse_decoded(line) == [
        (None, "/b/../../src/l/include/linux/instrumented.h", 42),
        (None, "/b/../../src/l/include/asm-generic/bitops/instrumented-non-atomic.h", 28),
        ("watch_queue_set_filter", "/b/../../src/l/kernel/watch_queue.c", 380)]
    assert symbolize.parse_decoded("pipe_ioctl (fs/pipe.c:617 (discriminator 2)) mymod") == [
        ("pipe_ioctl", "fs/pipe.c", 617)]
    assert symbolize.parse_decoded("nosuch+0x1/0x2") == []  # not found: echoed as it came


def test_parse_addr2line():
    out = ("0xffffffff81266510\ninstrument_write\n/s/include/linux/instrumented.h:42\n"
           "___set_bit\n/s/include/asm-generic/bitops/instrumented-non-atomic.h:28\n"
           "watch_queue_set_filter\n/s/kernel/watch_queue.c:380 (discriminator 1)\n"
           "0xffffffff80000000\n??\n??:0\n")
    assert symbolize.parse_addr2line(out) == {
        0xffffffff81266510: [("instrument_write", "/s/include/linux/instrumented.h", 42),
                             ("___set_bit", "/s/include/asm-generic/bitops/instrumented-non-atomic.h", 28),
                             ("watch_queue_set_filter", "/s/kernel/watch_queue.c", 380)],
        0xffffffff80000000: []}


def test_inlined_calls_go_before_their_frame_and_titles_do_not_move():
    r = Report("KASAN: slab-out-of-bounds Write in f", "KASAN",
               frames=[Frame("f", 0x10, 0x20, section="header"), Frame("g", 0x4, 0x30, section="trace")])

    class Fake(symbolize.Symbolizer):
        def matches(self, keys):
            return True

        def locate(self, keys):
            return {("f", 0x10, 0x20, None): [symbolize.Loc("h", "include/h.h", 3),
                                               symbolize.Loc("f", "kernel/f.c", 10)]}

    Fake(Path("vmlinux")).symbolize([r])
    assert [(f.func, f.file, f.line, f.inline) for f in r.frames] == [
        ("h", "include/h.h", 3, True), ("f", "kernel/f.c", 10, False), ("g", None, None, False)]
    assert r.title == "KASAN: slab-out-of-bounds Write in f"


needs_build = pytest.mark.skipif(not (VMLINUX.is_file() and TREE.is_dir() and shutil.which("addr2line")),
                                 reason="no KASAN build with debug info on this machine")


def _function(name: str) -> tuple[int, int]:
    syms = symbolize.Symbolizer(VMLINUX).symbols()
    ((start, size),) = syms[name]
    return start, size


def _inlined_offset(start: int, size: int) -> tuple[int, list[tuple[str, str]]]:
    """An offset in the function where addr2line itself sees inlined calls, and its chain."""
    addrs = [start + off for off in range(0, size, 8)]
    out = subprocess.run(["addr2line", "-a", "-f", "-i", "-e", str(VMLINUX)],
                         input="\n".join(hex(a) for a in addrs), capture_output=True, text=True,
                         timeout=60).stdout
    for addr, chain in symbolize.parse_addr2line(out).items():
        if len(chain) > 1:
            return addr - start, [(fn, f) for fn, f, _ in chain]
    pytest.skip("no inlined call found in watch_queue_set_filter")


@needs_build
@pytest.mark.parametrize("use_script", [True, False], ids=["decode_stacktrace.sh", "addr2line"])
def test_real_vmlinux_frame_gets_file_line_and_inlined_calls(use_script):
    start, size = _function("watch_queue_set_filter")
    off, chain = _inlined_offset(start, size)
    text = "\n".join(f"[   10.000000] {ln}" for ln in [
        "=" * 66, f"BUG: KASAN: slab-out-of-bounds in watch_queue_set_filter+0x{off:x}/0x{size:x}",
        "Write of size 8 at addr ffff888003b9e7c0 by task python/53", "Call Trace:", " <TASK>",
        f" watch_queue_set_filter+0x{off:x}/0x{size:x}", " </TASK>", "=" * 66])
    (r,) = report.parse_text(text)
    sym = symbolize.Symbolizer.for_build(VMLINUX, use_script=use_script)
    assert sym.tree == TREE.resolve()
    t0 = time.monotonic()
    sym.symbolize([r])
    took = time.monotonic() - t0
    assert sym.error == ""
    trace = [f for f in r.frames if f.section == "trace"]
    assert [(f.func, f.inline) for f in trace] == [(fn, True) for fn, _ in chain[:-1]] + \
           [("watch_queue_set_filter", False)]
    assert trace[-1].file == "kernel/watch_queue.c"
    src = (TREE / "kernel" / "watch_queue.c").read_text().splitlines()
    first = next(i for i, ln in enumerate(src, 1) if re.match(r"long watch_queue_set_filter\(", ln))
    assert first <= trace[-1].line < first + 120
    assert all(not f.file.startswith("/") for f in trace)  # relative to the tree
    assert r.title == "KASAN: slab-out-of-bounds Write in watch_queue_set_filter"
    assert took < 10, f"symbolizing one report took {took:.1f}s"


@needs_build
def test_a_log_of_another_kernel_is_not_symbolized():
    start, size = _function("watch_queue_set_filter")
    r = Report("t", "T", frames=[Frame("watch_queue_set_filter", 0x10, size + 0x40, section="trace")])
    sym = symbolize.Symbolizer.for_build(VMLINUX)
    sym.symbolize([r])
    assert r.frames[0].file is None and "not the kernel of this log" in sym.error
