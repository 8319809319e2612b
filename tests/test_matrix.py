"""A run on several kernels: each result carries its kernel's version; the summary shows a
test x kernel matrix and names the tests whose verdict differs between kernels."""

from pathlib import Path

from harness import results
from harness.results import RunSummary, TestResult


def _r(test, outcome, version, expected="pass"):
    return TestResult(scenario="functional", test=f"guest-tests/test_x.py::{test}", outcome=outcome,
                      expected=expected, kernel=f"debian:{version}+h", version=version)


def test_the_matrix_names_a_test_that_passes_on_one_kernel_and_fails_on_another():
    rs = [_r("a", "pass", "6.1.192"), _r("a", "pass", "6.12.118"),
          _r("b", "pass", "6.1.192"), _r("b", "fail", "6.12.118"),
          _r("c", "skip", "6.1.192", expected="skip")]
    s = RunSummary(rs, 0, 1, Path("/x"))
    m = results.matrix(s)
    lines = m.splitlines()
    assert lines[1].split()[-2:] == ["6.1.192", "6.12.118"]
    row_b = next(ln for ln in lines if "test_x.py::b " in ln)
    assert row_b.split()[-2:] == ["pass", "fail"]
    assert "2 tests differ between kernels:" in m
    assert "test_x.py::b: as expected on 6.1.192; not on 6.12.118" in m
    assert "test_x.py::c: as expected on 6.1.192; not on none; not run on 6.12.118" in m
    assert "test_x.py::a:" not in m  # the same verdict on both: not listed
    assert m in results.table(s)


def test_one_kernel_has_no_matrix():
    s = RunSummary([_r("a", "pass", "6.1.192"), _r("b", "fail", "6.1.192")], 0, 1, Path("/x"))
    assert results.matrix(s) is None and "matrix" not in results.table(s)
