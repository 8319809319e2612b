"""Guest tests for the fault tests (tests/test_faults.py). Never run these on a host."""

import os
import subprocess
import sys
import time

import pytest


@pytest.fixture(autouse=True)
def guest_only():
    if os.uname().nodename != "virtme-ng":
        pytest.skip("only inside a wqh guest")


def test_slow():
    """Long enough for the host to kill QEMU under it; passes when left alone."""
    time.sleep(20)


def test_allocates_past_the_guest_memory():
    """A child that touches 1 GiB in a 128M guest: the OOM killer ends it (SIGKILL)."""
    # 16 MiB at a time, each written through: no single request the kernel can refuse up front
    r = subprocess.run([sys.executable, "-c",
                        "chunks = []\n"
                        "for _ in range(64): chunks.append(b'\\x01' * (16 << 20))\n"])
    assert r.returncode == 0, f"the allocating child ended with {r.returncode}"
