"""Two triggers at once open one cycle: threads racing ``open_cycle`` on their own connections.

On PostgreSQL the inserts really race and the conditional unique constraint decides. Skipped on
SQLite (the suite's in-memory database in shared-cache mode answers concurrent writers "table is
locked" instead of queueing them); ``test_cycles.test_two_triggers_at_once_open_one_cycle`` covers
the constraint there, one call after the other.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from learning.cycles import open_cycle
from learning.models import LearningCycle
from learning_engine import roles
from models_registry.models import ModelVersion
from tests.factories import user_with_role
from tests.learning.factories import policy
from tests.training.factories import TrainingJobFactory

THREADS = 6


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_triggers_open_exactly_one_cycle():
    lead = user_with_role(roles.CLINICAL_LEAD)
    job = TrainingJobFactory.create(with_artifact=True)
    from models_registry.registry.registration import register_completed_job
    from training.models import TrainingJob

    register_completed_job(sender=TrainingJob, job_id=job.pk)
    champion = ModelVersion.objects.get(job=job)
    champion.approve(by=lead)
    champion.activate(by=lead, reason="Production.")
    policy(job.model_type, by=lead)

    barrier = threading.Barrier(THREADS)
    opened: list[int | None] = []
    errors: list[BaseException] = []

    def trigger(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            cycle = open_cycle(job.model_type, trigger=("new_cases", "drift", "schedule")[index % 3])
            opened.append(cycle.pk if cycle is not None else None)
        except BaseException as exc:  # reported below, with the thread's own exception
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=trigger, args=(index,)) for index in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert len(opened) == THREADS
    assert len([pk for pk in opened if pk is not None]) == 1
    assert LearningCycle.objects.filter(model_type=job.model_type).count() == 1
