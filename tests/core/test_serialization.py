"""core/serialization.py with plain calls: layout, out-of-band buffers, errors."""

from __future__ import annotations

import threading

import numpy as np
import pyarrow as pa
import pytest

from ember._wire import serialization
from ember.exceptions import SerializationError
from ember._wire.serialization import FLAG_ERROR, deserialize, read_flags, serialize

pytestmark = pytest.mark.timeout(30)


class _Contained:
    """Stands in for an ObjectRef: reports itself while being pickled."""

    def __init__(self, tag: str) -> None:
        self.tag = tag

    def __reduce__(self):
        serialization.note_contained(self)
        return (_Contained, (self.tag,))


class _FailsToUnpickle:
    def __reduce__(self):
        return (_explode, ())


def _explode() -> None:
    raise RuntimeError("cannot be rebuilt here")


def _buffer_address(arr: np.ndarray) -> int:
    return arr.__array_interface__["data"][0]


@pytest.mark.parametrize("value", [
    None, 0, -7, 3.5, "text", b"bytes", [1, [2, 3]], {"a": (1, 2)}, {1, 2},
    {"nested": {"list": [None, True, 2.0]}},
], ids=repr)
def test_plain_values_round_trip(value) -> None:
    assert deserialize(serialize(value).to_bytes()) == value


def test_a_lambda_travels_by_value() -> None:
    offset = 5
    fn = deserialize(serialize(lambda x: x + offset).to_bytes())
    assert fn(1) == 6


def test_numpy_arrays_travel_out_of_band_and_come_back_equal() -> None:
    arr = np.arange(100_000, dtype=np.float64).reshape(1000, 100)
    ser = serialize(arr)
    assert len(ser.buffers) == 1
    assert len(ser.header) < 1000  # the data is not in the pickle stream
    out = deserialize(ser.to_bytes())
    np.testing.assert_array_equal(out, arr)
    assert out.dtype == arr.dtype and out.shape == arr.shape


def test_deserialized_arrays_are_views_of_the_input_bytes() -> None:
    """Zero copy: the array's memory lies inside the serialized buffer itself."""
    arr = np.arange(10_000, dtype=np.int64)
    data = serialize(arr).to_bytes()
    view = memoryview(data)
    out = deserialize(view)
    base = np.frombuffer(data, dtype=np.uint8)
    start = _buffer_address(base)
    assert start <= _buffer_address(out) < start + len(data)
    assert np.shares_memory(out, base)


def test_arrays_from_read_only_memory_are_read_only() -> None:
    data = bytes(serialize(np.ones(1000)).to_bytes())
    out = deserialize(data)
    assert not out.flags.writeable
    with pytest.raises(ValueError):
        out[0] = 2.0


def test_out_of_band_buffers_are_64_byte_aligned() -> None:
    arrays = [np.arange(n, dtype=np.uint8) for n in (1, 63, 100, 4097)]
    data = serialize(arrays).to_bytes()
    out = deserialize(data)
    base = _buffer_address(np.frombuffer(data, dtype=np.uint8))
    for original, got in zip(arrays, out):
        np.testing.assert_array_equal(got, original)
        if got.nbytes:
            assert (_buffer_address(got) - base) % 64 == 0


def test_arrow_buffers_round_trip() -> None:
    table = pa.table({"x": list(range(1000)), "y": [str(i) for i in range(1000)]})
    out = deserialize(serialize(table).to_bytes())
    assert out.equals(table)


def test_to_bytes_and_write_into_produce_the_same_layout() -> None:
    ser = serialize({"a": np.arange(50), "b": "x" * 300})
    out = bytearray(ser.total_bytes + 17)
    ser.write_into(memoryview(out))
    assert bytes(out[:ser.total_bytes]) == bytes(ser.to_bytes())
    assert len(ser.to_bytes()) == ser.total_bytes


def test_flags_are_stored_in_the_prefix() -> None:
    assert read_flags(serialize(ValueError("x"), FLAG_ERROR).to_bytes()) == FLAG_ERROR
    assert read_flags(serialize(1).to_bytes()) == 0


def test_contained_refs_are_collected_in_order() -> None:
    a, b = _Contained("a"), _Contained("b")
    ser = serialize({"first": a, "more": [b, 3]})
    assert [c.tag for c in ser.contained] == ["a", "b"]
    assert serialize([1, 2]).contained == []


def test_contained_refs_of_an_inner_serialize_do_not_leak_into_the_outer_one() -> None:
    class Outer:
        def __reduce__(self):
            inner = serialize(_Contained("inner"))
            assert [c.tag for c in inner.contained] == ["inner"]
            return (list, ())

    ser = serialize([_Contained("outer"), Outer()])
    assert [c.tag for c in ser.contained] == ["outer"]


def test_an_unpicklable_value_raises_a_serialization_error_naming_it() -> None:
    with pytest.raises(SerializationError, match=r"argument 0 of `f`.*lock") as info:
        serialize(threading.Lock(), what="argument 0 of `f`")
    assert isinstance(info.value, TypeError)
    assert info.value.__cause__ is not None


def test_a_value_that_fails_to_unpickle_raises_a_serialization_error() -> None:
    data = serialize(_FailsToUnpickle()).to_bytes()
    with pytest.raises(SerializationError, match="cannot be rebuilt here"):
        deserialize(data)


def test_an_exception_keeps_its_type_and_arguments() -> None:
    out = deserialize(serialize(KeyError("missing"), FLAG_ERROR).to_bytes())
    assert type(out) is KeyError and out.args == ("missing",)
