"""Fixtures for guest tests; they also run on any host whose kernel has CONFIG_WATCH_QUEUE."""

from harness.guest.fixtures import (  # noqa: F401
    new_key, new_queue, queue, session_keyring, version_fact, watch_queue_kernel)
