"""Bad input: each mistake gives a typed error naming the file/column/operator, and the
runtime keeps working afterwards."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import ember
import ember.data as ed
from ember.data.aggregate import Sum
from ember.data.exceptions import (BatchFormatError, ColumnNotFoundError, DataError,
                                   DatasetFileNotFoundError, FileReadError, InvalidArgumentError,
                                   SchemaMismatchError)

pytestmark = pytest.mark.usefixtures("ember_local")


@pytest.fixture(autouse=True)
def _runtime_still_works() -> Iterator[None]:
    yield
    assert ed.range(10).map_batches(lambda b: b).count() == 10


def test_missing_path_names_the_path_and_the_reader(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.parquet")
    with pytest.raises(DatasetFileNotFoundError, match=r"read_parquet: path .*nope.parquet"):
        ed.read_parquet(missing)
    with pytest.raises(FileNotFoundError):  # also the built-in a Ray user would catch
        ed.read_csv([str(tmp_path), missing])


def test_directory_without_matching_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DatasetFileNotFoundError, match=r"no files ending in \['npy'\]"):
        ed.read_numpy(str(tmp_path))


def test_corrupt_parquet_is_reported_when_reading_is_planned(tmp_path: Path) -> None:
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"PAR1 definitely not parquet")
    with pytest.raises(FileReadError, match="broken.parquet.*parquet"):
        ed.read_parquet(str(tmp_path))


def test_unparseable_csv_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "ok.csv").write_text("a,b\n1,2\n")
    (tmp_path / "bad.csv").write_text("a,b\n1,2,3,4\n")
    with pytest.raises(FileReadError, match="bad.csv.*csv"):
        ed.read_csv(str(tmp_path)).take_all()


def test_mixed_schema_parquet_files_name_both_files(tmp_path: Path) -> None:
    pq.write_table(pa.table({"a": [1]}), tmp_path / "one.parquet")
    pq.write_table(pa.table({"a": ["text"]}), tmp_path / "two.parquet")
    with pytest.raises(SchemaMismatchError, match=r"one.parquet.*two.parquet.*a: int64 vs string"):
        ed.read_parquet(str(tmp_path))


def test_mixed_schema_csv_files_name_both_files(tmp_path: Path) -> None:
    (tmp_path / "1.csv").write_text("a\n1\n")
    (tmp_path / "2.csv").write_text("b\nx\n")
    with pytest.raises(SchemaMismatchError, match=r"1.csv.*2.csv"):
        ed.read_csv(str(tmp_path), override_num_blocks=1).take_all()
    with pytest.raises(SchemaMismatchError, match=r"1.csv.*2.csv"):
        ed.read_csv(str(tmp_path), override_num_blocks=2).to_pandas()


def test_map_batches_returning_the_wrong_type_names_the_operator() -> None:
    def count_only(batch: dict) -> int:
        return len(batch["id"])

    with pytest.raises(BatchFormatError, match=r"MapBatches\(count_only\).*int"):
        ed.range(10).map_batches(count_only).take_all()
    with pytest.raises(BatchFormatError, match="different lengths"):
        ed.range(10).map_batches(lambda b: {"a": b["id"], "b": b["id"][:1]}).take_all()


def test_map_returning_a_non_dict_names_the_operator() -> None:
    def to_int(row: dict) -> int:
        return row["id"]

    with pytest.raises(BatchFormatError, match=r"Map\(to_int\).*a dict"):
        ed.range(3).map(to_int).take_all()


@pytest.mark.parametrize("build", [
    lambda ds: ds.select_columns(["nope"]),
    lambda ds: ds.drop_columns(["nope"]),
    lambda ds: ds.rename_columns({"nope": "x"}),
    lambda ds: ds.sort("nope"),
    lambda ds: ds.groupby("nope").count(),
    lambda ds: ds.groupby("id").aggregate(Sum("nope")),
], ids=["select", "drop", "rename", "sort", "groupby", "aggregate"])
def test_a_column_that_does_not_exist_is_named_with_the_columns_that_do(build: object) -> None:
    with pytest.raises(ColumnNotFoundError, match=r"column 'nope' does not exist.*\['id'\]"):
        build(ed.range(5)).take_all()  # type: ignore[operator]


def test_missing_column_in_global_aggregate_and_reads(tmp_path: Path) -> None:
    with pytest.raises(ColumnNotFoundError, match="nope"):
        ed.range(5).sum("nope")
    pq.write_table(pa.table({"a": [1]}), tmp_path / "f.parquet")
    with pytest.raises(ColumnNotFoundError, match=r"read_parquet\(.*f.parquet\).*'nope'"):
        ed.read_parquet(str(tmp_path), columns=["nope"])
    with pytest.raises(ColumnNotFoundError, match="WriteNumpy"):
        ed.range(3).write_numpy(str(tmp_path / "out"), column="nope")


def test_user_exception_keeps_its_class_and_names_operator_and_row() -> None:
    def explode(row: dict) -> dict:
        if row["id"] == 3:
            raise ZeroDivisionError("bad row")
        return row

    with pytest.raises(ZeroDivisionError) as info:
        ed.range(5).map(explode).take_all()
    message = str(info.value)
    assert "bad row" in message and "Map(explode)" in message and "{'id': 3}" in message
    assert isinstance(info.value, ember.exceptions.TaskError)


def test_user_exception_in_a_batch_names_the_batch() -> None:
    def explode(batch: dict) -> dict:
        raise ValueError("bad batch")

    with pytest.raises(ValueError, match=r"(?s)bad batch.*MapBatches\(explode\) on a batch of 5 rows"):
        ed.range(5).map_batches(explode).take_all()


class FailingModel:
    def __init__(self) -> None:
        raise RuntimeError("weights missing")

    def __call__(self, batch: dict) -> dict:
        return batch


def test_callable_class_constructor_failure_surfaces_as_a_dead_actor() -> None:
    # As in Ray: an actor whose __init__ raises is dead, and calls on it say why.
    # num_cpus=0 because the core currently never releases the CPU of an actor whose
    # __init__ raised (reported); a leaked CPU would starve the rest of this module.
    with pytest.raises(ember.exceptions.ActorDiedError,
                       match=r"(?s)weights missing.*MapBatches\(FailingModel\)"):
        ed.range(5).map_batches(FailingModel, concurrency=1, num_cpus=0).take_all()


@pytest.mark.parametrize("call,match", [
    (lambda: ed.range(3).map_batches(lambda b: b, batch_size=0), "batch_size"),
    (lambda: ed.range(3).map_batches(lambda b: b, batch_format="xml"), "batch_format"),
    (lambda: ed.range(3).map_batches(lambda b: b, concurrency=0), "concurrency"),
    (lambda: ed.range(3).map_batches(42), "callable"),
    (lambda: ed.range(3).limit(-1), "limit"),
    (lambda: ed.range(3).random_sample(2.0), "fraction"),
    (lambda: ed.range(3).repartition(0), "num_blocks"),
    (lambda: ed.range(-1), "n must be"),
    (lambda: ed.range(3, override_num_blocks=0), "override_num_blocks"),
    (lambda: ed.range(3).iter_batches(batch_size=-5), "batch_size"),
], ids=["batch_size", "batch_format", "concurrency", "not_callable", "limit", "fraction",
        "repartition", "range", "num_blocks", "iter_batch_size"])
def test_invalid_arguments_are_rejected_when_the_plan_is_built(call: object, match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match) as info:
        call()  # type: ignore[operator]
    assert isinstance(info.value, ValueError) and isinstance(info.value, DataError)
