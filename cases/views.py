"""The case API: /api/v1/cases/ (list, submit, detail, edit, review actions, import, statistics).

Who sees what
-------------
Users with ``cases.view_phi`` (clinicians, superusers) get the whole case: the raw record next
to its de-identified form. Everyone else (ML engineers, clinical leads, ...) gets
``DeidentifiedCaseSerializer`` and nothing more, in lists, detail, errors and the browsable API:

- A case gets its de-identified record when it is approved, so for these users the list and the
  detail hold only approved and retracted cases. Any other case answers 404, exactly like an id
  that does not exist (a 403 would tell them it exists).
- Their querysets defer the raw columns (``RAW_COLUMNS``), so the raw record is not even loaded
  for their requests.
- Filters that narrow by an identifier (``search`` on the external id, exact encounter dates)
  and ordering by them are refused with 400 (``cases.filters``).
- Statistics are aggregates over *all* cases (counts only, no rows), guarded by their own
  permission, ``cases.view_case_statistics``.

Every answer that carries a raw case to a PHI user (list, detail, and the case returned by submit,
edit and the review actions) and every import writes one entry of the PHI access log
(``cases.access_log``): who, when, from which address, which case ids.

There is no delete: a wrong case is rejected or retracted, and its audit trail stays.
Views stay thin: validate the input, call the model's transition, serialize the result. Domain
errors (wrong state, four-eyes rule) become 409 in ``learning_engine.exceptions``.
"""

from __future__ import annotations

import codecs
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import IntegrityError
from django.db.models import QuerySet
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import BaseParser
from rest_framework.request import Request
from rest_framework.response import Response

from cases.access_log import AccessLogEntry, record_access
from cases.api_examples import CASE_EXAMPLES
from cases.filters import CaseFilter, CaseOrderingFilter, CaseSearchFilter
from cases.importing import ImportReport, import_lines, import_objects
from cases.interchange import CaseRecord
from cases.models import DEIDENTIFIED_STATES, Case, DataDictionary
from cases.serializers import (
    CaseApproveSerializer,
    CaseErrorSerializer,
    CaseImportParamsSerializer,
    CaseImportReportSerializer,
    CaseRecordSerializer,
    CaseRejectSerializer,
    CaseRetractSerializer,
    CaseStatisticsSerializer,
    case_response,
    case_serializer_for,
)
from cases.statistics import compute_statistics
from learning_engine.actors import request_actor
from learning_engine.exceptions import DomainError
from learning_engine.parsers import SafeJSONParser
from learning_engine.permissions import ActionPermission, can_view_phi
from learning_engine.roles import PERM_IMPORT_CASES, PERM_REVIEW_CASE, PERM_VIEW_STATISTICS

if TYPE_CHECKING:
    from learning_engine.actors import Actor

# Columns that hold the raw record or identifiers: never loaded for users without the PHI permission.
RAW_COLUMNS = (
    "patient",
    "note",
    "extra",
    "findings",
    "symptoms",
    "external_id",
    "encounter_date",
    "diagnosis_label",
    "review_note",
    "residual_keys",  # folded identifiers: PHI like ``patient``
)


# --- Parsers ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JSONLinesBody:
    """A JSON Lines body split into raw lines; ``cases.importing`` decodes and parses each."""

    lines: list[bytes]

    @property
    def record_count(self) -> int:
        return sum(1 for line in self.lines if line.strip())


