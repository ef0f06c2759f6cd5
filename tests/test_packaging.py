"""pyproject.toml ships every package folder: a subpackage missing from its list works in
the editable checkout (the import system finds it on disk) but is absent from a wheel."""

from __future__ import annotations

from pathlib import Path

import pytest

# tomllib is Python 3.11+; ember supports 3.10, where this check is skipped.
tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapped = config["package-dir"]
    found = set()
    for package, folder in mapped.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            found.add(".".join([package, *relative.parts]))
    # A folder mapped on its own (ember.util -> core/util) is also found under its parent.
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert listed - found == set(), "these listed packages have no folder with __init__.py"
