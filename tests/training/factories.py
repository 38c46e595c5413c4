"""Training factories: ModelTypeFactory.create(diagnosis=True), approved cohorts, DatasetSnapshotFactory(ready=True).

``DatasetSnapshotFactory(ready=True)`` really builds the snapshot (``training.datasets``): it
creates approved cases for the model type's cohort first when the cohort has too few, so the file,
manifest and hashes are the real thing. Tests that build should point ``MEDIA_ROOT`` at a
temporary folder (the ``settings`` fixture) so the files land there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import factory

from cases.interchange import parse_record
from cases.models import Case
from tests.cases.factories import record_dict
from tests.factories import UserFactory
from training.datasets import build_snapshot, create_snapshot, selected_cases
from training.models import DatasetSnapshot, ModelType

# (code, label) pairs for generated cohorts.
DIAGNOSES: tuple[tuple[str, str], ...] = (
    ("J18.9", "Pneumonia, unspecified organism"),
    ("J06.9", "Acute upper respiratory infection, unspecified"),
    ("J45.909", "Unspecified asthma, uncomplicated"),
    ("J44.1", "Chronic obstructive pulmonary disease with acute exacerbation"),
)


class ModelTypeFactory(factory.django.DjangoModelFactory[ModelType]):
    """A model type with a cohort of its own, so tests never share cases by accident.

    ``ModelTypeFactory.create(diagnosis=True)`` is the demo's "diagnosis" type of the respiratory cohort
    (whose data dictionary the test database holds), the one most tests predict and train with; the
    ``model_type`` fixture (tests/conftest.py) gives it. Made by slug: a second call returns the first.
    """

    class Meta:
        model = ModelType
        django_get_or_create = ("slug",)

    class Params:
        diagnosis = factory.Trait(slug="diagnosis", name="Respiratory diagnosis", cohort="respiratory")

    slug = factory.Sequence(lambda n: f"model-type-{n}")
    name = factory.LazyAttribute(lambda model_type: model_type.slug.replace("-", " ").capitalize())
    cohort = factory.Sequence(lambda n: f"cohort-{n}")
    label_field = "diagnosis.code"
    min_cases_to_train = 8
    min_quality = 0.5


def approved_cohort(
    cohort: str,
    *,
    patients: int = 12,
    cases_per_patient: int | Sequence[int] = 1,
    diagnoses: Sequence[tuple[str, str]] = DIAGNOSES[:2],
    submitter: Any = None,
    reviewer: Any = None,
    **record_overrides: Any,
) -> list[Case]:
    """Approved cases of ``cohort``: ``patients`` patients with ``cases_per_patient`` cases each.

    Diagnoses go round-robin over the cases, so every diagnosis has cases when there are at least
    as many cases as diagnoses. ``cases_per_patient`` may be a list (one count per patient). Quicker
    than the API path: the submitted cases are bulk-created, then each is approved through
    ``Case.approve`` (the real de-identification, pseudonym and audit row).
    """
    submitter = submitter or UserFactory()
    reviewer = reviewer or UserFactory()
    counts = [cases_per_patient] * patients if isinstance(cases_per_patient, int) else list(cases_per_patient)
    built = []
    index = 0
    for count in counts:
        patient = record_dict()["patient"]
        for _ in range(count):
            code, label = diagnoses[index % len(diagnoses)]
            index += 1
            raw = record_dict(
                cohort=cohort,
                patient=patient,
                diagnosis={"code": code, "label": label},
                note=f"{patient['name']} ({patient['mrn']}) presented with cough and fever.",
            )
            raw.update(record_overrides)
            built.append(Case.build(parse_record(raw), by=submitter))
    cases = Case.objects.bulk_create(built)
    for case in cases:
        case.approve(by=reviewer, note="Approved for a dataset test.")
    return cases


class DatasetSnapshotFactory(factory.django.DjangoModelFactory):
    """A snapshot in status building; ``ready=True`` builds it for real (``patients`` sizes the cohort)."""

    class Meta:
        model = DatasetSnapshot

    class Params:
        ready = factory.Trait(build_now=True)

    model_type = factory.SubFactory(ModelTypeFactory)
    created_by = factory.SubFactory(UserFactory)
    seed = 0
    validation_fraction = 0.15
    test_fraction = 0.2
    min_quality = None
    build_now = False
    patients = 12

    @classmethod
    def _create(cls, model_class: type[DatasetSnapshot], *args: Any, **kwargs: Any) -> DatasetSnapshot:
        model_type = kwargs.pop("model_type")
        build_now = kwargs.pop("build_now")
        patients = kwargs.pop("patients")
        snapshot = create_snapshot(
            model_type,
            by=kwargs.pop("created_by"),
            min_quality=kwargs.pop("min_quality"),
            validation_fraction=kwargs.pop("validation_fraction"),
            test_fraction=kwargs.pop("test_fraction"),
            seed=kwargs.pop("seed"),
        )
        if build_now:
            if selected_cases(snapshot.filters).count() < model_type.min_cases_to_train:
                approved_cohort(model_type.cohort, patients=max(patients, model_type.min_cases_to_train))
            build_snapshot(snapshot.pk)
            snapshot.refresh_from_db()
        return snapshot
