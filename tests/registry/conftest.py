"""Fixtures of the registry tests."""

from __future__ import annotations

import pytest

from .trained import train_run


@pytest.fixture
def runs3(workspace):
    """Three runs with three different models."""
    return [train_run(workspace, seed=s) for s in range(3)]
