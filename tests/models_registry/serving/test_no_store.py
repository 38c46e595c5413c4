"""Every answer of the predict endpoint carries the no-store headers, errors included
(learning_engine/headers.py sets them directly when the answer has neither)."""

from __future__ import annotations

import pytest

from tests.conftest import jwt_client
from tests.models_registry.serving.test_feedback import PNEUMONIA_FEATURES, PREDICT

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_serving")]

NEVER_STORED = "max-age=0, no-cache, no-store, must-revalidate, private"


def test_every_predict_answer_is_never_stored(settings, monkeypatch, client, version):
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "predict": "3/min"}
    monkeypatch.setattr("learning_engine.throttling._now", lambda: 1_800_000_030.0)
    answers = {
        "no token": jwt_client(None).post(PREDICT, PNEUMONIA_FEATURES, format="json"),
        "bad token": jwt_client(None).post(
            PREDICT, PNEUMONIA_FEATURES, format="json", HTTP_AUTHORIZATION="Bearer x.y.z"
        ),
        "no such page": client.get("/api/v1/nothing/"),
        "not acceptable": client.post(PREDICT, PNEUMONIA_FEATURES, format="json", HTTP_ACCEPT="application/xml"),
        "wrong method": client.get(PREDICT),
        "invalid": client.post(PREDICT, {"age": -5, "sex": "q"}, format="json"),
        "ok": client.post(PREDICT, PNEUMONIA_FEATURES, format="json"),
        "throttled": client.post(PREDICT, PNEUMONIA_FEATURES, format="json"),
    }
    statuses = {name: answer.status_code for name, answer in answers.items()}
    assert {401, 404, 405, 406, 400, 200, 429} <= set(statuses.values()), statuses
    for name, answer in answers.items():
        assert answer.get("Cache-Control") == NEVER_STORED, (name, answer.get("Cache-Control"))
        assert answer.has_header("Expires"), name
