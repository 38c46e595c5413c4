"""Fixtures of the registry tests."""

from __future__ import annotations

import pytest

from tests.models_registry.registry.factories import ready_snapshot
from tests.training.factories import ModelTypeFactory
from training.models import DatasetSnapshot


@pytest.fixture
def snapshot(engineer) -> DatasetSnapshot:
    """A ready snapshot of the "diagnosis" type whose file holds ``rows_by_split(seed=1)``."""
    return ready_snapshot(ModelTypeFactory.create(diagnosis=True), by=engineer, seed=1)
