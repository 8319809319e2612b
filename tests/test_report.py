"""The kernel log analyser (harness/report.py, harness/report_rules.py).

Two kinds of input:
- tests/data/reports/*.log: real console logs of our kernels, each headed by what it must give
  (see GOLDEN below). Adding a log with its header is all it takes to test it.
- SYNTHETIC sequences below, for the kinds of report we have no real log of yet: minimal line
  sequences written for these tests from the formats the 6.1 kernel prints (the source file is
  named with each). They are not captured output and never go to tests/data/reports/.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from harness import report
from harness import report_rules as rr
from harness.errors import InputError

DATA = Path(__file__).resolve().parent / "data" / "reports"
GOLDEN = sorted(DATA.glob("*.log"))


# --- golden logs -------------------------------------------------------------------------------


HEADER_KEYS = ("SOURCE", "TITLE", "ALT", "TYPE", "FRAME", "CORRUPTED", "TEST", "COUNT", "NO REPORT")
REPORT_KEYS = ("ALT", "TYPE", "FRAME", "CORRUPTED", "TEST", "COUNT")


def expectations(path: Path) -> list[dict] | None:
    """The header of a golden log: '# KEY: value' lines at its top, nothing else.

    '# TITLE: t' starts the expectation of one report (several for several reports, in the order
    they start); '# ALT:' (one of its alternative titles, repeatable), '# TYPE:', '# FRAME:' (the
    function the title names, '-' for none), '# CORRUPTED: true|false', '# TEST: owner' and
    '# COUNT: n' after it apply to it; '# NO REPORT' says the log must give none; '# SOURCE:' says
    where it comes from. Any other key is an error. None when the file has no header.
    """
    exp: list[dict] = []
    none = False
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.startswith("# "):
            break
        key, _, val = line[2:].partition(":")
        key, val = key.strip().upper(), val.strip()
        assert key in HEADER_KEYS, f"{path.name}:{n}: unknown header key '{key}' (known: {', '.join(HEADER_KEYS)})"
        if key == "NO REPORT":
            none = True
        elif key == "TITLE":
            exp.append({"title": val, "alt": []})
        elif key == "ALT":
            assert exp, f"{path.name}:{n}: ALT before any TITLE"
            exp[-1]["alt"].append(val)
        elif key in REPORT_KEYS:
            assert exp, f"{path.name}:{n}: {key} before any TITLE"
            exp[-1][key.lower()] = val
    assert not (none and exp), f"{path.name}: both NO REPORT and TITLE"
    if none:
        return []
    return exp or None


def header_of(path: Path, got: list) -> str:
    """The header --update-golden writes for what the parser says now (SOURCE lines kept)."""
    keep = [ln for ln in path.read_text(errors="replace").splitlines() if ln.startswith("# SOURCE:")]
    had_test = "# TEST:" in path.read_text(errors="replace")
    out = list(keep)
    if not got:
        out.append("# NO REPORT")
    for r in got:
        out.append(f"# TITLE: {r.title}")
        out += [f"# ALT: {a}" for a in r.alt_titles]
        out += [f"# TYPE: {r.type}", f"# FRAME: {r.frame or '-'}", f"# CORRUPTED: {str(r.corrupted).lower()}"]
        if had_test:
            out.append(f"# TEST: {r.test}")
        if r.count > 1:
            out.append(f"# COUNT: {r.count}")
    return "\n".join(out) + "\n"


def parse_golden(path: Path) -> list:
    """The reports of a golden log's body: its header is not part of the log."""
    data = path.read_bytes()
    pos = 0
    while data.startswith(b"# ", pos):
        pos = data.index(b"\n", pos) + 1
    return report.parse_text(data[pos:].decode("utf-8", "replace"))


@pytest.mark.parametrize("path", GOLDEN, ids=[p.name for p in GOLDEN])
def test_golden_log(path, request):
    got = report.merge(parse_golden(path))
    if request.config.getoption("--update-golden"):
        data = path.read_bytes()  # the log's bytes stay as they are (\r, invalid UTF-8)
        pos = 0
        while data.startswith(b"# ", pos):
            pos = data.index(b"\n", pos) + 1
        path.write_bytes(header_of(path, got).encode() + data[pos:])
    exp = expectations(path)
    assert exp is not None, f"{path.name}: no '# TITLE:' or '# NO REPORT' header"
    assert [r.title for r in got] == [e["title"] for e in exp]
    for r, e in zip(got, exp):
        missing = [a for a in e["alt"] if a not in r.alt_titles]
        assert not missing, f"{r.title}: alternative titles {missing} not among {r.alt_titles}"
        if "type" in e:
            assert r.type == e["type"], r.title
        if "frame" in e:
            assert (r.frame or "-") == e["frame"], r.title
        if "corrupted" in e:
            assert r.corrupted == (e["corrupted"].lower() == "true"), (r.title, r.corrupted_reason)
        if "test" in e:
            assert r.test == e["test"], r.title
        if "count" in e:
            assert r.count == int(e["count"]), r.title


def test_there_are_golden_logs_of_both_kinds():
    exps = [expectations(p) for p in GOLDEN]
    assert any(e == [] for e in exps), "a clean log that must give no report"
    assert any(e for e in exps), "a log with a report"


def test_real_null_deref_frames_and_owner():
    (r,) = report.parse_file(DATA / "null-deref-pipe-read.log")
    assert [f.func for f in r.frames if f.section == "rip"] == ["pipe_read"]
    # "? search_process_keyrings_rcu" is an unreliable frame: not kept
    assert [f.func for f in r.frames if f.section == "trace"] == [
        "vfs_read", "ksys_read", "do_syscall_64", "entry_SYSCALL_64_after_hwframe"]
    assert r.text.splitlines()[0].endswith("BUG: kernel NULL pointer dereference, address: 0000000000000000")
    assert r.text.splitlines()[-1].endswith("---[ end trace 0000000000000000 ]---")
    assert r.alt_titles == ["bad-access in pipe_read"]


