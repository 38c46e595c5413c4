"""The job and dataset lists cost the same number of queries for 5 rows as for 200 (no N+1)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from learning_engine import roles
from tests.conftest import jwt_client
from tests.training.factories import DatasetSnapshotFactory, ModelTypeFactory, TrainingJobFactory
from training.models import ModelType

pytestmark = pytest.mark.django_db

# Each row brings its own creator, and the rows spread over two model types and several states,
# which is what would make a missing select_related (or a deferred column read back) show.
STATES = ("queued", "failed", "running", "completed", "cancelled")


@pytest.fixture
def model_types() -> list[ModelType]:
    return [ModelTypeFactory.create(diagnosis=True), ModelTypeFactory.create(slug="breast-mass", cohort="breast")]


def list_queries(client, url: str) -> tuple[int, int]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, response.json()
    return len(queries), len(response.json()["results"])


def make_jobs(count: int, model_types: list[ModelType]) -> None:
    for index in range(count):
        model_type = model_types[index % 2]
        dataset = DatasetSnapshotFactory.create(model_type=model_type, ready=True) if index % 3 == 0 else None
        TrainingJobFactory.create(model_type=model_type, dataset=dataset, state=STATES[index % len(STATES)])


def make_datasets(count: int, model_types: list[ModelType]) -> None:
    for index in range(count):
        state = ("building", "ready", "failed")[index % 3]
        DatasetSnapshotFactory.create(model_type=model_types[index % 2], state=state)


@pytest.mark.parametrize(
    ("url", "make"),
    [
        ("/api/v1/training/jobs/?page_size=500", make_jobs),
        ("/api/v1/training/jobs/?page_size=500&model_type=diagnosis&ordering=-priority", make_jobs),
        ("/api/v1/datasets/?page_size=500", make_datasets),
        ("/api/v1/datasets/?page_size=500&status=ready&status=failed&status=building", make_datasets),
    ],
)
@pytest.mark.parametrize("role", [roles.ML_ENGINEER, roles.CLINICAL_LEAD])
def test_list_queries_do_not_grow_with_the_number_of_rows(
    make_user, model_types, url: str, make: Callable[[int, list[ModelType]], None], role: str
):
    client = jwt_client(make_user(role))

    make(5, model_types)
    few_queries, few_rows = list_queries(client, url)
    make(195, model_types)
    many_queries, many_rows = list_queries(client, url)

    assert few_rows >= 2  # the filtered variants still return rows
    assert many_rows > few_rows * 30
    assert many_queries == few_queries
