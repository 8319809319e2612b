"""Smoke: one key update seen through a notification pipe, byte for byte."""

import errno
import os

import pytest

from harness.guest import uapi

TAG = 7


def test_key_update_gives_one_record(queue, session_keyring):
    rfd, _ = queue
    uapi.set_size(rfd, 32)
    key = uapi.add_key("user", "wqh-smoke", b"v1", session_keyring)
    uapi.watch_key(key, rfd, TAG)

    uapi.key_update(key, b"v2")

    buf = os.read(rfd, 4096)
    assert len(buf) == 16, f"expected one 16-byte record, read {len(buf)} bytes: {buf.hex()}"
    (rec,) = uapi.decode(buf)
    assert rec.type == uapi.WATCH_TYPE_KEY_NOTIFY
    assert rec.subtype == uapi.NOTIFY_KEY_UPDATED
    assert rec.length == 16
    assert rec.watch_id == TAG
    assert rec.info == 16 | TAG << 8
    assert rec.key_id == key
    assert rec.aux == 0
    with pytest.raises(BlockingIOError) as e:
        os.read(rfd, 4096)
    assert e.value.errno == errno.EAGAIN
