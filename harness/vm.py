"""Boot a kernel with virtme-ng and watch its console.

`vng --run bzImage --exec CMD` under pexpect: everything the guest prints goes
to console.log as it arrives. Two clocks: no output for `no_output_s` (hang)
and `total_s` (timeout). A kernel that reports a stall (RCU, soft lockup, hung
task) keeps printing, so its reports do not count as output: `no_output_s`
after a stall report with no test marker since is a hang too. A panic ends the
VM promptly. QEMU runs in its own
process group, registered with procs, so it never outlives wqh.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pexpect

from harness import procs, report_rules
from harness.accel import Accel
from harness.errors import InfraError
from harness.guest import protocol

# Seconds to keep reading after a panic line, so the whole report is captured.
PANIC_GRACE_S = 3.0
PANIC_RE = re.compile(r"Kernel panic - not syncing|---\[ end Kernel panic")
BEGIN_RE = re.compile(r"wqh: begin ")
# A CPU or task stuck in the kernel: the detectors repeat their report (RCU every ~63 s), which
# would keep the silence clock from ever running out.
# The report parser's own header patterns of these three, not a second copy of them.
STALL_RE = re.compile("|".join(report_rules.FORMATS_BY_NAME[n].title.pattern
                               for n in ("rcu-stall", "soft-lockup", "hung-task")))
PROGRESS_RE = re.compile("|".join(re.escape(m) for m in
                                  (protocol.MARK_BEGIN, protocol.MARK_END, protocol.MARK_DONE)))


def stall_state(window: str, new_from: int, stalled_since: float | None,
                now: float) -> float | None:
    """When the kernel began stalling with no test marker after it. `window` is the console's
    newest text, of which what starts at `new_from` just arrived: only matches ending there
    count. A marker after the last stall report clears the clock; a stall report starts it,
    anew if a marker came before it, else it keeps running."""
    def last(rx: re.Pattern) -> int:
        return max((m.start() for m in rx.finditer(window) if m.end() > new_from), default=-1)
    stall, progress = last(STALL_RE), last(PROGRESS_RE)
    if stall > progress:
        return now if progress >= 0 or stalled_since is None else stalled_since
    if progress > stall:
        return None
    return stalled_since


@dataclass(frozen=True)
class VMSpec:
    bzimage: Path
    cpus: int = 2
    memory: str = "1G"
    rwdirs: tuple[Path, ...] = ()
    append: tuple[str, ...] = ()
    no_output_s: float = 60.0
    total_s: float = 600.0
    # Silence allowed before the first test begins: boot, then Python and pytest starting in
    # the guest print nothing for long stretches under TCG, more so on a loaded host.
    start_no_output_s: float = 0.0
    # Root filesystem tuned for many small reads (see root_fs_args); False is vng's default.
    tuned_root: bool = True


@dataclass
class VMResult:
    command: list[str]
    console: Path
    end: str  # 'exited' | 'panic' | 'hang' | 'timeout' | 'interrupted'
    exit_status: int | None
    duration_s: float
    first_test_s: float | None = None  # spawn -> first 'wqh: begin' marker
    notes: list[str] = field(default_factory=list)


def vng_binary() -> str:
    """vng from the interpreter's environment first, then PATH."""
    here = Path(sys.executable).parent / "vng"
    if here.exists():
        return str(here)
    found = shutil.which("vng")
    if not found:
        raise InfraError("virtme-ng (vng) is not installed",
                         hint="pip install -e . (pulls virtme-ng), or run 'wqh doctor'")
    return found


