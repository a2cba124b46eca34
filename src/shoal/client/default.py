"""The process's default client: what ``Future(key)``, unpickled futures and ``wait`` use.

A client made with ``set_as_default=True`` (the default) becomes the default client and
stops being it when it closes. The default client is also dask's scheduler
(``shoal.client.dask_config``). Code running inside a task may set the worker's own client
as the default with ``set_default_client`` (the worker does so for ``get_client()``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from shoal.client.dask_config import use_as_dask_scheduler

if TYPE_CHECKING:
    from shoal.client.client import Client

_lock = threading.Lock()
#: the clients made default, most recent last (a closed default falls back to the previous)
_defaults: list[Client] = []
#: ``.client``: where futures unpickled on this thread bind (``rebinding_to``)
_rebinding = threading.local()


def set_default_client(client: Client | None) -> None:
    """Make ``client`` the default client of this process (``None``: no default)."""
    with _lock:
        if client is None:
            _defaults.clear()
        else:
            if client in _defaults:
                _defaults.remove(client)
            _defaults.append(client)
        current = _defaults[-1] if _defaults else None
    use_as_dask_scheduler(current)


def unset_default_client(client: Client) -> None:
    """``client`` closed: it is no longer a default."""
    with _lock:
        if client not in _defaults:
            return
        _defaults.remove(client)
        current = _defaults[-1] if _defaults else None
    use_as_dask_scheduler(current)


def default_client() -> Client:
    """The default client; ``ValueError`` if there is none."""
    with _lock:
        if _defaults:
            return _defaults[-1]
    raise ValueError(
        "no shoal client: create one with shoal.Client(...) (or pass client= explicitly)"
    )


def get_client() -> Client:
    """The client to use here: the one futures are being bound to (``rebinding_to``) on
    this thread, else the default client of this process."""
    client: Client | None = getattr(_rebinding, "client", None)
    return client if client is not None else default_client()


@contextmanager
def rebinding_to(client: Client) -> Iterator[None]:
    """Within the block, futures unpickled on this thread belong to ``client``."""
    previous = getattr(_rebinding, "client", None)
    _rebinding.client = client
    try:
        yield
    finally:
        _rebinding.client = previous
