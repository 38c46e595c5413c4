"""The serving generation: a counter in the shared cache that every activation change bumps.

Each process keeps its routing table (which version serves a model type) and its loaded models in
memory, tagged with the generation it read. A request compares the cached generation (a cache
read, not a database query) with its own and reloads the table when they differ, so an
activation reaches every process within a request. With Redis as the cache (``REDIS_URL``) this
works across machines; the default file cache works across the processes of one machine.
"""

from __future__ import annotations

from django.core.cache import cache

GENERATION_KEY = "models_registry:serving_generation"


def current_generation() -> int:
    value = cache.get(GENERATION_KEY)
    if value is None:
        cache.add(GENERATION_KEY, 1, timeout=None)
        value = cache.get(GENERATION_KEY, 1)
    return int(value)


def bump_generation() -> int:
    """Called on commit of every activation change."""
    try:
        return int(cache.incr(GENERATION_KEY))
    except ValueError:  # the key is missing (a cache flush): start again above any old value
        cache.add(GENERATION_KEY, 2, timeout=None)
        return int(cache.get(GENERATION_KEY, 2))
