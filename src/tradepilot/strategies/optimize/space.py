"""The search space of an optimisation, checked against the strategy's own parameter model.

A user gives, per parameter, either a numeric range (``low``, ``high``, optional ``step``,
optional ``log``) or a list of ``choices``. Each bound and choice is validated with the very
field of the strategy's pydantic model (type and constraints such as ``ge``/``le``), so a
range can only produce values the strategy accepts one by one; combinations that break a
cross-field rule (``fast`` ≥ ``slow``) are recorded as invalid trials, not errors. Problems
are 422 ``invalid_search_space`` with the path (``space.fast.low``).
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from tradepilot.core.errors import Unprocessable
from tradepilot.strategies.base import Strategy

MAX_GRID_POINTS = 1_000_000  # before the plan's cap: beyond this a grid is a mistake
Kind = Literal["int", "float", "choice"]


@dataclass(frozen=True)
class Dimension:
    """One parameter's range (``int``/``float``) or choices."""

    name: str
    kind: Kind
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def grid_values(self) -> list[Any]:
        """Every value a grid visits (a float range needs a step)."""
        if self.kind == "choice":
            return list(self.choices)
        assert self.low is not None and self.high is not None and self.step is not None
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step)))
        count = math.floor((self.high - self.low) / self.step + 1e-9) + 1
        return [float(round(self.low + i * self.step, 12)) for i in range(count)]

    def grid_size(self) -> int | None:
        if self.kind == "choice":
            return len(self.choices)
        if self.step is None:
            return None
        return math.floor((self.high - self.low) / self.step + 1e-9) + 1  # type: ignore[operator]

    def suggest(self, trial: Any) -> Any:
        """Draw this parameter in an Optuna trial."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high),  # type: ignore[arg-type]
                                     step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def as_dict(self) -> dict[str, Any]:
        if self.kind == "choice":
            return {"choices": list(self.choices)}
        return {"low": self.low, "high": self.high, "step": self.step, "log": self.log}


@dataclass(frozen=True)
class SearchSpace:
    dimensions: tuple[Dimension, ...]

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.dimensions]

    def grid(self) -> dict[str, list[Any]]:
        return {d.name: d.grid_values() for d in self.dimensions}

    def grid_size(self) -> int | None:
        sizes = [d.grid_size() for d in self.dimensions]
        return None if any(s is None for s in sizes) else math.prod(sizes)  # type: ignore[arg-type]

    def suggest(self, trial: Any) -> dict[str, Any]:
        return {d.name: d.suggest(trial) for d in self.dimensions}

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {d.name: d.as_dict() for d in self.dimensions}


class _Problems:
    def __init__(self) -> None:
        self.errors: list[dict[str, str]] = []

    def add(self, path: str, message: str) -> None:
        self.errors.append({"field": f"space.{path}", "in": "body", "code": "invalid_search_space",
                            "message": message})


def _base_type(annotation: Any) -> Any:
    """``int | None`` → ``int``; other annotations as they are."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _kind_of(field: FieldInfo) -> Kind:
    base = _base_type(field.annotation)
    if base is int:
        return "int"
    if base is float:
        return "float"
    return "choice"


def _adapter(field: FieldInfo) -> TypeAdapter[Any]:
    return TypeAdapter(Annotated[field.annotation, *field.metadata])  # type: ignore[valid-type]


def _check_value(adapter: TypeAdapter[Any], value: Any, path: str, problems: _Problems) -> Any:
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        problems.add(path, "; ".join(e["msg"] for e in exc.errors()))
        return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def parse_space(strategy: type[Strategy], raw: dict[str, dict[str, Any]]) -> SearchSpace:
    """The search space of ``raw`` (``{"fast": {"low": 5, "high": 45, "step": 5}, …}``) for
    ``strategy``; 422 ``invalid_search_space`` listing every problem with its path."""
    problems = _Problems()
    fields = strategy.Params.model_fields
    if not raw:
        problems.add("", "give at least one parameter to optimise")
    dims: list[Dimension] = []
    for name, spec in raw.items():
        field = fields.get(name)
        if field is None:
            problems.add(name, f"{strategy.name} has no parameter {name!r}; one of {', '.join(sorted(fields))}")
            continue
        dim = _dimension(name, field, spec, problems)
        if dim is not None:
            dims.append(dim)
    if problems.errors:
        raise Unprocessable(f"Invalid search space for {strategy.name}.", code="invalid_search_space",
                            extra={"errors": problems.errors})
    return SearchSpace(tuple(dims))


