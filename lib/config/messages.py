"""pydantic's validation errors as one sentence naming the dotted key, and the models' base class
that raises them as a ConfigError."""
from __future__ import annotations

import difflib
import types
import typing
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, ValidationError

from lib.config.fields import NAME_PATTERN, _Invalid
from lib.errors import ConfigError


class _Nested(ValueError):
    """A run layer that failed the validation of `model` (RunConfig): translated with the layer's
    path as prefix."""

    def __init__(self, error: ValidationError, data: Any, model: type[BaseModel]):
        super().__init__(str(error))
        self.error, self.data, self.model = error, data, model


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(_message(exc, type(self), data)) from None

    # Nested sections are validated by pydantic-core directly, not through this __init__ (the
    # flag pydantic's own BaseModel.__init__ and RootModel.__init__ carry); so only a direct
    # call, ModelConfig(embedding_dim=0), turns the error into a ConfigError here.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @classmethod
    def validate_dict(cls, data: Any, context: dict | None = None):
        """`cls` from plain data; ConfigError naming the dotted key if it does not fit."""
        try:
            return cls.model_validate(data, context=context)
        except ValidationError as exc:
            raise ConfigError(_message(exc, cls, data)) from None


# ----------------------------------------------------------------------------- error messages
def _strip(tp: Any) -> Any:
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _members(tp: Any) -> list:
    tp = _strip(tp)
    if typing.get_origin(tp) in (Union, types.UnionType):
        return [_strip(a) for a in typing.get_args(tp)]
    return [tp]


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _keys(model: type[BaseModel]) -> list[str]:
    return [f.alias or n for n, f in model.model_fields.items()]


def _field(model: type[BaseModel], key: Any) -> Any:
    for n, f in model.model_fields.items():
        if (f.alias or n) == key:
            return f.annotation if not f.metadata else Annotated[(f.annotation, *f.metadata)]
    return None


def _noun(tp: Any) -> str:
    tp = _strip(tp)
    origin = typing.get_origin(tp)
    if tp is type(None):
        return "null"
    if origin is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(tp)))
    if _is_model(tp):
        return "a section (mapping)"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}.get(origin or tp, getattr(tp, "__name__", str(tp)))


def did_you_mean(value: Any, choices: list[str]) -> str:
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _got(value: Any) -> str:
    return f"got {value!r} ({type(value).__name__})"


def _message(exc: ValidationError, root: type[BaseModel], data: Any) -> str:
    """pydantic's first error as one sentence naming the dotted key, in the words the old
    hand-written validator used (the tests and the docs quote them)."""
    error = exc.errors()[0]
    loc, kind, ctx = error["loc"], error["type"], error.get("ctx") or {}
    tp: Any = root
    parts: list[str] = []
    value = data
    parent: type[BaseModel] | None = None
    nullable = False
    key_error = None  # a dict key that failed its own type (loc ..., key, '[key]')
    i = 0
    while i < len(loc):
        item = loc[i]
        members = _members(tp)
        nullable = type(None) in members
        members = [m for m in members if m is not type(None)]
        if len(members) > 1:  # a union: report against the whole field, as one choice of types
            break
        base = members[0]
        origin = typing.get_origin(base)
        if _is_model(base):
            parent = base
            parts.append(str(item))
            value = value.get(item) if isinstance(value, dict) else None
            tp = _field(base, item)
            if tp is None:
                break  # an unknown key
        elif origin is list:
            parts[-1:] = [f"{parts[-1] if parts else ''}[{item}]"]
            value = value[item] if isinstance(value, list) and isinstance(item, int) and item < len(value) else None
            tp = typing.get_args(base)[0]
        elif origin is dict:
            key_tp, value_tp = typing.get_args(base)
            if i + 1 < len(loc) and loc[i + 1] == "[key]":
                key_error, tp = item, key_tp
                break
            parts.append(str(item))
            value = value.get(item) if isinstance(value, dict) else None
            tp = value_tp
        else:
            break
        i += 1
    path = ".".join(parts)
    if "input" in error and i == len(loc):
        value = error["input"]  # the walk reached the failing value: pydantic's own copy of it

    if kind == "extra_forbidden":
        valid = _keys(parent) if parent else []
        return f"unknown key '{path}'{did_you_mean(loc[-1], valid)}; valid keys here: {', '.join(valid)}"
    if kind == "missing":
        return f"missing key '{path}': this section requires it"
    if key_error is not None:
        choices = list(typing.get_args(_strip(tp))) if typing.get_origin(_strip(tp)) is Literal else []
        if choices:
            return (f"{path}: unknown key {key_error!r}{did_you_mean(key_error, choices)}; "
                    f"valid choices: {', '.join(choices)}")
        return f"{path}: key {key_error!r}: {error['msg']}"
    if i < len(loc):  # stopped at a union
        for other in exc.errors():  # a member that took the value's type but refused a value in it
            cause = (other.get("ctx") or {}).get("error")
            if other["type"] == "value_error" and isinstance(cause, _Invalid) and other["loc"][:i] == loc[:i]:
                return f"{'.'.join(p for p in (path, cause.key) if p)}: {cause.message}"
        members = _members(tp)
        return f"{path}: expected {' or '.join(_noun(m) for m in members)}, {_got(value)}"
    if kind in ("value_error", "assertion_error"):
        cause = ctx.get("error")
        if isinstance(cause, _Nested):
            inner = _message(cause.error, cause.model, cause.data)
            return f"{path}: {inner}" if path else inner
        if isinstance(cause, _Invalid):
            key = ".".join(p for p in (path, cause.key) if p)
            return f"{key}: {cause.message}" if key else cause.message
        return f"{path}: {cause}" if path else str(cause)
    if kind == "literal_error":
        choices = [str(c) for c in typing.get_args(_strip(tp))] if typing.get_origin(_strip(tp)) is Literal else []
        if not isinstance(value, str):
            return f"{path}: expected one of {', '.join(choices)}, {_got(value)}"
        return f"{path}: unknown value {value!r}{did_you_mean(value, choices)}; valid choices: {', '.join(choices)}"
    if kind == "finite_number":
        return f"{path}: must be a finite number, got {value!r}"
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than": "<", "less_than_equal": "<="}
    if kind in bounds:
        limit = next(iter(ctx.values()))
        return f"{path}: must be {bounds[kind]} {limit}{' (or null)' if nullable else ''}, got {value!r}"
    if kind == "string_pattern_mismatch":
        return f"{path}: {value!r} must match {NAME_PATTERN} (letters, digits and underscores only)"
    if kind == "too_short":
        return f"{path}: needs at least {ctx.get('min_length')} item(s), got {value!r}"
    if kind == "bool_type":
        return f"{path}: expected true or false, {_got(value)}"
    if kind.endswith("_type") or kind.endswith("_parsing") or kind in ("int_from_float", "model_attributes_type"):
        return f"{path}: expected {_noun(tp) if not nullable else _noun(tp) + ' or null'}, {_got(value)}"
    return f"{path}: {error['msg']}, {_got(value)}"

