"""The algorithms a training job can run, their hyperparameters, and how to build them.

One table per algorithm: name -> (type, default, low, high). ``validate_hyperparameters`` fills
defaults and refuses unknown names, wrong types and out-of-range values with a 400, so a job
row never holds hyperparameters that would crash the worker later.
"""

from __future__ import annotations

from typing import Any

from learning_engine.exceptions import InvalidRequest

# Name -> (kind, default, low, high). kind: "int", "float", "layers" (list of ints), "choice:a|b".
SPECS: dict[str, dict[str, tuple[str, Any, Any, Any]]] = {
    "logistic_regression": {
        "C": ("float", 1.0, 1e-6, 1e6),
        "max_iter": ("int", 2000, 10, 100_000),
        "class_weight": ("choice:none|balanced", "none", None, None),
        "seed": ("int", 0, 0, 2**31 - 1),
    },
    "sgd": {
        "epochs": ("int", 10, 1, 1000),
        "batch_size": ("int", 32, 1, 100_000),
        "learning_rate": ("float", 0.01, 1e-6, 10.0),
        "alpha": ("float", 1e-4, 0.0, 10.0),
        "seed": ("int", 0, 0, 2**31 - 1),
    },
    "mlp": {
        "epochs": ("int", 10, 1, 1000),
        "batch_size": ("int", 32, 1, 100_000),
        "learning_rate": ("float", 0.001, 1e-6, 10.0),
        "alpha": ("float", 1e-4, 0.0, 10.0),
        "hidden_layers": ("layers", [64], 1, 4096),
        "seed": ("int", 0, 0, 2**31 - 1),
    },
    "gradient_boosting": {
        "max_iter": ("int", 200, 1, 10_000),
        "learning_rate": ("float", 0.1, 1e-4, 1.0),
        "max_depth": ("int", 6, 1, 64),
        "max_leaf_nodes": ("int", 31, 2, 1024),
        "seed": ("int", 0, 0, 2**31 - 1),
    },
}
EPOCH_BASED = frozenset({"sgd", "mlp"})
MAX_HIDDEN_LAYERS = 8


def _bad(name: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"hyperparameters.{name}: {message}", code="invalid_hyperparameters", field=name)


def _coerce(name: str, kind: str, value: Any, low: Any, high: Any) -> Any:
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise _bad(name, "must be an integer.")
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _bad(name, "must be a number.")
        try:
            value = float(value)
        except OverflowError:  # an integer beyond float's range
            raise _bad(name, "must be finite.") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise _bad(name, "must be finite.")
    elif kind == "layers":
        if not isinstance(value, list) or not value or len(value) > MAX_HIDDEN_LAYERS:
            raise _bad(name, f"must be a list of 1 to {MAX_HIDDEN_LAYERS} layer sizes.")
        return [_coerce(name, "int", item, low, high) for item in value]
    elif kind.startswith("choice:"):
        options = kind.removeprefix("choice:").split("|")
        if value is None:
            value = "none"
        if value not in options:
            raise _bad(name, f"must be one of {', '.join(options)}.")
        return value
    if not low <= value <= high:
        raise _bad(name, f"must be between {low:g} and {high:g}.")
    return value


def validate_hyperparameters(algorithm: str, given: dict[str, Any]) -> dict[str, Any]:
    """The full hyperparameters of ``algorithm``: defaults filled in, every value checked."""
    from training.faults import registered

    fault = registered(algorithm)  # the simulation's own (training.faults); unknown everywhere else
    base = fault.base if fault is not None else algorithm
    if base not in SPECS:
        raise InvalidRequest(
            f"Unknown algorithm {algorithm!r}; choose one of {', '.join(SPECS)}.", code="invalid_algorithm"
        )
    if not isinstance(given, dict):
        raise InvalidRequest("hyperparameters must be an object.", code="invalid_hyperparameters")
    spec = SPECS[base]
    unknown = sorted(set(given) - set(spec))
    if unknown:
        raise _bad(unknown[0], f"is not a hyperparameter of {algorithm} (known: {', '.join(spec)}).")
    return {
        name: _coerce(name, kind, given.get(name, default), low, high)
        for name, (kind, default, low, high) in spec.items()
    }
