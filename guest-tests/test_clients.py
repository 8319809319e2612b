"""keyutils' keyctl as a second oracle (harness/clients.py, watch_queue.md §5).

One scripted session of key operations (add a user key to a keyring in a new session, update it,
link it into another keyring, unlink it, clear that keyring, setperm, revoke, destroy, invalidate)
is watched twice: by real keyctl processes and by wqh's binding on its own notification pipe
watching the same keys. After each operation what keyctl printed must agree with what wqh read.

* `keyctl watch KEY`: one process a watched object, each on its own queue, each compared with
  wqh's records of the same object (by wqh's watch id); each exits when its object is destroyed.
* `keyctl watch_session` + `watch_add`/`watch_rm`: one queue for all objects, compared in order
  with all of wqh's records; `watch_rm` ends it.
* the kernel's `samples/watch_queue/watch_test`, built by wqh from the tree under test
  (harness/watch_test_build.py, passed in WQH_WATCH_TEST): it watches its session and user
  keyrings, the script runs on keys in those two, compared in order with wqh's queue on the same.
"""

import dataclasses
import errno
import json
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time
import tty

import pytest

from harness import clients, procs
from harness.guest import uapi
from harness.guest.fixtures import Queue, in_child

KEYCTL = "/usr/bin/keyctl"
PERM = uapi.KEY_POS_ALL | uapi.KEY_USR_ALL
WAIT = 20.0  # seconds a client may take to print what wqh already read (TCG, sanitizers)
GRACE = 0.2  # seconds to look for client events beyond those wqh read
POLL_SYSCALLS = {"7", "271"}  # x86_64 poll, ppoll: where keyctl's consumer waits for records
WID = {"R1": 1, "R2": 2, "K": 3}  # wqh's watch ids
LABEL = {"R1": "keyring R1 in a new session", "R2": "keyring R2", "K": "user key K"}


@pytest.fixture
def keyctl(watch_queue_kernel):
    """keyctl's path; skip unless it has the watch subcommands."""
    path = KEYCTL if os.access(KEYCTL, os.X_OK) else shutil.which("keyctl")
    if not path:
        pytest.skip(f"no {KEYCTL} in the guest (keyutils is not installed)")
    usage = subprocess.run([path], capture_output=True, text=True, timeout=60)  # usage, exit 2
    missing = [c for c in ("watch", "watch_add", "watch_rm", "watch_session")
               if not re.search(rf"^\s*keyctl {c}\s", usage.stdout + usage.stderr, re.M)]
    if missing:
        version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60)
        pytest.skip(f"{path} ({version.stdout.strip() or 'keyutils, version unknown'}) has no "
                    f"{', '.join(missing)} subcommand: this keyutils predates key notifications")
    return path


class Stream:
    """A pipe read as it comes, in complete lines; parse (if given) turns each into an event."""

    def __init__(self, fd, client, parse=True):
        os.set_blocking(fd, False)
        self.fd, self.client, self.parse = fd, client, parse
        self.buf, self.lines, self.events, self.notes = b"", [], [], []
        self.taken = 0
        self.eof = False

    def pump(self):
        while not self.eof:
            try:
                data = self.read_chunk()
            except BlockingIOError:
                return
            if not data:
                self.eof = True
                break
            self.buf += data
            *lines, self.buf = self.buf.split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace")
                self.lines.append(line)
                if not self.parse:
                    continue
                got = clients.parse_keyctl_line(line, self.client)  # a line it never prints fails here
                if isinstance(got, clients.Event):
                    self.events.append(got)
                elif got is not None:
                    self.notes.append(got)

    def read_chunk(self):
        return os.read(self.fd, 65536)

    def pending(self):
        return len(self.events) - self.taken

    def take(self):
        new = self.events[self.taken:]
        self.taken = len(self.events)
        return new


def pump(streams, until, timeout):
    """Read the streams until until() or the timeout."""
    deadline = time.monotonic() + timeout
    while not until():
        live = [s for s in streams if not s.eof]
        left = deadline - time.monotonic()
        if not live or left <= 0:
            return
        p = select.poll()
        for s in live:
            p.register(s.fd, select.POLLIN)
        p.poll(int(left * 1000) + 1)
        for s in live:
            s.pump()


