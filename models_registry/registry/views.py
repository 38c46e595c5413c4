"""The registry API: versions, their approval and deployment, performance, history and comparison.

    /api/v1/model-types/{slug}/versions/                      list (filters, ordering)
    /api/v1/model-types/{slug}/versions/upload/               an external trainer's artifact (multipart)
    /api/v1/model-types/{slug}/versions/{version}/            detail (with the audit trail)
    .../versions/{version}/approve|reject/                    body {"note": "..."}
    .../versions/{version}/activate|deactivate|archive/       body {"reason": "..."}
    .../versions/{version}/performance/                       GET the records; POST a reported one
    /api/v1/model-types/{slug}/rollback/                      re-activate the previously active version
    /api/v1/model-types/{slug}/history/                       versions, performance, activations; ?at=
    /api/v1/model-types/{slug}/compare/?a=v1.1.0&b=v1.2.0     the two versions on the same test cases

Versions are addressed by their label. Views stay thin: validate the input (serializers), call the
model method (``ModelVersion.approve`` ...) or the registry service (``compare_versions``,
``register_upload``), serialize. Wrong states, the two-person rule and a refused artifact are
domain errors that ``learning_engine.exceptions`` answers with 409 and a ``code``. Every action
names its permissions in ``action_permissions``: only clinical leads approve, reject, activate,
deactivate, archive and roll back; ML engineers view and report performance.
"""

from __future__ import annotations

import math
from typing import Any

from django.conf import settings
from django.db.models import Prefetch, QuerySet
from django.shortcuts import get_object_or_404
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from learning_engine.actors import request_actor
from learning_engine.exceptions import InvalidRequest, PayloadTooLarge
from learning_engine.filters import StrictOrderingFilter
from learning_engine.parsers import SafeJSONParser
from learning_engine.permissions import ActionPermission
from learning_engine.roles import PERM_REPORT_TRAINING
from models_registry.registry.compare import compare_versions
from models_registry.registry.evaluation import register_upload
from models_registry.registry.filters import ModelVersionFilter, PerformanceRecordFilter
from models_registry.registry.models import ActivationHistory, ModelVersion, PerformanceRecord, VersionTransition
from models_registry.registry.serializers import (
    KEY_METRICS,
    ApprovalSerializer,
    CompareParamsSerializer,
    ComparisonSerializer,
    DeploymentSerializer,
    HistoryParamsSerializer,
    HistorySerializer,
    ModelVersionDetailSerializer,
    ModelVersionSerializer,
    PerformanceRecordSerializer,
    PerformanceReportSerializer,
    PointInTimeSerializer,
    RegistryErrorSerializer,
    UploadSerializer,
)
from training.models import ModelType
from training.models.dataset import built_on_visible

VIEW_VERSION = "models_registry.view_modelversion"
APPROVE = "models_registry.approve_modelversion"
DEPLOY = "models_registry.deploy_modelversion"
VIEW_PERFORMANCE = "models_registry.view_performancerecord"
ADD_PERFORMANCE = "models_registry.add_performancerecord"
VIEW_HISTORY = "models_registry.view_activationhistory"

# An uploaded artifact's bound (the middleware refuses a larger Content-Length before reading).
MAX_ARTIFACT_BYTES = int(getattr(settings, "MAX_ARTIFACT_UPLOAD_BYTES", 100 * 1024 * 1024))
# Performance records per version in the history (the latest ones): live records can be many.
HISTORY_RECORDS_PER_VERSION = 50
# A version label in a URL (see models_registry.registry.evaluation.LABEL).
VERSION_REGEX = r"[A-Za-z0-9][A-Za-z0-9._+-]{0,31}"

