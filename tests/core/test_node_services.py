"""The node manager's composition (core/node_context.py) with plain calls."""

from __future__ import annotations

import pytest

from ember._wire import protocol as p
from ember._node.context import merge_handlers

pytestmark = pytest.mark.timeout(30)


def _a(*_: object) -> None: ...


def _b(*_: object) -> None: ...


def test_services_tables_merge_into_one_dispatch_table() -> None:
    assert merge_handlers({p.Heartbeat: _a}, {p.LogLines: _b}) == {p.Heartbeat: _a, p.LogLines: _b}


def test_a_message_type_handled_by_two_services_is_refused_at_start_up() -> None:
    with pytest.raises(ValueError, match="Heartbeat is handled twice"):
        merge_handlers({p.Heartbeat: _a}, {p.Heartbeat: _b})
