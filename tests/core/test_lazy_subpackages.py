"""Library subpackages are reachable as attributes of ``ember`` without importing them eagerly."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(60)


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                          text=True, timeout=50).stdout.strip()


def test_import_ember_does_not_import_the_libraries() -> None:
    out = _run("import sys, ember; print(sorted(m for m in ('ember.data', 'ember.util', "
               "'ember.train', 'ember.tune', 'ember.serve', 'ember.rl', 'pandas', 'torch') "
               "if m in sys.modules))")
    assert out == "[]"


@pytest.mark.parametrize("name", ["data", "util", "exceptions", "util.metrics", "util.queue"])
def test_subpackage_is_an_attribute_after_import_ember(name: str) -> None:
    assert _run(f"import ember; print(ember.{name}.__name__)") == f"ember.{name}"


def test_a_library_function_is_reachable_through_the_package() -> None:
    assert _run("import ember; print(callable(ember.data.range))") == "True"


def test_from_ember_import_a_subpackage() -> None:
    assert _run("from ember import util; print(util.__name__)") == "ember.util"


def test_unknown_attribute_is_an_attribute_error() -> None:
    import ember
    with pytest.raises(AttributeError, match="no_such_thing"):
        ember.no_such_thing  # noqa: B018
    with pytest.raises(AttributeError, match="no_such_module"):
        ember.util.no_such_module  # noqa: B018
    assert "data" in dir(ember)
