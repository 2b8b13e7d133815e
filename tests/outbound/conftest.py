"""Outbound fixtures: a capture sink (a real SMTP server) and a real `mda serve` next to it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.conftest import start_server  # noqa: F401  (the real `mda serve` fixture)
from tests.outbound.sink import CaptureSink


@pytest.fixture
def sink() -> Iterator[CaptureSink]:
    """A running capture sink on 127.0.0.1 (plain SMTP)."""
    with CaptureSink() as running:
        yield running
