"""The client side of shoal: ``Client``, ``Future``, ``as_completed`` and ``wait``.

Modules, from the user's end inward:

* ``client``: the ``Client`` facade (synchronous on a shared loop thread, or asynchronous)
* ``future``: ``Future``, reference-counted handles on remote results
* ``as_completed``: ``as_completed`` and ``wait``
* ``default``: the process's default client
* ``core``: the asynchronous core: key table, scheduler stream, messages
* ``data``: gather, scatter and ``run``, straight between the client and workers
* ``tasks``, ``scatter_input``: turning user calls and data into messages (nested
  containers are walked by ``shoal.graph.spec``)
* ``modes``: the types that make a method block (``Client[Sync]``) or return an
  awaitable (``Client[Async]``)
* ``future_state``, ``refs``: per-key state and reference counts
* ``transport``, ``connect``: the network, and finding the scheduler and its token
"""

from shoal.client.as_completed import ALL_COMPLETED, FIRST_COMPLETED, as_completed, wait
from shoal.client.client import Client
from shoal.client.default import default_client, get_client, set_default_client
from shoal.client.future import Future

__all__ = [
    "ALL_COMPLETED",
    "FIRST_COMPLETED",
    "Client",
    "Future",
    "as_completed",
    "default_client",
    "get_client",
    "set_default_client",
    "wait",
]
