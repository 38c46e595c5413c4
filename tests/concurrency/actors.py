"""What one concurrent process does: ``python -m tests.concurrency.actors ACTION 'JSON payload'``.

Started by ``Site.actors`` (conftest) with the test database in ``DATABASE_URL``. Each actor sets
Django up, builds its API client, says it is ready (``ACTOR_READY``), waits for the common start
signal (``ACTOR_GO``), then goes through the real HTTP API with the in-process test client (URL
routing, JWT authentication, permissions, the view, the model transition, the exception handler).
It prints one JSON line: what every request answered.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "learning_engine.settings")
    import django

    django.setup()


def _client(token: str) -> Any:
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def _wait_for_the_start() -> None:
    Path(os.environ["ACTOR_READY"]).touch()
    go = Path(os.environ["ACTOR_GO"])
    deadline = time.monotonic() + 300
    while not go.exists():
        if time.monotonic() > deadline:
            raise SystemExit("never started")
        time.sleep(0.01)


def _answer(response: Any) -> list[Any]:
    """[status, code] (code from the JSON body; "not-json" if the body is not JSON)."""
    try:
        code = response.json().get("code", "")
    except ValueError:
        code = "not-json"
    return [response.status_code, code]


def activate(payload: dict[str, Any]) -> dict[str, Any]:
    """``rounds`` requests, mostly activations of a random version of ``labels``, some rollbacks."""
    client = _client(payload["token"])
    rng = random.Random(payload["seed"])
    base = f"/api/v1/model-types/{payload['slug']}"
    _wait_for_the_start()
    answers = []
    for turn in range(payload["rounds"]):
        if rng.random() < payload.get("rollback_share", 0.0):
            response = client.post(f"{base}/rollback/", {"reason": f"Actor {payload['seed']} turn {turn}."})
            answers.append(["rollback", *_answer(response)])
        else:
            label = rng.choice(payload["labels"])
            response = client.post(
                f"{base}/versions/{label}/activate/", {"reason": f"Actor {payload['seed']} turn {turn}."}
            )
            answers.append(["activate", *_answer(response)])
    return {"answers": answers}


def approve(payload: dict[str, Any]) -> dict[str, Any]:
    """Try to approve each case of ``case_ids``, in the order given (the same for every actor)."""
    client = _client(payload["token"])
    _wait_for_the_start()
    answers = []
    for case_id in payload["case_ids"]:
        response = client.post(f"/api/v1/cases/{case_id}/approve/", {"note": "Concurrent review."}, format="json")
        answers.append([case_id, *_answer(response)])
    return {"answers": answers}


def register(payload: dict[str, Any]) -> dict[str, Any]:
    """Register a version for each completed job of ``job_ids`` (what the worker does on completion)."""
    from models_registry.registry.registration import register_completed_job
    from training.models import TrainingJob

    _wait_for_the_start()
    errors = []
    for job_id in payload["job_ids"]:
        try:
            register_completed_job(sender=TrainingJob, job_id=job_id)
        except Exception as exc:  # reported, not raised: the test shows which registrations were lost
            errors.append([job_id, type(exc).__name__, str(exc)])
    return {"errors": errors}


ACTIONS = {"activate": activate, "approve": approve, "register": register}


def main() -> None:
    action, payload = sys.argv[1], json.loads(sys.argv[2])
    _setup()
    result = ACTIONS[action](payload)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
