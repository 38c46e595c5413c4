"""The respiratory generator's concept drift (``cases.demo_respiratory.Drift``), used by the learning-loop
simulation (``benchmarks/bench_learning_loop.py``): the default output is pinned, records before the
drift point are the undrifted ones, and after it the prevalence and the lab's distribution move."""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from statistics import median

import pytest

from cases.demo import respiratory_records
from cases.demo_respiratory import COVID_VARIANT, PROFILES_BY_CODE, Drift

# sha256 of the first 400 default records, taken before the drift parameter was added: the demo's
# records (and the content hashes of cases loaded by earlier runs) must not change.
DEFAULT_400_SHA256 = "f18ca0f7f35a8ae9bfd2e95db733e4f3b8f320a984e3e09414fcee8d1f69f3e6"


def digest(records) -> str:
    return hashlib.sha256(json.dumps(list(records), sort_keys=True).encode()).hexdigest()


def test_the_default_output_is_unchanged_by_the_drift_parameter():
    assert digest(respiratory_records(400)) == DEFAULT_400_SHA256
    assert digest(respiratory_records(400, drift=None, drift_from=50)) == DEFAULT_400_SHA256


def test_records_before_the_drift_point_are_the_undrifted_ones():
    plain = list(respiratory_records(300))
    drifted = list(respiratory_records(300, drift=COVID_VARIANT, drift_from=201))
    assert drifted[:200] == plain[:200]
    assert drifted[200:] != plain[200:]


def test_the_drift_starts_exactly_at_its_record():
    # Every diagnosis's CRP tripled, prevalence unchanged: a record differs from the undrifted one
    # exactly when it is at or after the drift point and has a CRP (not already at the 400 mg/L bound).
    everyone = Drift(prevalence={}, lab="crp", lab_shift={code: math.log(3.0) for code in PROFILES_BY_CODE})
    plain = list(respiratory_records(60))
    for start in (1, 2, 17, 40, 60):
        drifted = list(respiratory_records(60, drift=everyone, drift_from=start))
        for index, (old, new) in enumerate(zip(plain, drifted, strict=True), start=1):
            shifted = old["findings"].get("crp", 400) < 400
            assert (old != new) == (index >= start and shifted), (start, index)


def test_after_the_drift_point_prevalence_and_the_lab_move():
    count, start = 4000, 2001
    records = list(respiratory_records(count, drift=COVID_VARIANT, drift_from=start))
    before, after = records[: start - 1], records[start - 1 :]

    def share(part, code):
        return Counter(r["diagnosis"]["code"] for r in part)[code] / len(part)

    # U07.1's weight 0.14 -> 0.8 of a total 1.0 -> 1.66, a share of 0.48 among new patients; returning
    # patients of before the drift keep their own diagnoses for a while, so the stream's share is lower.
    assert share(before, "U07.1") == pytest.approx(0.14, abs=0.03)
    assert 0.38 < share(after, "U07.1") < 0.48

    def crp(part, code):
        return median(r["findings"]["crp"] for r in part if r["diagnosis"]["code"] == code and "crp" in r["findings"])

    # COVID-19's CRP is six times as high (log shift), the other diagnoses' stays.
    assert math.log(crp(after, "U07.1") / crp(before, "U07.1")) == pytest.approx(math.log(6.0), abs=0.3)
    assert math.log(crp(after, "J06.9") / crp(before, "J06.9")) == pytest.approx(0.0, abs=0.3)


def test_a_drift_names_known_diagnoses_and_a_lab():
    with pytest.raises(ValueError, match="Unknown diagnosis codes"):
        Drift(prevalence={"X99": 1.0}, lab="crp", lab_shift={})
    with pytest.raises(ValueError, match="lab must be one of"):
        Drift(prevalence={}, lab="spo2", lab_shift={"U07.1": 1.0})
    with pytest.raises(ValueError, match="at least 0"):
        Drift(prevalence={"U07.1": -1.0}, lab="crp", lab_shift={})
    with pytest.raises(ValueError, match="drift_from"):
        list(respiratory_records(1, drift=COVID_VARIANT, drift_from=0))
