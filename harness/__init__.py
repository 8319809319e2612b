"""wqh: a test harness for the Linux kernel's general notification queue."""

__version__ = "0.1.0"