def _dimension(name: str, field: FieldInfo, spec: dict[str, Any], problems: _Problems) -> Dimension | None:
    adapter, kind = _adapter(field), _kind_of(field)
    if "choices" in spec:
        extra = set(spec) - {"choices"}
        choices = spec["choices"]
        if extra:
            problems.add(name, f"choices cannot be combined with {', '.join(sorted(extra))}")
        elif not isinstance(choices, list) or not choices or len(choices) > 1000:
            problems.add(f"{name}.choices", "a list of 1 to 1000 values")
        else:
            before = len(problems.errors)
            checked = [_check_value(adapter, v, f"{name}.choices.{i}", problems) for i, v in enumerate(choices)]
            if len(problems.errors) == before:
                if len({repr(v) for v in checked}) != len(checked):
                    problems.add(f"{name}.choices", "a value is listed twice")
                else:
                    return Dimension(name, "choice", choices=tuple(checked))
        return None
    if kind == "choice":
        problems.add(name, "not a numeric parameter: give its choices")
        return None
    unknown = set(spec) - {"low", "high", "step", "log"}
    if unknown:
        problems.add(name, f"unknown keys {', '.join(sorted(unknown))}; give low, high, step, log or choices")
        return None
    before = len(problems.errors)
    bounds: dict[str, float] = {}
    for key in ("low", "high"):
        value = spec.get(key)
        if not _is_number(value) or (kind == "int" and not float(value).is_integer()):
            problems.add(f"{name}.{key}", f"required: {'an integer' if kind == 'int' else 'a finite number'}")
            continue
        value = int(value) if kind == "int" else float(value)
        if _check_value(adapter, value, f"{name}.{key}", problems) is not None:
            bounds[key] = value
    step, log = spec.get("step"), spec.get("log", False)
    if not isinstance(log, bool):
        problems.add(f"{name}.log", "true or false")
    if step is not None and (not _is_number(step) or step <= 0 or (kind == "int" and not float(step).is_integer())):
        problems.add(f"{name}.step", "a positive " + ("integer" if kind == "int" else "number"))
    if len(problems.errors) != before:
        return None
    low, high = bounds["low"], bounds["high"]
    if low > high:
        problems.add(f"{name}.high", f"high ({high}) is below low ({low})")
        return None
    if log and (low <= 0 or (step is not None and not (kind == "int" and step == 1))):
        problems.add(f"{name}.log", "a log scale needs low > 0 and no step")
        return None
    if kind == "int":
        step = int(step or 1)
        if (high - low) % step:
            problems.add(f"{name}.high", f"high - low ({high - low}) is not a multiple of step ({step})")
            return None
    elif step is not None:
        span = (high - low) / step
        if not np.isclose(span, round(span), rtol=0, atol=1e-9):
            problems.add(f"{name}.high", f"high - low ({high - low}) is not a multiple of step ({step})")
            return None
        step = float(step)
    return Dimension(name, kind, low, high, step, log)


def check_grid(space: SearchSpace) -> int:
    """The grid's size; 422 ``grid_needs_step`` for a float range without a step."""
    errors = [{"field": f"space.{d.name}.step", "in": "body", "code": "grid_needs_step",
               "message": "a grid needs a step for a float range"} for d in space.dimensions if d.grid_size() is None]
    if errors:
        raise Unprocessable("A grid search needs a step for every float range.", code="grid_needs_step",
                            extra={"errors": errors})
    size = space.grid_size()
    assert size is not None
    if size > MAX_GRID_POINTS:
        raise Unprocessable(f"The grid has {size:,} points.", code="grid_too_large",
                            extra={"grid_points": size})
    return size
