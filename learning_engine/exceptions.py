"""Domain errors and the one API exception handler.

Models raise ``DomainError`` subclasses; they know nothing of HTTP. The handler below turns them
into 409 responses, and gives every other API error a JSON body with a machine-readable ``code``:

    {"code": "invalid_transition", "detail": "Case 12 is approved; cannot approve it."}
    {"code": "invalid", "detail": "The request is not valid.", "errors": {"field": ["..."]}}
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler


class DomainError(Exception):
    """A request that is well-formed but not allowed in the current state of the data."""

    code: str = "conflict"
    status_code: int = status.HTTP_409_CONFLICT

    def __init__(self, message: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.extra = extra


class TransitionError(DomainError):
    """The object is not in a state from which the requested transition is allowed."""

    code = "invalid_transition"


class FourEyesViolation(DomainError):
    """The same person may not both make and approve (two-person rule)."""

    code = "four_eyes_violation"


class ConcurrentUpdate(DomainError):
    """Someone else changed the object between our read and our write."""

    code = "concurrent_update"


class InvalidRequest(DomainError):
    """Input that no state could make acceptable (found by a model method, not a serializer): 400."""

    code = "invalid"
    status_code = status.HTTP_400_BAD_REQUEST


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "payload_too_large"


def _code_of(exc: exceptions.APIException) -> str:
    codes = exc.get_codes()
    if isinstance(codes, str):
        return codes
    return exc.default_code


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        body = {"code": exc.code, "detail": exc.message, **exc.extra}
        return Response(body, status=exc.status_code)
    if isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()

    response = exception_handler(exc, context)
    if response is None:
        return None  # A real bug: Django's 500 handler (JSON under /api/) takes it.

    if isinstance(exc, exceptions.ValidationError):
        response.data = {
            "code": "invalid",
            "detail": "The request is not valid.",
            "errors": response.data,
        }
    elif isinstance(exc, exceptions.APIException):
        detail = response.data.get("detail", str(exc)) if isinstance(response.data, dict) else response.data
        response.data = {"code": _code_of(exc), "detail": detail}
    elif isinstance(exc, Http404):
        response.data = {"code": "not_found", "detail": "Not found."}
    elif isinstance(exc, DjangoPermissionDenied):
        response.data = {"code": "permission_denied", "detail": "You do not have permission to perform this action."}
    return response


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def _is_admin(request: HttpRequest) -> bool:
    """An admin page read by a signed-in staff member: the refusal keeps the admin's navigation."""
    user = getattr(request, "user", None)
    return request.path.startswith("/admin/") and bool(user and user.is_active and user.is_staff)


def json_error(code: str, detail: str, status_code: int) -> JsonResponse:
    return JsonResponse({"code": code, "detail": detail}, status=status_code)


def handler404(request: HttpRequest, exception: Exception | None = None):
    if _is_api(request):
        return json_error("not_found", "Not found.", 404)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)  # type: ignore[arg-type]


def handler400(request: HttpRequest, exception: Exception | None = None):
    if _is_api(request):
        return json_error("bad_request", "Bad request.", 400)
    from django.views.defaults import bad_request

    return bad_request(request, exception)  # type: ignore[arg-type]


def handler403(request: HttpRequest, exception: Exception | None = None):
    if _is_api(request):
        return json_error("permission_denied", "You do not have permission to perform this action.", 403)
    if _is_admin(request):
        from learning_engine.admin_links import admin_permission_denied

        return admin_permission_denied(request, exception)
    from django.views.defaults import permission_denied

    return permission_denied(request, exception)  # type: ignore[arg-type]


def handler500(request: HttpRequest):
    if _is_api(request):
        return json_error("server_error", "Internal server error.", 500)
    from django.views.defaults import server_error

    return server_error(request)
