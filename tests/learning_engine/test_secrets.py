"""Secrets: no key in the source, a developer checkout's .env, published keys refused."""

from __future__ import annotations

import hashlib
import os
import runpy
import stat
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from learning_engine import devenv

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = ROOT / "learning_engine" / "settings.py"
KEY_NAMES = ("SECRET_KEY", "PSEUDONYM_KEY")
# Keys that were in the source at one time or another: each must be refused.
PUBLISHED = {
    "old development SECRET_KEY": "dev-only-secret-key-not-for-production-use-0123456789abcdef",
    "old development PSEUDONYM_KEY": "dev-only-pseudonym-key-not-for-production-0123456789abcdef",
    "old test SECRET_KEY": "test-secret-key-" + "x" * 51,
    "old test PSEUDONYM_KEY": "test-pseudonym-key-" + "y" * 32,
    "old benchmark SECRET_KEY": "bench-only-secret-key-" + "x" * 40,
    "old benchmark PSEUDONYM_KEY": "bench-only-pseudonym-key-" + "y" * 16,
    "old check --deploy test key": "k3y-" + "Zq8#pL0@x" * 8,
}


def fresh() -> str:
    import secrets

    return secrets.token_urlsafe(48)


def load_settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, Any]:
    """Execute settings.py afresh with exactly these keys, DEBUG and ENV_FILE (others unchanged)."""
    for name in (*KEY_NAMES, "DEBUG", "ENV_FILE", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ENV_FILE", env.get("ENV_FILE", ""))
    return runpy.run_path(str(SETTINGS))


def test_the_suite_runs_with_keys_generated_for_this_run_and_no_env_file():
    for name in KEY_NAMES:
        value = getattr(settings, name)
        assert value == os.environ[name]
        assert hashlib.sha256(value.encode()).hexdigest() not in published_digests()
    assert os.environ["ENV_FILE"] == ""
    assert settings.DEBUG is False


def published_digests() -> set[str]:
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["learning-engine"]["published-key-sha256"])


def test_every_published_key_is_in_the_list_once_and_the_list_holds_only_digests():
    digests = [hashlib.sha256(key.encode()).hexdigest() for key in PUBLISHED.values()]
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["learning-engine"]["published-key-sha256"]
    assert set(digests) <= set(listed)
    assert len(listed) == len(set(listed))
    assert all(len(digest) == 64 and set(digest) <= set("0123456789abcdef") for digest in listed)
    # Nothing in the source still holds one of them (this file aside, which spells them out to test them).
    for path in [*ROOT.glob("*.toml"), *ROOT.glob("*/*.py"), *ROOT.glob("*/*/*.py"), *ROOT.glob("*.md")]:
        if path.resolve() == Path(__file__).resolve():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for origin, key in PUBLISHED.items():
            assert key not in text, f"{origin} is still in {path}"


@pytest.mark.parametrize("debug", ["0", "1"])
@pytest.mark.parametrize("name", KEY_NAMES)
@pytest.mark.parametrize("origin", list(PUBLISHED))
def test_a_published_key_is_refused_with_debug_on_or_off(monkeypatch, debug, name, origin):
    keys = {"SECRET_KEY": fresh(), "PSEUDONYM_KEY": fresh(), name: PUBLISHED[origin]}

    with pytest.raises(ImproperlyConfigured, match=f"{name} is a published key"):
        load_settings(monkeypatch, DEBUG=debug, **keys)


def test_fresh_keys_are_accepted(monkeypatch):
    keys = {"SECRET_KEY": fresh(), "PSEUDONYM_KEY": fresh()}
    loaded = load_settings(monkeypatch, DEBUG="0", **keys)
    assert loaded["SECRET_KEY"] == keys["SECRET_KEY"]
    assert loaded["SIMPLE_JWT"]["SIGNING_KEY"] == keys["SECRET_KEY"]
    assert loaded["PSEUDONYM_KEY"] == keys["PSEUDONYM_KEY"]


@pytest.mark.parametrize("name", KEY_NAMES)
def test_a_key_of_few_distinct_characters_is_refused(monkeypatch, name):
    keys = {"SECRET_KEY": fresh(), "PSEUDONYM_KEY": fresh(), name: "ab" * 40}
    with pytest.raises(ImproperlyConfigured, match=f"{name} has fewer than 10 distinct characters"):
        load_settings(monkeypatch, DEBUG="0", **keys)


@pytest.mark.parametrize("name", KEY_NAMES)
def test_debug_without_keys_is_refused_with_a_message_to_run_make_env(monkeypatch, name):
    keys = {"SECRET_KEY": fresh(), "PSEUDONYM_KEY": fresh()}
    del keys[name]
    with pytest.raises(ImproperlyConfigured, match=rf"{name} is not set\. For a developer checkout run `make env`"):
        load_settings(monkeypatch, DEBUG="1", **keys)


