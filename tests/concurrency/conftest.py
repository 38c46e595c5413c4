"""Concurrency and crash recovery with real processes on PostgreSQL.

Every test here starts real processes (``python -m tests.concurrency.actors ...``, ``manage.py
db_worker``, ``manage.py runserver``) against pytest-django's test database: the tests use
``transactional_db`` so what they set up is committed and visible to the processes, and
``Site.env`` hands the processes the test database's name (``test_<name>``, with xdist's suffix)
through ``DATABASE_URL``, plus the test's media and cache folders.

Row locks are real only on PostgreSQL, so the whole folder is skipped, with the reason, when
``DATABASE_URL`` is not PostgreSQL (the SQLite ``make test`` run) or the server does not answer.
The skip is decided once at collection: the SQLite run pays nothing. ``make test-concurrency``
runs the folder on PostgreSQL.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.tasks import task_backends
from django_tasks_db.backend import DatabaseBackend

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


@cache
def postgres_unavailable() -> str | None:
    """Why the concurrency tests cannot run here, or None when they can."""
    database = settings.DATABASES["default"]
    if "postgresql" not in database["ENGINE"]:
        return (
            "concurrency tests need PostgreSQL (row locks are real only there): "
            "DATABASE_URL is not postgres://... (run `make test-concurrency`)"
        )
    try:
        import psycopg

        psycopg.connect(
            host=database.get("HOST") or None,
            port=database.get("PORT") or None,
            user=database.get("USER") or None,
            password=database.get("PASSWORD") or None,
            dbname="postgres",
            connect_timeout=3,
        ).close()
    except Exception as exc:
        return f"PostgreSQL at {database.get('HOST')}:{database.get('PORT')} is not reachable: {exc}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ours = [item for item in items if HERE in item.path.parents]
    if not ours:
        return
    reason = postgres_unavailable()
    for item in ours:
        item.add_marker(pytest.mark.postgres)
        item.add_marker(pytest.mark.slow)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


def database_url() -> str:
    """The URL of the database this test runs on (pytest-django's test database)."""
    from django.db import connection

    db = connection.settings_dict
    credentials = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Site:
    """The processes of one test, all on the test database, media folder and cache."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "learning_engine.settings",
            "DEBUG": "0",
            "SECURE_SSL_REDIRECT": "0",
            "DATABASE_URL": database_url(),
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "CACHE_DIR": str(settings.CACHES["default"]["LOCATION"]),
            "TASKS_BACKEND": "django_tasks_db.DatabaseBackend",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
        self.processes: list[subprocess.Popen[str]] = []

    def start(self, args: list[str], *, name: str, **env: str) -> subprocess.Popen[str]:
        """A process in the checkout; its output goes to ``<folder>/<name>.log``."""
        log = (self.folder / f"{name}.log").open("a")
        process = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env={**self.env, "PGAPPNAME": name, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        log.close()
        self.processes.append(process)
        return process

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text() if path.exists() else ""

    def actors(self, action: str, payloads: list[dict[str, Any]], *, timeout: float = 300) -> list[dict[str, Any]]:
        """Run one actor process per payload, released together; each one's JSON result."""
        go = self.folder / f"{action}-go"
        processes = []
        for index, payload in enumerate(payloads):
            args = ["-m", "tests.concurrency.actors", action, json.dumps(payload)]
            processes.append(
                self.start(
                    args,
                    name=f"{action}-{index}",
                    ACTOR_READY=str(self.folder / f"{action}-ready-{index}"),
                    ACTOR_GO=str(go),
                )
            )
        wait_until(
            lambda: (
                all((self.folder / f"{action}-ready-{i}").exists() for i in range(len(payloads)))
                or any(p.poll() not in (None, 0) for p in processes)
            ),
            timeout=timeout,
            what=f"the {action} actors to get ready",
        )
        go.touch()
        results = []
        deadline = time.monotonic() + timeout
        for index, process in enumerate(processes):
            try:
                process.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                raise
            output = self.log(f"{action}-{index}")
            assert process.returncode == 0, output
            results.append(json.loads(output.strip().splitlines()[-1]))
        return results

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_until(condition: Callable[[], Any], *, timeout: float, what: str, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"Timed out after {timeout:.0f}s waiting for {what}.")


def worker_args() -> list[str]:
    return [
        "manage.py",
        "db_worker",
        "--queue-name",
        "*",
        "--no-reload",
        "--interval",
        "0.1",
        "--no-startup-delay",
    ]


@pytest.fixture
def database_queue() -> Iterator[None]:
    """This process enqueues into the database queue, as the web process of a deployment does."""
    connections = task_backends._connections  # type: ignore[attr-defined]  # the per-thread backend cache
    previous = getattr(connections, "default", None)
    connections.default = DatabaseBackend(alias="default", params={"QUEUES": ["default", "training"]})
    try:
        yield
    finally:
        if previous is None:
            del connections.default
        else:
            connections.default = previous


@pytest.fixture
def site(transactional_db: None, tmp_path: Path) -> Iterator[Site]:
    processes = Site(tmp_path)
    try:
        yield processes
    finally:
        processes.stop()
        # A process killed mid-query can leave its backend alive for a moment; the flush at the
        # end of the test would wait for its locks.
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