def test_chunked_reading_gives_the_same_reports(monkeypatch):
    """A log read in small pieces (lines and look-backs across piece ends) parses the same."""
    path = DATA / "null-deref-pipe-read.log"
    with open(path, encoding="utf-8", errors="replace", newline="") as fh:  # keep "\r\r\n" as one end
        whole = report.parse_text(fh.read())
    monkeypatch.setattr(report, "CHUNK", 4096)
    pieces = report.parse_file(path)
    assert [(r.title, r.line, r.text, r.test) for r in pieces] == \
           [(r.title, r.line, r.text, r.test) for r in whole]


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError) as e:
        report.parse_file(tmp_path / "nope.log")
    assert e.value.exit_code == 3


# --- SYNTHETIC: minimal sequences in the kernel's formats --------------------------------------


def kmsg(*lines: str, t0: float = 100.0, caller: str | None = None) -> str:
    """SYNTHETIC console text: each line with a timestamp (and a printk caller id if given)."""
    pre = f"[{caller:>6}]" if caller else ""
    return "\n".join(f"[{t0 + i / 1e6:12.6f}]{pre} {ln}" for i, ln in enumerate(lines)) + "\n"


def one(text: str):
    rs = report.parse_text(text)
    assert len(rs) == 1, [r.title for r in rs]
    return rs[0]


REGS = ["RSP: 0018:ffffc900001f7d08 EFLAGS: 00010246",
        "RAX: 0000000000000000 RBX: ffff888003b9e780 RCX: 0000000000000000"]
CPU = ["CPU: 0 PID: 53 Comm: python Not tainted 6.1.192 #1",
       "Hardware name: QEMU Standard PC (Q35 + ICH9, 2009), BIOS 1.16.2-debian-1.16.2-1 04/01/2014"]
SYSCALL = [" pipe_ioctl+0x5a/0x120", " __x64_sys_ioctl+0x8c/0xd0", " do_syscall_64+0x3c/0x90",
           " entry_SYSCALL_64_after_hwframe+0x4b/0xb5"]
BANNER = "=" * 66


def kasan(bug: str, func: str, access: str | None, trace: list[str], banner_end: bool = True) -> list[str]:
    """SYNTHETIC mm/kasan/report.c: banner, header, access line, dump_stack, tracks, banner."""
    lines = [BANNER, f"BUG: KASAN: {bug} in {func}"]
    lines.append(f"{access} of size 8 at addr ffff888003b9e7c0 by task python/53" if access
                 else "Free of addr ffff888003b9e780 by task python/53")
    lines += ["", *CPU, "Call Trace:", " <TASK>", " dump_stack_lvl+0x45/0x5d", " print_report+0x170/0x46c",
              " kasan_report+0xb6/0x130", *trace, " </TASK>", "",
              "Allocated by task 53:", " kasan_save_stack+0x1e/0x40", " __kasan_kmalloc+0x7a/0x90",
              " __kmalloc+0x5a/0x150", " watch_queue_set_filter+0x26a/0x6a0", *SYSCALL, "",
              "The buggy address belongs to the object at ffff888003b9e780",
              " which belongs to the cache kmalloc-64 of size 64", "",
              "Memory state around the buggy address:",
              " ffff888003b9e680: fa fb fb fb fb fb fb fb fc fc fc fc fc fc fc fc",
              ">ffff888003b9e780: 00 00 00 00 00 00 00 00 fc fc fc fc fc fc fc fc",
              "                                           ^"]
    if banner_end:
        lines.append(BANNER)
    return lines


@pytest.mark.parametrize("bug", ["slab-out-of-bounds", "stack-out-of-bounds", "global-out-of-bounds",
                                 "use-after-free", "null-ptr-deref", "wild-memory-access",
                                 "vmalloc-out-of-bounds", "user-memory-access"])
@pytest.mark.parametrize("access", ["Read", "Write"])
def test_kasan_access_titles(bug, access):
    r = one(kmsg(*kasan(bug, "watch_queue_set_filter+0x3b0/0x6a0", access,
                        [" kasan_check_range+0x115/0x1a0", " watch_queue_set_filter+0x3b0/0x6a0", *SYSCALL])))
    assert r.title == f"KASAN: {bug} {access} in watch_queue_set_filter"
    assert (r.type, r.corrupted) == ("KASAN", False)
    assert r.alt_titles == ["bad-access in watch_queue_set_filter"]
    assert r.text.splitlines()[0].endswith(BANNER)  # the opening banner is kept with it
    assert {f.section for f in r.frames} >= {"header", "trace", "alloc"}


def test_kasan_header_in_a_helper_names_the_caller():
    r = one(kmsg(*kasan("use-after-free", "memcpy+0x22/0x60", "Read",
                        [" memcpy+0x22/0x60", " post_one_notification+0x1a/0x300", *SYSCALL])))
    assert r.title == "KASAN: use-after-free Read in post_one_notification"


@pytest.mark.parametrize("bug", ["double-free", "invalid-free"])
def test_kasan_free_bugs_skip_the_allocator(bug):
    r = one(kmsg(*kasan(bug, "kfree+0x8d/0x1a0", None,
                        [" kasan_report_invalid_free+0x9b/0xc0", " ____kasan_slab_free+0x180/0x1a0",
                         " __kmem_cache_free+0xcb/0x320", " kfree+0x8d/0x1a0",
                         " watch_queue_clear+0x1c3/0x280", *SYSCALL])))
    assert r.title == "KASAN: invalid-free in watch_queue_clear"  # syzbot: one title for both


def test_kasan_old_double_free_or_invalid_free_is_invalid_free():
    lines = kasan("double-free or invalid-free", "kfree+0x8d/0x1a0", None,
                  [" __kmem_cache_free+0xcb/0x320", " watch_queue_clear+0x1c3/0x280"])
    assert one(kmsg(*lines)).title == "KASAN: invalid-free in watch_queue_clear"


