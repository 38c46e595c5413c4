"""Background tasks of the registry (django.tasks): the periodic conclusion of expired A/B tests.

A chain like training's reaper (``training.models.PeriodicSchedule``): each run concludes the
running tests past their duration (``ABTest.conclude_expired``: without promotion) and re-enqueues
itself ``AB_TEST_CHECK_INTERVAL_SECONDS`` later. Starting a test starts the chain unless one is
alive, so a chain that died (a worker gone, the queue emptied) revives with the next test; the
``conclude_expired_ab_tests`` command does the same work for operators and cron.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.db import transaction
from django.tasks import task
from django.utils import timezone

from training.models import PeriodicSchedule

SCHEDULE = "conclude_expired_ab_tests"
DEFAULT_INTERVAL_SECONDS = 300


def check_interval() -> int:
    return int(getattr(settings, "AB_TEST_CHECK_INTERVAL_SECONDS", DEFAULT_INTERVAL_SECONDS))


def ensure_ab_test_checks_scheduled() -> None:
    """Start the chain unless one is alive (see ``PeriodicSchedule.start_chain_if_idle``)."""
    token = PeriodicSchedule.start_chain_if_idle(SCHEDULE, interval_seconds=check_interval())
    if token is not None:
        transaction.on_commit(lambda: conclude_expired_ab_tests_periodically.enqueue(str(token)))


@task()
def conclude_expired_ab_tests_periodically(token: str) -> dict[str, Any]:
    from models_registry.experiments.models import ABTest

    next_run = PeriodicSchedule.claim_run(SCHEDULE, token)
    if next_run is None:
        return {"outcome": "superseded"}
    try:
        summary = ABTest.conclude_expired()
    finally:
        # Re-arm even when this run failed (the database away for a moment): a broken chain
        # would leave expired tests routing until somebody starts another test.
        delay = max(1.0, (next_run - timezone.now()).total_seconds())
        conclude_expired_ab_tests_periodically.using(run_after=timezone.now() + dt.timedelta(seconds=delay)).enqueue(
            token
        )
    return {"outcome": "ran", **summary}