def test_the_env_file_fills_in_what_the_environment_does_not_set(monkeypatch, tmp_path):
    env_file = tmp_path / ".env"
    devenv.ensure_env_file(env_file)
    from_file = devenv.dotenv_values(env_file)
    own_secret = fresh()

    loaded = load_settings(monkeypatch, ENV_FILE=str(env_file), SECRET_KEY=own_secret)

    assert loaded["DEBUG"] is True
    assert loaded["PSEUDONYM_KEY"] == from_file["PSEUDONYM_KEY"]
    assert loaded["SECRET_KEY"] == own_secret  # the environment wins over the file


def test_an_env_file_that_is_named_but_missing_is_refused(monkeypatch, tmp_path):
    with pytest.raises(ImproperlyConfigured, match=r"ENV_FILE names .* which is not a file"):
        load_settings(monkeypatch, ENV_FILE=str(tmp_path / "nope.env"), SECRET_KEY=fresh(), PSEUDONYM_KEY=fresh())


def test_make_env_writes_debug_and_fresh_keys_readable_by_the_owner_only(tmp_path):
    first, second = tmp_path / "a.env", tmp_path / "b.env"

    assert devenv.ensure_env_file(first) == ["DEBUG", "SECRET_KEY", "PSEUDONYM_KEY"]
    devenv.ensure_env_file(second)

    values = devenv.dotenv_values(first)
    assert values["DEBUG"] == "1"
    assert len(values["SECRET_KEY"] or "") >= 50
    assert len(values["PSEUDONYM_KEY"] or "") >= 32
    assert values["SECRET_KEY"] != devenv.dotenv_values(second)["SECRET_KEY"]  # per checkout
    assert stat.S_IMODE(first.stat().st_mode) == 0o600


def test_make_env_keeps_what_the_file_has_and_adds_only_what_is_missing(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("DATABASE_URL=postgres://me@localhost/dev\nPSEUDONYM_KEY=kept-pseudonym-key-0123456789abcdefgh")

    assert devenv.ensure_env_file(env_file) == ["DEBUG", "SECRET_KEY"]
    assert devenv.ensure_env_file(env_file) == []

    values = devenv.dotenv_values(env_file)
    assert values["DATABASE_URL"] == "postgres://me@localhost/dev"
    assert values["PSEUDONYM_KEY"] == "kept-pseudonym-key-0123456789abcdefgh"  # a line without "\n" kept whole
    assert values["DEBUG"] == "1"


def test_manage_py_works_as_written_after_make_env(tmp_path):
    env_file = tmp_path / ".env"
    clean = {k: v for k, v in os.environ.items() if k not in {*KEY_NAMES, "DEBUG", "SECURE_SSL_REDIRECT"}}
    env = {**clean, "ENV_FILE": str(env_file), "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    run = {"cwd": ROOT, "env": env, "capture_output": True, "text": True, "timeout": 120, "check": False}

    before = subprocess.run([sys.executable, "manage.py", "check"], **{**run, "env": {**env, "ENV_FILE": ""}})  # type: ignore[call-overload]
    made = subprocess.run([sys.executable, "-m", "learning_engine.devenv", str(env_file)], **run)  # type: ignore[call-overload]
    after = subprocess.run([sys.executable, "manage.py", "check"], **run)  # type: ignore[call-overload]

    assert before.returncode != 0
    assert "SECRET_KEY is not set" in before.stderr
    assert made.returncode == 0, made.stderr
    assert after.returncode == 0, after.stdout + after.stderr


@pytest.mark.parametrize("window", ["-1", str(2**31), "10000001"])
def test_a_degradation_window_no_snapshot_column_can_hold_is_refused_at_start(monkeypatch, window):
    monkeypatch.setenv("MONITORING_DEGRADATION_WINDOW", window)
    with pytest.raises(ImproperlyConfigured, match="MONITORING_DEGRADATION_WINDOW"):
        load_settings(monkeypatch, DEBUG="1", SECRET_KEY=fresh(), PSEUDONYM_KEY=fresh())


def test_the_largest_degradation_window_is_taken(monkeypatch):
    monkeypatch.setenv("MONITORING_DEGRADATION_WINDOW", "10000000")
    assert (
        load_settings(monkeypatch, DEBUG="1", SECRET_KEY=fresh(), PSEUDONYM_KEY=fresh())[
            "MONITORING_DEGRADATION_WINDOW"
        ]
        == 10_000_000
    )
