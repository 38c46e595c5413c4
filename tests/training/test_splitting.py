"""The patient-grouped, label-stratified split, on generated cohorts (hypothesis)."""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training import splitting
from training.models.dataset import SPLITS
from training.splitting import SPLIT_NAMES, TEST, TRAIN, VALIDATION, check_fractions, split_cases

LABELS = ("J18.9", "J06.9", "J45.909", "J44.1", "C50.9")


@st.composite
def cohorts(draw, *, max_patients: int = 60, max_cases: int = 5):
    """(case ids, patient pseudonyms, labels): patients with 1..max_cases cases, several labels."""
    n_patients = draw(st.integers(min_value=1, max_value=max_patients))
    n_labels = draw(st.integers(min_value=1, max_value=len(LABELS)))
    ids, groups, labels = [], [], []
    next_id = draw(st.integers(min_value=1, max_value=10_000))
    for patient in range(n_patients):
        pseudonym = f"{patient:04d}{draw(st.sampled_from('abcdef'))}" * 8  # 40 hex-ish characters
        for _ in range(draw(st.integers(min_value=1, max_value=max_cases))):
            ids.append(next_id)
            next_id += draw(st.integers(min_value=1, max_value=3))
            groups.append(pseudonym)
            labels.append(LABELS[draw(st.integers(min_value=0, max_value=n_labels - 1))])
    return np.array(ids, dtype=np.int64), np.array(groups), np.array(labels)


fractions = st.sampled_from([(0.15, 0.2), (0.0, 0.25), (0.1, 0.1), (0.3, 0.3), (0.2, 0.5)])


def split(cohort, fraction_pair=(0.15, 0.2), seed=0):
    ids, groups, labels = cohort
    validation, test = fraction_pair
    return split_cases(ids, groups, labels, validation_fraction=validation, test_fraction=test, seed=seed)


def test_split_names_match_the_snapshot_model():
    assert SPLIT_NAMES == SPLITS
    assert (SPLIT_NAMES[TRAIN], SPLIT_NAMES[VALIDATION], SPLIT_NAMES[TEST]) == ("train", "validation", "test")


@settings(max_examples=150, deadline=None)
@given(cohort=cohorts(), fraction_pair=fractions, seed=st.integers(min_value=0, max_value=2**31 - 1))
def test_no_patient_is_in_two_splits(cohort, fraction_pair, seed):
    assigned = split(cohort, fraction_pair, seed)
    _, groups, _ = cohort
    assert len(assigned) == len(groups)
    for pseudonym in np.unique(groups):
        assert len(np.unique(assigned[groups == pseudonym])) == 1


@settings(max_examples=100, deadline=None)
@given(cohort=cohorts(), fraction_pair=fractions, seed=st.integers(min_value=0, max_value=1000), data=st.data())
def test_same_inputs_and_seed_give_the_same_assignment_whatever_the_order(cohort, fraction_pair, seed, data):
    ids, groups, labels = cohort
    first = split(cohort, fraction_pair, seed)
    order = np.array(data.draw(st.permutations(range(len(ids)))), dtype=np.int64)
    shuffled = split((ids[order], groups[order], labels[order]), fraction_pair, seed)
    assert dict(zip(ids[order].tolist(), shuffled.tolist(), strict=True)) == dict(
        zip(ids.tolist(), first.tolist(), strict=True)
    )


@settings(max_examples=100, deadline=None)
@given(cohort=cohorts(), fraction_pair=fractions, seed=st.integers(min_value=0, max_value=1000))
def test_every_split_with_a_fraction_gets_patients_when_there_are_enough(cohort, fraction_pair, seed):
    _, groups, _ = cohort
    assigned = split(cohort, fraction_pair, seed)
    wanted = [TRAIN, TEST] + ([VALIDATION] if fraction_pair[0] > 0 else [])
    if len(np.unique(groups)) >= len(wanted):
        for code in wanted:
            assert np.any(assigned == code), SPLIT_NAMES[code]
    if fraction_pair[0] == 0:
        assert not np.any(assigned == VALIDATION)


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(min_value=20, max_value=400), min_size=2, max_size=4),
    fraction_pair=fractions,
    seed=st.integers(min_value=0, max_value=1000),
)
def test_label_proportions_follow_the_fractions_when_patients_have_one_case(counts, fraction_pair, seed):
    labels = np.array([LABELS[index] for index, count in enumerate(counts) for _ in range(count)])
    ids = np.arange(len(labels), dtype=np.int64)
    groups = np.array([f"patient-{i}" for i in range(len(labels))])
    assigned = split((ids, groups, labels), fraction_pair, seed)
    validation, test = fraction_pair
    targets = (1 - validation - test, validation, test)
    for index, count in enumerate(counts):
        mine = assigned[labels == LABELS[index]]
        for code, fraction in enumerate(targets):
            # Whole cases: within a couple of cases of the exact share, for every label and split.
            assert abs(np.count_nonzero(mine == code) - fraction * count) < 3


