"""The client (owner) side: every driver and every worker runs one ``Runtime``.

In: calls from the public API (``f.remote(x)``, ``actor.m.remote()``, ``put``/``get``/``wait``).
Out: lease requests and object bookkeeping to the node manager over the node link, and task
pushes straight to leased workers over a ``WorkerChannel``; results come back as
``TaskReply`` messages that the submitters record in the owner's object table
(``local_objects``), which wakes whoever waits in ``get``.

``context`` owns "the current runtime" and the task running now; ``submitter`` (normal
tasks) and ``actor_submitter`` (actor calls) queue, resolve arguments (``arguments``) and
push; ``function_export`` ships functions by name or by value; ``options`` and
``scheduling`` turn ``.options(...)`` into a lease request; ``rebuilds`` brings back
objects lost with their node (re-running what this process owns, asking owners for the rest).
"""
