"""3b4c0371928c: the note bitmap and the ring are sized for the notes allocated (32 per page),
not for the count asked for. SET_SIZE(4) holds 32 records; with the bug, 4 and then a loss."""

from harness.guest import uapi


def test_set_size_4_holds_ten_records_without_loss(queue, new_key):
    r, _ = queue
    uapi.set_size(r, 4)
    key = new_key()
    uapi.watch_key(key, r, 9)
    for i in range(10):
        uapi.key_update(key, b"%d" % i)
    assert uapi.drain(r) == [uapi.key_record(uapi.NOTIFY_KEY_UPDATED, 9, key)] * 10
