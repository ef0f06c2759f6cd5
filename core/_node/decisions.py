"""The node manager's decisions, as plain functions: facts in, a decision out, no I/O.

Where a lease request goes (``choose_node``), whether a request queued here should move
(``respill_target``) and whether a dead actor comes back (``actor_may_restart``) are
decided here and carried out by the node manager's handlers. Nothing here mutates its
arguments, sends a message or takes a lock, so each rule is tested with ordinary calls
(tests/core/test_decisions.py), the way dask's worker state machine separates decisions
from the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol, Union

from .._types import NodeID, ResourceShape
from ..exceptions import EmberError
from .._resources import fits, fits_ever


class NodeView(Protocol):
    """What a decision reads of one node (membership.NodeInfo has these fields)."""

    node_id: NodeID
    tcp_address: str
    alive: bool
    totals: ResourceShape
    available: ResourceShape


@dataclass(frozen=True)
class Here:
    """Queue the request on this node."""


@dataclass(frozen=True)
class There:
    """Send the requester to the node manager at ``address`` (a spillback)."""

    address: str


@dataclass(frozen=True)
class Refuse:
    """Fail the request with ``error``: no node can ever take it."""

    error: EmberError


NodeChoice = Union[Here, There, Refuse]

#: A scheduling strategy as it travels in a SchedulingRequest: None (default),
#: ("SPREAD",) or ("NODE_AFFINITY", node_hex, soft).
Strategy = Union[tuple, None]


def choose_node(shape: ResourceShape, strategy: Strategy, here: NodeID, free_here: ResourceShape,
                cluster_view: Mapping[NodeID, NodeView], *, totals_here: ResourceShape,
                spread_turn: int = 0) -> NodeChoice:
    """Where a lease request for ``shape`` should wait: here, another node, or nowhere.

    Default: here if it fits now; else the node with the most free CPUs where it fits
    now; else here, where it waits until a node has room (``respill_target``), with an
    infeasible warning if no node could ever hold it. SPREAD rotates
    (by ``spread_turn``) over the nodes where it fits now. Node affinity names the node;
    ``soft=True`` falls back to the default when that node is gone or can never fit.

    Args:
        shape: the normalized resource shape asked for.
        strategy: the request's strategy tuple (see ``Strategy``).
        here: this node's id; ``free_here``/``totals_here``: its ledger, fresher than the view.
        cluster_view: every known node by id (dead ones are skipped); not mutated.
        spread_turn: a counter the caller advances per decision, for SPREAD's rotation.

    Returns:
        Here(), There(tcp_address) or Refuse(error).

    Example:
        >>> choose_node({"CPU": 1}, None, b"a", {"CPU": 2}, {}, totals_here={"CPU": 2})
        Here()
    """
    if strategy is not None and strategy[0] == "NODE_AFFINITY":
        _, node_hex, soft = strategy
        node = cluster_view.get(bytes.fromhex(node_hex))
        if node is not None and node.alive:
            totals = totals_here if node.node_id == here else node.totals
            # Soft affinity to a node that can never fit the request falls back (Ray's
            # "infeasible" case) instead of queueing it there with an infeasible warning.
            if not soft or fits_ever(totals, shape):
                return Here() if node.node_id == here else There(node.tcp_address)
        elif not soft:
            return Refuse(EmberError(
                f"node {node_hex} named by NodeAffinitySchedulingStrategy is not alive; pass "
                "soft=True to run elsewhere when it is gone"))
    alive = [n for n in cluster_view.values() if n.alive]
    if here not in cluster_view or len(alive) <= 1:
        return Here()

    def free(node: NodeView) -> ResourceShape:
        return free_here if node.node_id == here else node.available

    if strategy == ("SPREAD",):
        candidates = sorted((n for n in alive if fits(free(n), shape)), key=lambda n: n.node_id)
        if not candidates:
            return Here()
        target = candidates[spread_turn % len(candidates)]
        return Here() if target.node_id == here else There(target.tcp_address)
    if fits(free_here, shape):
        return Here()
    others = [n for n in alive if n.node_id != here]
    now = [n for n in others if fits(n.available, shape)]
    if now:
        # The most free CPUs; among equals the smallest node id (as the view's ``pick``
        # did). Two plain passes: a per-node key tuple cost ~10 ms at 1,000 nodes.
        most = max(n.available.get("CPU", 0.0) for n in now)
        return There(min((n for n in now if n.available.get("CPU", 0.0) == most),
                         key=lambda n: n.node_id).tcp_address)
    # No node has room now: wait here, even where it can never fit here. respill_target
    # moves it to the first node that has room (a node that joins, an autoscaler's);
    # sent to a busy node instead it would wait behind that node's queue.
    return Here()


def respill_target(shape: ResourceShape, strategy: Strategy, here: NodeID, free_here: ResourceShape,
                   cluster_view: Mapping[NodeID, NodeView], *, totals_here: ResourceShape,
                   spread_turn: int = 0) -> str | None:
    """Whether a request already queued here should move, and to which node manager.

    A request that does not fit here now moves to a node where it fits now (resources
    free up elsewhere, nodes join, placement groups are reserved), chosen as
    ``choose_node`` would; one that would merely queue there keeps waiting here, so that
    whichever node has room first (an autoscaler's new node, say) takes it. Without this,
    a burst queued on one busy node never reaches the nodes started for it.
    A request with node affinity never moves from the node it named; a soft one that
    already fell back elsewhere (that node is gone or can never fit, as ``choose_node``
    decided when it arrived) moves like a default request.
    Returns the target's TCP address, or None to keep waiting here.
    """
    if fits(free_here, shape):
        return None  # granted here as soon as its turn comes
    if strategy is not None and strategy[0] == "NODE_AFFINITY":
        _, node_hex, soft = strategy
        if not soft or (bytes.fromhex(node_hex) == here and fits_ever(totals_here, shape)):
            return None
        # Soft affinity that already fell back (the node it named is gone or can never
        # fit): it waits here for room like a default request, and moves like one.
        strategy = None
    choice = choose_node(shape, strategy, here, free_here, cluster_view, totals_here=totals_here,
                         spread_turn=spread_turn)
    if not isinstance(choice, There):
        return None
    target = next((n for n in cluster_view.values() if n.tcp_address == choice.address), None)
    return choice.address if target is not None and fits(target.available, shape) else None


def actor_may_restart(max_restarts: int, num_restarts: int, no_restart: bool, *,
                      owner_alive: bool = True, detached: bool = False) -> bool:
    """Whether an actor whose process is gone comes back (Ray's rule).

    It does not if it was killed for good (``ember.kill``, ``exit_actor``, its group
    removed), if it used up ``max_restarts`` (-1: unlimited), or if the job that owns a
    non-detached actor has ended.

    Example:
        >>> actor_may_restart(max_restarts=1, num_restarts=0, no_restart=False)
        True
    """
    if no_restart:
        return False
    if max_restarts != -1 and num_restarts >= max_restarts:
        return False
    return owner_alive or detached
