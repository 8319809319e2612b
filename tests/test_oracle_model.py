"""Host-side tests of harness/guest/oracle.py, the model the guest's test_oracle.py checks the kernel
against. Expected outputs are worked out by hand from watch_queue.md; no kernel is involved."""

import errno
import struct

import pytest

from harness.guest import oracle
from harness.guest.uapi import (
    LOSS_RECORD, NOTIFY_KEY_CLEARED, NOTIFY_KEY_INVALIDATED, NOTIFY_KEY_LINKED, NOTIFY_KEY_REVOKED,
    NOTIFY_KEY_SETATTR, NOTIFY_KEY_UNLINKED, NOTIFY_KEY_UPDATED, WATCH_INFO_ID, WATCH_TYPE_KEY_NOTIFY,
    WATCH_TYPE_META, Record, TypeFilter, key_record, removal_record)

RING, RING2, KEY, KEY2 = 100, 101, 200, 201
KT = WATCH_TYPE_KEY_NOTIFY


@pytest.fixture
def m():
    model = oracle.Model()
    model.add_key(RING, keyring=True)
    model.add_key(RING2, keyring=True)
    model.add_key(KEY)
    model.add_key(KEY2)
    model.add_queue("q")
    return model


def err(fn, *args):
    with pytest.raises(oracle.ModelError) as e:
        fn(*args)
    return e.value.errno


def test_record_values_match_the_uapi_layout():
    r = key_record(NOTIFY_KEY_UPDATED, 7, KEY)
    assert r == Record(1, 1, 0x710, struct.pack("<II", KEY, 0))
    assert removal_record(9, KEY) == Record(0, 0, 0x910, struct.pack("<Q", KEY))
    assert LOSS_RECORD == Record(0, 1, 8, b"")


def test_update_of_a_watched_key(m):
    m.set_size("q", 1)
    m.watch("q", KEY, 7)
    m.update(KEY)
    m.update(KEY2)  # not watched
    assert m.drain("q") == [Record(1, 1, 0x710, struct.pack("<II", KEY, 0))]


@pytest.mark.parametrize("n, notes", [(1, 32), (31, 32), (32, 32), (33, 64), (65, 96), (255, 256),
                                      (512, 512), (0x100000001, 32)])
def test_set_size_rounds_up_to_whole_pages(m, n, notes):
    m.set_size("q", n)
    assert m.queues["q"].notes == notes
    assert err(m.set_size, "q", n) == errno.EBUSY
    assert err(m.set_size, "q", 0) == errno.EBUSY


@pytest.mark.parametrize("n", [0, 513, 0x100000000, 0xFFFFFFFF])
def test_set_size_out_of_range(m, n):
    assert err(m.set_size, "q", n) == errno.EINVAL
    assert m.queues["q"].notes == 0


def test_overflow_gives_one_loss_after_the_last_record(m):
    m.set_size("q", 1)
    m.watch("q", KEY, 1)
    for _ in range(35):
        m.update(KEY)
    upd = key_record(NOTIFY_KEY_UPDATED, 1, KEY)
    assert m.read("q", 16384) == [upd] * 32  # the flagged record was last: LOSS comes next read
    assert m.read("q", 16384) == [LOSS_RECORD]
    assert err(m.read, "q", 16384) == errno.EAGAIN


def test_loss_lands_between_the_flagged_record_and_a_later_one(m):
    m.set_size("q", 32)
    m.watch("q", KEY, 1)
    m.watch("q", RING, 2)
    for _ in range(31):
        m.update(KEY)
    m.link(RING, KEY)  # 32nd: full
    m.link(RING, KEY2)  # lost: flags the LINKED of KEY
    assert len(m.read("q", 31 * 16)) == 31
    m.clear(RING)  # a free note again
    assert m.read("q", 4096) == [key_record(NOTIFY_KEY_LINKED, 2, RING, KEY), LOSS_RECORD,
                                 key_record(NOTIFY_KEY_CLEARED, 2, RING, 0)]


