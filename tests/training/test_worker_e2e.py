"""End to end with real processes: `db_worker` runs training jobs from the database queue.

Each test builds its own SQLite file database with `migrate` and `load_demo`, starts real
`manage.py db_worker` processes, and watches the job row. This is the path `make run` uses.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import Database, Deployment

pytestmark = pytest.mark.slow

WORKER = ["manage.py", "db_worker", "--queue-name", "*", "--no-reload", "--interval", "0.2", "--no-startup-delay"]


class Site(Deployment):
    """A throwaway deployment on the database queue: a SQLite file, `db_worker` processes."""

    def __init__(self, folder: Path) -> None:
        super().__init__(
            folder,
            Database(folder, prefix="e2e"),
            TASKS_BACKEND="django_tasks_db.DatabaseBackend",
            JOB_STALE_SECONDS="3",
        )

    def start_worker(self) -> subprocess.Popen[bytes]:
        return self.start(WORKER, name=f"worker-{len(self.processes)}")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    site = Site(tmp_path_factory.mktemp("e2e"))
    site.manage("migrate", "--no-input", "-v", "0")
    site.manage("load_demo", "--force", "--respiratory-cases", "800", "-v", "0")
    yield site
    site.stop()


def test_a_worker_runs_a_job_on_the_demo_cohort_epoch_by_epoch(site):
    job_id = site.submit("", batch_size=32, epochs=10)  # the original specification's payload
    worker = site.start_worker()
    try:
        job = site.wait_for(job_id, lambda j: j["status"] in {"completed", "failed"})
    finally:
        worker.terminate()
        worker.wait(timeout=10)
    assert job["status"] == "completed", job["error_log"]
    assert job["algorithm"] == "sgd"
    assert [entry["epoch"] for entry in job["history"]] == list(range(1, 11))
    assert all(entry["epochs"] == 10 and entry["train_loss"] > 0 for entry in job["history"])
    assert job["dataset_id"] is not None  # it prepared its own snapshot first
    assert job["evaluation"]["accuracy"] > 0.5
    assert job["artifact_sha256"]


def test_a_killed_worker_leaves_a_job_that_the_reaper_requeues_and_a_second_worker_completes(site):
    job_id = site.submit("mlp", batch_size=8, epochs=40, hidden_layers=[128, 128])
    first = site.start_worker()
    running = site.wait_for(job_id, lambda j: j["status"] == "running" and len(j["history"]) >= 1)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    dead_lease = running["lease"]
    time.sleep(4)  # past JOB_STALE_SECONDS=3

    reaped = site.manage("reap_stale_jobs")
    assert "1 jobs were requeued" in reaped
    assert site.job(job_id)["status"] == "queued"

    # The dead worker's late write (a progress report with its old lease) is refused.
    late = site.python(
        "import json\n"
        "from training.models import LeaseLost, TrainingJob\n"
        f"job = TrainingJob.objects.get(pk={job_id}); job.status = 'running'\n"
        "try:\n"
        f"    job.report_progress(lease={dead_lease!r}, progress=99, stage='late'); outcome = 'accepted'\n"
        "except LeaseLost:\n"
        "    outcome = 'refused'\n"
        "print(json.dumps({'outcome': outcome}))"
    )
    assert late == {"outcome": "refused"}

    second = site.start_worker()
    try:
        job = site.wait_for(job_id, lambda j: j["status"] in {"completed", "failed"}, timeout=300)
    finally:
        second.terminate()
        second.wait(timeout=10)
    assert job["status"] == "completed", job["error_log"]
    assert job["attempts"] == 2
    assert len(job["history"]) == 40  # the second attempt trained all epochs itself
    assert "requeued" in job["error_log"]
