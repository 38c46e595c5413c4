"""What monitoring records as things happen: a version's reference at registration, live input tallies.

Both are connected in ``MonitoringConfig.ready()``: the reference to ``post_save`` of a new
``ModelVersion`` (on commit, after the registration's transaction), the tallies to serving's input
observer (``models_registry.serving.serve.register_input_observer``). Neither may break what it
watches: a failure is logged, the registration or the answer goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from django.db import transaction
from django.utils import timezone

from learning_engine.bulk_insert import insert_rows
from monitoring.models import InputTally, ReferenceProfile
from monitoring.profiles import Feature, Tally, features_of, features_of_reference, reference_of

logger = logging.getLogger(__name__)

# A version without a reference is looked up again after this long (its reference may be recorded
# since); one with a reference never changes and stays cached.
UNREFERENCED_RECHECK_SECONDS = 60.0
# The columns of an input tally's row, in ``observe_inputs``' tuple order.
TALLY_COLUMNS = ("version_id", "ab_test_id", "arm", "count", "tally", "created_at")


def record_reference(version: Any, *, rows: Sequence[Mapping[str, Any]] | None = None) -> ReferenceProfile | None:
    """Record ``version``'s reference profile from its snapshot's train split (``rows``: that split,
    when the caller has it). Idempotent; None when the version has no snapshot."""
    existing = ReferenceProfile.objects.filter(version=version).first()
    if existing is not None:
        return existing
    if version.dataset_id is None:
        return None
    if rows is None:
        from training.dataset_format import read_rows_by_split

        rows = list(read_rows_by_split(version.dataset)["train"])
    definition = version.dictionary.parsed if version.dictionary_id is not None else None
    finding_keys = {str(key) for row in rows for key in dict(row.get("findings") or {})}
    profile = reference_of(rows, features_of(definition, finding_keys))
    reference, _created = ReferenceProfile.objects.get_or_create(
        version=version, defaults={"dataset_id": version.dataset_id, "train_size": len(rows), "profile": profile}
    )
    return reference


def _record_after_commit(version_id: int) -> None:
    from models_registry.models import ModelVersion

    version = ModelVersion.objects.select_related("dataset", "dictionary").filter(pk=version_id).first()
    if version is None:
        return
    try:
        record_reference(version)
    except Exception:
        # The version stays registered; its snapshots will say it has no reference.
        logger.exception("Could not record the reference profile of version %s.", version_id)


def on_version_saved(sender: Any, instance: Any, created: bool = False, raw: bool = False, **kwargs: Any) -> None:
    """``post_save`` receiver of ``ModelVersion``: a new version's reference, once its row is committed."""
    if created and not raw:
        transaction.on_commit(lambda: _record_after_commit(instance.pk))


# --- Live tallies --------------------------------------------------------------------------------


class _Features:
    """Per version, the features its inputs are tallied over (from its reference, else its dictionary)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[int, tuple[list[Feature], bool, float]] = {}

    def get(self, version_id: int) -> tuple[list[Feature], bool]:
        now = time.monotonic()
        with self._lock:
            found = self._cache.get(version_id)
        if found is not None and (found[1] or now - found[2] < UNREFERENCED_RECHECK_SECONDS):
            return found[0], found[1]
        features, binned = _load_features(version_id)
        with self._lock:
            self._cache[version_id] = (features, binned, now)
        return features, binned

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()


def _load_features(version_id: int) -> tuple[list[Feature], bool]:
    from models_registry.models import ModelVersion

    reference = ReferenceProfile.objects.filter(version_id=version_id).values_list("profile", flat=True).first()
    if reference is not None:
        return features_of_reference(reference), True
    version = ModelVersion.objects.select_related("dictionary").filter(pk=version_id).first()
    definition = version.dictionary.parsed if version is not None and version.dictionary is not None else None
    ranges = version.training_ranges if version is not None else {}
    keys = [name.removeprefix("findings.") for name in ranges if name.startswith("findings.")]
    return features_of(definition, keys), False


FEATURES = _Features()


def observe_inputs(groups: list[tuple[Any, list[dict[str, Any]]]]) -> Callable[[], None] | None:
    """Serving's input observer: one ``InputTally`` per arm of the rows it predicted in one
    request. The tallies are worked out here, outside the log's transaction; the writer returned
    inserts them in one INSERT inside it (a warm predict pays one query for monitoring), without
    the ORM's per-object work (``learning_engine.bulk_insert``)."""
    now = timezone.now()
    tallies = []
    for arm, rows in groups:
        features, binned = FEATURES.get(arm.version_id)
        tally = Tally(features, binned=binned)
        for row in rows:
            tally.add(row)
        tallies.append((arm.version_id, arm.ab_test_id, arm.name or "", tally.count, tally.as_json(), now))
    if not tallies:
        return None

    def write() -> None:
        insert_rows(InputTally, TALLY_COLUMNS, tallies, using=InputTally.objects.db, returning=False)

    return write