def test_read_returns_whole_records_only(m):
    m.set_size("q", 1)
    m.watch("q", KEY, 1)
    for _ in range(3):
        m.update(KEY)
    assert m.read("q", 0) == []
    assert err(m.read, "q", 8) == errno.ENOBUFS
    assert len(m.read("q", 24)) == 1
    assert len(m.read("q", 40)) == 2
    assert err(m.read, "q", 40) == errno.EAGAIN


def test_pending_loss_needs_8_bytes(m):
    m.set_size("q", 1)
    m.watch("q", KEY, 1)
    for _ in range(33):
        m.update(KEY)
    assert len(m.read("q", 512)) == 32
    assert err(m.read, "q", 7) == errno.ENOBUFS
    assert m.read("q", 8) == [LOSS_RECORD]


def test_posts_before_set_size_vanish(m):
    m.watch("q", KEY, 1)
    for _ in range(40):
        m.update(KEY)
    assert err(m.read, "q", 4096) == errno.EAGAIN
    m.set_size("q", 1)
    m.update(KEY)
    assert m.drain("q") == [key_record(NOTIFY_KEY_UPDATED, 1, KEY)]


def test_filters(m):
    m.set_size("q", 1)
    m.watch("q", KEY, 1)
    m.watch("q", RING, 2)

    def post():
        m.update(KEY)  # UPDATED id 1
        m.link(RING, KEY2)  # LINKED id 2
        m.setperm(KEY)  # SETATTR id 1
        return m.drain("q")

    upd, lnk, attr = (key_record(NOTIFY_KEY_UPDATED, 1, KEY), key_record(NOTIFY_KEY_LINKED, 2, RING, KEY2),
                      key_record(NOTIFY_KEY_SETATTR, 1, KEY))
    m.set_filter("q", [TypeFilter(KT, 1 << NOTIFY_KEY_UPDATED)])
    assert post() == [upd]
    m.set_filter("q", [TypeFilter(KT, info_filter=2 << 8, info_mask=WATCH_INFO_ID)])
    assert post() == [lnk]
    m.set_filter("q", [TypeFilter(KT, 1 << NOTIFY_KEY_SETATTR), TypeFilter(KT, 1 << NOTIFY_KEY_LINKED)])
    assert post() == [lnk, attr]
    m.set_filter("q", [TypeFilter(KT, 0, more_subtypes=(0xFFFFFFFF,) * 7)])
    assert post() == []
    m.set_filter("q", [TypeFilter(1000)])
    assert post() == []
    m.set_filter("q", [TypeFilter(WATCH_TYPE_META)])
    assert post() == []
    m.set_filter("q", None)
    assert post() == [upd, lnk, attr]


@pytest.mark.parametrize("filters, kw", [
    ([TypeFilter(KT)], {"nr_filters": 0}),
    ([TypeFilter(KT)] * 17, {}),
    ([TypeFilter(KT)], {"reserved": 1}),
    ([TypeFilter(KT, info_filter=0x100, info_mask=0)], {}),
    ([TypeFilter(KT, info_mask=0x7F)], {}),
    ([TypeFilter(KT), TypeFilter(1000, info_mask=1)], {}),
])
def test_invalid_filters_keep_the_old_one(m, filters, kw):
    m.set_size("q", 1)
    m.watch("q", KEY, 1)
    m.set_filter("q", [TypeFilter(KT, 1 << NOTIFY_KEY_SETATTR)])
    assert err(lambda: m.set_filter("q", filters, **kw)) == errno.EINVAL
    m.update(KEY)
    m.setperm(KEY)
    assert m.drain("q") == [key_record(NOTIFY_KEY_SETATTR, 1, KEY)]


