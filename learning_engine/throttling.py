"""Request throttling for the endpoints worth attacking: token issue and predictions.

One fixed-window counter per client and scope in the shared "throttle" cache (``cache.add`` then
``cache.incr``: two cache operations, no SQL, so the predict endpoint's query budget is unchanged
and every web process counts against the same limit when the cache is Redis; without Redis the
predict and feedback counters are each process's own, see ``settings.THROTTLE_LOCAL_SCOPES``).
A window allows up to twice the rate across its boundary; that is the price of O(1) work per
request, where DRF's sliding-window throttles rewrite a list of every recent request's time.

Who a client is: the user for an authenticated request, else the address. The address is
``REMOTE_ADDR`` unless ``NUM_PROXIES`` (environment, default 0) says how many proxies of ours
stand in front; then it is the entry those proxies added to ``X-Forwarded-For`` (DRF's
``get_ident``), so a client cannot choose its own identity by sending a forged header.

Rates come from the environment (``THROTTLE_TOKEN_RATE``, ``THROTTLE_PREDICT_RATE``,
``THROTTLE_FEEDBACK_RATE``, e.g. ``30/min``); an empty rate turns that throttle off.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.cache import caches
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _now() -> float:
    return time.time()  # a function of its own, so that tests can stop the clock mid-window


def scope_of(view: Any) -> str | None:
    """The throttle scope of a view (instance or class), or None when it is not throttled."""
    # An instance's own attribute counts: a viewset action sets it (``@action(throttle_scope=...)``).
    return getattr(view, "throttle_scope", None)


def parse_rate(rate: str) -> tuple[int, int]:
    """'30/min' -> (30, 60): requests per window of seconds."""
    count, _, period = rate.partition("/")
    seconds = PERIODS.get(period.strip()[:1].lower())
    if seconds is None or not count.strip().isdigit():
        raise ValueError(f"A throttle rate looks like '30/min' (s, min, hour, day), got {rate!r}.")
    return int(count), seconds


class ScopedCacheThrottle(BaseThrottle):
    """The default throttle of every API view; it acts only on views with a scope (``scope_of``)."""

    def __init__(self) -> None:
        self.wait_seconds: float | None = None

    def client_key(self, request: Request) -> str:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            return f"user:{user.pk}"
        return f"addr:{self.get_ident(request)}"

    def allow_request(self, request: Request, view: Any) -> bool:
        scope = scope_of(view)
        rate = settings.THROTTLE_RATES.get(scope) if scope else None
        if not rate:
            return True
        limit, window = parse_rate(rate)
        now = _now()
        index = int(now // window)
        key = f"throttle:{scope}:{self.client_key(request)}:{window}:{index}"
        # Never the serving generation's cache; the busy scopes in each process's memory when there
        # is no Redis (settings.THROTTLE_LOCAL_SCOPES says why).
        cache = caches["throttle_local" if scope in settings.THROTTLE_LOCAL_SCOPES else "throttle"]
        cache.add(key, 0, timeout=window + 1)
        try:
            count = cache.incr(key)
        except ValueError:  # the entry expired between add and incr
            cache.set(key, 1, timeout=window + 1)
            count = 1
        if count > limit:
            self.wait_seconds = (index + 1) * window - now
            return False
        return True

    def wait(self) -> float | None:
        return self.wait_seconds
