"""Actors live on the node they ask for and are reachable from every node and driver."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import ember
from ember.util.scheduling_strategies import NodeAffinitySchedulingStrategy

_TIMEOUT_S = 30


@ember.remote
class Counter:
    def __init__(self) -> None:
        self.count = 0

    def incr(self) -> int:
        self.count += 1
        return self.count

    def node(self) -> str:
        return ember.get_runtime_context().get_node_id()


@ember.remote(num_cpus=1)
def call_from_here(counter, times: int) -> tuple[str, list[int]]:
    return (ember.get_runtime_context().get_node_id(),
            ember.get([counter.incr.remote() for _ in range(times)]))


def test_an_actor_asking_for_a_nodes_resource_is_placed_on_that_node(three_nodes) -> None:
    counter = Counter.options(resources={"node_c": 0.5}).remote()
    assert three_nodes.role_of(ember.get(counter.node.remote(), timeout=_TIMEOUT_S)) == "c"
    ember.kill(counter)


def test_an_actor_with_node_affinity_is_placed_on_that_node(three_nodes) -> None:
    strategy = NodeAffinitySchedulingStrategy(three_nodes.node_ids["b"], soft=False)
    counter = Counter.options(scheduling_strategy=strategy).remote()
    assert three_nodes.role_of(ember.get(counter.node.remote(), timeout=_TIMEOUT_S)) == "b"
    ember.kill(counter)


def test_an_actor_on_node_c_is_called_from_a_task_on_node_b(three_nodes) -> None:
    counter = Counter.options(resources={"node_c": 0.5}).remote()
    assert ember.get(counter.incr.remote(), timeout=_TIMEOUT_S) == 1
    caller, counts = ember.get(call_from_here.options(resources={"node_b": 1}).remote(counter, 3),
                               timeout=_TIMEOUT_S)
    assert three_nodes.role_of(caller) == "b"
    assert counts == [2, 3, 4]
    assert ember.get(counter.incr.remote(), timeout=_TIMEOUT_S) == 5
    assert three_nodes.role_of(ember.get(counter.node.remote(), timeout=_TIMEOUT_S)) == "c"
    ember.kill(counter)


_SECOND_DRIVER = textwrap.dedent("""
    import sys
    import ember

    ember.init(address=sys.argv[1], namespace="team")
    shared = ember.get_actor("shared")
    print("count", ember.get(shared.incr.remote(), timeout=30))

    @ember.remote
    class Note:
        def read(self):
            return "left by the second driver"

    Note.options(name="note", lifetime="detached", resources={"node_b": 0.1}).remote()
    ember.get(ember.get_actor("note").read.remote(), timeout=30)
    ember.shutdown()
""")


def test_two_drivers_share_a_named_detached_actor_in_a_namespace(three_nodes) -> None:
    """The second driver is a separate process (a `python script.py` run on the head's
    machine); its detached actor outlives it."""
    shared = Counter.options(name="shared", namespace="team", lifetime="detached",
                             resources={"node_c": 0.1}).remote()
    assert ember.get(shared.incr.remote(), timeout=_TIMEOUT_S) == 1
    done = subprocess.run([sys.executable, "-c", _SECOND_DRIVER, three_nodes.address], env=three_nodes.env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "count 2" in done.stdout
    assert ember.get(shared.incr.remote(), timeout=_TIMEOUT_S) == 3
    note = ember.get_actor("note", namespace="team")
    assert ember.get(note.read.remote(), timeout=_TIMEOUT_S) == "left by the second driver"
    # Another namespace does not see them.
    with pytest.raises(ValueError, match="no actor named 'shared'"):
        ember.get_actor("shared", namespace="elsewhere")
    ember.kill(note)
    ember.kill(shared)
