"""Strict nbval compares the notebooks' stored numbers, which were made under reidlab.pin (float32,
AVX2 kernels, one thread): refuse to check them in any other environment, with the command to use."""
from __future__ import annotations

import pytest


def pytest_configure(config):
    from reidlab.pin import is_pinned

    if config.getoption("nbval", default=False) and not config.getoption("nbval_lax", default=False) \
            and not is_pinned():
        raise pytest.UsageError(
            "strict nbval compares numbers stored under reidlab.pin (float32, AVX2 kernels, one thread); "
            "run it as `make test` does: python -m reidlab.pin python -m pytest --nbval notebooks/...")
