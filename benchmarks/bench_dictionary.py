"""What the data dictionary check costs (issue 11): predict and import with it against without it.

The issue's goal: validation adds at most 10% to single predict latency and to import throughput,
as ratios against the path before the dictionary, measured in the same run. Both paths run in this
process, the "before" one with the dictionary switched off at its narrowest seam:

- predict: ``models_registry.serving.serve._check_of``, where ``serve`` gets each arm's check (the loaded
  model's, else the cohort's current version's), returns None, as it did for every version before
  dictionaries: no check, no ``display_name``. The version is ``bench_predict.active_version``'s
  (it records the respiratory dictionary and its train split's ranges, as the worker's do); the
  records are ``bench_predict``'s compact ones with ``"allow_missing": true``. The single endpoint
  is timed per call, the two paths interleaved (their order alternating), medians compared; the
  batch predict of 1,000 records the same way, informational.
- import: ``cases.importing.check_record`` returns a result without a dictionary version and
  validates nothing, as before the dictionary (the quality score then uses the built-in plausible
  ranges, not the dictionary's expected ones). ``manage.py import_cases`` of the same generated
  file (``casegen``) into emptied tables, the two paths in alternating order, the best of two runs
  each; the ratio of times is the inverse of the throughput ratio.

The switched-off path is checked, never assumed: a record with an unknown finding is refused with
the check and taken without it, the patched seam counts its calls, predict answers carry the
dictionary version only with the check, and imported cases record it only with the check. A run
where "off" did not switch the check off raises instead of reporting a ratio near 1.
"""

from __future__ import annotations

import contextlib
import json
import statistics
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

from benchmarks import casegen
from benchmarks.bench_predict import _compact, _rows_and_records, active_version, prediction_client, serving_settings
from benchmarks.harness import Result, Timing, scaled, timer, workdir

GOAL = 1.10
SLUG = "bench-dictionary"
TRAINING_ROWS = 4000
SINGLE_CALLS = 400
BATCH_SIZE = 1000
BATCH_RUNS = 10
IMPORT_CASES = 20_000
IMPORT_RUNS = 2  # per path: the best of two, the usual guard against a busy neighbour
# A finding no dictionary defines: the check refuses a record with it, the path before took it.
UNKNOWN_FINDING = "bogus_feature"


class Switch:
    """Patches ``target`` with ``stub`` while on (``with switch: ...``), counting the stub's calls."""

    def __init__(self, target: str, stub: Callable[..., Any]) -> None:
        self.calls = 0

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return stub(*args, **kwargs)

        self._patch = mock.patch(target, counted)

    def __enter__(self) -> Switch:
        self._patch.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._patch.stop()


def serving_without_dictionary() -> Switch:
    """Predict as before the dictionary: ``serve`` finds no check for any arm."""
    return Switch("models_registry.serving.serve._check_of", lambda model, fallback: None)


def import_without_dictionary() -> Switch:
    """Import as before the dictionary: every record taken as it is, no dictionary version."""
    from cases.dictionary.checking import Checked
    from cases.dictionary.validation import ValidationResult

    unchecked = Checked(None, ValidationResult())  # type: ignore[arg-type]  # what the importer reads: .dictionary
    return Switch("cases.importing.check_record", lambda record, *, cache=None: unchecked)


@contextlib.contextmanager
def _maybe(switch: Switch, off: bool) -> Iterator[None]:
    if off:
        with switch:
            yield
    else:
        yield


# --- Predict -----------------------------------------------------------------------------------


def _predict(client: Any, url: str, body: bytes) -> Any:
    # secure=True: DEBUG is off here, so plain http would be redirected.
    return client.post(url, body, content_type="application/json", secure=True)


def _answered(response: Any, *, checked: bool, url: str) -> None:
    """A 200, carrying the dictionary version exactly when the check ran."""
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}: {response.content[:200]!r}")
    if (b'"dictionary_version"' in response.content) != checked:
        raise RuntimeError(
            f"{url} answered {'without' if checked else 'with'} a dictionary version "
            f"with the check {'on' if checked else 'off'}: the two paths are not what they claim."
        )


