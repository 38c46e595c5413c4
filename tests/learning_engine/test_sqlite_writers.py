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


def _hold(path: str) -> int:
    """An flock on ``path`` held through a descriptor of its own (another open file description
    conflicts with this process's, as another process's would)."""
    import fcntl
    import os

    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    return descriptor


def _in_thread(body, timeout: float) -> bool:
    """Run ``body`` in a thread; whether it ended within ``timeout`` seconds."""
    done = threading.Event()

    def run() -> None:
        body()
        done.set()

    threading.Thread(target=run, daemon=True).start()
    return done.wait(timeout)


def _free(path: str) -> bool:
    """Whether nobody holds the flock on ``path`` (tried through a descriptor of its own)."""
    import fcntl
    import os

    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(descriptor)
    return True


def test_a_writer_that_got_the_lock_only_after_the_database_timeout_passes_it_on(database, monkeypatch):
    # Writers queued behind holders that each wait out SQLite's busy timeout (an import holding
    # SQLite's lock) must not add those waits up: one that waited longer than the timeout goes on
    # unqueued, and SQLite's lock and busy timeout decide, as without the queue.
    import os

    monkeypatch.setattr(sqlite_writers, "_timeout", lambda alias: 0.2)
    monkeypatch.setattr(sqlite_writers, "MIN_WAIT", 0.0)
    descriptor = _hold(database + ".writers")
    threading.Timer(0.4, os.close, args=(descriptor,)).start()
    with queued_write("default"):
        assert _free(database + ".writers"), "a writer that waited past the timeout holds up the queue"
    # One that got it in time holds it through its write
    monkeypatch.setattr(sqlite_writers, "_timeout", lambda alias: 5.0)
    descriptor = _hold(database + ".writers")
    threading.Timer(0.2, os.close, args=(descriptor,)).start()
    with queued_write("default"):
        assert not _free(database + ".writers")
    assert _free(database + ".writers")


def test_threads_wait_no_longer_than_the_database_timeout_for_a_thread_stuck_in_its_write(database, monkeypatch):
    monkeypatch.setattr(sqlite_writers, "_timeout", lambda alias: 0.3)
    monkeypatch.setattr(sqlite_writers, "MIN_WAIT", 0.0)
    stuck, release = threading.Event(), threading.Event()

    def hang() -> None:
        with queued_write("default"):
            stuck.set()
            release.wait(10)

    threading.Thread(target=hang, daemon=True).start()
    assert stuck.wait(5)

    def write() -> None:
        with queued_write("default"):
            pass

    try:
        assert _in_thread(write, timeout=5.0), "a writer still waits for a thread stuck in its write"
    finally:
        release.set()


def test_a_lock_file_that_cannot_be_opened_leaves_the_write_unqueued(tmp_path, monkeypatch):
    # A read-only folder, a lock file of another user's with mode 0600, a name over NAME_MAX (255)
    # that SQLite's own files stay within: SQLite's lock still guards the write; the request must
    # not fail on the queue's file.
    path = str(tmp_path / ("x" * 242 + ".sqlite3"))  # 250 characters: its -wal's 254, the lock file's 258
    monkeypatch.setattr(sqlite_writers, "_file_database", lambda alias: path)
    ran = []
    with queued_write("default"):
        ran.append(True)
    assert ran == [True]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("file:{folder}/site.sqlite3?mode=rwc", "{folder}/site.sqlite3"),
        ("file://{folder}/site%20one.sqlite3", "{folder}/site one.sqlite3"),
        ("file://localhost{folder}/site.sqlite3?cache=private", "{folder}/site.sqlite3"),
    ],
)
def test_the_lock_file_of_a_uri_name_is_beside_the_database(tmp_path, name, expected):
    # Django opens SQLite with uri=True: NAME may be a file: URI, whose file is its path (the lock
    # file must not be named after the URI, in the working folder).
    from django.db import connections

    connection = connections["default"]
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's NAME")
    saved = connection.settings_dict["NAME"]
    try:
        connection.settings_dict["NAME"] = name.format(folder=tmp_path)
        assert sqlite_writers._file_database("default") == expected.format(folder=tmp_path)
    finally:
        connection.settings_dict["NAME"] = saved


def test_a_database_timeout_of_zero_still_queues_the_writers(database, monkeypatch):
    # sqlite3's timeout=0 (fail at once on SQLite's lock) must not turn the queue off: the bound
    # on the queue's wait is a second at least.
    monkeypatch.setattr(sqlite_writers, "_timeout", lambda alias: 0.0)
    with queued_write("default"):
        assert not _free(database + ".writers")
