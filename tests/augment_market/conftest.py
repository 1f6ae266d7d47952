"""The command-line tests run without the debug switch (tracebacks off, one error line)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def no_debug(monkeypatch):
    monkeypatch.delenv("AUGMENT_MARKET_DEBUG", raising=False)
