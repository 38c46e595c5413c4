"""Cases already on file checked again against their cohort's current dictionary version
(``manage.py validate_cases``, after a new version is published, say).

It lives beside the cases rather than in ``cases.dictionary``: the dictionary is below the case model
(a case records the version it passed), so the dictionary's modules never import ``cases.models``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from cases.dictionary.checking import DictionaryCache
from cases.dictionary.validation import Issue, validate_record
from cases.models import Case


@dataclass
class RecheckReport:
    passed: int = 0
    failed: int = 0

    def summary(self) -> str:
        return f"{self.passed} passed, {self.failed} flagged for review"


def recheck_cases(cases: Any, *, chunk_size: int = 1000, dry_run: bool = False) -> RecheckReport:
    """Check cases already on file against their cohort's current version (after a new version is
    published, say). A case that passes records the version and loses its flags; one that fails
    keeps its content and gets the problems in ``dictionary_errors``. Nothing else changes."""
    report = RecheckReport()
    cache = DictionaryCache()
    today = timezone.localdate()
    batch: list[Case] = []
    fields = ("id", "cohort", "patient", "encounter_date", "findings", "symptoms", "diagnosis_code")
    for case in cases.only(*fields).order_by("pk").iterator(chunk_size=chunk_size):
        dictionary = cache.current(case.cohort)
        if dictionary is None:
            errors = [Issue("unknown_cohort", "cohort", "The cohort has no published data dictionary.").to_json()]
        else:
            errors = validate_record(case.to_record(), dictionary.parsed, today=today).errors_json()
        case.dictionary = None if errors else dictionary
        case.dictionary_errors = errors
        if errors:
            report.failed += 1
        else:
            report.passed += 1
        batch.append(case)
        if len(batch) >= chunk_size:
            if not dry_run:
                Case.objects.bulk_update(batch, ["dictionary", "dictionary_errors"])
            batch = []
    if batch and not dry_run:
        Case.objects.bulk_update(batch, ["dictionary", "dictionary_errors"])
    return report
