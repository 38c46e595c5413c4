"""Fixtures of the CDS Hooks tests: a record system registered as a trusted client, cold key caches."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cds_hooks.keys import KEYS
from learning_engine import roles
from tests.cds_hooks.factories import RecordSystem


@pytest.fixture
def cold_keys() -> Iterator[None]:
    """No JWK Set cached by an earlier test (``pytestmark = pytest.mark.usefixtures("cold_keys")``)."""
    KEYS.clear()
    yield
    KEYS.clear()


@pytest.fixture
def ehr(make_user) -> RecordSystem:
    """A record system with its keys, registered as a trusted client of a prediction client."""
    system = RecordSystem()
    system.client = system.register(make_user(roles.PREDICTION_CLIENT))
    return system
