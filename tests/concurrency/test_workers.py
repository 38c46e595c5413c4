"""Several real ``db_worker`` processes take jobs from one database queue: none runs twice, none is lost.

The jobs are real training jobs (the real task, trainer, artifact and registration) kept cheap: a
logistic regression on a small ready snapshot, so the test measures claiming, not training.
``CONCURRENCY_JOBS`` sets how many; the default is the issue's 2,000, which took 208 s on the
two-core CI machine under load (about ten jobs a second for four workers). ``CONCURRENCY_JOBS=200``
for a quick local run.
"""

from __future__ import annotations

import os
from collections import Counter

from django.db import transaction
from django_tasks_db.models import DBTaskResult

from learning_engine import roles
from models_registry.models import ModelVersion, PerformanceRecord
from tests.concurrency.conftest import Site, wait_until, worker_args
from tests.factories import user_with_role
from tests.models_registry.registry.factories import ready_snapshot
from tests.training.factories import ModelTypeFactory
from training.models import DatasetSnapshot, JobTransition, TrainingJob

JOBS = int(os.environ.get("CONCURRENCY_JOBS", "2000"))
WORKERS = 4


def counts() -> Counter[str]:
    return Counter(TrainingJob.objects.values_list("status", flat=True))


def test_several_workers_run_every_queued_job_exactly_once(site: Site, database_queue: None) -> None:
    engineer = user_with_role(roles.ML_ENGINEER)
    kind = ModelTypeFactory.create(diagnosis=True, min_cases_to_train=10)
    snapshot = ready_snapshot(kind, by=engineer, seed=3)
    with transaction.atomic():  # one commit: the workers see every job at once
        jobs = [
            TrainingJob.submit(model_type=kind, by=engineer, dataset=snapshot, algorithm="logistic_regression")
            for _ in range(JOBS)
        ]
    training_tasks = DBTaskResult.objects.filter(task_path="training.tasks.run_training_job")
    assert training_tasks.count() == JOBS

    for index in range(WORKERS):
        site.start(worker_args(), name=f"worker-{index}")
    wait_until(
        lambda: counts()["completed"] + counts()["failed"] == JOBS,
        timeout=max(600, JOBS),
        what=f"{JOBS} jobs to finish (now {dict(counts())}; worker log: {site.log('worker-0')[-2000:]})",
        every=1.0,
    )

    # None lost: every job completed, on its first and only attempt.
    assert counts() == {"completed": JOBS}, [job.error_log for job in TrainingJob.objects.filter(status="failed")[:3]]
    assert set(TrainingJob.objects.values_list("attempts", flat=True)) == {1}
    # None ran twice: each job has exactly its three audit rows (created, started, completed).
    edges = Counter(JobTransition.objects.values_list("from_state", "to_state"))
    assert edges == {("", "queued"): JOBS, ("queued", "running"): JOBS, ("running", "completed"): JOBS}
    per_job = Counter(JobTransition.objects.values_list("job_id", flat=True))
    assert set(per_job.values()) == {3}
    # Each task ran once and found its job queued (a second run would have reported "skipped").
    assert Counter(training_tasks.values_list("status", flat=True)) == {"SUCCESSFUL": JOBS}
    outcomes = Counter((result or {})["outcome"] for result in training_tasks.values_list("return_value", flat=True))
    assert outcomes == {"completed": JOBS}
    # The work was shared, and each completion registered exactly one version (with one offline
    # performance record), under distinct labels, from the one snapshot.
    assert len(set(TrainingJob.objects.values_list("worker_id", flat=True))) > 1
    assert ModelVersion.objects.count() == JOBS
    assert set(ModelVersion.objects.values_list("job_id", flat=True)) == {job.pk for job in jobs}
    assert len(set(ModelVersion.objects.values_list("version", flat=True))) == JOBS
    assert PerformanceRecord.objects.filter(source="offline").count() == JOBS
    assert DatasetSnapshot.objects.count() == 1