def wait_for(wanted):
    """[(stream, n)]: read until each stream holds n new events (or EOF, or WAIT), then GRACE
    more for events beyond those."""
    streams = [s for s, _ in wanted]
    pump(streams, lambda: all(s.pending() >= n or s.eof for s, n in wanted), WAIT)
    pump(streams, lambda: False, GRACE)


def start(argv, **kw):
    """A client in a process group of its own, so that stop() also ends what it forked."""
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True, **kw)


def stop(proc):
    """End a client still running, with what it forked (its group: the leader is alive, so the
    group id is still ours)."""
    if proc.stdin and not proc.stdin.closed:
        proc.stdin.close()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            return
        os.killpg(proc.pid, sig)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass


def stderr_of(proc):
    if proc.poll() is None:
        return "(still running)"
    return proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""


class Watches:
    """`keyctl watch KEY` per object: each client is compared with wqh's records of its object."""

    def __init__(self, keyctl, q):
        self.keyctl, self.q = keyctl, q
        self.clients = {}  # name -> (client label, Popen, Stream)

    def watch(self, name, key):
        client = f"keyctl watch {key} ({LABEL[name]})"
        proc = start([self.keyctl, "watch", str(key)])
        self.clients[name] = (client, proc, Stream(proc.stdout.fileno(), client))
        self._until_watching(client, proc)
        uapi.watch_key(key, self.q.r, WID[name])

    @staticmethod
    def _until_watching(client, proc):
        """keyctl watch calls KEYCTL_WATCH_KEY before its first poll(): once it sleeps in poll,
        its watch is there (keyctl_watch.c act_keyctl_watch, consumer)."""
        path = f"/proc/{proc.pid}/syscall"
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"{client} exited with {proc.returncode} before watching: {stderr_of(proc)}")
            try:
                with open(path) as fh:
                    nr = (fh.read().split() or ["?"])[0]
            except FileNotFoundError:
                pytest.skip(f"kernel has no {path} (CONFIG_HAVE_ARCH_TRACEHOOK): cannot tell when "
                            "keyctl watch is watching")
            if nr in POLL_SYSCALLS:
                return
            time.sleep(0.01)
        pytest.fail(f"{client} not waiting in poll() {WAIT} s after it started")

    def collect(self, op, events):
        mine = {n: [e for e in events if e.watch_id == WID[n]] for n in self.clients}
        wait_for([(s, len(mine[n])) for n, (_, _, s) in self.clients.items()])
        out = []
        for n, (client, _, s) in self.clients.items():
            out += clients.compare(client, op, s.take(), clients.visible(client, mine[n]))
        return out

    def finish(self):
        """Each keyctl watch exits after its object's removal record: what it printed after the
        last operation is extra."""
        out = []
        for client, proc, s in self.clients.values():
            mine = []
            try:
                proc.wait(WAIT)
            except subprocess.TimeoutExpired:
                mine.append(f"{client} still running {WAIT:.0f} s after its object was destroyed "
                            "(keyctl watch exits on the removal record of its watch)")
                stop(proc)
            pump([s], lambda: s.eof, WAIT)
            mine += clients.compare(client, "after the last operation", s.take(), [])
            if proc.returncode != 0 and not mine:
                mine.append(f"{client} exited with {proc.returncode}: {stderr_of(proc)}")
            out += mine
        return out

    def close(self):
        for _, proc, _ in self.clients.values():
            stop(proc)

    def transcript(self):
        return {client: {"lines": s.lines, "watch_id": WID[n]}
                for n, (client, _, s) in self.clients.items()}