def test_removal_and_loss_bypass_the_filter(m):
    m.set_size("q", 1)
    m.watch("q", KEY, 1)
    m.watch("q", RING, 2)
    m.set_filter("q", [TypeFilter(KT, 1 << NOTIFY_KEY_UPDATED)])
    for _ in range(31):
        m.update(KEY)
    m.unwatch("q", RING)  # 32nd note, though META is not in the filter
    m.update(KEY)  # lost
    assert m.drain("q") == [key_record(NOTIFY_KEY_UPDATED, 1, KEY)] * 31 + [removal_record(2, RING), LOSS_RECORD]


def test_watch_errnos(m):
    m.set_size("q", 1)
    assert err(m.watch, "q", KEY, 256) == errno.EINVAL
    assert err(m.watch, "q", KEY, -2) == errno.EINVAL
    assert err(m.watch, "q", 999, 1) == errno.ENOKEY
    assert err(m.unwatch, "q", KEY) == errno.EBADSLT
    m.watch("q", KEY, 1)
    assert err(m.watch, "q", KEY, 1) == errno.EBUSY
    assert err(m.watch, "q", KEY, 2) == errno.EBUSY
    m.unwatch("q", KEY)
    assert err(m.unwatch, "q", KEY) == errno.EBADSLT
    m.watch("q", KEY, 3)
    m.revoke(KEY)
    assert err(m.unwatch, "q", KEY) == errno.EKEYREVOKED
    assert err(m.watch, "q", KEY, 1) == errno.EKEYREVOKED
    assert m.drain("q") == [removal_record(1, KEY), key_record(NOTIFY_KEY_REVOKED, 3, KEY)]


def test_revoked_key_refuses_changes_but_can_be_unlinked(m):
    m.set_size("q", 1)
    m.watch("q", RING, 1)
    m.link(RING, KEY)
    m.revoke(KEY)
    for fn in (m.update, m.setperm, m.revoke, m.invalidate):
        assert err(fn, KEY) == errno.EKEYREVOKED
    assert err(m.link, RING2, KEY) == errno.EKEYREVOKED
    m.unlink(RING, KEY)  # unlinking needs no permission on the key
    assert err(m.unlink, RING, KEY) == errno.ENOENT
    assert m.drain("q") == [key_record(NOTIFY_KEY_LINKED, 1, RING, KEY),
                            key_record(NOTIFY_KEY_UNLINKED, 1, RING, KEY)]


def test_revoked_keyring_drops_its_links_silently(m):
    m.set_size("q", 1)
    m.watch("q", RING, 1)
    m.link(RING, KEY)
    m.revoke(RING)
    for fn, args in ((m.link, (RING, KEY2)), (m.unlink, (RING, KEY)), (m.clear, (RING,))):
        assert err(fn, *args) == errno.EKEYREVOKED
    assert m.keys[RING].members == set()
    assert m.drain("q") == [key_record(NOTIFY_KEY_LINKED, 1, RING, KEY), key_record(NOTIFY_KEY_REVOKED, 1, RING)]


def test_invalidate_posts_invalidated_then_removal_to_every_queue(m):
    m.add_queue("other")
    m.set_size("q", 1)
    m.set_size("other", 1)
    m.watch("q", KEY, 1)
    m.watch("q", RING, 2)
    m.watch("other", KEY, 9)
    m.set_filter("other", [TypeFilter(1000)])  # blocks INVALIDATED, not the removal
    m.link(RING, KEY)
    m.invalidate(KEY)
    assert m.drain("q") == [key_record(NOTIFY_KEY_LINKED, 2, RING, KEY),
                            key_record(NOTIFY_KEY_INVALIDATED, 1, KEY), removal_record(1, KEY)]
    assert m.drain("other") == [removal_record(9, KEY)]
    # The gc dropped the link without an UNLINKED; the key is gone.
    assert m.keys[RING].members == set()
    assert err(m.unlink, RING, KEY) == errno.ENOKEY
    assert err(m.update, KEY) == errno.ENOKEY
    assert err(m.watch, "q", KEY, 1) == errno.ENOKEY


