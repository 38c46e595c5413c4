"""Every numeric input of the API, sent numbers no field takes: never a 500, always a JSON ``code``.

Schemathesis generates numbers within what the schema says; the numbers that broke the API were
outside it: ``10**400`` (``float(n)`` and ``math.isfinite(n)`` raise ``OverflowError``), ``1e309``
(Python reads it as an infinity), ``NaN`` and ``Infinity`` literals. This test walks the OpenAPI
schema for every integer and number in a request body (JSON, form, multipart; nested objects and
arrays too) and every numeric query parameter, and sends each hostile value there as a superuser
(every permission, so the request reaches validation) with path parameters of objects that exist.
A JSON body holding one is refused by the parser: 400 ``invalid_number``, whatever the endpoint.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.conftest import jwt_client
from tests.factories import user_with_role
from tests.fuzz.world import World, build_world
from tests.models_registry.serving.factories import reset_serving_state

pytestmark = [pytest.mark.fuzz, pytest.mark.django_db]

HUGE = "1" + "0" * 400  # 10**400
HOSTILE_JSON = (HUGE, "-" + HUGE, "1e309", "-1e309", "NaN", "Infinity", "-Infinity", "1" + "0" * 5000)
HOSTILE_TEXT = (HUGE, "-" + HUGE, "1e309", "1e400", "NaN", "Infinity", "-inf", "1" + "0" * 5000)
MARK = "__hostile_number__"

# Numbers the schema does not type (a free-form record or object): named here so they are hit too.
UNTYPED = {
    ("post", "/api/v1/model-types/{slug}/predict/"): [["age"]],
    ("post", "/api/v1/model-types/{slug}/predict/batch/"): [["records", "[]", "age"]],
    ("post", "/api/v1/training/jobs/"): [["hyperparameters", "C"], ["hyperparameters", "max_iter"]],
    ("post", "/api/v1/predictions/{id}/feedback/"): [["case", "findings", "*"], ["case", "patient", "weight"]],
    ("patch", "/api/v1/training/jobs/{id}/progress/"): [["metrics", "loss"], ["epoch", "loss"]],
    ("post", "/api/v1/training/jobs/{id}/complete/"): [["metrics", "accuracy"]],
}
# Routes that need an object in one particular state to read their body: the running external job.
RUNNING_EXTERNAL_JOB = ("/api/v1/training/jobs/{id}/progress/", "/api/v1/training/jobs/{id}/complete/")


@pytest.fixture(scope="module")
def schema(django_db_blocker) -> dict[str, Any]:
    with django_db_blocker.unblock():
        response = jwt_client(None).get("/api/schema/?format=json")
    assert response.status_code == 200
    return response.json()


@pytest.fixture
def world(db) -> Iterator[World]:
    reset_serving_state()
    yield build_world()
    reset_serving_state()


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def numeric_paths(schema: dict[str, Any], node: dict[str, Any], path: list[str], depth: int = 0) -> Iterator[list[str]]:
    """Paths to every integer or number in a request schema ("*": any key, "[]": an array item)."""
    if depth > 8:
        return
    node = _resolve(schema, node)
    for key in ("oneOf", "anyOf", "allOf"):
        for sub in node.get(key, []):
            yield from numeric_paths(schema, sub, path, depth + 1)
    kind = node.get("type")
    if kind in ("integer", "number"):
        yield path
    for name, sub in node.get("properties", {}).items():
        yield from numeric_paths(schema, sub, [*path, name], depth + 1)
    if isinstance(node.get("additionalProperties"), dict):
        yield from numeric_paths(schema, node["additionalProperties"], [*path, "*"], depth + 1)
    if kind == "array" and "items" in node:
        yield from numeric_paths(schema, node["items"], [*path, "[]"], depth + 1)


def nest(path: list[str], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if head == "[]":
        return [nest(rest, value)]
    return {("mean_radius" if head == "*" else head): nest(rest, value)}


def operations(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for route, methods in schema["paths"].items():
        for method, operation in methods.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                yield method, route, operation


def fill(route: str, operation: dict[str, Any], world: World) -> str | None:
    """The route with every path parameter set to an object that exists (None if one cannot be)."""
    if route in RUNNING_EXTERNAL_JOB:
        job = next(job for job in world.jobs if job.executor == "external" and job.status == "running")
        return route.replace("{id}", str(job.pk))
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "path":
            known = world.path_values(route, parameter["name"])
            if not known:
                return None
            route = route.replace("{" + parameter["name"] + "}", str(known[0]))
    return route


def assert_refused(response: Any, what: str) -> dict[str, Any]:
    assert response.status_code < 500, f"{what}: {response.status_code}"
    assert response.status_code >= 400 or response.status_code in (200, 201, 202), what
    if response.status_code >= 400:
        body = response.json()
        assert body.get("code"), f"{what}: no code in {body}"
        return body
    return {}


def test_every_numeric_input_answers_a_4xx_with_a_code_for_numbers_no_field_takes(schema, world):
    admin = user_with_role(None, is_superuser=True, is_staff=True)
    client = jwt_client(admin)
    hits = {"json": 0, "form": 0, "query": 0}

    for method, route, operation in operations(schema):
        url = fill(route, operation, world)
        if url is None:
            continue
        content = operation.get("requestBody", {}).get("content", {})
        json_paths = [
            list(path) for path in numeric_paths(schema, content.get("application/json", {}).get("schema", {}), [])
        ]
        json_paths += UNTYPED.get((method, route), []) if "application/json" in content else []
        for path in json_paths:
            for literal in HOSTILE_JSON:
                body = json.dumps(nest(path, MARK)).replace(f'"{MARK}"', literal)
                response = getattr(client, method)(url, body, content_type="application/json")
                what = f"{method.upper()} {route} {'.'.join(path)}={literal[:12]}"
                refused = assert_refused(response, what)
                # Refused: by the parser (400 invalid_number) whenever the view reads the body; a
                # view may refuse the object first (a 404, a 409 for a wrong state).
                assert response.status_code >= 400, what
                if response.status_code == 400:
                    assert refused["code"] == "invalid_number", what
                hits["json"] += 1
        multipart = content.get("multipart/form-data")
        if multipart and "application/json" not in content:
            for path in numeric_paths(schema, multipart.get("schema", {}), []):
                for literal in HOSTILE_TEXT:
                    data: dict[str, Any] = {path[0]: literal}
                    if "upload" in route:
                        data["artifact"] = SimpleUploadedFile("model.skops", b"PK\x05\x06" + b"\0" * 18)
                    response = getattr(client, method)(url, data, format="multipart")
                    assert_refused(response, f"{method.upper()} {route} {path[0]}={literal[:12]} (multipart)")
                    hits["form"] += 1
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "query" and _resolve(schema, parameter["schema"]).get("type") in (
                "integer",
                "number",
            ):
                for literal in HOSTILE_TEXT:
                    response = getattr(client, method)(url, {parameter["name"]: literal})
                    assert_refused(response, f"{method.upper()} {route}?{parameter['name']}={literal[:12]}")
                    hits["query"] += 1

    # The walk reached what broke before (metrics on performance/, age on predict) and much more.
    assert hits["json"] >= 29 * len(HOSTILE_JSON)
    assert hits["form"] >= 1
    assert hits["query"] >= 10 * len(HOSTILE_TEXT)


@pytest.mark.parametrize("literal", ["1" + "0" * 400, "1e309", "NaN", "-Infinity"])
def test_the_reported_overflows_are_400(world, literal):
    engineer = jwt_client(world.users["ml_engineer"])
    slug, version = world.model_type.slug, world.versions[0].version
    performance = engineer.post(
        f"/api/v1/model-types/{slug}/versions/{version}/performance/",
        f'{{"metrics": {{"accuracy": {literal}}}, "test_set_size": 10}}',
        content_type="application/json",
    )
    predict = jwt_client(world.users["prediction_client"]).post(
        f"/api/v1/model-types/{slug}/predict/",
        f'{{"age": {literal}, "findings": {{"mean_radius": 14.2}}}}',
        content_type="application/json",
    )

    for response in (performance, predict):
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_number"


# --- Behind the parser: the fields hold whatever parser a value came through ----------------------


@pytest.mark.parametrize("value", [10**400, -(10**400), float("inf"), float("nan")])
def test_the_fields_refuse_numbers_beyond_float_range_without_overflowing(value):
    from rest_framework import serializers

    from cases.interchange import RecordError
    from learning_engine.exceptions import InvalidRequest
    from models_registry.registry.serializers import MetricsField
    from models_registry.serving.inputs import _age
    from training.algorithms import validate_hyperparameters
    from training.serializers import FiniteFloatField

    with pytest.raises(RecordError):
        _age(value)
    with pytest.raises(serializers.ValidationError):
        MetricsField().to_internal_value({"accuracy": value})
    with pytest.raises(serializers.ValidationError):
        FiniteFloatField().to_internal_value(value)
    with pytest.raises(InvalidRequest):
        validate_hyperparameters("logistic_regression", {"C": value})


def test_the_json_loader_takes_every_number_a_field_can_hold():
    from learning_engine.parsers import MAX_JSON_INTEGER, InvalidNumber, loads

    body = f"[{MAX_JSON_INTEGER}, -{MAX_JSON_INTEGER}, 1.7e308, 0.1, -0]"
    assert loads(body) == [MAX_JSON_INTEGER, -MAX_JSON_INTEGER, 1.7e308, 0.1, 0]
    for literal in (str(MAX_JSON_INTEGER + 1), HUGE, "1e309", "NaN", "Infinity"):
        with pytest.raises(InvalidNumber):
            loads(f'{{"a": [{literal}]}}')
