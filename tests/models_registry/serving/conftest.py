"""Fixtures of the serving tests (the served ``version`` is tests/conftest.py's)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.conftest import jwt_client


@pytest.fixture
def client(prediction_client) -> APIClient:
    """An API client with a JWT of ``prediction_client`` (tests/conftest.py), the user that predicts."""
    return jwt_client(prediction_client)