class Session:
    """`keyctl watch_session LOG LOG FD sh` whose shell runs `keyctl watch_add|watch_rm FD KEY`
    for each line on its stdin: one queue for every object, compared in order with wqh's."""

    client = clients.KEYCTL_WATCH_SESSION
    SHELL = ('while read -r cmd key; do "$0" "$cmd" "$KEYCTL_WATCH_FD" "$key" '
             '&& echo "ok $cmd $key" || echo "failed $cmd $key"; done')

    def __init__(self, keyctl, q):
        self.q = q
        log_r, log_w = os.pipe()
        # The log is our pipe (notify and gc in one, so in record order); the queue goes on fd 9:
        # not the log's fd, and above the two fds the consumer's pipe2() gets.
        target = next(fd for fd in range(9, 2, -1) if fd != log_w)
        log = f"/proc/self/fd/{log_w}"
        try:
            self.proc = start([keyctl, "watch_session", log, log, str(target), "/bin/sh", "-c",
                               self.SHELL, keyctl], pass_fds=(log_w,))
        finally:
            os.close(log_w)
        self.log = Stream(log_r, self.client)
        self.acks = Stream(self.proc.stdout.fileno(), self.client, parse=False)

    def _command(self, cmd, key):
        self.proc.stdin.write(f"{cmd} {key}\n".encode())
        self.proc.stdin.flush()
        n = len(self.acks.lines)
        pump([self.acks], lambda: len(self.acks.lines) > n, WAIT)
        reply = self.acks.lines[n] if len(self.acks.lines) > n else None
        if reply != f"ok {cmd} {key}":
            pytest.fail(f"keyctl {cmd} FD {key} under watch_session: {reply or 'no answer'}; "
                        f"stderr: {stderr_of(self.proc)}")

    def watch(self, name, key):
        self._command("watch_add", key)
        uapi.watch_key(key, self.q.r, WID[name])

    def unwatch(self, name, key):
        self._command("watch_rm", key)
        uapi.unwatch_key(key, self.q.r)

    def collect(self, op, events):
        mine = clients.visible(self.client, events)
        wait_for([(self.log, len(mine))])
        return clients.compare(self.client, op, self.log.take(), mine)

    def finish(self):
        """EOF on the shell's stdin ends it; watch_session then stops its consumer."""
        self.proc.stdin.close()
        out = []
        try:
            self.proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            out.append(f"{self.client} still running {WAIT:.0f} s after its command ended")
            stop(self.proc)
        pump([self.log], lambda: self.log.eof, WAIT)
        return out + clients.compare(self.client, "after the last operation", self.log.take(), [])

    def close(self):
        stop(self.proc)
        os.close(self.log.fd)

    def transcript(self):
        return {self.client: {"lines": self.log.lines, "watch_id": None}}


class Keys:
    def __init__(self, r1, r2):
        self.R1, self.R2, self.K = r1, r2, None


SCRIPT = [  # (operation, what it does, objects whose removal record wqh waits for) or "watch K"
    ("add_key user K into R1", lambda k: setattr(k, "K", uapi.add_key("user", "wqh-clients-k", b"v0", k.R1)),
     ()),
    "watch K",
    ("KEYCTL_UPDATE K", lambda k: uapi.key_update(k.K, b"v1"), ()),
    ("KEYCTL_LINK K into R2", lambda k: uapi.link(k.K, k.R2), ()),
    ("KEYCTL_UNLINK K from R2", lambda k: uapi.unlink(k.K, k.R2), ()),
    ("add_key user K2 into R2", lambda k: uapi.add_key("user", "wqh-clients-k2", b"v0", k.R2), ()),
    ("KEYCTL_CLEAR R2", lambda k: uapi.clear(k.R2), ()),
    ("KEYCTL_SETPERM K", lambda k: uapi.setperm(k.K, PERM), ()),
    ("KEYCTL_REVOKE K", lambda k: uapi.revoke(k.K), ()),
    ("KEYCTL_UNLINK K from R1 (its last link: K destroyed)", lambda k: uapi.unlink(k.K, k.R1), ("K",)),
    ("KEYCTL_INVALIDATE R2", lambda k: uapi.invalidate(k.R2), ("R2",)),
]


def operations(ops):
    return [{"operation": op, "wqh": [dataclasses.asdict(e) for e in events]} for op, events in ops]


