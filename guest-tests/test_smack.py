"""Smack's mediation of key watches and key notifications (docs/lsm.md).

Lines are 6.1.192's; 6.12 has the same checks (docs/lsm.md gives its lines too):
- watching: keyctl_watch_key looks the key up with KEY_NEED_VIEW (keyctl.c:1798) before it
  reads the queue fd (:1803) and calls security_watch_key (:1826). Smack answers the lookup
  in smack_key_permission (smack_lsm.c:4434 VIEW -> MAY_READ, :4466 CAP_MAC_OVERRIDE,
  :4474 smk_access), the same question smack_watch_key asks again (:4537, :4545): a watcher
  that may not read the key's label gets EACCES from the lookup, even with a bad fd.
- posting: __post_watch_notification asks security_post_notification(watch->cred, cred, n)
  per watch (watch_queue.c:224), cred being the task that changed the key (internal.h:198)
  and watch->cred the task that added the watch, taken then (watch_queue.c:478-484).
  smack_post_notification lets META through (:4568), then needs MAY_WRITE from the source's
  label to the watcher's (:4577), with no privilege override: only a rule "source watcher w"
  (or the same label) lets the event through, read at post time.
- removal records are posted by remove_watch_from_object straight into the queue
  (watch_queue.c:574, gc.c:148) and loss records are made by read(): no hook sees them.

Labels are set in forked children through /proc/self/attr/smack/current (CAP_MAC_ADMIN), which
then drop CAP_MAC_OVERRIDE and CAP_MAC_ADMIN unless a test keeps them; rules go to smackfs'
load2. Every test uses labels of its own: rules outlive the test. On a kernel without Smack,
or with Smack built in but not the active LSM, every test skips and says which.
"""

import ctypes
import errno
import itertools
import os

import pytest

from harness.guest import fixtures, uapi

SMACKFS = "/sys/fs/smackfs"
ATTR = "/proc/self/attr/smack/current"
FLOOR = "_"
CAP_MAC_OVERRIDE = 32
CAP_MAC_ADMIN = 33
GC_TIMEOUT = 10.0  # the key garbage collector runs from a work item

UPDATED = uapi.NOTIFY_KEY_UPDATED
rec = uapi.key_record
_labels = itertools.count()
_libc = ctypes.CDLL(None, use_errno=True)


@pytest.fixture(scope="session")
def smack():
    """This process's Smack label, with smackfs mounted; skips (saying why) without Smack.
    Asked before the queue fixtures: a kernel without Smack skips for that reason first."""
    try:
        with open(ATTR) as f:
            label = f.read().rstrip("\0\n")
    except FileNotFoundError:
        pytest.skip(f"kernel has no Smack: no {ATTR} (CONFIG_SECURITY_SMACK is not set)")
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
        pytest.skip("the kernel has Smack built in but not active (boot it with lsm=smack)")
    if os.geteuid() != 0:
        pytest.skip("needs root: setting Smack labels and kernel rules needs CAP_MAC_ADMIN")
    if not os.path.exists(f"{SMACKFS}/load2"):
        if _libc.mount(b"smackfs", SMACKFS.encode(), b"smackfs", 0, None) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"mount -t smackfs smackfs {SMACKFS}: {os.strerror(e)}")
    return label


def new_label(role: str) -> str:
    return f"wqh{os.getpid()}-{role}{next(_labels)}"


def rule(subject: str, obj: str, access: str) -> None:
    """Set the access of SUBJECT to OBJECT to exactly ACCESS ('-': none) through load2."""
    fd = os.open(f"{SMACKFS}/load2", os.O_WRONLY)
    try:
        line = f"{subject} {obj} {access}".encode()
        assert os.write(fd, line) == len(line)
    finally:
        os.close(fd)


def set_label(label: str) -> None:
    fd = os.open(ATTR, os.O_WRONLY)
    try:
        os.write(fd, label.encode())
    finally:
        os.close(fd)


def own_label() -> str:
    with open(ATTR) as f:
        return f.read().rstrip("\0\n")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


SYS_capget, SYS_capset = 125, 126
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def _capctl(nr: int, hdr: _CapHeader, data) -> None:
    if _libc.syscall(ctypes.c_long(nr), ctypes.byref(hdr), data) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def drop_caps(caps) -> None:
    """Clear CAPS from this thread's effective, permitted and inheritable sets (capset(2))."""
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _capctl(SYS_capget, hdr, data)
    for cap in caps:
        keep = ~(1 << cap % 32) & 0xFFFFFFFF
        d = data[cap // 32]
        d.effective, d.permitted, d.inheritable = (
            d.effective & keep, d.permitted & keep, d.inheritable & keep)
    _capctl(SYS_capset, hdr, data)


def effective_caps() -> int:
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1], 16) for ln in f if ln.startswith("CapEff:"))


