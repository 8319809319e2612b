"""What kernel reports look like and how syzbot titles them: the table report.py runs, as data.

Two concerns live here, both as data:

* **Finding** a report in a log (wqh's own need: many reports per log, each attributed to the
  test that was running): a report starts on a line holding one of the KINDS' header literals
  (unless an ignore pattern of that kind matches the line), and ends where its format's `End`
  says (a closing banner, "---[ end trace", "</TASK>" after its stack...), at a test marker,
  at another report of the same printk caller, or at the end of the log.
* **Titling** it as syzbot does (conventions learnt from syzkaller's pkg/report; this is our
  own table): within a kind, the format whose `title` regex matches earliest in the report's
  text decides; an optional `report` regex must match too (else the report is corrupted); its
  `Stack` says where the guilty frame comes from: `parts` are matched one after another over
  the report's lines (a regex with a group yields a frame; TRACE parses a stack trace from
  there), frames whose name contains any SKIP pattern (or the stack's own `skip`) are passed
  over, and syscall wrappers are cut to the syscall (`__x64_sys_futex` -> `sys_futex`). When no
  frame survives, the frame is the word `corrupted`. `fmt` builds the title from the regex
  groups, then the frames: `{0}` is the first group.

Titles are then normalised (TITLE_NORMALIZE) so that two reports of one bug get one title.
Formats of kernels 4.x to 6.x: mm/kasan/report.c, mm/kfence/report.c, kernel/kcsan/report.c,
lib/ubsan.c, mm/kmemleak.c, kernel/locking/lockdep.c, kernel/panic.c, lib/refcount.c,
lib/debugobjects.c, mm/usercopy.c, arch/x86/kernel/{traps,dumpstack}.c, arch/x86/mm/fault.c,
kernel/hung_task.c, kernel/rcu/tree_stall.h, kernel/watchdog.c, kernel/sched/core.c.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

Pattern = re.Pattern

# Building blocks of the regexes below.
PC = r"\[<?(?:0x)?[0-9a-f]+>?\]"          # "[<ffffffff81266510>]"
FUNC = r"([a-zA-Z0-9_]+)(?:\.|\+)"         # a function followed by its offset or a .suffix
SRC = r"([a-zA-Z0-9\-_/.]+\.[a-z]+:[0-9]+)"  # "fs/pipe.c:304"


def rx(s: str) -> Pattern:
    return re.compile(s.replace("{{PC}}", PC).replace("{{FUNC}}", FUNC).replace("{{SRC}}", SRC))


# --- finding: where reports end ---------------------------------------------------------------


@dataclass(frozen=True)
class End:
    """Where a report ends (finding only; titles never depend on it beyond its lines).

    line: its last line (kept); counts only once `armed_by` was seen, when given.
    block: the report goes on while lines match; it ends before the first that does not.
    """

    line: Pattern | None = None
    armed_by: Pattern | None = None
    block: Pattern | None = None


BANNER = rx(r"^={20,}\s*$")
CUT_HERE = rx(r"^-+\[ cut here \]-+\s*$")
TASK_END = rx(r"^\s*</TASK>\s*$")
END_TRACE = rx(r"^---\[ end trace")
PANIC_END = rx(r"^---\[ end Kernel panic|^Kernel Offset: ")

SANITIZER_END = End(line=BANNER)
OOPS_END = End(line=END_TRACE)
TRACE_END = End(line=rx(r"^\s*</TASK>\s*$|^---\[ end trace"), armed_by=rx(r"Call (?:T|t)race"))
LOCKDEP_END = End(line=TASK_END, armed_by=rx(r"^stack backtrace:"))
LEAK_END = End(block=rx(r"^(?:\s|unreferenced object 0x|backtrace)"))
PANIC_ENDS = End(line=PANIC_END)
ONE_LINE = End(block=rx(r"(?!)"))

# --- titling: stacks ----------------------------------------------------------------------------

TRACE = "TRACE"  # a Stack part: parse a stack trace from here


@dataclass(frozen=True)
class Stack:
    parts: tuple            # regexes (a group yields a frame) and TRACE, matched in order
    parts2: tuple = ()      # tried when `parts` finds no frame
    skip: tuple[str, ...] = ()
    extractor: str = ""     # "" (first frame) | "stall" | "hung"


# The lines that start a stack trace (and end the previous one).
STACK_START = tuple(rx(s) for s in (
    r"Call (?:T|t)race", r"Allocated:", r"Allocated by task [0-9]+:", r"Freed:", r"Freed by task [0-9]+:",
    r"[^k] backtrace(?: \(crc [0-9a-fA-F]*\))?:",  # kmemleak's, not lockdep's "stack backtrace:"
    r"Backtrace:", r"Uninit was stored to memory at"))
STACK_START_ANY = rx("|".join(f"({p.pattern})" for p in STACK_START))  # group n: STACK_START[n-1]
# A frame line: "  [<ffffffff81266510>] func+0x3b0/0x6a0", " func.isra.0+0x1a/0x20 [mod]".
FRAME_LINE = (rx(r"^ *(?:{{PC}} ){0,2}{{FUNC}}"),
              rx(r"^ *{{PC}} \(([a-zA-Z0-9_.]+)\) from {{PC}} \({{FUNC}}"))  # arm
# "RIP: 0010:func+0x..", "IP: [<..>] func+0x..", "pc : func+0x.." (arm64)
RIP = rx(r"(?:IP|NIP|pc |PC is at):? (?:(?:[0-9]+:)?(?:{{PC}} +){0,2}{{FUNC}}|(?:[0-9]+:)?0x[0-9a-f]+"
         r"|(?:[0-9]+:)?{{PC}} +\[< *\(null\)>\] +\(null\)|[0-9]+: +\(null\))")
CALL_TRACE = rx(r"(?:Call (?:T|t)race:)|(?:Backtrace:)")
# A line of a fault-injection stack inside a report: it cannot be trusted.
CORRUPTED_LINES = (rx(r"^( \[<?(?:0x)?[0-9a-f]+>?\])? should_fail(slab)?(\.[a-z0-9.]+)?\+0x"),)
CORRUPTED_ANY = rx("|".join(f"(?:{p.pattern})" for p in CORRUPTED_LINES))
# Timestamps spliced into a title: another printk landed in the middle of the header line.
CORRUPTED_TITLE = rx(r"\[ *[0-9]+\.[0-9]+\]")

# Functions that never name a bug, matched anywhere in the name (a regex search): grouped by
# why. The kinds add their own (Stack.skip).
SKIP_GROUPS: dict[str, tuple[str, ...]] = {
    "sanitizer runtime": (
        "__sanitizer", "__asan", "kasan", "hwasan", "__msan", "kmsan", "kcsan_setup_watchpoint",
        "check_memory_region", "check_heap_object", "check_object", "read_word_at_a_time",
        "(read|write)_once_.*nocheck", "print_address_description", "__phys_addr"),
    "reporting and traps": (
        "panic", "invalid_op", "report_bug", "fixup_bug", "print_report", "print_usage_bug", "do_error",
        "_trap$|do_trap", "show_stack", "dump_stack", "walk_stack", "dump_backtrace", "warn_slowpath",
        "warn_alloc", "warn_bogus", "__warn", "print_tainted", "^get_taint$", "__fortify_report",
        "stack_trace_consume_entry", "arch_stack_walk", "stack_trace_save", "assertfail",
        "do_(kernel|translation)_fault", "do_mem_abort", "el1_abort", "el1h_64_sync(?:_handler)?",
        "program_check_exception", "program_check_common"),
    "allocators": (
        "alloc_page", "k?v?(?:m|z|c)alloc", "krealloc", "kmem_cache", "allocate_slab", "slab_",
        "__alloc_frozen_pages_noprof", "folio_(?:alloc|unlock)", "filemap_alloc_folio",
        "__filemap_get_folio", "find_or_create_page", "do_read_cache_folio", "read_cache_page",
        "pagecache_get_page", "grab_cache_page_write_begin", "^kv?free$", "kfree_skb", "memdup",
        "strdup", "strndup", "kasprintf", "kvasprintf", "ida_free"),
    "debug objects": ("debug_object", "timer_is_static_object", "work_is_static_object"),
    "locking": (
        "lockdep", "print_unlock", "imbalance_bug", "bh_enable", "bh_disable", "perf_trace", "lock_acquire",
        "lock_release", "lock_class", "mark_lock", "(reacquire|mark)_held_locks", "raw_spin_rq",
        "spin_lock", "spin_trylock", "spin_unlock", "read_lock", "read_trylock", "write_lock",
        "write_trylock", "read_unlock", "write_unlock", "^down$", "down_read", "down_write",
        "down_read_trylock", "down_write_trylock", "down_trylock", "up_read", "up_write", "^mutex_",
        "^__mutex_", "^rt_mutex_", "owner_on_cpu", "osq_lock", "osq_unlock", "(trace|lockdep)_(hard|soft)irq",
        "^(un)?lock_page", "lock_timer_base"),
    "atomics, bits, refcounts": (
        "atomic(64)?_(dec|inc|read|set|or|xor|and|add|sub|fetch|xchg|cmpxchg|try)", "(set|clear|change|test)_bit",
        "^refcount_", "^kref_", "ref_tracker", "seqprop_assert"),
    "strings and user copies": (
        "memcpy", "memcmp", "memset", "memchr", "memmove", "strcmp", "strncmp", "strcpy", "strlcpy", "strncpy",
        "strscpy", "strlen", "strstr", "strnstr", "strnlen", "strchr", "copy_to_user", "copy_from_user",
        "copy_to_iter", "copy_from_iter", "copy_page_to_iter", "copy_page_from_iter", "copy_folio_to_iter",
        "^copyin$", "^copyout$", "put_user", "get_user", "might_fault", "__might_fault", "might_sleep",
        "__might_resched", "extract_(user|iter)_to_sg", "hex_dump_to_buffer", "print_hex_dump", "^crc\\d+",
        "crc_itu_t"),
    "lists and trees": (
        "list_add", "list_del", "list_replace", "list_move", "list_splice", "^rb_", "^__rb_", "^klist_",
        "xas_(?:start|load|find)", "rhashtable_lookup"),
    "printing": (
        "_indirect_thunk_", "string", "pointer", "snprintf", "scnprintf", "printk", "va_format", "dev_info",
        "dev_notice", "dev_warn", "dev_err", "dev_alert", "dev_crit", "dev_emerg"),
    "work, timers, waits": (
        "del_timer", "__timer_delete_sync", "sk_stop_timer_sync", "__mod_timer", "flush_work",
        "__cancel_work_timer", "cancel_work_sync", "try_to_grab_pending", "flush_workqueue", "drain_workqueue",
        "destroy_workqueue", "queue_work", "insert_work", "__queue_delayed_work", "queue_delayed_work_on",
        "finish_wait", "kthread_stop", "^complete$", "wait_for_completion", "__wake_up", "cleanup_srcu_struct"),
    "devices and objects": (
        "kobject_", "add_uevent_var", "get_device_parent", "device_add", "device_del", "device_unregister",
        "device_destroy", "device_release", "devres_release_all", "^put_device$", "hwrng_unregister",
        "i2c_del_adapter", "__unregister_client", "device_for_each_child", "rollback_registered",
        "unregister_netdev", "sysfs_remove", "device_remove_file", "tty_unregister_device",
        "dummy_urb_enqueue", "usb_kill_urb", "usb_kill_anchored_urbs", "usb_control_msg",
        "usb_hcd_submit_urb", "usb_submit_urb"),
    "io accessors": ("readb$", "readw$", "readl$", "readq$", "writeb$", "writew$", "writel$", "writeq$",
                     "logic_in", "logic_out"),
    "inodes and dentries": ("^iput$", "^iput_final$", "^ihold$", "drop_nlink", "fast_dput", "dput",
                            "find_lock_entries", "truncate_inode_pages_range"),
}
SKIP: tuple[str, ...] = tuple(p for group in SKIP_GROUPS.values() for p in group)

# Syscall wrappers: a frame is cut by the one of these that leaves it shortest.
STRIP_PREFIXES = ("SYSC_", "SyS_", "sys_", "__x64_", "__ia32_", "__arm64_", "____sys_", "___sys_", "__sys_",
                  "__se_", "__se_sys_", "__do_sys_", "compat_SYSC_", "compat_SyS_", "ksys_")

# Stalls loop somewhere below a dispatcher: the title names the frame just above the first of
# these (syzbot groups stalls by where the looping code was entered, not where it was caught).
STALL_ANCHORS = tuple(rx(s) for s in (
    "process_one_work", "do_syscall_", "do_fast_syscall_", "sysenter_dispatch", "tracesys_phase2",
    "el0_svc_handler", "invoke_syscall", "ret_fast_syscall", "netif_receive_skb", "do_softirq",
    "call_timer_fn", "_run_timers", "run_timer_softirq", "hrtimer_run", "run_ksoftirqd",
    "smpboot_thread_fn", "^kthread$", "start_secondary", "cpu_startup_entry", "ret_from_fork",
    "vfs_write", "vfs_read", "vfs_iter_read", "vfs_iter_write", "do_iter_read", "do_iter_write",
    "call_read_iter", "call_write_iter", "new_sync_read", "new_sync_write", "vfs_ioctl", "ksys_ioctl",
    "compat_ioctl", "compat_sys_ioctl", "blkdev_driver_ioctl", "blkdev_ioctl", "do_iter_readv_writev",
    "^call_mmap", "mmap_region", "do_mmap", "do_dentry_open", "vfs_open", "^sock_sendmsg", "^sock_recvmsg",
    "^sock_release", "^__sock_release", "^setsockopt$", "kernel_setsockopt", "sock_common_setsockopt",
    "^listen$", "kernel_listen", "sk_common_release", "^sock_mmap", "^accept$", "kernel_accept",
    "^sock_do_ioctl", "^sock_ioctl", "^compat_sock_ioctl", "^nfnetlink_rcv_msg", "^rtnetlink_rcv_msg",
    "^netlink_dump", "^(sys_)?(socketpair|connect|ioctl)", "__do_fault", "do_page_fault", "^page_fault$",
    "__fput", "task_work_run", "exit_to_usermode", "smp_call_function", "tasklet_action",
    "tasklet_hi_action"))
# Hung tasks wait where they are blocked: these group every hang in them under one name ...
HUNG_ANCHORS = (("rtnl_lock", "rtnl_lock"), ("synchronize_rcu", "synchronize_rcu"),
                ("synchronize_srcu", "synchronize_rcu"), ("synchronize_net", "synchronize_rcu"),
                ("synchronize_sched", "synchronize_rcu"))
# ... else the first frame that is not the waiting itself (a substring of the name).
HUNG_SKIP = ("sched", "_lock", "_slowlock", "down", "rwsem", "completion", "kthread", "wait", "synchronize",
             "context_switch", "__switch_to", "cancel_delayed_work", "rcu_barrier")

# --- titling: formats ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Format:
    name: str                  # unique, for tests, golden files and messages
    title: Pattern             # searched in the report's text; the earliest match decides
    fmt: str                   # "{0}": groups of `report` (else `title`), then the frames
    report: Pattern | None = None  # must match too, else the report is corrupted
    alt: tuple[str, ...] = ()  # alternative titles, same fields
    stack: Stack | None = None
    no_stack: bool = False     # needs no stack trace to be whole
    corrupted: bool = False    # matching this format means the real header was lost
    end: End = TRACE_END
    lead: Pattern | None = None  # lines before the start, from the last one matching, belong to it
    any_context: bool = False  # takes lines of every printk caller (stalls dump other CPUs)
    follows: bool = False      # a consequence: it belongs to the report before it, however far
    absorbs: str = ""          # the header of one report that continues this one (its leaked object)

    @functools.cached_property
    def multiline(self) -> bool:
        return "\\n" in self.title.pattern

    @functools.cached_property
    def literal(self) -> str:
        """The text every match of its title starts with: a cheap test before the regex."""
        return _LITERAL.match(self.title.pattern).group().replace("\\", "")


_LITERAL = re.compile(r"(?:[A-Za-z0-9_:,#' -]|\\[-.])*(?![*+?{])")


def rip_trace(*skip: str, extractor: str = "") -> Stack:
    """The frame the CPU was in (RIP), else the first frame of the call trace."""
    return Stack((RIP, CALL_TRACE, TRACE), skip=skip, extractor=extractor)


def trace(*skip: str, extractor: str = "") -> Stack:
    return Stack((CALL_TRACE, TRACE), skip=skip, extractor=extractor)


def warning_stack(*skip: str) -> Stack:
    """WARN(): the RIP of the trapping instruction and the trace after it (newer kernels), or
    the trace alone (older kernels print no RIP before it)."""
    return Stack((rx(r"(?:" + RIP.pattern + r"|--- interrupt: [0-9]+ at {{FUNC}})"), TRACE),
                 parts2=(CALL_TRACE, TRACE), skip=skip)


def user_locks(level: str) -> Format:
    """Lock held when returning to user space (BUG: before 4.19, WARNING: since): no stack, the
    held locks; the title names where the first was taken."""
    return Format("user-locks" + ("-bug" if level == "BUG" else ""),
                  rx(level + r": lock held when returning to user space"),
                  level + ": lock held when returning to user space in {0}",
                  report=rx(level + r": lock held when returning to user space(?:.*\n)+?.*leaving the kernel with "
                            r"locks still held(?:.*\n)+?.*at: (?:{{PC}} +)?{{FUNC}}"),
                  no_stack=True, end=ONE_LINE_HELD, lead=BANNER)


BAD_ACCESS = "bad-access in {%d}"
KMEMLEAK_HEADER = "unreferenced object 0x"
# kmemleak: the first frame of the allocation's backtrace that is not the allocator.
LEAK_STACK = Stack((rx(r"backtrace(?: \(crc [0-9a-fA-F]*\))?:"), TRACE),
                   skip=("kmemleak", "mmap", "kmem", "slab", "alloc", "create_object", "idr_get", "list_lru_init",
                         "kasprintf", "kvasprintf", "pcpu_create", "strdup", "strndup", "memdup"))
NO_STACK = Stack(())
_KASAN_HEAD = r"BUG: KASAN: (?:double-free or invalid-free|double-free|invalid-free) in {{FUNC}}"


def _bug_formats() -> tuple[Format, ...]:
    kasan_lead = dict(end=SANITIZER_END, lead=BANNER)
    # KFENCE prints its stacks under its own headings, never "Call Trace": they are whole without.
    kfence = dict(no_stack=True, **kasan_lead)
    return (
        Format("kasan", rx(r"BUG: KASAN:"), "KASAN: {0} {2} in {3}",
               report=rx(r"BUG: KASAN: ([a-z\-]+) in {{FUNC}}(?:.*\n)+?.*(Read|Write) (?:of size|at addr) (?:[0-9a-f]+)"),
               alt=(BAD_ACCESS % 3,),
               stack=Stack((rx(r"BUG: KASAN: (?:[a-z\-]+) in {{FUNC}}"), CALL_TRACE, TRACE),
                           skip=("kernel_fault", "tag_check", "mem_abort", "^el1_", "^el1h_")), **kasan_lead),
        Format("kasan-free", rx(r"BUG: KASAN:"), "KASAN: invalid-free in {1}", report=rx(_KASAN_HEAD),
               alt=("invalid-free in {1}",),
               stack=Stack((rx(_KASAN_HEAD), CALL_TRACE, TRACE), skip=("slab_", "kfree", "vunmap", "vfree")),
               **kasan_lead),
        Format("kasan-old", rx(r"BUG: KASAN: ([a-z\-]+) on address(?:.*\n)+?.*(Read|Write) of size ([0-9]+)"),
               "KASAN: {0} {1}", **kasan_lead),
        Format("kasan-corrupted", rx(r"BUG: KASAN: (.*)"), "KASAN: {0}", corrupted=True, **kasan_lead),
        Format("kmsan-usb", rx(r"BUG: KMSAN: kernel-usb-infoleak"), "KMSAN: kernel-usb-infoleak in {1}",
               report=rx(r"BUG: KMSAN: kernel-usb-infoleak in {{FUNC}}"), alt=("KMSAN origin in {2}",),
               stack=Stack((TRACE, rx(r"(Local variable .* created at:|Uninit was created at:)"), TRACE),
                           skip=("alloc_skb", "usb_submit_urb", "usb_start_wait_urb", "usb_bulk_msg",
                                 "usb_interrupt_msg", "usb_control_msg")),
               no_stack=True, **kasan_lead),
        Format("kmsan", rx(r"BUG: KMSAN:"), "KMSAN: {0} in {2}", report=rx(r"BUG: KMSAN: ([a-z\-]+) in {{FUNC}}"),
               alt=(BAD_ACCESS % 2,),
               stack=Stack((TRACE, rx(r"(Local variable .* created at:|Uninit was created at:)"), TRACE),
                           skip=("alloc_skb", "netlink_ack", "netlink_rcv_skb", "_encrypt$",
                                 "^(?:crypto|cipher|drbg|rng)_")),
               no_stack=True, **kasan_lead),
        Format("kcsan", rx(r"BUG: KCSAN:"), "KCSAN: {0}", report=rx(r"BUG: KCSAN: (.*)"), no_stack=True,
               **kasan_lead),
        Format("kfence", rx(r"BUG: KFENCE: (use-after-free|out-of-bounds) (read|write) in {{FUNC}}"),
               "KFENCE: {0} {1} in {3}", alt=(BAD_ACCESS % 3,),
               stack=Stack((rx(r"BUG: KFENCE: (?:[a-z\- ]+) in {{FUNC}}"), TRACE)), **kfence),
        Format("kfence-free", rx(r"BUG: KFENCE: invalid free in {{FUNC}}"), "KFENCE: invalid free in {1}",
               alt=("invalid-free in {1}",),
               stack=Stack((rx(r"BUG: KFENCE: (?:[a-z\- ]+) in {{FUNC}}"), TRACE)), **kfence),
        Format("kfence-invalid", rx(r"BUG: KFENCE: invalid (read|write) in {{FUNC}}"), "KFENCE: invalid {0} in {2}",
               alt=(BAD_ACCESS % 2,), stack=Stack((rx(r"BUG: KFENCE: (?:[a-z\- ]+) in {{FUNC}}"), TRACE)),
               **kfence),
        Format("kfence-corruption", rx(r"BUG: KFENCE: memory corruption in {{FUNC}}"),
               "KFENCE: memory corruption in {1}",
               stack=Stack((rx(r"BUG: KFENCE: (?:[a-z\- ]+) in {{FUNC}}"), TRACE)), **kfence),
        Format("page-fault", rx(r"BUG: (?:unable to handle kernel paging request|unable to handle page fault for "
                                r"address|Unable to handle kernel data access)"),
               "BUG: unable to handle kernel paging request in {0}", alt=(BAD_ACCESS % 0,), stack=rip_trace(),
               end=OOPS_END),
        Format("null-deref", rx(r"BUG: (?:unable to handle kernel NULL pointer dereference|kernel NULL pointer "
                                r"dereference|Kernel NULL pointer dereference)"),
               "BUG: unable to handle kernel NULL pointer dereference in {0}", alt=(BAD_ACCESS % 0,),
               stack=rip_trace(), end=OOPS_END),
        # The kernel prints the header in two printk()s: the second half can be lost.
        Format("page-fault-corrupted", rx(r"BUG: (?:unable to handle kernel|Unable to handle kernel)"),
               "BUG: unable to handle kernel", corrupted=True, end=OOPS_END),
        Format("spinlock", rx(r"BUG: (spinlock|rwlock) (lockup suspected|already unlocked|recursion|cpu recursion"
                              r"|bad magic|wrong owner|wrong CPU|trylock failure on UP)"),
               "BUG: {0} {1} in {2}", stack=trace("spin_", "_lock", "_unlock")),
        Format("soft-lockup", rx(r"BUG: soft lockup"), "BUG: soft lockup in {0}", alt=("stall in {0}",),
               stack=rip_trace(extractor="stall"), any_context=True),
        Format("locks-held-bug", rx(r"BUG: .*still has locks held!"), "BUG: still has locks held in {0}",
               report=rx(r"BUG: .*still has locks held!(?:.*\n)+?.*{{PC}} +{{FUNC}}"), end=LOCKDEP_END, lead=BANNER),
        Format("atomic-sched", rx(r"BUG: scheduling while atomic"), "BUG: scheduling while atomic in {0}",
               stack=trace("schedule")),
        user_locks("BUG"),
        Format("unlock-balance-bug", rx(r"BUG: bad unlock balance detected!"), "BUG: bad unlock balance in {0}",
               stack=Stack((rx(r"{{PC}} +{{FUNC}}"), CALL_TRACE, TRACE)), end=LOCKDEP_END, lead=BANNER),
        Format("held-freed-bug", rx(r"BUG: held lock freed!"), "BUG: held lock freed in {0}",
               report=rx(r"BUG: held lock freed!(?:.*\n)+?.*{{PC}} +{{FUNC}}"), end=LOCKDEP_END, lead=BANNER),
        Format("rss-counter", rx(r"BUG: Bad rss-counter state"), "BUG: Bad rss-counter state", no_stack=True,
               end=ONE_LINE),
        Format("nr-ptes", rx(r"BUG: non-zero nr_ptes on freeing mm"), "BUG: non-zero nr_ptes on freeing mm",
               no_stack=True, end=ONE_LINE),
        Format("nr-pmds", rx(r"BUG: non-zero nr_pmds on freeing mm"), "BUG: non-zero nr_pmds on freeing mm",
               no_stack=True, end=ONE_LINE),
        # The file system type and block device would split one bug into many: left out.
        Format("dentry", rx(r"BUG: Dentry .* still in use"), "BUG: Dentry still in use in {0}",
               report=rx(r"BUG: Dentry .* still in use \([0-9]+\) \[(unmount) of ([^\]]+)\]"),
               alt=("BUG: Dentry still in use [{0} of {1}]",), end=OOPS_END),
        Format("bad-page", rx(r"BUG: Bad page (state|cache)"), "BUG: Bad page {0} in {1}",
               stack=Stack((rx(r"page last allocated"), TRACE),
                           skip=("(free|put|get|update|release)_page", "free_unref", "^_*folio",
                                 "truncate_inode_pages", "page_frag_free", "alloc", "vmap", "page_owner"))),
        Format("bad-page-map", rx(r"BUG: Bad page map"), "BUG: Bad page map"),
        Format("workqueue-lockup", rx(r"BUG: workqueue lockup"), "BUG: workqueue lockup", no_stack=True,
               end=ONE_LINE),
        Format("sleeping", rx(r"BUG: sleeping function called from invalid context at (.*)"),
               "BUG: sleeping function called from invalid context in {1}", stack=trace()),
        Format("preemptible", rx(r"BUG: using ([a-z_]+)\(\) in preemptible"),
               "BUG: using {0}() in preemptible code in {1}",
               stack=trace("dump_stack", "preemption", "preempt", "debug_", "processor_id", "this_cpu")),
        Format("workqueue-leak", rx(r"BUG: workqueue leaked lock or atomic"),
               "BUG: workqueue leaked lock or atomic in {0}",
               report=rx(r"BUG: workqueue leaked lock or atomic(?:.*\n)+?.*last function: ([a-zA-Z0-9_]+)\n"),
               no_stack=True),
        # syzkaller's executor prints this line before kmemleak's report of one object.
        Format("leak", rx(r"BUG: memory leak"), "memory leak in {0}", stack=LEAK_STACK, end=LEAK_END,
               absorbs=KMEMLEAK_HEADER),
        Format("stack-guard", rx(r"BUG: .*stack guard page was hit at"), "BUG: stack guard page was hit in {0}",
               alt=("stack-overflow in {0}",), stack=rip_trace(extractor="stall"), end=OOPS_END),
        # arm's spelling of what x86 reports as a lockdep WARNING: one title for both.
        Format("wait-context", rx(r"BUG: Invalid wait context"), "WARNING: locking bug in {0}",
               stack=trace("lock_sock", "release_sock"), lead=BANNER),
        Format("bug-corrupted", rx(r"BUG:\s*(?:\n|$)"), "BUG: corrupted", corrupted=True),
    )


ONE_LINE_HELD = End(block=rx(r"^(?:-+|\S+ #\d+\b.*|\S+ .*[Tt]ainted.*|\S+ is leaving the kernel with locks still held!"
                             r"|\d+ locks? held by .*|\s+#\d+: .*|\s*|.*still has locks held!)$"))


def _warning_formats() -> tuple[Format, ...]:
    cut = dict(end=OOPS_END, lead=CUT_HERE)
    lockdep = dict(end=LOCKDEP_END, lead=BANNER)
    return (
        Format("odebug", rx(r"WARNING: .*lib/debugobjects\.c.* (?:debug_print|debug_check|at)"),
               "WARNING: ODEBUG bug in {0}",
               stack=warning_stack("debug_", "rcu", "hrtimer_", "timer_", "work_", "percpu_", "vunmap", "vfree",
                                   "__free_", "debug_check", "kobject_"), **cut),
        Format("usercopy-warn", rx(r"WARNING: .*mm/usercopy\.c.* (?:usercopy_warn|at)"),
               "WARNING: bad usercopy in {0}", stack=warning_stack("usercopy", "__check"), **cut),
        Format("kobject", rx(r"WARNING: .*lib/kobject\.c.* (?:kobject_|at)"), "WARNING: kobject bug in {0}",
               stack=warning_stack("kobject_"), **cut),
        Format("proc-register", rx(r"WARNING: .*fs/proc/generic\.c.* (?:proc_register|at)"),
               "WARNING: proc registration bug in {0}", stack=warning_stack("proc_"), **cut),
        Format("refcount", rx(r"WARNING: .*lib/refcount\.c.* (?:refcount_|at)"), "WARNING: refcount bug in {0}",
               stack=warning_stack("refcount", "kobject_"), **cut),
        Format("locking-bug", rx(r"WARNING: .*kernel/locking/lockdep\.c.*lock_"), "WARNING: locking bug in {0}",
               stack=warning_stack("lock_sock", "release_sock"), **cut),
        Format("locks-held", rx(r"WARNING: .*still has locks held!"), "WARNING: still has locks held in {0}",
               report=rx(r"WARNING: .*still has locks held!(?:.*\n)+?.*at: {{FUNC}}"), **lockdep),
        Format("nested-lock", rx(r"WARNING: Nested lock was not taken"), "WARNING: nested lock was not taken in {0}",
               stack=warning_stack(), **lockdep),
        user_locks("WARNING"),
        Format("kmalloc-bug", rx(r"WARNING: .*mm/.*\.c.* k?.?malloc"), "WARNING: kmalloc bug in {0}",
               stack=warning_stack("kmalloc", "krealloc", "slab", "kmem"), **cut),
        Format("zero-vmalloc", rx(r"WARNING: .*mm/vmalloc.c.*__vmalloc_node"), "WARNING: zero-size vmalloc in {0}",
               stack=warning_stack(), **cut),
        Format("usb-urb", rx(r"WARNING: .* usb_submit_urb"), "WARNING in {0}/usb_submit_urb",
               stack=warning_stack("usb_submit_urb", "usb_start_wait_urb", "usb_bulk_msg", "usb_interrupt_msg",
                                   "usb_control_msg"), **cut),
        # 6.19's spelling: "WARNING: fs/pipe.c:304 at 0x1, CPU#0: ..."
        Format("warning-new", rx(r"WARNING: {{SRC}} at 0x\d+, CPU#\d+"), "WARNING in {1}", stack=warning_stack(),
               **cut),
        Format("warning", rx(r"WARNING: .* at {{SRC}} {{FUNC}}"), "WARNING in {2}", stack=warning_stack(), **cut),
        Format("warning-src", rx(r"WARNING: {{SRC}} at {{FUNC}}"), "WARNING in {2}", stack=warning_stack(), **cut),
        Format("circular", rx(r"WARNING: possible circular locking dependency detected"), "possible deadlock in {0}",
               report=rx(r"WARNING: possible circular locking dependency detected(?:.*\n)+?.*is trying to acquire lock"),
               stack=Stack((rx(r"at: (?:{{PC}} +)?{{FUNC}}"), rx(r"at: (?:{{PC}} +)?{{FUNC}}"), TRACE),
                           skip=("process_one_work", "flush_workqueue", "drain_workqueue", "destroy_workqueue")),
               **lockdep),
        Format("irq-inversion", rx(r"WARNING: possible irq lock inversion dependency detected"),
               "possible deadlock in {0}",
               report=rx(r"WARNING: possible irq lock inversion dependency detected(?:.*\n)+?.*just changed the "
                         r"state of lock(?:.*\n)+?.*at: (?:{{PC}} +)?{{FUNC}}"), **lockdep),
        Format("irq-order", rx(r"WARNING: .*-safe -> .*-unsafe lock order detected"), "possible deadlock in {0}",
               stack=Stack((rx(r"which became (?:.*) at:"), TRACE)), **lockdep),
        Format("recursive", rx(r"WARNING: possible recursive locking detected"), "possible deadlock in {0}",
               report=rx(r"WARNING: possible recursive locking detected(?:.*\n)+?.*is trying to acquire lock"
                         r"(?:.*\n)+?.*at: (?:{{PC}} +)?{{FUNC}}"), **lockdep),
        Format("inconsistent", rx(r"WARNING: inconsistent lock state"), "inconsistent lock state in {1}",
               report=rx(r"WARNING: inconsistent lock state(?:.*\n)+?.*takes(?:.*\n)+?.*at: (?:{{PC}} +)?{{FUNC}}"),
               stack=trace(), **lockdep),
        Format("rcu-usage", rx(r"WARNING: suspicious RCU usage"), "WARNING: suspicious RCU usage in {1}",
               report=rx(r"WARNING: suspicious RCU usage(?:.*\n)+?.*?{{SRC}}"), stack=trace("rcu", "kmem", "slab"),
               **lockdep),
        Format("stack-regs", rx(r"WARNING: kernel stack regs at [0-9a-f]+ in [^ ]* has bad '([^']+)' value"),
               "WARNING: kernel stack regs has bad '{0}' value", no_stack=True, end=ONE_LINE),
        Format("stack-fp", rx(r"WARNING: kernel stack frame pointer at [0-9a-f]+ in [^ ]* has bad value"),
               "WARNING: kernel stack frame pointer has bad value", no_stack=True, end=ONE_LINE),
        Format("unlock-balance", rx(r"WARNING: bad unlock balance detected!"), "WARNING: bad unlock balance in {0}",
               stack=Stack((rx(r"{{PC}} +{{FUNC}}"), CALL_TRACE, TRACE)), **lockdep),
        Format("held-freed", rx(r"WARNING: held lock freed!"), "WARNING: held lock freed in {0}",
               report=rx(r"WARNING: held lock freed!(?:.*\n)+?.*at:(?: {{PC}})? +{{FUNC}}"), **lockdep),
        Format("stack-regs-bp", rx(r"WARNING: kernel stack regs .* has bad 'bp' value"),
               "WARNING: kernel stack regs has bad value", no_stack=True, end=ONE_LINE),
        Format("stack-fp-any", rx(r"WARNING: kernel stack frame pointer .* has bad value"),
               "WARNING: kernel stack regs has bad value", no_stack=True, end=ONE_LINE),
        Format("warning-corrupted", rx(r"WARNING:\s*(?:\n|$)"), "WARNING: corrupted", corrupted=True, **cut),
    )


def _info_formats() -> tuple[Format, ...]:
    old = dict(end=LOCKDEP_END, lead=BANNER)
    return (
        Format("info-circular", rx(r"INFO: possible circular locking dependency detected"), "possible deadlock in {0}",
               report=rx(r"INFO: possible circular locking dependency detected \](?:.*\n)+?.*is trying to acquire "
                         r"lock(?:.*\n)+?.*at: {{PC}} +{{FUNC}}"), **old),
        Format("info-irq-inversion", rx(r"INFO: possible irq lock inversion dependency detected"),
               "possible deadlock in {0}",
               report=rx(r"INFO: possible irq lock inversion dependency detected \](?:.*\n)+?.*just changed the "
                         r"state of lock(?:.*\n)+?.*at: {{PC}} +{{FUNC}}"), **old),
        Format("info-irq-order", rx(r"INFO: SOFTIRQ-safe -> SOFTIRQ-unsafe lock order detected"),
               "possible deadlock in {0}",
               report=rx(r"INFO: SOFTIRQ-safe -> SOFTIRQ-unsafe lock order detected \](?:.*\n)+?.*is trying to "
                         r"acquire(?:.*\n)+?.*at: {{PC}} +{{FUNC}}"), **old),
        Format("info-recursive", rx(r"INFO: possible recursive locking detected"), "possible deadlock in {0}",
               report=rx(r"INFO: possible recursive locking detected \](?:.*\n)+?.*is trying to acquire lock"
                         r"(?:.*\n)+?.*at: {{PC}} +{{FUNC}}"), **old),
        Format("info-inconsistent", rx(r"INFO: inconsistent lock state"), "inconsistent lock state in {0}",
               report=rx(r"INFO: inconsistent lock state \](?:.*\n)+?.*takes(?:.*\n)+?.*at: {{PC}} +{{FUNC}}"), **old),
        Format("rcu-stall", rx(r"INFO: rcu_(?:preempt|sched|bh) (?:self-)?detected(?: expedited)? stall"),
               "INFO: rcu detected stall in {0}", alt=("stall in {0}",),
               stack=Stack((rx(r"apic_timer_interrupt"), RIP, TRACE),
                           parts2=(rx(r"(?:apic_timer_interrupt|Exception stack|el1h_64_irq)"), TRACE),
                           skip=("apic_timer_interrupt", "rcu"), extractor="stall"),
               any_context=True),
        Format("non-static-key", rx(r"INFO: trying to register non-static key"),
               "INFO: trying to register non-static key in {0}", stack=trace("stack", "lock", "IRQ")),
        Format("info-rcu-usage", rx(r"INFO: suspicious RCU usage"), "INFO: suspicious RCU usage in {1}",
               report=rx(r"INFO: suspicious RCU usage(?:.*\n)+?.*?{{SRC}}"), stack=trace("rcu", "kmem", "slab"),
               **old),
        Format("hung-task", rx(r"INFO: task .* blocked for more than [0-9]+ seconds"), "INFO: task hung in {0}",
               alt=("hang in {0}",), stack=trace(extractor="hung")),
        Format("task-cant-die", rx(r"INFO: task .* can't die for more than .* seconds"), "INFO: task can't die in {0}",
               alt=("hang in {0}",), stack=trace("schedule")),
        # What is left of an old KASAN report whose header was lost.
        Format("info-old-kasan", rx(r"INFO: (Freed|Allocated) in (.*)"), "INFO: {0} in {1}", corrupted=True),
        Format("info-corrupted", rx(r"INFO:\s*(?:\n|$)"), "INFO: corrupted", corrupted=True),
    )


def _panic_formats() -> tuple[Format, ...]:
    p = dict(end=PANIC_ENDS)
    return (
        Format("stack-protector", rx(r"Kernel panic - not syncing: stack-protector:"),
               "kernel panic: stack is corrupted in {0}",
               report=rx(r"Kernel panic - not syncing: stack-protector: Kernel stack is corrupted in: {{FUNC}}"),
               no_stack=True, **p),
        Format("stack-protector-addr", rx(r"Kernel panic - not syncing: stack-protector:"),
               "kernel panic: stack is corrupted in {0}",
               report=rx(r"Kernel panic - not syncing: stack-protector: Kernel stack is corrupted in: [a-f0-9]+"),
               stack=trace("stack_chk"), **p),
        Format("stack-end", rx(r"Kernel panic - not syncing: corrupted stack end"), "kernel panic: corrupted stack end in {0}",
               report=rx(r"Kernel panic - not syncing: corrupted stack end detected inside scheduler"),
               alt=("stack-overflow in {0}",), stack=trace("schedule", "retint_kernel", extractor="stall"), **p),
        Format("stack-overflow", rx(r"Kernel panic - not syncing: kernel stack overflow"), "kernel stack overflow in {0}",
               alt=("stack-overflow in {0}",), stack=trace("bad_stack", extractor="stall"), **p),
        Format("kill-init", rx(r"Kernel panic - not syncing: Attempted to kill init!"),
               "kernel panic: Attempted to kill init!", **p),
        Format("n-tty", rx(r"Kernel panic - not syncing: Couldn't open N_TTY ldisc for [^ ]+ --- error -[0-9]+"),
               "kernel panic: Couldn't open N_TTY ldisc", **p),
        # A consequence of a report printed before it; first in a log, that report was lost.
        Format("fatal-exception", rx(r"Kernel panic - not syncing: Fatal exception"), "kernel panic: Fatal exception",
               corrupted=True, follows=True, **p),
        Format("panic-on-warn", rx(r"Kernel panic - not syncing: panic_on_warn set"),
               "kernel panic: panic_on_warn set", corrupted=True, follows=True, **p),
        Format("hung-panic", rx(r"Kernel panic - not syncing: hung_task: blocked tasks"),
               "kernel panic: hung_task: blocked tasks", corrupted=True, follows=True, **p),
        Format("panic-consequence", rx(r"Kernel panic - not syncing: (?:\S+: )?(?:panic_on_warn|panic_on_oops|kasan\.fault=panic"
                                       r"|softlockup: hung tasks|RCU Stall|panic_on_kmsan|Fatal machine check)"),
               "kernel panic: {0}", report=rx(r"Kernel panic - not syncing: (.*)"), follows=True, **p),
        Format("panic", rx(r"Kernel panic - not syncing: (.*)"), "kernel panic: {0}", **p),
    )


def _oops(name: str, title: str, fmt: str, alt: tuple[str, ...] = (), stack: Stack | None = None,
          **kw) -> Format:
    """An oops: "Oops:"/die line, registers with RIP, trace, "---[ end trace"."""
    stack = rip_trace() if stack is None else stack
    return Format(name, rx(title), fmt, alt=alt, stack=stack if stack.parts else None,
                  end=kw.pop("end", OOPS_END), **kw)


@dataclass(frozen=True)
class Kind:
    header: str                     # the literal a start line holds
    formats: tuple[Format, ...]
    ignore: tuple[Pattern, ...] = ()  # lines holding the header that are no report
    joins: bool = False             # inside an open report, a line of this kind is part of it


KINDS: tuple[Kind, ...] = (
    Kind("BUG:", _bug_formats(), ignore=tuple(rx(s) for s in (
        "ODEBUG:", "Boot_DEBUG:", "xlog_status:", "DEBUG:", "BUG: no syscalls can create resource"))),
    Kind("WARNING:", _warning_formats(), ignore=tuple(rx(s) for s in (
        r"WARNING: /etc/ssh/moduli does not exist, using fixed modulus",
        r"WARNING: workqueue cpumask: online intersect > possible intersect",
        r"WARNING: [Tt]he mand mount option", r"WARNING: Unsupported flag value\(s\) of 0x%x in DT_FLAGS_1",
        r"WARNING: Unprivileged eBPF is enabled with eIBRS", r"WARNING: fbcon: Driver '(.*)' missed to adjust",
        r"WARNING: See https.* for mitigation options.", r"WARNING: kernel not compiled with CPU_SRSO",
        r"EXT4-[Ff][Ss](?: \(.*\))?:", r"(?i)warning: .* uses (deprecated v2 capabilities|wireless extensions)",
        r"XFS \(\w+\): WARNING"))),
    Kind("INFO:", _info_formats(), ignore=tuple(rx(s) for s in (
        "INFO: lockdep is turned off", "INFO: Stall ended before state dump start", "INFO: NMI handler",
        "INFO: recovery required on readonly filesystem", "(handler|interrupt).*took too long",
        r"INFO: sys_.* is not present in /proc/kallsyms", "INFO: no syscalls can create resource",
        "rmt_storage:INFO:", "_INFO:"))),
    Kind("Unable to handle kernel", (
        _oops("arm-fault", r"Unable to handle kernel (paging request|NULL pointer dereference|access to user memory)",
              "BUG: unable to handle kernel {0} in {1}", alt=(BAD_ACCESS % 1,)),)),
    Kind("general protection fault", (
        _oops("gpf", r"general protection fault.*:", "general protection fault in {0}", alt=(BAD_ACCESS % 0,)),),
         ignore=(rx(r"general protection fault .* error:\d+ in "),)),  # a user-space fault
    Kind("stack segment: ", (_oops("stack-segment", r"stack segment: ", "stack segment fault in {0}"),)),
    Kind("Kernel panic", _panic_formats(), joins=True),
    Kind("PANIC: double fault", (
        _oops("double-fault", r"PANIC: double fault", "PANIC: double fault in {0}", stack=Stack((RIP,))),),
         joins=True),
    Kind("kernel BUG", (
        _oops("usercopy", r"kernel BUG at mm/usercopy.c", "BUG: bad usercopy in {0}",
              stack=trace("usercopy", "__check"), lead=CUT_HERE),
        _oops("corrupted-list", r"kernel BUG at lib/list_debug.c", "BUG: corrupted list in {0}",
              alt=(BAD_ACCESS % 0,), stack=trace(), lead=CUT_HERE),
        # skb helpers BUG_ON() what their caller got wrong.
        _oops("bug-at", r"kernel BUG at (.*)", "kernel BUG in {1}", stack=rip_trace("^skb_"), lead=CUT_HERE),
    )),
    Kind("Kernel BUG", (_oops("kernel-bug", r"Kernel BUG (.*)", "kernel BUG {0}", stack=NO_STACK),)),
    Kind("BUG kmalloc-", (Format("object-free", rx(r"BUG kmalloc-.*: Object already free"),
                                 "BUG: Object already free", end=TRACE_END),)),
    Kind("divide error:", (_oops("divide-error", r"divide error: ", "divide error in {0}", stack=Stack((RIP,))),)),
    Kind("divide_error:", (_oops("divide-error-5x", r"divide_error: ", "divide error in {0}",
                                 stack=Stack((RIP,))),)),
    Kind("invalid opcode:", (_oops("invalid-opcode", r"invalid opcode: ", "invalid opcode in {0}",
                                   stack=Stack((RIP,))),), joins=True),
    Kind("UBSAN:", tuple(Format(n, t, f, report=r, alt=a, stack=trace("ubsan", "overflow"),
                                end=End(line=BANNER, armed_by=rx(r"Call (?:T|t)race")), lead=BANNER)
                         for n, t, f, r, a in (
        ("ubsan-old", rx(r"UBSAN:"), "UBSAN: undefined-behaviour in {0}", rx(r"UBSAN: Undefined behaviour in"), ()),
        ("ubsan-index", rx(r"UBSAN: array-index-out-of-bounds in"), "UBSAN: array-index-out-of-bounds in {0}", None,
         (BAD_ACCESS % 0,)),
        ("ubsan", rx(r"UBSAN:"), "UBSAN: {0} in {1}", rx(r"UBSAN: (.*?) in"), ())))),
    Kind("unregister_netdevice: waiting for", (
        Format("netdev-free", rx(r"unregister_netdevice: waiting for (?:.*) to become free"),
               "unregister_netdevice: waiting for DEV to become free", no_stack=True, end=ONE_LINE),), joins=True),
    Kind("VFS: Close: file count is 0", (Format("vfs-close", rx(r"VFS: Close: file count is 0"),
                                                "VFS: Close: file count is zero (use-after-free)", no_stack=True,
                                                end=ONE_LINE),)),
    Kind("VFS: Busy inodes after unmount", (Format("vfs-busy", rx(r"VFS: Busy inodes after unmount"),
                                                   "VFS: Busy inodes after unmount (use-after-free)", no_stack=True,
                                                   end=ONE_LINE),)),
    Kind("Internal error:", (_oops("arm-internal", r"Internal error:", "Internal error in {0}",
                                   alt=(BAD_ACCESS % 0,)),), joins=True),
    Kind("Unhandled fault:", (_oops("arm-unhandled", r"Unhandled fault:", "Unhandled fault in {0}",
                                    alt=(BAD_ACCESS % 0,)),)),
    Kind("Alignment trap:", (_oops("arm-alignment", r"Alignment trap:", "Alignment trap in {0}"),)),
    # wqh's guest agent copies kmemleak's reports to the console without syzkaller's header line.
    Kind(KMEMLEAK_HEADER, (
        Format("kmemleak", rx(r"unreferenced object 0x"), "memory leak in {0}",
               stack=LEAK_STACK, end=End(block=rx(r"^\s"))),)),
)

FORMATS_BY_NAME = {f.name: f for k in KINDS for f in k.formats}
assert len(FORMATS_BY_NAME) == sum(len(k.formats) for k in KINDS), "format names must be unique"


def skip_regex(stack: Stack) -> Pattern:
    """The frames a stack's guilty frame may not be: the common list plus the stack's own."""
    return re.compile("|".join(SKIP + stack.skip))


# --- types and titles ---------------------------------------------------------------------------

# results.json "type", from the title (first match wins).
TYPES: tuple[tuple[Pattern, str], ...] = tuple((rx(p), t) for p, t in (
    (r"^KASAN: ", "KASAN"), (r"^KFENCE: ", "KFENCE"), (r"^KMSAN: ", "KMSAN"), (r"^KCSAN: ", "KCSAN"),
    (r"^UBSAN: ", "UBSAN"), (r"^memory leak", "LEAK"),
    (r"^INFO: task hung|^INFO: rcu detected stall|^BUG: soft lockup|^INFO: task can't die|^BUG: workqueue lockup",
     "HANG"),
    (r"^possible deadlock|^inconsistent lock state|locking bug|bad unlock balance|still has locks held"
     r"|held lock freed|lock held when returning|suspicious RCU usage|nested lock was not taken|non-static key"
     r"|^BUG: (?:spinlock|rwlock) ", "LOCKDEP"),
    (r"^general protection fault", "GPF"), (r"^WARNING", "WARNING"), (r"^kernel panic", "PANIC"), (r"", "BUG")))

# Panic messages that are the consequence of a report just printed: text after them in a
# report of more than CONSEQUENCE_AFTER lines never decides its title.
CONSEQUENCE_AFTER = 22

# Top-level directories of a kernel tree: file names printed by an O= build with a relative
# source path ("../../src/linux-source-6.1/fs/pipe.c") are cut back to the first of them.
TREE_DIRS = frozenset({"arch", "block", "certs", "crypto", "drivers", "fs", "include", "init",
                       "io_uring", "ipc", "kernel", "lib", "mm", "net", "rust", "samples", "scripts",
                       "security", "sound", "tools", "usr", "virt"})

# What varies between two reports of one bug leaves the title, as on syzbot: executor ids,
# addresses, IPs, line numbers, offsets, CPU and other numbers (a number inside a name, like
# ext4 or p9, stays). Each is applied until nothing changes.
TITLE_NORMALIZE: tuple[tuple[Pattern, str], ...] = (
    (rx(r"syz-executor\.?[0-9]+((/|:)[0-9]+)?"), "syz-executor"),
    (rx(r"syzkaller[0-9]+((/|:)[0-9]+)?"), "syzkaller"),
    (rx(r"([^a-zA-Z0-9])(?:0x)?[0-9a-f]{6,}"), r"\1ADDR"),
    (rx(r"([0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3})"), "IP"),
    (rx(r"(\.\w+)(:[0-9]+)+"), r"\1:LINE"),
    (rx(r"([a-zA-Z][a-zA-Z0-9_.]+)\+0x[0-9a-z]+/0x[0-9a-z]+"), r"\1"),
    (rx(r"CPU#[0-9]+"), "CPU"),
    (rx(r"(\W)(\d+)(\W|$)"), r"\1NUM\3"),
    (rx(r"(\d+){7,}"), "NUM"),
)
TITLE_MAX = 120

# One bug that kernel versions title differently. Titles stay as the kernel printed them
# (syzbot's); this only answers "is this the report a scenario or the wall expects?" across
# versions: both sides are rewritten to the older form before they are compared.
TITLE_ACROSS_VERSIONS: tuple[tuple[Pattern, str], ...] = (
    # mm/kasan/report_generic.c: 6.1 prints "use-after-free" for any freed object; 6.12 says
    # "slab-use-after-free" for a slab object (and "use-after-free" for the rest).
    (rx(r"^KASAN: slab-use-after-free "), "KASAN: use-after-free "),
)