def save_record(name, transcript, operations):
    """The session as both readers saw it, for tests/data/clients/ (recorded output for the host's
    unit tests): each client's lines, wqh's events per operation. Only where the agent says where."""
    out = os.environ.get("WQH_GUEST_OUT")
    if not out:
        return
    os.makedirs(os.path.join(out, "clients"), exist_ok=True)
    with open(os.path.join(out, "clients", f"{name}.json"), "w") as fh:
        json.dump({"kernel": os.uname().release, "clients": transcript, "operations": operations},
                  fh, indent=1)


def record(name, oracle, ops):
    save_record(name, oracle.transcript(), operations(ops))


def read_operation(q, keys, destroyed):
    """wqh's records of the operation just done; for each object in DESTROYED (names in keys),
    until its removal record came: the key gc posts it after the destruction, asynchronously."""
    records = q.drain()
    if destroyed:
        ids = {getattr(keys, name) for name in destroyed}
        before = list(records)

        def all_removed(new):
            return ids <= {e.key_id for e in clients.from_records(before + new)
                           if e.kind == clients.REMOVAL}
        records = before + uapi.wait_records(q.r, all_removed, WAIT)
    return records


def run(oracle, q, keys, last, name):
    """The script and its last step, each operation compared; all disagreements."""
    problems, ops = [], []
    for step in SCRIPT + [last]:
        if step == "watch K":
            oracle.watch("K", keys.K)
            continue
        op, do, destroyed = step
        do(keys)
        records = read_operation(q, keys, destroyed)
        events = clients.from_records(records)
        if not events:
            problems.append(f"wqh read nothing for {op!r}: nothing to compare")
        problems += oracle.collect(op, events)
        ops.append((op, events))
    problems += oracle.finish()
    record(name, oracle, ops)
    return problems


def agree(oracle, q, keys, last, name):
    """Both keyrings watched by the client and by wqh, the script run: no disagreement."""
    try:
        oracle.watch("R1", keys.R1)
        oracle.watch("R2", keys.R2)
        problems = run(oracle, q, keys, last, name)
    finally:
        oracle.close()
    assert not problems, "\n".join(map(str, problems))


def test_keyctl_watch_agrees_with_wqh(keyctl, new_queue, new_key, session_keyring):
    q = new_queue(size=64)
    keys = Keys(session_keyring, new_key("wqh-clients-r2", ktype="keyring"))
    agree(Watches(keyctl, q), q, keys, ("KEYCTL_INVALIDATE R1", lambda k: uapi.invalidate(k.R1), ("R1",)),
          "keyctl-watch")


def test_keyctl_watch_session_agrees_with_wqh(keyctl, new_queue, new_key, session_keyring):
    q = new_queue(size=64)
    keys = Keys(session_keyring, new_key("wqh-clients-r2", ktype="keyring"))
    oracle = Session(keyctl, q)
    agree(oracle, q, keys, ("keyctl watch_rm R1 / KEYCTL_WATCH_KEY(R1, -1)",
                            lambda k: oracle.unwatch("R1", k.R1), ()), "keyctl-watch-session")


# --- the kernel's own samples/watch_queue/watch_test ------------------------------------------
#
# watch_test.c (6.1 and 6.12 alike) makes a notification pipe of 256 notes with a filter passing
# every key-notification subtype, watches the session keyring (KEY_SPEC_SESSION_KEYRING) with
# watch id 0x01 and the user keyring (KEY_SPEC_USER_KEYRING) with 0x02, and prints each read()
# until EOF, which never comes (it holds the write end itself): it is killed at the end.
#
# Its user keyring is a throw-away user's (so the script may clear and invalidate it): the whole
# session runs in a forked child switched to WATCH_TEST_UID, in a new session keyring. There R1 is
# that session keyring and R2 that user keyring, the two objects watch_test watches, and wqh's
# binding watches the same two with the same ids and filter on its own queue. The script is the
# keyctl tests' one: operations on K alone show in neither reading (no one watches K).

