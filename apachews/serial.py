"""Serialisation derived from dataclasses: what --json prints of a result is its fields, not a hand-written list.

A dataclass that mixes in `Serialised` gets `to_dict()`: its fields (recursively, as `dataclasses.asdict` does;
tuples become lists), without those named in `_omit`, with the properties named in `_derived` added. Paths and
enums are left as they are: the CLI's JSON printer writes them as strings.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar


def data(value: Any) -> Any:
    """`value` as plain data: a dataclass as the dict of its fields, lists and tuples as lists, dicts as dicts."""
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


class Serialised:
    """Mixin for a dataclass: `to_dict()` derived from its fields (`_omit` left out) and `_derived` properties."""

    _omit: ClassVar[tuple[str, ...]] = ()
    _derived: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        fields = dataclasses.fields(self)  # type: ignore[arg-type]
        out = {f.name: data(getattr(self, f.name)) for f in fields if f.name not in self._omit}
        out.update({name: data(getattr(self, name)) for name in self._derived})
        return out