def test_kfence():
    # SYNTHETIC mm/kfence/report.c
    r = one(kmsg(BANNER, "BUG: KFENCE: use-after-free read in post_one_notification+0x1a/0x300", "",
                 "Use-after-free read at 0x000000009c3a2b1f (in kfence-#12):",
                 " post_one_notification+0x1a/0x300", " __post_watch_notification+0x2b4/0x3c0",
                 " key_update+0x1b2/0x220", "",
                 "kfence-#12: 0x000000009c3a2b1f-0x00000000e3b4a7c8, size=64, cache=kmalloc-64", "",
                 "allocated by task 53 on cpu 0 at 12.345678s:", " __kmalloc+0x5a/0x150",
                 " watch_queue_set_size+0x7c/0x290", "",
                 "freed by task 53 on cpu 0 at 12.355678s:", " kfree+0x8d/0x1a0", " watch_queue_clear+0x1c3/0x280",
                 "", *CPU, BANNER))
    assert (r.title, r.type, r.corrupted) == (
        "KFENCE: use-after-free read in post_one_notification", "KFENCE", False)
    assert [f.func for f in r.frames if f.section == "free"] == ["kfree", "watch_queue_clear"]


def test_kcsan():
    # SYNTHETIC kernel/kcsan/report.c
    r = one(kmsg(BANNER, "BUG: KCSAN: data-race in pipe_read / post_one_notification", "",
                 "write to 0xffff888003b9e7c0 of 4 bytes by task 54 on cpu 1:",
                 " post_one_notification+0x1a/0x300", " __post_watch_notification+0x2b4/0x3c0", "",
                 "read to 0xffff888003b9e7c0 of 4 bytes by task 53 on cpu 0:", " pipe_read+0xfd/0x420",
                 " vfs_read+0x2a6/0x2d0", "", "value changed: 0x00000001 -> 0x00000002", "",
                 "Reported by Kernel Concurrency Sanitizer on:", *CPU, BANNER))
    assert (r.title, r.type, r.corrupted) == (
        "KCSAN: data-race in pipe_read / post_one_notification", "KCSAN", False)


@pytest.mark.parametrize("bug,detail", [
    ("array-index-out-of-bounds", "index 1024 is out of range for type 'long unsigned int [1]'"),
    ("shift-out-of-bounds", "shift exponent 64 is too large for 64-bit type 'long unsigned int'"),
    ("signed-integer-overflow", "2147483647 + 1 cannot be represented in type 'int'"),
])
def test_ubsan(bug, detail):
    # SYNTHETIC lib/ubsan.c: prologue, detail, dump_stack(), epilogue
    r = one(kmsg("=" * 80, f"UBSAN: {bug} in kernel/watch_queue.c:380:3", detail, *CPU, "Call Trace:",
                 " <TASK>", " dump_stack_lvl+0x45/0x5d", " __ubsan_handle_out_of_bounds.cold+0x44/0x49",
                 " watch_queue_set_filter+0x5b2/0x6a0", *SYSCALL, " </TASK>", "=" * 80))
    assert (r.title, r.type, r.corrupted) == (f"UBSAN: {bug} in watch_queue_set_filter", "UBSAN", False)


def leak(addr: str, *frames: str) -> list[str]:
    """SYNTHETIC mm/kmemleak.c print_unreferenced() as the guest agent copies it to the log."""
    return [f"unreferenced object 0x{addr} (size 64):",
            '  comm "python", pid 53, jiffies 4294937296 (age 12.340s)',
            "  hex dump (first 32 bytes):",
            "    00 00 00 00 00 00 00 00 ff ff ff ff 00 00 00 00  ................",
            "    ab cd ef 00 00 00 00 00 00 00 00 00 00 00 00 00  ................",
            "  backtrace:", *[f"    [<ffffffff8127a2b6>] {f}" for f in frames]]


def test_kmemleak_titles_the_first_frame_outside_the_allocator_and_merges_repeats():
    chain = ("kmemleak_alloc+0x4a/0x80", "__kmem_cache_alloc_node+0x1b6/0x2c0", "__kmalloc+0x4a/0x150",
             "watch_queue_set_size+0xcc/0x290", "pipe_ioctl+0x7f/0x120", "__x64_sys_ioctl+0x8c/0xd0",
             "do_syscall_64+0x3c/0x90", "entry_SYSCALL_64_after_hwframe+0x63/0xcd")
    text = kmsg("wqh: begin wqh:kmemleak", *leak("ffff888003b9e780", *chain),
                *leak("ffff888003b9e800", *chain), "wqh: end wqh:kmemleak fail 17.522s")
    rs = report.parse_text(text)
    assert [r.title for r in rs] == ["memory leak in watch_queue_set_size"] * 2
    assert all(not r.corrupted and r.test == "wqh:kmemleak" and r.type == "LEAK" for r in rs)
    (m,) = report.merge(rs)
    assert m.count == 2
    assert rs[0].text.count("\n") == len(leak("x", *chain)) - 1  # the block, not the next one


def test_kmemleak_newer_backtrace_header():
    r = one(kmsg(*[ln.replace("  backtrace:", "  backtrace (crc 7f8c2d1a):")
                   for ln in leak("ffff888003b9e780", "__kmalloc+0x4a/0x150", "watch_queue_set_size+0xcc/0x290")]))
    assert r.title == "memory leak in watch_queue_set_size"


LOCKDEP_TAIL = ["", "stack backtrace:", *CPU, "Call Trace:", " <TASK>", " dump_stack_lvl+0x45/0x5d",
                " print_usage_bug.part.0+0x10a/0x130", " __lock_acquire+0x1a5a/0x2f20", " lock_acquire+0xd4/0x2c0",
                " pipe_write+0x10a/0x1460", " vfs_write+0xa0/0x390", " </TASK>"]


def lockdep(head: str, *body: str) -> list[str]:
    """SYNTHETIC kernel/locking/lockdep.c: blank, banner, header, ident, dashes, body, backtrace."""
    return ["", "=" * len(head), head, "6.1.192 #1 Not tainted", "-" * len(head), *body, *LOCKDEP_TAIL]


