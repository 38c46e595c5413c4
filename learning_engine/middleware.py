"""Request size limits, answered with 413 before a body is read.

DRF reads the request stream itself, so Django's DATA_UPLOAD_MAX_MEMORY_SIZE does not protect
API views; this middleware does. A view may raise its own bound with a ``max_body_bytes``
attribute (the case import endpoint does, via ``action(max_body_bytes=...)``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse


def _view_limit(view_func: Callable[..., Any]) -> int | None:
    """The view's own bound: an int, or the name of a setting that holds one."""
    limit = getattr(view_func, "max_body_bytes", None)
    if limit is None:
        initkwargs = getattr(view_func, "initkwargs", None) or {}
        limit = initkwargs.get("max_body_bytes")
    if limit is None:
        cls = getattr(view_func, "cls", None) or getattr(view_func, "view_class", None)
        limit = getattr(cls, "max_body_bytes", None)
    if limit is None:
        return None
    return int(getattr(settings, limit)) if isinstance(limit, str) else int(limit)


class RequestBodyLimitMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> HttpResponse | None:
        raw = request.META.get("CONTENT_LENGTH") or "0"
        try:
            length = int(raw)
        except ValueError:
            length = -1
        if length < 0:
            return JsonResponse({"code": "bad_request", "detail": "Invalid Content-Length."}, status=400)
        limit = _view_limit(view_func)
        if limit is None:
            limit = int(settings.MAX_REQUEST_BODY_BYTES)
        if length > limit:
            return JsonResponse(
                {
                    "code": "payload_too_large",
                    "detail": f"The request body is {length} bytes; the limit here is {limit} bytes.",
                    "limit": limit,
                },
                status=413,
            )
        return None
