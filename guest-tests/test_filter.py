"""IOC_WATCH_QUEUE_SET_FILTER: what passes, what is refused, what is never filtered (watch_queue.md §1.1, §4.1)."""

import ctypes
import errno
import mmap

import pytest

from harness.guest import uapi

KEY = uapi.WATCH_TYPE_KEY_NOTIFY
UPDATED, LINKED, SETATTR = uapi.NOTIFY_KEY_UPDATED, uapi.NOTIFY_KEY_LINKED, uapi.NOTIFY_KEY_SETATTR
PERM = uapi.KEY_POS_ALL | uapi.KEY_USR_ALL
PROT_NONE = 0  # not exported by Python's mmap module


def _errno(fn, *args):
    with pytest.raises(OSError) as e:
        fn(*args)
    return e.value.errno


class Scene:
    """A queue watching a key (id 1) and a keyring (id 2); post() makes one record of each kind."""

    def __init__(self, new_queue, new_key):
        self.q = new_queue(size=32)
        self.key = new_key()
        self.ring = new_key(ktype="keyring")
        self.member = new_key()
        uapi.watch_key(self.key, self.q.r, 1)
        uapi.watch_key(self.ring, self.q.r, 2)

    def post(self):
        """UPDATED and SETATTR on the key, LINKED on the keyring."""
        uapi.key_update(self.key, b"x")
        uapi.link(self.member, self.ring)
        uapi.setperm(self.key, PERM)

    def updated(self):
        return uapi.key_record(UPDATED, 1, self.key)

    def linked(self):
        return uapi.key_record(LINKED, 2, self.ring, self.member)

    def setattr(self):
        return uapi.key_record(SETATTR, 1, self.key)

    def all(self):
        return [self.updated(), self.linked(), self.setattr()]

    def posted_records(self):
        self.post()
        return self.q.drain()


@pytest.fixture
def scene(new_queue, new_key):
    return Scene(new_queue, new_key)


def test_without_filter_everything_passes(scene):
    assert scene.posted_records() == scene.all()


def test_key_type_with_all_subtypes_passes_everything(scene):
    uapi.set_filter(scene.q.r, [uapi.TypeFilter(KEY)])
    assert scene.posted_records() == scene.all()


def test_meta_type_only_blocks_key_records(scene):
    uapi.set_filter(scene.q.r, [uapi.TypeFilter(uapi.WATCH_TYPE_META)])
    assert scene.posted_records() == []


def test_subtype_bitmap_passes_only_updated(scene):
    uapi.set_filter(scene.q.r, [uapi.TypeFilter(KEY, subtypes=1 << UPDATED)])
    assert scene.posted_records() == [scene.updated()]


def test_subtype_words_1_to_7_are_ignored(scene):
    # Only subtype_filter[0] is consulted: set bits elsewhere do not let anything through.
    uapi.set_filter(scene.q.r, [uapi.TypeFilter(KEY, subtypes=0, more_subtypes=(0xFFFFFFFF,) * 7)])
    assert scene.posted_records() == []


def test_several_entries_are_ored(scene):
    uapi.set_filter(scene.q.r, [uapi.TypeFilter(KEY, subtypes=1 << SETATTR),
                                uapi.TypeFilter(KEY, subtypes=1 << LINKED)])
    assert scene.posted_records() == [scene.linked(), scene.setattr()]


def test_info_filter_selects_one_watch_id(scene):
    uapi.set_filter(scene.q.r, [uapi.TypeFilter(KEY, info_filter=2 << 8, info_mask=uapi.WATCH_INFO_ID)])
    assert scene.posted_records() == [scene.linked()]
    uapi.set_filter(scene.q.r, [uapi.TypeFilter(KEY, info_filter=1 << 8, info_mask=uapi.WATCH_INFO_ID)])
    assert scene.posted_records() == [scene.updated(), scene.setattr()]


def test_info_filter_and_subtype_must_both_match(scene):
    uapi.set_filter(scene.q.r, [uapi.TypeFilter(KEY, subtypes=1 << SETATTR, info_filter=1 << 8,
                                                info_mask=uapi.WATCH_INFO_ID)])
    assert scene.posted_records() == [scene.setattr()]