SLUG = OpenApiParameter("slug", OpenApiTypes.STR, OpenApiParameter.PATH, description="The model type's slug.")
VERSION = OpenApiParameter("version", OpenApiTypes.STR, OpenApiParameter.PATH, description="A version label.")
ERRORS = {
    400: OpenApiResponse(RegistryErrorSerializer, description="Invalid input (code 'invalid', ...)."),
    401: OpenApiResponse(RegistryErrorSerializer, description="Not authenticated."),
    403: OpenApiResponse(RegistryErrorSerializer, description="Missing permission."),
}
NOT_FOUND = {404: OpenApiResponse(RegistryErrorSerializer, description="No such model type or version.")}


def conflict(description: str) -> dict[int, OpenApiResponse]:
    return {409: OpenApiResponse(RegistryErrorSerializer, description=description)}


WRONG_STATE = "Wrong state for this action (code 'invalid_transition', with current_status)."


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an int beyond float range
        return False


def key_metrics(metrics: Any) -> dict[str, Any]:
    """The key metrics of a stored metrics object; anything not a finite number is left out.

    A "reported" record holds whatever an external trainer sent on completion (any JSON), so a
    value is checked before a number field serializes it.
    """
    if not isinstance(metrics, dict):
        return {}
    return {key: metrics[key] for key in KEY_METRICS if _is_number(metrics.get(key))}


class ModelTypeScoped:
    """Views nested under ``model-types/{slug}/``: the model type, 404 when unknown.

    Resolved on first use, i.e. after the permission check (``initial``), so an anonymous or
    unauthorised caller learns nothing about which slugs exist.
    """

    kwargs: dict[str, Any]
    _model_type: ModelType | None = None

    def model_type(self) -> ModelType:
        if self._model_type is None:
            self._model_type = get_object_or_404(ModelType, slug=self.kwargs["slug"])
        return self._model_type