def test_lockdep_circular():
    r = one(kmsg(*lockdep(
        "WARNING: possible circular locking dependency detected",
        "python/53 is trying to acquire lock:",
        "ffff888003b9e468 (&pipe->mutex/1){+.+.}-{3:3}, at: pipe_write+0x10a/0x1460", "",
        "but task is already holding lock:",
        "ffff888003c1a0b8 (&wqueue->lock){+.+.}-{2:2}, at: post_one_notification+0x3c/0x300", "",
        "which lock already depends on the new lock.", "", "",
        "the existing dependency chain (in reverse order) is:", "",
        "-> #1 (&wqueue->lock){+.+.}-{2:2}:", "       lock_acquire+0xd4/0x2c0", "       _raw_spin_lock+0x2e/0x40",
        "       post_one_notification+0x3c/0x300", "",
        "other info that might help us debug this:", "", " Possible unsafe locking scenario:", "",
        "       CPU0                    CPU1", "       ----                    ----",
        "  lock(&wqueue->lock);", "                               lock(&pipe->mutex/1);", "",
        " *** DEADLOCK ***", "", "1 lock held by python/53:",
        " #0: ffff888003c1a0b8 (&wqueue->lock){+.+.}-{2:2}, at: post_one_notification+0x3c/0x300")))
    assert (r.title, r.type, r.corrupted) == ("possible deadlock in pipe_write", "LOCKDEP", False)
    assert r.text.splitlines()[-1].endswith("</TASK>")


def test_lockdep_recursive():
    r = one(kmsg(*lockdep(
        "WARNING: possible recursive locking detected",
        "python/53 is trying to acquire lock:",
        "ffff888003c1a0b8 (&wqueue->lock){+.+.}-{2:2}, at: remove_watch_from_object+0x9c/0x2a0", "",
        "but task is already holding lock:",
        "ffff888003c1a0b8 (&wqueue->lock){+.+.}-{2:2}, at: watch_queue_clear+0x6a/0x1c0", "",
        "other info that might help us debug this:")))
    assert r.title == "possible deadlock in remove_watch_from_object"


def test_lockdep_inconsistent_lock_state():
    r = one(kmsg(*lockdep(
        "WARNING: inconsistent lock state",
        "inconsistent {SOFTIRQ-ON-W} -> {IN-SOFTIRQ-W} usage.",
        "python/53 [HC0[0]:SC1[1]:HE1:SE0] takes:",
        "ffff888003c1a0b8 (&wqueue->lock){+.?.}-{2:2}, at: post_one_notification+0x3c/0x300",
        "{SOFTIRQ-ON-W} state was registered at:", "  lock_acquire+0xd4/0x2c0", "  _raw_spin_lock+0x2e/0x40",
        "  watch_queue_set_filter+0x1a5/0x6a0")))
    # syzbot names the stack of the task that took the lock inconsistently, not the "takes:" line
    assert r.title == "inconsistent lock state in pipe_write"


def test_lockdep_suspicious_rcu_usage():
    r = one(kmsg(*lockdep(
        "WARNING: suspicious RCU usage",
        "kernel/watch_queue.c:206 suspicious rcu_dereference_check() usage!", "",
        "other info that might help us debug this:", "", "", "rcu_scheduler_active = 2, debug_locks = 1",
        "no locks held by python/53.")[:-len(LOCKDEP_TAIL)],
        "", "stack backtrace:", *CPU, "Call Trace:", " <TASK>", " dump_stack_lvl+0x45/0x5d",
        " lockdep_rcu_suspicious+0x14a/0x160", " __post_watch_notification+0x2b4/0x3c0",
        " key_update+0x1b2/0x220", " </TASK>"))
    assert r.title == "WARNING: suspicious RCU usage in __post_watch_notification"


def test_lockdep_bad_unlock_balance():
    r = one(kmsg(*lockdep(
        "WARNING: bad unlock balance detected!",
        "python/53 is trying to release lock (&pipe->mutex) at:",
        "[<ffffffff812a1b3f>] pipe_read+0x2f/0x420", "but there are no more locks to release!", "",
        "other info that might help us debug this:", "no locks held by python/53.")))
    assert r.title == "WARNING: bad unlock balance in pipe_read"
    assert r.alt_titles == []  # syzbot computes none for it


def warn(src: str, func: str, rip: str, trace: list[str], message: str | None = None) -> list[str]:
    """SYNTHETIC kernel/panic.c __warn() reached through report_bug(): cut here, message, regs, trace."""
    return ["------------[ cut here ]------------", *([message] if message else []),
            f"WARNING: CPU: 0 PID: 53 at {src} {func}", "Modules linked in:", *CPU, f"RIP: 0010:{rip}",
            "Code: 48 89 df e8 6a 2e 1c 00 <0f> 0b eb 8d 48 89 df", *REGS, "Call Trace:", " <TASK>", *trace,
            " </TASK>", "---[ end trace 0000000000000000 ]---"]


def test_warning():
    r = one(kmsg(*warn("kernel/watch_queue.c:250", "post_one_notification+0x2a1/0x300",
                       "post_one_notification+0x2a1/0x300", [" __post_watch_notification+0x2b4/0x3c0", *SYSCALL])))
    assert (r.title, r.type, r.corrupted) == ("WARNING in post_one_notification", "WARNING", False)
    assert r.text.splitlines()[0].endswith("[ cut here ]------------")
    head = [f for f in r.frames if f.section == "header"][0]
    assert (head.file, head.line) == ("kernel/watch_queue.c", 250)


def test_warning_refcount():
    r = one(kmsg(*warn("lib/refcount.c:28", "refcount_warn_saturate+0xba/0x110",
                       "refcount_warn_saturate+0xba/0x110",
                       [" put_watch_queue+0x5f/0x70", " watch_queue_clear+0x1c3/0x280", *SYSCALL],
                       message="refcount_t: underflow; use-after-free.")))
    assert r.title == "WARNING: refcount bug in put_watch_queue"
    assert "refcount_t: underflow" in r.text


def test_warning_odebug():
    r = one(kmsg(*warn("lib/debugobjects.c:505", "debug_print_object+0x8a/0xb0", "debug_print_object+0x8a/0xb0",
                       [" debug_check_no_obj_freed+0x1f4/0x240", " kfree+0xcd/0x1a0",
                        " watch_queue_clear+0x1c3/0x280", *SYSCALL],
                       message="ODEBUG: free active (active state 0) object: ffff888003b9e780 object type: "
                               "rcu_head hint: 0x0")))
    assert r.title == "WARNING: ODEBUG bug in watch_queue_clear"


