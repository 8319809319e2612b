"""96a4d8912b: the pipe ring must be a power of two. With SET_SIZE(65) the kernel holds 96 notes;
a ring of 96 slots indexed with `head & 95` aliases slots, losing and duplicating records and
then dereferencing a released buffer (NULL ops) in pipe_read."""

from harness.guest import uapi

N_KEYS = 40


def test_forty_linked_records_come_back_in_order_from_a_65_note_queue(queue, session_keyring, new_key):
    r, _ = queue
    uapi.set_size(r, 65)
    uapi.watch_key(session_keyring, r, 3)
    keys = [new_key(ring=session_keyring) for _ in range(N_KEYS)]
    recs = uapi.drain(r)
    assert recs == [uapi.key_record(uapi.NOTIFY_KEY_LINKED, 3, session_keyring, k) for k in keys]
