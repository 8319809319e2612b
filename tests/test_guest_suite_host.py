"""guest-tests/ also runs straight on the host with pytest: it must import and collect
everywhere, and on a kernel without a feature every test of it skips with the reason."""

import re
import subprocess
import sys

from conftest import REPO


def _pytest(*args):
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", *args],
                          capture_output=True, text=True, cwd=REPO, timeout=120)


def test_the_guest_suite_collects_on_the_host():
    r = _pytest("--collect-only", "-q", "guest-tests")
    assert r.returncode == 0, r.stdout + r.stderr
    n = int(re.search(r"(\d+) tests? collected", r.stdout).group(1))
    assert n >= 150


def test_on_the_host_kernel_every_test_passes_or_skips_with_a_reason():
    r = _pytest("-q", "guest-tests")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    assert not re.search(r"\d+ (failed|error)", r.stdout)
    # A skip always names what the kernel lacks (the fixtures probe the syscalls themselves).
    for reason in re.findall(r"^SKIPPED \[\d+\] \S+: (.+)$", r.stdout, re.M):
        assert re.search(r"kernel|CONFIG_|request-key|keyutils", reason), reason
