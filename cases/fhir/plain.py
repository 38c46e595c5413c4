"""A fast reading of the plain shape of the elements the engine reads, or no answer at all.

fhir.resources builds a Pydantic model per nested element, each with Python validators of its own
(fhir-core): 100-200 us a resource, most of the FHIR import's time. Record systems almost always
write the few elements the engine reads (``resources.READ_ELEMENTS``) in one plain shape: the
datatypes below with their usual children, JSON strings, numbers and booleans, dates as full dates
and dateTimes with a time zone. ``read`` checks that shape by hand, at least as strictly as
fhir.resources does (its regular expressions, required elements, one value[x], no nulls, no empty
lists or objects) and answers ``Element`` views that hold the values fhir.resources would hold
(``date``, ``datetime``, ``Decimal``). Anything else (an extension, a partial date, an element it
does not list, a value of the wrong type) raises ``NotPlain`` and the caller validates the
resource with fhir.resources, which reports any problem exactly as before. So this is never the
judge of a malformed resource, only a shortcut for the plain ones; ``tests/cases/test_fhir_plain.py``
checks that what it takes fhir.resources takes too, with the same mapping.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any


class NotPlain(Exception):  # a signal to take the slow path, not an error
    """The resource is not in the plain shape: validate it with fhir.resources."""


class Element:
    """A read-only view of a plain element or resource, read as fhir.resources' models are
    (``obs.valueQuantity.value``); an element the datatype defines but the input lacks is None.
    Each datatype has a subclass naming its elements (``_names``) and, for a resource, its type."""

    _names: frozenset[str] = frozenset()
    _type: str | None = None

    def __getattr__(self, name: str) -> Any:
        if name in self._names:
            return None
        raise AttributeError(name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("read-only")

    def get_resource_type(self) -> str | None:
        return self._type


# --- Primitives: each returns the value fhir.resources would hold, or raises NotPlain ----------------

# fhir-core's patterns, anchored (pydantic searches them; a full match is stricter).
_STRING = re.compile(r"[ \r\n\t\S]+")
_CODE = re.compile(r"[^\s]+(\s[^\s]+)*")
_URI = re.compile(r"\S+")
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_DECIMAL = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_DATE = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])")
# A dateTime with a time: seconds (no leap second), at most microseconds, a time zone.
_TIME = re.compile(
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+\-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
)
MAX_STRING = 1_048_576
# A lone surrogate (JSON's "\\ud800") matches \S, but pydantic cannot read it as a string.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _unmatched(pattern: re.Pattern[str], value: str) -> bool:
    return not pattern.fullmatch(value) or _SURROGATE.search(value) is not None


# A printable text (str.isprintable) has no whitespace but spaces: it matches these patterns
# whenever it is not empty (a string), or has no space at all (a code, a uri); the regex decides the rest.


def _string(value: Any) -> str:
    if type(value) is not str or len(value) > MAX_STRING:
        raise NotPlain
    if not (value and value.isprintable()) and _unmatched(_STRING, value):
        raise NotPlain
    return value


def _code(value: Any) -> str:
    if type(value) is not str or len(value) > MAX_STRING:
        raise NotPlain
    if not (value and value.isprintable() and " " not in value) and _unmatched(_CODE, value):
        raise NotPlain
    return value


def _uri(value: Any) -> str:
    if type(value) is not str or len(value) > MAX_STRING:
        raise NotPlain
    if not (value and value.isprintable() and " " not in value) and _unmatched(_URI, value):
        raise NotPlain
    return value


def _id(value: Any) -> str:
    if type(value) is not str or not _ID.fullmatch(value):
        raise NotPlain
    return value


def _boolean(value: Any) -> bool:
    if type(value) is not bool:
        raise NotPlain
    return value


def _integer(value: Any) -> int:
    if type(value) is not int or not -(2**31) <= value < 2**31:
        raise NotPlain
    return value


def _positive_int(value: Any) -> int:
    if type(value) is not int or not 0 < value < 2**31:
        raise NotPlain
    return value


def _decimal(value: Any) -> Decimal:
    # JSON numbers only (the stream reader gives Decimal, the line reader int or float); fhir-core
    # checks str(value) against its pattern and turns a float into Decimal(str(value)).
    kind = type(value)
    if kind is int:
        if len(str(abs(value))) > 100:  # a number that long is no measurement: let fhir.resources judge
            raise NotPlain
        return Decimal(value)
    if kind is float or kind is Decimal:
        text = str(value)
        if not _DECIMAL.fullmatch(text):
            raise NotPlain
        return Decimal(text)
    raise NotPlain


def _date(value: Any) -> dt.date:
    """A full date (``2020-01-31``); a partial one (``2020``) is not plain."""
    if type(value) is not str or len(value) != 10 or not _DATE.fullmatch(value):
        raise NotPlain
    try:
        return dt.date.fromisoformat(value)
    except ValueError:  # 2021-02-30
        raise NotPlain from None


def _instant(value: Any) -> dt.datetime:
    if type(value) is not str or len(value) < 20 or not _DATE.fullmatch(value, 0, 10) or not _TIME.fullmatch(value, 10):
        raise NotPlain
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        raise NotPlain from None


def _date_time(value: Any) -> dt.date | dt.datetime:
    """A full date (as a ``date``, as fhir-core holds it) or a date and time with its zone."""
    if type(value) is str and len(value) == 10:
        return _date(value)
    return _instant(value)


# --- Datatypes ---------------------------------------------------------------------------------------

Reader = Callable[[Any], Any]
# A datatype: its elements (JSON name -> reader or datatype name, whether a list), and those it requires.
_Shape = tuple[dict[str, tuple[Any, bool]], frozenset[str]]
_SHAPES: dict[str, _Shape] = {}


def _shape(name: str, elements: dict[str, tuple[Any, bool]], required: tuple[str, ...] = ()) -> None:
    _SHAPES[name] = (elements, frozenset(required))


ONE, MANY = False, True
_shape("Coding", {"system": (_uri, ONE), "version": (_string, ONE), "code": (_code, ONE), "display": (_string, ONE)})
_shape("CodeableConcept", {"coding": ("Coding", MANY), "text": (_string, ONE)})
_shape("Period", {"start": (_date_time, ONE), "end": (_date_time, ONE)})
_shape("Reference", {"reference": (_string, ONE), "type": (_uri, ONE), "display": (_string, ONE)})
_shape(
    "Identifier",
    {
        "use": (_code, ONE),
        "type": ("CodeableConcept", ONE),
        "system": (_uri, ONE),
        "value": (_string, ONE),
        "period": ("Period", ONE),
    },
)
_shape(
    "HumanName",
    {
        "use": (_code, ONE),
        "text": (_string, ONE),
        "family": (_string, ONE),
        "given": (_string, MANY),
        "prefix": (_string, MANY),
        "suffix": (_string, MANY),
        "period": ("Period", ONE),
    },
)
_shape(
    "Address",
    {
        "use": (_code, ONE),
        "type": (_code, ONE),
        "text": (_string, ONE),
        "line": (_string, MANY),
        "city": (_string, ONE),
        "district": (_string, ONE),
        "state": (_string, ONE),
        "postalCode": (_string, ONE),
        "country": (_string, ONE),
        "period": ("Period", ONE),
    },
)
_shape(
    "ContactPoint",
    {
        "system": (_code, ONE),
        "value": (_string, ONE),
        "use": (_code, ONE),
        "rank": (_positive_int, ONE),
        "period": ("Period", ONE),
    },
)
_shape(
    "Quantity",
    {
        "value": (_decimal, ONE),
        "comparator": (_code, ONE),
        "unit": (_string, ONE),
        "system": (_uri, ONE),
        "code": (_code, ONE),
    },
)
_shape(
    "EncounterDiagnosis",
    {"condition": ("Reference", ONE), "use": ("CodeableConcept", ONE), "rank": (_positive_int, ONE)},
    required=("condition",),
)
_VALUES: dict[str, tuple[Any, bool]] = {
    "valueQuantity": ("Quantity", ONE),
    "valueCodeableConcept": ("CodeableConcept", ONE),
    "valueString": (_string, ONE),
    "valueBoolean": (_boolean, ONE),
    "valueInteger": (_integer, ONE),
    "dataAbsentReason": ("CodeableConcept", ONE),
}
_shape("ObservationComponent", {"code": ("CodeableConcept", ONE), **_VALUES}, required=("code",))
_shape(
    "Patient",
    {
        "id": (_id, ONE),
        "identifier": ("Identifier", MANY),
        "name": ("HumanName", MANY),
        "gender": (_code, ONE),
        "birthDate": (_date, ONE),
        "address": ("Address", MANY),
        "telecom": ("ContactPoint", MANY),
    },
)
_shape(
    "Encounter",
    {
        "id": (_id, ONE),
        "status": (_code, ONE),
        "class": ("Coding", ONE),
        "subject": ("Reference", ONE),
        "period": ("Period", ONE),
        "diagnosis": ("EncounterDiagnosis", MANY),
    },
    required=("status", "class"),
)
_shape(
    "Observation",
    {
        "id": (_id, ONE),
        "status": (_code, ONE),
        "code": ("CodeableConcept", ONE),
        "subject": ("Reference", ONE),
        "encounter": ("Reference", ONE),
        "effectiveDateTime": (_date_time, ONE),
        "effectiveInstant": (_instant, ONE),
        "effectivePeriod": ("Period", ONE),
        "issued": (_instant, ONE),
        "component": ("ObservationComponent", MANY),
        **_VALUES,
    },
    required=("status", "code"),
)
_shape(
    "Condition",
    {
        "id": (_id, ONE),
        "code": ("CodeableConcept", ONE),
        "verificationStatus": ("CodeableConcept", ONE),
        "subject": ("Reference", ONE),
        "encounter": ("Reference", ONE),
    },
    required=("subject",),
)
# A view class per datatype; its names (answering None when absent) are the models' own, as the
# mapping reads them.
_EXTRA_NAMES = {
    "Encounter": {"class_"},
    "Observation": {"valueRange", "valueRatio", "valueSampledData"},
    "ObservationComponent": {"valueRange", "valueRatio", "valueSampledData"},
}
_CLASSES: dict[str, type[Element]] = {
    name: type(
        name,
        (Element,),
        {
            "_names": frozenset(readers) | _EXTRA_NAMES.get(name, set()),
            "_type": name if name in ("Patient", "Encounter", "Observation", "Condition") else None,
        },
    )
    for name, (readers, _required) in _SHAPES.items()
}
_VALUE_NAMES = frozenset(name for name in _VALUES if name != "dataAbsentReason")
_RESOURCE_TYPES = frozenset(name for name, view_class in _CLASSES.items() if view_class._type is not None)
_EFFECTIVE_NAMES = frozenset({"effectiveDateTime", "effectiveInstant", "effectivePeriod"})


def _one_value(values: dict[str, Any]) -> None:
    given = _VALUE_NAMES.intersection(values)
    # One value[x] at most; and obs-6 (no dataAbsentReason beside a value), in case a validator
    # ever checks it.
    if len(given) > 1 or (given and "dataAbsentReason" in values):
        raise NotPlain
    if len(_EFFECTIVE_NAMES.intersection(values)) > 1:
        raise NotPlain


def _compile(name: str, *, only: frozenset[str] | None = None, skip: frozenset[str] = frozenset()) -> Reader:
    """The reader of one datatype, with its element readers, requirements and view class bound:
    a call per element is the cost, so nothing is looked up by name while reading. With ``only``
    it reads those of its elements alone; an element named in ``skip`` is passed over unread (and
    left out of the view), any other element it does not read is not plain."""
    elements, required = _SHAPES[name]
    readers = {
        key: (_READERS[reader] if isinstance(reader, str) else reader, many)
        for key, (reader, many) in elements.items()
        if only is None or key in only
    }
    skip = skip.difference(readers, ("resourceType",))
    resource = _CLASSES[name]._type is not None
    if resource:  # checked by ``read``; not kept, as fhir.resources' models do not keep it
        readers["resourceType"] = (str, ONE)
    get = readers.get
    check = _one_value if name in ("Observation", "ObservationComponent") else None
    renamed = "class" in readers
    view_class = _CLASSES[name]
    new, set_dict = object.__new__, object.__setattr__

    def read_element(data: Any) -> Element:
        if type(data) is not dict or not data:
            raise NotPlain
        values: dict[str, Any] = {}
        for key, value in data.items():
            entry = get(key)
            if entry is None:
                if key in skip:
                    continue
                raise NotPlain
            # Every reader refuses None (JSON null) and values of another JSON type.
            reader, many = entry
            if many:
                if type(value) is not list or not value:
                    raise NotPlain
                values[key] = [reader(item) for item in value]
            else:
                values[key] = reader(value)
        if required and not required <= values.keys():
            raise NotPlain
        if check is not None:
            check(values)
        if resource:
            del values["resourceType"]
        if renamed and "class" in values:
            values["class_"] = values.pop("class")
        view = new(view_class)
        set_dict(view, "__dict__", values)
        return view

    return read_element


_READERS: dict[str, Reader] = {}
for _name in _SHAPES:  # in definition order: a datatype's element types come before it
    _READERS[_name] = _compile(_name)


def resource_reader(resource_type: str, read: frozenset[str], unread: frozenset[str]) -> Callable[[Any], Element]:
    """A reader of whole resources of ``resource_type``: the elements named in ``read`` are read
    as ``read`` reads them, those in ``unread`` passed over (the caller checks them by name only),
    and any other element is not plain. The same view as ``read`` of the resource reduced to its
    ``read`` elements, in one walk and without the reduced copy (``resources.validate_read``)."""
    if resource_type not in _RESOURCE_TYPES:
        raise ValueError(f"Not a resource type the plain reader reads: {resource_type}")
    reader = _compile(resource_type, only=read, skip=unread)

    def read_resource(resource: Any) -> Element:
        if type(resource) is not dict or resource.get("resourceType") != resource_type:
            raise NotPlain
        return reader(resource)

    return read_resource


def read(resource: dict[str, Any], resource_type: str) -> Element:
    """The plain ``resource`` (its ``READ_ELEMENTS`` only) as an ``Element`` of ``resource_type``;
    raises ``NotPlain`` when it is not plain."""
    if resource.get("resourceType") != resource_type or resource_type not in _RESOURCE_TYPES:
        raise NotPlain
    return _READERS[resource_type](resource)
