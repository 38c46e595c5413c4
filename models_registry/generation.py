"""The serving generation: a counter in the shared cache that invalidates every process's routing.

Every activation change (and every start or end of an A/B test) bumps it. Each process keeps its
routing table (which version serves a model type, ``models_registry.serving.router``) and its loaded
models (``models_registry.serving.model_cache``) in memory, tagged with the generation it read. A
request compares the cached generation (a cache read, not a database query) with its own and
reloads the table when they differ, so an activation reaches every process within a request. With
Redis as the cache (``REDIS_URL``) this works across machines; the default file cache works across
the processes of one machine.

Below the models on purpose: the registry's and the experiments' models bump it on commit, and
serving reads it, so it imports nothing of the app.
"""

from __future__ import annotations

import time

from django.core.cache import cache

GENERATION_KEY = "models_registry:serving_generation"


def current_generation() -> int:
    value = cache.get(GENERATION_KEY)
    if value is None:
        # First use, or the key was lost (a flush, an eviction): start from the clock, for the
        # reason ``bump_generation`` gives.
        restart = time.time_ns() // 1_000
        cache.add(GENERATION_KEY, restart, timeout=None)
        value = cache.get(GENERATION_KEY, restart)
    return int(value)


def bump_generation() -> int:
    """Called on commit of every activation change and every start or end of an A/B test."""
    try:
        return int(cache.incr(GENERATION_KEY))
    except ValueError:
        # The key is missing (a cache flush). Start again from the clock, not from a constant: a
        # process may still hold a table tagged with the value the counter had before the flush,
        # and must not find it again by coincidence (it would keep serving the old version).
        restart = time.time_ns() // 1_000  # microseconds: fits any cache's 64-bit counter
        cache.add(GENERATION_KEY, restart, timeout=None)
        return int(cache.get(GENERATION_KEY, restart))
