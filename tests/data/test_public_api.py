"""The public surface of ember.data matches its documentation (docs/data.md)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import ember.data as ed

DOCS = (Path(__file__).resolve().parents[2] / "docs" / "data.md").read_text()


def _documented(name: str) -> bool:
    return re.search(rf"\b{re.escape(name)}\b", DOCS) is not None


def test_every_public_name_of_ember_data_is_documented() -> None:
    missing = [name for name in ed.__all__ if not _documented(name)]
    assert missing == []


def test_every_public_dataset_method_is_documented() -> None:
    methods = [name for name, _ in inspect.getmembers(ed.Dataset, inspect.isfunction)
               if not name.startswith("_")]
    missing = [name for name in methods if not _documented(name)]
    assert missing == []


def test_every_documented_ember_data_function_exists() -> None:
    documented = set(re.findall(r"`ember\.data\.(\w+)`", DOCS))
    assert documented <= set(dir(ed))
