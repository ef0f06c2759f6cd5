"""Logical plan fusion and the executor's budget decisions, with plain calls."""

from __future__ import annotations

from ember.data._executor import Budget
from ember.data._plan import (ActorPoolStrategy, InputData, Limit, LogicalOp, MapOp,
                              TaskPoolStrategy, fuse, known_row_count)
from ember.data._transform import Stage


def _map(name: str, up: LogicalOp, **kwargs: object) -> MapOp:
    return MapOp(name=name, inputs=[up], stages=[Stage("batches", name)], **kwargs)  # type: ignore[arg-type]


def _source(rows: int | None = 10) -> InputData:
    return InputData(name="Input", inputs=[], items=[], num_rows=rows)


def test_consecutive_default_task_maps_fuse_into_one_operator() -> None:
    plan = _map("C", _map("B", _map("A", _source())))
    fused = fuse(plan)
    assert isinstance(fused, MapOp) and fused.name == "A->B->C"
    assert [s.name for s in fused.stages] == ["A", "B", "C"]
    assert isinstance(fused.inputs[0], InputData)


def test_default_task_map_fuses_into_an_actor_pool_on_either_side() -> None:
    pool = ActorPoolStrategy(size=2)
    before = fuse(_map("Model", _map("Read", _source()), compute=pool, explicit_resources=True,
                       remote_args={"num_gpus": 1}))
    assert before.name == "Read->Model" and before.compute == pool
    assert before.remote_args == {"num_gpus": 1}
    after = fuse(_map("Write", _map("Model", _source(), compute=pool)))
    assert after.name == "Model->Write" and after.compute == pool


def test_two_actor_pools_never_fuse() -> None:
    pool = ActorPoolStrategy(size=1)
    plan = fuse(_map("B", _map("A", _source(), compute=pool), compute=pool))
    assert plan.name == "B" and plan.inputs[0].name == "A"


def test_different_explicit_resources_do_not_fuse_but_equal_ones_do() -> None:
    a = _map("A", _source(), remote_args={"num_cpus": 2}, explicit_resources=True)
    b = _map("B", a, remote_args={"num_cpus": 1}, explicit_resources=True)
    assert fuse(b).name == "B"
    c = _map("C", a, remote_args={"num_cpus": 2}, explicit_resources=True)
    assert fuse(c).name == "A->C"


def test_a_capped_task_pool_keeps_its_own_operator() -> None:
    a = _map("A", _source(), compute=TaskPoolStrategy(size=1), explicit_resources=True)
    b = _map("B", a, compute=TaskPoolStrategy(size=3), explicit_resources=True)
    assert fuse(b).name == "B"


def test_row_counts_are_known_through_row_preserving_steps_and_limits() -> None:
    assert known_row_count(_map("A", _source(10), preserves_rows=True)) == 10
    assert known_row_count(_map("A", _source(10))) is None
    assert known_row_count(Limit(name="L", inputs=[_source(10)], limit=3)) == 3


def test_budget_holds_back_only_operators_that_admit_new_data() -> None:
    budget = Budget(100)
    assert not budget.may_launch(True, held_bytes=90, launch_bytes=20, progressing=True)
    assert budget.may_launch(False, held_bytes=90, launch_bytes=20, progressing=True)
    # Nothing running: one launch is always allowed, so a huge block still progresses.
    assert budget.may_launch(True, held_bytes=500, launch_bytes=20, progressing=False)
