"""Config dataclasses as plain dicts (JSON), strictly, and the checks their ``__post_init__`` runs.

Every config dataclass of the project follows one convention (``docs/architecture.md``):

- fields documented with ``#:`` comments above them;
- ``__post_init__`` checks each field and raises ``ValueError`` with a message naming the class,
  the field, the value and the allowed range (use :func:`check_range` / :func:`check_choice`);
- :class:`ConfigMixin` gives ``to_dict`` / ``from_dict`` (and ``to_json`` / ``from_json``): a
  nested dict of plain values (enums by name, tuples as lists) and back; ``from_dict`` is strict:
  an unknown key is an error naming the known ones, a value of the wrong type an error naming its
  path; a missing key takes the field's default;
- ``validate()`` re-runs the checks over the whole tree, for a config changed after construction.

The functions work on any dataclass, mixin or not (:func:`config_to_dict`, :func:`config_from_dict`).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


# -- checks ----------------------------------------------------------------------------------------------
def _where(config: object, name: str) -> str:
    return f"{type(config).__name__}.{name}"


def check_range(config: object, name: str, lo: float | None = None, hi: float | None = None, *,
                integer: bool = False, optional: bool = False, lo_open: bool = False,
                hi_open: bool = False) -> None:
    """Raise ``ValueError`` unless ``config.<name>`` is a number in ``[lo, hi]`` (``(lo`` / ``hi)``
    when open; None: unbounded on that side), an integer if ``integer``, or None if ``optional``."""
    value = getattr(config, name)
    if value is None and optional:
        return
    kind = "an integer" if integer else "a number"
    left, right = "(" if lo_open else "[", ")" if hi_open else "]"
    span = f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"
    wanted = f"{kind} in {span}" + (" or None" if optional else "")
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if not is_number or (integer and not isinstance(value, int)):
        raise ValueError(f"{_where(config, name)}: expected {wanted}, got {value!r}")
    if value != value or (lo is not None and (value <= lo if lo_open else value < lo)) or (
            hi is not None and (value >= hi if hi_open else value > hi)):
        raise ValueError(f"{_where(config, name)}: expected {wanted}, got {value!r}")


def check_choice(config: object, name: str, choices: Iterable[Any]) -> None:
    """Raise ``ValueError`` unless ``config.<name>`` is one of ``choices``."""
    value = getattr(config, name)
    choices = tuple(choices)
    if value not in choices or isinstance(value, bool) != any(isinstance(c, bool) for c in choices):
        raise ValueError(f"{_where(config, name)}: expected one of {', '.join(map(repr, choices))}, got {value!r}")


def check_type(config: object, name: str, kind: type | tuple[type, ...]) -> None:
    """Raise ``TypeError`` unless ``config.<name>`` is an instance of ``kind`` (a nested config)."""
    value = getattr(config, name)
    if not isinstance(value, kind):
        want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise TypeError(f"{_where(config, name)}: expected a {want}, got {type(value).__name__}")


# -- dataclass <-> dict ----------------------------------------------------------------------------------
def config_to_dict(config: object) -> dict[str, Any]:
    """A dataclass instance as a nested dict of JSON values (enums by name, tuples as lists)."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"config_to_dict: expected a dataclass instance, got {type(config).__name__}")
    return {f.name: _plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return config_to_dict(value)
    if isinstance(value, enum.Enum):
        return value.name.lower()
    if isinstance(value, Mapping):
        return {(k.name.lower() if isinstance(k, enum.Enum) else str(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"config_to_dict: cannot store a {type(value).__name__} ({value!r}) as JSON")


def config_from_dict(cls: type[T], data: Mapping[str, Any], *, path: str = "") -> T:
    """Build the dataclass ``cls`` from ``data`` (as :func:`config_to_dict` writes it), strictly.

    Unknown keys raise ``ValueError`` naming them and the known ones; values are converted to the
    fields' annotated types (nested dataclasses, ``X | None``, tuples, enums by name or value) and a
    value that does not fit raises ``TypeError`` naming its path (``stage.optimizer.lr``); missing
    keys keep their defaults. The class's ``__post_init__`` then checks the values.
    """
    where = path or cls.__name__
    if not isinstance(data, Mapping):
        raise TypeError(f"{where}: expected a mapping of fields, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; known keys: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {name: _convert(hints[name], value, f"{path}.{name}" if path else name)
              for name, value in data.items()}
    return cls(**kwargs)


def _convert(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(a, value, path)
            except (TypeError, ValueError) as exc:
                errors.append(str(exc))
        raise TypeError(errors[0] if len(errors) == 1 else f"{path}: {value!r} fits none of {tp}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return config_from_dict(tp, value, path=path)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if isinstance(value, tp):
            return value
        if isinstance(value, str) and value.upper() in tp.__members__:
            return tp[value.upper()]
        try:
            return tp(value)
        except ValueError:
            raise ValueError(f"{path}: expected one of {[m.name.lower() for m in tp]}, got {value!r}") from None
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise TypeError(f"{path}: expected a list, got {type(value).__name__}")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            items = [_convert(args[0], v, f"{path}[{i}]") for i, v in enumerate(value)]
        elif origin is tuple and args:
            if len(args) != len(value):
                raise TypeError(f"{path}: expected {len(args)} items, got {len(value)}")
            items = [_convert(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True))]
        else:
            items = [_convert(args[0] if args else Any, v, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise TypeError(f"{path}: expected a mapping, got {type(value).__name__}")
        kt, vt = args if args else (Any, Any)
        return {_convert(kt, k, f"{path}.{k}"): _convert(vt, v, f"{path}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is bool or tp is str:
        if not isinstance(value, tp):
            raise TypeError(f"{path}: expected a {tp.__name__}, got {value!r}")
        return value
    return value


class ConfigMixin:
    """``to_dict`` / ``from_dict`` / ``to_json`` / ``from_json`` / ``validate`` for a config dataclass
    (see the module docstring). Subclasses write their checks in ``__post_init__``."""

    def to_dict(self) -> dict[str, Any]:
        """The config as a nested dict of JSON values."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
        """The config from :meth:`to_dict`'s dict; strict on unknown keys (:func:`config_from_dict`)."""
        return config_from_dict(cls, data)

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls: type[T], text: str) -> T:
        return config_from_dict(cls, json.loads(text))

    def validate(self) -> None:
        """Re-run ``__post_init__``'s checks over this config and every nested config (after fields were
        changed in place, which dataclasses do not check)."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, ConfigMixin):
                value.validate()
        post = getattr(self, "__post_init__", None)
        if post is not None:
            post()
