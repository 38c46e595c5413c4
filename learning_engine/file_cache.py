"""The file cache of a site without Redis, with each read checked by one ``stat`` instead of a read.

Without ``REDIS_URL`` the serving generation, the credential versions of stateless tokens and the
shared throttle counters live in Django's ``FileBasedCache``: every process sees every change, but
each ``get`` opens, reads and unpickles a file. A warm predict request made three such reads (the
HTTP benchmark's profile: about a sixth of the request's CPU time).

``FileCache`` keeps, per process, the bytes of each entry it read with the file's identity (inode,
size, modification and change times, from ``fstat`` of the file it read). A later ``get`` that
finds the same identity with one ``stat`` unpickles the kept bytes. A write by any process
replaces the file (a new inode: ``FileBasedCache.set`` writes a temporary file and renames it),
and a deleted file is a miss, so a change is seen at the next read. Because a file system's times
may be coarse and an inode number may be reused, an identity is trusted for ``TRUST_SECONDS`` at
most: after that the file is read again, whatever ``stat`` says. Expiry is checked on every read,
kept or not. Nothing here changes what the cache holds on disk.
"""

from __future__ import annotations

import os
import pickle
import time
import zlib
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.filebased import FileBasedCache

# How long a kept entry may be served on an unchanged ``stat`` before the file is read again.
TRUST_SECONDS = 1.0
# Kept entries per cache and process; past it the kept entries are dropped (and read again).
MAX_KEPT = 4096
# Larger values (a cached model comparison, say) are read from their file each time, as by Django.
MAX_KEPT_BYTES = 64 * 1024

_Identity = tuple[int, int, int, int]


def _identity(status: os.stat_result) -> _Identity:
    return (status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)


class FileCache(FileBasedCache):
    """``FileBasedCache`` whose reads of unchanged entries cost a ``stat`` (module docstring)."""

    def __init__(self, dir: str, params: dict[str, Any]) -> None:
        super().__init__(dir, params)
        # file name -> (identity, expiry or None, pickled value, monotonic time it was read)
        self._kept: dict[str, tuple[_Identity, float | None, bytes, float]] = {}
        self._names: dict[tuple[Any, int | None], str] = {}

    def _file_of(self, key: Any, version: int | None) -> str:
        # The file of a key is its md5 under this cache's folder: worked out once per key.
        found = self._names.get((key, version))
        if found is None:
            found = str(self._key_to_file(key, version))  # type: ignore[attr-defined]  # FileBasedCache's, not in its stubs
            if len(self._names) >= MAX_KEPT:
                self._names.clear()
            self._names[key, version] = found
        return found

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        name = self._file_of(key, version)
        try:
            status = os.stat(name)
        except FileNotFoundError:
            self._kept.pop(name, None)
            return default
        kept = self._kept.get(name)
        if (
            kept is not None
            and kept[0] == _identity(status)
            and time.monotonic() - kept[3] < TRUST_SECONDS
            and (kept[1] is None or kept[1] >= time.time())
        ):
            return pickle.loads(kept[2])  # noqa: S301 -- bytes this cache wrote, as FileBasedCache reads them
        return self._read(name, default)

    def _read(self, name: str, default: Any) -> Any:
        try:
            with open(name, "rb") as file:
                identity = _identity(os.fstat(file.fileno()))
                expiry = pickle.load(file)  # noqa: S301 -- as FileBasedCache._is_expired
                if expiry is not None and expiry < time.time():
                    file.close()
                    self._delete(name)  # type: ignore[attr-defined]  # FileBasedCache's, not in its stubs
                    self._kept.pop(name, None)
                    return default
                value = zlib.decompress(file.read())
        except FileNotFoundError:
            self._kept.pop(name, None)
            return default
        if len(value) <= MAX_KEPT_BYTES:
            if len(self._kept) >= MAX_KEPT:
                self._kept.clear()
            self._kept[name] = (identity, expiry, value, time.monotonic())
        return pickle.loads(value)  # noqa: S301

    def set(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> None:
        self._kept.pop(self._file_of(key, version), None)
        super().set(key, value, timeout, version)

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        self._kept.pop(self._file_of(key, version), None)
        return bool(super().touch(key, timeout, version))

    def delete(self, key: Any, version: int | None = None) -> bool:
        self._kept.pop(self._file_of(key, version), None)
        return bool(super().delete(key, version))

    def clear(self) -> None:
        self._kept.clear()
        super().clear()