def oops(header: list[str], rip: str, trace: list[str]) -> list[str]:
    """SYNTHETIC arch/x86 die(): header lines, regs with RIP, trace, end trace, the summary."""
    return [*header, *CPU, f"RIP: 0010:{rip}", "Code: 48 8b 00 <48> 85 c0", *REGS, "Call Trace:", " <TASK>",
            *trace, " </TASK>", "Modules linked in:", "---[ end trace 0000000000000000 ]---", f"RIP: 0010:{rip}",
            *REGS]


def test_kernel_bug_at_with_its_invalid_opcode_is_one_report():
    r = one(kmsg(*oops(["------------[ cut here ]------------", "kernel BUG at kernel/watch_queue.c:123!",
                        "invalid opcode: 0000 [#1] PREEMPT SMP KASAN"],
                       "post_one_notification+0x2a1/0x300", [" __post_watch_notification+0x2b4/0x3c0", *SYSCALL])))
    assert (r.title, r.type, r.corrupted) == ("kernel BUG in post_one_notification", "BUG", False)
    assert r.alt_titles == []


def test_page_fault():
    r = one(kmsg(*oops(["BUG: unable to handle page fault for address: ffffc90000a3f000",
                        "#PF: supervisor write access in kernel mode",
                        "#PF: error_code(0x0002) - not-present page",
                        "PGD 100000067 P4D 100000067 PUD 0", "Oops: 0002 [#1] PREEMPT SMP KASAN"],
                       "memset_erms+0x9/0x10", [" watch_queue_set_size+0x1a1/0x290", *SYSCALL])))
    assert r.title == "BUG: unable to handle kernel paging request in watch_queue_set_size"


def test_gpf_with_kasan_null_ptr_deref_companion():
    r = one(kmsg(*oops(["general protection fault, probably for non-canonical address 0xdffffc0000000002: "
                        "0000 [#1] PREEMPT SMP KASAN",
                        "KASAN: null-ptr-deref in range [0x0000000000000010-0x0000000000000017]"],
                       "watch_queue_set_size+0x7c/0x290", SYSCALL)))
    assert (r.title, r.type) == ("general protection fault in watch_queue_set_size", "GPF")
    assert r.alt_titles == ["bad-access in watch_queue_set_size"]


@pytest.mark.parametrize("head,title", [("invalid opcode: 0000 [#1] PREEMPT SMP", "invalid opcode in"),
                                        ("divide error: 0000 [#1] PREEMPT SMP KASAN", "divide error in")])
def test_traps(head, title):
    r = one(kmsg(*oops([head], "watch_queue_set_size+0x1a1/0x290", SYSCALL)))
    assert (r.title, r.type) == (f"{title} watch_queue_set_size", "BUG")


def test_oops_then_fatal_exception_panic_is_one_report():
    lines = oops(["BUG: kernel NULL pointer dereference, address: 0000000000000000", "Oops: 0000 [#1] SMP"],
                 "pipe_read+0xfd/0x420", [" vfs_read+0x2a6/0x2d0", *SYSCALL])
    r = one(kmsg(*lines, "Kernel panic - not syncing: Fatal exception", "Kernel Offset: disabled"))
    assert r.title == "BUG: unable to handle kernel NULL pointer dereference in pipe_read"
    assert "Fatal exception" in r.text and not r.corrupted


def test_a_fatal_exception_alone_means_the_header_was_lost():
    r = one(kmsg("Kernel panic - not syncing: Fatal exception", "Kernel Offset: disabled"))
    assert (r.title, r.type, r.corrupted, r.corrupted_reason) == \
           ("kernel panic: Fatal exception", "PANIC", True, "only a fragment of a report")


def test_warning_with_panic_on_warn_ends_with_the_log():
    lines = warn("kernel/watch_queue.c:250", "post_one_notification+0x2a1/0x300",
                 "post_one_notification+0x2a1/0x300", [" __post_watch_notification+0x2b4/0x3c0"])
    i = lines.index("Call Trace:")
    lines[i:i] = ["Kernel panic - not syncing: kernel: panic_on_warn set ..."]
    r = one(kmsg(*lines[:-1]))  # panic: no "end trace", the log just stops
    assert (r.title, r.corrupted) == ("WARNING in post_one_notification", False)


def test_hung_task():
    # SYNTHETIC kernel/hung_task.c + sched_show_task()
    r = one(kmsg("INFO: task python:54 blocked for more than 122 seconds.", "      Not tainted 6.1.192 #1",
                 '"echo 0 > /proc/sys/kernel/hung_task_timeout_secs" disables this message.',
                 "task:python          state:D stack:0     pid:54    ppid:53     flags:0x00004002",
                 "Call Trace:", " <TASK>", " __schedule+0x2e5/0x870", " schedule+0x5d/0xd0",
                 " schedule_preempt_disabled+0x14/0x20", " __mutex_lock.constprop.0+0x3a5/0x680",
                 " pipe_read+0x4b/0x420", " vfs_read+0x2a6/0x2d0", " ksys_read+0x8e/0xd0", *SYSCALL[2:],
                 " </TASK>"))
    assert (r.title, r.type, r.corrupted) == ("INFO: task hung in pipe_read", "HANG", False)


def test_rcu_self_detected_stall_names_the_syscall():
    # SYNTHETIC kernel/rcu/tree_stall.h + an NMI backtrace of the stalled CPU
    r = one(kmsg("rcu: INFO: rcu_preempt self-detected stall on CPU",
                 "rcu: \t0-....: (2100 ticks this GP) idle=1234/1/0x4000000000000000 softirq=1234/1234 fqs=1050",
                 "\t(t=2100 jiffies g=1234 q=56 ncpus=2)", "NMI backtrace for cpu 0", *CPU, "Call Trace:",
                 " <IRQ>", " dump_stack_lvl+0x45/0x5d", " nmi_cpu_backtrace.cold+0x30/0x70",
                 " rcu_dump_cpu_stacks+0xf3/0x130", " rcu_sched_clock_irq.cold+0x1cc/0x3a1",
                 " update_process_times+0x5f/0x90", " sysvec_apic_timer_interrupt+0x6d/0x90", " </IRQ>",
                 " <TASK>", " asm_sysvec_apic_timer_interrupt+0x16/0x20",
                 "RIP: 0010:post_one_notification+0x1a/0x300", "Code: 48 8b 00 <48> 85 c0", *REGS,
                 " __post_watch_notification+0x2b4/0x3c0", " key_update+0x1b2/0x220",
                 " __x64_sys_keyctl+0x1c1/0x2a0", " do_syscall_64+0x3c/0x90",
                 " entry_SYSCALL_64_after_hwframe+0x4b/0xb5", " </TASK>"))
    assert (r.title, r.type, r.corrupted) == ("INFO: rcu detected stall in sys_keyctl", "HANG", False)


