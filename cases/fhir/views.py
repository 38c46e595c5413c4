"""``POST /api/v1/fhir/``: FHIR R4 Bundles and NDJSON bulk exports to cases (``cases.fhir.importing``)."""

from __future__ import annotations

import codecs
import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cases.access_log import AccessLogEntry, record_access
from cases.fhir import importing
from cases.serializers import CaseErrorSerializer
from learning_engine.actors import request_actor
from learning_engine.exceptions import InvalidRequest
from learning_engine.permissions import requires
from learning_engine.roles import PERM_IMPORT_CASES


@dataclass(frozen=True)
class FhirBody:
    raw: bytes
    ndjson: bool


class _FhirParser(BaseParser):
    """The body as bytes: the import reads it entry by entry (a Bundle) or line by line (NDJSON).
    The request body middleware has already bounded its size."""

    ndjson = False

    def parse(  # type: ignore[override]  # DRF takes any object as request.data
        self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> FhirBody:
        encoding = (parser_context or {}).get("encoding") or settings.DEFAULT_CHARSET
        try:
            utf8 = codecs.lookup(encoding).name in {"utf-8", "ascii"}
        except LookupError:
            utf8 = False
        if not utf8:
            raise ParseError("FHIR bodies must be UTF-8.")
        raw = stream.read() if stream is not None else b""
        return FhirBody(raw.removeprefix(codecs.BOM_UTF8), self.ndjson)


class FhirJSONParser(_FhirParser):
    media_type = "application/fhir+json"


class PlainJSONParser(_FhirParser):
    media_type = "application/json"


class FhirNDJSONParser(_FhirParser):
    media_type = "application/fhir+ndjson"
    ndjson = True


class NDJSONParser(_FhirParser):
    media_type = "application/x-ndjson"
    ndjson = True


class FhirImportParamsSerializer(serializers.Serializer):
    source = serializers.RegexField(  # type: ignore[assignment]
        r"^\S+$",
        max_length=100,
        required=False,
        default=importing.DEFAULT_SOURCE,
        help_text="The record system the export comes from: cases are keyed by it and the Encounter id.",
        error_messages={"invalid": "Must not be empty or contain spaces."},
    )
    cohort = serializers.SlugField(
        required=False,
        max_length=100,
        help_text="The cohort of every case; without it each Encounter goes to the cohort whose published "
        "dictionary knows most of its Observations' LOINC codes.",
    )


class FhirImportProblemSerializer(serializers.Serializer):
    file = serializers.IntegerField(required=False, help_text="1-based file of a folder (the command only).")
    entry = serializers.IntegerField(required=False, help_text="0-based index in Bundle.entry.")
    line = serializers.IntegerField(required=False, help_text="1-based NDJSON line.")
    resource_type = serializers.CharField()
    level = serializers.ChoiceField(choices=["error", "warning"])
    code = serializers.CharField()
    field = serializers.CharField()
    message = serializers.CharField()


class FhirImportReportSerializer(serializers.Serializer):
    resources = serializers.IntegerField()
    by_type = serializers.DictField(child=serializers.IntegerField())
    skipped = serializers.DictField(child=serializers.IntegerField())
    encounters = serializers.IntegerField()
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    failed = serializers.IntegerField()
    errors = serializers.IntegerField()  # type: ignore[assignment]  # a count, not the serializer's errors
    warnings = serializers.IntegerField()
    problems = FhirImportProblemSerializer(many=True)
    problems_truncated = serializers.BooleanField()


class FhirImportView(APIView):
    permission_classes = [requires(PERM_IMPORT_CASES)]
    parser_classes = [FhirJSONParser, PlainJSONParser, FhirNDJSONParser, NDJSONParser]
    max_body_bytes = "MAX_IMPORT_BODY_BYTES"

    @extend_schema(
        summary="Import cases from FHIR R4",
        description=(
            "A FHIR R4 Bundle of type collection, transaction or batch (application/fhir+json or "
            "application/json), or NDJSON with one resource a line (application/fhir+ndjson or "
            "application/x-ndjson, as a bulk export writes). One case per Encounter: the Patient gives its "
            "identifiers (the MRN from the identifier typed MR), LOINC-coded Observations its findings in the "
            "dictionary's units, ICD-10 Conditions its diagnosis, SNOMED CT Conditions its symptoms. Other "
            "resource types are counted and skipped. Every problem is reported with its position and never a "
            "value; the other resources still import. Re-importing changes nothing. At most "
            "MAX_IMPORT_BODY_BYTES bytes and MAX_IMPORT_RECORDS encounters. If every encounter fails the answer "
            "is 400 (code 'invalid_records')."
        ),
        parameters=[FhirImportParamsSerializer],
        request={
            "application/fhir+json": OpenApiTypes.OBJECT,
            "application/json": OpenApiTypes.OBJECT,
            "application/fhir+ndjson": OpenApiTypes.STR,
            "application/x-ndjson": OpenApiTypes.STR,
        },
        responses={
            200: FhirImportReportSerializer,
            400: OpenApiResponse(
                CaseErrorSerializer,
                description="Not a Bundle of a type taken, not JSON, an unknown cohort, too many encounters, or "
                "no encounter could be imported (code 'invalid_records', with the report).",
            ),
            401: OpenApiResponse(CaseErrorSerializer, description="Not authenticated."),
            403: OpenApiResponse(CaseErrorSerializer, description="Missing permission (clinicians import)."),
            413: OpenApiResponse(CaseErrorSerializer, description="The body is over MAX_IMPORT_BODY_BYTES."),
        },
        tags=["cases"],
        operation_id="import_fhir",
    )
    def post(self, request: Request) -> Response:
        params = FhirImportParamsSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        body = request.data
        if not isinstance(body, FhirBody) or not body.raw.strip():  # DRF parses no empty body
            raise InvalidRequest("The body is empty.", code="empty_body")
        stream = io.BytesIO(body.raw)
        group = importing.read_ndjson(stream) if body.ndjson else importing.read_bundle(stream)
        seen: list[importing.FhirImportReport] = []
        try:
            report = importing.import_resources(
                [group],
                by=request_actor(request),
                source=params.validated_data["source"],
                cohort=params.validated_data.get("cohort"),
                progress=seen.append,
                max_encounters=int(settings.MAX_IMPORT_RECORDS),
            )
        except importing.ImportRefused as refused:
            raise InvalidRequest(refused.message, code=refused.code) from None
        finally:
            if seen and seen[-1].case_ids:
                record_access(
                    action=AccessLogEntry.Action.IMPORT,
                    case_ids=seen[-1].case_ids,
                    actor=request.user,
                    request=request,
                )
        if report.encounters and report.failed == report.encounters:
            return Response(
                {"code": "invalid_records", "detail": "No encounter could be imported.", "report": report.to_json()},
                status=status.HTTP_400_BAD_REQUEST,
            )
        return Response(report.to_json())
