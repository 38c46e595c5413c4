"""Stored de-identified records brought up to the current de-identification policy.

Approval stores a case's de-identified record with the version of the policy that made it
(``Case.deid_policy_version``) and the columns derived from it (``cases.derived.approval_columns``). When
the policy changes (``cases.deid.safe_harbor.POLICY_VERSION``: a scrubber that catches more), a record made under an
older one may hold what the new one removes, and it is what ML staff see and datasets are built
from. ``redeidentify`` makes each such record again from the case's raw record, under the current
policy; the case's clinical content and status do not change.

It runs from ``manage.py redeidentify_cases`` (every stale case, after an upgrade) and from a
dataset build (the stale cases of its selection, before they are read), so a build never mixes
policies and never needs the command to have run.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable

from django.conf import settings
from django.db.models import QuerySet

from cases.deid.records import deidentify
from cases.deid.safe_harbor import POLICY_VERSION
from cases.derived import approval_columns
from cases.models import Case

CHUNK_SIZE = 500
# Statuses whose de-identified record someone may still read (a retracted case stays visible to
# ML staff and in the snapshots that hold it; its record is refreshed too).
STATUSES = (Case.Status.APPROVED, Case.Status.RETRACTED)


def stale(cases: QuerySet[Case] | None = None) -> QuerySet[Case]:
    """The cases (of ``cases``, else all) whose stored record was made under another policy."""
    queryset = Case.objects.all() if cases is None else cases
    return queryset.filter(status__in=STATUSES).exclude(deid_policy_version=POLICY_VERSION)


def redeidentify(
    case_ids: Iterable[int], *, progress: Callable[[int], None] | None = None, dry_run: bool = False
) -> int:
    """De-identify these cases again under the current policy where their record is of another;
    the number done (or, with ``dry_run``, that would be).

    Each update is conditional on the case being as it was read (status, revision, policy), so a
    case approved, retracted or refreshed meanwhile is left to whoever changed it.
    """
    done = 0
    iterator = iter(case_ids)
    while chunk := list(itertools.islice(iterator, CHUNK_SIZE)):
        for case in stale(Case.objects.filter(pk__in=chunk)).order_by("pk"):
            if not dry_run:
                record = case.to_record()
                deidentified = deidentify(record, key=settings.PSEUDONYM_KEY)
                derived = approval_columns(record.patient, deidentified)
                updated = Case.objects.filter(
                    pk=case.pk, status=case.status, revision=case.revision, deid_policy_version=case.deid_policy_version
                ).update(
                    deidentified=deidentified,
                    deid_policy_version=POLICY_VERSION,
                    patient_pseudonym=deidentified["patient_pseudonym"],
                    **derived,
                )
                if not updated:
                    continue
            done += 1
        if progress is not None:
            progress(done)
    return done


def redeidentify_stale(
    cases: QuerySet[Case] | None = None, *, progress: Callable[[int], None] | None = None, dry_run: bool = False
) -> int:
    """``redeidentify`` every stale case of ``cases`` (else of all), reading their ids a chunk at a
    time in id order (the refreshed ones leave the selection as they go)."""
    done = 0
    last = 0
    while True:
        chunk = list(stale(cases).filter(pk__gt=last).order_by("pk").values_list("pk", flat=True)[:CHUNK_SIZE])
        if not chunk:
            return done
        done += redeidentify(chunk, dry_run=dry_run)
        last = chunk[-1]
        if progress is not None:
            progress(done)
