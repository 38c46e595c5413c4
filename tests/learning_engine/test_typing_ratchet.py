"""The strict-typing ratchet: the domain modules mypy checks with --strict's flags only grow.

pyproject.toml's ``[[tool.mypy.overrides]]`` lists them; ``make lint`` runs mypy. Taking a module
out of the list (to silence an error) fails here: fix the error instead.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

STRICT_TODAY = {
    "cases.dictionary.definition",
    "cases.dictionary.validation",
    "cases.dictionary.checking",
    "cases.dictionary.models",
    "cases.dictionary.units",
    "cases.dictionary.labels",
    "cases.rows",
    "cases.deid",
    "cases.quality",
    "cases.interchange",
    "cases.models",
    "cases.statistics",
    "training.splitting",
    "training.ranges",
    "training.models.job",
    "training.models.dataset",
    "training.models.model_type",
    "models_registry.experiments.stats",
    "models_registry.experiments.models",
    "models_registry.serving.models",
    "models_registry.serving.router",
    "models_registry.generation",
    "learning_engine.actors",
    "learning_engine.transitions",
    "learning_engine.audit",
    "alerts.event_types",
    "alerts.deidentified",
    "alerts.models",
    "alerts.events",
    "learning_engine.models",
    "learning_engine.periodic",
    "cases.deid.safe_harbor",
    "cases.deid.identifiers",
    "cases.deid.matchers",
    "cases.deid.scrubbing",
    "cases.deid.records",
    "cases.deid.residual",
    "cases.derived",
    "cases.recheck",
    "training.evaluation",
    "training.features",
    "training.datasets",
    "models_registry.registry.compare",
    "models_registry.registry.models",
    "monitoring.stats",
    "monitoring.profiles",
    "monitoring.models",
    "monitoring.health",
}
STRICT_FLAGS = {
    "disallow_untyped_defs",
    "disallow_incomplete_defs",
    "disallow_untyped_calls",
    "disallow_any_generics",
    "warn_return_any",
    "no_implicit_reexport",
    "strict_equality",
}


def strict_overrides() -> list[dict]:
    config = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    return [
        override
        for override in config["tool"]["mypy"].get("overrides", [])
        if all(override.get(flag) is True for flag in STRICT_FLAGS)
    ]


def test_the_strictly_typed_modules_only_grow():
    strict = {module for override in strict_overrides() for module in override["module"]}
    assert strict >= STRICT_TODAY, f"taken out of strict typing: {sorted(STRICT_TODAY - strict)}"


def test_every_strict_module_exists():
    root = Path(__file__).resolve().parents[2]
    for override in strict_overrides():
        for module in override["module"]:
            path = root / module.replace(".", "/")
            assert path.with_suffix(".py").exists() or (path / "__init__.py").exists(), module
