"""Demo data: the demo users, the Breast Cancer Wisconsin cohort and a synthetic respiratory cohort.

The generators are pure functions of a seed and a record's index: the same index gives the same
interchange record on every run, on every day (dates come from a fixed window, never from "today")
and whatever the requested count (record ``k`` does not depend on how many follow it). That is what
makes ``load_demo`` safe to re-run: re-imported records hash the same, so approved cases stay as
they are. Benchmarks and later issues (prediction and feedback simulations) reuse the generators.

Notes are deliberately written like real ones, naming the patient, the MRN, the phone number and
so on, so that de-identification has real work to do. They never state the diagnosis: a model
trained on the notes must not find its label written there.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from faker import Faker

from cases.deid.safe_harbor import RESTRICTED_ZIP3
from cases.demo_respiratory import (
    HEART_RATE_PATIENT_SD,
    P_OVER_89,
    PREVALENCE,
    RESPIRATORY_PROFILES,
    SPO2_PATIENT_SD,
    DiagnosisProfile,
    Drift,
    noisy_label,
    sample_encounter,
)
from cases.models import Case
from learning_engine import roles
from learning_engine.exceptions import DomainError

DEMO_SEED = 2026

# Encounters fall in this fixed window: relative dates would change the records (and their
# content hashes) from one day to the next, and a re-run would then clash with approved cases.
WINDOW_START = dt.date(2024, 1, 1)
WINDOW_END = dt.date(2025, 12, 31)

# --- Users ---------------------------------------------------------------------------------------

SUPERUSER = "superuser"  # not a role group: the admin demo user is a Django superuser


@dataclass(frozen=True, slots=True)
class DemoUser:
    username: str
    role: str  # a group name of ``learning_engine.roles``, or SUPERUSER
    password: str
    purpose: str

    @property
    def is_superuser(self) -> bool:
        return self.role == SUPERUSER

    @property
    def is_staff(self) -> bool:
        return self.is_superuser or self.role in roles.ADMIN_ROLES


# Published passwords, printed by `make run` and listed in the README: development only, which is
# why `load_demo` refuses to run with DEBUG off. The "demo-" prefix keeps them from clobbering a
# real account of the same database (a local "admin", say).
DEMO_USERS: tuple[DemoUser, ...] = (
    DemoUser("demo-admin", SUPERUSER, "demo-admin-2026", "superuser: everything"),
    DemoUser("demo-clinician", roles.CLINICIAN, "demo-clinician-2026", "submits the demo cases"),
    DemoUser("demo-reviewer", roles.CLINICIAN, "demo-reviewer-2026", "second clinician: reviews them (four-eyes)"),
    DemoUser("demo-ml-engineer", roles.ML_ENGINEER, "demo-ml-engineer-2026", "de-identified data, training"),
    DemoUser("demo-clinical-lead", roles.CLINICAL_LEAD, "demo-clinical-lead-2026", "approves model versions"),
    DemoUser(
        "demo-prediction-client", roles.PREDICTION_CLIENT, "demo-prediction-client-2026", "hospital system: predicts"
    ),
    DemoUser(
        "demo-privacy-officer", roles.PRIVACY_OFFICER, "demo-privacy-officer-2026", "reads the PHI access log only"
    ),
)
SUBMITTER = "demo-clinician"
REVIEWER = "demo-reviewer"
DICTIONARY_OWNER = "demo-clinical-lead"  # publishes the demo cohorts' dictionaries


class DemoSetupError(Exception):
    """The database is not ready for the demo data (the role groups are missing, say)."""


def ensure_demo_users() -> dict[str, Any]:
    """Create or reset the demo users: documented password, role group, staff flags. By username.

    A second run resets everything to the documented state (a changed password included), so the
    table that ``make run`` prints is always true.
    """
    user_model = get_user_model()
    groups = {group.name: group for group in Group.objects.filter(name__in=roles.ROLES)}
    missing = sorted(set(roles.ROLES) - groups.keys())
    if missing:
        raise DemoSetupError(f"The role groups {', '.join(missing)} do not exist; run `manage.py migrate` first.")
    users: dict[str, Any] = {}
    with transaction.atomic():
        for entry in DEMO_USERS:
            user, _ = user_model.objects.get_or_create(username=entry.username)
            user.set_password(entry.password)
            user.email = f"{entry.username}@example.org"
            user.is_active = True
            user.is_staff = entry.is_staff
            user.is_superuser = entry.is_superuser
            user.save()
            user.groups.set([] if entry.is_superuser else [groups[entry.role]])
            users[entry.username] = user
    return users


# --- Shared pieces of the generators -------------------------------------------------------------


def _seed(*parts: int) -> int:
    """One integer seed from several (Faker's seed_instance takes a single value)."""
    digest = hashlib.sha256(":".join(str(part) for part in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _mrn(prefix: str, index: int) -> str:
    # A bijection of 0..8,999,999 (the multiplier is coprime with 9,000,000): unique MRNs that do
    # not look like a counter.
    return f"{prefix}-{(index * 2_654_435_761) % 9_000_000 + 1_000_000}"


def fake_identity(
    fake: Faker, *, sex: str, birth_date: dt.date, mrn: str, zip_code: str | None = None
) -> dict[str, Any]:
    """A complete interchange ``patient`` block from a seeded Faker."""
    first = fake.first_name_female() if sex == "female" else fake.first_name_male()
    last = fake.last_name()
    zip_code = zip_code or fake.zipcode()
    handle = "".join(ch for ch in f"{first}.{last}".lower() if ch.isalnum() or ch == ".")
    return {
        "mrn": mrn,
        "name": f"{first} {last}",
        "birth_date": birth_date.isoformat(),
        "sex": sex,
        "zip": zip_code,
        "phone": fake.phone_number(),
        "email": f"{handle}{fake.random_int(1, 99)}@{fake.free_email_domain()}",
        "address": f"{fake.street_address()}, {fake.city()}, {fake.state_abbr()} {zip_code}",
        "ssn": fake.ssn(),
    }


def _birth_date(encounter: dt.date, age: int, days_before: int) -> dt.date:
    """A birth date that makes the patient exactly ``age`` at ``encounter`` (0 <= days_before < 365)."""
    day = 28 if (encounter.month, encounter.day) == (2, 29) else encounter.day
    return encounter.replace(year=encounter.year - age, day=day) - dt.timedelta(days=days_before)


# --- Breast Cancer Wisconsin (Diagnostic) ---------------------------------------------------------

BREAST_SOURCE = "wisconsin-demo"
BREAST_COHORT = "breast-mass"
# By sklearn's target name (0 = malignant, 1 = benign), looked up by name so that an encoding
# change in scikit-learn could not silently swap the labels.
BREAST_DIAGNOSES: dict[str, tuple[str, str]] = {
    "malignant": ("C50.9", "Malignant neoplasm of breast, unspecified"),
    "benign": ("D24.9", "Benign neoplasm of breast, unspecified"),
}
BREAST_COUNT = 569

_BREAST_NOTES = (
    "{name} (MRN {mrn}, DOB {dob}) was referred for fine-needle aspiration of a palpable breast mass. "
    "The digitized FNA image was reviewed and the nuclear features recorded. "
    "Results to be discussed with the patient by phone at {phone}.",
    "Breast clinic, {date}. Patient: {name}, MRN {mrn}. FNA of a breast mass performed without "
    "complications; cytology image digitized for nuclear morphometry. Contact: {phone}, {email}.",
    "FNA biopsy, breast mass. {name} ({age}-year-old woman, MRN {mrn}) tolerated the procedure well. "
    "Nuclear features measured on the digitized image. Lives at {address}. Follow-up letter to {email}.",
)


def snake_case(name: str) -> str:
    """'mean concave points' -> 'mean_concave_points' (the findings keys of the breast cohort)."""
    return "_".join(str(name).lower().split())


def breast_feature_names() -> list[str]:
    """The 30 findings keys of the breast-mass cohort, in the data set's order."""
    from sklearn.datasets import load_breast_cancer

    return [snake_case(name) for name in load_breast_cancer().feature_names]


def breast_mass_records(*, seed: int = DEMO_SEED) -> Iterator[dict[str, Any]]:
    """The 569 cases of the Breast Cancer Wisconsin (Diagnostic) data shipped with scikit-learn.

    The 30 measurements become ``findings``; each case gets a fake female patient (the original
    data holds no identities, ages or dates). External ids are ``wdbc-0001`` .. ``wdbc-0569`` in
    the order of the data set.
    """
    # Imported here: scikit-learn is heavy, and only the generators need it.
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    keys = [snake_case(name) for name in data.feature_names]
    target_names = [str(name) for name in data.target_names]
    fake = Faker("en_US")
    span = (WINDOW_END - WINDOW_START).days
    for index, (row, target) in enumerate(zip(data.data, data.target, strict=True), start=1):
        fake.seed_instance(_seed(seed, 1, index))
        encounter = WINDOW_START + dt.timedelta(days=fake.random_int(0, span))
        age = max(25, min(90, round(fake.random.gauss(56, 12))))
        birth = _birth_date(encounter, age, fake.random_int(0, 364))
        patient = fake_identity(fake, sex="female", birth_date=birth, mrn=_mrn("WI", index))
        code, label = BREAST_DIAGNOSES[target_names[int(target)]]
        note = fake.random_element(_BREAST_NOTES).format(
            name=patient["name"],
            mrn=patient["mrn"],
            dob=patient["birth_date"],
            date=encounter.isoformat(),
            age=age,
            phone=patient["phone"],
            email=patient["email"],
            address=patient["address"],
        )
        yield {
            "external_id": f"wdbc-{index:04d}",
            "source": BREAST_SOURCE,
            "cohort": BREAST_COHORT,
            "patient": patient,
            "encounter_date": encounter.isoformat(),
            "findings": {key: float(value) for key, value in zip(keys, row, strict=True)},
            "symptoms": ["breast_mass"],
            "note": note,
            "diagnosis": {"code": code, "label": label},
        }


# --- Synthetic respiratory cohort ----------------------------------------------------------------

RESPIRATORY_SOURCE = "respiratory-demo"
RESPIRATORY_COHORT = "respiratory"
DEFAULT_RESPIRATORY_CASES = 3000

_RESTRICTED = sorted(RESTRICTED_ZIP3)

P_RESTRICTED_ZIP = 0.02  # share of patients living in a restricted three-digit ZIP area
P_FAHRENHEIT = 0.01  # data-entry errors the quality score should catch (and reviewers reject)
P_SPO2_FRACTION = 0.005

_RESPIRATORY_NOTES = (
    "{name}, {age}-year-old {person} (MRN {mrn}), presents with {symptoms}. T {temperature_c} C, "
    "HR {heart_rate}, RR {respiratory_rate}, SpO2 {spo2}% on room air. Call back number {phone}.",
    "ED visit {date}. Pt {name} (DOB {dob}, MRN {mrn}) reports {symptoms}. Vitals: temp {temperature_c}, "
    "pulse {heart_rate}, resp {respiratory_rate}, sat {spo2}%. Address on file: {address}.",
    "Seen today: {name}, MRN {mrn}. Complains of {symptoms}. Exam: RR {respiratory_rate}, SpO2 {spo2}%, "
    "HR {heart_rate}. {labs} Results will be sent to {email}; phone {phone}.",
)


@dataclass(frozen=True, slots=True)
class _Patient:
    index: int
    primary: DiagnosisProfile
    age: int  # at the first encounter
    sex: str
    first_encounter: dt.date
    encounters: int
    spo2_offset: float
    heart_rate_offset: float
    restricted_zip: str | None


def _respiratory_patient(seed: int, index: int, prevalence: np.ndarray = PREVALENCE) -> _Patient:
    rng = np.random.default_rng([seed, 2, index])
    primary = RESPIRATORY_PROFILES[int(rng.choice(len(RESPIRATORY_PROFILES), p=prevalence))]
    if rng.random() < P_OVER_89:
        age = int(rng.integers(90, 102))
    else:
        # Redrawn, not clipped: clipping would pile the tails up on the bounds.
        age = round(rng.normal(*primary.age))
        while not 18 <= age <= 100:
            age = round(rng.normal(*primary.age))
    sex = "female" if rng.random() < primary.p_female else "male"
    encounters = int(rng.choice([1, 2, 3, 4], p=[0.5, 0.25, 0.15, 0.1] if primary.chronic else [0.85, 0.12, 0.03, 0]))
    # Up to three gaps of at most 120 days after the first encounter stay inside the window.
    first = WINDOW_START + dt.timedelta(days=int(rng.integers(0, (WINDOW_END - WINDOW_START).days - 360)))
    restricted = None
    if rng.random() < P_RESTRICTED_ZIP:
        restricted = f"{_RESTRICTED[int(rng.integers(len(_RESTRICTED)))]}{int(rng.integers(0, 100)):02d}"
    return _Patient(
        index=index,
        primary=primary,
        age=age,
        sex=sex,
        first_encounter=first,
        encounters=encounters,
        spo2_offset=float(rng.normal(0, SPO2_PATIENT_SD)),
        heart_rate_offset=float(rng.normal(0, HEART_RATE_PATIENT_SD)),
        restricted_zip=restricted,
    )


def respiratory_records(
    count: int = DEFAULT_RESPIRATORY_CASES,
    *,
    seed: int = DEMO_SEED,
    drift: Drift | None = None,
    drift_from: int = 1,
) -> Iterator[dict[str, Any]]:
    """``count`` synthetic emergency-department encounters of adults with a respiratory complaint.

    Findings and symptoms depend on the diagnosis (``RESPIRATORY_PROFILES``) and a little on the
    patient (a per-patient offset of SpO2 and heart rate), so encounters of one patient resemble
    each other: a random split that puts them on both sides would flatter a model. About one
    patient in five comes back (chronic conditions more often, mostly with the same diagnosis).
    A few patients are over 89 or live in a restricted ZIP area, and about 1.5 % of encounters
    carry a data-entry error (temperature in Fahrenheit, SpO2 as a fraction).

    External ids are ``resp-000001``...; record ``k`` is the same for every ``count >= k``.

    ``drift`` (``cases.demo_respiratory.Drift``): a concept drift from record ``drift_from`` on. New
    patients from then on draw their diagnosis from the drift's prevalence, and every encounter from
    then on (returning patients' too) shows the drift's lab shift. Records before ``drift_from`` are
    the undrifted ones, and without a drift the output is unchanged (a test pins it).
    """
    if drift_from < 1:
        raise ValueError("drift_from counts records from 1.")
    fake = Faker("en_US")
    produced = 0
    patient_index = 0
    while produced < count:
        patient_index += 1
        # A new patient's diagnosis: drawn from the drift's prevalence once the drift has begun.
        prevalence = drift.prevalence_vector() if drift is not None and produced + 1 >= drift_from else PREVALENCE
        patient = _respiratory_patient(seed, patient_index, prevalence)
        fake.seed_instance(_seed(seed, 2, patient_index))
        birth = _birth_date(patient.first_encounter, patient.age, fake.random_int(0, 364))
        identity = fake_identity(
            fake,
            sex=patient.sex,
            birth_date=birth,
            mrn=_mrn("ED", 100_000 + patient_index),
            zip_code=patient.restricted_zip,
        )
        encounter = patient.first_encounter
        for visit in range(patient.encounters):
            if produced >= count:
                break
            produced += 1
            rng = np.random.default_rng([seed, 3, patient_index, visit])
            if visit:
                encounter += dt.timedelta(days=int(rng.integers(20, 121)))
            now = drift if drift is not None and produced >= drift_from else None
            yield _respiratory_encounter(produced, patient, identity, encounter, visit, rng, fake, drift=now)


def _respiratory_encounter(
    number: int,
    patient: _Patient,
    identity: dict[str, Any],
    encounter: dt.date,
    visit: int,
    rng: np.random.Generator,
    fake: Faker,
    *,
    drift: Drift | None = None,
) -> dict[str, Any]:
    same = 0.8 if patient.primary.chronic else 0.3
    if visit == 0 or rng.random() < same:
        profile = patient.primary
    else:
        prevalence = drift.prevalence_vector() if drift is not None else PREVALENCE
        profile = RESPIRATORY_PROFILES[int(rng.choice(len(RESPIRATORY_PROFILES), p=prevalence))]
    age = patient.age + (encounter - patient.first_encounter).days // 365
    offsets = {"spo2": patient.spo2_offset, "heart_rate": patient.heart_rate_offset}
    findings, symptoms = sample_encounter(profile, rng, age=age, offsets=offsets, drift=drift)
    recorded = noisy_label(profile, rng)
    error = rng.random()
    if error < P_FAHRENHEIT:
        findings["temperature_c"] = round(findings["temperature_c"] * 9 / 5 + 32, 1)
    elif error < P_FAHRENHEIT + P_SPO2_FRACTION:
        findings["spo2"] = round(findings["spo2"] / 100, 2)
    note = str(fake.random_element(_RESPIRATORY_NOTES)).format(
        name=identity["name"],
        age=age,
        person="woman" if patient.sex == "female" else "man",
        mrn=identity["mrn"],
        dob=identity["birth_date"],
        date=encounter.isoformat(),
        symptoms=", ".join(symptom.replace("_", " ") for symptom in symptoms),
        phone=identity["phone"],
        email=identity["email"],
        address=identity["address"],
        labs=f"Labs drawn (WBC {findings['wbc']}, CRP {findings['crp']})." if "wbc" in findings else "No labs drawn.",
        **findings,
    )
    return {
        "external_id": f"resp-{number:06d}",
        "source": RESPIRATORY_SOURCE,
        "cohort": RESPIRATORY_COHORT,
        "patient": identity,
        "encounter_date": encounter.isoformat(),
        "findings": findings,
        "symptoms": symptoms,
        "note": note,
        "diagnosis": {"code": recorded.code, "label": recorded.label},
    }


DEMO_SOURCES = (BREAST_SOURCE, RESPIRATORY_SOURCE)


# --- Review --------------------------------------------------------------------------------------

P_LEFT_SUBMITTED = 0.08
P_REJECTED = 0.03  # besides the cases rejected for their quality issues


@dataclass(frozen=True, slots=True)
class PlannedReview:
    action: Literal["approve", "reject", "leave"]
    reason: str = ""
    note: str = ""


def _unit(text: str) -> float:
    """A stable number in [0, 1) per external id: the plan must not change between runs."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64


def planned_review(external_id: str, quality_issues: Sequence[dict[str, str]]) -> PlannedReview:
    """What the demo reviewer does with a submitted case: most approved, some rejected, some left.

    Cases whose quality score found implausible values are rejected as such; the rest by a stable
    draw on the external id. Notes name fields, never patient values.
    """
    implausible = sorted({issue["field"] for issue in quality_issues if issue["code"].startswith("implausible")})
    if implausible:
        return PlannedReview(
            "reject", Case.RejectionReason.IMPLAUSIBLE, f"Please check the units of {', '.join(implausible)}."
        )
    if quality_issues:
        return PlannedReview("reject", Case.RejectionReason.INCOMPLETE, "Please complete the record.")
    draw = _unit(external_id)
    if draw < P_LEFT_SUBMITTED:
        return PlannedReview("leave")
    if draw < P_LEFT_SUBMITTED + P_REJECTED / 2:
        return PlannedReview(
            "reject", Case.RejectionReason.WRONG_LABEL, "The findings do not support the coded diagnosis."
        )
    if draw < P_LEFT_SUBMITTED + P_REJECTED:
        return PlannedReview("reject", Case.RejectionReason.INCOMPLETE, "Please attach the imaging report.")
    return PlannedReview("approve", note="Reviewed: findings consistent with the diagnosis.")


@dataclass
class ReviewReport:
    total: int = 0  # submitted cases considered
    approved: int = 0
    rejected: int = 0
    left: int = 0
    skipped: int = 0  # refused by the model (four-eyes, changed meanwhile): left as they are

    @property
    def done(self) -> int:
        return self.approved + self.rejected + self.left + self.skipped


REVIEW_CHUNK = 500


def review_cases(
    *,
    reviewer: Any,
    sources: Sequence[str] = DEMO_SOURCES,
    progress: Callable[[ReviewReport], None] | None = None,
) -> ReviewReport:
    """Review the submitted cases of ``sources`` by ``planned_review``, through ``Case.approve`` /
    ``Case.reject``, so the de-identified records and audit rows are the real ones.

    Keyset chunks in primary-key order; each chunk is one transaction (one commit per chunk, not
    per case, which is what makes thousands of approvals fast on SQLite). Each transition still
    runs in its own savepoint, so a case the model refuses is skipped alone.
    """
    pending = Case.objects.filter(source__in=sources, status=Case.Status.SUBMITTED).order_by("pk")
    report = ReviewReport(total=pending.count())
    last_pk = 0
    while True:
        chunk = list(pending.filter(pk__gt=last_pk)[:REVIEW_CHUNK])
        if not chunk:
            break
        with transaction.atomic():
            for case in chunk:
                _review_one(case, reviewer=reviewer, report=report)
        last_pk = chunk[-1].pk
        if progress:
            progress(report)
    return report


def _review_one(case: Case, *, reviewer: Any, report: ReviewReport) -> None:
    plan = planned_review(case.external_id, case.quality_issues)
    try:
        if plan.action == "approve":
            case.approve(by=reviewer, note=plan.note)
            report.approved += 1
        elif plan.action == "reject":
            case.reject(by=reviewer, reason=plan.reason, note=plan.note)
            report.rejected += 1
        else:
            report.left += 1
    except DomainError:
        report.skipped += 1