def test_link_again_and_clear_empty_keyring_notify_again(m):
    m.set_size("q", 1)
    m.watch("q", RING, 4)
    m.link(RING, KEY)
    m.link(RING, KEY)
    m.clear(RING)
    m.clear(RING)
    assert m.drain("q") == [key_record(NOTIFY_KEY_LINKED, 4, RING, KEY)] * 2 + \
        [key_record(NOTIFY_KEY_CLEARED, 4, RING)] * 2


def test_apply_runs_symbolic_ops():
    m = oracle.Model()
    serial = {"R0": RING, "k0": KEY, "k1": KEY2}
    m.add_key(RING, keyring=True)
    m.add_key(KEY)
    m.add_key(KEY2)
    m.add_queue("main")
    ops = [("watch", "R0", 1), ("watch", "k0", 2), ("update", "k0"), ("set_size", 1),
           ("link", "R0", "k0"), ("update", "k0"), ("filter", "updated-only"), ("link", "R0", "k1"),
           ("burst", "k0", 2), ("unwatch", "k0"), ("unlink", "R0", "k1"), ("filter", "invalid"),
           ("filter", "id-1"), ("unlink", "R0", "k1"), ("set_size", 0)]
    results = [oracle.apply(m, "main", op, serial) for op in ops]
    assert [e for e, _ in results] == [0] * 10 + [0, errno.EINVAL, 0, errno.ENOENT, errno.EBUSY]
    assert oracle.apply(m, "main", ("read", 24), serial) == (0, [key_record(NOTIFY_KEY_LINKED, 1, RING, KEY)])
    assert oracle.apply(m, "main", ("read", 8), serial) == (errno.ENOBUFS, None)
    assert oracle.apply(m, "main", ("read", 16384), serial) == (0, [
        key_record(NOTIFY_KEY_UPDATED, 2, KEY), key_record(NOTIFY_KEY_UPDATED, 2, KEY),
        key_record(NOTIFY_KEY_UPDATED, 2, KEY), removal_record(2, KEY)])
    assert oracle.apply(m, "main", ("read", 16384), serial) == (errno.EAGAIN, None)


def test_generate_is_reproducible_and_well_formed():
    a, b = oracle.generate(5), oracle.generate(5)
    assert a == b
    assert oracle.generate(6) != a
    for seed in range(1, 30):
        plan = oracle.generate(seed, 60)
        kinds = [op[0] for op in plan.ops]
        assert 60 <= len(plan.ops) <= 61
        assert kinds[0] == "watch"
        assert "set_size" in kinds[:8]
        gone = set()
        for op in plan.ops:
            names = [x for x in op[1:] if isinstance(x, str) and x[:1] in "Rk"]
            assert not gone & set(names), (seed, op)
            if op[0] == "invalidate":
                gone.add(op[1])


def test_generated_sequences_exercise_losses_and_errors():
    losses = errs = 0
    for seed in range(1, 9):
        plan = oracle.generate(seed)
        m = oracle.Model()
        serial = {n: 1000 + i for i, n in enumerate(plan.rings + plan.users)}
        for n, s in serial.items():
            m.add_key(s, keyring=n in plan.rings)
        m.add_queue("main")
        for op in plan.ops:
            e, recs = oracle.apply(m, "main", op, serial)
            errs += e != 0
            losses += (recs or []).count(LOSS_RECORD)
        losses += m.drain("main").count(LOSS_RECORD)
    assert losses >= 3 and errs >= 20


def test_first_difference_names_the_record():
    a = [key_record(NOTIFY_KEY_UPDATED, 1, KEY), LOSS_RECORD]
    assert oracle.first_difference(a, list(a)) is None
    msg = oracle.first_difference(a, [a[0], key_record(NOTIFY_KEY_UPDATED, 1, KEY)])
    assert msg.startswith("record #1: expected META/LOSS info=0x8, got KEY/UPDATED id=1 key=200 aux=0x0")
    assert "preceded by KEY/UPDATED" in oracle.first_difference(a, a[:1]) and "(nothing more)" in \
        oracle.first_difference(a, a[:1])
