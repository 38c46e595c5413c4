"""Shared fixtures of the registry tests: the two roles that run the registry and an A/B pair."""

from __future__ import annotations

import pytest

from learning_engine import roles
from tests.models_registry.ab_factories import start_test, version_pair


@pytest.fixture
def engineer(make_user):
    return make_user(roles.ML_ENGINEER)


@pytest.fixture
def lead(make_user):
    return make_user(roles.CLINICAL_LEAD)


@pytest.fixture
def pair(engineer, lead):
    """A (approved, active) and B (approved, inactive) of one model type."""
    return version_pair(engineer=engineer, lead=lead)


@pytest.fixture
def running(pair, engineer):
    """A running split test of the pair."""
    return start_test(*pair, by=engineer)
