"""The node manager: one process per node that owns the node's resources, workers and objects.

In: requests from clients on the node (drivers and workers, over the Unix socket) and from
other node managers (over TCP): leases, object registrations and references, actor and
placement-group control, membership heartbeats.
Out: lease grants naming a worker's address, object locations and segments, forwarded
requests to the node that can serve them, and worker processes started through the fork
server.

``manager`` composes the services (``leases``, ``workers``, ``actors``, ``placement``,
``objects``, ``cluster``) over one ``NodeContext`` and one socket event loop (``server``).
The decisions they take are plain functions (``decisions``, ``scheduler``) with plain-call
tests; state lives in tables with no I/O (``object_store``, ``control_store``,
``membership``, ``worker_pool``).
"""
