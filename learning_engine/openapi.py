"""The OpenAPI schema class of every API view: the standard error answers declared once.

Every endpoint can answer some errors whatever it does: a malformed query or body (400), no or a
bad token (401), a missing permission (403), an unknown object in the path (404), a body over the
size limit (413) or of a media type it does not parse (415), too many requests (429). Declaring
them by hand on each view was forgotten often enough that the schema fuzzer
(``tests/fuzz/test_schema_fuzz.py``) found undocumented answers; here they are added to every
operation that can give them, unless the view already documents that status with its own
description or serializer. Domain answers (409 and a view's own 400 codes) stay with the views.
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