def test_an_entry_applies_only_to_records_of_its_own_type(scene):
    # A META entry that takes every subtype and any info puts META in the type bitmap next to
    # KEY, yet KEY records are judged by the KEY entry alone (n->type == wt->type): only
    # UPDATED passes, whatever the order of the entries.
    meta = uapi.TypeFilter(uapi.WATCH_TYPE_META)
    key = uapi.TypeFilter(KEY, subtypes=1 << UPDATED)
    for entries in ([meta, key], [key, meta]):
        uapi.set_filter(scene.q.r, entries)
        assert scene.posted_records() == [scene.updated()], entries


def test_info_filter_compares_the_masked_bits_exactly(new_queue, new_key):
    # (info & info_mask) == info_filter: watch id 3 (0b11) has id 1's bit but is not id 1,
    # and info_filter 0 under WATCH_INFO_ID selects watch id 0 alone.
    q = new_queue(size=32)
    keys = {wid: new_key() for wid in (0, 1, 3)}
    for wid, key in keys.items():
        uapi.watch_key(key, q.r, wid)

    def posted():
        for key in keys.values():
            uapi.key_update(key, b"x")
        return q.drain()

    for wid in (1, 0, 3):
        uapi.set_filter(q.r, [uapi.TypeFilter(KEY, info_filter=wid << 8, info_mask=uapi.WATCH_INFO_ID)])
        assert posted() == [uapi.key_record(UPDATED, wid, keys[wid])], f"watch id {wid}"
    # A mask of the id's lowest bit alone: the odd ids pass.
    uapi.set_filter(q.r, [uapi.TypeFilter(KEY, info_filter=1 << 8, info_mask=1 << 8)])
    assert posted() == [uapi.key_record(UPDATED, 1, keys[1]), uapi.key_record(UPDATED, 3, keys[3])]


@pytest.mark.parametrize("unknown", [2, 100, 1000, 0x3FF])
def test_a_filter_of_unknown_types_only_blocks_everything(scene, unknown):
    uapi.set_filter(scene.q.r, [uapi.TypeFilter(unknown)])
    assert scene.posted_records() == []


def test_unknown_types_next_to_a_known_one_are_dropped(scene):
    uapi.set_filter(scene.q.r, [uapi.TypeFilter(1000), uapi.TypeFilter(KEY, subtypes=1 << UPDATED),
                                uapi.TypeFilter(200)])
    assert scene.posted_records() == [scene.updated()]


def test_null_filter_removes_filtering(scene):
    uapi.set_filter(scene.q.r, [uapi.TypeFilter(1000)])
    assert scene.posted_records() == []
    uapi.set_filter(scene.q.r, None)
    assert scene.posted_records() == scene.all()
    uapi.set_filter(scene.q.r, None)  # removing no filter is fine too
    assert scene.posted_records() == scene.all()


def test_filter_can_be_replaced_at_any_time_and_applies_at_post_time(scene):
    uapi.set_filter(scene.q.r, [uapi.TypeFilter(KEY, subtypes=1 << UPDATED)])
    scene.post()
    # Records already queued stay when the filter changes; later posts see the new one.
    uapi.set_filter(scene.q.r, [uapi.TypeFilter(KEY, subtypes=1 << SETATTR)])
    scene.post()
    uapi.set_filter(scene.q.w, [uapi.TypeFilter(KEY, subtypes=1 << LINKED)])  # either end
    scene.post()
    assert scene.q.drain() == [scene.updated(), scene.setattr(), scene.linked()]


def test_sixteen_entries_are_accepted(scene):
    uapi.set_filter(scene.q.r, [uapi.TypeFilter(1000)] * 15 + [uapi.TypeFilter(KEY, subtypes=1 << LINKED)])
    assert scene.posted_records() == [scene.linked()]


