"""The production server (`make serve`): gunicorn's configuration, the DEBUG refusal, static files."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client, override_settings

from learning_engine import gunicorn_conf, serve

ROOT = Path(__file__).resolve().parents[2]


def test_workers_default_to_twice_the_cores_plus_one_and_web_concurrency_overrides(monkeypatch):
    assert gunicorn_conf.default_workers(2) == 5
    assert gunicorn_conf.default_workers(1) == 3
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    assert importlib.reload(gunicorn_conf).workers == gunicorn_conf.default_workers(gunicorn_conf.cores())
    monkeypatch.setenv("WEB_CONCURRENCY", "7")
    assert importlib.reload(gunicorn_conf).workers == 7
    monkeypatch.setenv("WEB_CONCURRENCY", "lots")
    with pytest.raises(SystemExit, match="WEB_CONCURRENCY must be a whole number"):
        importlib.reload(gunicorn_conf)
    monkeypatch.delenv("WEB_CONCURRENCY")
    importlib.reload(gunicorn_conf)


def test_workers_are_threaded_by_default_and_the_class_and_threads_can_be_set(monkeypatch):
    monkeypatch.delenv("GUNICORN_WORKER_CLASS", raising=False)
    monkeypatch.delenv("GUNICORN_THREADS", raising=False)
    conf = importlib.reload(gunicorn_conf)
    assert (conf.worker_class, conf.threads) == ("gthread", 4)
    monkeypatch.setenv("GUNICORN_WORKER_CLASS", "sync")
    monkeypatch.setenv("GUNICORN_THREADS", "8")
    conf = importlib.reload(gunicorn_conf)
    assert (conf.worker_class, conf.threads) == ("sync", 8)
    monkeypatch.setenv("GUNICORN_WORKER_CLASS", "eventlet")
    with pytest.raises(SystemExit, match="GUNICORN_WORKER_CLASS must be one of gthread, sync"):
        importlib.reload(gunicorn_conf)
    monkeypatch.delenv("GUNICORN_WORKER_CLASS")
    monkeypatch.delenv("GUNICORN_THREADS")
    importlib.reload(gunicorn_conf)


def test_a_worker_outlives_the_artifact_sandbox_and_a_shorter_timeout_stops_the_server(monkeypatch, settings):
    # A worker killed while an upload waits for its sandbox answered nothing, audited nothing and
    # used no upload attempt: a slow artifact could be sent again and again, a worker each time.
    monkeypatch.delenv("GUNICORN_TIMEOUT", raising=False)
    monkeypatch.delenv("ARTIFACT_SANDBOX_TIMEOUT_SECONDS", raising=False)
    conf = importlib.reload(gunicorn_conf)
    assert conf.SANDBOX_TIMEOUT_DEFAULT == settings.ARTIFACT_SANDBOX_TIMEOUT_SECONDS
    assert conf.timeout == settings.ARTIFACT_SANDBOX_TIMEOUT_SECONDS + 15
    monkeypatch.setenv("ARTIFACT_SANDBOX_TIMEOUT_SECONDS", "20")
    assert importlib.reload(gunicorn_conf).timeout == 35
    monkeypatch.setenv("GUNICORN_TIMEOUT", "30")
    assert importlib.reload(gunicorn_conf).timeout == 30
    monkeypatch.setenv("GUNICORN_TIMEOUT", "20")
    with pytest.raises(SystemExit, match="must be longer than ARTIFACT_SANDBOX_TIMEOUT_SECONDS"):
        importlib.reload(gunicorn_conf)
    monkeypatch.delenv("GUNICORN_TIMEOUT")
    monkeypatch.delenv("ARTIFACT_SANDBOX_TIMEOUT_SECONDS")
    importlib.reload(gunicorn_conf)


def test_the_access_log_names_the_path_never_the_request_line_or_query_string():
    fmt = gunicorn_conf.access_log_format
    assert "%(U)s" in fmt
    assert not re.search(r"%\((r|q)\)s", fmt)
    assert gunicorn_conf.accesslog == "-"


def test_gunicorn_loads_the_config_and_the_application():
    # --check-config loads this config file and imports the WSGI application, as `make serve` does.
    command = [*serve.gunicorn_command(), "--check-config"]
    assert Path(command[0]).exists(), "gunicorn is not installed in the virtualenv (requirements.txt)"
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_make_serve_refuses_the_developer_settings_and_says_what_to_set():
    env = {**os.environ, "DEBUG": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "learning_engine.serve"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "DEBUG is on" in result.stderr
    assert "DEBUG=0" in result.stderr


@pytest.mark.parametrize(
    "path",
    [
        "/static/admin/css/base.css",
        "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js",
        "/static/rest_framework/css/bootstrap.min.css",
    ],
)
def test_static_files_are_served_with_debug_off(settings, tmp_path, path):
    assert settings.DEBUG is False
    with override_settings(STATIC_ROOT=tmp_path):
        call_command("collectstatic", interactive=False, verbosity=0)
        client = Client()  # a new handler: WhiteNoise reads STATIC_ROOT when it is built
        response = client.get(path)
        assert response.status_code == 200
        body = b"".join(response.streaming_content)  # type: ignore[attr-defined]
        assert body == (tmp_path / path.removeprefix("/static/")).read_bytes()
        assert "no-store" not in response.get("Cache-Control", "")