def test_large_patients_are_kept_whole_and_the_rest_balance_around_them():
    # One patient with 30 cases, 70 patients with one case each: the big one goes somewhere whole.
    groups = np.array(["big"] * 30 + [f"p{i}" for i in range(70)])
    labels = np.array(["A", "B"] * 50)
    ids = np.arange(100)
    assigned = split((ids, groups, labels), (0.15, 0.2), seed=3)
    assert len(np.unique(assigned[:30])) == 1
    assert np.count_nonzero(assigned == TRAIN) >= 50


def test_a_different_seed_gives_a_different_assignment():
    ids = np.arange(500)
    groups = np.array([f"p{i // 2}" for i in range(500)])
    labels = np.array([LABELS[i % 3] for i in range(500)])
    first = split((ids, groups, labels), seed=1)
    assert not np.array_equal(first, split((ids, groups, labels), seed=2))
    assert np.array_equal(first, split((ids, groups, labels), seed=1))


def test_integer_group_keys_split_like_strings_do():
    ids = np.arange(300)
    keys = np.array([(i // 3) * 7919 for i in range(300)], dtype=np.uint64)
    labels = np.array([LABELS[i % 2] for i in range(300)])
    assigned = split((ids, keys, labels))
    for key in np.unique(keys):
        assert len(np.unique(assigned[keys == key])) == 1
    assert set(np.unique(assigned).tolist()) == {TRAIN, VALIDATION, TEST}


def test_an_empty_cohort_gives_an_empty_assignment():
    assert split((np.array([], dtype=np.int64), np.array([]), np.array([]))).size == 0


def test_duplicate_case_ids_and_ragged_arrays_are_refused():
    with pytest.raises(ValueError, match="unique"):
        split((np.array([1, 1]), np.array(["a", "b"]), np.array(["x", "y"])))
    with pytest.raises(ValueError, match="same length"):
        split((np.array([1, 2]), np.array(["a"]), np.array(["x", "y"])))


@pytest.mark.parametrize(
    ("validation", "test", "message"),
    [
        (0.5, 0.5, "add up to 1"),
        (0.6, 0.5, "add up to 1.1"),
        (-0.1, 0.2, "validation fraction must be at least 0"),
        (0.1, 0.0, "test fraction must be greater than 0"),
        (0.1, 1.0, "test fraction must be at least 0 and less than 1"),
        (float("nan"), 0.2, "must be a number"),
    ],
)
def test_fractions_that_leave_no_training_split_are_refused(validation, test, message):
    with pytest.raises(ValueError, match=message):
        check_fractions(validation, test)


# --- Mutation-testing pins (`make mutation`): hand-worked splits and the published hash -----------

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15  # splitmix64's increment


def splitmix64_finaliser(z: int) -> int:
    """Vigna's splitmix64 output function, in Python integers."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def test_integer_keys_are_splitmix64_of_the_value_and_the_seed():
    # Value 0 with seed 0 and 1 are the generator's first two outputs from state 0, as published.
    assert splitting._seeded_keys(np.array([0], dtype=np.int64), 0).tolist() == [0xE220A8397B1DCDAF]
    assert splitting._seeded_keys(np.array([0], dtype=np.int64), 1).tolist() == [0x6E789E6AA1B965F4]
    values = np.array([1, 7919, 2**40 + 3, 2**62], dtype=np.int64)
    for seed in (0, 5, -1, 2**70 + 9):
        seed_part = ((seed & MASK64) * GOLDEN + GOLDEN) & MASK64
        keys = splitting._seeded_keys(values, seed)
        assert keys.dtype == np.uint64
        assert keys.tolist() == [splitmix64_finaliser((v + seed_part) & MASK64) for v in values.tolist()]


def test_string_keys_are_blake2b_keyed_with_the_seed():
    values = np.array(["p0", "a patient", "ü"])
    for seed in (0, 3):
        salt = (((seed & MASK64) * GOLDEN + GOLDEN) & MASK64).to_bytes(8, "little")
        keys = splitting._seeded_keys(values, seed)
        assert keys.dtype == np.uint64
        expected = [
            int.from_bytes(hashlib.blake2b(v.encode(), digest_size=8, key=salt).digest(), "little") for v in values
        ]
        assert keys.tolist() == expected


def test_one_case_per_patient_splits_by_hand():
    """20 patients, one case each, 10 of label A and 10 of B, fractions 0.2 / 0.2: each label's
    deficits start at 6 / 2 / 2; a case goes where its label lacks most (ties to the earlier split),
    so train takes the first four of a label, then train, validation and test one each, twice."""
    ids = np.arange(20)
    groups = np.array([f"p{i:02d}" for i in range(20)])
    labels = np.array(["A", "B"] * 10)
    for seed in (0, 1, 2):
        assigned = split((ids, groups, labels), (0.2, 0.2), seed=seed)
        visits = np.argsort(splitting._seeded_keys(groups, seed))  # one case each: by key alone
        for label in ("A", "B"):
            in_visit_order = [int(assigned[i]) for i in visits if labels[i] == label]
            assert in_visit_order == [TRAIN] * 5 + [VALIDATION, TEST, TRAIN, VALIDATION, TEST]


def test_a_patient_with_several_labels_goes_where_its_cases_are_lacking_most():
    """Hand-worked, fractions 0 / 0.5 (train and test only): targets A 3 / 3, B 1 / 1, C 2 / 2. The
    big patient (A, A, B, B) is visited first: 2 * 3/6 + 2 * 1/2 = 2 for either split, a tie, so
    train (left lacking A 1, B -1). The single A cases then go test, test, train (a tie at 1), test;
    the single C cases train (a tie at 2), test, train, test, whatever the seeded order."""
    ids = np.arange(12)
    groups = np.array(["big"] * 4 + [f"s{i}" for i in range(8)])
    labels = np.array(["A", "A", "B", "B"] + ["A"] * 4 + ["C"] * 4)
    for seed in (0, 1, 2, 3):
        assigned = split((ids, groups, labels), (0.0, 0.5), seed=seed)
        assert set(assigned[:4].tolist()) == {TRAIN}
        assert sorted(assigned[4:8].tolist()) == [TRAIN, TEST, TEST, TEST]
        assert sorted(assigned[8:].tolist()) == [TRAIN, TRAIN, TEST, TEST]


def test_duplicate_case_ids_are_refused_with_a_sentence():
    with pytest.raises(ValueError, match=r"^Case ids must be unique\.$"):
        split((np.array([1, 1]), np.array(["a", "b"]), np.array(["x", "y"])))


def reference_split(groups: list[str], labels: list[str], validation: float, test: float, seed: int) -> list[int]:
    """The module docstring's greedy written out with dicts: groups largest first (ties by seeded
    key, then value), each to the active split whose score sum(count * deficit / total) over its
    labels is highest (ties to the earlier split); then each empty active split takes the smallest
    group (the last visited among equals) of the split holding the most groups (the earlier on ties)."""
    values = sorted(set(groups))
    key = dict(zip(values, splitting._seeded_keys(np.array(values), seed).tolist(), strict=True))
    members: dict[str, Counter[str]] = {value: Counter() for value in values}
    for group, label in zip(groups, labels, strict=True):
        members[group][label] += 1
    size = {value: sum(members[value].values()) for value in values}
    order = sorted(values, key=lambda value: (-size[value], key[value], value))
    fractions = (1 - validation - test, validation, test)
    active = [s for s in (TRAIN, VALIDATION, TEST) if fractions[s] > 0]
    totals = Counter(labels)
    deficit = {s: {label: totals[label] * fractions[s] for label in totals} for s in active}
    assigned: dict[str, int] = {}
    for value in order:
        scores = {
            s: sum(count * deficit[s][label] / totals[label] for label, count in members[value].items()) for s in active
        }
        best = max(active, key=lambda s: (scores[s], -s))
        assigned[value] = best
        for label, count in members[value].items():
            deficit[best][label] -= count
    if len(values) >= len(active):
        for s in active:
            if s in assigned.values():
                continue
            held = {other: [v for v in values if assigned[v] == other] for other in active}
            donor = max(active, key=lambda other: (len(held[other]), -other))
            pick = min(held[donor], key=lambda v: (size[v], -order.index(v)))
            assigned[pick] = s
    return [assigned[group] for group in groups]


@pytest.mark.parametrize("seed", range(6))
def test_the_split_is_the_written_out_greedy(seed):
    rng = np.random.default_rng(seed)
    patients = int(rng.integers(2, 40))
    groups, labels = [], []
    for patient in range(patients):
        for _ in range(int(rng.integers(1, 5))):
            groups.append(f"p{patient}")
            labels.append(LABELS[int(rng.integers(0, 1 + seed % 4))])
    validation, test = [(0.15, 0.2), (0.0, 0.25), (0.3, 0.3), (0.2, 0.5), (0.1, 0.1), (0.25, 0.25)][seed]
    ids = np.arange(len(groups)) * 3 + 1

    assigned = split((ids, np.array(groups), np.array(labels)), (validation, test), seed=seed)

    assert assigned.tolist() == reference_split(groups, labels, validation, test, seed)


def test_an_empty_split_takes_the_last_visited_smallest_group_of_the_earliest_fullest_split():
    """Hand-worked: four patients with one A case each, fractions 0.01 / 0.5 (targets 1.96 / 0.04 /
    2). In visit order they go test (2 > 1.96), train, test, train (0.96 > 0.04): validation is
    empty. Train and test hold two patients each; the earlier, train, gives up the patient it got
    last (both are the smallest)."""
    groups = np.array(["w", "x", "y", "z"])
    labels = np.array(["A"] * 4)
    for seed in (0, 1, 2):
        assigned = split((np.arange(4), groups, labels), (0.01, 0.5), seed=seed)
        visits = np.argsort(splitting._seeded_keys(groups, seed))
        assert assigned[visits].tolist() == [TEST, TRAIN, TEST, VALIDATION]
        assert assigned.tolist() == reference_split(groups.tolist(), labels.tolist(), 0.01, 0.5, seed)


def test_with_as_many_patients_as_splits_an_empty_split_still_gets_one():
    """Three patients, one A case each, fractions 0.01 / 0.5 (targets 1.47 / 0.03 / 1.5): test, train,
    test in visit order; validation then takes test's patient (test holds the most), the last one."""
    groups = np.array(["x", "y", "z"])
    labels = np.array(["A"] * 3)
    for seed in (0, 1, 2):
        assigned = split((np.arange(3), groups, labels), (0.01, 0.5), seed=seed)
        visits = np.argsort(splitting._seeded_keys(groups, seed))
        assert assigned[visits].tolist() == [TEST, TRAIN, VALIDATION]
        assert assigned.tolist() == reference_split(groups.tolist(), labels.tolist(), 0.01, 0.5, seed)


def test_ragged_arrays_are_refused_with_a_sentence():
    with pytest.raises(ValueError, match=r"^case_ids, groups and labels must have the same length\.$"):
        split((np.array([1, 2]), np.array(["a"]), np.array(["x", "y"])))


def test_fractions_are_refused_with_whole_sentences():
    with pytest.raises(ValueError, match=r"^The test fraction must be greater than 0: a model needs a test split\.$"):
        check_fractions(0.1, 0.0)
    with pytest.raises(
        ValueError,
        match=r"^The validation and test fractions add up to 1; they must leave something \(less than 1 in total\) "
        r"for training\.$",
    ):
        check_fractions(0.5, 0.5)


def test_split_codes_are_int8_even_for_an_empty_cohort():
    assert split((np.array([], dtype=np.int64), np.array([]), np.array([]))).dtype == np.int8
    assert split((np.arange(6), np.array(list("aabbcd")), np.array(list("xyxyxy")))).dtype == np.int8
