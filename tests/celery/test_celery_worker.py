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
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BROKER_URL = os.environ.get("CELERY_TEST_BROKER_URL", "redis://127.0.0.1:6379/13")


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


class Database:
    """The site's database: a SQLite file, or a fresh database on the suite's PostgreSQL server."""

    def __init__(self, folder: Path) -> None:
        from django.conf import settings

        self.server: dict[str, Any] = dict(settings.DATABASES["default"])
        self.postgres = "postgresql" in self.server["ENGINE"]
        self.sqlite_path = folder / "celery.sqlite3"
        self.name = f"celery_e2e_{uuid.uuid4().hex[:12]}"
        if self.postgres:
            self._admin(f'CREATE DATABASE "{self.name}"')

    def _connect(self, dbname: str, **options: Any) -> Any:
        import psycopg

        server = self.server
        return psycopg.connect(
            host=server.get("HOST") or "127.0.0.1",
            port=server.get("PORT") or 5432,
            user=server.get("USER") or None,
            password=server.get("PASSWORD") or None,
            dbname=dbname,
            **options,
        )

    def _admin(self, sql: str) -> None:
        with self._connect("postgres", autocommit=True) as connection:
            connection.execute(sql)

    @property
    def url(self) -> str:
        if not self.postgres:
            return f"sqlite:///{self.sqlite_path}"
        server = self.server
        credentials = server["USER"] + (f":{server['PASSWORD']}" if server.get("PASSWORD") else "")
        return f"postgres://{credentials}@{server['HOST'] or '127.0.0.1'}:{server['PORT'] or 5432}/{self.name}"

    def query(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        """Rows as dicts; ``sql`` uses %s placeholders."""
        if self.postgres:
            from psycopg.rows import dict_row

            with self._connect(self.name, row_factory=dict_row) as connection:
                return list(connection.execute(sql, params).fetchall())
        with sqlite3.connect(self.sqlite_path, timeout=30) as connection:
            connection.row_factory = sqlite3.Row
            return [dict(row) for row in connection.execute(sql.replace("%s", "?"), params).fetchall()]

    def drop(self) -> None:
        if self.postgres:
            self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value  # text on SQLite, jsonb on PostgreSQL


class Site:
    """A throwaway deployment on Celery: its own database, media, cache and broker DB."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.database = Database(folder)
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "learning_engine.settings",
            "DEBUG": "0",
            "SECURE_SSL_REDIRECT": "0",
            "DATABASE_URL": self.database.url,
            "MEDIA_ROOT": str(folder / "media"),
            "CACHE_DIR": str(folder / "cache"),
            "TASKS_BACKEND": "celery",
            "CELERY_BROKER_URL": BROKER_URL,
            "REAPER_INTERVAL_SECONDS": "2",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
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

    def python(self, code: str) -> Any:
        """Run ``code`` in `manage.py shell`; it must print one JSON line last."""
        return json.loads(self.manage("shell", "-c", code).strip().splitlines()[-1])

    def start_worker(self, name: str) -> subprocess.Popen[bytes]:
        """`celery worker` on both queues, one training process (jobs run one at a time)."""
        log = (self.folder / f"{name}.log").open("ab")
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "learning_engine",
                "worker",
                "-Q",
                "default,training",
                "--concurrency",
                "1",
                "--loglevel",
                "INFO",
                "--hostname",
                f"{name}@%h",
                "--without-gossip",
                "--without-mingle",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its pool processes go with it (see stop_worker)
        )
        log.close()
        self.workers.append(worker)
        return worker

    def stop_worker(self, worker: subprocess.Popen[bytes]) -> None:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)  # warm shutdown: reserved messages go back
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(timeout=10)

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def query(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        return self.database.query(sql, *params)

    def job(self, job_id: int) -> dict[str, Any]:
        job = self.query("SELECT * FROM training_trainingjob WHERE id = %s", job_id)[0]
        job["history"] = _json(job["history"])
        job["evaluation"] = _json(job["evaluation"])
        return job

    def wait_for(
        self, job_id: int, condition: Callable[[dict[str, Any]], bool], *, worker: str, timeout: float = 240
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        job = self.job(job_id)
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if condition(job):
                return job
            time.sleep(0.1)
        raise AssertionError(
            f"Job {job_id} never reached the condition; last state: {job['status']} {job['stage']}\n"
            f"worker log:\n{self.log(worker)}"
        )

    def stop(self) -> None:
        for worker in self.workers:
            self.stop_worker(worker)
        self.database.drop()


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


def submit(site: Site, algorithm: str, *, priority: int = 0, **hyperparameters: object) -> int:
    spec = json.dumps({"algorithm": algorithm, "hyperparameters": hyperparameters, "priority": priority})
    return int(
        site.python(
            "import json\n"
            "from django.contrib.auth import get_user_model\n"
            "from training.models import ModelType, TrainingJob\n"
            f"spec = json.loads({spec!r})\n"
            "job = TrainingJob.submit(model_type=ModelType.objects.get(slug='diagnosis'),"
            " by=get_user_model().objects.get(username='demo-ml-engineer'), algorithm=spec['algorithm'] or None,"
            " hyperparameters=spec['hyperparameters'], priority=spec['priority'], max_attempts=3)\n"
            "print(json.dumps({'id': job.pk}))"
        )["id"]
    )


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
    low = submit(site, "sgd", priority=-50, epochs=2)
    middle = submit(site, "sgd", priority=0, epochs=2)
    high = submit(site, "sgd", priority=50, epochs=2)
    worker = site.start_worker("priorities")
    try:
        jobs = [site.wait_for(job_id, finished, worker="priorities") for job_id in (low, middle, high)]
    finally:
        site.stop_worker(worker)
    assert [job["status"] for job in jobs] == ["completed"] * 3, [job["error_log"] for job in jobs]
    by_start = sorted(jobs, key=lambda job: job["started_at"])
    assert [job["id"] for job in by_start] == [high, middle, low]


def test_a_celery_worker_runs_a_job_on_the_demo_cohort_epoch_by_epoch(site: Site) -> None:
    job_id = submit(site, "", batch_size=32, epochs=10)  # the default algorithm: SGD
    worker = site.start_worker("sgd")
    try:
        job = site.wait_for(job_id, finished, worker="sgd")
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
    job_id = submit(site, "mlp", batch_size=8, epochs=1000, hidden_layers=[128, 128])
    worker = site.start_worker("cancel")
    try:
        running = site.wait_for(job_id, lambda j: j["status"] == "running" and len(j["history"]) >= 2, worker="cancel")
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
        after = submit(site, "sgd", epochs=2)
        assert site.wait_for(after, finished, worker="cancel")["status"] == "completed"
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
    submit(site, "sgd", epochs=1)
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
