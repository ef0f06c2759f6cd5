"""Consumption: take/show/count/schema, iteration, conversions, materialize, stats, splits."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import ember
import ember.data as ed
from ember.data.exceptions import InvalidArgumentError

pytestmark = pytest.mark.usefixtures("ember_local")


def test_take_take_all_take_batch_and_show(capsys: pytest.CaptureFixture[str]) -> None:
    ds = ed.range(50)
    assert ds.take(2) == [{"id": 0}, {"id": 1}]
    assert len(ds.take()) == 20
    assert len(ds.take_all()) == 50
    with pytest.raises(InvalidArgumentError, match="more than 10 rows"):
        ds.take_all(limit=10)
    assert ds.take_batch(3)["id"].tolist() == [0, 1, 2]
    assert list(ds.take_batch(3, batch_format="pandas").columns) == ["id"]
    ds.show(2)
    assert capsys.readouterr().out == "{'id': 0}\n{'id': 1}\n"


def test_count_uses_metadata_when_it_can_and_executes_otherwise() -> None:
    assert ed.range(1234).map(lambda r: r).count() == 1234
    assert ed.range(100).filter(lambda r: r["id"] < 10).count() == 10


def test_schema_and_columns() -> None:
    ds = ed.range(3).map_batches(lambda b: {"id": b["id"], "f": b["id"] * 0.5})
    schema = ds.schema()
    assert schema.names == ["id", "f"] and schema.types == [pa.int64(), pa.float64()]
    assert "Column" in repr(schema)
    assert ds.columns() == ["id", "f"]


def test_iter_rows_and_iter_batches_with_and_without_prefetching() -> None:
    ds = ed.range(100, override_num_blocks=7)
    assert [r["id"] for r in ds.iter_rows()] == list(range(100))
    for prefetch in (0, 2):
        sizes = [len(b["id"]) for b in ds.iter_batches(batch_size=30, prefetch_batches=prefetch)]
        assert sizes == [30, 30, 30, 10]
    assert [len(b["id"]) for b in ds.iter_batches(batch_size=30, drop_last=True)] == [30, 30, 30]
    frames = list(ds.iter_batches(batch_size=50, batch_format="pandas"))
    assert all(isinstance(f, pd.DataFrame) for f in frames)


def test_iter_batches_local_shuffle_is_seeded_and_complete() -> None:
    ds = ed.range(200, override_num_blocks=4)

    def run() -> list[int]:
        return [int(i) for b in ds.iter_batches(batch_size=16, local_shuffle_buffer_size=50,
                                                local_shuffle_seed=0) for i in b["id"]]

    first = run()
    assert sorted(first) == list(range(200)) and first != list(range(200))
    assert run() == first


def test_abandoning_an_iterator_midway_leaves_the_runtime_usable() -> None:
    iterator = ed.range(10_000, override_num_blocks=50).iter_batches(batch_size=10)
    next(iterator)
    iterator.close()
    assert ed.range(5).count() == 5


def test_iter_torch_batches_converts_to_tensors() -> None:
    torch = pytest.importorskip("torch")
    ds = ed.range(10).map_batches(lambda b: {"x": b["id"].astype(np.float64), "y": b["id"]})
    batch = next(iter(ds.iter_torch_batches(batch_size=4, dtypes={"x": torch.float32})))
    assert batch["x"].dtype == torch.float32 and batch["y"].dtype == torch.int64
    assert batch["x"].shape == (4,)
    collated = next(iter(ds.iter_torch_batches(batch_size=4, collate_fn=lambda b: len(b["x"]))))
    assert collated == 4


def test_to_pandas_and_ref_conversions() -> None:
    ds = ed.range(10, override_num_blocks=2)
    assert ds.to_pandas()["id"].tolist() == list(range(10))
    with pytest.raises(InvalidArgumentError, match="more than 5 rows"):
        ds.to_pandas(limit=5)
    tables = ember.get(ds.to_arrow_refs())
    assert sum(t.num_rows for t in tables) == 10
    arrays = ember.get(ds.to_numpy_refs(column="id"))
    assert np.concatenate(arrays).tolist() == list(range(10))
    frames = ember.get(ds.to_pandas_refs())
    assert pd.concat(frames)["id"].tolist() == list(range(10))


def test_materialize_keeps_blocks_and_stats_report_operators() -> None:
    ds = ed.range(100).map_batches(lambda b: {"id": b["id"] + 1})
    mds = ds.materialize()
    assert isinstance(mds, ed.MaterializedDataset)
    assert mds.count() == 100 and mds.num_blocks() >= 1
    assert mds.take(1) == [{"id": 1}]
    stats = mds.stats()
    assert "ReadRange->MapBatches(<lambda>)" in stats and "Output num rows: 100" in stats


def test_split_split_at_indices_and_proportions() -> None:
    ds = ed.range(10, override_num_blocks=4)
    assert [d.count() for d in ds.split(3, equal=True)] == [3, 3, 3]
    parts = ds.split(2)
    assert sum(d.count() for d in parts) == 10
    assert [[r["id"] for r in d.take_all()] for d in ds.split_at_indices([2, 7])] == \
        [[0, 1], [2, 3, 4, 5, 6], [7, 8, 9]]
    assert [d.count() for d in ds.split_proportionately([0.5, 0.2])] == [5, 2, 3]


def test_train_test_split_by_fraction_count_and_with_shuffle() -> None:
    train, test = ed.range(10).train_test_split(0.3)
    assert (train.count(), test.count()) == (7, 3)
    assert [r["id"] for r in test.take_all()] == [7, 8, 9]
    train, test = ed.range(10).train_test_split(2, shuffle=True, seed=0)
    assert (train.count(), test.count()) == (8, 2)
    ids = [r["id"] for r in train.take_all() + test.take_all()]
    assert sorted(ids) == list(range(10)) and ids != list(range(10))
    with pytest.raises(InvalidArgumentError):
        ed.range(10).train_test_split(1.5)


@ember.remote
def _consume(iterator: Any) -> list[int]:
    """Two epochs over one shard, as a training worker would."""
    return [sum(len(b["id"]) for b in iterator.iter_batches(batch_size=None)) for _ in range(2)]


def test_streaming_split_feeds_equal_shards_to_workers_for_several_epochs() -> None:
    shards = ed.range(1001, override_num_blocks=10).streaming_split(2, equal=True)
    counts = ember.get([_consume.remote(s) for s in shards])
    assert counts == [[500, 500], [500, 500]]


def test_streaming_split_unequal_covers_every_row_once() -> None:
    shards = ed.range(300, override_num_blocks=6).streaming_split(3)
    counts = ember.get([_consume.remote(s) for s in shards])
    assert sum(c[0] for c in counts) == 300 and sum(c[1] for c in counts) == 300