WATCH_TEST_UID = 65531  # a throw-away user (test_watch_limit.py uses 65532-65534)
WT_WID = {"R1": 1, "R2": 2}  # watch_test.c: KEY_SPEC_SESSION_KEYRING 0x01, KEY_SPEC_USER_KEYRING 0x02
WT_LABEL = {"R1": "the session keyring of both", "R2": f"the user keyring of uid {WATCH_TEST_UID}"}
WT_SILENT = {"KEYCTL_UPDATE K", "KEYCTL_SETPERM K", "KEYCTL_REVOKE K"}  # on K alone
WT_LAST = ("KEYCTL_INVALIDATE R1 (the session keyring: still held by both, not destroyed)",
           lambda k: uapi.invalidate(k.R1), ())
READ_SYSCALL = "0"  # x86_64 read: where watch_test's consumer waits, after both watches


@pytest.fixture
def watch_test(watch_queue_kernel):
    """A copy of the host-built watch_test (WQH_WATCH_TEST) the throw-away user may run (the
    host's cache under /root is not searchable by it); skip with the host's reason without one."""
    path = os.environ.get("WQH_WATCH_TEST")
    if not path:
        why = os.environ.get("WQH_WATCH_TEST_SKIP")
        pytest.skip(f"no watch_test: {why}" if why else
                    "WQH_WATCH_TEST is not set (wqh sets it to samples/watch_queue/watch_test built "
                    "from the kernel tree under test)")
    if not os.access(path, os.X_OK):
        pytest.fail(f"WQH_WATCH_TEST={path} is not an executable file")
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to a throw-away uid (watch_test watches its user keyring)")
    d = tempfile.mkdtemp(prefix="wqh-watch-test-")
    try:
        exe = os.path.join(d, "watch_test")
        shutil.copyfile(path, exe)
        os.chmod(exe, 0o755)
        os.chmod(d, 0o755)
        yield exe
    finally:
        shutil.rmtree(d, ignore_errors=True)


class WatchTestStream(Stream):
    """watch_test's stdout, a pty: on a tty its stdio is line-buffered (on a pipe its printf()s
    would wait in a 4 KiB buffer for an exit that never comes). Each record is two lines, so
    the events are re-read from every complete record so far."""

    def __init__(self, fd, client):
        super().__init__(fd, client, parse=False)

    def read_chunk(self):
        try:
            return os.read(self.fd, 65536)
        except OSError as e:
            if e.errno == errno.EIO:  # no slave side left open: watch_test has ended
                return b""
            raise

    def pump(self):
        super().pump()
        lines = self.lines
        if lines and not self.eof and lines[-1].startswith("NOTIFY["):
            lines = lines[:-1]  # its body line is still to come
        out = clients.parse_watch_test("\n".join(lines), self.client)
        self.events, self.notes = out.events, out.notes


class WatchTest:
    """watch_test started in its own process group (dying with the child that runs it), its
    stdout the slave of a pty (in raw mode; MASTER is read); compared after each operation with
    all of wqh's records."""

    client = clients.WATCH_TEST

    def __init__(self, exe, master, slave):
        try:
            tty.setraw(slave)
            self.proc = subprocess.Popen([exe], stdin=subprocess.DEVNULL, stdout=slave,
                                         stderr=subprocess.PIPE, preexec_fn=procs.child_setup)
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        self.out = WatchTestStream(master, self.client)

    def until_watching(self):
        """None once watch_test waits in read() on its notification pipe (it reads only after
        both KEYCTL_WATCH_KEYs succeeded), else why it cannot be told (a skip reason)."""
        pid = self.proc.pid
        deadline = time.monotonic() + WAIT
        seen = "nothing"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"watch_test exited with {self.proc.returncode} before watching: "
                                     f"{stderr_of(self.proc)}")
            try:
                with open(f"/proc/{pid}/syscall") as fh:
                    words = fh.read().split()
                seen = " ".join(words[:2])
                if words[:1] == [READ_SYSCALL] and len(words) > 1 and \
                        os.readlink(f"/proc/{pid}/fd/{int(words[1], 16)}").startswith("pipe:"):
                    return None
            except FileNotFoundError:
                if not os.path.exists(f"/proc/{pid}/syscall"):
                    return (f"kernel has no /proc/{pid}/syscall (CONFIG_HAVE_ARCH_TRACEHOOK): cannot "
                            "tell when watch_test is watching")
            except OSError as e:  # not readable by this uid (yet): say so if it stays that way
                seen = str(e)
            time.sleep(0.01)
        raise AssertionError(f"watch_test not waiting in read() on its pipe {WAIT} s after it started "
                             f"(/proc/{pid}/syscall: {seen})")

    def collect(self, op, events):
        mine = clients.visible(self.client, events)
        wait_for([(self.out, len(mine))])
        return clients.compare(self.client, op, self.out.take(), mine)

    def finish(self, q):
        """watch_test loops until killed: an exit before is a problem; what it printed after the
        last operation must be what wqh read after it."""
        out = []
        if self.proc.poll() is not None:
            out.append(f"{self.client} exited with {self.proc.returncode} during the session: "
                       f"{stderr_of(self.proc)}")
        pump([self.out], lambda: False, GRACE)
        late = clients.from_records(q.drain())
        stop(self.proc)
        pump([self.out], lambda: self.out.eof, WAIT)
        return out + clients.compare(self.client, "after the last operation", self.out.take(), late)

    def close(self):
        stop(self.proc)
        os.close(self.out.fd)

    def transcript(self):
        return {self.client: {"lines": self.out.lines,
                              "watch_ids": {str(WT_WID[n]): WT_LABEL[n] for n in WT_WID}}}


