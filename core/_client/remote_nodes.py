"""Links from one process to other nodes' managers (``RemoteNodes``).

A submitter opens one when a lease request is spilled to another node (it then asks that
node for workers), and a borrower when it asks an object's owner on another node to
rebuild it. Each link registers as a "submitter" of the process's job.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable

from .._wire import protocol as p
from .._types import Address
from .._wire.node_link import NodeLink


class RemoteNodes:
    """Links to other nodes' managers, opened when a lease request is spilled there or
    an owner there is asked to rebuild an object.

    Each link registers as a "submitter" of this job, so the remote node runs the job's
    workers with the same working directory, sys.path and environment.
    """

    def __init__(self, token: bytes, worker_id: bytes, job_id: bytes, namespace: str,
                 env_vars: dict[str, str] | None, sys_path: Callable[[], list[str]]) -> None:
        self._token = token
        self._worker_id, self._job_id, self._namespace = worker_id, job_id, namespace
        self._env_vars = env_vars
        #: sys.path as it is when a link opens (the driver may extend it meanwhile).
        self._sys_path = sys_path
        self._lock = threading.Lock()
        self._links: dict[Address, NodeLink] = {}
        #: Messages those node managers send unasked (LeaseWanted): (address, message).
        self.on_message: Callable[[Address, Any], None] = lambda _address, _msg: None

    def get(self, address: Address) -> NodeLink:
        """The link to the node manager at ``address`` (opened once; raises OSError if it
        cannot be reached)."""
        with self._lock:
            link = self._links.get(address)
            if link is not None and not link.closed:
                return link
        register = p.Register("submitter", self._worker_id, os.getpid(), namespace=self._namespace,
                              cwd=os.getcwd(), sys_path=self._sys_path(), env_vars=self._env_vars,
                              job_id=self._job_id)
        link = NodeLink(address, self._token, register, name="ember-remote-node",
                        on_message=lambda msg, _fds, a=address: self.on_message(a, msg))
        with self._lock:
            self._links[address] = link
        return link

    def drop(self, address: Address) -> None:
        """The node at ``address`` is dead: requests waiting on its link fail now (and are
        asked elsewhere) instead of waiting for a machine that may never answer."""
        with self._lock:
            link = self._links.pop(address, None)
        if link is not None:
            link.conn.close()  # its reader fails what waits; no join here (a reader thread calls us)

    def close(self) -> None:
        with self._lock:
            links, self._links = list(self._links.values()), {}
        for link in links:
            link.close()
