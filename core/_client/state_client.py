"""The state API's connection to a cluster: the head's tables through one link, each
node's own state (workers, objects, logs) through a link to that node.

    ember.util.state / `ember list` / ember.timeline / the dashboard
        -> StateClient.query(kind, filters, offset, limit)  --StateQuery-->  head
        -> StateClient.each_node(kind)                      --NodeQuery-->   every alive node
        -> StateClient.node_query(node_id, "log", ...)      --NodeQuery-->   one node

In a driver it uses the driver's own link (flushing the driver's task events first, so
what it just submitted is listed); elsewhere (the CLI) it connects to this machine's
head as a "peer", which starts no job and leaves nothing behind when it closes.
"""

from __future__ import annotations

import os
import threading
import warnings
from typing import Any

from .._types import NodeID
from .._wire import protocol as p
from .._wire.state_query import MAX_LIMIT, check_filters, check_kind, check_limit
from ..exceptions import EmberError, EmberSystemError, GetTimeoutError, StateApiError, StateNotFoundError
from .._node.launcher import find_by_tcp_address, find_current
from .._wire.node_link import NodeLink
from . import context

#: Seconds a state request waits for its answer (Ray's default timeout).
DEFAULT_TIMEOUT_S = 30.0


class StateClient:
    """Args:
        address: None (the current driver's cluster, else this machine's head), "auto"
            (this machine's head), or the head's HOST:PORT.
        timeout_s: how long each request waits for its answer.

    Raises:
        StateApiError: no cluster to ask (none started on this machine, or ``address`` is
            not one).
    """

    def __init__(self, address: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.timeout_s = float(timeout_s)
        self._owned: list[NodeLink] = []
        self._links: dict[NodeID, NodeLink] = {}
        self._lock = threading.Lock()
        rt = context.runtime_or_none() if address is None else None
        self._rt = rt
        if rt is not None:
            self._token = rt.token
            self._head = rt.link
            self._head_node = rt.node_id
        else:
            try:
                if address in (None, "auto"):
                    _session, node_address, token, _pid = find_current()
                else:
                    _session, node_address, token, _pid = find_by_tcp_address(
                        address.removeprefix("tcp:").removeprefix("ember://"))
            except EmberError as e:
                raise StateApiError(f"no ember cluster to ask: {e}") from e
            self._token = token.secret
            self._head = self._connect(node_address)
            self._head_node = self._head.registered.node_id
        self._links[self._head_node] = self._head

    def _connect(self, address: str) -> NodeLink:
        register = p.Register("peer", os.urandom(16), os.getpid())
        try:
            link = NodeLink(address, self._token, register, name="ember-state-client")
        except OSError as e:
            raise StateApiError(f"cannot reach the node manager at {address}: {e}") from e
        self._owned.append(link)
        return link

    def _call(self, link: NodeLink, make: Any) -> Any:
        try:
            value, _fds = link.call(make, self.timeout_s)
        except GetTimeoutError as e:
            raise StateApiError(f"the node manager at {link.address} did not answer within "
                                f"{self.timeout_s:g} s; retry with a longer timeout") from e
        except EmberSystemError as e:
            raise StateApiError(f"lost the node manager at {link.address}: {e}") from e
        return value

    # --- the head's tables ------------------------------------------------------------

    def query(self, kind: str, filters: list | None = None, offset: int = 0, limit: int = 100,
              detail: bool = False, newest_first: bool = False, summary: bool = False) -> dict[str, Any]:
        """One page of the head's ``kind`` table: {"rows", "total", "offset", "columns", ...}.

        Raises:
            InvalidStateQueryError: a bad kind, filter, limit or offset (checked here first).
            StateApiError: the head did not answer.
        """
        checked = check_filters(kind, filters)
        check_limit(limit, offset)
        if kind == "tasks" and self._rt is not None:
            self._rt.task_events.flush()  # so the caller's own submissions are listed
        triples = [f.as_tuple() for f in checked]
        return self._call(self._head, lambda rid: p.StateQuery(rid, kind, triples, offset, limit, detail,
                                                                newest_first, summary))

    def all_rows(self, kind: str, filters: list | None = None, detail: bool = False) -> list[dict[str, Any]]:
        """Every matching row of a head table, fetched a page of MAX_LIMIT at a time."""
        rows: list[dict[str, Any]] = []
        while True:
            answer = self.query(kind, filters, len(rows), MAX_LIMIT, detail)
            rows += answer["rows"]
            if not answer["rows"] or len(rows) >= answer["total"]:
                return rows

    def nodes(self) -> list[dict[str, Any]]:
        return self.query("nodes", limit=MAX_LIMIT, detail=True)["rows"]

    # --- each node's own state --------------------------------------------------------------

    def _node_link(self, node: dict[str, Any]) -> NodeLink:
        node_id = bytes.fromhex(node["node_id"])
        with self._lock:
            link = self._links.get(node_id)
            if link is None or link.closed:
                link = self._links[node_id] = self._connect(node["tcp_address"])
            return link

    def node_query(self, node: dict[str, Any], kind: str, args: dict[str, Any] | None = None) -> Any:
        """Ask one node (a row of ``nodes()``) about itself."""
        link = self._node_link(node)
        return self._call(link, lambda rid: p.NodeQuery(rid, kind, dict(args or {})))

    def find_node(self, node_id: str) -> dict[str, Any]:
        """The row of the node whose id starts with ``node_id``.

        Raises:
            StateNotFoundError: no node of the cluster has that id.
        """
        for node in self.nodes():
            if node["node_id"].startswith(node_id.lower()):
                return node
        raise StateNotFoundError(f"node {node_id}", "this cluster", "list the nodes with `ember list nodes`")

    def head_node(self) -> dict[str, Any]:
        for node in self.nodes():
            if node["is_head_node"]:
                return node
        raise StateApiError("the cluster lists no head node")

    def each_node(self, kind: str, filters: list | None = None, raise_on_missing_output: bool = True,
                  limit: int | None = None) -> dict[str, Any]:
        """``kind`` ("workers" or "objects") from every alive node, merged: {"rows", "total"}.
        Each node filters its own rows and sends at most ``limit`` of them (None: all);
        "total" counts every matching row.

        Raises:
            InvalidStateQueryError: a bad filter or limit (checked here first).
            StateApiError: a node did not answer and ``raise_on_missing_output`` is set
                (otherwise a warning names it and its rows are missing).
        """
        check_kind(kind)
        triples = [f.as_tuple() for f in check_filters(kind, filters)]
        if limit is not None:
            check_limit(limit, 0)
        rows: list[dict[str, Any]] = []
        total = 0
        for node in self.nodes():
            if node["state"] != "ALIVE":
                continue
            try:
                part = self.node_query(node, kind, {"filters": triples, "limit": limit})
            except StateApiError as e:
                if raise_on_missing_output:
                    raise StateApiError(f"node {node['node_id']} did not list its {kind}: {e}; pass "
                                        "raise_on_missing_output=False to list the other nodes'") from e
                warnings.warn(f"node {node['node_id']} did not list its {kind}: {e}", RuntimeWarning,
                              stacklevel=3)
                continue
            rows += part["rows"]
            total += part["total"]
        return {"rows": rows if limit is None else rows[:limit], "total": total}

    def close(self) -> None:
        for link in self._owned:
            link.close()
        self._owned.clear()
        self._links.clear()

    def __enter__(self) -> StateClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
