"""Tallies of live inputs: every row's values land in the bins a plain reading of the row gives."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cases.rows import UNKNOWN, age_value

# The number and category readings are not what this pins (they are unchanged); the per-feature
# dispatch, the row's findings and symptoms read once and the binning are.
from monitoring.profiles import ABSENT, CATEGORY, NUMERIC, PRESENT, Feature, Tally, _category, _number, bin_count

FEATURES = [
    Feature("age", NUMERIC, edges=(20.0, 40.0, 60.0), expected=(0.0, 120.0)),
    Feature("sex", CATEGORY, categories=("female", "male", "unknown")),
    Feature("findings.temperature_c", NUMERIC, edges=(36.5, 37.5, 38.5), expected=(30.0, 45.0)),
    Feature("findings.spo2", NUMERIC, edges=(90.0, 95.0)),
    Feature("findings.smoker", CATEGORY, categories=("false", "true")),
    Feature("findings.stage", CATEGORY, categories=("1", "2", "2.5")),
    Feature("symptoms.cough", CATEGORY, categories=(ABSENT, PRESENT)),
    Feature("symptoms.fever", CATEGORY, categories=(ABSENT, PRESENT)),
]


def _plain_value(feature, row):
    """The documented reading, one feature at a time (as monitoring read rows before it was made faster)."""
    if feature.name == "age":
        return _number(age_value(row.get("age")))
    if feature.name == "sex":
        return _category(row.get("sex") or UNKNOWN)
    if feature.name.startswith("symptoms."):
        symptoms = {str(item).strip().lower() for item in row.get("symptoms") or ()}
        return PRESENT if feature.name.removeprefix("symptoms.") in symptoms else ABSENT
    findings = dict(row.get("findings") or {})
    raw = findings.get(feature.name.removeprefix("findings."))
    return _number(raw) if feature.kind == NUMERIC else _category(raw)


def _plain_tally(rows):
    bins = {feature.name: [0] * (bin_count(feature) + 1) for feature in FEATURES}
    out = dict.fromkeys(bins, 0)
    for row in rows:
        for feature in FEATURES:
            value = _plain_value(feature, row)
            if value is None:
                bins[feature.name][-1] += 1
                continue
            if feature.kind == NUMERIC:
                index = sum(1 for edge in feature.edges if edge < value)
                low, high = feature.expected
                out[feature.name] += (low is not None and value < low) or (high is not None and value > high)
            else:
                index = feature.categories.index(value) if value in feature.categories else len(feature.categories)
            bins[feature.name][index] += 1
    return {"count": len(rows), "binned": True, "bins": bins, "out_of_range": out}


values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 200),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["1", "2.5", " Male ", "female", "", "x", "38.0", "nan"]),
)
rows = st.fixed_dictionaries(
    {},
    optional={
        "age": values,
        "sex": values,
        "findings": st.one_of(
            st.dictionaries(st.sampled_from(["temperature_c", "spo2", "smoker", "stage", "other"]), values),
            st.lists(st.tuples(st.sampled_from(["temperature_c", "stage"]), values), max_size=3),
            st.none(),
        ),
        "symptoms": st.lists(st.sampled_from(["cough", "Fever ", "FEVER", "rash"]), max_size=4),
    },
)


@settings(max_examples=300, deadline=None)
@given(st.lists(rows, max_size=6))
def test_a_tally_counts_what_a_plain_reading_of_each_row_gives(batch):
    tally = Tally(FEATURES)
    for row in batch:
        tally.add(row)
    assert tally.as_json() == _plain_tally(batch)
