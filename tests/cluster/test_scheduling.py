"""Tasks land on the node their resources and scheduling strategy ask for."""

from __future__ import annotations

import os
import time
import warnings

import ember
from conftest import build_wheel
from ember.util.scheduling_strategies import NodeAffinitySchedulingStrategy

_TIMEOUT_S = 30


@ember.remote(num_cpus=1)
def where() -> str:
    return ember.get_runtime_context().get_node_id()


def test_a_custom_resource_sends_the_task_to_the_node_that_has_it(three_nodes) -> None:
    on_b = where.options(resources={"node_b": 1}).remote()
    on_c = where.options(resources={"node_c": 1}).remote()
    assert three_nodes.role_of(ember.get(on_b, timeout=_TIMEOUT_S)) == "b"
    assert three_nodes.role_of(ember.get(on_c, timeout=_TIMEOUT_S)) == "c"


@ember.remote(num_cpus=0)
class Rendezvous:
    """Where tasks report their node; lets them wait until all nodes have one running."""

    def __init__(self) -> None:
        self.nodes: set[str] = set()

    def arrive(self, node_id: str) -> int:
        self.nodes.add(node_id)
        return len(self.nodes)

    def count(self) -> int:
        return len(self.nodes)


@ember.remote(num_cpus=1)
def where_together(rendezvous, expected: int, timeout_s: float) -> str:
    node_id = ember.get_runtime_context().get_node_id()
    ember.get(rendezvous.arrive.remote(node_id))
    deadline = time.monotonic() + timeout_s
    while ember.get(rendezvous.count.remote()) < expected and time.monotonic() < deadline:
        time.sleep(0.02)
    return node_id


def test_spread_runs_tasks_on_every_node(three_nodes) -> None:
    """SPREAD rotates lease requests over the nodes. Each task holds its lease until tasks
    run on all three nodes (or 10 s pass): otherwise tasks of a few ms could all finish on
    the first granted lease before the other nodes' workers start, as they can with Ray."""
    rendezvous = Rendezvous.remote()
    refs = [where_together.options(scheduling_strategy="SPREAD").remote(rendezvous, 3, 10.0)
            for _ in range(6)]
    roles = {three_nodes.role_of(n) for n in ember.get(refs, timeout=_TIMEOUT_S)}
    assert roles == {"head", "b", "c"}
    ember.kill(rendezvous)


def test_hard_node_affinity_runs_on_that_node(three_nodes) -> None:
    for role in ("head", "b", "c"):
        strategy = NodeAffinitySchedulingStrategy(three_nodes.node_ids[role], soft=False)
        refs = [where.options(scheduling_strategy=strategy).remote() for _ in range(3)]
        assert {three_nodes.role_of(n) for n in ember.get(refs, timeout=_TIMEOUT_S)} == {role}


def test_soft_node_affinity_prefers_the_node_when_it_fits(three_nodes) -> None:
    strategy = NodeAffinitySchedulingStrategy(three_nodes.node_ids["c"], soft=True)
    assert three_nodes.role_of(ember.get(where.options(scheduling_strategy=strategy).remote(),
                                         timeout=_TIMEOUT_S)) == "c"


def test_soft_node_affinity_falls_back_to_a_node_that_fits(three_nodes) -> None:
    """The head can never run a node_b task: soft affinity to it must not pin the task there."""
    strategy = NodeAffinitySchedulingStrategy(three_nodes.node_ids["head"], soft=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ref = where.options(scheduling_strategy=strategy, resources={"node_b": 1}).remote()
        assert three_nodes.role_of(ember.get(ref, timeout=_TIMEOUT_S)) == "b"
    infeasible = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert not infeasible, "a request that node b fits was reported infeasible"


def test_soft_node_affinity_to_an_unknown_node_runs_anywhere(three_nodes) -> None:
    strategy = NodeAffinitySchedulingStrategy("00" * 16, soft=True)
    assert three_nodes.role_of(ember.get(where.options(scheduling_strategy=strategy).remote(),
                                         timeout=_TIMEOUT_S)) in {"head", "b", "c"}


def test_a_task_too_big_for_the_head_runs_on_another_node(three_nodes) -> None:
    """The driver's node (the head) has 1 CPU; a 2-CPU task must spill to b or c."""
    refs = [where.options(num_cpus=2).remote() for _ in range(4)]
    roles = {three_nodes.role_of(n) for n in ember.get(refs, timeout=_TIMEOUT_S)}
    assert roles and roles <= {"b", "c"}


def test_a_pip_runtime_env_is_built_on_the_node_that_runs_the_task(three_nodes, tmp_path) -> None:
    """The env travels with the request (spilled to node b, placed on node c) and each node
    builds its own virtualenv once; the head, which runs none of them, builds nothing."""
    build_wheel(str(tmp_path), "ember_node_pip_probe", "1.0", "VALUE = 7\n")
    env = {"pip": {"packages": ["ember_node_pip_probe"],
                   "pip_install_options": ["--no-index", "--find-links", str(tmp_path)]}}

    @ember.remote(runtime_env=env)
    def probe() -> tuple[int, str]:
        import ember_node_pip_probe
        return ember_node_pip_probe.VALUE, ember.get_runtime_context().get_node_id()

    @ember.remote(runtime_env=env, resources={"node_c": 0.5})
    class Probe:
        def value(self) -> tuple[int, str]:
            import ember_node_pip_probe
            return ember_node_pip_probe.VALUE, ember.get_runtime_context().get_node_id()

    on_b = [probe.options(resources={"node_b": 0.5}).remote() for _ in range(2)]
    results = ember.get(on_b, timeout=90) + [ember.get(Probe.remote().value.remote(), timeout=90)]
    assert [(value, three_nodes.role_of(node)) for value, node in results] == [(7, "b"), (7, "b"), (7, "c")]
    built = {role: [d for d in os.listdir(os.path.join(session, "runtime_envs")) if not d.endswith(".lock")]
             if os.path.isdir(os.path.join(session, "runtime_envs")) else []
             for role, session in three_nodes.sessions.items()}
    assert {role: len(dirs) for role, dirs in built.items()} == {"head": 0, "b": 1, "c": 1}