def validated(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


# --- Versions --------------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        summary="List a model type's versions",
        description="Key metrics, approval and deployment states. Newest first unless ?ordering= says otherwise.",
        parameters=[SLUG],
        responses={200: ModelVersionSerializer(many=True), **ERRORS, **NOT_FOUND},
    ),
    retrieve=extend_schema(
        summary="One version",
        description="Everything about the version, with its audit trail.",
        parameters=[SLUG, VERSION],
        responses={200: ModelVersionDetailSerializer, **ERRORS, **NOT_FOUND},
    ),
)
class ModelVersionViewSet(ModelTypeScoped, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    permission_classes = [ActionPermission]
    action_permissions = {
        "list": [VIEW_VERSION],
        "retrieve": [VIEW_VERSION],
        "approve": [VIEW_VERSION, APPROVE],
        "reject": [VIEW_VERSION, APPROVE],
        "activate": [VIEW_VERSION, DEPLOY],
        "deactivate": [VIEW_VERSION, DEPLOY],
        "archive": [VIEW_VERSION, DEPLOY],
        "performance": [VIEW_VERSION, VIEW_PERFORMANCE],
        "report_performance": [VIEW_VERSION, ADD_PERFORMANCE],
        "upload": [VIEW_VERSION, PERM_REPORT_TRAINING],
    }
    parser_classes = [SafeJSONParser]
    filter_backends = [DjangoFilterBackend, StrictOrderingFilter]
    filterset_class = ModelVersionFilter
    ordering_fields = ["created_at", "deployed_at", "approval_status", "deployment_status", "version", "id"]
    ordering = ["-created_at", "-id"]
    lookup_field = "version"
    lookup_value_regex = VERSION_REGEX
    queryset = ModelVersion.objects.none()  # for the schema; get_queryset is what serves
    # The request body bound read by learning_engine.middleware; the upload action raises it.
    max_body_bytes: int | str | None = None
    # The upload action's throttle (THROTTLE_ARTIFACT_UPLOAD_RATE); the other actions have none.
    throttle_scope: str | None = None

    def get_queryset(self) -> QuerySet[ModelVersion]:
        queryset = ModelVersion.objects.filter(model_type=self.model_type()).select_related(
            "model_type", "created_by", "approved_by", "dictionary__cohort"
        )
        # A version trained or evaluated on a snapshot hidden from the user shows its counts: hidden too.
        queryset = built_on_visible(queryset, self.request.user)
        if self.action == "retrieve":
            queryset = queryset.prefetch_related(
                Prefetch("transitions", queryset=VersionTransition.objects.select_related("actor"))
            )
        return queryset

    def filter_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        # Filters and ordering are the list's; an action's query string must not hide its object.
        return super().filter_queryset(queryset) if self.action == "list" else queryset

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        return ModelVersionSerializer if self.action == "list" else ModelVersionDetailSerializer

    def present(self, version: ModelVersion, *, status_code: int = status.HTTP_200_OK) -> Response:
        fresh = self.get_queryset().prefetch_related(
            Prefetch("transitions", queryset=VersionTransition.objects.select_related("actor"))
        )
        serializer = ModelVersionDetailSerializer(fresh.get(pk=version.pk), context=self.get_serializer_context())
        return Response(serializer.data, status=status_code)

    # --- Approval and deployment ---------------------------------------------------------------

    @extend_schema(
        summary="Approve a version",
        description="approval pending -> approved, with a note. The approver must be none of the people who made "
        "the version: its job's creator, starter and completer, and the uploader of its artifact, superusers "
        "included (409 'four_eyes_violation').",
        parameters=[SLUG, VERSION],
        request=ApprovalSerializer,
        responses={200: ModelVersionDetailSerializer, **ERRORS, **NOT_FOUND, **conflict(WRONG_STATE)},
    )
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, slug: str, version: str) -> Response:
        obj, body = self.get_object(), validated(ApprovalSerializer, request.data)
        obj.approve(by=request.user, note=body["note"])
        return self.present(obj)

    @extend_schema(
        summary="Reject a version",
        description="approval pending -> rejected, with a note (two-person rule as for approve).",
        parameters=[SLUG, VERSION],
        request=ApprovalSerializer,
        responses={200: ModelVersionDetailSerializer, **ERRORS, **NOT_FOUND, **conflict(WRONG_STATE)},
    )
    @action(detail=True, methods=["post"])
    def reject(self, request: Request, slug: str, version: str) -> Response:
        obj, body = self.get_object(), validated(ApprovalSerializer, request.data)
        obj.reject(by=request.user, note=body["note"])
        return self.present(obj)

    @extend_schema(
        summary="Activate a version",
        description="inactive -> active, approved versions only (409 'not_approved'). The previously active "
        "version of the model type becomes inactive in the same transaction; the activation history gets a row "
        "and every serving process switches within a second.",
        parameters=[SLUG, VERSION],
        request=DeploymentSerializer,
        responses={200: ModelVersionDetailSerializer, **ERRORS, **NOT_FOUND, **conflict(WRONG_STATE)},
    )
    @action(detail=True, methods=["post"])
    def activate(self, request: Request, slug: str, version: str) -> Response:
        obj, body = self.get_object(), validated(DeploymentSerializer, request.data)
        obj.activate(by=request.user, reason=body["reason"])
        return self.present(obj)

    @extend_schema(
        summary="Deactivate a version",
        description="active -> inactive: the model type has no active version afterwards (predictions get 409).",
        parameters=[SLUG, VERSION],
        request=DeploymentSerializer,
        responses={200: ModelVersionDetailSerializer, **ERRORS, **NOT_FOUND, **conflict(WRONG_STATE)},
    )
    @action(detail=True, methods=["post"])
    def deactivate(self, request: Request, slug: str, version: str) -> Response:
        obj, body = self.get_object(), validated(DeploymentSerializer, request.data)
        obj.deactivate(by=request.user, reason=body["reason"])
        return self.present(obj)

    @extend_schema(
        summary="Archive a version",
        description="inactive -> archived: kept for the record, never served again.",
        parameters=[SLUG, VERSION],
        request=DeploymentSerializer,
        responses={200: ModelVersionDetailSerializer, **ERRORS, **NOT_FOUND, **conflict(WRONG_STATE)},
    )
    @action(detail=True, methods=["post"])
    def archive(self, request: Request, slug: str, version: str) -> Response:
        obj, body = self.get_object(), validated(DeploymentSerializer, request.data)
        obj.archive(by=request.user, reason=body["reason"])
        return self.present(obj)

    # --- Performance ---------------------------------------------------------------------------

    @extend_schema(
        summary="A version's performance records",
        description="Every evaluation of the version, oldest first: 'offline' (the registry's own, on a test "
        "split), 'reported' (as a client sent them; never used for a decision), 'live' (clinicians' feedback).",
        parameters=[
            SLUG,
            VERSION,
            OpenApiParameter("source", OpenApiTypes.STR, many=True, enum=PerformanceRecord.Source.values),
        ],
        responses={200: PerformanceRecordSerializer(many=True), **ERRORS, **NOT_FOUND},
    )
    @action(detail=True, methods=["get"])
    def performance(self, request: Request, slug: str, version: str) -> Response:
        obj = self.get_object()
        records = built_on_visible(
            PerformanceRecord.objects.filter(version=obj).select_related("version", "created_by"), request.user
        )
        filterset = PerformanceRecordFilter(request.query_params, queryset=records)
        if not filterset.is_valid():
            raise ValidationError(filterset.errors)
        page = self.paginate_queryset(filterset.qs.order_by("created_at", "id"))
        serializer = PerformanceRecordSerializer(page, many=True, context=self.get_serializer_context())
        return self.get_paginated_response(serializer.data)

    @extend_schema(
        summary="Report a version's performance",
        description="The original specification's payload. Stored with source 'reported', exactly as given, "
        "next to the registry's own evaluation; reported metrics never decide anything.",
        parameters=[SLUG, VERSION],
        request=PerformanceReportSerializer,
        responses={201: PerformanceRecordSerializer, **ERRORS, **NOT_FOUND},
        examples=[
            OpenApiExample(
                "The specification's payload",
                value={"metrics": {"accuracy": 0.91, "f1_macro": 0.88}, "test_set_size": 500},
                request_only=True,
            )
        ],
    )
    @performance.mapping.post
    def report_performance(self, request: Request, slug: str, version: str) -> Response:
        obj, body = self.get_object(), validated(PerformanceReportSerializer, request.data)
        reporter: Any = request.user  # authenticated: ActionPermission let it in
        record = PerformanceRecord.objects.create(
            version=obj,
            source=PerformanceRecord.Source.REPORTED,
            metrics=body["metrics"],
            test_set_size=body["test_set_size"],
            created_by=reporter,
        )
        serializer = PerformanceRecordSerializer(record, context=self.get_serializer_context())
        return Response(serializer.data, status=status.HTTP_201_CREATED)

    # --- Upload ----------------------------------------------------------------------------------

    @extend_schema(
        summary="Upload an external trainer's artifact",
        description="For a completed external job of this model type: the skops file is checked (trusted "
        "types only: 400 'artifact_untrusted'; unreadable: 400 'artifact_invalid'), evaluated by the registry "
        "on the job's dataset test split (400 'artifact_unusable' if it cannot predict it), stored, and "
        "registered as a version with the registry's metrics. The metrics the client reported when completing "
        "the job are kept as a 'reported' performance record. A job that is not external (409 'worker_job'), "
        "not completed (409 'job_not_completed') or already registered (409 'already_registered') is refused. "
        "The artifact is loaded, structurally validated and evaluated in a resource-limited child process: "
        "a refusal, a crash or an exceeded limit is 400 'artifact_invalid', a zip beyond the limits 400 "
        "'artifact_too_large', a model whose median single-row prediction is slower than ARTIFACT_MAX_PREDICT_MS "
        "400 'artifact_too_slow'; every refused upload is audited, and after ARTIFACT_UPLOAD_MAX_ATTEMPTS of them "
        "the job takes no more (409 'upload_attempts_exhausted'). Throttled per user (429).",
        parameters=[SLUG],
        request={"multipart/form-data": UploadSerializer},
        responses={
            201: ModelVersionDetailSerializer,
            **ERRORS,
            **NOT_FOUND,
            **conflict("The job cannot take an artifact (see the codes above), or its dataset cannot serve."),
            413: OpenApiResponse(RegistryErrorSerializer, description="The artifact is too large."),
        },
    )
    @action(
        detail=False,
        methods=["post"],
        parser_classes=[MultiPartParser],
        max_body_bytes=MAX_ARTIFACT_BYTES,
        throttle_scope="artifact_upload",
    )
    def upload(self, request: Request, slug: str) -> Response:
        body = validated(UploadSerializer, request.data)
        upload = body["artifact"]
        if upload.size is not None and upload.size > MAX_ARTIFACT_BYTES:
            # A chunked body has no Content-Length for the middleware to refuse early.
            raise PayloadTooLarge(f"The artifact is {upload.size} bytes; the limit is {MAX_ARTIFACT_BYTES}.")
        created = register_upload(
            self.model_type(),
            job_id=body["job"],
            data=upload.read(),
            by=request_actor(request),
            label=body.get("version"),
        )
        return self.present(created, status_code=status.HTTP_201_CREATED)


