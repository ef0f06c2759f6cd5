"""Barrier steps: repartition, random_shuffle, sort, groupby, and global aggregates."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import ember.data as ed
from ember.data.aggregate import AggregateFn, Count, Max, Mean, Min, Std, Sum

pytestmark = pytest.mark.usefixtures("ember_local")

ITEMS = [{"k": i % 3, "v": float(i), "s": f"n{i % 2}"} for i in range(30)]


def test_repartition_keeps_order_and_evens_out_blocks() -> None:
    ds = ed.range(10, override_num_blocks=3).repartition(4).materialize()
    assert ds.num_blocks() == 4
    assert [r["id"] for r in ds.take_all()] == list(range(10))
    assert ds.count() == 10


def test_repartition_into_more_blocks_than_rows_gives_empty_blocks() -> None:
    ds = ed.range(2).repartition(5).materialize()
    assert ds.num_blocks() == 5 and ds.count() == 2


def test_random_shuffle_permutes_and_is_reproducible_with_a_seed() -> None:
    first = [r["id"] for r in ed.range(200, override_num_blocks=4).random_shuffle(seed=3).take_all()]
    again = [r["id"] for r in ed.range(200, override_num_blocks=4).random_shuffle(seed=3).take_all()]
    assert first == again
    assert first != list(range(200)) and sorted(first) == list(range(200))


def test_repartition_with_shuffle_changes_order() -> None:
    rows = [r["id"] for r in ed.range(100).repartition(3, shuffle=True).take_all()]
    assert sorted(rows) == list(range(100))


def test_sort_ascending_descending_and_by_several_keys() -> None:
    shuffled = ed.range(300, override_num_blocks=6).random_shuffle(seed=1)
    assert [r["id"] for r in shuffled.sort("id").take_all()] == list(range(300))
    assert [r["id"] for r in shuffled.sort("id", descending=True).take(3)] == [299, 298, 297]
    rows = ed.from_items(ITEMS).sort(["k", "v"], descending=[False, True]).take_all()
    assert [(r["k"], r["v"]) for r in rows[:2]] == [(0, 27.0), (0, 24.0)]


def test_sort_on_strings_with_nulls_puts_nulls_last() -> None:
    items = [{"s": s} for s in ["b", None, "a", "c", None]]
    assert [r["s"] for r in ed.from_items(items).sort("s").take_all()] == ["a", "b", "c", None, None]


def test_groupby_builtin_aggregations_are_sorted_by_key() -> None:
    grouped = ed.from_items(ITEMS).groupby("k")
    assert grouped.count().take_all() == [{"k": 0, "count()": 10}, {"k": 1, "count()": 10},
                                          {"k": 2, "count()": 10}]
    assert grouped.sum("v").take(1) == [{"k": 0, "sum(v)": 135.0}]
    assert grouped.min("v").take(1) == [{"k": 0, "min(v)": 0.0}]
    assert grouped.max("v").take(1) == [{"k": 0, "max(v)": 27.0}]
    assert grouped.mean("v").take(1) == [{"k": 0, "mean(v)": 13.5}]
    std = grouped.std("v").take(1)[0]["std(v)"]
    assert math.isclose(std, np.std([float(i) for i in range(0, 30, 3)], ddof=1))


def test_groupby_several_keys_and_custom_aggregate() -> None:
    rows = ed.from_items(ITEMS).groupby(["k", "s"]).aggregate(Count(), Sum("v")).take_all()
    assert len(rows) == 6 and rows[0] == {"k": 0, "s": "n0", "count()": 5, "sum(v)": 60.0}
    product = AggregateFn(init=lambda key: 1, merge=lambda a, b: a * b,
                          accumulate_row=lambda acc, row: acc * (row["v"] + 1), name="prod")
    out = ed.from_items(ITEMS[:4]).groupby("k").aggregate(product).take_all()
    assert out == [{"k": 0, "prod": 4.0}, {"k": 1, "prod": 2.0}, {"k": 2, "prod": 3.0}]


def test_groupby_none_aggregates_everything_into_one_row() -> None:
    assert ed.from_items(ITEMS).groupby(None).aggregate(Count(), Max("v")).take_all() == \
        [{"count()": 30, "max(v)": 29.0}]


def test_map_groups_sees_each_whole_group() -> None:
    def summarize(group: dict) -> dict:
        return {"k": group["k"][:1], "n": np.array([len(group["k"])]),
                "total": np.array([group["v"].sum()])}

    rows = ed.from_items(ITEMS).repartition(4).groupby("k").map_groups(summarize).take_all()
    assert rows == [{"k": 0, "n": 10, "total": 135.0}, {"k": 1, "n": 10, "total": 145.0},
                    {"k": 2, "n": 10, "total": 155.0}]


def test_map_groups_with_pandas_batches() -> None:
    def first(frame: Any) -> Any:
        return frame.head(1)

    rows = ed.from_items(ITEMS).groupby("s").map_groups(first, batch_format="pandas").take_all()
    assert [r["s"] for r in rows] == ["n0", "n1"]


def test_global_aggregates_and_unique() -> None:
    ds = ed.from_items(ITEMS)
    assert ds.sum("v") == 435.0
    assert ds.min("v") == 0.0 and ds.max("v") == 29.0
    assert ds.mean("v") == 14.5
    assert math.isclose(ds.std("v"), np.std(np.arange(30.0), ddof=1))
    assert ds.sum(["k", "v"]) == {"sum(k)": 30, "sum(v)": 435.0}
    assert sorted(ds.unique("s")) == ["n0", "n1"]
    assert ds.aggregate(Count(), Mean("v"), Min("k"), Std("v", ddof=0))["count()"] == 30


def test_aggregates_of_an_empty_dataset_are_none() -> None:
    empty = ed.range(10).filter(lambda r: False)
    assert empty.sum("id") is None and empty.count() == 0


def test_nulls_are_skipped_unless_ignore_nulls_is_false() -> None:
    ds = ed.from_items([{"x": 1.0}, {"x": None}, {"x": 3.0}])
    assert ds.sum("x") == 4.0 and ds.mean("x") == 2.0
    assert ds.sum("x", ignore_nulls=False) is None
