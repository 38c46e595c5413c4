"""The OpenAPI schema as Swagger UI and client generators read it (issue 12, parts 7 and 9)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from drf_spectacular.generators import SchemaGenerator

from learning_engine.openapi import OPERATION_IDS
from learning_engine.openapi_tags import TAGS

DICTIONARIES = Path(__file__).resolve().parents[2] / "cases" / "dictionaries"
DEMO_COHORTS = ("breast-mass", "respiratory")
# Bodies that are not JSON on purpose: a model artifact upload, and JSON Lines for an import.
NOT_JSON_ONLY = {
    ("POST", "/api/v1/model-types/{slug}/versions/upload/"),
    ("POST", "/api/v1/cases/import/"),
    # FHIR: the import takes Bundles and NDJSON, predict a FHIR Parameters resource beside the JSON record.
    ("POST", "/api/v1/fhir/"),
    ("POST", "/api/v1/model-types/{slug}/predict/"),
}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return SchemaGenerator().get_schema(request=None, public=True)


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    ]


def outside_code_spans(markdown: str) -> str:
    return re.sub(r"`[^`]*`", "", markdown)


def test_no_angle_brackets_outside_code_spans_where_swagger_ui_renders_markdown(schema):
    # Swagger UI renders descriptions as Markdown with HTML: "<access>" outside a code span is
    # taken as a tag and vanishes ("Authorization: Bearer ").
    texts = [schema["info"]["description"]]
    texts += [scheme.get("description", "") for scheme in schema["components"]["securitySchemes"].values()]
    texts += [tag["description"] for tag in schema["tags"]]
    for text in texts:
        assert not re.search(r"<[A-Za-z/]", outside_code_spans(text)), text
    assert "`Authorization: Bearer <access>`" in schema["info"]["description"]


def test_one_documented_scheme_the_bearer_jwt_explained_and_cds_hooks_its_own(schema):
    schemes = schema["components"]["securitySchemes"]
    assert sorted(schemes) == ["cdsHooksJwt", "jwtAuth"]
    assert schemes["jwtAuth"]["scheme"] == "bearer"
    assert "/api/v1/auth/token/" in schemes["jwtAuth"]["description"]
    assert schemes["cdsHooksJwt"]["scheme"] == "bearer"
    assert "refused" in schemes["cdsHooksJwt"]["description"]
    for method, path, operation in operations(schema):
        if path.startswith("/cds-services"):
            # The record system's signed JWT only: no API token, no session.
            assert operation["security"] == [{"cdsHooksJwt": []}], (method, path)
        else:
            assert operation.get("security", []) in ([], [{"jwtAuth": []}]), (method, path)
    predict = schema["paths"]["/api/v1/model-types/{slug}/predict/"]["post"]
    assert predict["security"] == [{"jwtAuth": []}]


def test_every_operation_is_grouped_under_one_declared_tag(schema):
    declared = [tag["name"] for tag in TAGS]
    used = {operation["tags"][0] for _, _, operation in operations(schema)}
    for method, path, operation in operations(schema):
        assert len(operation["tags"]) == 1, (method, path)
        assert operation["tags"][0] in declared, (method, path, operation["tags"])
    assert [tag["name"] for tag in schema["tags"]] == [name for name in declared if name in used]
    assert {"auth", "cases", "datasets", "training", "registry", "serving", "A/B tests", "health"} <= used
    tag = {(method, path): operation["tags"][0] for method, path, operation in operations(schema)}
    assert tag[("POST", "/api/v1/model-types/{slug}/predict/")] == "serving"
    assert tag[("POST", "/api/v1/predictions/{id}/feedback/")] == "serving"
    assert tag[("POST", "/api/v1/model-types/{slug}/ab-tests/")] == "A/B tests"
    assert tag[("POST", "/api/v1/model-types/{slug}/versions/{version}/approve/")] == "registry"


def test_operations_are_named_for_what_they_do(schema):
    ids = {(method, path): operation["operationId"] for method, path, operation in operations(schema)}
    assert len(set(ids.values())) == len(ids)
    for key, operation_id in ids.items():
        assert not operation_id.startswith("v1_"), key
        assert not re.search(r"_(create|retrieve|list|update)$", operation_id) or operation_id.startswith(
            ("update_", "partial_update_")
        ), (key, operation_id)
    assert set(OPERATION_IDS) <= set(ids), "OPERATION_IDS names paths the API no longer has"
    assert ids[("POST", "/api/v1/model-types/{slug}/predict/")] == "predict"
    assert ids[("POST", "/api/v1/predictions/{id}/feedback/")] == "give_feedback"
    assert ids[("POST", "/api/v1/training/jobs/")] == "create_training_job"


def test_every_answer_documents_its_body(schema):
    for method, path, operation in operations(schema):
        for status, response in operation["responses"].items():
            if status != "204":
                assert response.get("content"), (method, path, status)
    for path in ("/api/v1/auth/token/", "/api/v1/auth/token/refresh/"):
        body = schema["paths"][path]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert body == {"$ref": "#/components/schemas/TokenPair"}
    pair = schema["components"]["schemas"]["TokenPair"]
    assert set(pair["required"]) == {"access", "refresh"}


def test_bodies_are_json_only_except_an_upload_and_an_import(schema):
    for method, path, operation in operations(schema):
        if "requestBody" in operation and (method, path) not in NOT_JSON_ONLY:
            assert list(operation["requestBody"]["content"]) == ["application/json"], (method, path)


def test_the_predict_example_is_a_breast_mass_record_with_the_dictionarys_findings(schema):
    dictionary = json.loads((DICTIONARIES / "breast-mass.json").read_text())["dictionary"]
    model_inputs = {finding["key"] for finding in dictionary["findings"] if finding.get("used_by_model", True)}
    predict = schema["paths"]["/api/v1/model-types/{slug}/predict/"]["post"]
    examples = predict["requestBody"]["content"]["application/json"]["examples"]
    example = next(example for example in examples.values() if "breast-mass" in example["summary"])
    assert set(example["value"]["findings"]) == model_inputs
    assert not {"age", "sex"} & set(example["value"])  # not inputs of the breast-mass models
    assert len(model_inputs) == 30
    batch = schema["paths"]["/api/v1/model-types/{slug}/predict/batch/"]["post"]
    (batch_example,) = batch["requestBody"]["content"]["application/json"]["examples"].values()
    assert all(set(record["findings"]) == model_inputs for record in batch_example["value"]["records"])
    feedback = schema["paths"]["/api/v1/predictions/{id}/feedback/"]["post"]
    (feedback_example,) = feedback["requestBody"]["content"]["application/json"]["examples"].values()
    assert feedback_example["value"] == {"diagnosis_code": "C50.9"}


def _definition(cohort: str) -> Any:
    from cases.dictionary.definition import parse_definition

    return parse_definition(json.loads((DICTIONARIES / f"{cohort}.json").read_text())["dictionary"])


def test_the_predict_examples_are_records_of_both_demo_cohorts_inside_their_dictionaries(schema):
    from cases.dictionary.validation import check_finding_value

    predict = schema["paths"]["/api/v1/model-types/{slug}/predict/"]["post"]
    examples = predict["requestBody"]["content"]["application/json"]["examples"].values()
    by_cohort = {cohort: [e for e in examples if f"model type {cohort}" in e["summary"]] for cohort in DEMO_COHORTS}
    for cohort, found in by_cohort.items():
        assert len(found) == 1, cohort
        definition, record = _definition(cohort), found[0]["value"]
        assert set(record["findings"]) == set(definition.model_findings), cohort
        for key, value in record["findings"].items():
            assert check_finding_value(definition.finding(key), value) == (None, None), (cohort, key)
        assert set(record["symptoms"]) <= definition.symptom_keys, cohort


def test_the_case_examples_pass_their_cohorts_dictionaries(schema):
    import datetime as dt

    from cases.dictionary.validation import validate_record
    from cases.interchange import parse_record

    create = schema["paths"]["/api/v1/cases/"]["post"]
    examples = list(create["requestBody"]["content"]["application/json"]["examples"].values())
    assert {example["value"]["cohort"] for example in examples} == set(DEMO_COHORTS)
    for example in examples:
        record = parse_record(example["value"])
        result = validate_record(record, _definition(record.cohort), today=dt.date(2026, 12, 7))
        assert not result.errors, (record.cohort, result.errors_json())
        assert not result.quality, (record.cohort, result.quality)


def _schema_of(schema: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    ref = body["content"]["application/json"]["schema"]["$ref"]
    return schema["components"]["schemas"][ref.rsplit("/", 1)[-1]]


def test_the_cds_hooks_endpoints_are_documented_with_their_bodies_and_refusals(schema):
    paths = schema["paths"]
    discovery = paths["/cds-services"]["get"]
    service = _schema_of(schema, discovery["responses"]["200"])
    assert set(service["properties"]) == {"services"}
    call = paths["/cds-services/{service_id}"]["post"]
    assert {"hook", "hookInstance", "context", "prefetch"} <= set(_schema_of(schema, call["requestBody"])["properties"])
    cards = _schema_of(schema, call["responses"]["200"])
    card = schema["components"]["schemas"][cards["properties"]["cards"]["items"]["$ref"].rsplit("/", 1)[-1]]
    assert {"uuid", "summary", "indicator", "source", "links", "overrideReasons"} <= set(card["properties"])
    assert "prefetch_missing" in call["responses"]["412"]["description"]
    assert "unknown_issuer" in call["responses"]["401"]["description"]
    feedback = paths["/cds-services/{service_id}/feedback"]["post"]
    assert set(_schema_of(schema, feedback["requestBody"])["properties"]) == {"feedback"}
    assert {operation["tags"][0] for operation in (discovery, call, feedback)} == {"CDS Hooks"}