def _assert_predict_switch(client: Any, url: str, record: dict[str, Any], switch: Switch) -> None:
    """The check refuses a record with an unknown finding; switched off, the same record is answered."""
    bad = json.dumps({**record, "findings": {**record["findings"], UNKNOWN_FINDING: 1.0}}).encode()
    refused = _predict(client, url, bad)
    if refused.status_code != 400 or refused.json().get("code") != "unknown_findings":
        raise RuntimeError(f"With the dictionary check on, an unknown finding answered {refused.status_code}.")
    before = switch.calls
    with switch:
        taken = _predict(client, url, bad)
    if taken.status_code != 200 or switch.calls == before:
        raise RuntimeError(
            f"With the dictionary check switched off, an unknown finding answered {taken.status_code} "
            f"({switch.calls - before} calls of the switched-off seam): the check was not switched off."
        )


def _measure_predict() -> list[Result]:
    from models_registry.serving.model_cache import MODEL_CACHE
    from models_registry.serving.router import ROUTER

    user, version = active_version(SLUG, slug=SLUG, name="Dictionary benchmark", rows=scaled(TRAINING_ROWS), seed=21)
    if version.dictionary_id is None or not version.training_ranges:
        raise RuntimeError("The benchmark's version recorded no dictionary or no training ranges.")
    client = prediction_client(user)
    url = f"/api/v1/model-types/{SLUG}/predict/"
    batch_url = f"/api/v1/model-types/{SLUG}/predict/batch/"
    _, records = _rows_and_records(max(BATCH_SIZE, 50), seed=22)
    compact = [_compact(record) for record in records]
    single_bodies = [json.dumps(record).encode() for record in compact[:50]]
    size = min(BATCH_SIZE, len(compact))
    batch_body = json.dumps({"records": compact[:size]}).encode()
    switch = serving_without_dictionary()

    _assert_predict_switch(client, url, compact[0], switch)
    if MODEL_CACHE.get(ROUTER.route(SLUG).choose()).check is None:
        raise RuntimeError("The served model has no dictionary check: 'on' would measure the path without one.")

    def timed(target: str, body: bytes, *, off: bool) -> Timing:
        calls = switch.calls
        with _maybe(switch, off), timer() as elapsed:
            response = _predict(client, target, body)
        _answered(response, checked=not off, url=target)
        if off and switch.calls == calls:
            raise RuntimeError("The switched-off seam was not called: serving no longer gets its check there.")
        return elapsed

    for i in range(20):  # warm-up: routing table, model, code paths, both ways
        timed(url, single_bodies[i], off=i % 2 == 1)

    calls = scaled(SINGLE_CALLS)
    single: dict[bool, list[Timing]] = {True: [], False: []}  # keyed by "off"
    for i in range(calls):  # interleaved, the order alternating, so both see the same machine
        for off in (False, True) if i % 2 == 0 else (True, False):
            single[off].append(timed(url, single_bodies[i % 50], off=off))

    runs = max(2, scaled(BATCH_RUNS))
    batch: dict[bool, list[Timing]] = {True: [], False: []}
    for i in range(runs):
        for off in (False, True) if i % 2 == 0 else (True, False):
            batch[off].append(timed(batch_url, batch_body, off=off))

    def median_ms(samples: list[Timing], attribute: str = "wall") -> float:
        return statistics.median(getattr(sample, attribute) for sample in samples) * 1000

    def cpu_ratio(samples: dict[bool, list[Timing]]) -> float:
        return median_ms(samples[False], "cpu") / median_ms(samples[True], "cpu")

    return [
        Result(
            "predict, one record: dictionary check vs none (median)",
            median_ms(single[False]),
            "ms",
            baseline=median_ms(single[True]),
            max_ratio=GOAL,
            note=f"{calls} calls each, interleaved, order alternating; CPU-time ratio {cpu_ratio(single):.2f}x. "
            "Baseline: the same endpoint and process with models_registry.serving.serve._check_of returning None, "
            "the path before the dictionary (no check, no display_name)",
        ),
        Result(
            f"batch predict, {size:,} records: dictionary check vs none (median)",
            median_ms(batch[False]),
            "ms",
            baseline=median_ms(batch[True]),
            note=f"{runs} runs each, interleaved; CPU-time ratio {cpu_ratio(batch):.2f}x; baseline as above",
        ),
    ]


