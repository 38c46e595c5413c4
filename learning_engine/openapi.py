"""The OpenAPI schema class of every API view: the standard error answers declared once.

Every endpoint can answer some errors whatever it does: a malformed query or body (400), no or a
bad token (401), a missing permission (403), an unknown object in the path (404), a body over the
size limit (413) or of a media type it does not parse (415), too many requests (429). Declaring
them by hand on each view was forgotten often enough that the schema fuzzer
(``tests/fuzz/test_schema_fuzz.py``) found undocumented answers; here they are added to every
operation that can give them, unless the view already documents that status with its own
description or serializer. Domain answers (409 and a view's own 400 codes) stay with the views.

Operations are named for what they do (``OPERATION_IDS``: ``predict``, ``give_feedback``,
``create_training_job``), the names a generated client's functions get, and grouped by tag
(``TAGS``, the headings of Swagger UI) from their path (``tag_of``).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import FieldDoesNotExist
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework.permissions import AllowAny

from learning_engine.serializers import ErrorSerializer
from learning_engine.throttling import scope_of

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

# (method, path) -> operation id. A path missing here still gets a verb-first name (``_default_id``).
OPERATION_IDS = {
    ("GET", "/api/v1/"): "api_root",
    ("GET", "/api/v1/model-types/{slug}/monitoring/"): "get_monitoring",
    ("GET", "/api/v1/health/"): "check_health",
    ("POST", "/api/v1/auth/token/"): "obtain_token",
    ("POST", "/api/v1/auth/token/refresh/"): "refresh_token",
    ("POST", "/api/v1/auth/token/blacklist/"): "blacklist_token",
    ("GET", "/api/v1/access-log/"): "list_access_log_entries",
    ("GET", "/api/v1/access-log/{id}/"): "get_access_log_entry",
    ("GET", "/api/v1/cases/"): "list_cases",
    ("POST", "/api/v1/cases/"): "submit_case",
    ("GET", "/api/v1/cases/{id}/"): "get_case",
    ("PUT", "/api/v1/cases/{id}/"): "update_case",
    ("PATCH", "/api/v1/cases/{id}/"): "partial_update_case",
    ("POST", "/api/v1/cases/{id}/approve/"): "approve_case",
    ("POST", "/api/v1/cases/{id}/reject/"): "reject_case",
    ("POST", "/api/v1/cases/{id}/retract/"): "retract_case",
    ("POST", "/api/v1/cases/import/"): "import_cases",
    ("GET", "/api/v1/cases/statistics/"): "get_case_statistics",
    ("GET", "/api/v1/cohorts/"): "list_cohorts",
    ("GET", "/api/v1/cohorts/{slug}/"): "get_cohort",
    ("GET", "/api/v1/cohorts/{slug}/schema/"): "get_cohort_record_schema",
    ("GET", "/api/v1/datasets/"): "list_datasets",
    ("POST", "/api/v1/datasets/"): "create_dataset",
    ("GET", "/api/v1/datasets/{id}/"): "get_dataset",
    ("GET", "/api/v1/datasets/{id}/download/"): "download_dataset",
    ("GET", "/api/v1/training/jobs/"): "list_training_jobs",
    ("POST", "/api/v1/training/jobs/"): "create_training_job",
    ("GET", "/api/v1/training/jobs/{id}/"): "get_training_job",
    ("POST", "/api/v1/training/jobs/{id}/cancel/"): "cancel_training_job",
    ("POST", "/api/v1/training/jobs/{id}/retry/"): "retry_training_job",
    ("POST", "/api/v1/training/jobs/{id}/start/"): "start_training_job",
    ("PATCH", "/api/v1/training/jobs/{id}/progress/"): "report_training_progress",
    ("POST", "/api/v1/training/jobs/{id}/complete/"): "complete_training_job",
    ("POST", "/api/v1/training/jobs/{id}/fail/"): "fail_training_job",
    ("GET", "/api/v1/model-types/"): "list_model_types",
    ("GET", "/api/v1/model-types/{slug}/"): "get_model_type",
    ("GET", "/api/v1/model-types/{slug}/history/"): "get_activation_history",
    ("GET", "/api/v1/model-types/{slug}/compare/"): "compare_versions",
    ("POST", "/api/v1/model-types/{slug}/rollback/"): "roll_back",
    ("GET", "/api/v1/model-types/{slug}/versions/"): "list_versions",
    ("POST", "/api/v1/model-types/{slug}/versions/upload/"): "upload_version",
    ("GET", "/api/v1/model-types/{slug}/versions/{version}/"): "get_version",
    ("POST", "/api/v1/model-types/{slug}/versions/{version}/approve/"): "approve_version",
    ("POST", "/api/v1/model-types/{slug}/versions/{version}/reject/"): "reject_version",
    ("POST", "/api/v1/model-types/{slug}/versions/{version}/activate/"): "activate_version",
    ("POST", "/api/v1/model-types/{slug}/versions/{version}/deactivate/"): "deactivate_version",
    ("POST", "/api/v1/model-types/{slug}/versions/{version}/archive/"): "archive_version",
    ("GET", "/api/v1/model-types/{slug}/versions/{version}/performance/"): "list_performance_records",
    ("POST", "/api/v1/model-types/{slug}/versions/{version}/performance/"): "record_performance",
    ("POST", "/api/v1/model-types/{slug}/predict/"): "predict",
    ("POST", "/api/v1/model-types/{slug}/predict/batch/"): "predict_batch",
    ("POST", "/api/v1/predictions/{id}/feedback/"): "give_feedback",
    ("GET", "/api/v1/model-types/{slug}/ab-tests/"): "list_ab_tests",
    ("POST", "/api/v1/model-types/{slug}/ab-tests/"): "start_ab_test",
    ("GET", "/api/v1/model-types/{slug}/ab-tests/{id}/"): "get_ab_test",
    ("POST", "/api/v1/model-types/{slug}/ab-tests/{id}/stop/"): "stop_ab_test",
    ("POST", "/api/v1/model-types/{slug}/ab-tests/{id}/conclude/"): "conclude_ab_test",
    ("GET", "/cds-services"): "discover_cds_services",
    ("POST", "/cds-services/{service_id}"): "call_cds_service",
    ("POST", "/cds-services/{service_id}/feedback"): "give_cds_feedback",
}

_VERBS = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "partial_update", "DELETE": "delete"}


def drop_unused_tags(result: dict[str, Any], generator: Any, request: Any, public: Any) -> dict[str, Any]:
    """A postprocessing hook: the declared tags that no operation has are left out (Swagger UI would
    show them as empty headings)."""
    used = {tag for operations in result.get("paths", {}).values() for op in operations.values() for tag in op["tags"]}
    result["tags"] = [tag for tag in result.get("tags", []) if tag["name"] in used]
    return result


def tag_of(path: str) -> str:
    """The tag of an operation, from its path under /api/v1/."""
    if path.startswith("/cds-services"):
        return "CDS Hooks"
    rest = path.removeprefix("/api/v1/")
    first = rest.split("/", 1)[0]
    if first == "model-types":
        if "/predict/" in rest:
            return "serving"
        if "/ab-tests/" in rest:
            return "A/B tests"
        if rest.endswith("/monitoring/"):
            return "monitoring"
        return "registry"
    return {
        "": "health",
        "health": "health",
        "auth": "auth",
        "cases": "cases",
        "cohorts": "cohorts",
        "dictionaries": "cohorts",
        "datasets": "datasets",
        "training": "training",
        "predictions": "serving",
        "access-log": "access log",
    }.get(first, first)


DESCRIPTIONS = {
    400: "Invalid input: code 'invalid' (with 'errors' by field), 'parse_error' (a body that is not JSON, "
    "not UTF-8 or nested too deeply), or a code of the endpoint's own.",
    401: "Not authenticated, or the token is invalid, expired or revoked (code 'not_authenticated', "
    "'authentication_failed' or 'token_not_valid').",
    403: "Authenticated but without the permission this action needs (code 'permission_denied').",
    404: "No such object, or not visible to you, or a page past the last (code 'not_found').",
    413: "The request body is over the limit (code 'payload_too_large', with 'limit').",
    415: "A Content-Type the endpoint does not parse (code 'unsupported_media_type').",
    429: "Too many requests (code 'throttled'); the Retry-After header says when to try again.",
}


def _nullable_source(field: Any) -> bool:
    """Whether a serializer field reads a nullable model column (or goes through a nullable relation)."""
    model = getattr(getattr(field.parent, "Meta", None), "model", None)
    for attr in getattr(field, "source_attrs", None) or []:
        if model is None:
            return False
        try:
            model_field = model._meta.get_field(attr)
        except FieldDoesNotExist:
            return False
        if getattr(model_field, "null", False):
            return True
        model = model_field.related_model if model_field.is_relation else None
    return False


class AutoSchema(SpectacularAutoSchema):
    """drf-spectacular's AutoSchema plus the standard error answers (see the module docstring), and
    read-only fields of nullable columns documented as nullable: DRF drops ``allow_null`` from
    read-only model fields, so ``reviewed_by`` or ``approved_by`` (null until someone acts) would
    otherwise be documented as always a string, and every pending object would break the schema."""

    def _get_serializer_field_meta(self, field: Any, direction: Any) -> dict[str, Any]:
        meta = super()._get_serializer_field_meta(field, direction)
        if getattr(field, "read_only", False) and "nullable" not in meta and _nullable_source(field):
            meta["nullable"] = True
        return meta

    def get_operation_id(self) -> str:
        return OPERATION_IDS.get((self.method, self.path)) or self._default_id()

    def _default_id(self) -> str:
        """``<verb>_<path words>`` (``list_`` for a list) for a path not in ``OPERATION_IDS``."""
        words = [word.replace("-", "_") for word in self._tokenize_path() if word != "v1"]
        verb = "list" if self.method == "GET" and self._is_list_view() else _VERBS.get(self.method, "call")
        return "_".join([verb, *words]) if words else "api_root"

    def get_tags(self) -> list[str]:
        return [tag_of(self.path)]

    def standard_error_codes(self) -> list[int]:
        view = self.view
        codes = [400]
        permissions = [permission() for permission in getattr(view, "permission_classes", [])]
        anonymous_allowed = all(isinstance(permission, AllowAny) for permission in permissions)
        if not anonymous_allowed:
            codes += [401, 403]
        elif getattr(view, "authentication_classes", None):
            codes.append(401)  # a bad token is refused even where anonymous requests are welcome
        if "{" in self.path or self._is_paginated_list():
            codes.append(404)
        if self.method in BODY_METHODS:
            codes += [413, 415]
        if scope_of(view):
            codes.append(429)
        return codes

    def _is_paginated_list(self) -> bool:
        # DRF answers a page number past the last page with 404.
        return self.method == "GET" and self._is_list_view() and bool(getattr(self.view, "pagination_class", None))

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        for code in self.standard_error_codes():
            key = str(code)
            if key not in responses:
                error = OpenApiResponse(ErrorSerializer, description=DESCRIPTIONS[code])
                responses[key] = self._get_response_for_code(error, key, direction=direction)
        return responses
