"""Shared vocabulary: the aliases every module uses for ids, addresses and states."""

from __future__ import annotations

from typing import Literal

#: 16 bytes: a 12-byte task id followed by a 4-byte return index. Stable ids make
#: lineage possible: the id of a task's i-th return is known before it runs.
ObjectID = bytes
TaskID = bytes
ActorID = bytes
#: Workers, drivers and node managers are all "workers" to the refcount table.
WorkerID = bytes
NodeID = bytes
JobID = bytes
FunctionID = bytes

#: A node's worker pool: (job id, process env key); "" is the job's plain env.
PoolKey = tuple[JobID, str]

#: "unix:/path/to/socket" or "tcp:host:port".
Address = str

#: The process that owns an object (made its ref), as refs carry it to borrowers: its
#: node's TCP address, its worker id and its pid. Borrowers ask it to rebuild a lost object.
Owner = tuple[Address, WorkerID, int]

#: Resource name -> amount. Amounts are floats so fractional GPUs work.
ResourceShape = dict[str, float]

#: An actor's life, as the control store records it and ActorInfo reports it.
ActorState = Literal["pending", "alive", "restarting", "dead"]
#: A placement group's life on the head: planned and reserved two-phase.
PlacementGroupState = Literal["PENDING", "RESERVING", "CREATED", "REMOVED"]
#: A submitted job's life (``ember job``): PENDING -> RUNNING -> SUCCEEDED | FAILED | STOPPED.
JobStatus = Literal["PENDING", "RUNNING", "STOPPED", "SUCCEEDED", "FAILED"]
#: How a generator task hands back its values: "streaming" (an ObjectRefGenerator, each
#: value as it is yielded) or "dynamic" (one ref to a DynamicObjectRefGenerator at the end).
GeneratorMode = Literal["streaming", "dynamic"]
