"""Writers to a SQLite file queue on a lock that wakes them at once, not on SQLite's busy timeout.

SQLite has one write lock per database. A transaction that finds it taken (``BEGIN IMMEDIATE``,
settings.py) waits in SQLite's busy handler, which sleeps 1, 2, 5, 10, 15, 20, 25, ... ms between
attempts whatever the holder does: a predict request's write holds the lock for well under a
millisecond, yet each one that waits sleeps at least 1 ms, the next 3 ms, and so on. With 8
concurrent clients the HTTP benchmark's p99 was 150 ms and its throughput half the bare app's.

``queued_write(alias)`` is a context manager for a short, frequent write transaction (serving's
log rows): around it, the threads of a process take a ``threading.RLock`` and the processes an
exclusive ``flock`` on ``<database>.writers``, which the kernel hands to the next waiter as soon as
it is released. It is held exactly as long as the transaction would hold SQLite's lock, so nothing
waits longer than before; other writers still meet SQLite's own lock and busy timeout. A crashed
process's ``flock`` is released by the kernel. On PostgreSQL (row locks, no database-wide write
lock), inside a transaction already open, and for an in-memory database it does nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator

from django.db import connections

_lock = threading.RLock()  # re-entrant: a transaction on another database file may queue inside one
# (database file, process id) -> the lock file's descriptor. Per process: a descriptor inherited
# across fork shares its open file description, and with it the flock, with the parent.
_files: dict[tuple[str, int], int] = {}


def _lock_file(database: str) -> int:
    key = (database, os.getpid())
    descriptor = _files.get(key)
    if descriptor is None:
        descriptor = os.open(f"{database}.writers", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        _files[key] = descriptor
    return descriptor


def _file_database(alias: str) -> str | None:
    connection = connections[alias]
    if connection.vendor != "sqlite" or connection.in_atomic_block:
        return None
    name = str(connection.settings_dict["NAME"])
    if not name or connection.is_in_memory_db():  # type: ignore[attr-defined]  # the SQLite wrapper's
        return None
    return name


@contextlib.contextmanager
def queued_write(alias: str) -> Iterator[None]:
    """Around one write transaction on ``alias`` (module docstring)."""
    database = _file_database(alias)
    if database is None:
        yield
        return
    with _lock:
        descriptor = _lock_file(database)
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
