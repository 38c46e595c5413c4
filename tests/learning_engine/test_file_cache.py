"""The file cache of a site without Redis: a read of an unchanged entry costs one stat, and every
change by another process is still seen (learning_engine/file_cache.py)."""

from __future__ import annotations

import builtins

import pytest

from learning_engine import file_cache
from learning_engine.file_cache import FileCache


@pytest.fixture
def folder(tmp_path):
    return str(tmp_path / "cache")


def _cache(folder: str) -> FileCache:
    return FileCache(folder, {})


@pytest.fixture
def opened(monkeypatch):
    """The files ``open``ed through builtins.open, by name."""
    names: list[str] = []
    real = builtins.open

    def counting(name, *args, **kwargs):
        names.append(str(name))
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting)
    return names


def test_an_unchanged_entry_is_read_once(folder, opened):
    writer, reader = _cache(folder), _cache(folder)
    writer.set("generation", 7)
    assert [reader.get("generation") for _ in range(5)] == [7] * 5
    assert sum(name.endswith(".djcache") for name in opened) == 1


def test_a_change_by_another_process_is_seen_at_the_next_read(folder):
    writer, reader = _cache(folder), _cache(folder)
    writer.set("generation", 1)
    assert reader.get("generation") == 1
    for value in range(2, 40):  # sizes and times that may repeat: the inode or the times differ
        writer.set("generation", value)
        assert reader.get("generation") == value


def test_an_entry_deleted_by_another_process_is_a_miss(folder):
    writer, reader = _cache(folder), _cache(folder)
    writer.set("state", (1, "x"))
    assert reader.get("state") == (1, "x")
    writer.delete("state")
    assert reader.get("state", "gone") == "gone"


def test_a_kept_entry_expires_on_time(folder, monkeypatch):
    cache = _cache(folder)
    cache.set("short", "value", timeout=30)
    assert cache.get("short") == "value"
    now = file_cache.time.time()
    monkeypatch.setattr(file_cache.time, "time", lambda: now + 31)
    assert cache.get("short", "expired") == "expired"


def test_a_kept_entry_is_trusted_for_a_second_at_most(folder, opened, monkeypatch):
    cache = _cache(folder)
    cache.set("generation", 3)
    assert cache.get("generation") == 3
    start = file_cache.time.monotonic()
    monkeypatch.setattr(file_cache.time, "monotonic", lambda: start + file_cache.TRUST_SECONDS + 0.01)
    assert cache.get("generation") == 3
    assert sum(name.endswith(".djcache") for name in opened) == 2


def test_a_caller_changing_what_it_got_does_not_change_the_cache(folder):
    cache = _cache(folder)
    cache.set("state", {"roles": ["clinician"]})
    cache.get("state")["roles"].append("superuser")
    assert cache.get("state") == {"roles": ["clinician"]}


def test_the_kept_entries_are_bounded(folder, monkeypatch):
    monkeypatch.setattr(file_cache, "MAX_KEPT", 3)
    cache = _cache(folder)
    for key in range(10):
        cache.set(f"k{key}", key)
        assert cache.get(f"k{key}") == key
    assert len(cache._kept) <= 3


def test_a_large_value_is_read_from_its_file_each_time(folder, opened, monkeypatch):
    monkeypatch.setattr(file_cache, "MAX_KEPT_BYTES", 1000)
    cache = _cache(folder)
    cache.set("small", "x" * 10)
    cache.set("large", "x" * 5000)
    assert [cache.get("small") for _ in range(3)] == ["x" * 10] * 3
    assert [cache.get("large") for _ in range(3)] == ["x" * 5000] * 3
    assert sum(name.endswith(".djcache") for name in opened) == 1 + 3
    assert len(cache._kept) == 1


def test_the_site_without_redis_uses_it():
    from django.conf import settings as django_settings

    from learning_engine import settings

    if "REDIS_URL" in settings.os.environ:  # pragma: no cover (a Redis run configures Redis caches)
        pytest.skip("Redis configured")
    assert settings.CACHES["default"]["BACKEND"] == "learning_engine.file_cache.FileCache"
    assert django_settings.CACHES["default"]["BACKEND"] == "learning_engine.file_cache.FileCache"
