"""Fixtures of all three layers' tests: the two roles that run the registry."""

from __future__ import annotations

import pytest

from learning_engine import roles


@pytest.fixture
def engineer(make_user):
    return make_user(roles.ML_ENGINEER)


@pytest.fixture
def lead(make_user):
    return make_user(roles.CLINICAL_LEAD)
