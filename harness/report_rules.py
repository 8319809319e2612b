"""What kernel reports look like: the table the log analyser (report.py) runs, as data.

One Rule per kind of report: the keyword that lets the scanner skip every other line, the
regular expression of the first line, where the report ends, which frames its title names and
how the title is written. Formats are those the kernel prints (6.1: mm/kasan/report.c,
mm/kfence/report.c, kernel/kcsan/report.c, lib/ubsan.c, mm/kmemleak.c,
kernel/locking/lockdep.c, kernel/panic.c, lib/refcount.c, lib/debugobjects.c,
arch/x86/kernel/{traps,dumpstack}.c, arch/x86/mm/fault.c, kernel/hung_task.c,
kernel/rcu/tree_stall.h, kernel/watchdog.c, kernel/sched/core.c). Titles follow syzbot's
conventions so that a local result can be looked up on a syzbot dashboard.

Title templates: `{name}` is a named group of the start regex, a `fields` regex, or `frame`
(the guilty function); a `[...]` part is dropped when a field in it is missing, so that
"WARNING[ in {frame}]" reads "WARNING" when no frame could be found.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

Pattern = re.Pattern


def rx(s: str) -> Pattern:
    return re.compile(s)


@dataclass(frozen=True)
class End:
    """Where a report ends.

    line: its last line (kept); counts only once `armed_by` was seen, when given.
    block: the report goes on while lines match; it ends before the first that does not.
    eof_ok: the kernel stops after this report (panic): a log ending inside it is not a cut.
    """

    line: Pattern | None = None
    armed_by: Pattern | None = None
    block: Pattern | None = None
    eof_ok: bool = False


@dataclass(frozen=True)
class Rule:
    name: str            # unique, for tests and messages
    type: str            # results.json "type"
    keyword: str         # literal every start line contains: the scanner's prefilter
    start: Pattern       # matched at the start of the line's text (timestamp removed)
    title: str           # template, see the module docstring
    end: End
    # Sections the guilty frame comes from, in order (see SECTIONS; 'header' is the start line,
    # 'rip' the RIP: line before the call trace).
    frames: tuple[str, ...] = ("trace",)
    pick: str = "first"  # first | stall | hung: how the guilty frame is chosen among them
    skip: tuple[str, ...] = ()  # frames this kind also skips (regex on the whole name)
    fields: tuple[tuple[str, Pattern], ...] = ()  # more title fields, first match in the report
    alt: tuple[str, ...] = ()   # alternative titles (templates), e.g. the older syzbot spelling
    joins: bool = False         # inside an open report this line is part of it (panic, oops)
    follows: bool = False       # just after a report (JOIN_WINDOW lines) it is that report's tail
    needs_stack: bool = True    # a report without any stack frame is corrupted
    corrupted: str = ""         # matched on its own, this line means the real header was lost
    lead: Pattern | None = None  # lines before the start, from the last one matching, belong to it
    any_context: bool = False   # takes lines of every printk caller (stalls dump other CPUs)
    max_lines: int = 800


# --- frames: where stacks are, and which functions never name a bug -------------------------

# A line of a stack: "[<ffffffff81266510>] ? func+0x3b0/0x6a0 [module] file.c:380 [inline]",
# also decode_stacktrace.sh's "func (file.c:380)". A frame needs an offset, a file or [inline].
FRAME = rx(
    r"^\s*(?:\[<?[0-9a-f]+>?\]\s*)?(?P<q>\?\s+)?"
    r"(?P<func>[A-Za-z_][\w.$]*)"
    r"(?:\+0x(?P<off>[0-9a-f]+)/0x(?P<size>[0-9a-f]+))?"
    r"(?:\s+\[(?P<mod>[\w-]+)(?:\s+[0-9a-f]+)?\])?"
    r"(?:\s+\(?(?P<file>[\w./+-]+):(?P<line>\d+)(?::\d+)?\)?)?"
    r"(?P<inl>\s+\[inline\])?\s*$")
# "RIP: 0010:watch_queue_set_filter+0x3b0/0x6a0": the rest is a frame (FRAME); a user-space
# "RIP: 0033:0x7f..." is not.
RIP = rx(r"^RIP: (?:[0-9a-f]{4}:)?(?P<rest>.*)$")
# lockdep's held-lock lines: "ffff888...(&pipe->mutex/1){+.+.}-{3:3}, at: pipe_write+0x10a/0x1460"
AT = rx(r", at: (?:\[<[0-9a-f]+>\] )?(?P<func>[A-Za-z_][\w.$]*)\+0x(?P<off>[0-9a-f]+)/0x(?P<size>[0-9a-f]+)")
# The function a start line names ("BUG: KASAN: ... in func+0x1f/0x2c0", symbolized logs add
# " file.c:380"); the last one wins. Symbolized logs (syzbot) repeat the start line once per
# inlined level first: "BUG: KASAN: ... in ___set_bit include/asm-generic/...h:28 [inline]".
HEADER_FUNC = rx(r"(?<![\w.])(?P<func>[A-Za-z_][\w.$]*)\+0x(?P<off>[0-9a-f]+)/0x(?P<size>[0-9a-f]+)"
                 r"(?:\s+(?P<file>[\w./+-]+):(?P<line>\d+)(?::\d+)?)?")
HEADER_INLINE = rx(r" in (?P<func>[A-Za-z_][\w.$]*) (?P<file>[\w./+-]+):(?P<line>\d+)(?::\d+)?"
                   r" (?P<inl>\[inline\])\s*$")
IRQ_ENTER = rx(r"^\s*<(?:IRQ|NMI|SOFTIRQ)>\s*$")
IRQ_LEAVE = rx(r"^\s*(?:</(?:IRQ|NMI|SOFTIRQ)>|<TASK>|<EOI>)\s*$")

# A line matching one of these starts a section of the report; frames carry its name.
SECTIONS: tuple[tuple[str, Pattern], ...] = (
    ("trace", rx(r"^Call Trace:|^Call trace:")),
    ("backtrace", rx(r"^\s*backtrace(?: \(crc [0-9a-f]+\))?:\s*$")),  # kmemleak
    ("alloc", rx(r"^(?:Allocated|allocated) by task \d+")),
    ("free", rx(r"^(?:Freed|freed) by task \d+")),
    ("aux", rx(r"^(?:Second to last p|Last p)otentially related work creation:")),
    # KFENCE's access, KCSAN's two accesses
    ("access", rx(r"^(?:Out-of-bounds|Use-after-free|Invalid) (?:read|write|free) (?:at|of) 0x"
                  r"|^Corrupted memory at 0x"
                  r"|^(?:race at unknown origin, with )?(?:read|write)[\w() -]* to 0x[0-9a-f]+ of \d+ bytes by")),
    # lockdep: the lock being taken or released, then the ones held
    ("lock", rx(r"is trying to acquire lock:|is trying to acquire:|\] takes:$"
                r"|is trying to release lock \(|just changed the state of lock:")),
    ("held", rx(r"^but task is already holding lock:|^and this task is already holding:"
                r"|^\d+ locks? held by |^but this lock was taken by another|^other info that might help")),
    ("chain", rx(r"^-> #\d+ |^the existing dependency chain|^\s*\.\.\. acquired at:")),
    ("other", rx(r"^The buggy address |^Memory state around the buggy address|^kfence-#\d+")),
)

# Functions that never name a bug: the reporting machinery and common helpers. Whole-name
# regexes, tried on the name without compiler suffixes (.isra.0, .cold, ...).
SKIP_GROUPS: dict[str, tuple[str, ...]] = {
    "sanitizers": (
        r"_*kasan_\w*", r"_*asan_\w*", r"kmsan_\w*", r"_*msan_\w*", r"_*ubsan_\w*",
        r"_*kcsan_\w*", r"_*tsan_\w*", r"_*kfence_\w*", r"_*sanitizer\w*",
        r"check_memory_region\w*", r"print_address_description\w*", r"describe_object\w*",
        r"instrument_\w+",
    ),
    "report": (
        r"_*dump_stack\w*", r"show_stack", r"show_trace_log_lvl", r"_*show_regs", r"print_report",
        r"panic", r"_*warn", r"_*warn_printk", r"warn_slowpath\w*", r"report_bug", r"handle_bug",
        r"exc_invalid_op", r"asm_exc_\w+", r"do_error_trap", r"do_trap", r"die", r"die_addr",
        r"_*die\w*", r"oops_\w+", r"fixup_bug", r"exc_general_protection", r"exc_page_fault",
        r"page_fault_oops", r"kernelmode_fixup_or_oops", r"_*bad_area\w*", r"do_user_addr_fault",
        r"handle_page_fault", r"no_context", r"nmi_cpu_backtrace\w*", r"nmi_trigger_cpumask_backtrace",
        r"arch_trigger_cpumask_backtrace", r"trigger_single_cpu_backtrace", r"dump_cpu_task",
    ),
    "locking": (
        r"_*lock_acquire\w*", r"lock_release", r"lock_acquired", r"lock_contended",
        r"_raw_(?:spin|read|write)_(?:try)?(?:un)?lock\w*",
        r"do_raw_(?:spin|read|write)_(?:try)?(?:un)?lock\w*",
        r"queued_(?:spin|read|write)_lock\w*", r"native_queued_spin_lock_slowpath",
        r"_*mutex_(?:try)?(?:un)?lock\w*", r"_*mutex_lock_common", r"_*down(?:_\w+)?", r"_*up_(?:read|write)",
        r"up", r"_*rwsem_\w+", r"osq_(?:un)?lock", r"spin_(?:try)?(?:un)?lock\w*", r"_*rt_mutex\w*",
    ),
    "allocator": (
        r"_*kmalloc\w*", r"_*kmem_cache_\w+", r"_*slab_\w+", r"_*slab_alloc\w*", r"_*alloc_pages\w*",
        r"_*kvmalloc\w*", r"_*kvzalloc\w*", r"_*kvcalloc\w*", r"_*kvrealloc\w*", r"_*kzalloc\w*",
        r"_*kcalloc\w*", r"_*krealloc\w*", r"_*vmalloc\w*", r"_*vzalloc\w*", r"_*kmemleak_\w+",
        r"_*create_object", r"_*do_kmalloc\w*", r"new_slab", r"allocate_slab", r"alloc_slab_page",
        r"_*kstrn?dup\w*", r"_*kmemdup\w*", r"_*alloc_percpu\w*", r"pcpu_alloc", r"mempool_alloc\w*",
        r"_*get_free_pages", r"get_zeroed_page", r"_*folio_alloc\w*", r"_*kvasprintf\w*",
        r"_*kasprintf", r"alloc_page_interleave", r"_*alloc_pages_node", r"bitmap_(?:z)?alloc(?:_node)?",
    ),
    "strings": (
        r"_*memcpy\w*", r"_*memmove\w*", r"_*memset\w*", r"_*memcmp", r"_*memchr", r"_*bcmp",
        r"_*str[nls]?cpy\w*", r"_*strn?len", r"_*strn?cmp", r"_*strn?cat\w*", r"_*strchr",
        r"_*copy_(?:from|to)_user\w*", r"_*copy_user\w*", r"raw_copy_\w+", r"rep_movs_alternative",
        r"_*memdup_user\w*", r"strndup_user", r"vmemdup_user", r"_*get_user\w*", r"_*put_user\w*",
        r"_*check_object_size", r"_*check_heap_object", r"_*might_fault",
    ),
    "misc": (
        r"refcount_warn_saturate", r"debug_print_object", r"_*might_sleep", r"_*might_resched",
        r"stack_trace_save\w*", r"arch_stack_walk", r"stack_depot_save\w*", r"_*save_stack\w*",
    ),
    "lockdep": (
        r"check_\w+", r"validate_chain", r"print_\w+", r"lockdep_\w+", r"mark_lock\w*", r"mark_usage",
        r"lock_is_held_type", r"debug_check_no_locks\w*",
    ),
    "entry": (
        r"do_syscall_(?:64|x64|32)", r"entry_SYSCALL_64\w*", r"do_int80_syscall_32",
        r"_*do_fast_syscall_32", r"entry_SYSENTER\w*", r"ret_from_fork\w*",
    ),
}
SKIP: tuple[str, ...] = tuple(p for group in SKIP_GROUPS.values() for p in group)

FREE = (r"_*kfree\w*", r"_*kvfree\w*", r"_*kmem_cache_free\w*", r"_*slab_free\w*", r"_*vfree\w*",
        r"_*free_pages\w*", r"do_slab_free", r"_*put_page")

# Stalls loop somewhere below a dispatcher: the title names the frame just above the first of
# these (syzbot groups stalls by where the looping code was entered, not by where it was caught).
STALL_ANCHORS = rx(
    r"^(?:process_one_work|do_syscall_\w+|do_fast_syscall_\w+|__do_softirq|call_timer_fn"
    r"|_*run_timers\w*|run_timer_softirq|run_ksoftirqd|smpboot_thread_fn|kthread|start_secondary"
    r"|cpu_startup_entry|ret_from_fork|vfs_write|vfs_read|vfs_iter_read|vfs_iter_write|vfs_ioctl"
    r"|do_iter_read|do_iter_write|call_read_iter|call_write_iter|do_iter_readv_writev|do_mmap"
    r"|mmap_region|do_dentry_open|vfs_open|__fput|task_work_run|exit_to_user_mode\w*"
    r"|handle_mm_fault|__do_fault|(?:__x64_sys|__do_sys|__se_sys|__ia32_sys)_(?:ioctl|connect|socketpair))$")
STALL_STRIP = rx(r"^(?:__x64_|__ia32_|compat_)+")  # __x64_sys_keyctl -> sys_keyctl
# Hung tasks wait where they are blocked: skip the waiting, keep the first real caller.
HUNG_ANCHORS: tuple[tuple[str, str], ...] = (
    ("rtnl_lock", "rtnl_lock"), ("synchronize_rcu", "synchronize_rcu"),
    ("synchronize_srcu", "synchronize_rcu"), ("synchronize_net", "synchronize_rcu"),
)
HUNG_SKIP_PARTS = ("sched", "_lock", "_slowlock", "down", "completion", "kthread", "wait",
                   "synchronize", "context_switch", "__switch_to", "cancel_delayed_work")

# Panic messages that are the consequence of a report just printed (panic_on_oops,
# panic_on_warn, kasan.fault=panic, hung_task_panic...): they join that report.
PANIC_CONSEQUENCE = rx(
    r"Fatal exception|panic_on_warn set|panic_on_oops|kasan\.fault=panic|hung_task: blocked tasks"
    r"|softlockup: hung tasks|RCU Stall|Attempted to kill the idle task|Fatal machine check")
PANIC_END = rx(r"^---\[ end Kernel panic|^Kernel Offset: ")
JOIN_WINDOW = 60  # lines after a report within which a consequence panic still joins it

# Top-level directories of a kernel tree: file names printed by an O= build with a relative
# source path ("../../src/linux-source-6.1/fs/pipe.c") are cut back to the first of them.
TREE_DIRS = frozenset({"arch", "block", "certs", "crypto", "drivers", "fs", "include", "init",
                       "io_uring", "ipc", "kernel", "lib", "mm", "net", "rust", "samples", "scripts",
                       "security", "sound", "tools", "usr", "virt"})

# What varies between two reports of one bug leaves the title, as on syzbot: addresses, line
# numbers, offsets, CPU and other numbers (a number inside a name, like ext4 or p9, stays).
TITLE_NORMALIZE: tuple[tuple[Pattern, str], ...] = (
    (rx(r"([^a-zA-Z0-9])(?:0x)?[0-9a-f]{6,}"), r"\1ADDR"),
    (rx(r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b"), "IP"),
    (rx(r"(\.\w+)(?::\d+)+"), r"\1:LINE"),
    (rx(r"([a-zA-Z][\w.]+)\+0x[0-9a-f]+/0x[0-9a-f]+"), r"\1"),
    (rx(r"CPU#\d+"), "CPU"),
    (rx(r"(\W)\d+(?=\W|$)"), r"\1NUM"),
    (rx(r"\d{7,}"), "NUM"),
)
TITLE_MAX = 120

# --- the table -------------------------------------------------------------------------------

BANNER = rx(r"^={20,}\s*$")
CUT_HERE = rx(r"^-+\[ cut here \]-+\s*$")
TASK_END = rx(r"^\s*</TASK>\s*$")
END_TRACE = rx(r"^---\[ end trace")
AFTER_TRACE = End(line=TASK_END, armed_by=rx(r"^Call Trace:"))
AFTER_BACKTRACE = End(line=TASK_END, armed_by=rx(r"^stack backtrace:"))
OOPS_END = End(line=END_TRACE)
BAD_ACCESS = ("[bad-access in {frame}]",)
NOTHING = rx(r"(?!)")  # a block that nothing continues: a one-line report

RULES: tuple[Rule, ...] = (
    # --- sanitizers: a banner, the report, the same banner ---
    Rule("kasan-old-free", "KASAN", "BUG: KASAN:", rx(r"^BUG: KASAN: double-free or invalid-free in "),
         "KASAN: invalid-free[ in {frame}]", End(line=BANNER), frames=("header", "trace"),
         skip=FREE, alt=BAD_ACCESS, lead=BANNER),
    Rule("kasan-free", "KASAN", "BUG: KASAN:", rx(r"^BUG: KASAN: (?P<bug>double-free|invalid-free) in "),
         "KASAN: {bug}[ in {frame}]", End(line=BANNER), frames=("header", "trace"), skip=FREE,
         alt=BAD_ACCESS, lead=BANNER),
    Rule("kasan", "KASAN", "BUG: KASAN:", rx(r"^BUG: KASAN: (?P<bug>[\w-]+)(?: in |\s*$)"),
         "KASAN: {bug}[ {access}][ in {frame}]", End(line=BANNER), frames=("header", "trace"),
         fields=(("access", rx(r"^(?P<access>Read|Write) (?:of size \d+ )?at addr")),),
         alt=BAD_ACCESS, lead=BANNER),
    Rule("kfence", "KFENCE", "BUG: KFENCE:",
         rx(r"^BUG: KFENCE: (?P<bug>out-of-bounds|use-after-free|memory corruption|invalid free|invalid)"
            r"(?: (?P<access>read|write))? in "),
         "KFENCE: {bug}[ {access}][ in {frame}]", End(line=BANNER), frames=("header", "access"),
         skip=FREE, alt=BAD_ACCESS, lead=BANNER),
    Rule("kcsan", "KCSAN", "BUG: KCSAN:", rx(r"^BUG: KCSAN: (?P<bug>[\w-]+) in (?P<funcs>.+?)\s*$"),
         "KCSAN: {bug} in {funcs}", End(line=BANNER), frames=("access",), lead=BANNER),
    Rule("ubsan", "UBSAN", "UBSAN: ", rx(r"^UBSAN: (?P<bug>.+?) in (?P<src>\S+)\s*$"),
         "UBSAN: {bug}[ in {frame}]", End(line=BANNER, armed_by=rx(r"^Call Trace:")),
         skip=(r"_*ubsan\w*", r"\w*overflow\w*"), lead=BANNER),
    Rule("kmemleak", "LEAK", "unreferenced object", rx(r"^unreferenced object 0x[0-9a-f]+ \(size \d+\):"),
         "memory leak[ in {frame}]", End(block=rx(r"^\s")), frames=("backtrace",)),
    # --- lockdep: "stack backtrace:" then the dump of the current task ---
    Rule("lockdep-circular", "LOCKDEP", "WARNING: ",
         rx(r"^WARNING: possible circular locking dependency detected"),
         "possible deadlock[ in {frame}]", AFTER_BACKTRACE, frames=("lock", "trace"), lead=BANNER),
    Rule("lockdep-inversion", "LOCKDEP", "WARNING: ",
         rx(r"^WARNING: possible irq lock inversion dependency detected"),
         "possible deadlock[ in {frame}]", AFTER_BACKTRACE, frames=("lock", "trace"), lead=BANNER),
    Rule("lockdep-irq-order", "LOCKDEP", "WARNING: ",
         rx(r"^WARNING: \S+-safe -> \S+-unsafe lock order detected"),
         "possible deadlock[ in {frame}]", AFTER_BACKTRACE, frames=("lock", "trace"), lead=BANNER),
    Rule("lockdep-recursive", "LOCKDEP", "WARNING: ", rx(r"^WARNING: possible recursive locking detected"),
         "possible deadlock[ in {frame}]", AFTER_BACKTRACE, frames=("lock", "trace"), lead=BANNER),
    Rule("lockdep-inconsistent", "LOCKDEP", "WARNING: ", rx(r"^WARNING: inconsistent lock state"),
         "inconsistent lock state[ in {frame}]", AFTER_BACKTRACE, frames=("lock", "trace"), lead=BANNER),
    # syzbot names the first caller outside RCU; the file:line spelling is its older one.
    Rule("lockdep-rcu", "LOCKDEP", "WARNING: ", rx(r"^WARNING: suspicious RCU usage"),
         "WARNING: suspicious RCU usage[ in {frame}]", AFTER_BACKTRACE,
         skip=(r"\w*rcu\w*", r"_*kmem\w*", r"_*slab\w*", r"_*kmalloc\w*", r"_*vmalloc\w*",
               r"_*kcalloc\w*", r"_*kzalloc\w*"),
         fields=(("src", rx(r"^(?P<src>\S+:\d+) suspicious \S+ usage")),),
         alt=("[suspicious RCU usage at {src}]",), lead=BANNER),
    Rule("lockdep-unlock", "LOCKDEP", "WARNING: ", rx(r"^WARNING: bad unlock balance detected!"),
         "WARNING: bad unlock balance[ in {frame}]", AFTER_BACKTRACE, frames=("lock", "trace"),
         alt=("[bad unlock balance in {frame}]",), lead=BANNER),
    # no stack: the held locks, the first taken where the task left them
    Rule("lockdep-user-locks", "LOCKDEP", "WARNING: ", rx(r"^WARNING: lock held when returning to user space!"),
         "WARNING: lock held when returning to user space[ in {frame}]",
         End(block=rx(r"^(?:-+|\S+ #\d+\b.*|\S+ is leaving the kernel with locks still held!"
                       r"|\d+ locks? held by .*|\s+#\d+: .*|\s*)$")),
         frames=("held",), needs_stack=False, lead=BANNER),
    Rule("lockdep-freed", "LOCKDEP", "WARNING: ", rx(r"^WARNING: held lock freed!"),
         "WARNING: held lock freed[ in {frame}]", AFTER_BACKTRACE, frames=("trace",), lead=BANNER),
    # --- WARN(): "cut here", an optional message, the WARNING line, regs, trace, end trace ---
    Rule("warning-refcount", "WARNING", "WARNING: ",
         rx(r"^WARNING: CPU: \d+ PID: \d+ at \S*lib/refcount\.c:\d+ "),
         "WARNING: refcount bug[ in {frame}]", OOPS_END, frames=("rip", "header", "trace"),
         skip=(r"_*refcount\w*",), lead=CUT_HERE),
    Rule("warning-odebug", "WARNING", "WARNING: ",
         rx(r"^WARNING: CPU: \d+ PID: \d+ at \S*lib/debugobjects\.c:\d+ "),
         "WARNING: ODEBUG bug[ in {frame}]", OOPS_END, frames=("rip", "header", "trace"),
         skip=FREE + (r"_*debug_\w+", r"\w*rcu\w*", r"_*hrtimer_\w+", r"_*timer_\w+", r"_*work_\w+",
                      r"_*percpu_\w+", r"_*kobject_\w+", r"_*destroy_\w+"),
         lead=CUT_HERE),
    Rule("warning-lockdep", "WARNING", "WARNING: ",
         rx(r"^WARNING: CPU: \d+ PID: \d+ at \S*kernel/locking/lockdep\.c:\d+ "),
         "WARNING: locking bug[ in {frame}]", OOPS_END, frames=("rip", "header", "trace"), lead=CUT_HERE),
    Rule("warning", "WARNING", "WARNING: ", rx(r"^WARNING: (?:CPU: \d+ PID: \d+ )?at (?P<src>\S+)"),
         "WARNING[ in {frame}]", OOPS_END, frames=("rip", "header", "trace"), lead=CUT_HERE),
    # --- oopses: a header, "Oops:"/die line, regs with RIP, trace, end trace ---
    Rule("bug-at", "BUG", "kernel BUG at", rx(r"^kernel BUG at (?P<src>\S+?)!?\s*$"),
         "kernel BUG[ in {frame}]", OOPS_END, frames=("rip", "trace"),
         alt=("kernel BUG at {src}",), lead=CUT_HERE),
    Rule("page-fault", "BUG", "BUG: unable to handle",
         rx(r"^BUG: unable to handle (?:page fault for address|kernel paging request)"),
         "BUG: unable to handle kernel paging request[ in {frame}]", OOPS_END, frames=("rip", "trace"),
         alt=BAD_ACCESS),
    Rule("null-deref", "BUG", "NULL pointer dereference",
         rx(r"^BUG: (?:unable to handle )?kernel NULL pointer dereference"),
         "BUG: unable to handle kernel NULL pointer dereference[ in {frame}]", OOPS_END,
         frames=("rip", "trace"), alt=BAD_ACCESS),
    Rule("gpf", "GPF", "general protection fault", rx(r"^general protection fault\b"),
         "general protection fault[ in {frame}]", OOPS_END, frames=("rip", "trace"),
         # with KASAN the next line decodes the address: "KASAN: null-ptr-deref in range [...]"
         fields=(("kasan", rx(r"^KASAN: (?P<kasan>[\w -]+?) in range \[")),),
         alt=BAD_ACCESS + ("[KASAN: {kasan} in {frame}]",)),
    Rule("invalid-opcode", "BUG", "invalid opcode:", rx(r"^invalid opcode: [0-9a-f]{4} \[#\d+\]"),
         "invalid opcode[ in {frame}]", OOPS_END, frames=("rip", "trace"), joins=True),
    Rule("divide-error", "BUG", "divide error:", rx(r"^divide error: [0-9a-f]{4} \[#\d+\]"),
         "divide error[ in {frame}]", OOPS_END, frames=("rip", "trace")),
    # --- hangs ---
    Rule("hung-task", "HANG", "INFO: task ", rx(r"^INFO: task .+:\d+ blocked for more than \d+ seconds"),
         "INFO: task hung[ in {frame}]", AFTER_TRACE, pick="hung"),
    Rule("rcu-stall", "HANG", "INFO: rcu_",
         rx(r"^(?:rcu: )?INFO: rcu_\w+ (?:self-)?detected (?:expedited )?stalls?\b"),
         "INFO: rcu detected stall[ in {frame}]", AFTER_TRACE, frames=("rip", "trace"), pick="stall",
         skip=(r"\w*rcu\w*", r"_*apic_timer_interrupt\w*", r"sysvec_\w+"), any_context=True),
    Rule("soft-lockup", "HANG", "BUG: soft lockup", rx(r"^(?:watchdog: )?BUG: soft lockup - CPU#\d+ stuck"),
         "BUG: soft lockup[ in {frame}]", AFTER_TRACE, frames=("rip", "trace"), pick="stall",
         any_context=True),
    Rule("workqueue-lockup", "HANG", "BUG: workqueue lockup", rx(r"^BUG: workqueue lockup"),
         "BUG: workqueue lockup", End(block=NOTHING), needs_stack=False),
    # --- scheduler checks: a header, details, dump_stack() ---
    Rule("sleeping", "BUG", "BUG: sleeping function",
         rx(r"^BUG: sleeping function called from invalid context at (?P<src>\S+)"),
         "BUG: sleeping function called from invalid context[ in {frame}]", AFTER_TRACE,
         skip=(r"_*might_\w+", r"_*cond_resched\w*")),
    Rule("atomic-sched", "BUG", "BUG: scheduling while atomic", rx(r"^BUG: scheduling while atomic: "),
         "BUG: scheduling while atomic[ in {frame}]", AFTER_TRACE,
         skip=(r"_*schedule\w*", r"\w*_schedule_bug", r"preempt_\w+", r"_*cond_resched\w*",
               r"schedule_\w+", r"do_nanosleep", r"hrtimer_nanosleep")),
    # --- panic: alone it is the report (sysrq, init died); after a report it is its consequence ---
    Rule("panic-consequence", "PANIC", "Kernel panic - not syncing",
         rx(r"^Kernel panic - not syncing: (?P<msg>(?:\S+: )?(?:" + PANIC_CONSEQUENCE.pattern + r").*?)\s*$"),
         "kernel panic: {msg}", End(line=PANIC_END, eof_ok=True), skip=(r"_*panic\w*",),
         joins=True, follows=True, corrupted="truncated", needs_stack=False),
    Rule("panic", "PANIC", "Kernel panic - not syncing", rx(r"^Kernel panic - not syncing: (?P<msg>.*?)\s*$"),
         "kernel panic: {msg}", End(line=PANIC_END, eof_ok=True), joins=True),
    # --- anything else the kernel calls a BUG ---
    Rule("bug", "BUG", "BUG: ", rx(r"^BUG: (?P<msg>[A-Za-z][^:,!\[]*?)(?: in process\b| at |[:,!\[]|\s*$)"),
         "BUG: {msg}", End(line=rx(r"^\s*</TASK>\s*$|^---\[ end trace")), needs_stack=False),
)

RULES_BY_NAME = {r.name: r for r in RULES}
assert len(RULES_BY_NAME) == len(RULES), "rule names must be unique"


def skip_regex(rule: Rule) -> Pattern:
    """The functions a rule's guilty frame may not be: the common list plus the rule's own."""
    return re.compile("(?:" + "|".join(SKIP + rule.skip) + r")\Z")
