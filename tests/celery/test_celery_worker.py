"""End to end on Celery: a real `celery worker` runs training jobs, with Redis as the broker.

The same path as tests/training/test_worker_e2e.py, with ``TASKS_BACKEND=celery``: a throwaway
database (``migrate``, ``load_demo``), jobs submitted through the model as the web process would,
and a real ``celery -A learning_engine worker -Q default,training`` process. The database is a
SQLite file, or, when the suite runs on PostgreSQL (``make test-postgres``), a database of its
own on that server, created and dropped here: the deployment of several machines. The broker is
one Redis database of its own (``CELERY_TEST_BROKER_URL``, default DB 13 of 127.0.0.1:6379),
flushed before and after; no other database of that server is touched.

Skipped, with the reason, when celery is not importable or Redis does not answer.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.processes import Database, Deployment

# One Redis database per pytest-xdist worker (gw0 -> 13, gw1 -> 14, ...): each flushes its own.
_XDIST = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
BROKER_URL = os.environ.get("CELERY_TEST_BROKER_URL", f"redis://127.0.0.1:6379/{13 + int(_XDIST or 0) % 3}")


def _unavailable() -> str | None:
    if importlib.util.find_spec("celery") is None or importlib.util.find_spec("redis") is None:
        return "celery or redis (the client) is not installed"
    import redis

    try:
        redis.Redis.from_url(BROKER_URL, socket_connect_timeout=2, socket_timeout=2).ping()
    except redis.RedisError as exc:
        return f"Redis at {BROKER_URL} does not answer: {exc}"
    return None


REASON = _unavailable()
pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.skipif(REASON is not None, reason=REASON or "")]


def flush_broker() -> None:
    import redis

    redis.Redis.from_url(BROKER_URL).flushdb()  # this test's Redis database only


CELERY_WORKER = ["-m", "celery", "-A", "learning_engine", "worker", "-Q", "default,training", "--concurrency", "1"]


class Site(Deployment):
    """A throwaway deployment on Celery: its own database (on PostgreSQL when the suite is), broker DB."""

    def __init__(self, folder: Path) -> None:
        super().__init__(
            folder,
            Database(folder, prefix="celery_e2e", postgres=True),
            TASKS_BACKEND="celery",
            CELERY_BROKER_URL=BROKER_URL,
            REAPER_INTERVAL_SECONDS="2",
        )

    def start_worker(self, name: str) -> subprocess.Popen[bytes]:
        """`celery worker` on both queues, one training process (jobs run one at a time)."""
        options = ["--loglevel", "INFO", "--hostname", f"{name}@%h", "--without-gossip", "--without-mingle"]
        return self.start([*CELERY_WORKER, *options], name=name)

    def stop_worker(self, worker: subprocess.Popen[bytes]) -> None:
        self.stop_process(worker)  # warm shutdown: reserved messages go back to the broker


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    flush_broker()
    site = Site(tmp_path_factory.mktemp("celery"))
    try:
        site.manage("migrate", "--no-input", "-v", "0")
        site.manage("load_demo", "--force", "--respiratory-cases", "400", "-v", "0")
        yield site
    finally:
        site.stop()
        flush_broker()


def task_outcome(site: Site, job_id: int) -> Any:
    """What the job's task returned, read back through django.tasks (the Celery result backend)."""
    return site.python(
        "import json\n"
        "from training.models import TrainingJob\n"
        "from training.tasks import run_training_job\n"
        f"result = run_training_job.get_result(TrainingJob.objects.get(pk={job_id}).task_id)\n"
        "print(json.dumps({'status': str(result.status),"
        " 'value': result.return_value if result.is_finished else None}))"
    )


def finished(job: dict[str, Any]) -> bool:
    return job["status"] in {"completed", "failed", "cancelled"}


