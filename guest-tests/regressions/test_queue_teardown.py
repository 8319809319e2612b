"""db8facfc9f: tearing down a queue whose ring still holds a note. The pipe's reference on the
watch queue must be dropped only after the ring's buffers are released: releasing a note sets
its bit in the queue's allocation bitmap. Re-introduced: KASAN "use-after-free Write in
watch_queue_pipe_buf_release"."""

import time

from harness.guest import uapi

RCU_SETTLE = 1.0  # the removed watch drops its queue reference in an RCU callback


def test_closing_a_queue_with_an_unread_removal_record(new_key, new_queue):
    key = new_key()
    q = new_queue(size=1)
    uapi.watch_key(key, q.r, 1)
    uapi.unwatch_key(key, q.r)  # its removal record stays unread in the ring
    time.sleep(RCU_SETTLE)  # now the pipe holds the queue's last reference
    assert uapi.fionread(q.r) == 16
    q.close()
    # The queue is gone; the key is still usable and watchable from a new queue.
    q = new_queue(size=1)
    uapi.watch_key(key, q.r, 2)
    uapi.key_update(key, b"y")
    assert uapi.read_records(q.r) == [uapi.key_record(uapi.NOTIFY_KEY_UPDATED, 2, key)]
