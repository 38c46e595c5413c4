"""Fixtures of the A/B test tests: a pair of approved versions and a running test of them."""

from __future__ import annotations

import pytest

from tests.models_registry.experiments.factories import start_test, version_pair


@pytest.fixture
def pair(engineer, lead):
    """A (approved, active) and B (approved, inactive) of one model type."""
    return version_pair(engineer=engineer, lead=lead)


@pytest.fixture
def running(pair, engineer):
    """A running split test of the pair."""
    return start_test(*pair, by=engineer)
