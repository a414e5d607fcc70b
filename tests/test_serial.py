"""`Serialised`: --json output derived from a result's dataclass fields."""

from __future__ import annotations

from dataclasses import dataclass, field

from apachews.serial import Serialised, data


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