# --- Model-type level: rollback, history, comparison -----------------------------------------------


@extend_schema(parameters=[SLUG])
class RegistryModelTypeViewSet(ModelTypeScoped, viewsets.GenericViewSet):
    """Registry routes on a model type (``model-types/{slug}/...``) next to training's own detail."""

    permission_classes = [ActionPermission]
    action_permissions = {
        "rollback": [VIEW_VERSION, DEPLOY],
        "history": [VIEW_VERSION, VIEW_HISTORY, VIEW_PERFORMANCE],
        "compare": [VIEW_VERSION, VIEW_PERFORMANCE],
    }
    parser_classes = [SafeJSONParser]
    filter_backends: list[type] = []
    pagination_class = None
    lookup_field = "slug"
    lookup_value_regex = r"[-a-zA-Z0-9_]+"
    queryset = ModelType.objects.none()  # for the schema

    @extend_schema(
        summary="Roll back to the previously active version",
        description="Re-activates the version that was active before the current state (per the activation "
        "history), with an audit row and a history row whose reason names the rollback. 409 "
        "'no_previous_version' when there is none, 'rollback_target_unavailable' when it was archived since.",
        request=DeploymentSerializer,
        responses={200: ModelVersionDetailSerializer, **ERRORS, **NOT_FOUND, **conflict(WRONG_STATE)},
    )
    @action(detail=True, methods=["post"])
    def rollback(self, request: Request, slug: str) -> Response:
        body = validated(DeploymentSerializer, request.data)
        target = ModelVersion.rollback(self.model_type(), by=request_actor(request), reason=body["reason"])
        version = (
            ModelVersion.objects.select_related("model_type", "created_by", "approved_by", "dictionary__cohort")
            .prefetch_related(Prefetch("transitions", queryset=VersionTransition.objects.select_related("actor")))
            .get(pk=target.pk)
        )
        return Response(ModelVersionDetailSerializer(version, context=self.get_serializer_context()).data)

    @extend_schema(
        summary="A model type's history",
        description="Without parameters: every version with its performance over time (the latest "
        f"{HISTORY_RECORDS_PER_VERSION} records each) and the activation history. With ?at=<ISO 8601 time>: "
        "which version was active at that time (PointInTime).",
        parameters=[HistoryParamsSerializer],
        responses={
            200: OpenApiResponse(
                PolymorphicProxySerializer(
                    component_name="HistoryOrPointInTime",
                    serializers=[HistorySerializer, PointInTimeSerializer],
                    resource_type_field_name=None,
                ),
                description="The history; with ?at=, the version active at that time.",
            ),
            **ERRORS,
            **NOT_FOUND,
        },
    )
    @action(detail=True, methods=["get"])
    def history(self, request: Request, slug: str) -> Response:
        params = validated(HistoryParamsSerializer, request.query_params)
        model_type = self.model_type()
        if "at" in params:
            return Response(self.point_in_time(model_type, params["at"]))
        recent = PerformanceRecord.objects.order_by("-created_at", "-id")[: HISTORY_RECORDS_PER_VERSION + 1]
        versions = (
            built_on_visible(ModelVersion.objects.filter(model_type=model_type), request.user)
            .order_by("created_at", "id")
            .prefetch_related(Prefetch("performance", queryset=recent, to_attr="recent_performance"))
        )
        activations = ActivationHistory.objects.filter(model_type=model_type).select_related(
            "from_version", "to_version", "actor"
        )
        rows = []
        active = None
        for version in versions:
            records = version.recent_performance  # type: ignore[attr-defined]
            if version.deployment_status == ModelVersion.Deployment.ACTIVE:
                active = version.version
            rows.append(
                {
                    "version": version.version,
                    "approval_status": version.approval_status,
                    "deployment_status": version.deployment_status,
                    "created_at": version.created_at,
                    "deployed_at": version.deployed_at,
                    "deactivated_at": version.deactivated_at,
                    "performance": [
                        {
                            "source": record.source,
                            "dataset": record.dataset_id,
                            "metrics": key_metrics(record.metrics),
                            "test_set_size": record.test_set_size,
                            "created_at": record.created_at,
                        }
                        for record in reversed(records[:HISTORY_RECORDS_PER_VERSION])
                    ],
                    "performance_truncated": len(records) > HISTORY_RECORDS_PER_VERSION,
                }
            )
        payload = {
            "model_type": model_type.slug,
            "active_version": active,
            "versions": rows,
            "activations": list(activations),
        }
        return Response(HistorySerializer(payload, context=self.get_serializer_context()).data)

    def point_in_time(self, model_type: ModelType, when: Any) -> dict[str, Any]:
        version = ActivationHistory.active_at(model_type, when)
        change = (
            ActivationHistory.objects.filter(model_type=model_type, created_at__lte=when)
            .order_by("-created_at", "-id")
            .values_list("created_at", flat=True)
            .first()
        )
        if version is not None:
            version = ModelVersion.objects.select_related(
                "model_type", "created_by", "approved_by", "dictionary__cohort"
            ).get(pk=version.pk)
        payload = {"model_type": model_type.slug, "at": when, "active_version": version, "activated_at": change}
        return dict(PointInTimeSerializer(payload, context=self.get_serializer_context()).data)

    @extend_schema(
        summary="Compare two versions",
        description="Both versions scored on the same test cases (their common snapshot's test split, or the "
        "newer snapshot's when they differ), the differences b - a with 95% paired bootstrap intervals, an exact "
        "McNemar test on the paired predictions, live accuracy from feedback when there is some, and a verdict "
        "at alpha 0.05. Unknown versions: 404; a version compared with itself: 400 'same_version'. The paired "
        "evaluation is cached per pair of artifacts and snapshot.",
        parameters=[CompareParamsSerializer],
        responses={
            200: ComparisonSerializer,
            **ERRORS,
            **NOT_FOUND,
            **conflict(
                "A snapshot or artifact cannot serve: 'dataset_not_ready', 'dataset_file_missing', "
                "'dataset_file_changed', 'no_test_set', 'artifact_integrity', 'artifact_untrusted', ..."
            ),
        },
    )
    @action(detail=True, methods=["get"])
    def compare(self, request: Request, slug: str) -> Response:
        params = validated(CompareParamsSerializer, request.query_params)
        if params["a"] == params["b"]:
            raise InvalidRequest(
                f"{params['a']} compared with itself: name two different versions.", code="same_version"
            )
        model_type = self.model_type()
        versions = built_on_visible(
            ModelVersion.objects.filter(model_type=model_type).select_related("model_type", "dataset"), request.user
        )
        a = get_object_or_404(versions, version=params["a"])
        b = get_object_or_404(versions, version=params["b"])
        return Response(compare_versions(a, b, by=request_actor(request)))
