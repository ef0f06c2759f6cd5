"""Creating datasets (range, from_*) and reading/writing files, on a real runtime."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import ember
import ember.data as ed

pytestmark = pytest.mark.usefixtures("ember_local")


def test_range_and_range_tensor_honour_override_num_blocks() -> None:
    ds = ed.range(10, override_num_blocks=3).materialize()
    assert ds.num_blocks() == 3 and ds.count() == 10
    tensors = ed.range_tensor(4, shape=(2, 3), parallelism=2)
    row = tensors.take(4)[3]["data"]
    assert row.shape == (2, 3) and (row == 3).all()
    assert tensors.take_batch(4)["data"].shape == (4, 2, 3)


def test_from_items_pandas_numpy_arrow_and_torch() -> None:
    assert ed.from_items([1, 2]).take_all() == [{"item": 1}, {"item": 2}]
    assert ed.from_items([{"a": 1, "b": "x"}]).take_all() == [{"a": 1, "b": "x"}]
    frames = [pd.DataFrame({"a": [1, 2]}), pd.DataFrame({"a": [3]})]
    assert [r["a"] for r in ed.from_pandas(frames).take_all()] == [1, 2, 3]
    assert ed.from_pandas(frames[0], override_num_blocks=2).materialize().num_blocks() == 2
    images = ed.from_numpy(np.zeros((5, 4, 4), dtype=np.uint8))
    assert images.count() == 5 and images.take(1)[0]["data"].shape == (4, 4)
    assert ed.from_arrow(pa.table({"x": [1.5]})).take_all() == [{"x": 1.5}]
    assert ed.from_arrow_refs([ember.put(pa.table({"x": [1, 2]}))]).count() == 2
    torch = pytest.importorskip("torch")
    samples = ed.from_torch(torch.utils.data.TensorDataset(torch.arange(3)))
    assert samples.count() == 3 and "item" in samples.columns()


def test_parquet_round_trip_with_columns_filter_and_paths(tmp_path: Path) -> None:
    out = str(tmp_path / "pq")
    ed.range(1000, override_num_blocks=4).map_batches(
        lambda b: {"id": b["id"], "sq": b["id"] ** 2}, batch_size=None).write_parquet(out)
    files = sorted(os.listdir(out))
    assert len(files) == 4 and all(f.endswith(".parquet") for f in files)
    ds = ed.read_parquet(out)
    assert ds.count() == 1000 and ds.columns() == ["id", "sq"]
    assert [r["id"] for r in ds.take(3)] == [0, 1, 2]  # file order is dataset order
    assert ed.read_parquet(out, columns=["sq"]).columns() == ["sq"]
    filtered = ed.read_parquet(out, filter=pc.field("id") >= 990)
    assert filtered.count() == 10
    assert ed.read_parquet(out, filter=[("id", "<", 5)]).count() == 5
    with_paths = ed.read_parquet(os.path.join(out, files[0]), include_paths=True)
    assert with_paths.take(1)[0]["path"].endswith(files[0])


def test_read_parquet_splits_row_groups_into_blocks(tmp_path: Path) -> None:
    path = str(tmp_path / "one.parquet")
    pq.write_table(pa.table({"x": np.arange(1000)}), path, row_group_size=100)
    ds = ed.read_parquet(path, override_num_blocks=5).materialize()
    assert ds.num_blocks() == 5 and ds.sum("x") == sum(range(1000))


def test_csv_json_round_trips(tmp_path: Path) -> None:
    ds = ed.from_items([{"a": i, "b": f"s{i}"} for i in range(6)])
    ds.write_csv(str(tmp_path / "csv"))
    assert sorted(r["a"] for r in ed.read_csv(str(tmp_path / "csv")).take_all()) == list(range(6))
    ds.write_json(str(tmp_path / "json"))
    back = ed.read_json(str(tmp_path / "json"))
    assert back.count() == 6 and set(back.columns()) == {"a", "b"}


def test_read_json_accepts_a_json_array_document(tmp_path: Path) -> None:
    path = tmp_path / "records.json"
    path.write_text(json.dumps([{"x": 1}, {"x": 2}]))
    assert ed.read_json(str(path)).take_all() == [{"x": 1}, {"x": 2}]


def test_numpy_round_trip(tmp_path: Path) -> None:
    ed.from_numpy(np.arange(12).reshape(6, 2)).write_numpy(str(tmp_path / "npy"), column="data")
    back = ed.read_numpy(str(tmp_path / "npy"))
    assert back.count() == 6 and back.take(1)[0]["data"].tolist() == [0, 1]


def test_read_text_and_binary_files(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("hello\n\nworld\n")
    (tmp_path / "b.txt").write_text("again\n")
    lines = [r["text"] for r in ed.read_text(str(tmp_path)).take_all()]
    assert lines == ["hello", "", "world", "again"]
    assert ed.read_text(str(tmp_path), drop_empty_lines=True).count() == 3
    blobs = ed.read_binary_files(str(tmp_path / "b.txt"), include_paths=True).take_all()
    assert blobs[0]["bytes"] == b"again\n" and blobs[0]["path"].endswith("b.txt")


def test_read_images_decodes_to_arrays(tmp_path: Path) -> None:
    image_module = pytest.importorskip("PIL.Image")
    image_module.fromarray(np.zeros((8, 6, 3), dtype=np.uint8)).save(tmp_path / "x.png")
    rows = ed.read_images(str(tmp_path), size=(4, 4), mode="L", include_paths=True).take_all()
    assert rows[0]["image"].shape == (4, 4) and rows[0]["path"].endswith("x.png")


def test_directories_skip_hidden_and_underscore_files(tmp_path: Path) -> None:
    pq.write_table(pa.table({"x": [1]}), tmp_path / "part-0.parquet")
    (tmp_path / "_SUCCESS").write_text("")
    (tmp_path / ".hidden").write_text("junk")
    assert ed.read_parquet(str(tmp_path)).count() == 1


def test_override_num_blocks_on_file_reads(tmp_path: Path) -> None:
    for i in range(4):
        (tmp_path / f"{i}.csv").write_text(f"x\n{i}\n")
    ds = ed.read_csv(str(tmp_path), override_num_blocks=2).materialize()
    assert ds.num_blocks() == 2 and ds.count() == 4
    assert sorted(ds.input_files()) == sorted(str(tmp_path / f"{i}.csv") for i in range(4))
