"""Where the head's control store outlives the head: SQLite (default) or Redis.

The head keeps its tables in memory (``control_store``, placement groups, the node
table) and writes every record that changed here, so that a head started again on the
same storage finds them (``ember start --head`` after a crash; see docs/fault-tolerance.md).

    a handler changes a record -> Persistence.mark(table, key)      (under the node lock)
    after the handler          -> Persistence.flush(): encode the marked records (cheap)
                               -> StorageWriter queue -> writer thread -> Backend.write
    head start                 -> Backend.load() -> the services restore their tables

Writes happen on the writer thread, never on the event loop nor under the node lock:
a slow disk or a slow Redis delays persistence, not the cluster. What a SIGKILL can lose
is what was queued and not yet written (milliseconds of changes).
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import sqlite3
import threading
from typing import Any, Callable, Literal, Optional, Protocol
from urllib.parse import urlparse

from ..exceptions import EmberError

log = logging.getLogger("ember._node.manager")

#: The tables the head persists, one record per key ("jobs": drivers' jobs, keyed by job
#: id; "submissions": jobs submitted with ``ember job submit``, keyed by submission id).
Table = Literal["meta", "functions", "jobs", "actors", "groups", "nodes", "submissions"]
TABLES: tuple[Table, ...] = ("meta", "functions", "jobs", "actors", "groups", "nodes", "submissions")
#: One change: (table, key, encoded record) or (table, key, None) to delete it.
Change = tuple[Table, bytes, Optional[bytes]]


class StorageError(EmberError):
    """The control store's storage cannot be opened, read or written."""


class Backend(Protocol):
    """Durable key-value tables; ``write`` is called from one thread at a time."""

    #: For messages: where the records live (a path or redis://HOST:PORT/DB).
    description: str

    def write(self, changes: list[Change]) -> None: ...

    def load(self) -> dict[Table, dict[bytes, bytes]]: ...

    def clear(self) -> None: ...

    def close(self) -> None: ...


class SqliteBackend:
    """One SQLite file (WAL): a committed write survives the process being killed."""

    def __init__(self, path: str) -> None:
        self.description = path
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # metadata is private like the token
            os.close(fd)
            # The writer thread writes, the head's main thread loads once before it starts.
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL: a commit is in the WAL before COMMIT returns, so it survives a killed
            # process; only a power loss can drop the last ones (FULL fsyncs every commit).
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS records (tbl TEXT NOT NULL, key BLOB NOT NULL, "
                             "value BLOB NOT NULL, PRIMARY KEY (tbl, key)) WITHOUT ROWID")
        except (OSError, sqlite3.Error) as e:
            raise StorageError(f"cannot open the control store's SQLite file {path}: {e}. Give a "
                               "writable path with --storage sqlite:///PATH") from e

    def write(self, changes: list[Change]) -> None:
        db = self._db
        db.execute("BEGIN")
        try:
            for table, key, value in changes:
                if value is None:
                    db.execute("DELETE FROM records WHERE tbl = ? AND key = ?", (table, key))
                else:
                    db.execute("INSERT OR REPLACE INTO records VALUES (?, ?, ?)", (table, key, value))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def load(self) -> dict[Table, dict[bytes, bytes]]:
        out: dict[Table, dict[bytes, bytes]] = {t: {} for t in TABLES}
        for table, key, value in self._db.execute("SELECT tbl, key, value FROM records"):
            if table in out:
                out[table][bytes(key)] = bytes(value)
        return out

    def clear(self) -> None:
        self._db.execute("DELETE FROM records")

    def close(self) -> None:
        self._db.close()


class RedisBackend:
    """One Redis hash per table (``ember:<table>``), for operators who already run Redis."""

    def __init__(self, host: str, port: int, db: int, password: str | None) -> None:
        # Imported here, not at the top: redis is an optional dependency (the `redis`
        # extra) that only heads started with --storage redis://... need.
        try:
            import redis
        except ImportError as e:
            raise StorageError("--storage redis://... needs the redis client: "
                               "pip install 'ember[redis]' (or pip install redis)") from e
        self.description = f"redis://{host}:{port}/{db}"
        self._client = redis.Redis(host=host, port=port, db=db, password=password,
                                   socket_connect_timeout=5.0, socket_timeout=10.0)
        try:
            self._client.ping()
        except redis.RedisError as e:
            raise StorageError(f"cannot reach Redis at {self.description} for the control store: "
                               f"{e}. Start Redis there, or drop --storage to use SQLite") from e
        self._errors = redis.RedisError

    def write(self, changes: list[Change]) -> None:
        pipe = self._client.pipeline(transaction=True)
        for table, key, value in changes:
            if value is None:
                pipe.hdel(f"ember:{table}", key)
            else:
                pipe.hset(f"ember:{table}", key, value)
        pipe.execute()

    def load(self) -> dict[Table, dict[bytes, bytes]]:
        return {t: {bytes(k): bytes(v) for k, v in self._client.hgetall(f"ember:{t}").items()}
                for t in TABLES}

    def clear(self) -> None:
        self._client.delete(*(f"ember:{t}" for t in TABLES))

    def close(self) -> None:
        self._client.close()


