"""A Python client generated from the schema works: the main journeys through it, on a live server.

openapi-python-client (pinned in requirements-dev.txt) is how a hospital's developers would start:
it generates a package from ``/api/schema/``; the test imports it and runs, over real HTTP against
``live_server``: log in for a token, rotate and blacklist the refresh token; an ML engineer creates
a training job and polls it until it completes (the worker's task is run here, as ``db_worker``
would); a clinical lead approves and activates the version it produced; a prediction client
predicts with a real breast-mass record and gives feedback on the prediction.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.core.management import call_command

from models_registry.serving.examples import MALIGNANT_RECORD
from tests.models_registry.serving.factories import reset_serving_state
from training.tasks import run_training_job

pytest.importorskip("openapi_python_client", reason="openapi-python-client is in requirements-dev.txt")

PACKAGE = "engine_api_client"


@pytest.fixture
def client_package(live_server: Any, tmp_path: Path) -> Iterator[Any]:
    """The client generated from the live server's schema, imported as ``engine_api_client``."""
    schema = tmp_path / "schema.json"
    schema.write_bytes(httpx.get(f"{live_server.url}/api/schema/?format=json", timeout=30).content)
    config = tmp_path / "config.yml"
    config.write_text("post_hooks: []\n")  # no formatter run on the generated code
    generated = subprocess.run(
        [
            sys.executable,
            "-m",
            "openapi_python_client",
            "generate",
            "--path",
            str(schema),
            "--meta",
            "none",
            "--config",
            str(config),
            "--output-path",
            str(tmp_path / PACKAGE),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [name for name in sys.modules if name == PACKAGE or name.startswith(PACKAGE + ".")]:
            del sys.modules[name]


@pytest.fixture
def demo(transactional_db: Any, settings: Any) -> Iterator[None]:
    settings.DEBUG = True  # load_demo refuses to run without it
    call_command("load_demo", "--respiratory-cases", "0", verbosity=0)
    settings.DEBUG = False
    reset_serving_state()
    yield
    reset_serving_state()


def part(name: str) -> Any:
    return importlib.import_module(f"{PACKAGE}.{name}")


def log_in(package: Any, url: str, username: str) -> Any:
    """An authenticated client of the generated package, after ``obtain_token``."""
    anonymous = package.Client(base_url=url, raise_on_unexpected_status=True)
    body = part("models").LoginRequest(username=username, password=f"{username}-2026")
    tokens = part("api.auth.obtain_token").sync(client=anonymous, body=body)
    assert isinstance(tokens, part("models").TokenPair), tokens
    return package.AuthenticatedClient(base_url=url, token=tokens.access, raise_on_unexpected_status=True), tokens


def test_the_main_journeys_through_a_generated_client(demo, live_server, client_package):
    models = part("models")
    url = live_server.url

    # Tokens: log in, rotate the refresh token, log out (blacklist), the old one refused.
    engineer, tokens = log_in(client_package, url, "demo-ml-engineer")
    anonymous = client_package.Client(base_url=url)
    rotated = part("api.auth.refresh_token").sync(client=anonymous, body=models.RefreshRequest(refresh=tokens.refresh))
    assert isinstance(rotated, models.TokenPair)
    assert rotated.refresh != tokens.refresh
    blacklist = part("api.auth.blacklist_token")
    assert (
        blacklist.sync_detailed(client=anonymous, body=models.RefreshRequest(refresh=rotated.refresh)).status_code
        == 200
    )
    refused = part("api.auth.refresh_token").sync(client=anonymous, body=models.RefreshRequest(refresh=rotated.refresh))
    assert isinstance(refused, models.Error)
    assert refused.code == "token_not_valid"

    # An ML engineer creates a training job and polls it; the worker's task runs it meanwhile.
    job = part("api.training.create_training_job").sync(
        client=engineer,
        body=models.TrainingJobCreateRequest(
            model_type="breast-mass", algorithm=models.ModelTypeAlgorithmEnum.LOGISTIC_REGRESSION
        ),
    )
    assert isinstance(job, models.TrainingJobDetail), job
    assert job.status == models.TrainingJobStatusEnum.QUEUED
    run_training_job.call(job.id)
    polled = part("api.training.get_training_job").sync(job.id, client=engineer)
    assert polled.status == models.TrainingJobStatusEnum.COMPLETED, polled.error_log
    assert polled.evaluation["accuracy"] > 0.9

    # A clinical lead approves and activates the version the job produced.
    lead, _ = log_in(client_package, url, "demo-clinical-lead")
    versions = part("api.registry.list_versions").sync("breast-mass", client=lead)
    (version,) = [item for item in versions.results if item.job == job.id]
    assert version.approval_status == models.ModelVersionApprovalEnum.PENDING
    approved = part("api.registry.approve_version").sync(
        "breast-mass", version.version, client=lead, body=models.ApprovalRequest(note="Reviewed the evaluation.")
    )
    assert approved.approval_status == models.ModelVersionApprovalEnum.APPROVED, approved
    active = part("api.registry.activate_version").sync(
        "breast-mass", version.version, client=lead, body=models.DeploymentRequest(reason="First breast-mass model.")
    )
    assert active.deployment_status == models.ModelVersionDeploymentEnum.ACTIVE, active

    # A prediction client predicts with a breast-mass record (JSON: the findings are nested) and
    # gives feedback on the prediction.
    hospital, _ = log_in(client_package, url, "demo-prediction-client")
    record = models.PredictRecordRequest.from_dict(MALIGNANT_RECORD)
    answer = part("api.serving.predict").sync("breast-mass", client=hospital, body=record)
    assert isinstance(answer, models.PredictionAnswer), answer
    assert answer.model_version == version.version
    assert answer.diagnosis.code == "C50.9"
    assert answer.probabilities["C50.9"] > 0.5
    feedback = part("api.serving.give_feedback").sync(
        answer.id, client=hospital, body=models.GiveFeedbackRequest(diagnosis_code="C50.9")
    )
    assert isinstance(feedback, models.Feedback), feedback
    assert feedback.correct is True
