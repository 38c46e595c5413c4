"""The check both import commands' tests make of ``import_cases.fewer_full_collections``."""

from __future__ import annotations

import gc
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

from cases.management.commands import import_cases


def assert_full_collections_spaced_and_restored(
    monkeypatch: pytest.MonkeyPatch,
    defaults: tuple[int, ...],
    *,
    fails: bool,
    module: ModuleType,
    reader: str,
    run_import: Callable[[], Any],
) -> None:
    """Run the import (its ``module.reader`` failing when ``fails``): while it reads, full
    collections are spaced and what was alive before is frozen; afterwards both are put back."""
    seen: list[tuple[tuple[int, ...], int]] = []
    original = getattr(module, reader)

    def observed(*args: Any, **kwargs: Any) -> Any:
        seen.append((gc.get_threshold(), gc.get_freeze_count()))
        if fails:
            raise RuntimeError("the database went away")
        return original(*args, **kwargs)

    monkeypatch.setattr(module, reader, observed)
    if fails:
        with pytest.raises(RuntimeError):
            run_import()
    else:
        assert run_import().error is None
    assert gc.get_threshold() == defaults
    assert gc.get_freeze_count() == 0
    [(during, frozen)] = seen
    assert during[:2] == defaults[:2]
    assert during[2] == import_cases.FULL_COLLECTION_SPACING
    # What was alive before the import (Django: hundreds of thousands of objects) is left out of
    # its collections; CPython 3.12 counts a few hundred static objects as frozen regardless.
    assert frozen > 10_000
