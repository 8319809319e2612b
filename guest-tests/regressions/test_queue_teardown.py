"""db8facfc9f: tearing down a queue whose ring still holds a note. The pipe's reference on the
watch queue must be dropped only after the ring's buffers are released: releasing a note sets
its bit in the queue's allocation bitmap. Re-introduced: KASAN "use-after-free Write in
watch_queue_pipe_buf_release"."""

import os
import time

from harness.guest import uapi

RCU_SETTLE = 1.0  # the removed watch drops its queue reference in an RCU callback


def test_closing_a_queue_with_an_unread_removal_record(new_key):
    key = new_key()
    r, w = uapi.notification_pipe(os.O_NONBLOCK)
    uapi.set_size(r, 1)
    uapi.watch_key(key, r, 1)
    uapi.unwatch_key(key, r)  # its removal record stays unread in the ring
    time.sleep(RCU_SETTLE)  # now the pipe holds the queue's last reference
    assert uapi.fionread(r) == 16
    os.close(r)
    os.close(w)
    # The queue is gone; the key is still usable and watchable from a new queue.
    r, w = uapi.notification_pipe(os.O_NONBLOCK)
    try:
        uapi.set_size(r, 1)
        uapi.watch_key(key, r, 2)
        uapi.key_update(key, b"y")
        assert uapi.read_records(r) == [uapi.key_record(uapi.NOTIFY_KEY_UPDATED, 2, key)]
    finally:
        os.close(r)
        os.close(w)
