"""Cache invalidation across real processes: an activation in one process reaches a serving one.

A throwaway site (its own SQLite file, media folder and file cache, as two processes of one
machine share them) gets two trained versions. A predictor process (`manage.py shell`) predicts in
a loop through the real endpoint, its routing table warm; another process activates the second
version. Every request the predictor starts after the activation has returned must be answered by
the new version: the activation bumped the serving generation on commit, and the predictor reads
it on each request. That is "within a request", well inside the issue's second, and it is checked
as an ordering (request start versus activation return), not as a timing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.models_registry.serving.factories import PNEUMONIA_FEATURES

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow

SETUP = """
import json
from learning_engine.tokens import RefreshToken
from learning_engine import roles
from tests.factories import user_with_role
from tests.models_registry.serving.factories import served_version

lead = user_with_role(roles.CLINICAL_LEAD)
first = served_version(lead=lead)
second = served_version(model_type=first.model_type, lead=lead, activate=False, seed=1)
client = user_with_role(roles.PREDICTION_CLIENT)
print(json.dumps({
    "first": first.version, "second": second.version, "second_id": second.pk, "lead_id": lead.pk,
    "token": str(RefreshToken.for_user(client).access_token),
}))
"""

PREDICTOR = """
import json, os, time
from rest_framework.test import APIClient

client = APIClient()
client.credentials(HTTP_AUTHORIZATION="Bearer " + os.environ["SERVING_TOKEN"])
body = json.loads(os.environ["SERVING_BODY"])
stop, out = os.environ["SERVING_STOP"], open(os.environ["SERVING_OUT"], "a", buffering=1)
deadline = time.time() + 180
while not os.path.exists(stop) and time.time() < deadline:
    started = time.time()
    response = client.post("/api/v1/model-types/diagnosis/predict/", body, format="json")
    answer = response.json()
    out.write(json.dumps({"started": started, "status": response.status_code,
                          "version": answer.get("model_version")}) + "\\n")
    time.sleep(0.005)
"""

ACTIVATE = """
import json, time
from django.contrib.auth import get_user_model
from models_registry.models import ModelVersion

version = ModelVersion.objects.get(pk={version_id})
version.activate(by=get_user_model().objects.get(pk={lead_id}), reason="Two-process test.")
print(json.dumps({{"returned": time.time()}}))
"""


class Site:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.env = {
            **os.environ,
            "DEBUG": "0",
            "SECURE_SSL_REDIRECT": "0",
            "DATABASE_URL": f"sqlite:///{folder / 'serving.sqlite3'}",
            "MEDIA_ROOT": str(folder / "media"),
            "CACHE_DIR": str(folder / "cache"),  # the file cache both processes share
            "LOG_LEVEL": "WARNING",
        }

    def manage(self, *args: str, timeout: float = 300) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def python(self, code: str) -> dict:
        return json.loads(self.manage("shell", "-c", code).strip().splitlines()[-1])


def read_lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [json.loads(line) for line in lines if line.endswith("}")]


def wait_until(condition, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"Timed out waiting for {what}.")


def test_an_activation_in_one_process_reaches_a_serving_process_on_its_next_request(tmp_path):
    site = Site(tmp_path)
    site.manage("migrate", "--no-input", "-v", "0")
    setup = site.python(SETUP)
    out, stop = tmp_path / "predictions.jsonl", tmp_path / "stop"
    predictor = subprocess.Popen(
        [sys.executable, "manage.py", "shell", "-c", PREDICTOR],
        cwd=ROOT,
        env={
            **site.env,
            "SERVING_TOKEN": setup["token"],
            "SERVING_BODY": json.dumps(PNEUMONIA_FEATURES),
            "SERVING_STOP": str(stop),
            "SERVING_OUT": str(out),
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: len(read_lines(out)) >= 10, timeout=120, what="the predictor to warm up")
        activated = site.python(ACTIVATE.format(version_id=setup["second_id"], lead_id=setup["lead_id"]))
        wait_until(
            lambda: sum(line["started"] > activated["returned"] for line in read_lines(out)) >= 10,
            timeout=120,
            what="predictions after the activation",
        )
    finally:
        stop.touch()
        try:
            _, errors = predictor.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            predictor.kill()
            _, errors = predictor.communicate()
    assert predictor.returncode == 0, errors

    lines = read_lines(out)
    assert {line["status"] for line in lines} == {200}
    before = [line["version"] for line in lines[:10]]
    after = [line["version"] for line in lines if line["started"] > activated["returned"]]
    assert set(before) == {setup["first"]}
    assert len(after) >= 10
    assert set(after) == {setup["second"]}, "a request after the activation was answered by the old version"
