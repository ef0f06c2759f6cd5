"""The worker process: runs the tasks and actor calls that submitters push to it.

In: ``PushTask`` frames on the worker's own socket, from any submitter holding its lease.
Out: ``TaskReply`` frames (values inline or as sealed shared-memory segments), and, through
the worker's own ``Runtime`` (``ember._client``), nested submissions, puts and gets.

``fork_server`` is started once per node with the worker's imports done; the node manager
asks it for workers, and each forked child runs ``worker.main``.
"""