BAD_FILTERS = {
    "nr_filters=0": uapi.pack_filter([uapi.TypeFilter(KEY)], nr_filters=0),
    "nr_filters=17": uapi.pack_filter([uapi.TypeFilter(KEY)] * 17),
    "reserved=1": uapi.pack_filter([uapi.TypeFilter(KEY)], reserved=1),
    "reserved=0x80000000": uapi.pack_filter([uapi.TypeFilter(KEY)], reserved=0x80000000),
    "info_filter outside info_mask": uapi.pack_filter(
        [uapi.TypeFilter(KEY, info_filter=0x100, info_mask=0)]),
    "info_filter partly outside info_mask": uapi.pack_filter(
        [uapi.TypeFilter(KEY, info_filter=0x10100, info_mask=uapi.WATCH_INFO_ID)]),
    "info_mask has a length bit": uapi.pack_filter([uapi.TypeFilter(KEY, info_mask=0x1)]),
    "info_mask is WATCH_INFO_LENGTH": uapi.pack_filter(
        [uapi.TypeFilter(KEY, info_mask=uapi.WATCH_INFO_LENGTH)]),
    "bad second entry of an unknown type": uapi.pack_filter(
        [uapi.TypeFilter(KEY), uapi.TypeFilter(1000, info_mask=0x40)]),
}


@pytest.mark.parametrize("raw", BAD_FILTERS.values(), ids=BAD_FILTERS.keys())
def test_invalid_filters_are_einval_and_keep_the_old_filter(scene, raw):
    uapi.set_filter(scene.q.r, [uapi.TypeFilter(KEY, subtypes=1 << UPDATED)])
    assert _errno(uapi.set_filter, scene.q.r, raw) == errno.EINVAL
    assert scene.posted_records() == [scene.updated()]


def test_bad_pointer_is_efault(scene):
    assert _errno(uapi.ioctl, scene.q.r, uapi.IOC_WATCH_QUEUE_SET_FILTER, 1) == errno.EFAULT
    assert _errno(uapi.ioctl, scene.q.r, uapi.IOC_WATCH_QUEUE_SET_FILTER, 0xFFFF800000000000) == errno.EFAULT
    assert scene.posted_records() == scene.all()


def test_filter_array_running_into_an_unmapped_page_is_efault(scene):
    libc = ctypes.CDLL(None, use_errno=True)
    m = mmap.mmap(-1, 2 * mmap.PAGESIZE)
    anchor = ctypes.c_char.from_buffer(m)
    try:
        base = ctypes.addressof(anchor)
        assert libc.mprotect(ctypes.c_void_p(base + mmap.PAGESIZE), ctypes.c_size_t(mmap.PAGESIZE),
                             PROT_NONE) == 0
        # A valid header in the last 8 bytes of the first page; filters[] is unreadable.
        m[mmap.PAGESIZE - 8:mmap.PAGESIZE] = uapi.pack_filter([], nr_filters=1)
        assert _errno(uapi.ioctl, scene.q.r, uapi.IOC_WATCH_QUEUE_SET_FILTER,
                      base + mmap.PAGESIZE - 8) == errno.EFAULT
    finally:
        del anchor
        m.close()
    assert scene.posted_records() == scene.all()


def test_removal_records_pass_a_block_everything_filter(scene):
    uapi.set_filter(scene.q.r, [uapi.TypeFilter(1000)])
    scene.post()
    uapi.unwatch_key(scene.key, scene.q.r)
    assert scene.q.drain() == [uapi.removal_record(1, scene.key)]


def test_removal_and_loss_records_pass_a_filter_without_the_meta_type(scene):
    # Only KEY/UPDATED of watch id 1 passes; META (type 0) is not in the type bitmap.
    uapi.set_filter(scene.q.r, [uapi.TypeFilter(KEY, subtypes=1 << UPDATED, info_filter=1 << 8,
                                                info_mask=uapi.WATCH_INFO_ID)])
    for _ in range(33):  # capacity 32: the 33rd is lost
        uapi.key_update(scene.key, b"x")
    got = scene.q.drain()
    assert got == [scene.updated()] * 32 + [uapi.LOSS_RECORD]
    uapi.unwatch_key(scene.ring, scene.q.r)
    assert scene.q.drain() == [uapi.removal_record(2, scene.ring)]
