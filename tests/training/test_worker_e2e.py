"""End to end with real processes: `db_worker` runs training jobs from the database queue.

Each test builds its own SQLite file database with `migrate` and `load_demo`, starts real
`manage.py db_worker` processes, and watches the job row. This is the path `make run` uses.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


class Site:
    """A throwaway deployment: its own database file, media folder and worker processes."""

    def __init__(self, folder: Path) -> None:
        self.db_path = folder / "e2e.sqlite3"
        self.env = {
            **os.environ,
            "DEBUG": "0",
            "DATABASE_URL": f"sqlite:///{self.db_path}",
            "MEDIA_ROOT": str(folder / "media"),
            "TASKS_BACKEND": "django_tasks_db.DatabaseBackend",
            "JOB_STALE_SECONDS": "3",
            "LOG_LEVEL": "WARNING",
        }
        self.workers: list[subprocess.Popen[bytes]] = []

    def manage(self, *args: str, timeout: float = 300) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def python(self, code: str) -> dict:
        """Run ``code`` in `manage.py shell`; it must print one JSON line last."""
        return json.loads(self.manage("shell", "-c", code).strip().splitlines()[-1])

    def start_worker(self) -> subprocess.Popen[bytes]:
        worker = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "db_worker",
                "--queue-name",
                "*",
                "--no-reload",
                "--interval",
                "0.2",
                "--no-startup-delay",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.workers.append(worker)
        return worker

    def job(self, job_id: int) -> dict:
        with sqlite3.connect(self.db_path, timeout=30) as connection:
            connection.row_factory = sqlite3.Row
            row = connection.execute("SELECT * FROM training_trainingjob WHERE id = ?", (job_id,)).fetchone()
        job = dict(row)
        job["history"] = json.loads(job["history"])
        job["evaluation"] = json.loads(job["evaluation"])
        return job

    def wait_for(self, job_id: int, condition, *, timeout: float = 240) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if condition(job):
                return job
            time.sleep(0.1)
        raise AssertionError(f"Job {job_id} never reached the condition; last state: {job['status']} {job['stage']}")

    def stop(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                worker.terminate()
                try:
                    worker.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    worker.kill()


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    site = Site(tmp_path_factory.mktemp("e2e"))
    site.manage("migrate", "--no-input", "-v", "0")
    site.manage("load_demo", "--force", "--respiratory-cases", "800", "-v", "0")
    yield site
    site.stop()


def submit(site: Site, algorithm: str, **hyperparameters: object) -> int:
    spec = json.dumps({"algorithm": algorithm, "hyperparameters": hyperparameters})
    return site.python(
        "import json\n"
        "from django.contrib.auth import get_user_model\n"
        "from training.models import ModelType, TrainingJob\n"
        f"spec = json.loads({spec!r})\n"
        "job = TrainingJob.submit(model_type=ModelType.objects.get(slug='diagnosis'),"
        " by=get_user_model().objects.get(username='demo-ml-engineer'), algorithm=spec['algorithm'] or None,"
        " hyperparameters=spec['hyperparameters'], max_attempts=3)\n"
        "print(json.dumps({'id': job.pk}))"
    )["id"]


def test_a_worker_runs_a_job_on_the_demo_cohort_epoch_by_epoch(site):
    job_id = submit(site, "", batch_size=32, epochs=10)  # the original specification's payload
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
    job_id = submit(site, "mlp", batch_size=8, epochs=40, hidden_layers=[128, 128])
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
