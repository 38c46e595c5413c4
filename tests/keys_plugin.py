"""Keys for a test run, generated before Django reads settings.

Loaded with ``-p tests.keys_plugin`` (pyproject.toml's addopts): a conftest is imported only after
pytest-django has set Django up, too late to set ``SECRET_KEY``. Keys written in the repository
would be published keys, which settings refuse; so each run makes its own. An xdist worker and
every process a test starts (``manage.py``, ``db_worker``, ``celery worker``) inherit them through
the environment, so the whole run signs and pseudonymises with one pair.
"""

from __future__ import annotations

import os
import secrets

import pytest

# Names a test can use to check that these, and not some other keys, are in force.
GENERATED = ("SECRET_KEY", "PSEUDONYM_KEY")


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    for name in GENERATED:
        # setdefault: an xdist worker keeps the controller's keys (and a developer may pass their own).
        os.environ.setdefault(name, secrets.token_urlsafe(48))
