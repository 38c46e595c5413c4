"""Limits every operation honours, proven at the HTTP boundary: body size (413), batch sizes, page
size, string lengths, numeric ranges, JSON nesting depth, non-UTF-8 and non-JSON bodies (400 or
415, always with a JSON ``code``), and never a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as settings_
from hypothesis import strategies as st

from learning_engine.parsers import raw_json_depth
from tests.cases.factories import CaseFactory, record_dict
from tests.conftest import jwt_client
from tests.models_registry.serving.factories import PNEUMONIA_FEATURES, reset_serving_state, served_version
from tests.training.factories import TrainingJobFactory

pytestmark = pytest.mark.django_db

CASES = "/api/v1/cases/"
JOBS = "/api/v1/training/jobs/"


def refused(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body = response.json()
    assert isinstance(body.get("code"), str), body
    if code is not None:
        assert body["code"] == code, body
    return body


@pytest.fixture
def clinician_client(clinician):
    return jwt_client(clinician)


@pytest.fixture
def engineer_client(engineer):
    return jwt_client(engineer)


@pytest.fixture
def served() -> Iterator[Any]:
    reset_serving_state()
    yield served_version()
    reset_serving_state()


# --- Body size ------------------------------------------------------------------------------------


def test_a_body_over_the_default_limit_is_413_before_it_is_read(clinician_client, settings):
    settings.MAX_REQUEST_BODY_BYTES = 2000
    body = json.dumps(record_dict(note="x" * 3000))

    body_json = refused(clinician_client.post(CASES, body, content_type="application/json"), 413, "payload_too_large")

    assert body_json["limit"] == 2000


def test_the_import_and_batch_predict_have_their_own_larger_limits(clinician_client, settings, served):
    settings.MAX_REQUEST_BODY_BYTES = 1000
    settings.MAX_IMPORT_BODY_BYTES = 5000
    settings.MAX_PREDICT_BODY_BYTES = 5000
    lines = "\n".join(json.dumps(record_dict()) for _ in range(2))  # ~1.5 kB: over the default only
    batch = json.dumps({"records": [PNEUMONIA_FEATURES] * 8})
    assert 1000 < len(lines) < 5000
    assert 1000 < len(batch) < 5000
    batch_url = f"/api/v1/model-types/{served.model_type.slug}/predict/batch/"

    assert clinician_client.post(f"{CASES}import/", lines, content_type="application/x-ndjson").status_code == 200
    assert clinician_client.post(batch_url, batch, content_type="application/json").status_code == 200
    refused(clinician_client.post(f"{CASES}import/", "x" * 6000, content_type="application/x-ndjson"), 413)
    refused(clinician_client.post(batch_url, "x" * 6000, content_type="application/json"), 413)
    single_url = f"/api/v1/model-types/{served.model_type.slug}/predict/"
    refused(clinician_client.post(single_url, batch, content_type="application/json"), 413)


@pytest.mark.parametrize("length", ["abc", "-5", "1e3"])
def test_an_invalid_content_length_is_400(clinician_client, length):
    response = clinician_client.post(CASES, "{}", content_type="application/json", CONTENT_LENGTH=length)

    refused(response, 400, "bad_request")


# --- Batch sizes ----------------------------------------------------------------------------------


def test_a_predict_batch_over_max_predict_batch_is_refused_whole(clinician_client, settings, served):
    settings.MAX_PREDICT_BATCH = 3
    url = f"/api/v1/model-types/{served.model_type.slug}/predict/batch/"

    assert clinician_client.post(url, {"records": [PNEUMONIA_FEATURES] * 3}, format="json").status_code == 200
    body = refused(clinician_client.post(url, {"records": [PNEUMONIA_FEATURES] * 4}, format="json"), 400)

    assert body["code"] == "batch_too_large"
    assert body["limit"] == 3
    refused(clinician_client.post(url, {"records": []}, format="json"), 400, "empty_batch")


def test_an_import_over_max_import_records_is_refused_before_anything_is_written(clinician_client, settings):
    from cases.models import Case

    settings.MAX_IMPORT_RECORDS = 2

    refused(clinician_client.post(f"{CASES}import/", [record_dict() for _ in range(3)], format="json"), 400)
    lines = "\n".join(json.dumps(record_dict()) for _ in range(3))
    body = refused(clinician_client.post(f"{CASES}import/", lines, content_type="application/x-ndjson"), 400)

    assert body["code"] == "too_many_records"
    assert not Case.objects.exists()


# --- Page size ------------------------------------------------------------------------------------


def test_the_page_size_is_capped_and_a_bad_page_is_a_json_404(clinician_client, engineer_client, settings):
    settings.MAX_PAGE_SIZE = 2
    CaseFactory.create_batch(3)
    TrainingJobFactory.create_batch(3)

    for client, url in ((clinician_client, CASES), (engineer_client, JOBS)):
        page = client.get(f"{url}?page_size=1000000").json()
        assert page["count"] == 3
        assert len(page["results"]) == 2
        assert client.get(f"{url}?page_size=abc").status_code == 200  # the default size
        refused(client.get(f"{url}?page=abc"), 404, "not_found")
        refused(client.get(f"{url}?page=99"), 404, "not_found")


# --- String lengths -------------------------------------------------------------------------------


def test_overlong_strings_are_400_by_field(clinician_client, engineer_client, clinician):
    submitted = CaseFactory.create()
    queued = TrainingJobFactory.create()

    too_long_id = refused(clinician_client.post(CASES, record_dict(external_id="e" * 201), format="json"), 400)
    too_long_note = refused(
        clinician_client.post(f"{CASES}{submitted.pk}/approve/", {"note": "n" * 10_001}, format="json"), 400
    )
    too_long_reason = refused(
        engineer_client.post(f"{JOBS}{queued.pk}/cancel/", {"reason": "r" * 2001}, format="json"), 400
    )

    assert "external_id" in json.dumps(too_long_id["errors"])
    assert "note" in too_long_note["errors"]
    assert "reason" in too_long_reason["errors"]
    submitted.refresh_from_db()
    queued.refresh_from_db()
    assert (submitted.status, queued.status) == ("submitted", "queued")


# --- Numeric ranges -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"priority": 2**40}, "invalid"),  # a number JSON may hold, beyond the field's range
        ({"priority": 10**30}, "invalid_number"),  # beyond any integer column: the parser refuses it
        ({"priority": -(10**30)}, "invalid_number"),
        ({"epochs": -1}, "invalid_hyperparameters"),
        ({"epochs": 10**12}, "invalid_hyperparameters"),
        ({"max_attempts": 0}, "invalid"),
    ],
)
def test_numbers_out_of_range_are_400(engineer_client, body, code):
    from tests.training.factories import ModelTypeFactory

    response = engineer_client.post(
        JOBS, {"model_type": ModelTypeFactory.create(diagnosis=True).slug, **body}, format="json"
    )

    refused(response, 400, code)


@pytest.mark.parametrize("number", [b"1e400", b"-1e400", b"NaN", b"Infinity"])
def test_non_finite_numbers_are_refused(clinician_client, served, number):
    url = f"/api/v1/model-types/{served.model_type.slug}/predict/"
    body = json.dumps({**PNEUMONIA_FEATURES, "findings": {"temperature_c": "NUMBER"}}).encode()

    response = clinician_client.post(url, body.replace(b'"NUMBER"', number), content_type="application/json")

    refused(response, 400)


# --- JSON depth -----------------------------------------------------------------------------------


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("url", [CASES, f"{CASES}import/", JOBS, "/api/v1/predictions/1/feedback/"])
def test_a_body_nested_deeper_than_max_json_depth_is_400_anywhere(clinician, engineer, settings, url):
    settings.MAX_JSON_DEPTH = 8
    client = jwt_client(engineer if url == JOBS else clinician)

    response = client.post(url, json.dumps({"extra": json.loads(nested(9))}), content_type="application/json")

    body = refused(response, 400, "parse_error")
    assert "8" in body["detail"]


def test_a_body_too_deep_for_the_json_parser_itself_is_400(clinician_client, settings):
    settings.MAX_JSON_DEPTH = 10**9  # past the pre-check: Python's parser itself gives up
    response = clinician_client.post(CASES, nested(100_000), content_type="application/json")

    refused(response, 400, "parse_error")


def json_depth_exceeds(value: Any, limit: int) -> bool:
    """The oracle: whether a parsed value nests objects and arrays more than ``limit`` deep."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def test_the_depth_check_counts_objects_and_arrays():
    assert not json_depth_exceeds({"a": [{"b": 1}]}, 3)
    assert json_depth_exceeds({"a": [{"b": []}]}, 3)
    assert not json_depth_exceeds([1, "x", None], 1)


