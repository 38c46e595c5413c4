"""Monitoring test helpers: predictions through the real batch predict endpoint."""

from __future__ import annotations

from typing import Any

from models_registry.models import Prediction
from tests.conftest import jwt_client

BATCH = "/api/v1/model-types/{slug}/predict/batch/"


def with_subjects(record: dict[str, Any], count: int, prefix: str) -> list[dict[str, Any]]:
    """``count`` copies of ``record``, each with its own subject key."""
    return [{**record, "subject_key": f"{prefix}-{i}"} for i in range(count)]


def predict_batch(user: Any, records: list[dict[str, Any]], slug: str = "diagnosis") -> list[Prediction]:
    response = jwt_client(user).post(BATCH.format(slug=slug), {"records": records}, format="json")
    assert response.status_code == 200, response.json()
    return list(Prediction.objects.filter(pk__in=[answer["id"] for answer in response.json()]).order_by("pk"))
