"""Leaks of the watch queue's own allocations (watch_queue.md #9, #13, #14). The tests only
exercise the paths; the end-of-run kmemleak check of the guest agent decides. Fixed: no leak;
re-introduced: "memory leak in watch_queue_set_size" (#9, #14) or "... in keyctl_watch_key" (#13)."""

import os

from harness.guest import uapi

ROUNDS = 200


def test_sized_queues_created_and_closed(watch_queue_kernel):
    for _ in range(ROUNDS):
        r, w = uapi.notification_pipe()
        uapi.set_size(r, 512)  # 16 note pages: a 128-byte page array and a 64-byte bitmap
        os.close(r)
        os.close(w)


def test_watches_added_and_removed(queue, new_key):
    r, _ = queue
    uapi.set_size(r, 1)
    key = new_key()
    for i in range(ROUNDS):
        uapi.watch_key(key, r, i % 256)
        uapi.unwatch_key(key, r)
        assert uapi.read_records(r) == [uapi.removal_record(i % 256, key)]
