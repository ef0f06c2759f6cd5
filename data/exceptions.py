"""Every error ember.data raises for bad input.

Each error keeps its facts as fields and builds its message in ``__str__``: what was
wrong, in which file/column/operator, and what to do. They subclass the built-in error a
Ray Data user would catch (``FileNotFoundError``, ``KeyError``, ``TypeError``,
``ValueError``) as well as :class:`ember.exceptions.EmberError`, so both
``except ValueError`` and ``except EmberError`` keep working.

Errors raised inside a task travel back to the driver by pickle, so every class rebuilds
itself from the constructor arguments it keeps in ``_args``.
"""

from __future__ import annotations

from typing import Any, Sequence

from ember.exceptions import EmberError

__all__ = [
    "DataError",
    "DatasetFileNotFoundError",
    "FileReadError",
    "SchemaMismatchError",
    "ColumnNotFoundError",
    "BatchFormatError",
    "InvalidArgumentError",
]


class DataError(EmberError):
    """Base class of every ember.data error."""

    _args: tuple[Any, ...] = ()

    def __reduce__(self) -> Any:
        return (type(self), self._args)


class DatasetFileNotFoundError(DataError, FileNotFoundError):
    """A path given to a ``read_*`` function does not exist or holds no matching files."""

    def __init__(self, path: str, reader: str, detail: str = "") -> None:
        self._args = (path, reader, detail)
        self.path = path
        self.reader = reader
        self.detail = detail
        super().__init__(path)

    def __str__(self) -> str:
        what = self.detail or "does not exist"
        return (f"{self.reader}: path {self.path!r} {what}. Check the spelling, or pass a "
                f"directory that contains the files.")


class FileReadError(DataError):
    """A file exists but could not be parsed in the requested format."""

    def __init__(self, path: str, file_format: str, cause: str) -> None:
        self._args = (path, file_format, cause)
        self.path = path
        self.file_format = file_format
        self.cause = cause
        super().__init__(path)

    def __str__(self) -> str:
        return (f"could not read {self.path!r} as {self.file_format}: {self.cause}. Is the "
                f"file complete and in {self.file_format} format?")


class SchemaMismatchError(DataError, ValueError):
    """Blocks or files that must share a schema do not."""

    def __init__(self, first: str, second: str, difference: str) -> None:
        self._args = (first, second, difference)
        self.first = first
        self.second = second
        self.difference = difference
        super().__init__(first, second)

    def __str__(self) -> str:
        return (f"schemas differ between {self.first} and {self.second}: {self.difference}. "
                f"Select the common columns (columns=[...]) or cast the files to one schema.")


class ColumnNotFoundError(DataError, KeyError):
    """An operator named a column the data does not have."""

    def __init__(self, column: str, available: Sequence[str], operator: str) -> None:
        self._args = (column, list(available), operator)
        self.column = column
        self.available = list(available)
        self.operator = operator
        super().__init__(column)

    def __str__(self) -> str:
        return (f"{self.operator}: column {self.column!r} does not exist; the data has "
                f"columns {self.available}.")


class BatchFormatError(DataError, TypeError):
    """A user function returned something that cannot become a block."""

    def __init__(self, operator: str, got: str, expected: str) -> None:
        self._args = (operator, got, expected)
        self.operator = operator
        self.got = got
        self.expected = expected
        super().__init__(operator, got)

    def __str__(self) -> str:
        return f"{self.operator}: the function returned {self.got}; expected {self.expected}."


class InvalidArgumentError(DataError, ValueError):
    """An argument to an ember.data API has a value the API cannot use."""

    def __init__(self, api: str, message: str) -> None:
        self._args = (api, message)
        self.api = api
        self.message = message
        super().__init__(api, message)

    def __str__(self) -> str:
        return f"{self.api}: {self.message}"
