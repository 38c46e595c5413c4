"""DRF's content negotiation with a shortcut for the requests nearly every client sends.

A record system or script calling the API sends no ``Accept`` header, ``*/*`` or the first
renderer's own media type (``application/json``), and no ``?format=``. For those DRF's negotiation
still parses the header into media types, orders them by precedence and matches each against each
renderer: about 4% of a warm predict request's time (the HTTP benchmark's profile). Its answer is
then always the first renderer with that renderer's media type, which the shortcut returns at once.
Anything else (another Accept header, parameters, a format override or suffix) goes through DRF's
own ``DefaultContentNegotiation``, unchanged; a test checks that both agree on the shortcut's cases.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request


class ContentNegotiation(DefaultContentNegotiation):
    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderers = list(renderers)
        if renderers and format_suffix is None:
            first = renderers[0]
            accept = request.META.get("HTTP_ACCEPT")
            if (accept is None or accept in ("*/*", first.media_type)) and not self._format_asked(request):
                return first, first.media_type
        result: tuple[BaseRenderer, str] = super().select_renderer(request, renderers, format_suffix)
        return result

    def _format_asked(self, request: Request) -> bool:
        parameter: Any = self.settings.URL_FORMAT_OVERRIDE
        return bool(parameter) and parameter in request._request.GET