def vng_env() -> dict[str, str]:
    """vng runs virtme-run and virtme-ng-init from its own bin dir: put it on PATH."""
    env = dict(os.environ)
    bindir = str(Path(vng_binary()).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env.setdefault("TERM", "dumb")
    return env


# Where virtme-ng looks for virtiofsd, in its order.
VIRTIOFSD_PATHS = ("virtiofsd", "/usr/libexec/virtiofsd", "/usr/lib/virtiofsd/virtiofsd",
                   "/usr/lib/virtiofsd", "/usr/lib/qemu/virtiofsd")

# The 9p root as virtme-ng mounts it, plus cache=loose: the guest keeps dentries, inodes and
# pages instead of asking the host for each stat and read. Python and pytest starting make
# ~3500 file system calls; uncached, each is a round trip through TCG-emulated virtio.
ROOTFLAGS_9P = "rootflags=version=9p2000.L,trans=virtio,access=any,msize=524288,cache=loose"


@functools.lru_cache(maxsize=None)
def rust_virtiofsd() -> str | None:
    """The virtiofsd virtme-ng can use, or None.

    QEMU's old C virtiofsd (Debian 12's /usr/lib/qemu/virtiofsd) answers --version as root, so
    virtme-ng picks it, fails to start it with the Rust daemon's options and falls back to 9p
    after about 3 s of waiting. Only the Rust daemon knows --shared-dir."""
    import subprocess

    for name in VIRTIOFSD_PATHS:
        path = shutil.which(name) if "/" not in name else name
        if not path or not os.access(path, os.X_OK):
            continue
        try:
            out = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if "--shared-dir" in out.stdout + out.stderr:
            return path
    return None


def root_fs_args() -> list[str]:
    """vng options for the guest's root: virtio-fs when a usable daemon exists (vng's own
    choice, cache=always), else 9p chosen up front and mounted with cache=loose.

    The VM lives for one run and sees the host read-only, so a stale cache cannot mislead it;
    results go to --rwdir mounts, which keep vng's own (uncached) options."""
    if rust_virtiofsd():
        return []
    return ["--force-9p", "--append", ROOTFLAGS_9P]


def vng_command(spec: VMSpec, accel: Accel, exec_cmd: str | None) -> list[str]:
    cmd = [vng_binary(), "--run", str(spec.bzimage), "--cpus", str(spec.cpus),
           "--memory", spec.memory]
    if not accel.kvm:
        cmd.append("--disable-kvm")
    # Full kernel console on our stdout: reports, markers and the test output.
    cmd.append("--verbose")
    if spec.tuned_root:
        cmd += root_fs_args()
    for d in spec.rwdirs:
        cmd.append(f"--rwdir={d}")
    for a in spec.append:
        cmd += ["--append", a]
    if exec_cmd is not None:
        cmd += ["--exec", exec_cmd]
    return cmd


def run(spec: VMSpec, accel: Accel, exec_cmd: str, console: Path,
        echo: bool = False) -> VMResult:
    cmd = vng_command(spec, accel, exec_cmd)
    console.parent.mkdir(parents=True, exist_ok=True)
    (console.parent / "vng-command.txt").write_text(shlex.join(cmd) + "\n")
    t0 = time.monotonic()
    last_output = t0
    deadline = t0 + spec.total_s
    panic_at: float | None = None
    stalled_since: float | None = None
    first_test: float | None = None
    notes: list[str] = []
    end = "exited"
    tail = ""
    env = vng_env()
    child = pexpect.spawn(cmd[0], cmd[1:], encoding="utf-8", codec_errors="replace",
                          env=env, dimensions=(50, 250), preexec_fn=procs._pdeathsig,
                          echo=False)
    procs.register(child.pid)
    try:
        with console.open("w") as out:
            while True:
                if procs.stopping():  # a stop signal while this VM started in another thread
                    end = "interrupted"
                    break
                now = time.monotonic()
                if panic_at is not None and now - panic_at > PANIC_GRACE_S:
                    end = "panic"
                    break
                if now > deadline:
                    end = "timeout"
                    break
                silence = spec.no_output_s if first_test is not None else max(
                    spec.no_output_s, spec.start_no_output_s)
                if now - last_output > silence:
                    end = "hang"
                    break
                # A stall report means the kernel is stuck: the start allowance (a guest's
                # Python starting in silence) does not apply to it.
                if stalled_since is not None and now - stalled_since > spec.no_output_s:
                    end = "hang"
                    notes.append(f"the kernel reported a stall and no test began or ended in "
                                 f"the {spec.no_output_s:.0f} s after it")
                    break
                try:
                    chunk = child.read_nonblocking(65536, timeout=0.5)
                except pexpect.TIMEOUT:
                    continue
                except pexpect.EOF:
                    break
                last_output = time.monotonic()
                out.write(chunk)
                out.flush()
                if echo:
                    sys.stdout.write(chunk)
                    sys.stdout.flush()
                window = tail + chunk
                if first_test is None and BEGIN_RE.search(window):
                    first_test = last_output - t0
                if panic_at is None and PANIC_RE.search(window):
                    panic_at = last_output
                stalled_since = stall_state(window, len(tail), stalled_since, last_output)
                tail = window[-256:]
    except procs.Interrupted:
        end = "interrupted"
        raise
    finally:
        procs.kill_group(child.pid)  # vng, QEMU and anything else in its group
        try:
            child.close(force=True)
        except Exception:  # noqa: BLE001 - best effort, the group is already dead
            pass
        procs.unregister(child.pid)
    status = child.exitstatus if child.exitstatus is not None else None
    if end == "exited" and panic_at is not None:
        end = "panic"
    return VMResult(cmd, console, end, status, round(time.monotonic() - t0, 2), first_test,
                    notes)


def shell(spec: VMSpec, accel: Accel) -> int:
    """Interactive guest on the user's terminal."""
    import subprocess

    cmd = vng_command(spec, accel, None)
    print("wqh: " + shlex.join(cmd), file=sys.stderr)
    # Same process group as us: the terminal's job control and Ctrl-C reach QEMU directly.
    p = subprocess.Popen(cmd, preexec_fn=procs._pdeathsig, env=vng_env())
    try:
        return p.wait()
    finally:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
