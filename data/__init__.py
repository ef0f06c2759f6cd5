"""ember.data: distributed datasets of Arrow blocks with streaming execution.

A Ray Data pipeline runs unchanged apart from the import::

    import ember.data
    ds = ember.data.read_parquet("/data/train").map_batches(Model, concurrency=2, batch_size=64)
    ds.write_parquet("/data/scored")

Plans are lazy; consuming a dataset runs it with a streaming executor that keeps the
object store bytes it holds under a budget (see ``DataContext``).
"""

from ember.data._consume import Schema
from ember.data._plan import ActorPoolStrategy, TaskPoolStrategy
from ember.data.aggregate import AggregateFn
from ember.data.context import DataContext, ExecutionOptions, ExecutionResources
from ember.data.dataset import Dataset, MaterializedDataset
from ember.data.grouped_data import GroupedData
from ember.data.iterator import DataIterator
from ember.data.read_api import (from_arrow, from_arrow_refs, from_items, from_numpy, from_pandas,
                                 from_torch, range, range_tensor, read_binary_files, read_csv,
                                 read_images, read_json, read_numpy, read_parquet, read_text)
from ember.data import aggregate, exceptions

__all__ = [
    "ActorPoolStrategy",
    "AggregateFn",
    "DataContext",
    "DataIterator",
    "Dataset",
    "ExecutionOptions",
    "ExecutionResources",
    "GroupedData",
    "MaterializedDataset",
    "Schema",
    "TaskPoolStrategy",
    "aggregate",
    "exceptions",
    "from_arrow",
    "from_arrow_refs",
    "from_items",
    "from_numpy",
    "from_pandas",
    "from_torch",
    "range",
    "range_tensor",
    "read_binary_files",
    "read_csv",
    "read_images",
    "read_json",
    "read_numpy",
    "read_parquet",
    "read_text",
]
