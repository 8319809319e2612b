"""CVE-2022-0995 (fixed by c993ee0f9f81): a filter entry with a large type overflowed the
filter allocation. Fixed: the type is ignored and the ioctl returns 0; re-introduced: KASAN
reports "slab-out-of-bounds Write in watch_queue_set_filter"."""

from harness.guest import uapi


def test_filter_with_type_200_is_accepted_and_ignored(queue, new_key):
    r, _ = queue
    uapi.set_size(r, 1)
    key = new_key()
    uapi.watch_key(key, r, 1)
    # One known entry and one beyond WATCH_TYPE__NR: the allocation must count only the first.
    uapi.set_filter(r, [uapi.TypeFilter(uapi.WATCH_TYPE_KEY_NOTIFY), uapi.TypeFilter(200)])
    uapi.key_update(key, b"x")
    recs = uapi.drain(r)
    assert [(x.type, x.subtype) for x in recs] == [(uapi.WATCH_TYPE_KEY_NOTIFY, uapi.NOTIFY_KEY_UPDATED)]
