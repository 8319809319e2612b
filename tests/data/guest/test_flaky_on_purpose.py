"""A guest test that fails in the first VM of a run and passes in any later one.

Used by tests/test_e2e_vm.py: with --retry-failed it must come back 'flaky', the first
failure kept as an attempt. The agent runs pytest in-process: argv[1] is the VM's plan file,
in the VM's own directory of the run's results directory.
"""

import sys
from pathlib import Path


def test_fails_in_the_first_vm_only():
    vdir = Path(sys.argv[1]).resolve().parent
    boots = [d.name for d in vdir.parent.glob("vm*") if (d / "plan.json").is_file()]
    assert len(boots) > 1, f"first VM of the run ({boots}): failing on purpose"
