"""Routing: which version answers a model type's predictions, without a query per request.

Each process holds one routing table, every model type with the arms that serve it, tagged with
the serving generation it was read under (``models_registry.generation``). A request reads the
generation from the shared cache (not the database) and uses the table while the two agree; an
activation change bumps the generation on commit, so the next request in every process reloads the
table (three queries) and serves the new version. The generation is read before the table, so a
change that commits during a reload leaves the table tagged older than the cache: it is reloaded
again on the next request, never kept stale.

If the cache cannot be read (Redis down), routing does not guess: every request reloads the table
from the database until the cache answers again. Slower, never wrong.

A/B tests: ``_load_arms`` replaces the single active version (one arm named "", the answer's
``arm`` null) by a running test's two arms "a" and "b", whatever the active version is. Starting,
stopping and concluding a test bump the generation like an activation does.

- Split mode: ``Route.choose`` sends a subject to B when a hash of (test id, subject pseudonym),
  read as a number in [0, 1), is below the test's ``traffic_split``: deterministic and sticky (the
  same subject always sees the same arm, in every process, with no state), independent between
  tests, and uniform, so the observed split matches the configured one. A request without a
  subject key is assigned at random (its prediction row has no pseudonym, so it is counted as
  such in the test's figures).
- Shadow mode: A answers every request; ``Route.shadow`` is B, which ``serving.serve.serve`` asks for
  the same inputs afterwards and logs as shadow predictions (never returned).
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from learning_engine.exceptions import DomainError

logger = logging.getLogger(__name__)

# At most one warning per this many seconds while the cache cannot be read.
CACHE_WARNING_INTERVAL_S = 60.0


class NoActiveVersion(DomainError):
    """The model type exists but no version serves it: 409."""

    code = "no_active_version"


class UnknownModelType(DomainError):
    """No model type has this slug: 404."""

    code = "not_found"
    status_code = 404


@dataclass(frozen=True, slots=True)
class Arm:
    """A version that serves a model type; ``name`` is the A/B arm ("" outside a test)."""

    name: str
    version_id: int
    version: str
    artifact: str
    artifact_sha256: str
    dataset_id: int | None
    ab_test_id: int | None = None


@dataclass(frozen=True, slots=True)
class RunningTest:
    """A running A/B test as the router needs it."""

    id: int
    mode: str  # "split" or "shadow"
    traffic_split: float  # share of subjects sent to B


def b_share(test_id: int, subject: str) -> float:
    """A subject's position in [0, 1) for a test: below the split means B (deterministic)."""
    digest = hashlib.sha256(f"{test_id}:{subject}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_b(test_id: int, subject: str, traffic_split: float) -> bool:
    """Whether a request goes to arm B: sticky per subject, at random without one."""
    if subject:
        return b_share(test_id, subject) < traffic_split
    return random.random() < traffic_split  # an assignment, not a secret


@dataclass(frozen=True, slots=True)
class Route:
    model_type_id: int
    slug: str
    cohort: str
    arms: tuple[Arm, ...]
    test: RunningTest | None = None

    def choose(self, *, subject: str = "") -> Arm:
        """The arm that answers a request (``subject``: its subject pseudonym, "" for none).

        Without a test, the active version. In a split test, A or B (see the module docstring);
        in a shadow test, always A.
        """
        self.check_served()
        test = self.test
        if test is None or test.mode != "split" or len(self.arms) < 2:
            return self.arms[0]
        return self.arms[1] if assign_b(test.id, subject, test.traffic_split) else self.arms[0]

    @property
    def shadow(self) -> Arm | None:
        """The arm that predicts every request silently (shadow tests: B), else None."""
        if self.test is not None and self.test.mode == "shadow" and len(self.arms) == 2:
            return self.arms[1]
        return None

    def check_served(self) -> None:
        """Raise ``NoActiveVersion`` (409) when no version serves this model type."""
        if not self.arms:
            raise NoActiveVersion(
                f"Model type {self.slug} has no active version; a clinical lead must activate one.",
                model_type=self.slug,
            )


@dataclass(frozen=True, slots=True)
class RoutingTable:
    generation: int | None  # None: read while the cache was unreadable, so never trusted again
    routes: dict[str, Route]
    # Per cohort slug, what predict checks records against (``models_registry.serving.
    # dictionary_check``), read once per table: a table lives for one serving generation, and
    # publishing a dictionary version bumps the generation.
    dictionaries: dict[str, Any] = field(default_factory=dict)

    def version_ids(self) -> set[int]:
        return {arm.version_id for route in self.routes.values() for arm in route.arms}


VERSION_FIELDS = ("id", "model_type_id", "version", "artifact", "artifact_sha256", "dataset_id")


def _arm(name: str, row: Mapping[str, Any], *, test_id: int | None = None, prefix: str = "") -> Arm:
    return Arm(
        name=name,
        version_id=row[f"{prefix}id"],
        version=row[f"{prefix}version"],
        artifact=row[f"{prefix}artifact"],
        artifact_sha256=row[f"{prefix}artifact_sha256"],
        dataset_id=row[f"{prefix}dataset_id"],
        ab_test_id=test_id,
    )


def _load_arms(
    active_versions: Iterable[Mapping[str, Any]], running_tests: Iterable[Mapping[str, Any]] = ()
) -> tuple[dict[int, tuple[Arm, ...]], dict[int, RunningTest]]:
    """The arms per model type id: its running test's A and B, else its active version."""
    arms: dict[int, tuple[Arm, ...]] = {}
    for row in active_versions:
        arms[row["model_type_id"]] = (_arm("", row),)
    tests: dict[int, RunningTest] = {}
    for row in running_tests:
        test_id = row["id"]
        arms[row["model_type_id"]] = (
            _arm("a", row, test_id=test_id, prefix="version_a__"),
            _arm("b", row, test_id=test_id, prefix="version_b__"),
        )
        tests[row["model_type_id"]] = RunningTest(
            id=test_id, mode=row["mode"], traffic_split=float(row["traffic_split"])
        )
    return arms, tests


# The running A/B tests, as ``values()`` rows of the fields ``_load_arms`` reads. A/B tests sit a
# layer above serving (``models_registry.experiments``), which registers its query from
# ``AppConfig.ready()`` (a callback this layer declares; serving never imports the experiments).
# None registered: no test routes.
RunningTests = Callable[[Sequence[str]], Iterable[Mapping[str, Any]]]
_running_tests: RunningTests | None = None


def register_running_tests(source: RunningTests) -> None:
    """Set the source of running A/B tests that ``load_routes`` reads (one, replaced on a new call)."""
    global _running_tests
    _running_tests = source


def load_routes() -> dict[str, Route]:
    """Every model type and its arms, from the database (three queries)."""
    from models_registry.registry.models import ModelVersion
    from training.models import ModelType

    active = ModelVersion.objects.active().values(*VERSION_FIELDS)
    running = _running_tests(VERSION_FIELDS) if _running_tests is not None else ()
    arms, tests = _load_arms(active, running)
    return {
        slug: Route(model_type_id=pk, slug=slug, cohort=cohort, arms=arms.get(pk, ()), test=tests.get(pk))
        for pk, slug, cohort in ModelType.objects.values_list("id", "slug", "cohort")
    }


class Router:
    """The process's routing table (see the module docstring). Thread-safe."""

    def __init__(
        self,
        *,
        load: Callable[[], dict[str, Route]] = load_routes,
        on_reload: Callable[[RoutingTable], None] | None = None,
    ) -> None:
        self._load = load
        self._on_reload = on_reload
        self._table: RoutingTable | None = None
        self._lock = threading.Lock()
        self._last_cache_warning = 0.0
        self.reloads = 0  # for tests and the health page: how often this process reloaded

    def route(self, slug: str) -> Route:
        """The route of model type ``slug``; raises ``UnknownModelType`` (404)."""
        return self.route_in_table(slug)[0]

    def route_in_table(self, slug: str) -> tuple[Route, RoutingTable]:
        """The route of model type ``slug`` and the table it was read from (one generation read)."""
        table = self.table()
        route = table.routes.get(slug)
        if route is None:
            route = self._missing(slug)
        return route, table

    def table(self) -> RoutingTable:
        generation = self._generation()
        table = self._table
        if table is not None and generation is not None and table.generation == generation:
            return table
        with self._lock:
            table = self._table  # another thread may have reloaded while this one waited
            if table is None or generation is None or table.generation != generation:
                table = RoutingTable(generation=generation, routes=self._load())
                self._table = table
                self.reloads += 1
                if self._on_reload is not None:
                    self._on_reload(table)
        return table

    def reset(self) -> None:
        """Forget the table (tests; a process that wants a cold start)."""
        with self._lock:
            self._table = None

    def _missing(self, slug: str) -> Route:
        # A model type created after the table was read. It cannot have an active version yet
        # without an activation, which would have bumped the generation: so it is 409, not a
        # reason to reload. One query, only on this path.
        from training.models import ModelType

        found = ModelType.objects.filter(slug=slug).values_list("id", "cohort").first()
        if found is None:
            raise UnknownModelType(f"There is no model type {slug!r}.")
        return Route(model_type_id=found[0], slug=slug, cohort=found[1], arms=())

    def _generation(self) -> int | None:
        from models_registry.generation import current_generation

        try:
            return current_generation()
        except Exception:  # the cache backend is down: fall back to the database (see above)
            now = time.monotonic()
            if now - self._last_cache_warning >= CACHE_WARNING_INTERVAL_S:
                self._last_cache_warning = now
                logger.warning("Serving generation unreadable (cache down); routing reloads per request.")
            return None


def _retain_loaded_models(table: RoutingTable) -> None:
    from models_registry.serving.model_cache import MODEL_CACHE

    MODEL_CACHE.retain(table.version_ids())


ROUTER = Router(on_reload=_retain_loaded_models)
