"""The wire: what crosses a process boundary, and how.

In: Python values and typed messages from the client, the worker and the node manager.
Out: length-prefixed frames on Unix/TCP sockets (``transport``) opened by the token and
version handshake (``handshake``; tokens come from ``tokens``), message dataclasses
(``protocol``), values as pickle-5 bytes with their large buffers out of band
(``serialization``), stored objects as shared-memory segments (``segments``), and the
request/reply link every client keeps to its node manager (``node_link``). Ids are derived
here (``ids``) so that both ends compute the same object id from a task id.

Nothing in this package knows about runtimes, schedulers or workers: it imports only the
standard library, cloudpickle and ``ember._types``/``ember.exceptions``/``ember._version``.
"""
