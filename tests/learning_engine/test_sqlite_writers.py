"""Serving's write transactions on a SQLite file queue on a lock that wakes the next one at once
(learning_engine/sqlite_writers.py)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from learning_engine import sqlite_writers
from learning_engine.sqlite_writers import queued_write


@pytest.fixture
def database(tmp_path, monkeypatch):
    path = str(tmp_path / "site.sqlite3")
    monkeypatch.setattr(sqlite_writers, "_file_database", lambda alias: path)
    return path


def test_threads_take_turns(database):
    inside: list[str] = []
    overlaps: list[tuple[str, str]] = []

    def write(name: str) -> None:
        with queued_write("default"):
            if inside:
                overlaps.append((inside[0], name))
            inside.append(name)
            time.sleep(0.02)
            inside.remove(name)

    threads = [threading.Thread(target=write, args=(str(n),)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlaps == []


def test_another_process_holding_the_lock_is_waited_for(database):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({database + '.writers'!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "time.sleep(0.6)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        start = time.monotonic()
        with queued_write("default"):
            waited = time.monotonic() - start
    finally:
        holder.wait(timeout=10)
    assert waited > 0.3


def test_a_released_lock_is_taken_at_once(database):
    with queued_write("default"):
        pass
    start = time.monotonic()
    for _ in range(200):
        with queued_write("default"):
            pass
    assert time.monotonic() - start < 1.0  # 200 turns; SQLite's busy handler sleeps >= 1 ms per wait


def test_nothing_is_queued_in_memory_inside_a_transaction_or_on_another_database(db):
    from django.db import connection, transaction

    # The test database is in memory on SQLite; PostgreSQL has no database-wide write lock.
    assert connection.vendor != "sqlite" or connection.is_in_memory_db()  # type: ignore[attr-defined]
    assert sqlite_writers._file_database("default") is None
    with transaction.atomic():
        assert sqlite_writers._file_database("default") is None


def test_a_file_database_is_queued(settings, tmp_path):
    from django.db import connections

    connection = connections["default"]
    saved = connection.settings_dict["NAME"]
    try:
        connection.settings_dict["NAME"] = str(tmp_path / "file.sqlite3")
        if connection.vendor == "sqlite":
            assert sqlite_writers._file_database("default") == str(tmp_path / "file.sqlite3")
        else:
            assert sqlite_writers._file_database("default") is None
    finally:
        connection.settings_dict["NAME"] = saved
