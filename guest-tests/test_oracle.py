"""Seeded random key-operation sequences run on the kernel and on harness/guest/oracle.py.

Every op's errno and every read()'s records must match the model exactly. The seed is printed;
WQH_ORACLE_SEED=<n> replays one seed (e.g. `WQH_ORACLE_SEED=5 pytest guest-tests/test_oracle.py`).

A second, unfiltered 512-note "sentinel" queue watches every key from the start. Its watches are
the oldest, so key destruction posts its removal record last: once the sentinel has it, every
queue has it, which turns the asynchronous gc into a synchronous step of the sequence.
"""

import errno
import os

import pytest

from harness.guest import oracle, uapi

SEEDS = ([int(os.environ["WQH_ORACLE_SEED"])] if os.environ.get("WQH_ORACLE_SEED")
         else [1, 2, 3, 4, 5, 6, 7, 8])
N_OPS = 60
SENTINEL_ID = 200
PERM = uapi.KEY_POS_ALL | uapi.KEY_USR_ALL
GC_TIMEOUT = 5.0


def run_op(op, q, serial):
    """The kernel side of oracle.apply(): (errno or 0, records for a read op or None)."""
    kind, *a = op
    try:
        if kind == "read":
            return 0, uapi.decode(os.read(q.r, a[0]))
        if kind == "set_size":
            uapi.set_size(q.r, a[0])
        elif kind == "filter":
            uapi.set_filter(q.r, oracle.filter_spec(a[0]))
        elif kind == "watch":
            uapi.watch_key(serial[a[0]], q.r, a[1])
        elif kind == "unwatch":
            uapi.unwatch_key(serial[a[0]], q.r)
        elif kind == "update":
            uapi.key_update(serial[a[0]], b"u")
        elif kind == "burst":
            for _ in range(a[1]):
                uapi.key_update(serial[a[0]], b"b")
        elif kind == "link":
            uapi.link(serial[a[1]], serial[a[0]])
        elif kind == "unlink":
            uapi.unlink(serial[a[1]], serial[a[0]])
        elif kind == "clear":
            uapi.clear(serial[a[0]])
        elif kind == "revoke":
            uapi.revoke(serial[a[0]])
        elif kind == "invalidate":
            uapi.invalidate(serial[a[0]])
        elif kind == "setperm":
            uapi.setperm(serial[a[0]], PERM)
        else:
            raise ValueError(f"unknown op {op}")
    except OSError as e:
        return e.errno, None
    return 0, None


def _removal_of(obj):
    return lambda recs: any(r.type == uapi.WATCH_TYPE_META and r.subtype == uapi.WATCH_META_REMOVAL_NOTIFICATION
                            and r.removal_id == obj for r in recs)


def _name(err):
    return errno.errorcode.get(err, str(err)) if err else "success"


@pytest.mark.parametrize("seed", SEEDS)
def test_kernel_matches_the_model(seed, new_queue, session_keyring):
    print(f"oracle seed {seed}; replay with WQH_ORACLE_SEED={seed}")
    plan = oracle.generate(seed, N_OPS)
    model = oracle.Model()
    serial = {}
    for name in plan.rings:
        serial[name] = uapi.add_key("keyring", f"wqh-oracle-{name}", None, session_keyring)
        model.add_key(serial[name], keyring=True)
    for name in plan.users:
        serial[name] = uapi.add_key("user", f"wqh-oracle-{name}", b"v0", session_keyring)
        model.add_key(serial[name])
    print("keys:", serial)

    sentinel = new_queue(size=512)
    model.add_queue("sentinel")
    model.set_size("sentinel", 512)
    for s in serial.values():
        uapi.watch_key(s, sentinel.r, SENTINEL_ID)
        model.watch("sentinel", s, SENTINEL_ID)
    main = new_queue()
    model.add_queue("main")

    got_s, want_s = [], []
    for i, op in enumerate(plan.ops):
        print(f"#{i} {op}")
        ctx = f"seed {seed} (WQH_ORACLE_SEED={seed}), op #{i} {op}"
        kerr, krecs = run_op(op, main, serial)
        merr, mrecs = oracle.apply(model, "main", op, serial)
        assert kerr == merr, f"{ctx}: kernel says {_name(kerr)}, model says {_name(merr)}"
        if krecs is not None:
            diff = oracle.first_difference(mrecs, krecs)
            assert diff is None, f"{ctx}: main queue {diff}"
        if op[0] == "invalidate" and kerr == 0:
            got_s += uapi.wait_records(sentinel.r, _removal_of(serial[op[1]]), GC_TIMEOUT)
            want_s += model.drain("sentinel")
            diff = oracle.first_difference(want_s, got_s)
            assert diff is None, f"{ctx}: waiting for the gc, sentinel queue {diff}"

    ctx = f"seed {seed} (WQH_ORACLE_SEED={seed}), after the last op"
    diff = oracle.first_difference(model.drain("main"), main.drain())
    assert diff is None, f"{ctx}: main queue {diff}"
    diff = oracle.first_difference(want_s + model.drain("sentinel"), got_s + sentinel.drain())
    assert diff is None, f"{ctx}: sentinel queue {diff}"
