"""Production defaults of settings.py (issue 16): persistent connections, where caches live."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json
from learning_engine import settings as s
db = s.DATABASES["default"]
print(json.dumps({
    "conn_max_age": db["CONN_MAX_AGE"],
    "health_checks": db["CONN_HEALTH_CHECKS"],
    "caches": {alias: c["BACKEND"].rsplit(".", 1)[-1] for alias, c in s.CACHES.items()},
    "local_scopes": sorted(s.THROTTLE_LOCAL_SCOPES),
}))
"""


def settings_with(**env: str) -> dict:
    """settings.py as a process with this environment (and no .env) would load it."""
    base = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "REDIS_URL", "DATABASE_CONN_MAX_AGE"}}
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={**base, "ENV_FILE": "", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout)


def test_production_keeps_database_connections_with_health_checks():
    production = settings_with(DEBUG="0")
    assert production["conn_max_age"] == 600
    assert production["health_checks"] is True


@pytest.mark.parametrize(("env", "age"), [({"DEBUG": "1"}, 0), ({"DEBUG": "0", "DATABASE_CONN_MAX_AGE": "0"}, 0)])
def test_development_and_an_explicit_zero_close_connections_after_each_request(env, age):
    assert settings_with(**env)["conn_max_age"] == age


def test_with_redis_the_generation_and_every_throttle_counter_are_shared_in_redis():
    loaded = settings_with(DEBUG="0", REDIS_URL="redis://127.0.0.1:6379/9")
    assert loaded["caches"] == {"default": "RedisCache", "throttle": "RedisCache"}
    assert loaded["local_scopes"] == []


def test_without_redis_the_generation_is_shared_and_only_busy_throttles_are_per_process():
    loaded = settings_with(DEBUG="0")
    # The generation must be the same for every web process of the machine: never in memory. The
    # file cache's reads of an unchanged entry cost a stat (learning_engine/file_cache.py).
    assert loaded["caches"]["default"] == "FileCache"
    assert loaded["caches"]["throttle"] == "FileBasedCache"
    assert loaded["caches"]["throttle_local"] == "LocMemCache"
    # The scopes that guard against attacks count across processes.
    assert loaded["local_scopes"] == ["feedback", "predict"]
