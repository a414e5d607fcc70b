"""Serialisation derived from dataclasses: what --json prints of a result is its fields, not a hand-written list.

A dataclass that mixes in `Serialised` gets `to_dict()`: its fields (recursively, as `dataclasses.asdict` does;
tuples become lists), without those named in `_omit`, with the properties (or methods that take no arguments)
named in `_derived` added after them. Three more class attributes keep the JSON shapes people and scripts read:
- `_renamed`: attribute -> JSON key, where the key is not the attribute's name ("deb" for a package's path);
- `_rounded`: attribute -> decimals, for measured seconds and milliseconds;
- `_omit_unset`: attributes left out while None, False or empty (keys that only appear when something is on).
Values become plain JSON data (`data()`): a Path is its str, an enum its value, an `AsText` value (a version) its
str, a nested dataclass its own `to_dict()` or fields.
"""

from __future__ import annotations

import dataclasses
import enum
from pathlib import PurePath
from typing import Any, ClassVar


class AsText:
    """Mixin for a value type (a version) whose JSON is its str(), not its fields."""


def data(value: Any) -> Any:
    """`value` as plain data: a dataclass as the dict of its fields, lists and tuples as lists, dicts as dicts."""
    if isinstance(value, enum.Enum):  # before str: Tunnelling is a str enum whose str() is for people
        return data(value.value)
    if isinstance(value, (PurePath, AsText)):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        to_dict = getattr(value, "to_dict", None)
        if callable(to_dict):
            return to_dict()
        return {f.name: data(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [data(item) for item in value]
    if isinstance(value, dict):
        return {key: data(item) for key, item in value.items()}
    return value


def _unset(value: Any) -> bool:
    return value is None or value is False or (isinstance(value, (str, list, tuple, dict)) and not value)


class Serialised:
    """Mixin for a dataclass: `to_dict()` derived from its fields and `_derived` properties (see the module)."""

    _omit: ClassVar[tuple[str, ...]] = ()
    _derived: ClassVar[tuple[str, ...]] = ()
    _renamed: ClassVar[dict[str, str]] = {}
    _rounded: ClassVar[dict[str, int]] = {}
    _omit_unset: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        fields = [f.name for f in dataclasses.fields(self)]  # type: ignore[arg-type]
        out: dict[str, Any] = {}
        for name in [*(f for f in fields if f not in self._omit), *self._derived]:
            value = getattr(self, name)
            if name in self._derived and callable(value):
                value = value()
            if name in self._omit_unset and _unset(value):
                continue
            if name in self._rounded and value is not None:
                value = round(value, self._rounded[name])
            out[self._renamed.get(name, name)] = data(value)
        return out