def test_soft_lockup():
    # SYNTHETIC kernel/watchdog.c: the regs of the looping code, then its callers
    r = one(kmsg("watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [python:53]", "Modules linked in:", *CPU,
                 "RIP: 0010:post_one_notification+0x1a/0x300", "Code: 48 8b 00 <48> 85 c0", *REGS, "Call Trace:",
                 " <TASK>", " __post_watch_notification+0x2b4/0x3c0", " key_update+0x1b2/0x220",
                 " __x64_sys_keyctl+0x1c1/0x2a0", " do_syscall_64+0x3c/0x90",
                 " entry_SYSCALL_64_after_hwframe+0x4b/0xb5", " </TASK>"))
    assert (r.title, r.type) == ("BUG: soft lockup in sys_keyctl", "HANG")


def test_sleeping_function_called_from_invalid_context():
    # SYNTHETIC kernel/sched/core.c __might_resched()
    r = one(kmsg("BUG: sleeping function called from invalid context at kernel/locking/mutex.c:580",
                 "in_atomic(): 1, irqs_disabled(): 0, non_block: 0, pid: 53, name: python",
                 "preempt_count: 1, expected: 0", "RCU nest depth: 0, expected: 0", "1 lock held by python/53:",
                 " #0: ffff888003c1a0b8 (&wqueue->lock){+.+.}-{2:2}, at: post_one_notification+0x3c/0x300",
                 "Preemption disabled at:", "[<ffffffff81266b2c>] post_one_notification+0x3c/0x300", *CPU,
                 "Call Trace:", " <TASK>", " dump_stack_lvl+0x45/0x5d", " __might_resched.cold+0xd6/0x10f",
                 " __mutex_lock+0x49/0x680", " post_one_notification+0x8a/0x300", " key_update+0x1b2/0x220",
                 " </TASK>"))
    assert (r.title, r.type) == (
        "BUG: sleeping function called from invalid context in post_one_notification", "BUG")


def test_scheduling_while_atomic():
    # SYNTHETIC kernel/sched/core.c __schedule_bug()
    r = one(kmsg("BUG: scheduling while atomic: python/53/0x00000002", "Modules linked in:",
                 "Preemption disabled at:", "[<ffffffff81266b2c>] post_one_notification+0x3c/0x300", *CPU,
                 "Call Trace:", " <TASK>", " dump_stack_lvl+0x45/0x5d", " __schedule_bug.cold+0x8e/0x9b",
                 " __schedule+0x6f1/0x870", " schedule+0x5d/0xd0", " pipe_wait_readable+0xa9/0x100",
                 " pipe_read+0x2f0/0x420", " </TASK>"))
    assert r.title == "BUG: scheduling while atomic in pipe_wait_readable"


def test_every_format_has_a_golden_log():
    """Which formats fired is read off the golden logs themselves, not from a list kept by hand."""
    fired = {r.format for p in GOLDEN for r in parse_golden(p)}
    missing = sorted(set(rr.FORMATS_BY_NAME) - fired)
    assert not missing, f"formats no golden log exercises: {missing}"


# --- SYNTHETIC: cleaning, interleaving, corruption, attribution --------------------------------


def test_ansi_and_carriage_returns_are_ignored():
    text = kmsg(*warn("kernel/watch_queue.c:250", "post_one_notification+0x2a1/0x300",
                      "post_one_notification+0x2a1/0x300", [" key_update+0x1b2/0x220"]))
    noisy = "\r\n".join("\x1b[0;32m" + ln + "\x1b[0m" for ln in text.split("\n"))
    r = one(noisy)
    assert r.title == "WARNING in post_one_notification" and not r.corrupted
    assert "\x1b" not in r.text and "\r" not in r.text


def test_log_without_timestamps():
    r = one("\n".join(warn("kernel/watch_queue.c:250", "post_one_notification+0x2a1/0x300",
                           "post_one_notification+0x2a1/0x300", [" key_update+0x1b2/0x220"])))
    assert r.title == "WARNING in post_one_notification" and not r.corrupted


def test_syzbot_caller_ids_pull_a_report_together():
    """Another task's lines, and another task's report, inside a KASAN report: both come out whole."""
    k = kasan("use-after-free", "post_one_notification+0x1a/0x300", "Read",
              [" post_one_notification+0x1a/0x300", *SYSCALL])
    w = warn("kernel/watch_queue.c:250", "remove_watch_from_object+0x20/0x2a0",
             "remove_watch_from_object+0x20/0x2a0", [" key_gc_unused_keys+0x1a/0x100"])
    ka = kmsg(*k, caller="T100").splitlines()
    wa = kmsg(*w, t0=100.00001, caller="T7").splitlines()
    noise = kmsg("random: crng reseeded", t0=100.00002, caller="C1").splitlines()
    mixed = ka[:5] + noise + wa[:6] + ka[5:12] + wa[6:] + ka[12:]
    rs = report.parse_text("\n".join(mixed))
    assert [(r.title, r.corrupted) for r in rs] == [
        ("KASAN: use-after-free Read in post_one_notification", False),
        ("WARNING in remove_watch_from_object", False)]
    assert "T7" not in rs[0].text and "crng" not in rs[0].text and "T100" not in rs[1].text
    assert len(rs[0].text.splitlines()) == len(k)


