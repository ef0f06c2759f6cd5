"""The public surface: ``ember.__all__`` and docs/api.md stay equal, signatures included."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import ember
import ember.exceptions

pytestmark = pytest.mark.timeout(30)

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
_ENTRY = re.compile(r"^#### `(?P<name>\w+)(?:\((?P<params>.*)\))?`\s*$")


def _documented() -> dict[str, dict[str, str | None]]:
    """{section: {name: parameter text or None}} from the ``## section`` / ``#### `entry` ``
    headings of docs/api.md."""
    sections: dict[str, dict[str, str | None]] = {}
    current = None
    for line in API_DOC.read_text().splitlines():
        if line.startswith("## "):
            current = sections.setdefault(line[3:].strip(), {})
        match = _ENTRY.match(line)
        if match:
            assert current is not None, f"entry before any section: {line}"
            assert match["name"] not in current, f"{match['name']} documented twice"
            current[match["name"]] = match["params"]
    return sections


def _split_params(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()] if text else []


def _as_documented(fn) -> list[str]:
    """The signature of ``fn`` written the way docs/api.md writes it (no annotations)."""
    out, keyword_only_marked = [], False
    for p in inspect.signature(fn).parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            out.append(f"*{p.name}")
            keyword_only_marked = True
        elif p.kind is p.VAR_KEYWORD:
            out.append(f"**{p.name}")
        else:
            if p.kind is p.KEYWORD_ONLY and not keyword_only_marked:
                out.append("*")
                keyword_only_marked = True
            out.append(p.name if p.default is p.empty else f"{p.name}={p.default!r}")
    return out


def test_every_name_in_all_is_documented_and_nothing_else() -> None:
    documented = set(_documented()["ember"])
    exported = set(ember.__all__)
    assert exported - documented == set(), "exported but missing from docs/api.md"
    assert documented - exported == set(), "documented in docs/api.md but not in __all__"
    assert len(ember.__all__) == len(exported), "duplicates in ember.__all__"


def test_every_exception_is_documented_and_nothing_else() -> None:
    assert set(_documented()["ember.exceptions"]) == set(ember.exceptions.__all__)


def test_every_name_in_all_exists() -> None:
    missing = [name for name in ember.__all__ if not hasattr(ember, name)]
    assert missing == []


@pytest.mark.parametrize("name", sorted(n for n in ember.__all__ if inspect.isfunction(getattr(ember, n))))
def test_documented_signatures_match_the_code(name: str) -> None:
    params = _documented()["ember"][name]
    assert params is not None, f"docs/api.md gives no signature for the function {name}"
    assert _split_params(params) == _as_documented(getattr(ember, name))


def test_classes_and_modules_are_documented_without_a_signature() -> None:
    for name, params in _documented()["ember"].items():
        if not inspect.isfunction(getattr(ember, name)):
            assert params is None, f"{name} is not a function; document it as `{name}`"


def test_every_exception_is_an_ember_error() -> None:
    for name in ember.exceptions.__all__:
        cls = getattr(ember.exceptions, name)
        assert isinstance(cls, type) and issubclass(cls, ember.exceptions.EmberError), name


def test_rays_exception_names_are_aliases() -> None:
    exc = ember.exceptions
    assert exc.RayTaskError is exc.TaskError
    assert exc.RayActorError is exc.ActorDiedError
    assert exc.RaySystemError is exc.EmberSystemError
    assert issubclass(exc.GetTimeoutError, TimeoutError)
    assert issubclass(exc.OwnerDiedError, exc.ObjectLostError)
