"""The decisions of ember.serve as plain calls: autoscaling, rollouts, routing, options."""

from __future__ import annotations

import pytest

import ember.serve as serve
from ember.serve.autoscaling import AutoscalingState, desired_replicas
from ember.serve.config import AutoscalingConfig, DeploymentConfig, apply_options
from ember.serve.controller import code_version, plan_rollout
from ember.serve.deployment import build
from ember.serve.exceptions import ServeConfigError
from ember.serve.handle import DeploymentHandle
from ember.serve.proxy import match_route


def _cfg(**kw: float) -> AutoscalingConfig:
    base = dict(min_replicas=1, max_replicas=4, target_ongoing_requests=2, upscale_delay_s=1.0,
                downscale_delay_s=5.0)
    base.update(kw)
    return AutoscalingConfig(**base)


def test_autoscaling_scales_up_only_after_the_upscale_delay() -> None:
    cfg, state = _cfg(), AutoscalingState()
    assert desired_replicas(cfg, 1, 8, state, 0.0) == 1
    assert desired_replicas(cfg, 1, 8, state, 0.5) == 1
    assert desired_replicas(cfg, 1, 8, state, 1.0) == 4
    # a dip in load restarts the clock
    state = AutoscalingState()
    desired_replicas(cfg, 1, 8, state, 0.0)
    assert desired_replicas(cfg, 1, 1, state, 0.6) == 1
    assert desired_replicas(cfg, 1, 8, state, 1.2) == 1


def test_autoscaling_stays_within_bounds_and_scales_down_after_the_delay() -> None:
    cfg, state = _cfg(), AutoscalingState()
    assert desired_replicas(cfg, 4, 1000, state, 0.0) == 4
    assert desired_replicas(cfg, 4, 0, state, 1.0) == 4
    assert desired_replicas(cfg, 4, 0, state, 6.0) == 1  # never below min_replicas
    assert desired_replicas(cfg, 7, 0, AutoscalingState(), 0.0) == 4  # bounds apply at once
    zero = _cfg(min_replicas=0, downscale_delay_s=0)
    assert desired_replicas(zero, 1, 0, AutoscalingState(), 0.0) == 0


def test_rollout_replaces_one_replica_at_a_time() -> None:
    # fresh deploy: start all
    assert plan_rollout(3, 0, 0, 0, 0, False) == (3, 0, 0)
    # update with room: surge one new replica
    assert plan_rollout(2, 0, 0, 2, 0, True) == (1, 0, 0)
    # update without room: stop an old one first
    assert plan_rollout(2, 0, 0, 2, 0, False) == (0, 1, 0)
    # a new one is running: one old too many
    assert plan_rollout(2, 1, 0, 2, 0, True) == (0, 1, 0)
    # a new one is still starting: wait
    assert plan_rollout(2, 0, 1, 2, 0, True) == (0, 0, 0)
    # scale down current replicas, and drop old ones that never started
    assert plan_rollout(1, 3, 0, 0, 0, False) == (0, 0, 2)
    assert plan_rollout(2, 2, 0, 0, 1, False) == (0, 1, 0)


def test_code_version_ignores_replica_count_and_user_config() -> None:
    a = DeploymentConfig(name="A")
    assert code_version(b"x", a) == code_version(b"x", apply_options(a, {"num_replicas": 5,
                                                                            "user_config": {"k": 1}}))
    assert code_version(b"x", a) != code_version(b"y", a)
    assert code_version(b"x", a) != code_version(b"x", apply_options(a, {"num_cpus": 2}))


def test_route_matching_is_by_longest_path_prefix() -> None:
    routes = {"/": ("root", "R"), "/api": ("api", "A"), "/api/v2": ("v2", "B")}
    assert match_route(routes, "/api/v2/x")[0] == "/api/v2"
    assert match_route(routes, "/api/v3")[0] == "/api"
    assert match_route(routes, "/apix")[0] == "/"
    assert match_route({"/api": ("a", "A")}, "/apix") is None


@serve.deployment
class _Leaf:
    pass


@serve.deployment
class _Root:
    def __init__(self, a, b, c) -> None:
        pass


def test_build_turns_bound_deployments_into_handles() -> None:
    built = build(_Root.bind(_Leaf.bind(), [_Leaf.bind()], c={"x": 1}), "app")
    assert [d.name for d in built] == ["_Root", "_Leaf", "_Leaf_1"]
    assert built[0].is_ingress and not built[1].is_ingress
    a, b = built[0].args
    assert isinstance(a, DeploymentHandle) and a.deployment_name == "_Leaf"
    assert isinstance(b[0], DeploymentHandle) and b[0].deployment_name == "_Leaf_1"
    assert built[0].kwargs == {"c": {"x": 1}}


def test_options_validation_names_the_option_and_the_fix() -> None:
    with pytest.raises(ServeConfigError, match="Did you mean 'max_ongoing_requests'"):
        _Leaf.options(max_ongoing_request=3)
    with pytest.raises(ServeConfigError, match="max_ongoing_requests.*integer >= 1"):
        _Leaf.options(max_ongoing_requests=0)
    with pytest.raises(ServeConfigError, match="unknown autoscaling_config key 'max_replica'"):
        _Leaf.options(autoscaling_config={"max_replica": 3})
    with pytest.raises(ServeConfigError, match="ray_actor_options key 'num_cpu'"):
        _Leaf.options(ray_actor_options={"num_cpu": 1})
    d = _Leaf.options(num_replicas="auto")
    assert d._config.autoscaling_config is not None
    assert _Leaf.options(num_cpus=0.5)._config.resource_shape() == {"CPU": 0.5}
    assert _Leaf._config.resource_shape() == {"CPU": 1.0}