def test_syzbot_symbolized_report():
    """SYNTHETIC, in the shape of a report copied from a syzbot page: caller ids, frames with
    file:line, the header repeated for each inlined level, [inline] frames (never in titles)."""
    lines = [BANNER,
             "BUG: KASAN: slab-out-of-bounds in instrument_write include/linux/instrumented.h:42 [inline]",
             "BUG: KASAN: slab-out-of-bounds in ___set_bit"
             " include/asm-generic/bitops/instrumented-non-atomic.h:28 [inline]",
             "BUG: KASAN: slab-out-of-bounds in watch_queue_set_filter+0x3b0/0x6a0 kernel/watch_queue.c:380",
             "Write of size 8 at addr ffff888003b9e7c0 by task syz-executor.0/5071", "", *CPU, "Call Trace:",
             " <TASK>", " __dump_stack lib/dump_stack.c:88 [inline]",
             " dump_stack_lvl+0xd9/0x150 lib/dump_stack.c:106", " print_report mm/kasan/report.c:284 [inline]",
             " kasan_report+0xb6/0x130 mm/kasan/report.c:495",
             " instrument_write include/linux/instrumented.h:42 [inline]",
             " ___set_bit include/asm-generic/bitops/instrumented-non-atomic.h:28 [inline]",
             " watch_queue_set_filter+0x3b0/0x6a0 kernel/watch_queue.c:380",
             " pipe_ioctl+0x5a/0x120 fs/pipe.c:617", " vfs_ioctl fs/ioctl.c:51 [inline]",
             " __do_sys_ioctl fs/ioctl.c:870 [inline]", " __x64_sys_ioctl+0x8c/0xd0 fs/ioctl.c:856",
             " </TASK>", "", "Allocated by task 5071:", " __kmalloc+0x5a/0x150 mm/slab_common.c:968",
             " watch_queue_set_filter+0x26a/0x6a0 kernel/watch_queue.c:366", BANNER]
    r = one(kmsg(*lines, caller="T5071"))
    assert (r.title, r.corrupted) == ("KASAN: slab-out-of-bounds Write in watch_queue_set_filter", False)
    head = [(f.func, f.inline, f.file, f.line) for f in r.frames if f.section == "header"]
    assert head == [("instrument_write", True, "include/linux/instrumented.h", 42),
                    ("___set_bit", True, "include/asm-generic/bitops/instrumented-non-atomic.h", 28),
                    ("watch_queue_set_filter", False, "kernel/watch_queue.c", 380)]
    trace = [f for f in r.frames if f.section == "trace"]
    assert (trace[0].func, trace[0].inline) == ("__dump_stack", True)
    assert ("watch_queue_set_filter", "kernel/watch_queue.c", 380) in [(f.func, f.file, f.line) for f in trace]


def test_user_space_lines_never_start_a_report():
    """In a timestamped log, pytest's own output (no timestamp) is not the kernel's."""
    text = kmsg("wqh: begin t::a") + "BUG: this is a test's print\nWARNING: CPU: 0 PID: 1 at x.c:1 f+0x1/0x2\n"
    assert report.parse_text(text + kmsg("wqh: end t::a pass 0.1s")) == []


def test_a_report_cut_by_another_keeps_its_title():
    k = kasan("use-after-free", "post_one_notification+0x1a/0x300", "Read",
              [" post_one_notification+0x1a/0x300"], banner_end=False)[:12]
    w = warn("kernel/watch_queue.c:250", "post_one_notification+0x2a1/0x300",
             "post_one_notification+0x2a1/0x300", [" key_update+0x1b2/0x220"])
    rs = report.parse_text(kmsg(*k, *w))
    assert [(r.title, r.corrupted_reason) for r in rs] == [
        ("KASAN: use-after-free Read in post_one_notification", ""),  # its stack was whole
        ("WARNING in post_one_notification", "")]


def test_a_log_ending_inside_a_report():
    k = kasan("slab-out-of-bounds", "watch_queue_set_filter+0x3b0/0x6a0", "Write",
              [" watch_queue_set_filter+0x3b0/0x6a0"], banner_end=False)
    r = one(kmsg(*k))  # only the closing banner is missing: nothing that matters
    assert (r.title, r.corrupted) == ("KASAN: slab-out-of-bounds Write in watch_queue_set_filter", False)
    r = one(kmsg(*k[:k.index("Call Trace:") + 1]))  # cut before its stack
    assert (r.title, r.corrupted, r.corrupted_reason) == (
        "KASAN: slab-out-of-bounds Write in watch_queue_set_filter", True, "stack cut off after its first line")


def test_a_report_without_any_stack_has_no_frames():
    r = one(kmsg("------------[ cut here ]------------",
                 "WARNING: CPU: 0 PID: 53 at kernel/watch_queue.c:250 post_one_notification+0x2a1/0x300",
                 "---[ end trace 0000000000000000 ]---"))
    assert (r.title, r.corrupted_reason, r.frame) == ("WARNING in corrupted", "no frames", "")


def test_owner_is_boot_the_test_between_its_markers_or_teardown():
    w = warn("kernel/watch_queue.c:250", "post_one_notification+0x2a1/0x300",
             "post_one_notification+0x2a1/0x300", [" key_update+0x1b2/0x220"])
    text = (kmsg(*w) + "tests/t.py::test_a " + kmsg("wqh: begin tests/t.py::test_a", *w)
            + "PASSED" + kmsg("wqh: end tests/t.py::test_a pass 0.1s", *w))
    rs = report.parse_text(text)
    assert [r.test for r in rs] == ["boot", "tests/t.py::test_a", "teardown"]
    assert [r.count for r in report.merge(rs)] == [1, 1, 1]
    assert [(r.test, r.count) for r in report.merge(rs + rs)] == [
        ("boot", 2), ("tests/t.py::test_a", 2), ("teardown", 2)]


def test_pytest_output_glued_to_a_marker_is_not_part_of_the_test_id():
    # Seen on a real console: pytest's "collecting ... collected 1 item" around the kmsg line.
    w = warn("kernel/watch_queue.c:250", "post_one_notification+0x2a1/0x300",
             "post_one_notification+0x2a1/0x300", [" key_update+0x1b2/0x220"])
    text = ("collecting ... " + kmsg("wqh: begin tests/t.py::test_a .collected 1 item", *w)
            + kmsg("wqh: end tests/t.py::test_a crash 0.1s .", *w))
    assert [r.test for r in report.parse_text(text)] == ["tests/t.py::test_a", "teardown"]
    # An agent without the tail: the id runs into the glued text, as before.
    old = "collecting ... " + kmsg("wqh: begin tests/t.py::test_acollected 1 item", *w)
    assert [r.test for r in report.parse_text(old)] == ["tests/t.py::test_acollected"]


