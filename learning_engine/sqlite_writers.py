"""Writers to a SQLite file queue on a lock that wakes them at once, not on SQLite's busy timeout.

SQLite has one write lock per database. A transaction that finds it taken (``BEGIN IMMEDIATE``,
settings.py) waits in SQLite's busy handler, which sleeps 1, 2, 5, 10, 15, 20, 25, ... ms between
attempts whatever the holder does: a predict request's write holds the lock for well under a
millisecond, yet each one that waits sleeps at least 1 ms, the next 3 ms, and so on. With 8
concurrent clients the HTTP benchmark's p99 was 150 ms and its throughput half the bare app's.

``queued_write(alias)`` is a context manager for a short, frequent write transaction (serving's
log rows): around it, the threads of a process take a ``threading.RLock`` and the processes an
exclusive ``flock`` on ``<database>.writers`` (beside the file a ``file:`` URI names), which the
kernel hands to the next waiter as soon as it is released. It is held exactly as long as the
transaction would hold SQLite's lock; other writers still meet SQLite's own lock and busy timeout.
A crashed process's ``flock`` is released by the kernel. On PostgreSQL (row locks, no
database-wide write lock), inside a transaction already open, and for an in-memory database it
does nothing.

The queue never makes a writer wait much longer than SQLite's busy timeout would
(``OPTIONS["timeout"]``, 20 s in settings; sqlite3's 5 s without it; 1 s at least). A thread waits
for the threads' lock at most that long, then goes on unqueued: a thread stuck in its transaction
does not hold up the others of its process. A writer that got the ``flock`` only after that long
(queued behind writers that each waited out SQLite's busy timeout, an import holding SQLite's lock,
say) lets go of it at once and goes on unqueued, so such waits do not add up along the queue;
SQLite's lock and busy timeout decide, as without the queue. What is left: ``flock`` has no
timeout, so behind a holder that never lets go (a stopped process), one thread per process waits
until it does; that holder holds SQLite's lock too, so no write could be made meanwhile. (Waiting
in a thread of its own, handing the lock over, would bound that one too, but cost about 60 us of
CPU per contended write.) If the lock file cannot be opened (a read-only folder, another user's
file, a name over the file system's limit), the writes go unqueued (a warning): the queue's file
never fails a request.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
import urllib.parse
from collections.abc import Iterator

from django.db import connections

logger = logging.getLogger(__name__)

_lock = threading.RLock()  # re-entrant: a transaction on another database file may queue inside one
# (database file, process id) -> the lock file's descriptor. Per process: a descriptor inherited
# across fork shares its open file description, and with it the flock, with the parent.
# None: the lock file cannot be opened.
_files: dict[tuple[str, int], int | None] = {}


def _lock_file(database: str) -> int | None:
    key = (database, os.getpid())
    if key not in _files:
        try:
            flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
            _files[key] = os.open(f"{database}.writers", flags, 0o600)
        except OSError as error:
            logger.warning("Writes to %s are not queued: its lock file cannot be opened (%s).", database, error)
            _files[key] = None
    return _files[key]


# The queue's bound is the database's busy timeout, but never under this: a timeout of 0 (SQLite
# failing at once on its lock) would otherwise turn the queue off.
MIN_WAIT = 1.0


def _timeout(alias: str) -> float:
    """The database's busy timeout in seconds (sqlite3's default, 5, when not set)."""
    return float(connections[alias].settings_dict.get("OPTIONS", {}).get("timeout", 5.0))


def _file_database(alias: str) -> str | None:
    connection = connections[alias]
    if connection.vendor != "sqlite" or connection.in_atomic_block:
        return None
    name = str(connection.settings_dict["NAME"])
    if not name or connection.is_in_memory_db():  # type: ignore[attr-defined]  # the SQLite wrapper's
        return None
    if name.startswith("file:"):  # Django opens SQLite with uri=True: the database is the URI's path
        name = urllib.parse.unquote(urllib.parse.urlsplit(name).path)
    return name or None


@contextlib.contextmanager
def queued_write(alias: str) -> Iterator[None]:
    """Around one write transaction on ``alias`` (module docstring)."""
    database = _file_database(alias)
    if database is None:
        yield
        return
    timeout = max(_timeout(alias), MIN_WAIT)
    started = time.monotonic()
    threads = _lock.acquire(timeout=timeout)
    queued = False
    try:
        descriptor = _lock_file(database) if threads else None
        if descriptor is not None:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            queued = time.monotonic() - started < timeout
            if not queued:
                fcntl.flock(descriptor, fcntl.LOCK_UN)  # the next one in the queue waited as long
        if not threads or (descriptor is not None and not queued):
            logger.warning("A write to %s waited over %s s in the queue and goes on unqueued.", database, timeout)
        yield
    finally:
        if queued:
            assert descriptor is not None
            fcntl.flock(descriptor, fcntl.LOCK_UN)
        if threads:
            _lock.release()
