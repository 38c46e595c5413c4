"""Monitoring fixtures: a served version registered from a real snapshot (so it has a reference)."""

from __future__ import annotations

import pytest

from learning_engine import roles
from tests.models_registry.registry.factories import ready_snapshot
from tests.models_registry.serving.factories import served_version


@pytest.fixture
def system(make_user):
    return make_user(roles.PREDICTION_CLIENT)


@pytest.fixture
def version(model_type, engineer, lead):
    """Active, approved, registered from a ready snapshot (80 training rows of temperature and SpO2)."""
    return served_version(
        model_type=model_type, engineer=engineer, lead=lead, dataset=ready_snapshot(model_type, by=engineer)
    )
