"""Map-like transforms on a real local runtime: map, map_batches, flat_map, filter,
column operations, sampling, limit, union and zip."""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import ember.data as ed
from ember.data.exceptions import InvalidArgumentError

pytestmark = pytest.mark.usefixtures("ember_local")


def _ids(ds: ed.Dataset, column: str = "id") -> list[Any]:
    return [row[column] for row in ds.take_all()]


def test_map_batches_defaults_to_numpy_batches_of_1024_rows() -> None:
    sizes = ed.range(3000, override_num_blocks=1).map_batches(
        lambda b: {"n": np.array([len(b["id"])]), "kind": np.array([type(b).__name__])})
    rows = sizes.take_all()
    assert [r["n"] for r in rows] == [1024, 1024, 952]
    assert rows[0]["kind"] == "dict"


def test_map_batches_with_batch_size_none_gets_whole_blocks() -> None:
    sizes = ed.range(100, override_num_blocks=4).map_batches(
        lambda b: {"n": np.array([len(b["id"])])}, batch_size=None)
    assert sorted(_ids(sizes, "n")) == [25, 25, 25, 25]


@pytest.mark.parametrize("batch_format,kind", [("pandas", pd.DataFrame), ("pyarrow", pa.Table),
                                               ("numpy", dict)])
def test_map_batches_hands_the_requested_batch_format(batch_format: str, kind: type) -> None:
    def check(batch: Any) -> Any:
        if not isinstance(batch, kind):
            raise TypeError(f"got {type(batch)}")
        return batch

    assert _ids(ed.range(10).map_batches(check, batch_format=batch_format)) == list(range(10))


def test_map_batches_small_blocks_are_bundled_up_to_the_batch_size() -> None:
    ds = ed.range(100, override_num_blocks=20).map_batches(
        lambda b: {"n": np.array([len(b["id"])])}, batch_size=50)
    assert sorted(_ids(ds, "n")) == [50, 50]


def test_map_batches_passes_fn_args_and_kwargs() -> None:
    def shift(batch: dict, by: int, scale: int = 1) -> dict:
        return {"id": (batch["id"] + by) * scale}

    ds = ed.range(3).map_batches(shift, fn_args=(1,), fn_kwargs={"scale": 10})
    assert _ids(ds) == [10, 20, 30]


def test_map_batches_accepts_generator_functions() -> None:
    def twice(batch: dict) -> Iterator[dict]:
        yield batch
        yield {"id": batch["id"] + 100}

    assert sorted(_ids(ed.range(2, override_num_blocks=1).map_batches(twice))) == [0, 1, 100, 101]


class AddConstant:
    """Callable class: constructed once per actor."""

    def __init__(self, constant: int) -> None:
        self.constant = constant
        self.calls = 0

    def __call__(self, batch: dict) -> dict:
        self.calls += 1
        return {"id": batch["id"] + self.constant, "calls": np.full(len(batch["id"]), self.calls)}


def test_callable_class_runs_on_an_actor_pool_that_keeps_state() -> None:
    ds = ed.range(40, override_num_blocks=8).map_batches(
        AddConstant, fn_constructor_args=(1000,), concurrency=2, batch_size=5)
    rows = ds.take_all()
    assert sorted(r["id"] for r in rows) == list(range(1000, 1040))
    # State persists between calls on one actor: some actor served several batches.
    assert max(r["calls"] for r in rows) > 1


def test_callable_class_with_autoscaling_concurrency_range() -> None:
    ds = ed.range(20).map_batches(AddConstant, fn_constructor_kwargs={"constant": 1},
                                  concurrency=(1, 2), batch_size=4)
    assert sorted(_ids(ds)) == list(range(1, 21))


def test_callable_class_without_concurrency_gets_a_default_pool() -> None:
    assert sorted(_ids(ed.range(5).map_batches(AddConstant, fn_constructor_args=(1,)))) == [1, 2, 3, 4, 5]


def test_function_with_an_actor_pool_strategy_is_rejected() -> None:
    with pytest.raises(InvalidArgumentError, match="callable class"):
        ed.range(3).map_batches(lambda b: b, compute=ed.ActorPoolStrategy(size=1))


def test_map_with_num_cpus_and_a_task_concurrency_cap() -> None:
    ds = ed.range(10).map(lambda r: {"id": r["id"] * 2}, num_cpus=0.5, concurrency=2)
    assert _ids(ds) == [i * 2 for i in range(10)]


def test_map_flat_map_and_filter_work_on_row_dicts() -> None:
    ds = (ed.range(6)
          .map(lambda r: {"id": r["id"], "even": r["id"] % 2 == 0})
          .filter(lambda r: r["even"])
          .flat_map(lambda r: [{"id": r["id"]}, {"id": -r["id"]}]))
    assert _ids(ds) == [0, 0, 2, -2, 4, -4]


def test_map_of_a_callable_class_uses_actors() -> None:
    class Tag:
        def __call__(self, row: dict) -> dict:
            return {"id": row["id"], "tag": "t"}

    assert ed.range(3).map(Tag, concurrency=1).take(1) == [{"id": 0, "tag": "t"}]


def test_add_column_with_pandas_batches_and_column_selection() -> None:
    ds = ed.range(4).add_column("double", lambda df: df["id"] * 2)
    assert ds.take(2) == [{"id": 0, "double": 0}, {"id": 1, "double": 2}]
    assert ds.select_columns(["double"]).take(1) == [{"double": 0}]
    assert ds.drop_columns(["id"]).columns() == ["double"]
    assert ds.rename_columns({"id": "key"}).columns() == ["key", "double"]
    assert ds.rename_columns(["a", "b"]).columns() == ["a", "b"]


def test_random_sample_is_reproducible_with_a_seed() -> None:
    first = _ids(ed.range(1000).random_sample(0.1, seed=7))
    again = _ids(ed.range(1000).random_sample(0.1, seed=7))
    assert first == again
    assert 40 < len(first) < 180


def test_limit_returns_the_first_rows_and_stops_early() -> None:
    ds = ed.range(100_000, override_num_blocks=100).map_batches(lambda b: b).limit(5)
    assert _ids(ds) == [0, 1, 2, 3, 4]
    assert ds.count() == 5
    # Far fewer than 100 tasks ran before the limit was met.
    assert "tasks executed" in ds.stats()


def test_union_keeps_input_order() -> None:
    ds = ed.range(3).union(ed.range(2).map(lambda r: {"id": r["id"] + 10}))
    assert _ids(ds) == [0, 1, 2, 10, 11]
    assert ds.count() == 5


def test_zip_aligns_rows_and_renames_duplicate_columns() -> None:
    left = ed.range(10, override_num_blocks=3)
    right = ed.range(10, override_num_blocks=4).map(lambda r: {"id": r["id"] * 10})
    rows = left.zip(right).take_all()
    assert rows[3] == {"id": 3, "id_1": 30}
    assert len(rows) == 10


def test_zip_of_different_lengths_is_an_error() -> None:
    with pytest.raises(InvalidArgumentError, match="3 and 4 rows"):
        ed.range(3).zip(ed.range(4)).take_all()
