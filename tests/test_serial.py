"""`Serialised`: --json output derived from a result's dataclass fields."""

from __future__ import annotations

import dataclasses
import enum
import importlib
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path

import apachews
from apachews.serial import AsText, Serialised, data


@dataclass
class _Inner:
    name: str
    sizes: tuple[int, ...] = (1, 2)


@dataclass
class _Result(Serialised):
    ok: bool
    inner: _Inner
    items: list[_Inner] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # for the text only
    _omit = ("lines",)
    _derived = ("label",)

    @property
    def label(self) -> str:
        return f"{self.inner.name}: {'ok' if self.ok else 'failed'}"


def test_fields_nested_omitted_and_derived() -> None:
    result = _Result(True, _Inner("a"), [_Inner("b", (3,))], ["x"])
    assert result.to_dict() == {
        "ok": True,
        "inner": {"name": "a", "sizes": [1, 2]},
        "items": [{"name": "b", "sizes": [3]}],
        "label": "a: ok",
    }
    assert data({"r": result}) == {"r": result.to_dict()}


class _Colour(str, enum.Enum):
    RED = "red"

    def __str__(self) -> str:  # what people read, like Tunnelling's: JSON must not use it
        return "the colour red"


@dataclass(frozen=True)
class _Version(AsText):
    major: int
    minor: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"


@dataclass
class _Measured(Serialised):
    path: Path
    colour: _Colour
    version: _Version
    seconds: float
    note: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    on: bool = False
    _derived = ("rate", "label")
    _renamed = {"path": "file", "rate": "per_second"}
    _rounded = {"seconds": 1, "rate": 2}
    _omit_unset = ("note", "extra", "on")

    @property
    def rate(self) -> float:
        return 10 / self.seconds

    def label(self) -> str:  # a method without arguments is called
        return f"{self.path.name} {self.version}"


def test_plain_values_renamed_rounded_and_unset_left_out() -> None:
    measured = _Measured(Path("/d/m.so"), _Colour.RED, _Version(2, 4), 3.14159)
    assert measured.to_dict() == {
        "file": "/d/m.so",
        "colour": "red",
        "version": "2.4",
        "seconds": 3.1,
        "per_second": 3.18,
        "label": "m.so 2.4",
    }
    shown = _Measured(Path("m"), _Colour.RED, _Version(1, 0), 2.0, note="n", extra={"a": "b"}, on=True).to_dict()
    assert (shown["note"], shown["extra"], shown["on"]) == ("n", {"a": "b"}, True)


def test_data_is_json_ready() -> None:
    assert data({"p": [Path("/a"), (_Colour.RED, _Version(2, 2))]}) == {"p": ["/a", ["red", "2.2"]]}


def _serialised_classes() -> list[type[Serialised]]:
    for info in pkgutil.walk_packages(apachews.__path__, "apachews."):
        if not info.name.endswith("__main__"):  # runs the CLI
            importlib.import_module(info.name)
    found, todo = [], list(Serialised.__subclasses__())
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    return [cls for cls in found if cls.__module__.startswith("apachews.")]


def test_every_name_in_apachews_serialisation_tables_is_a_field_or_derived() -> None:
    """A misspelt name in _omit, _renamed, ... would be ignored silently and change the JSON."""
    classes = _serialised_classes()
    assert len(classes) > 20
    for cls in classes:
        fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        assert set(cls._omit) <= fields, cls
        assert all(hasattr(cls, name) for name in cls._derived), cls
        for table in (cls._renamed, cls._rounded, cls._omit_unset):
            assert set(table) <= fields | set(cls._derived), (cls, table)
