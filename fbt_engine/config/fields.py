"""Typed config fields and the one generic builder that turns TOML tables into dataclasses.

Every section of a preset is a dataclass whose fields carry their help text and constraints in
metadata. `build()` checks a table against it and collects every problem instead of stopping at
the first, each naming its source (file or `--set`), dotted key, what was expected and a hint.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from fbt_engine.registry import did_you_mean

Origin = Callable[[str], str]  # dotted key -> where its value came from


def setting(
    default: Any,
    help: str,
    *,
    choices: tuple[str, ...] | Callable[[], list[str]] | None = None,
    min: float | None = None,
    max: float | None = None,
    required: bool = False,
    from_bool: tuple[str, str] | None = None,
    path: bool = False,
) -> Any:
    """A dataclass field with validation metadata. `required` means an empty value is an error.
    `from_bool`: the (false, true) choices a boolean stands for, for a setting that was a boolean
    once and whose old value still sits in saved runs' configs. `path`: a file or folder, which a
    relative value locates from the preset's folder (see presets.anchor_paths)."""
    meta = {"help": help, "choices": choices, "min": min, "max": max, "required": required, "from_bool": from_bool,
            "path": path}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class Problem:
    source: str
    key: str
    message: str
    environment: bool = False  # a missing file or device rather than a wrong value (exit 3, not 2)
    # a rule for new input that an earlier fbt did not have: the config it stored still resumes
    newer_rule: bool = False

    def __str__(self) -> str:
        return f"{self.source}: {self.key}: {self.message}"


_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def as_written(value: Any) -> str:
    """A value in the form a preset writes it ("two", true, 1e+09, [1, 2]): the form says its type,
    where Python's names ('two' (str), True (bool), 1000000000.0 (float)) said it in another language."""
    if isinstance(value, float) and "e" in f"{value:g}":
        return f"{value:g}"
    if isinstance(value, (bool, int, float, str, list, dict)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def _type_word(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is list:
        (item,) = typing.get_args(tp)
        return f"a list of {_type_word(item).removeprefix('a ').removeprefix('an ')}s"
    if origin is dict or tp is dict:
        return "a table"
    return _TYPE_WORDS.get(tp, getattr(tp, "__name__", str(tp)))


def _check_scalar(tp: Any, value: Any) -> tuple[bool, Any]:
    """(ok, value converted); bool is never an int here, an int is a fine float."""
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if tp is str:
        return isinstance(value, str), value
    raise TypeError(f"unsupported setting type {tp}")


def _check_value(tp: Any, value: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(tp)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            return False, value
        checked = [_check_scalar(item, v) for v in value]
        return all(ok for ok, _ in checked), [v for _, v in checked]
    if origin is dict or tp is dict:
        return isinstance(value, dict), value
    return _check_scalar(tp, value)


def listed_choices(choices: tuple[str, ...]) -> str:
    return ", ".join(f'"{c}"' for c in choices) if len(choices) <= 12 else f"{len(choices)} names"


def _expected(f: dataclasses.Field, tp: Any) -> str:
    """What a setting takes, in words: its choices when they are a short fixed list (so that
    `amp = true` learns it wants "bf16"), else its type."""
    choices = f.metadata.get("choices")
    if choices is not None and not callable(choices) and len(choices) <= 12:
        return f"one of {listed_choices(choices)}"
    return _type_word(tp)


def _constraint_problem(f: dataclasses.Field, value: Any) -> str | None:
    meta = f.metadata
    choices = meta.get("choices")
    if callable(choices):
        choices = tuple(choices())
    if choices is not None and isinstance(value, str) and value not in choices:
        if not (value == "" and not meta.get("required")):
            return f'expected one of {listed_choices(choices)}, got "{value}"{did_you_mean(value, choices)}'
    lo, hi = meta.get("min"), meta.get("max")
    numbers = value if isinstance(value, list) else [value]
    for v in numbers:
        if isinstance(v, float) and not math.isfinite(v):  # TOML has nan and inf; no setting wants them
            return f"expected a finite number, got {v}"
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if lo is not None and v < lo:
                return f"expected a value ≥ {lo}, got {v}"
            if hi is not None and v > hi:
                return f"expected a value ≤ {hi}, got {v}"
    if meta.get("required") and value in ("", [], {}):
        return "is required and empty"
    return None


def hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def build(cls: type, table: Mapping[str, Any], prefix: str, origin: Origin, problems: list[Problem]) -> Any:
    """A `cls` instance from `table`; every problem found is appended, defaults fill the gaps."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    types_ = hints(cls)
    values: dict[str, Any] = {}
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        f = fields.get(key)
        if f is None:
            problems.append(Problem(origin(dotted), dotted,
                                    f"unknown key{did_you_mean(key, fields)}"
                                    f"; {cls_label(cls)} takes {', '.join(sorted(fields))}"))
            continue
        tp = types_[key]
        if is_section(tp):
            if not isinstance(value, dict):
                problems.append(Problem(origin(dotted), dotted, f"expected a table, got {as_written(value)}"))
                continue
            values[key] = build(tp, value, f"{dotted}.", origin, problems)
            continue
        if isinstance(value, bool) and f.metadata.get("from_bool"):
            value = f.metadata["from_bool"][value]
        ok, converted = _check_value(tp, value)
        if not ok:
            problems.append(Problem(origin(dotted), dotted, f"expected {_expected(f, tp)}, got {as_written(value)}"))
            continue
        message = _constraint_problem(f, converted)
        if message:
            problems.append(Problem(origin(dotted), dotted, message))
            continue
        values[key] = converted
    for name, f in fields.items():
        if name not in table and f.metadata.get("required"):
            dotted = f"{prefix}{name}"
            problems.append(Problem(origin(dotted), dotted, f"is required: {f.metadata['help']}"))
    return cls(**values)


def cls_label(cls: type) -> str:
    return f"[{getattr(cls, 'section', cls.__name__)}]"


def to_table(obj: Any) -> dict[str, Any]:
    """A dataclass as a plain TOML-ready dict (nested sections become sub-tables)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        out[f.name] = to_table(value) if dataclasses.is_dataclass(value) else value
    return out


def leaf_fields(cls: type, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], dataclasses.Field, Any]]:
    """(key path, field, type) of every setting of `cls`, nested sections walked through."""
    types_ = hints(cls)
    for f in dataclasses.fields(cls):
        if is_section(types_[f.name]):
            yield from leaf_fields(types_[f.name], (*prefix, f.name))
        else:
            yield (*prefix, f.name), f, types_[f.name]


def describe_fields(cls: type) -> list[tuple[str, str, Any, str]]:
    """(key, what it takes, default, help) for every field, nested sections flattened with dots."""
    return [(".".join(key), _expected(f, tp), f.default if f.default is not dataclasses.MISSING else f.default_factory(),
             f.metadata.get("help", "")) for key, f, tp in leaf_fields(cls)]
