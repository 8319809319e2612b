"""Reproducers of known watch_queue bugs (watch_queue.md §2+3). On a fixed kernel they pass with
no kernel report; on a tree with the bug re-introduced they fail or produce the named report."""

from harness.guest.fixtures import (  # noqa: F401
    new_key, new_queue, queue, session_keyring, watch_queue_kernel)
