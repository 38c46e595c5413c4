"""What pages call codes and keys: a diagnosis code with its name, a finding with its name and unit,
a symptom with its name, from the data dictionary.

Names come from dictionary definitions only, never from a case. ``Labels`` holds the names of one
dictionary version and is built once per process per definition (keyed by its sha256: equal
content, equal names; a published version never changes). ``current_labels`` reads which version is
current for every cohort with one query (definitions only for hashes the process has not parsed),
so a page costs the same queries whatever its number of rows.

A code or key no dictionary defines (legacy data, a cohort without a dictionary) reads as itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from threading import Lock
from typing import Any

from django.db import models

from cases.dictionary.definition import Definition
from cases.dictionary.models import DataDictionary
from cases.dictionary.units import print_unit

_CACHE_SIZE = 256


@dataclass(frozen=True, slots=True)
class FindingLabel:
    name: str
    unit: str  # printed (``print_unit``); empty when the finding has none

    def __str__(self) -> str:
        return f"{self.name} ({self.unit})" if self.unit else self.name


@dataclass(frozen=True, slots=True)
class Labels:
    """The names of one dictionary version (or of several, merged: ``merge``)."""

    diagnoses: Mapping[str, str] = field(default_factory=dict)
    findings: Mapping[str, FindingLabel] = field(default_factory=dict)
    symptoms: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, definition: Definition) -> Labels:
        return cls(
            diagnoses={item.code: item.display_name for item in definition.diagnoses},
            findings={item.key: FindingLabel(item.display_name, print_unit(item.unit)) for item in definition.findings},
            symptoms={item.key: item.display_name for item in definition.symptoms},
        )

    def diagnosis_name(self, code: Any) -> str:
        """The code's display name, empty when no dictionary names it."""
        return self.diagnoses.get(str(code or ""), "")

    def diagnosis(self, code: Any) -> str:
        """``C50.9 Malignant neoplasm of breast ...``; the code alone when it has no name."""
        text = str(code or "")
        name = self.diagnoses.get(text, "")
        return f"{text} {name}" if name else text

    def finding_name(self, key: Any) -> str:
        label = self.findings.get(str(key))
        return label.name if label is not None else str(key)

    def finding_unit(self, key: Any) -> str:
        label = self.findings.get(str(key))
        return label.unit if label is not None else ""

    def finding(self, key: Any) -> str:
        """``Heart rate (/min)``; the name alone without a unit; the key alone when it has no name."""
        label = self.findings.get(str(key))
        return str(label) if label is not None else str(key)

    def symptom(self, key: Any) -> str:
        return self.symptoms.get(str(key), str(key))

    def merge(self, other: Labels) -> Labels:
        """Both sets of names; where both name a code or key, this one's name stays."""
        return Labels(
            diagnoses={**other.diagnoses, **self.diagnoses},
            findings={**other.findings, **self.findings},
            symptoms={**other.symptoms, **self.symptoms},
        )


NO_LABELS = Labels()

# Per definition sha256: its parsed form and its names (a version's content never changes, and
# equal content has equal names, so the hash is the whole key).
_by_sha: dict[str, tuple[Definition, Labels]] = {}
_lock = Lock()


def _parsed(dictionary: DataDictionary) -> tuple[Definition, Labels]:
    found = _by_sha.get(dictionary.definition_sha256)
    if found is None:
        definition = dictionary.parsed
        found = (definition, Labels.of(definition))
        with _lock:
            if len(_by_sha) >= _CACHE_SIZE:
                _by_sha.clear()  # versions are few; this only bounds a long-lived process
            _by_sha[dictionary.definition_sha256] = found
    return found


def labels_of(dictionary: DataDictionary | None) -> Labels:
    """The names of ``dictionary`` (none for None), parsed once per process per definition."""
    return NO_LABELS if dictionary is None else _parsed(dictionary)[1]


def definition_of(dictionary: DataDictionary) -> Definition:
    """``dictionary.parsed``, parsed once per process per definition rather than once per instance."""
    return _parsed(dictionary)[0]


@dataclass(frozen=True, slots=True)
class CohortLabels:
    """The names of each cohort's current version, and all of them merged (cohorts in slug order)."""

    by_cohort: Mapping[str, Labels]
    merged: Labels

    def of(self, cohort: Any) -> Labels:
        """The names of ``cohort``'s current version (none for a cohort without one)."""
        return self.by_cohort.get(str(cohort or ""), NO_LABELS)

    def diagnosis(self, code: Any, cohort: Any = None) -> str:
        """A code with its name in ``cohort``, or in any cohort when no cohort is given."""
        return (self.of(cohort) if cohort is not None else self.merged).diagnosis(code)

    def diagnosis_name(self, code: Any, cohort: Any = None) -> str:
        return (self.of(cohort) if cohort is not None else self.merged).diagnosis_name(code)


def _read(queryset: Any) -> dict[str, Labels]:
    """Per cohort slug, the names of the newest version in ``queryset``: one query, which reads the
    definition only of a version whose hash the process has not parsed yet (so a page's query count
    does not depend on whether it is the first since the process started)."""
    known = dict(_by_sha)
    rows = queryset.annotate(
        new_definition=models.Case(
            models.When(definition_sha256__in=list(known), then=models.Value(None)),
            default=models.F("definition"),
            output_field=models.JSONField(),
        )
    ).order_by("cohort__slug", "-version")
    by_cohort: dict[str, Labels] = {}
    for pk, slug, version, sha, definition in rows.values_list(
        "pk", "cohort__slug", "version", "definition_sha256", "new_definition"
    ):
        if slug in by_cohort:
            continue  # an older version
        if sha in known:
            by_cohort[slug] = known[sha][1]
        else:
            dictionary = DataDictionary(pk=pk, version=version, definition=definition, definition_sha256=sha)
            by_cohort[slug] = labels_of(dictionary)
    return by_cohort


def current_labels(cohorts: Iterable[str] | None = None) -> CohortLabels:
    """The names of the current (newest published) version of ``cohorts`` (all by default): one query."""
    queryset = DataDictionary.objects.published()
    if cohorts is not None:
        queryset = queryset.filter(cohort__slug__in=sorted({str(slug) for slug in cohorts}))
    by_cohort = _read(queryset)
    merged = NO_LABELS
    for slug in sorted(by_cohort, reverse=True):  # the first cohort in slug order wins a clash
        merged = by_cohort[slug].merge(merged)
    return CohortLabels(by_cohort=by_cohort, merged=merged)


def version_labels(dictionary_id: int | None, cohort: str) -> Labels:
    """The names of the version a dataset or a model was built under (``dictionary_id``), else, for
    one built before dictionaries, of ``cohort``'s current version: one query."""
    if dictionary_id is not None:
        found = _read(DataDictionary.objects.filter(pk=dictionary_id))
        if found:
            return next(iter(found.values()))
    return current_labels([cohort]).of(cohort)


def request_labels(request: Any) -> CohortLabels:
    """``current_labels()`` once per request: a page's columns and filters share one read."""
    found: CohortLabels | None = getattr(request, "_dictionary_labels", None)
    if found is None:
        found = current_labels()
        request._dictionary_labels = found
    return found


def clear_cache() -> None:
    """Forget every parsed definition (tests)."""
    with _lock:
        _by_sha.clear()
