"""Throwaway deployments for end-to-end tests with real processes (``db_worker``, ``celery worker``).

A ``Deployment`` has its own database (a SQLite file, or a database of its own on the suite's
PostgreSQL server when asked), media folder and cache, runs ``manage.py`` commands and long-lived
processes against them, and reads job rows straight from the database, as an operator would.
Used by tests/training/test_worker_e2e.py and tests/celery/test_celery_worker.py.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


class Database:
    """A SQLite file, or (``postgres=True`` and the suite on PostgreSQL) a fresh database there."""

    def __init__(self, folder: Path, *, prefix: str, postgres: bool = False) -> None:
        from django.conf import settings

        self.server: dict[str, Any] = dict(settings.DATABASES["default"])
        self.postgres = postgres and "postgresql" in self.server["ENGINE"]
        self.sqlite_path = folder / f"{prefix}.sqlite3"
        self.name = f"{prefix}_{uuid.uuid4().hex[:12]}"
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


class Deployment:
    """One site: ``env`` for every process, processes logged to ``<folder>/<name>.log``."""

    def __init__(self, folder: Path, database: Database, **env: str) -> None:
        self.folder = folder
        self.database = database
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "learning_engine.settings",
            "DEBUG": "0",
            "SECURE_SSL_REDIRECT": "0",
            "DATABASE_URL": database.url,
            "MEDIA_ROOT": str(folder / "media"),
            "CACHE_DIR": str(folder / "cache"),
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.processes: list[subprocess.Popen[bytes]] = []

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

    def submit(self, algorithm: str | None, *, priority: int = 0, **hyperparameters: object) -> int:
        """A training job of the demo ``diagnosis`` model type, submitted as the demo ML engineer
        through the model, as the web process would; its id."""
        spec = json.dumps({"algorithm": algorithm, "hyperparameters": hyperparameters, "priority": priority})
        return int(
            self.python(
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

    def start(self, args: list[str], *, name: str) -> subprocess.Popen[bytes]:
        """``python <args>`` in the checkout, in a session of its own (its children go with it)."""
        log = (self.folder / f"{name}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.processes.append(process)
        return process

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop_process(self, process: subprocess.Popen[bytes], *, grace: float = 30) -> None:
        """SIGTERM to the process group (a warm shutdown), SIGKILL after ``grace`` seconds."""
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

    def stop(self) -> None:
        for process in self.processes:
            self.stop_process(process)
        self.database.drop()

    def query(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        return self.database.query(sql, *params)

    def job(self, job_id: int) -> dict[str, Any]:
        job = self.query("SELECT * FROM training_trainingjob WHERE id = %s", job_id)[0]
        job["history"] = _json(job["history"])
        job["evaluation"] = _json(job["evaluation"])
        return job

    def wait_for(
        self,
        job_id: int,
        condition: Callable[[dict[str, Any]], bool],
        *,
        timeout: float = 240,
        log: str | None = None,
    ) -> dict[str, Any]:
        """The job row once ``condition`` holds; on timeout the last state (and ``log``'s tail)."""
        deadline = time.monotonic() + timeout
        job = self.job(job_id)
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if condition(job):
                return job
            time.sleep(0.1)
        tail = f"\n{log} log:\n{self.log(log)}" if log else ""
        raise AssertionError(
            f"Job {job_id} never reached the condition; last state: {job['status']} {job['stage']}{tail}"
        )