# --- Import ------------------------------------------------------------------------------------


def _assert_import_switch(switch: Switch) -> None:
    """The import refuses a record with an unknown finding; switched off, it takes it."""
    from cases import importing
    from cases.models import Case

    record = next(casegen.records(1, seed=casegen.SEED + 1, source="bench-dictionary-probe"))
    line = json.dumps({**record, "findings": {**record["findings"], UNKNOWN_FINDING: 1.0}})
    refused = importing.import_lines([line], by=casegen.submitter(), dry_run=True)
    if refused.failed != 1:
        raise RuntimeError("With the dictionary check on, the import took a record with an unknown finding.")
    before = switch.calls
    with switch:
        taken = importing.import_lines([line], by=casegen.submitter(), dry_run=True)
    if taken.created != 1 or switch.calls == before:
        raise RuntimeError("With the dictionary check switched off, the import still refused an unknown finding.")
    if Case.objects.exists():
        raise RuntimeError("The probe's dry run left a case behind.")


def _timed_import(path: Path, n: int, switch: Switch, *, off: bool) -> Timing:
    from cases.models import Case

    casegen.clear_cases()
    calls = switch.calls
    with _maybe(switch, off):
        timing = casegen.run_import(path)
    checked = Case.objects.filter(dictionary__isnull=False).count()
    if Case.objects.count() != n or checked != (0 if off else n):
        raise RuntimeError(
            f"The import with the check {'off' if off else 'on'} made {Case.objects.count()} cases, {checked} of "
            f"them with a dictionary version; expected {n}, {0 if off else n}."
        )
    if off and switch.calls - calls != n:
        raise RuntimeError(f"The switched-off check_record ran {switch.calls - calls} times for {n} records.")
    return timing


def _measure_import() -> list[Result]:
    casegen.cohort_dictionary()
    n = scaled(IMPORT_CASES)
    path = casegen.write_jsonl(workdir() / f"dictionary-cases-{n}.jsonl", n)
    switch = import_without_dictionary()
    _assert_import_switch(switch)

    runs: dict[bool, list[Timing]] = {True: [], False: []}
    for i in range(IMPORT_RUNS):
        for off in (False, True) if i % 2 == 0 else (True, False):
            runs[off].append(_timed_import(path, n, switch, off=off))
    casegen.clear_cases()
    checked = min(runs[False], key=lambda timing: timing.wall)
    unchecked = min(runs[True], key=lambda timing: timing.wall)

    def seconds(timings: list[Timing]) -> str:
        return ", ".join(f"{timing.wall:.2f} s" for timing in timings)

    return [
        Result(
            f"import_cases, {n:,} new cases: dictionary check vs none",
            checked.wall,
            "s",
            baseline=unchecked.wall,
            max_ratio=GOAL,
            note=f"{n / checked.wall:,.0f} vs {n / unchecked.wall:,.0f} cases/s "
            "(time ratio = inverse throughput ratio); "
            f"CPU-time ratio {checked.cpu / unchecked.cpu:.2f}x; best of {IMPORT_RUNS} each, order alternating "
            f"(with {seconds(runs[False])}; without {seconds(runs[True])}). Baseline: the same file and command "
            "with cases.importing.check_record validating nothing and giving no dictionary version, the import "
            "before the dictionary (quality against the built-in plausible ranges)",
        ),
    ]


def run() -> list[Result]:
    with serving_settings():
        results = _measure_predict()
    return results + _measure_import()