@pytest.mark.parametrize(
    "value",
    [
        {"a": [{"b": 1}]},
        {"a": [{"b": []}]},
        [1, "x", None],
        {"note": '[[[[{{{{ brackets in a string ]]]] \\" still a string [[['},
        {'k"[': ["]\\", {"x": "\\\\["}]},
        [],
        "plain",
    ],
)
def test_the_raw_depth_of_the_bytes_matches_the_parsed_value(value):
    body = json.dumps(value).encode()
    depth = raw_json_depth(body)
    assert not json_depth_exceeds(value, depth) if depth else not isinstance(value, dict | list)
    if depth:
        assert json_depth_exceeds(value, depth - 1)


# --- Encodings and media types --------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        '{"note": "café"}'.encode("latin-1"),
        b"\xff\xfe{\x00}\x00",
        b'{"external_id": "\xed\xa0\x80"}',  # a UTF-8-encoded surrogate
        b"not json",
        b"{'single': 'quotes'}",
        b"",
    ],
)
def test_non_utf8_or_non_json_bodies_are_400_with_a_code(clinician_client, body):
    response = clinician_client.post(CASES, body, content_type="application/json")

    refused(response, 400)


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "application/x-www-form-urlencoded"])
def test_a_media_type_the_endpoint_does_not_parse_is_415(clinician_client, content_type):
    response = clinician_client.post(CASES, b"a=b", content_type=content_type)

    refused(response, 415, "unsupported_media_type")


def test_an_import_in_json_lines_with_invalid_utf8_reports_the_line(clinician_client):
    lines = json.dumps(record_dict()).encode() + b"\n" + '{"note": "café"}'.encode("latin-1")

    response = clinician_client.post(f"{CASES}import/", lines, content_type="application/x-ndjson")

    report = response.json()
    assert response.status_code == 200
    assert report["created"] == 1
    assert report["errors"][0]["line"] == 2


_JSON_TEXT = st.text(alphabet=st.sampled_from(list('ab"\\[]{}é \n')), max_size=12)
_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | _JSON_TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_JSON_TEXT, children, max_size=3),
    max_leaves=12,
)


@settings_(max_examples=300, deadline=None)
@given(value=_JSON_VALUES, ascii_only=st.booleans())
def test_the_raw_depth_equals_the_parsed_depth_for_any_json(value, ascii_only):
    depth = raw_json_depth(json.dumps(value, ensure_ascii=ascii_only).encode())
    if isinstance(value, dict | list):
        assert not json_depth_exceeds(value, depth)
        assert json_depth_exceeds(value, depth - 1)
    else:
        assert depth == 0
