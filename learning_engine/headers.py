"""Response headers that keep patient data out of caches.

Every dynamic answer may carry patient data (a case page, an API list, an error that echoes a
field), so none may be stored by a browser, a proxy or a shared cache: ``Cache-Control: no-store``
(with Django's other never-cache headers) on every response but static files. The admin's own views
already say so; the API's did not.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers
from django.utils.http import http_date

# What ``add_never_cache_headers`` writes on a response that has neither header (most of them:
# every API answer), set directly: patching parses and rebuilds Cache-Control, about 3% of a warm
# predict request. A test checks both write the same.
NEVER_CACHE = "max-age=0, no-cache, no-store, must-revalidate, private"


class NoStoreMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.static_prefix = "/" + str(settings.STATIC_URL).lstrip("/")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not request.path.startswith(self.static_prefix):
            if "Cache-Control" in response or "Expires" in response:
                add_never_cache_headers(response)  # merged with what the view said
            else:
                response.headers["Expires"] = http_date(time.time())
                response.headers["Cache-Control"] = NEVER_CACHE
        return response
