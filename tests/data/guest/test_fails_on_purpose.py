"""A guest test that must fail: it expects watch id 8 where the kernel reports 7.

Used by tests/test_e2e_vm.py to check that a failing guest test becomes
outcome 'fail' and exit code 1.
"""

import os

from harness.guest import uapi


def test_wrong_watch_id(queue, session_keyring):
    rfd, _ = queue
    uapi.set_size(rfd, 32)
    key = uapi.add_key("user", "wqh-fail", b"v1", session_keyring)
    uapi.watch_key(key, rfd, 7)
    uapi.key_update(key, b"v2")
    (rec,) = uapi.decode(os.read(rfd, 4096))
    assert rec.watch_id == 8
