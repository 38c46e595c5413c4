"""The training API: model types, dataset snapshots and training jobs.

    /api/v1/model-types/  model-types/{slug}/
    /api/v1/datasets/  datasets/{id}/  datasets/{id}/download/
    /api/v1/training/jobs/  training/jobs/{id}/  .../start|complete|fail|cancel|retry/  .../progress/ (PATCH)

Views stay thin: validate the input (``training.serializers``), call the model's method or the
builder, serialize the result. Wrong states and lost leases are domain errors that
``learning_engine.exceptions`` answers with 409 and a ``code``; bad hyperparameters raise
``InvalidRequest`` (400). Every action names its permission in ``action_permissions``
(``learning_engine.permissions.ActionPermission``): an action missing there serves nobody.

Only de-identified data is served here: snapshots and their files hold de-identified records only
(``training.datasets``), and the residual-identifier scan report names cases, fields and kinds,
never an identifier.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.http import FileResponse
from django.urls import reverse
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from cases.access_log import AccessLogEntry
from learning_engine.actors import request_actor
from learning_engine.exceptions import DomainError
from learning_engine.filters import StrictOrderingFilter
from learning_engine.parsers import SafeJSONParser
from learning_engine.permissions import ActionPermission
from learning_engine.roles import PERM_DOWNLOAD_DATASET, PERM_REPORT_TRAINING
from training.datasets import ready_twin, snapshot_request
from training.downloads import PARQUET_MEDIA_TYPE, dataset_file_response
from training.filters import DatasetSnapshotFilter, TrainingJobFilter
from training.models import DatasetSnapshot, ModelType, TrainingJob
from training.models.dataset import built_on_visible, visible_to
from training.serializers import (
    DatasetCreateSerializer,
    DatasetDetailParamsSerializer,
    DatasetSnapshotDetailSerializer,
    DatasetSnapshotSerializer,
    JobCancelSerializer,
    JobCompleteSerializer,
    JobFailSerializer,
    JobProgressSerializer,
    ModelTypeSerializer,
    TrainingErrorSerializer,
    TrainingJobCreateSerializer,
    TrainingJobDetailSerializer,
    TrainingJobSerializer,
    TrainingJobStartedSerializer,
)
from training.tasks import enqueue_dataset_build

logger = logging.getLogger(__name__)


ERRORS = {
    400: OpenApiResponse(TrainingErrorSerializer, description="Invalid input (code 'invalid', 'parse_error', ...)."),
    401: OpenApiResponse(TrainingErrorSerializer, description="Not authenticated."),
    403: OpenApiResponse(TrainingErrorSerializer, description="Missing permission."),
}
NOT_FOUND = {404: OpenApiResponse(TrainingErrorSerializer, description="No such object.")}


def conflict(description: str) -> dict[int, OpenApiResponse]:
    return {409: OpenApiResponse(TrainingErrorSerializer, description=description)}


class ThinViewSetMixin:
    """The body validation every viewset here shares."""

    def validated_body(self) -> dict[str, Any]:
        serializer = self.get_serializer(data=self.request.data)  # type: ignore[attr-defined]
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)


# --- Model types -----------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary="List model types", responses={200: ModelTypeSerializer(many=True), **ERRORS}),
    retrieve=extend_schema(summary="One model type", responses={200: ModelTypeSerializer, **ERRORS, **NOT_FOUND}),
)
class ModelTypeViewSet(viewsets.ReadOnlyModelViewSet):
    """What each kind of model trains on and how, by default. Read only (the admin edits them).

    Registered as ``model-types`` with the slug as lookup, so that the registry can nest its own
    routes (``model-types/{slug}/versions/`` ...) under the same prefix.
    """

    permission_classes = [ActionPermission]
    action_permissions = {"list": ["training.view_modeltype"], "retrieve": ["training.view_modeltype"]}
    queryset = ModelType.objects.all()
    serializer_class = ModelTypeSerializer
    lookup_field = "slug"
    lookup_value_regex = r"[-a-zA-Z0-9_]+"
    filter_backends: list[type] = []


# --- Dataset snapshots -----------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        summary="List dataset snapshots",
        description="Without the manifest and the scan findings (see the detail).",
        responses={200: DatasetSnapshotSerializer(many=True), **ERRORS},
    ),
    retrieve=extend_schema(
        summary="One dataset snapshot",
        description="Status, filters, counts per split and label, hashes, the residual-identifier scan report "
        "(case, field and kind of each finding) and, with ?include=manifest, the case ids per split.",
        parameters=[DatasetDetailParamsSerializer],
        responses={200: DatasetSnapshotDetailSerializer, **ERRORS, **NOT_FOUND},
    ),
)
class DatasetSnapshotViewSet(
    ThinViewSetMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    permission_classes = [ActionPermission]
    action_permissions = {
        "list": ["training.view_datasetsnapshot"],
        "retrieve": ["training.view_datasetsnapshot"],
        "create": ["training.add_datasetsnapshot"],
        "download": [PERM_DOWNLOAD_DATASET],
    }
    parser_classes = [SafeJSONParser]
    filter_backends = [DjangoFilterBackend, StrictOrderingFilter]
    filterset_class = DatasetSnapshotFilter
    ordering_fields = ["created_at", "finished_at", "case_count", "status", "id"]
    ordering = ["-created_at", "-id"]
    lookup_value_regex = r"\d+"

    def get_queryset(self) -> QuerySet[DatasetSnapshot]:
        queryset = visible_to(
            DatasetSnapshot.objects.select_related("model_type", "created_by", "dictionary__cohort"), self.request.user
        )
        if self.action == "list":
            return queryset.defer("manifest", "scan_report")
        # The manifest holds every case id: loaded only when it is asked for.
        return queryset if self.include_manifest() else queryset.defer("manifest")

    def include_manifest(self) -> bool:
        if self.action != "retrieve":
            return False
        params = DatasetDetailParamsSerializer(data=self.request.query_params)
        params.is_valid(raise_exception=True)
        return params.validated_data.get("include") == "manifest"

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        if self.action == "list":
            return DatasetSnapshotSerializer
        if self.action == "create":
            return DatasetCreateSerializer
        return DatasetSnapshotDetailSerializer

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "include_manifest": self.include_manifest()}

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        # A client asking for the download with "Accept: application/vnd.apache.parquet" gets the
        # file (a FileResponse skips rendering) and, on an error, JSON rather than a 406.
        return super().perform_content_negotiation(request, force=force or self.action == "download")

    @extend_schema(
        summary="Build a dataset snapshot",
        description="Records the snapshot (status 'building') and builds it in the background; poll the "
        "detail until it is 'ready' or 'failed'. Too few cases, an empty cohort or a label with a single "
        "case fail the snapshot with the reason in 'error'. Without the PHI permission an encounter date "
        "range covers whole years (1 January to 31 December). When a ready snapshot of the model type you "
        "may see already has the same content (same cases, labels and splits), nothing is built: 409 "
        "'duplicate_dataset' with that snapshot's id in 'dataset_id'; send 'force': true to build a copy anyway.",
        request=DatasetCreateSerializer,
        responses={
            202: DatasetSnapshotDetailSerializer,
            **ERRORS,
            **conflict("'duplicate_dataset': a ready snapshot already has this content (its id in 'dataset_id')."),
        },
    )
    def create(self, request: Request) -> Response:
        body = self.validated_body()
        force = body.pop("force", False)
        snapshot = snapshot_request(body.pop("model_type"), by=request_actor(request), **body)
        twin = None if force else ready_twin(snapshot, by=request_actor(request))
        if twin is not None:
            raise DomainError(
                f"Dataset {twin.pk} is ready with this content ({twin.case_count} cases, content hash "
                f'{twin.content_hash[:12]}); use it, or send "force": true to build another copy.',
                code="duplicate_dataset",
                dataset_id=twin.pk,
            )
        with transaction.atomic():
            snapshot.save(force_insert=True)
            enqueue_dataset_build(snapshot.pk)  # on commit: the worker must see the row
        serializer = DatasetSnapshotDetailSerializer(snapshot, context=self.get_serializer_context())
        location = reverse("dataset-detail", kwargs={"pk": snapshot.pk})
        return Response(serializer.data, status=status.HTTP_202_ACCEPTED, headers={"Location": location})

    @extend_schema(
        summary="Download a dataset file",
        description="The snapshot's Parquet file (schema: training.dataset_format), de-identified records only. "
        "The Repr-Digest header carries its sha256 (also in the detail's file_sha256).",
        responses={
            (200, PARQUET_MEDIA_TYPE): OpenApiTypes.BINARY,
            **ERRORS,
            **NOT_FOUND,
            **conflict(
                "The snapshot is not ready (code 'dataset_not_ready'), or its file is missing from "
                "storage (code 'dataset_file_missing')."
            ),
        },
    )
    @action(detail=True, methods=["get"])
    def download(self, request: Request, pk: str | None = None) -> FileResponse:
        return dataset_file_response(
            self.get_object(), by=request_actor(request), request=request, channel=AccessLogEntry.Channel.API
        )


# --- Training jobs ---------------------------------------------------------------------------------

JOB_CONFLICTS = "Wrong state for this action (code 'invalid_transition', with current_status)."
EXTERNAL_CONFLICTS = (
    "Wrong state (code 'invalid_transition'); the job is run by the built-in worker (code 'worker_job'); "
    "the lease is missing, wrong or no longer valid: the job was cancelled, reaped or finished (code 'lease_lost')."
)


@extend_schema_view(
    list=extend_schema(
        summary="List training jobs",
        description="Without the per-epoch history, evaluation and error log (see the detail). Never the lease.",
        responses={200: TrainingJobSerializer(many=True), **ERRORS},
    ),
    retrieve=extend_schema(
        summary="One training job",
        description="Status, progress, stage ('Epoch 5/10'), latest metrics, per-epoch history, the test-split "
        "evaluation and the error log. Never the lease.",
        responses={200: TrainingJobDetailSerializer, **ERRORS, **NOT_FOUND},
    ),
)
class TrainingJobViewSet(ThinViewSetMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Training jobs: created here, run by the built-in worker or driven by an external trainer.

    External trainers (``executor: "external"``) drive their job through four actions, each
    needing ``training.report_trainingjob``:

    - ``start``: queued -> running. The answer carries the job's ``lease``; every later write
      must send it. The worker id is ``api:<username>``.
    - ``progress`` (PATCH): progress 0-100, stage text, optional latest metrics and one finished
      epoch for the history. It is also the heartbeat: a job that reports nothing for
      ``JOB_STALE_SECONDS`` is reaped like a dead worker's (requeued, its lease revoked).
    - ``complete``: running -> completed. The client's metrics are stored as reported (the
      evaluation is ``{"reported_by_client": <metrics>}``) and the job has no artifact of its own:
      the trained model arrives through the registry's upload
      (``POST /api/v1/model-types/{slug}/versions/upload/``), which validates it in a sandbox
      and evaluates it itself on the job's test split. ``job_completed`` is still sent, and the
      registry registers nothing for a job without an artifact.
    - ``fail``: running (with the lease) or queued -> failed, with the reason.

    A worker-run job refuses all four with 409 ``worker_job``: only the worker that holds its
    lease writes its progress. A missing or stale lease is 409 ``lease_lost``.
    """

    permission_classes = [ActionPermission]
    action_permissions = {
        "list": ["training.view_trainingjob"],
        "retrieve": ["training.view_trainingjob"],
        "create": ["training.add_trainingjob"],
        "cancel": ["training.change_trainingjob"],
        "retry": ["training.change_trainingjob"],
        "start": [PERM_REPORT_TRAINING],
        "progress": [PERM_REPORT_TRAINING],
        "complete": [PERM_REPORT_TRAINING],
        "fail": [PERM_REPORT_TRAINING],
    }
    parser_classes = [SafeJSONParser]
    filter_backends = [DjangoFilterBackend, StrictOrderingFilter]
    filterset_class = TrainingJobFilter
    ordering_fields = ["created_at", "started_at", "finished_at", "priority", "status", "progress", "id"]
    ordering = ["-created_at", "-id"]
    lookup_value_regex = r"\d+"

    def get_queryset(self) -> QuerySet[TrainingJob]:
        # A job on a snapshot hidden from the user shows its counts: hidden too (built_on_visible).
        queryset = built_on_visible(TrainingJob.objects.select_related("model_type", "created_by"), self.request.user)
        if self.action == "list":
            # Per-epoch history, evaluation and error log can each be long; the list does not show them.
            return queryset.defer("history", "evaluation", "error_log")
        return queryset

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        by_action: dict[str | None, type[serializers.BaseSerializer]] = {
            "list": TrainingJobSerializer,
            "create": TrainingJobCreateSerializer,
            "cancel": JobCancelSerializer,
            "progress": JobProgressSerializer,
            "complete": JobCompleteSerializer,
            "fail": JobFailSerializer,
        }
        return by_action.get(self.action) or TrainingJobDetailSerializer

    def present(self, job: TrainingJob, *, status_code: int = status.HTTP_200_OK) -> Response:
        serializer = TrainingJobDetailSerializer(job, context=self.get_serializer_context())
        return Response(serializer.data, status=status_code)

    def external_job(self) -> TrainingJob:
        """The job, if an external trainer drives it; a worker's job refuses API progress writes."""
        job = self.get_object()
        if job.executor != TrainingJob.Executor.EXTERNAL:
            raise DomainError(
                f"Job {job.pk} is run by the built-in worker; only jobs with executor 'external' are "
                "driven through start, progress, complete and fail.",
                code="worker_job",
                executor=job.executor,
            )
        return job

    @extend_schema(
        summary="Submit a training job",
        description="Answers 201 with the queued job; a worker job is enqueued when the request commits. "
        'Hyperparameters may be top-level keys (e.g. {"model_type": "diagnosis", "batch_size": 32, '
        "\"epochs\": 10}) or in 'hyperparameters'. Epochs or batch_size without an algorithm pick the model "
        "type's epoch-based algorithm. Unknown or out-of-range hyperparameters: 400 "
        "'invalid_hyperparameters'.",
        request=TrainingJobCreateSerializer,
        responses={201: TrainingJobDetailSerializer, **ERRORS},
        examples=[
            OpenApiExample(
                "Epochs and batch size at the top level",
                value={"model_type": "diagnosis", "batch_size": 32, "epochs": 10},
                request_only=True,
            ),
            OpenApiExample(
                "An algorithm, a dataset and a hyperparameters object",
                value={
                    "model_type": "diagnosis",
                    "dataset": 3,
                    "algorithm": "mlp",
                    "hyperparameters": {"epochs": 20, "hidden_layers": [64, 32]},
                    "priority": 10,
                },
                request_only=True,
            ),
        ],
    )
    def create(self, request: Request) -> Response:
        body = self.validated_body()
        job = TrainingJob.submit(by=request_actor(request), **body)
        return self.present(job, status_code=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Cancel a job",
        description="queued | running -> cancelled. A queued job never runs; a running one stops at its next "
        "epoch or stage.",
        request=JobCancelSerializer,
        responses={200: TrainingJobDetailSerializer, **ERRORS, **NOT_FOUND, **conflict(JOB_CONFLICTS)},
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        job, body = self.get_object(), self.validated_body()
        job.cancel(by=request.user, reason=body["reason"])
        return self.present(job)

    @extend_schema(
        summary="Retry a failed job",
        description="failed -> queued while attempts remain (else 409 'attempts_exhausted'); enqueued again.",
        request=None,
        responses={200: TrainingJobDetailSerializer, **ERRORS, **NOT_FOUND, **conflict(JOB_CONFLICTS)},
    )
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str | None = None) -> Response:
        job = self.get_object()
        job.retry(by=request.user)
        return self.present(job)

    @extend_schema(
        summary="Start an external job",
        description="queued -> running, for executor 'external'. The answer is the only one that carries the "
        "lease: keep it, and send it with every progress, complete and fail.",
        request=None,
        responses={200: TrainingJobStartedSerializer, **ERRORS, **NOT_FOUND, **conflict(EXTERNAL_CONFLICTS)},
    )
    @action(detail=True, methods=["post"])
    def start(self, request: Request, pk: str | None = None) -> Response:
        job = self.external_job()
        lease = job.start(worker_id=f"api:{request.user.username}", by=request_actor(request))
        data = TrainingJobDetailSerializer(job, context=self.get_serializer_context()).data
        return Response({**data, "lease": str(lease)})

    @extend_schema(
        summary="Report an external job's progress",
        description="Progress, stage, latest metrics and one finished epoch; also the job's heartbeat.",
        request=JobProgressSerializer,
        responses={200: TrainingJobDetailSerializer, **ERRORS, **NOT_FOUND, **conflict(EXTERNAL_CONFLICTS)},
    )
    @action(detail=True, methods=["patch"])
    def progress(self, request: Request, pk: str | None = None) -> Response:
        job, body = self.external_job(), self.validated_body()
        job.report_progress(
            lease=body["lease"],
            progress=body["progress"],
            stage=body["stage"],
            metrics=body.get("metrics"),
            epoch=body.get("epoch"),
        )
        return self.present(job)

    @extend_schema(
        summary="Complete an external job",
        description="running -> completed. The metrics are stored as reported (evaluation "
        "{'reported_by_client': metrics}), never used for a decision. The model itself is uploaded to "
        "POST /api/v1/model-types/{slug}/versions/upload/, which validates and evaluates it.",
        request=JobCompleteSerializer,
        responses={200: TrainingJobDetailSerializer, **ERRORS, **NOT_FOUND, **conflict(EXTERNAL_CONFLICTS)},
    )
    @action(detail=True, methods=["post"])
    def complete(self, request: Request, pk: str | None = None) -> Response:
        job, body = self.external_job(), self.validated_body()
        reported = body.get("metrics", job.metrics)
        job.complete(
            lease=body["lease"],
            evaluation={"reported_by_client": reported},
            artifact="",
            artifact_sha256="",
            metrics=reported,
            by=request_actor(request),
        )
        return self.present(job)

    @extend_schema(
        summary="Fail an external job",
        description="running -> failed (with the lease), or queued -> failed; the reason goes to the error log.",
        request=JobFailSerializer,
        responses={200: TrainingJobDetailSerializer, **ERRORS, **NOT_FOUND, **conflict(EXTERNAL_CONFLICTS)},
    )
    @action(detail=True, methods=["post"])
    def fail(self, request: Request, pk: str | None = None) -> Response:
        job, body = self.external_job(), self.validated_body()
        job.fail(reason=body["reason"], lease=body["lease"], by=request_actor(request))
        return self.present(job)
