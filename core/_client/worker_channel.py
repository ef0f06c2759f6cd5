"""A submitter's direct connection to one worker: pushes go out, TaskReplies come back.

    TaskSubmitter / ActorSubmitter --push(PushTask)--> worker
    worker --TaskReply--> [reader thread] --on_reply(channel, reply)--> submitter
    worker --GeneratorItems--> [reader thread] --on_items(items)--> GeneratorTable
                                           --on_lost(channel)--> submitter (worker gone)

Calls pushed on one channel reach the worker in order, which is what keeps an actor's
calls from one caller ordered.
"""

from __future__ import annotations

import threading
from typing import Callable, Protocol

from .._wire import protocol as p
from .._types import Address, TaskID
from .._wire.handshake import connect_to
from .._wire.transport import ConnectionClosed


class Pushed(Protocol):
    """What a channel keeps in flight: a task or actor call record with its spec."""

    spec: p.TaskSpec


class WorkerChannel:
    """A connection to one worker, with a reader thread routing its TaskReplies.

    ``inflight`` maps the task ids pushed here to their records until their reply (or
    the channel's loss) comes; the submitter that owns the channel reads and clears it.
    """

    def __init__(self, address: Address, token: bytes,
                 on_reply: Callable[["WorkerChannel", p.TaskReply], None],
                 on_lost: Callable[["WorkerChannel"], None],
                 on_items: Callable[[p.GeneratorItems], None]) -> None:
        self.address = address
        self.conn = connect_to(address, token)
        self.inflight: dict[TaskID, Pushed] = {}
        self.lost = False
        self._on_reply = on_reply
        self._on_lost = on_lost
        #: Values of generator tasks, which come before their task's reply.
        self._on_items = on_items
        self.thread = threading.Thread(target=self._read, daemon=True, name="ember-worker-channel")
        self.thread.start()

    def push(self, record: Pushed, msg: p.PushTask) -> bool:
        """Send ``msg`` for ``record``; False if the worker is already gone."""
        self.inflight[record.spec.task_id] = record
        try:
            self.conn.send(msg)
            return True
        except ConnectionClosed:
            return False

    def send(self, msg: p.CancelTask | p.GeneratorConsumed) -> None:
        """A message that needs no reply (a cancel, a generator's progress); dropped if the
        worker is gone."""
        try:
            self.conn.send(msg)
        except ConnectionClosed:
            pass

    def _read(self) -> None:
        try:
            while True:
                msg, _ = self.conn.recv()
                if type(msg) is p.GeneratorItems:
                    self._on_items(msg)
                else:
                    self._on_reply(self, msg)
        except (ConnectionClosed, OSError, EOFError):
            pass
        self.lost = True
        self.conn.close()  # the worker is gone: release the socket now, not at collection
        self._on_lost(self)

    def close(self) -> None:
        self.conn.close()