def open_backend(url: str) -> Backend:
    """The backend a ``--storage`` URL names: ``sqlite:///PATH`` or ``redis://HOST:PORT[/DB]``.

    Raises:
        StorageError: an unknown scheme, a missing path, or storage that cannot be reached.
    """
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = url[len("sqlite://"):]
        if not path or path == "/":
            raise StorageError(f"--storage {url!r} names no file: write sqlite:///ABSOLUTE/PATH")
        return SqliteBackend(path)
    if parsed.scheme == "redis":
        try:
            port = parsed.port or 6379
            db = int(parsed.path.lstrip("/") or 0)
        except ValueError as e:
            raise StorageError(f"--storage {url!r}: expected redis://HOST:PORT[/DB] ({e})") from e
        return RedisBackend(parsed.hostname or "127.0.0.1", port, db, parsed.password)
    raise StorageError(f"--storage {url!r}: unknown kind of storage; use sqlite:///PATH (the default "
                       "is a file in the head's session directory) or redis://HOST:PORT")


class StorageWriter:
    """The thread that writes queued changes to the backend, in order, batched."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._queue: queue.SimpleQueue[list[Change] | None] = queue.SimpleQueue()
        #: Set when everything queued so far is written (``flush``).
        self._idle = threading.Condition()
        self._queued = 0
        self._written = 0
        self._thread = threading.Thread(target=self._run, daemon=True, name="ember-storage")
        self._thread.start()

    def put(self, changes: list[Change]) -> None:
        with self._idle:
            self._queued += 1
        self._queue.put(changes)

    def _run(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is None:
                return
            count = 1
            # Everything already queued goes in the same transaction.
            while True:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._write(batch, count)
                    return
                batch = batch + more
                count += 1
            self._write(batch, count)

    def _write(self, batch: list[Change], count: int) -> None:
        try:
            self.backend.write(batch)
        except Exception:  # a storage outage must not kill the head; it is logged
            log.exception("writing %d control-store change(s) to %s failed", len(batch),
                          self.backend.description)
        with self._idle:
            self._written += count
            self._idle.notify_all()

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything queued so far is written; False on timeout."""
        with self._idle:
            target = self._queued
            return self._idle.wait_for(lambda: self._written >= target, timeout_s)

    def close(self, clear: bool = False) -> None:
        """Write what is queued (or, ``clear``: then erase every record), stop the thread,
        close the backend."""
        self._queue.put(None)
        self._thread.join(10)
        try:
            if clear:
                self.backend.clear()
        except Exception:  # the head is stopping either way
            log.exception("clearing the control store in %s failed", self.backend.description)
        finally:
            self.backend.close()


class Persistence:
    """The records a head's services changed since the last flush, and how to encode them.

    Services call ``mark(table, key)`` when they change a record (under the node lock);
    ``flush`` (same lock) encodes each marked record once with its table's encoder (None:
    the record is gone, delete it) and queues the batch. Without storage (worker nodes,
    a driver's embedded cluster) every call is a no-op.
    """

    def __init__(self, writer: StorageWriter | None) -> None:
        self.writer = writer
        self._dirty: dict[tuple[Table, bytes], None] = {}
        self._encoders: dict[Table, Callable[[bytes], Any]] = {}

    @property
    def enabled(self) -> bool:
        return self.writer is not None

    def encoder(self, table: Table, encode: Callable[[bytes], Any]) -> None:
        """``encode(key)``: the record to store (pickled), or None when it is gone."""
        self._encoders[table] = encode

    def mark(self, table: Table, key: bytes) -> None:
        if self.writer is not None:
            self._dirty[(table, key)] = None

    def flush(self) -> None:
        if not self._dirty:  # the common case: called after every message
            return
        if self.writer is None:  # closed since the records were marked
            self._dirty.clear()
            return
        dirty, self._dirty = self._dirty, {}
        changes: list[Change] = []
        for table, key in dirty:
            record = self._encoders[table](key)
            changes.append((table, key, None if record is None
                            else pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)))
        self.writer.put(changes)

    def put_now(self, table: Table, key: bytes, record: Any) -> None:
        """Queue one record outside the marking scheme (the head's own meta records)."""
        if self.writer is not None:
            self.writer.put([(table, key, pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL))])

    def close(self, clear: bool = False) -> None:
        """Stop writing (``clear``: the cluster ended on purpose, so erase its records)."""
        writer, self.writer = self.writer, None
        if writer is not None:
            writer.close(clear)


def decode(blob: bytes) -> Any:
    """A stored record (written by this head or an earlier one of the same cluster)."""
    return pickle.loads(blob)