def in_child(label: str, fn, *args, keep=(), timeout: float = 30.0):
    """fn(*args) in a forked child labelled LABEL that keeps, of CAP_MAC_OVERRIDE and
    CAP_MAC_ADMIN, only KEEP; returns its JSON result, or fails here with its traceback."""
    def labelled():
        set_label(label)
        drop_caps([c for c in (CAP_MAC_OVERRIDE, CAP_MAC_ADMIN) if c not in keep])
        return fn(*args)
    return fixtures.in_child(labelled, timeout=timeout, what=f"child labelled {label}")


def errno_of(fn, *args) -> int:
    try:
        fn(*args)
    except OSError as e:
        return e.errno
    return 0


def try_watch(key: int, fd: int) -> list[int]:
    """KEYCTL_WATCH_KEY with a bad fd (-1), then with FD: the errno of each (0: watched)."""
    return [errno_of(uapi.watch_key, key, -1, 1), errno_of(uapi.watch_key, key, fd, 1)]


def updates(key: int, n: int) -> None:
    for i in range(n):
        uapi.key_update(key, f"v{i}".encode())


def watch_as(label: str, key: int, q, watch_id: int = 1, keep=()) -> None:
    in_child(label, uapi.watch_key, key, q.r, watch_id, keep=keep)


def update_as(label: str, key: int, n: int = 1) -> None:
    """N KEYCTL_UPDATEs by a task labelled LABEL. It keeps CAP_MAC_OVERRIDE: writing a key
    labelled by another (the floor here) needs it (smack_key_permission, smack_lsm.c:4466);
    the post check has no such override."""
    in_child(label, updates, key, n, keep=(CAP_MAC_OVERRIDE,))


def key_labelled(label: str, ring: int) -> int:
    """A user key created (so labelled, smack_key_alloc :4393) by a task labelled LABEL."""
    return in_child(label, uapi.add_key, "user", f"wqh-{label}", b"v0", ring, keep=(CAP_MAC_OVERRIDE,))


@pytest.fixture
def q(smack, new_queue):
    return new_queue(size=32)


# --- labels, the helpers' ground ---------------------------------------------------------


def test_tasks_start_with_the_floor_label_and_a_child_takes_its_own(smack, watch_queue_kernel):
    # smack_lsm.c:5135: the initial task is labelled with the floor; children inherit it.
    assert smack == FLOOR
    mac = 1 << CAP_MAC_OVERRIDE | 1 << CAP_MAC_ADMIN
    assert effective_caps() & mac == mac
    a = new_label("a")

    def label_and_caps():
        return own_label(), effective_caps() & mac
    assert in_child(a, label_and_caps) == [a, 0]
    assert in_child(a, label_and_caps, keep=(CAP_MAC_OVERRIDE,)) == [a, 1 << CAP_MAC_OVERRIDE]


# --- watching: security_watch_key and the lookup before it --------------------------------


def test_watching_a_key_the_watcher_may_not_read_is_eacces_from_the_key_lookup(q, session_keyring):
    owner, watcher = new_label("owner"), new_label("watcher")
    key = key_labelled(owner, session_keyring)
    # EACCES with a bad fd too: the lookup (keyctl.c:1798) refused before the fd was read
    # (:1803); smack_watch_key (:1826) would have left EINVAL for the bad fd.
    assert in_child(watcher, try_watch, key, q.r) == [errno.EACCES, errno.EACCES]
    rule(watcher, owner, "w")  # writing is not reading
    assert in_child(watcher, try_watch, key, q.r) == [errno.EACCES, errno.EACCES]
    rule(watcher, owner, "r")
    assert in_child(watcher, try_watch, key, q.r) == [errno.EINVAL, 0]
    uapi.unwatch_key(key, q.r)
    assert q.drain() == [uapi.removal_record(1, key)]


def test_cap_mac_override_bypasses_the_watch_check(q, session_keyring):
    owner, watcher = new_label("owner"), new_label("watcher")
    key = key_labelled(owner, session_keyring)
    assert in_child(watcher, try_watch, key, q.r) == [errno.EACCES, errno.EACCES]
    # No rule, but CAP_MAC_OVERRIDE (smack_lsm.c:4466 in the lookup, :4537 in the hook).
    assert in_child(watcher, try_watch, key, q.r, keep=(CAP_MAC_OVERRIDE,)) == [errno.EINVAL, 0]
    uapi.unwatch_key(key, q.r)
    assert q.drain() == [uapi.removal_record(1, key)]