def test_queued_jobs_start_in_priority_order(site: Site) -> None:
    # Submitted lowest first while no worker runs; one training process then takes the highest.
    low = site.submit("sgd", priority=-50, epochs=2)
    middle = site.submit("sgd", priority=0, epochs=2)
    high = site.submit("sgd", priority=50, epochs=2)
    worker = site.start_worker("priorities")
    try:
        jobs = [site.wait_for(job_id, finished, log="priorities") for job_id in (low, middle, high)]
    finally:
        site.stop_worker(worker)
    assert [job["status"] for job in jobs] == ["completed"] * 3, [job["error_log"] for job in jobs]
    by_start = sorted(jobs, key=lambda job: job["started_at"])
    assert [job["id"] for job in by_start] == [high, middle, low]


def test_a_celery_worker_runs_a_job_on_the_demo_cohort_epoch_by_epoch(site: Site) -> None:
    job_id = site.submit("", batch_size=32, epochs=10)  # the default algorithm: SGD
    worker = site.start_worker("sgd")
    try:
        job = site.wait_for(job_id, finished, log="sgd")
        outcome = task_outcome(site, job_id)
    finally:
        site.stop_worker(worker)
    assert job["status"] == "completed", job["error_log"]
    assert job["algorithm"] == "sgd"
    assert job["worker_id"]  # the Celery pool process that ran it
    assert [entry["epoch"] for entry in job["history"]] == list(range(1, 11))
    assert all(entry["epochs"] == 10 and entry["train_loss"] > 0 for entry in job["history"])
    assert job["dataset_id"] is not None  # it prepared its own snapshot first
    assert job["evaluation"]["accuracy"] > 0.5
    assert job["artifact_sha256"]
    assert outcome["status"] == "SUCCESSFUL"
    assert outcome["value"]["outcome"] == "completed"


def test_a_running_job_shows_its_progress_and_stops_when_cancelled(site: Site) -> None:
    job_id = site.submit("mlp", batch_size=8, epochs=1000, hidden_layers=[128, 128])
    worker = site.start_worker("cancel")
    try:
        running = site.wait_for(job_id, lambda j: j["status"] == "running" and len(j["history"]) >= 2, log="cancel")
        assert 0 < running["progress"] < 100
        site.python(
            "import json\n"
            "from django.contrib.auth import get_user_model\n"
            "from training.models import TrainingJob\n"
            f"TrainingJob.objects.get(pk={job_id}).cancel("
            "by=get_user_model().objects.get(username='demo-ml-engineer'), reason='Cancelled by the test.')\n"
            "print(json.dumps({}))"
        )
        deadline = time.monotonic() + 120
        outcome = task_outcome(site, job_id)
        while outcome["status"] != "SUCCESSFUL" and time.monotonic() < deadline:
            time.sleep(0.5)
            outcome = task_outcome(site, job_id)
        # The worker is free again: the next job runs to the end.
        after = site.submit("sgd", epochs=2)
        assert site.wait_for(after, finished, log="cancel")["status"] == "completed"
    finally:
        site.stop_worker(worker)
    assert outcome == {"status": "SUCCESSFUL", "value": {"job": job_id, "outcome": "stopped"}}, site.log("cancel")
    job = site.job(job_id)
    assert job["status"] == "cancelled"
    assert len(running["history"]) <= len(job["history"]) < 1000
    assert job["artifact"] == ""
    assert job["lease"] is None


def test_the_reaper_chain_runs_again_and_again_through_eta_messages(site: Site) -> None:
    # Every submit ensures the chain; with REAPER_INTERVAL_SECONDS=2 each run re-enqueues the next
    # with run_after (a Celery ETA).
    site.submit("sgd", epochs=1)
    worker = site.start_worker("reaper")
    try:
        seen: set[str] = set()
        deadline = time.monotonic() + 60
        while len(seen) < 3 and time.monotonic() < deadline:
            rows = site.query("SELECT last_run_at FROM training_periodicschedule WHERE name = 'reap_stale_jobs'")
            if rows and rows[0]["last_run_at"]:
                seen.add(rows[0]["last_run_at"])
            time.sleep(0.2)
    finally:
        site.stop_worker(worker)
    assert len(seen) >= 3, site.log("reaper")