class JSONLinesParser(BaseParser):
    """JSON Lines (one record per line, UTF-8). The whole body is read: the middleware bounds it."""

    media_type = "application/x-ndjson"

    def parse(  # type: ignore[override]  # DRF takes any object as request.data
        self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> JSONLinesBody:
        encoding = (parser_context or {}).get("encoding") or settings.DEFAULT_CHARSET
        try:
            utf8 = codecs.lookup(encoding).name in {"utf-8", "ascii"}
        except LookupError:
            utf8 = False
        if not utf8:
            raise ParseError("JSON Lines bodies must be UTF-8.")
        raw = stream.read() if stream is not None else b""
        # A byte-order mark would make line 1 invalid JSON; editors on Windows still write one.
        return JSONLinesBody(raw.removeprefix(codecs.BOM_UTF8).split(b"\n"))


class JSONLParser(JSONLinesParser):
    media_type = "application/jsonl"


class PlainTextLinesParser(JSONLinesParser):
    media_type = "text/plain"


# --- Errors ----------------------------------------------------------------------------------------


class ImportRefused(APIException):
    """An import body refused as a whole, before anything is written."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "The body must be a JSON array of case records, or JSON Lines."
    default_code = "invalid_body"


def submit_case(record: CaseRecord, *, by: Actor, dictionary: DataDictionary | None = None) -> Case:
    """``Case.submit``, with a clash on (source, external_id) reported as a 409, not a 500."""
    try:
        return Case.submit(record, by=by, dictionary=dictionary)
    except IntegrityError:
        existing = (
            Case.objects.filter(source=record.source, external_id=record.external_id)
            .values_list("pk", flat=True)
            .first()
        )
        if existing is None:
            raise
        raise DomainError(
            f"Case {existing} has the same source and external id; edit that case instead.",
            code="duplicate_case",
            case_id=existing,
        ) from None


# The access-log action of each viewset action whose answer carries a case.
LOGGED_ACTIONS = {
    "list": AccessLogEntry.Action.LIST,
    "retrieve": AccessLogEntry.Action.VIEW,
    "create": AccessLogEntry.Action.SUBMIT,
    "update": AccessLogEntry.Action.EDIT,
    "partial_update": AccessLogEntry.Action.EDIT,
    "approve": AccessLogEntry.Action.APPROVE,
    "reject": AccessLogEntry.Action.REJECT,
    "retract": AccessLogEntry.Action.RETRACT,
}


# --- The viewset -----------------------------------------------------------------------------------

ERRORS = {
    400: OpenApiResponse(CaseErrorSerializer, description="Invalid input (code 'invalid', 'parse_error', ...)."),
    401: OpenApiResponse(CaseErrorSerializer, description="Not authenticated."),
    403: OpenApiResponse(CaseErrorSerializer, description="Missing permission."),
}
NOT_FOUND = {404: OpenApiResponse(CaseErrorSerializer, description="No such case (or not visible to you).")}
CONFLICT = {
    409: OpenApiResponse(
        CaseErrorSerializer,
        description="Wrong state for this action (code 'invalid_transition'), or the reviewer is the "
        "submitter or last editor (code 'four_eyes_violation').",
    )
}


@extend_schema_view(
    list=extend_schema(
        summary="List cases",
        description="De-identified fields only without the PHI permission (and then only approved or retracted cases).",
        responses={200: case_response(many=True), **ERRORS},
    ),
    retrieve=extend_schema(summary="One case", responses={200: case_response(), **ERRORS, **NOT_FOUND}),
    create=extend_schema(
        summary="Submit a case",
        description="The body is one interchange record; the case starts as 'submitted'.",
        request=CaseRecordSerializer,
        examples=CASE_EXAMPLES,
        responses={
            201: case_response(),
            **ERRORS,
            409: OpenApiResponse(CaseErrorSerializer, description="A case with this source and external id exists."),
        },
    ),
    update=extend_schema(
        summary="Replace a case's record",
        description="Only while submitted or rejected; an edit of a rejected case resubmits it.",
        request=CaseRecordSerializer,
        responses={200: case_response(), **ERRORS, **NOT_FOUND, **CONFLICT},
    ),
    partial_update=extend_schema(
        summary="Edit a case's record",
        description="JSON Merge Patch (RFC 7396) of the interchange record. Only while submitted or rejected; "
        "an edit of a rejected case resubmits it.",
        request=CaseRecordSerializer,
        responses={200: case_response(), **ERRORS, **NOT_FOUND, **CONFLICT},
    ),
)
class CaseViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    permission_classes = [ActionPermission]
    action_permissions = {
        "list": ["cases.view_case"],
        "retrieve": ["cases.view_case"],
        "create": ["cases.add_case"],
        "update": ["cases.change_case"],
        "partial_update": ["cases.change_case"],
        "approve": [PERM_REVIEW_CASE],
        "reject": [PERM_REVIEW_CASE],
        "retract": [PERM_REVIEW_CASE],
        "import_cases": [PERM_IMPORT_CASES],
        "statistics": [PERM_VIEW_STATISTICS],
    }
    parser_classes = [SafeJSONParser]
    filter_backends = [DjangoFilterBackend, CaseSearchFilter, CaseOrderingFilter]
    filterset_class = CaseFilter
    search_fields = ["external_id"]
    ordering_fields = [
        "created_at",
        "updated_at",
        "reviewed_at",
        "quality_score",
        "status",
        "cohort",
        "diagnosis_code",
        "id",
        "external_id",
        "encounter_date",
    ]
    ordering = ["-created_at", "-id"]
    lookup_value_regex = r"\d+"
    # The request body bound read by learning_engine.middleware; the import action raises it.
    max_body_bytes: int | str | None = None

    def get_queryset(self) -> QuerySet[Case]:
        if can_view_phi(self.request.user):
            return Case.objects.for_list()
        if self.action == "statistics":
            return Case.objects.all()  # aggregates only; see the module docstring
        return Case.objects.for_list().defer(*RAW_COLUMNS).filter(status__in=DEIDENTIFIED_STATES)

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        # Actions with a body of their own (or, for statistics, a documented answer); everything
        # else answers with a case as the caller may see it.
        by_action: dict[str | None, type[serializers.BaseSerializer]] = {
            "create": CaseRecordSerializer,
            "update": CaseRecordSerializer,
            "partial_update": CaseRecordSerializer,
            "import_cases": CaseRecordSerializer,
            "approve": CaseApproveSerializer,
            "reject": CaseRejectSerializer,
            "retract": CaseRetractSerializer,
            "statistics": CaseStatisticsSerializer,
        }
        return by_action.get(self.action) or case_serializer_for(self.request.user)

    def get_serializer(self, *args: Any, **kwargs: Any) -> serializers.BaseSerializer:
        if self.action == "import_cases":
            kwargs.setdefault("many", True)  # the browsable API's form for the import: a list
        return super().get_serializer(*args, **kwargs)

    def log_access(self, cases: Any, *, fields: tuple[str, ...] = ()) -> None:
        """An access-log entry for this request when it hands raw cases to a PHI user."""
        if can_view_phi(self.request.user):
            record_access(
                action=LOGGED_ACTIONS[str(self.action)],
                case_ids=[case.pk for case in cases],
                actor=self.request.user,
                request=self.request,
                fields=fields,
            )

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        cases = list(queryset) if page is None else page
        data = self.get_serializer(cases, many=True).data
        self.log_access(cases)
        return Response(data) if page is None else self.get_paginated_response(data)

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.present(self.get_object())

    def present(self, case: Case, *, status_code: int = status.HTTP_200_OK, fields: tuple[str, ...] = ()) -> Response:
        """The case as the caller may see it (the input serializers never answer); logged for PHI users."""
        serializer = case_serializer_for(self.request.user)(case, context=self.get_serializer_context())
        self.log_access([case], fields=fields)
        return Response(serializer.data, status=status_code)

    def validated_body(self) -> dict[str, Any]:
        serializer = self.get_serializer(data=self.request.data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    def create(self, request: Request) -> Response:
        body = self.validated_body()
        case = submit_case(body["record"], by=request_actor(request), dictionary=body["dictionary"])
        return self.present(case, status_code=status.HTTP_201_CREATED)

    def update(self, request: Request, pk: str | None = None, *, partial: bool = False) -> Response:
        case = self.get_object()
        serializer = self.get_serializer(case, data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        body = serializer.validated_data
        changed = case.revise(body["record"], by=request.user, dictionary=body["dictionary"])
        return self.present(case, fields=changed)

    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        return self.update(request, pk, partial=True)

    @extend_schema(
        summary="Approve a case",
        description="submitted -> approved; stores the de-identified record. The reviewer must be neither "
        "the submitter nor the last editor.",
        request=CaseApproveSerializer,
        responses={200: case_response(), **ERRORS, **NOT_FOUND, **CONFLICT},
    )
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str | None = None) -> Response:
        case, body = self.get_object(), self.validated_body()
        case.approve(by=request.user, note=body["note"])
        return self.present(case)

    @extend_schema(
        summary="Reject a case",
        description="submitted -> rejected, with a reason code and a note for the submitter.",
        request=CaseRejectSerializer,
        responses={200: case_response(), **ERRORS, **NOT_FOUND, **CONFLICT},
    )
    @action(detail=True, methods=["post"])
    def reject(self, request: Request, pk: str | None = None) -> Response:
        case, body = self.get_object(), self.validated_body()
        case.reject(by=request.user, reason=body["reason"], note=body["note"])
        return self.present(case)

    @extend_schema(
        summary="Retract an approved case",
        description="approved -> retracted: the case leaves future datasets.",
        request=CaseRetractSerializer,
        responses={200: case_response(), **ERRORS, **NOT_FOUND, **CONFLICT},
    )
    @action(detail=True, methods=["post"])
    def retract(self, request: Request, pk: str | None = None) -> Response:
        case, body = self.get_object(), self.validated_body()
        case.retract(by=request.user, reason=body["reason"])
        return self.present(case)

    @extend_schema(
        summary="Bulk-import cases",
        description=(
            "A JSON array of interchange records (application/json) or JSON Lines (application/x-ndjson, "
            "application/jsonl or text/plain, UTF-8). Valid records are imported even when others fail; "
            "the report names each failure by line (or array position). Re-importing a record updates a "
            "not-yet-approved case and never duplicates one. At most MAX_IMPORT_RECORDS records and "
            "MAX_IMPORT_BODY_BYTES bytes. If every record fails the answer is 400 (code 'invalid_records')."
        ),
        parameters=[CaseImportParamsSerializer],
        request={
            "application/json": CaseRecordSerializer(many=True),
            "application/x-ndjson": OpenApiTypes.STR,
            "application/jsonl": OpenApiTypes.STR,
            "text/plain": OpenApiTypes.STR,
        },
        responses={
            200: CaseImportReportSerializer,
            **ERRORS,
            413: OpenApiResponse(CaseErrorSerializer, description="The body is over MAX_IMPORT_BODY_BYTES."),
        },
    )
    @action(
        detail=False,
        methods=["post"],
        url_path="import",
        url_name="import",
        parser_classes=[SafeJSONParser, JSONLinesParser, JSONLParser, PlainTextLinesParser],
        max_body_bytes="MAX_IMPORT_BODY_BYTES",
    )
    def import_cases(self, request: Request) -> Response:
        params = CaseImportParamsSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        source = params.validated_data.get("source")
        body = request.data
        # The report as chunks are written: the cases of the chunks written before a failure are
        # logged too (each chunk is its own transaction and stays).
        seen: list[ImportReport] = []
        try:
            if isinstance(body, JSONLinesBody):
                self._check_record_count(body.record_count)
                report = import_lines(
                    body.lines, by=request_actor(request), default_source=source, progress=seen.append
                )
            elif isinstance(body, list):
                self._check_record_count(len(body))
                report = import_objects(body, by=request_actor(request), default_source=source, progress=seen.append)
            elif not body:
                raise ImportRefused("The body is empty.", code="empty_body")
            else:
                raise ImportRefused()
        finally:
            if seen:
                record_access(
                    action=AccessLogEntry.Action.IMPORT,
                    case_ids=seen[-1].case_ids,
                    actor=request.user,
                    request=request,
                )
        if report.failed == report.read:
            return Response(
                {"code": "invalid_records", "detail": "No record could be imported.", "report": report.to_json()},
                status=status.HTTP_400_BAD_REQUEST,
            )
        return Response(report.to_json())

    def _check_record_count(self, count: int) -> None:
        limit = int(settings.MAX_IMPORT_RECORDS)
        if count == 0:
            raise ImportRefused("The body holds no records.", code="empty_body")
        if count > limit:
            raise ImportRefused(
                f"The body holds {count} records; at most {limit} are taken per request. "
                "Split it, or use `manage.py import_cases` for large files.",
                code="too_many_records",
            )

    @extend_schema(
        summary="Case statistics",
        description="Counts by status, cohort and diagnosis, the quality histogram, de-identified cases, "
        "rejections by reason and reviews per reviewer, over every case matching the filters. `diagnoses` repeats "
        "`by_diagnosis` with each code's display name from the data dictionary (empty for a code no dictionary "
        "names); `findings` summarises each finding of each cohort's current dictionary with its name and unit.",
        filters=True,
        responses={200: CaseStatisticsSerializer, **ERRORS},
    )
    @action(detail=False, methods=["get"])
    def statistics(self, request: Request) -> Response:
        queryset = self.filter_queryset(self.get_queryset())
        return Response(compute_statistics(queryset, phi=can_view_phi(request.user)))
