"""Background tasks of the experiments (django.tasks): the periodic conclusion of expired A/B tests.

A periodic chain (``learning_engine.periodic``): each run concludes the running tests past their
duration (``ABTest.conclude_expired``: without promotion) and re-enqueues itself
``AB_TEST_CHECK_INTERVAL_SECONDS`` later. Starting a test starts the chain unless one is alive, so a
chain that died (a worker gone, the queue emptied) revives with the next test; the
``conclude_expired_ab_tests`` command does the same work for operators and cron.
"""

from __future__ import annotations

from typing import Any

from learning_engine.periodic import ensure_scheduled, periodic_task

SCHEDULE = "conclude_expired_ab_tests"


@periodic_task(schedule=SCHEDULE, interval_setting="AB_TEST_CHECK_INTERVAL_SECONDS", default_interval_seconds=300)
def conclude_expired_ab_tests_periodically() -> dict[str, Any]:
    from models_registry.experiments.models import ABTest

    return ABTest.conclude_expired()


def ensure_ab_test_checks_scheduled() -> None:
    """Start the chain unless one is alive (``learning_engine.periodic``)."""
    ensure_scheduled(conclude_expired_ab_tests_periodically)
