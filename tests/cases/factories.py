"""Case factories with a trait per state: CaseFactory(approved=True), CaseFactory(rejected=True)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import factory
from faker import Faker
from faker.providers.person.en_US import Provider as PersonProvider

from cases.interchange import parse_record
from cases.models import Case
from tests.factories import UserFactory

fake = Faker()

# ``fake.name()`` may open with a title and end with a suffix ("Dr. Amy Nelson MD", "Logan Compton
# Jr."): about one name in fifty ends with one. They are not identifiers, and de-identification
# rightly leaves them, so a test that plants "the surname" must not take the name's last word.
_TITLES = frozenset(
    [
        *PersonProvider.prefixes_female,
        *PersonProvider.prefixes_male,
        *PersonProvider.suffixes_female,
        *PersonProvider.suffixes_male,
    ]
)


def given_name(name: str) -> str:
    """The first word of a Faker name that is not a title: "Dr. Amy Nelson MD" -> "Amy"."""
    return next(word for word in name.split() if word not in _TITLES)


def family_name(name: str) -> str:
    """The last word of a Faker name that is not a suffix: "Dr. Amy Nelson MD" -> "Nelson"."""
    return next(word for word in reversed(name.split()) if word not in _TITLES)


def record_dict(**overrides: Any) -> dict[str, Any]:
    """A complete, plausible interchange record (as parsed JSON). Overrides replace top-level keys."""
    name = fake.name()
    first = name.split()[0].lower()
    record: dict[str, Any] = {
        "external_id": f"enc-{fake.unique.random_int(100000, 999999999)}",
        "source": "st-marys",
        "cohort": "respiratory",
        "patient": {
            "mrn": f"MRN-{fake.unique.random_int(100000, 999999)}",
            "name": name,
            "birth_date": fake.date_of_birth(minimum_age=18, maximum_age=85).isoformat(),
            "sex": fake.random_element(["female", "male"]),
            "zip": fake.zipcode(),
            "phone": fake.phone_number(),
            "email": f"{first}@example.org",
            "address": fake.address().replace("\n", ", "),
            "ssn": fake.ssn(),
        },
        "encounter_date": (dt.date.today() - dt.timedelta(days=fake.random_int(1, 300))).isoformat(),
        "findings": {"temperature_c": 38.4, "heart_rate": 104, "spo2": 93, "wbc": 12.8},
        "symptoms": ["cough", "fever"],
        "note": f"{name} presented with cough and fever.",
        "diagnosis": {"code": "J18.9", "label": "Pneumonia, unspecified organism"},
    }
    record.update(overrides)
    return record


class CaseFactory(factory.django.DjangoModelFactory[Case]):
    """Builds a case through the same path as the API (parse_record -> Case.submit)."""

    class Meta:
        model = Case

    class Params:
        approved = factory.Trait(state="approved")
        rejected = factory.Trait(state="rejected")
        retracted = factory.Trait(state="retracted")

    record = factory.LazyFunction(record_dict)
    submitted_by = factory.SubFactory(UserFactory)
    state = "submitted"

    @classmethod
    def _create(cls, model_class: type[Case], *args: Any, **kwargs: Any) -> Case:
        record = parse_record(kwargs.pop("record"))
        state = kwargs.pop("state")
        case = Case.submit(record, by=kwargs.pop("submitted_by"))
        if state != "submitted":
            reviewer = UserFactory.create()
            if state == "rejected":
                case.reject(by=reviewer, reason=Case.RejectionReason.INCOMPLETE, note="Please add vitals.")
            else:
                case.approve(by=reviewer, note="Looks right.")
                if state == "retracted":
                    case.retract(by=reviewer, reason="Wrong patient.")
        return case