def run_watch_test(exe):
    """In a child: become the throw-away user in a new session keyring, start watch_test, watch
    its two keyrings with wqh's binding, run the script. Returns disagreements and transcript."""
    os.setgroups([])
    os.setgid(WATCH_TEST_UID)
    os.setuid(WATCH_TEST_UID)
    uapi.join_session_keyring(None)
    keys = Keys(uapi.keyctl(uapi.KEYCTL_GET_KEYRING_ID, uapi.KEY_SPEC_SESSION_KEYRING, 0),
                uapi.keyctl(uapi.KEYCTL_GET_KEYRING_ID, uapi.KEY_SPEC_USER_KEYRING, 1))
    q = Queue(size=256)
    uapi.set_filter(q.r, [uapi.TypeFilter(uapi.WATCH_TYPE_KEY_NOTIFY)])  # watch_test.c's filter
    try:
        master, slave = os.openpty()
    except OSError as e:
        return {"skip": f"no pseudo-terminal in the guest of this kernel ({e}): on a pipe "
                        "watch_test's output would wait in its stdio buffer"}
    oracle = WatchTest(exe, master, slave)
    problems, ops = [], []
    try:
        skip = oracle.until_watching()
        if skip:
            return {"skip": skip}
        for name in WT_WID:
            uapi.watch_key(getattr(keys, name), q.r, WT_WID[name])
        for step in SCRIPT + [WT_LAST]:
            if step == "watch K":
                continue  # K is not among the objects watch_test watches
            op, do, destroyed = step
            do(keys)
            records = read_operation(q, keys, [n for n in destroyed if n in WT_WID])
            events = clients.from_records(records)
            if not events and op not in WT_SILENT:
                problems.append(f"wqh read nothing for {op!r}: nothing to compare")
            problems += oracle.collect(op, events)
            ops.append((op, events))
        problems += oracle.finish(q)
    finally:
        oracle.close()
        q.close()
    return {"problems": [str(p) for p in problems], "transcript": oracle.transcript(),
            "operations": operations(ops),
            "keys": {"R1": keys.R1, "R2": keys.R2, "K": keys.K}}


def test_watch_test_agrees_with_wqh(watch_test):
    got = in_child(run_watch_test, watch_test, timeout=12 * WAIT, what="watch_test session")
    if "skip" in got:
        pytest.skip(got["skip"])
    save_record("watch-test", got["transcript"], got["operations"])
    legend = ", ".join(f"{n} = {WT_LABEL[n]} ({got['keys'][n]}, watch id {WT_WID[n]})" for n in WT_WID)
    assert not got["problems"], f"{legend}:\n" + "\n".join(got["problems"])
