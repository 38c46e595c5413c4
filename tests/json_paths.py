"""Paths into parsed JSON and copies changed at one path: the variant generators of the FHIR reader
tests (tests/cases/test_fhir_plain.py) and of the CDS Hooks prefetch tests share them."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any


def leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every element and list item below ``value``."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*path, key)
            yield from leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*path, index)
            yield from leaves(item, (*path, index))


def _parent(data: Any, path: tuple[Any, ...]) -> tuple[Any, Any]:
    changed = copy.deepcopy(data)
    target = changed
    for step in path[:-1]:
        target = target[step]
    return changed, target


def changed(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    """A deep copy of ``data`` with (a copy of) ``value`` at ``path``."""
    result, parent = _parent(data, path)
    parent[path[-1]] = copy.deepcopy(value)
    return result


def dropped(data: Any, path: tuple[Any, ...]) -> Any:
    """A deep copy of ``data`` without the element or item at ``path``."""
    result, parent = _parent(data, path)
    del parent[path[-1]]
    return result
