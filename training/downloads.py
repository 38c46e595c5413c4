"""A ready snapshot's Parquet file as a download: the one implementation behind the API's
``datasets/{id}/download/`` and the admin's download link (same permission, same checks, same
entry in the PHI access log)."""

from __future__ import annotations

import base64
import logging
from typing import TYPE_CHECKING

from django.http import FileResponse, HttpRequest

from cases.access_log import AccessLogEntry, record_access
from learning_engine.exceptions import DomainError
from training.models import DatasetSnapshot

if TYPE_CHECKING:
    from learning_engine.actors import Actor

logger = logging.getLogger(__name__)

PARQUET_MEDIA_TYPE = "application/vnd.apache.parquet"


def dataset_file_response(snapshot: DatasetSnapshot, *, by: Actor, request: HttpRequest, channel: str) -> FileResponse:
    """The file of a ready snapshot, logged as a read of its cases. ``DomainError`` (409) when the
    snapshot is not ready (``dataset_not_ready``) or its file is gone (``dataset_file_missing``)."""
    if snapshot.status != DatasetSnapshot.Status.READY:
        raise DomainError(
            f"Dataset {snapshot.pk} is {snapshot.status}; only a ready snapshot has a file.",
            code="dataset_not_ready",
            current_status=snapshot.status,
        )
    try:
        handle = snapshot.file.open("rb")
    except (OSError, ValueError):
        logger.error("Dataset %s is ready but its file %r cannot be opened", snapshot.pk, snapshot.file.name)
        raise DomainError(
            f"Dataset {snapshot.pk}'s file is missing from storage; build a new snapshot.",
            code="dataset_file_missing",
        ) from None
    # De-identified rows only, but one per case, with the case id: logged like a read of the
    # cases, so the privacy officer can say where each case went (docs/privacy.md).
    record_access(
        action=AccessLogEntry.Action.DOWNLOAD_DATASET,
        case_ids=snapshot.case_ids(),
        actor=by,
        request=request,
        channel=channel,
        target=f"dataset {snapshot.pk}",
    )
    response = FileResponse(
        handle,
        as_attachment=True,
        filename=f"dataset-{snapshot.pk}-{snapshot.content_hash[:12]}.parquet",
        content_type=PARQUET_MEDIA_TYPE,
    )
    if snapshot.file_sha256:
        digest = base64.b64encode(bytes.fromhex(snapshot.file_sha256)).decode()
        response["Repr-Digest"] = f"sha-256=:{digest}:"
    response["Cache-Control"] = "private, no-store"
    return response
