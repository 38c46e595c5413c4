"""Races between real processes through the HTTP API: activations and case approvals.

Each actor is its own process with its own database connection (``tests/concurrency/actors.py``),
all released at once. Whatever the interleaving, the invariants hold and every loser gets a 409
with a JSON code, never a 500.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from django.db import connection

from cases.models import Case, CaseTransition
from learning_engine import roles
from learning_engine.tokens import RefreshToken
from models_registry.models import ActivationHistory, ModelVersion, VersionTransition
from models_registry.registry.registration import register_completed_job
from tests.cases.factories import CaseFactory
from tests.factories import user_with_role
from tests.models_registry.registry.factories import ModelVersionFactory
from tests.training.factories import ModelTypeFactory, TrainingJobFactory
from training.signals import job_completed

REGISTRARS = 6
REGISTRATIONS_EACH = 25
ACTIVATORS = 8
ACTIVATIONS_EACH = 100
VERSIONS = 5
REVIEWERS = 6
CASES = 40


def token_for(user: Any) -> str:
    return str(RefreshToken.for_user(user).access_token)


def approved_versions(count: int) -> list[ModelVersion]:
    engineer, lead = user_with_role(roles.ML_ENGINEER), user_with_role(roles.CLINICAL_LEAD)
    kind = ModelTypeFactory.create(diagnosis=True)
    # Autocommit: the registry registered each on commit already; the factory's own call is idempotent.
    return [
        ModelVersionFactory.create(approved=True, created_by=engineer, approved_by=lead, model_type=kind)
        for _ in range(count)
    ]


class ActiveCountMonitor:
    """Counts the active versions of a model type, over and over, from its own connection."""

    def __init__(self, model_type_id: int) -> None:
        self.model_type_id = model_type_id
        self.counts: Counter[int] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from django.db import connection as own_connection

        try:
            while not self._stop.is_set():
                count = ModelVersion.objects.active().filter(model_type_id=self.model_type_id).count()
                self.counts[count] += 1
        finally:
            own_connection.close()

    def __enter__(self) -> ActiveCountMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def test_eight_processes_activating_versions_never_leave_two_active_nor_answer_500(site):
    versions = approved_versions(VERSIONS)
    leads = [user_with_role(roles.CLINICAL_LEAD) for _ in range(ACTIVATORS)]
    payloads = [
        {
            "token": token_for(lead),
            "slug": "diagnosis",
            "labels": [version.version for version in versions],
            "rounds": ACTIVATIONS_EACH,
            "rollback_share": 0.1,
            "seed": index,
        }
        for index, lead in enumerate(leads)
    ]

    with ActiveCountMonitor(versions[0].model_type_id) as monitor:
        results = site.actors("activate", payloads)

    answers = [tuple(answer) for result in results for answer in result["answers"]]
    assert len(answers) == ACTIVATORS * ACTIVATIONS_EACH
    statuses = Counter((action, status) for action, status, _ in answers)
    assert {status for _, status, _ in answers} <= {200, 409}, statuses
    assert all(code for _, status, code in answers if status == 409), "a 409 without a JSON code"
    wins = sum(1 for _, status, _ in answers if status == 200)
    assert statuses["activate", 200] > VERSIONS, statuses
    assert statuses["activate", 409] > 0, statuses

    # The database holds the invariant itself (the conditional unique index), and no reader ever
    # saw two active versions while the processes raced.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'one_active_version_per_model_type'",
        )
        (definition,) = cursor.fetchone()
    assert "UNIQUE" in definition
    assert "deployment_status" in definition
    assert monitor.counts[0] + monitor.counts[1] > 0
    assert set(monitor.counts) <= {0, 1}, monitor.counts
    active = list(ModelVersion.objects.active())
    assert len(active) == 1

    # One history row per successful change, forming one chain: each change starts from the
    # version the previous one left active, and the last one names the version active now.
    rows = list(ActivationHistory.objects.order_by("created_at", "id"))
    assert len(rows) == wins
    assert [row.pk for row in rows] == sorted(row.pk for row in rows)  # ids were taken under the lock
    previous = None
    for row in rows:
        assert row.from_version_id == previous, f"history row {row.pk} does not follow its predecessor"
        assert row.to_version_id is not None
        assert row.to_version_id != row.from_version_id
        previous = row.to_version_id
    assert previous == active[0].pk
    # Each version's audit trail agrees: one inactive -> active row per activation.
    activations = VersionTransition.objects.filter(from_state="inactive", to_state="active").count()
    assert activations == wins
    deployed = Counter(ModelVersion.objects.values_list("deployment_status", flat=True))
    assert deployed == {"active": 1, "inactive": VERSIONS - 1}


def test_of_several_processes_approving_the_same_cases_exactly_one_wins_each_case(site):
    submitter = user_with_role(roles.CLINICIAN)
    cases = [CaseFactory.create(submitted_by=submitter) for _ in range(CASES)]
    reviewers = [user_with_role(roles.CLINICIAN) for _ in range(REVIEWERS)]
    payloads = [{"token": token_for(reviewer), "case_ids": [case.pk for case in cases]} for reviewer in reviewers]

    results = site.actors("approve", payloads)

    winners: dict[int, list[int]] = {case.pk: [] for case in cases}
    for reviewer, result in zip(reviewers, results, strict=True):
        for case_id, status, code in result["answers"]:
            assert status in {200, 409}, (case_id, status, code)
            if status == 200:
                winners[case_id].append(reviewer.pk)
            else:
                assert code == "invalid_transition", code
    assert all(len(won) == 1 for won in winners.values()), winners
    for case in Case.objects.filter(pk__in=winners):
        assert case.status == Case.Status.APPROVED
        assert case.reviewed_by_id == winners[case.pk][0]
        assert case.deidentified is not None
    approvals = Counter(CaseTransition.objects.filter(to_state="approved").values_list("case_id", flat=True))
    assert approvals == dict.fromkeys(winners, 1)


def test_versions_registered_at_once_by_several_processes_all_get_distinct_labels(site):
    """Several workers completing jobs of one model type at once: every job gets its version."""
    engineer = user_with_role(roles.ML_ENGINEER)
    kind = ModelTypeFactory.create(diagnosis=True)
    # Completed jobs whose on-commit registration does not run here: the actors register them.
    job_completed.disconnect(dispatch_uid="register_completed_job")
    try:
        jobs = [
            TrainingJobFactory.create(with_artifact=True, created_by=engineer, model_type=kind)
            for _ in range(REGISTRARS * REGISTRATIONS_EACH)
        ]
    finally:
        job_completed.connect(register_completed_job, dispatch_uid="register_completed_job")
    assert not ModelVersion.objects.exists()
    shares = [jobs[index::REGISTRARS] for index in range(REGISTRARS)]

    results = site.actors("register", [{"job_ids": [job.pk for job in share]} for share in shares])

    assert [result["errors"] for result in results] == [[]] * REGISTRARS
    labels = sorted(ModelVersion.objects.values_list("version", flat=True), key=lambda label: int(label.split(".")[1]))
    assert labels == [f"v1.{minor}.0" for minor in range(len(jobs))]
    assert set(ModelVersion.objects.values_list("job_id", flat=True)) == {job.pk for job in jobs}
