"""Coordination primitives held by the scheduler, as dask.distributed has them.

* ``locks``: ``Semaphore`` (leases), ``Lock`` (one lease), ``MultiLock``
* ``events``: ``Event``
* ``queues``: ``Queue`` and ``Variable``
* ``datasets``: published datasets (``Client.publish_dataset`` ...) and ``fire_and_forget``
* ``calls``: finding the client to use, and calls to the scheduler that wait

Each works from the client process and from inside tasks (through the worker's client),
synchronously, or returning awaitables when its client is asynchronous.
"""

from shoal.client.primitives.datasets import fire_and_forget
from shoal.client.primitives.events import Event
from shoal.client.primitives.locks import Lock, MultiLock, Semaphore
from shoal.client.primitives.queues import Queue, Variable

__all__ = ["Event", "Lock", "MultiLock", "Queue", "Semaphore", "Variable", "fire_and_forget"]
