"""What a task prints on another node reaches the driver's terminal."""

from __future__ import annotations

import os

import ember

from conftest import driver_output

from .conftest import wait_for

_TIMEOUT_S = 30


@ember.remote(num_cpus=1)
def shout(text: str) -> tuple[str, int]:
    print(text)
    return ember.get_runtime_context().get_node_id(), os.getpid()


@ember.remote
class Talker:
    def say(self, text: str) -> tuple[str, int]:
        print(text)
        return ember.get_runtime_context().get_node_id(), os.getpid()


def test_a_print_on_a_remote_node_reaches_the_driver_with_its_prefix(three_nodes) -> None:
    with driver_output() as output:
        node, pid = ember.get(shout.options(resources={"node_b": 1}).remote("hello from node b"),
                              timeout=_TIMEOUT_S)
        assert three_nodes.role_of(node) == "b"
        wait_for(lambda: output.has(f"(shout pid={pid}) hello from node b"), timeout_s=10,
                 what="node b's line at the driver")


def test_an_actor_print_on_a_remote_node_reaches_the_driver(three_nodes) -> None:
    with driver_output() as output:
        talker = Talker.options(resources={"node_c": 0.5}).remote()
        node, pid = ember.get(talker.say.remote("hello from an actor on node c"), timeout=_TIMEOUT_S)
        assert three_nodes.role_of(node) == "c"
        wait_for(lambda: output.has(f"(Talker pid={pid}) hello from an actor on node c"), timeout_s=10,
                 what="node c's actor line at the driver")
        ember.kill(talker)
