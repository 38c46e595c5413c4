"""Schemathesis over the generated OpenAPI schema, against the app in process (WSGI).

Every operation of ``/api/schema/`` gets generated requests, valid and invalid (positive and
negative generation modes), and each one is sent as every role and as an anonymous caller. Every
answer must be no 5xx, a status code the schema documents for that operation, and a body that
matches the documented schema for that status and content type.

Path parameters are, half of the time, replaced by an object that exists (``tests.fuzz.world``),
so requests reach the views' real work instead of stopping at 404.

The number of examples per operation is ``FUZZ_MAX_EXAMPLES`` (default 10, small enough for CI);
``make fuzz`` runs a longer run (the tests marked ``fuzz`` with a larger number).
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from learning_engine.wsgi import application
from tests.fuzz.world import ROLE_NAMES, World, build_world
from tests.models_registry.serving.factories import reset_serving_state

MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "10"))
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance, content_type_conformance]

pytestmark = [pytest.mark.fuzz, pytest.mark.django_db]


# The case import also takes JSON Lines (documented as a string body): send it as text.
schemathesis.serializer.alias(["application/x-ndjson", "application/jsonl"], "text/plain")

# Loaded at collection (the schema view needs no database). schemathesis' lazy fixture loader
# (``schemathesis.pytest.from_fixture``) does not work with pytest 9 (it sets a private node id).
schema: schemathesis.BaseSchema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)
schema.config.generation.update(max_examples=MAX_EXAMPLES)
if os.environ.get("FUZZ_PATH_REGEX"):  # fuzz some operations only: FUZZ_PATH_REGEX=/cases/
    schema = schema.include(path_regex=os.environ["FUZZ_PATH_REGEX"])


@pytest.fixture
def world(db) -> Iterator[World]:
    reset_serving_state()
    world = build_world()
    # Requests go through Django's real WSGI handler, whose request signals close the database
    # connection after each request: that would end the test's transaction (PostgreSQL). Django's
    # test client disconnects the same receiver while it runs a request (and reconnects it, so
    # only after the world is built).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield world
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
        reset_serving_state()


def known_objects(case: Any, world: World) -> None:
    """Half of the path parameters become an object that exists, chosen from the generated value
    (so a failing example replays exactly; ``@schema.given`` cannot be combined with schema examples)."""
    for name, value in list((case.path_parameters or {}).items()):
        known = world.path_values(case.path, name)
        digest = zlib.crc32(repr(value).encode())
        if known and digest % 2 == 0:
            case.path_parameters[name] = known[(digest // 2) % len(known)]


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=os.environ.get("FUZZ_DERANDOMIZE", "1") == "1",
)
def test_every_operation_answers_as_documented_for_every_role(case, world):
    known_objects(case, world)
    for role in ROLE_NAMES:
        case.call_and_validate(headers=world.headers(role), checks=CHECKS)