# --- posting: security_post_notification --------------------------------------------------


def test_an_event_reaches_a_watcher_of_another_label_only_through_a_write_rule(q, new_key):
    src, watcher = new_label("src"), new_label("watcher")
    key = new_key()  # the floor's: any label may read it, so watch it
    watch_as(watcher, key, q)
    update_as(src, key)
    assert q.drain() == [], "no rule: the event must be withheld"
    rule(src, watcher, "rxatl")  # everything but write
    rule(watcher, src, "rwxatl")  # the other way round
    update_as(src, key)
    assert q.drain() == [], "no write from the source's label to the watcher's: withheld"
    rule(src, watcher, "w")
    update_as(src, key, 2)
    assert q.drain() == [rec(UPDATED, 1, key)] * 2
    rule(src, watcher, "-")  # removed: later posts are withheld again
    update_as(src, key)
    assert q.drain() == []
    rule(src, watcher, "w")  # and allowed again
    update_as(src, key)
    assert q.drain() == [rec(UPDATED, 1, key)]


def test_the_same_label_needs_no_rule(q, new_key):
    both = new_label("both")
    key = new_key()
    watch_as(both, key, q)
    update_as(both, key)  # smack_access.c:147: a label may do anything to itself
    assert q.drain() == [rec(UPDATED, 1, key)]


def test_privilege_on_neither_side_bypasses_the_post_check(q, new_key):
    src, watcher = new_label("src"), new_label("watcher")
    key = new_key()
    # The watcher keeps both MAC capabilities; the sources are this process (the floor, every
    # capability) and a child that keeps them too. smack_post_notification has no override.
    watch_as(watcher, key, q, keep=(CAP_MAC_OVERRIDE, CAP_MAC_ADMIN))
    uapi.key_update(key, b"floor")
    in_child(src, updates, key, 1, keep=(CAP_MAC_OVERRIDE, CAP_MAC_ADMIN))
    assert q.drain() == []
    rule(FLOOR, watcher, "w")
    uapi.key_update(key, b"floor")
    assert q.drain() == [rec(UPDATED, 1, key)]


def test_the_watchers_label_is_the_one_it_had_when_it_added_the_watch(q, new_key):
    src, before, after = new_label("src"), new_label("before"), new_label("after")
    key = new_key()

    def watch_then_relabel():
        uapi.watch_key(key, q.r, 1)
        set_label(after)  # a new cred; the watch holds the old one (watch_queue.c:484)
        return own_label()
    assert in_child(before, watch_then_relabel, keep=(CAP_MAC_ADMIN,)) == after
    rule(src, after, "w")
    update_as(src, key)
    assert q.drain() == [], "the watcher's label now is not the watch's"
    rule(src, before, "w")
    update_as(src, key)
    assert q.drain() == [rec(UPDATED, 1, key)]


# --- META: removal and loss records -------------------------------------------------------


def test_removal_records_reach_a_watcher_whose_rules_withhold_the_events(q, new_key):
    src, watcher = new_label("src"), new_label("watcher")
    removed, invalidated = new_key(), new_key()
    watch_as(watcher, removed, q, 1)
    watch_as(watcher, invalidated, q, 2)
    # The source ends one watch (KEYCTL_WATCH_KEY -1) and invalidates the other key: its
    # INVALIDATED is withheld, the garbage collector's removal record is not.
    in_child(src, uapi.unwatch_key, removed, q.r)
    in_child(src, uapi.invalidate, invalidated)
    gone = uapi.removal_record(2, invalidated)
    got = uapi.wait_records(q.r, lambda rs: gone in rs, GC_TIMEOUT)
    assert got == [uapi.removal_record(1, removed), gone]


def test_a_loss_record_reaches_a_watcher_whatever_the_rules(q, new_key):
    src, watcher = new_label("src"), new_label("watcher")
    key = new_key()
    watch_as(watcher, key, q)
    rule(src, watcher, "w")
    update_as(src, key, 33)  # 32 notes: the 33rd is lost
    rule(src, watcher, "-")
    update_as(src, key)
    assert q.drain() == [rec(UPDATED, 1, key)] * 32 + [uapi.LOSS_RECORD]


def test_a_withheld_event_takes_no_note_and_causes_no_loss(q, new_key):
    src, watcher = new_label("src"), new_label("watcher")
    key = new_key()
    watch_as(watcher, key, q)
    rule(src, watcher, "w")
    update_as(src, key, 32)  # the queue is full
    rule(src, watcher, "-")
    update_as(src, key)  # refused at watch_queue.c:224, before post_one_notification
    assert q.drain() == [rec(UPDATED, 1, key)] * 32