def test_a_marker_inside_a_report_cuts_it():
    k = kasan("slab-out-of-bounds", "watch_queue_set_filter+0x3b0/0x6a0", "Write",
              [" watch_queue_set_filter+0x3b0/0x6a0"])
    text = kmsg("wqh: begin t::a", *k[:8], "wqh: end t::a pass 0.1s", *k[8:])
    r = one(text)
    assert (r.test, r.corrupted_reason) == ("t::a", "stack cut off after its first line")


def test_merge_keeps_an_uncorrupted_copy():
    k = kasan("slab-out-of-bounds", "watch_queue_set_filter+0x3b0/0x6a0", "Write",
              [" watch_queue_set_filter+0x3b0/0x6a0"])
    w = warn("kernel/watch_queue.c:250", "post_one_notification+0x2a1/0x300",
             "post_one_notification+0x2a1/0x300", [" key_update+0x1b2/0x220"])
    rs = report.parse_text(kmsg(*k[:10], *w, *k))
    (m, _) = report.merge(rs)
    assert (m.count, m.corrupted, m.line) == (2, False, rs[0].line)


@pytest.mark.parametrize("line,frame", [
    (" pipe_read+0xfd/0x420", ("pipe_read", 0xfd, 0x420, None, None, None, False)),
    (" wq_test_fn+0x1a/0x40 [wq_test]", ("wq_test_fn", 0x1a, 0x40, "wq_test", None, None, False)),
    (" wq_test_fn+0x1a/0x40 [wq_test 1f2e3d4c]", ("wq_test_fn", 0x1a, 0x40, "wq_test", None, None, False)),
    ("    [<ffffffff8127a2b6>] __kmalloc+0x4a/0x150", ("__kmalloc", 0x4a, 0x150, None, None, None, False)),
    (" __handle_sysrq.cold+0x3f/0x10b", ("__handle_sysrq.cold", 0x3f, 0x10b, None, None, None, False)),
    (" pipe_ioctl+0x5a/0x120 fs/pipe.c:617", ("pipe_ioctl", 0x5a, 0x120, None, "fs/pipe.c", 617, False)),
    (" vfs_ioctl fs/ioctl.c:51 [inline]", ("vfs_ioctl", None, None, None, "fs/ioctl.c", 51, True)),
    ("pipe_ioctl (fs/pipe.c:617)", ("pipe_ioctl", None, None, None, "fs/pipe.c", 617, False)),
    (" ? search_process_keyrings_rcu+0xe/0xc0", None),  # unreliable: never a frame of ours
    ("CPU: 0 PID: 53 Comm: python Not tainted 6.1.192 #1", None),
    (" ffff888003b9e680: fa fb fb fb fb fb fb fb fc fc fc fc fc fc fc fc", None),
    ("    ab cd ef 00 00 00 00 00 00 00 00 00 00 00 00 00  ................", None),
    ("Code: 48 8b 00 <48> 85 c0", None),
])
def test_frame_lines(line, frame):
    got = [(f.func, f.offset, f.size, f.module, f.file, f.line, f.inline)
           for f in report.frames_of(["Call Trace:", line], 0)]
    assert got == ([frame] if frame else [])


@pytest.mark.parametrize("raw,title", [
    ("kernel BUG at ../../src/linux-source-6.1/drivers/misc/lkdtm/bugs.c:78", None),
    ("kernel panic: Attempted to kill init! exitcode=0x0000000b",
     "kernel panic: Attempted to kill init! exitcode=ADDR"),
    ("kernel panic: 12 tasks stuck on CPU#1, cpus 0,1", "kernel panic: NUM tasks stuck on CPU, cpus NUM,NUM"),
    ("WARNING in ext4_fill_super", "WARNING in ext4_fill_super"),
    ("KCSAN: data-race in p9_client_rpc+0x2fc/0xab0 / pipe_read", "KCSAN: data-race in p9_client_rpc / pipe_read"),
    ("x\t \x07y" + "z" * 200, "x y" + "z" * 115),
])
def test_titles_leave_out_what_varies(raw, title):
    """syzbot's normalization: two reports of one bug get one title."""
    if title is None:  # an O= build's file name is first cut back to the tree, then its line
        assert report.normalize(report.tree_path(raw.split(" at ", 1)[1])) == "drivers/misc/lkdtm/bugs.c:LINE"
    else:
        assert report.normalize(raw) == title


def test_titles_without_a_frame_say_corrupted():
    assert report.describe(rr.KINDS[-1], ["unreferenced object 0x1 (size 8):", "  backtrace:",
                                          "    [<ffffffff8127a2b6>] kmalloc_trace+0x4a/0x80"]).title \
        == "memory leak in corrupted"
    assert report.normalize("kernel panic: a [b] {c}") == "kernel panic: a [b] {c}"


# --- wqh parse ---------------------------------------------------------------------------------


def test_cli_parse_json_shape(wqh_cmd, tmp_path):
    p = subprocess.run(wqh_cmd + ["parse", "--json", str(DATA / "sysrq-panic.log")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    (r,) = json.loads(p.stdout)["reports"]
    assert {"title", "type", "corrupted", "frames", "test", "text"} <= set(r)
    assert r["title"] == "kernel panic: sysrq triggered crash"
    assert r["test"] == "../guest/test_vm_ends_on_purpose.py::test_panic"
    assert r["frames"][0]["func"] == "dump_stack_lvl"


def test_cli_parse_text_and_missing_file(wqh_cmd, tmp_path):
    p = subprocess.run(wqh_cmd + ["parse", str(DATA / "null-deref-pipe-read.log")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0] == "BUG: unable to handle kernel NULL pointer dereference in pipe_read"
    assert "corrupted: no" in p.stdout and "pipe_read+0xfd/0x420" in p.stdout
    p = subprocess.run(wqh_cmd + ["parse", str(tmp_path / "nope.log")], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 3 and "no such file" in p.stderr
