"""055ca8355991: pipe_write locked a notification pipe before refusing the write. Splicing from a
normal pipe (whose mutex is held) into a notification pipe then took a second pipe mutex:
lockdep's "possible recursive locking detected" (syzbot: "possible deadlock in pipe_write").
Fixed: EXDEV before any lock."""

import errno
import os

import pytest


def test_splice_from_a_pipe_into_a_notification_pipe_is_exdev(queue):
    _, qw = queue
    r, w = os.pipe()
    try:
        os.write(w, b"x")
        with pytest.raises(OSError) as e:
            os.splice(r, qw, 1)
        assert e.value.errno == errno.EXDEV
        assert os.read(r, 1) == b"x"  # nothing was consumed
    finally:
        os.close(r)
        os.close(w)
