"""Patient-grouped, label-stratified train / validation / test split.

``split_cases`` assigns every case to a split so that:

- all cases of one patient (one group) land in the same split: no patient is in two splits, so
  the test metrics are about unseen patients;
- each split's label proportions come as close to the cohort's as whole groups allow;
- each split with a positive fraction gets at least one group whenever there are enough groups;
- the same cases, groups, labels, fractions and seed always give the same assignment, whatever
  the order of the input (everything is keyed on sorted unique values, never on positions).

The method is a greedy one, the usual one for grouped stratification: groups are visited largest
first (big groups are the hard ones to place; small ones then fill the gaps), ties broken by a
seeded hash of the group's value (the seed's only role); each group goes to the split that most
lacks its labels relative to that split's target. Memory is a few numpy arrays the size of the
input; the loop is over groups, with plain Python floats for the three running deficits.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np
import numpy.typing as npt

SPLIT_NAMES = ("train", "validation", "test")
TRAIN, VALIDATION, TEST = 0, 1, 2

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_CHUNK = 65_536  # groups converted to Python values at a time


def check_fractions(validation_fraction: float, test_fraction: float) -> None:
    """Raise ``ValueError`` with a readable message unless the fractions make three sane splits."""
    for name, value in (("validation fraction", validation_fraction), ("test fraction", test_fraction)):
        if not isinstance(value, int | float) or math.isnan(value):
            raise ValueError(f"The {name} must be a number.")
        if value < 0 or value >= 1:
            raise ValueError(f"The {name} must be at least 0 and less than 1, got {value:g}.")
    if test_fraction <= 0:
        raise ValueError("The test fraction must be greater than 0: a model needs a test split.")
    if validation_fraction + test_fraction >= 1:
        raise ValueError(
            f"The validation and test fractions add up to {validation_fraction + test_fraction:g}; "
            "they must leave something (less than 1 in total) for training."
        )


def split_cases(
    case_ids: npt.ArrayLike,
    groups: npt.ArrayLike,
    labels: npt.ArrayLike,
    *,
    validation_fraction: float,
    test_fraction: float,
    seed: int,
) -> npt.NDArray[np.int8]:
    """The split code (``TRAIN``, ``VALIDATION``, ``TEST``) of every case, aligned with the input.

    ``groups`` are the patients (pseudonyms, or integer keys derived from them); ``labels`` the
    classes to stratify on. Case ids must be unique; they only tie the arrays together.
    """
    check_fractions(validation_fraction, test_fraction)
    ids = np.asarray(case_ids)
    group_array = np.asarray(groups)
    label_array = np.asarray(labels)
    n = len(ids)
    if not (len(group_array) == len(label_array) == n):
        raise ValueError("case_ids, groups and labels must have the same length.")
    if n == 0:
        return np.zeros(0, dtype=np.int8)
    if len(np.unique(ids)) != n:
        raise ValueError("Case ids must be unique.")

    group_values, group_of_case = np.unique(group_array, return_inverse=True)
    _label_values, label_of_case = np.unique(label_array, return_inverse=True)
    group_of_case = group_of_case.reshape(-1).astype(np.int64)
    label_of_case = label_of_case.reshape(-1).astype(np.int64)
    n_groups, n_labels = len(group_values), int(label_of_case.max()) + 1

    # Sparse (group, label) -> count, sorted by group: most groups hold a single label.
    pairs, pair_counts = np.unique(group_of_case * n_labels + label_of_case, return_counts=True)
    pair_group = pairs // n_labels
    pair_label = pairs % n_labels
    starts = np.searchsorted(pair_group, np.arange(n_groups + 1))
    sizes = np.bincount(group_of_case, minlength=n_groups)

    keys = _seeded_keys(group_values, seed)
    order = np.lexsort((np.arange(n_groups), keys, -sizes))

    fractions = (1.0 - validation_fraction - test_fraction, validation_fraction, test_fraction)
    active = [split for split in (TRAIN, VALIDATION, TEST) if fractions[split] > 0]
    totals = np.bincount(label_of_case, minlength=n_labels).astype(np.float64)
    # deficit[split][label]: how many cases of the label the split still lacks to reach its target.
    deficit = [(totals * fractions[split]).tolist() for split in range(3)]
    inverse_totals = (1.0 / totals).tolist()

    assigned = np.empty(n_groups, dtype=np.int8)
    for begin in range(0, n_groups, _CHUNK):
        chunk = order[begin : begin + _CHUNK]
        first = starts[chunk]
        last = starts[chunk + 1]
        single = (last - first == 1).tolist()
        first_label = pair_label[first].tolist()
        first_count = pair_counts[first].tolist()
        choice = []
        for index, group in enumerate(chunk.tolist()):
            if single[index]:
                label, count = first_label[index], first_count[index]
                best = active[0]
                for split in active[1:]:
                    if deficit[split][label] > deficit[best][label]:
                        best = split
                deficit[best][label] -= count
            else:
                span = range(int(starts[group]), int(starts[group + 1]))
                members = [(int(pair_label[i]), int(pair_counts[i])) for i in span]
                best, best_score = active[0], None
                for split in active:  # ties go to the earlier split: deterministic
                    row = deficit[split]
                    score = sum(count * row[lab] * inverse_totals[lab] for lab, count in members)
                    if best_score is None or score > best_score:
                        best, best_score = split, score
                for lab, count in members:
                    deficit[best][lab] -= count
            choice.append(best)
        assigned[chunk] = choice

    _fill_empty_splits(assigned, active, sizes, order)
    return assigned[group_of_case]


def _fill_empty_splits(
    assigned: npt.NDArray[np.int8], active: list[int], sizes: npt.NDArray[Any], order: npt.NDArray[Any]
) -> None:
    """Give each empty split (with a positive fraction) one group, when there are groups to spare.

    The greedy pass can leave a small split empty when there are few groups. The group moved is
    the smallest of the split holding the most groups (the last visited among equals), which
    disturbs the stratification least.
    """
    if len(assigned) < len(active):
        return
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order))
    for split in active:
        if np.any(assigned == split):
            continue
        counts = {other: int(np.count_nonzero(assigned == other)) for other in active}
        donor = max(active, key=lambda other: (counts[other], -other))
        members = np.flatnonzero(assigned == donor)
        # Smallest group first; among equals the one visited last by the greedy pass.
        pick = members[np.lexsort((-position[members], sizes[members]))[0]]
        assigned[pick] = split


def _seeded_keys(values: npt.NDArray[Any], seed: int) -> npt.NDArray[np.uint64]:
    """A seeded pseudo-random 64-bit key per unique group value (the tie-breaking visit order)."""
    seed_part = ((int(seed) & _MASK64) * _GOLDEN + _GOLDEN) & _MASK64
    if values.dtype.kind in "iu":
        # splitmix64's finaliser, vectorised; uint64 arithmetic wraps, which is what it needs.
        z = values.astype(np.uint64) + np.uint64(seed_part)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))
    salt = seed_part.to_bytes(8, "little")
    return np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(str(value).encode(), digest_size=8, key=salt).digest(), "little")
            for value in values.tolist()
        ),
        dtype=np.uint64,
        count=len(values),
    )
