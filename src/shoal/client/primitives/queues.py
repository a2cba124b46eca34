"""``Queue`` and ``Variable``: values held by the scheduler as opaque bytes.

Rules of this file:

* A value is pickled here and unpickled by whoever reads it; the scheduler keeps bytes.
* Futures inside a value keep their keys alive while the scheduler holds the value; a
  future read back belongs to the reading client.
* A timeout raises ``ShoalTimeoutError`` (a builtin ``TimeoutError``), as dask raises
  ``TimeoutError``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shoal.client.primitives import calls
from shoal.errors import ShoalTimeoutError
from shoal.protocol.rpc_scheduler import (
    SchedulerQueueCreate,
    SchedulerQueueGet,
    SchedulerQueuePut,
    SchedulerQueueQsize,
    SchedulerVariableDelete,
    SchedulerVariableGet,
    SchedulerVariableSet,
)

if TYPE_CHECKING:
    from shoal.client.client import Client


class Queue:
    """A first-in first-out queue named ``name`` (``maxsize`` 0: unbounded).

    ``put(value, timeout=None)`` waits for room; ``get(timeout=None, batch=False)`` waits
    for an item (``batch=True``: every item there is now, maybe none; ``batch=n``: the
    next ``n``); ``qsize()``.
    """

    def __init__(
        self, name: str | None = None, client: Client | None = None, maxsize: int = 0
    ) -> None:
        if int(maxsize) < 0:
            raise ValueError(f"maxsize must be >= 0, not {maxsize}")
        self.name = name or calls.new_name("queue")
        self.maxsize = int(maxsize)
        self._client = client
        self._created = False

    @property
    def client(self) -> Client:
        return calls.resolve_client(self._client)

    async def _create(self, client: Client) -> None:
        if not self._created:
            await calls.call(client, SchedulerQueueCreate(name=self.name, maxsize=self.maxsize))
            self._created = True

    def put(self, value: Any, timeout: float | None = None, **_dask_only: Any) -> Any:
        client = self.client
        packed, keys = calls.pack_value(value)
        return calls.run(client, self._put(client, packed, keys, timeout, value))

    async def _put(
        self, client: Client, packed: Any, keys: list[Any], timeout: float | None, keep: Any
    ) -> None:
        """``keep``: the value itself, so its futures live until the scheduler holds them."""
        await self._create(client)

        async def attempt(wait: float) -> bool | None:
            put = SchedulerQueuePut(name=self.name, value=packed, keys=keys, timeout=wait)
            done = await calls.call(client, put, wait)
            return True if done else None

        done = await calls.until(attempt, timeout)
        del keep
        if done is None:
            raise ShoalTimeoutError(f"queue {self.name!r} stayed full for {timeout} s")

    def get(
        self, timeout: float | None = None, batch: bool | int = False, **_dask_only: Any
    ) -> Any:
        client = self.client
        return calls.run(client, self._get(client, timeout, batch))

    async def _get(self, client: Client, timeout: float | None, batch: bool | int) -> Any:
        await self._create(client)
        n = None if batch is False else (0 if batch is True else int(batch))

        async def attempt(wait: float) -> list[Any] | None:
            get = SchedulerQueueGet(name=self.name, requester=client.id, timeout=wait, batch=n)
            return await calls.call(client, get, wait)

        items = await calls.until(attempt, timeout)
        if items is None:
            raise ShoalTimeoutError(f"queue {self.name!r} had no item within {timeout} s")
        values = calls.unpack_claimed(client, items)
        return values if n is not None else values[0]

    def qsize(self) -> Any:
        client = self.client

        async def qsize() -> int:
            await self._create(client)
            return await calls.call(client, SchedulerQueueQsize(name=self.name))

        return calls.run(client, qsize())

    def __reduce__(self) -> tuple[Any, ...]:
        return (Queue, (self.name, None, self.maxsize))

    def __repr__(self) -> str:
        return f"<Queue: {self.name!r} maxsize={self.maxsize}>"


class Variable:
    """One value named ``name``: ``set(value)``, ``get(timeout=None)`` (waits until set),
    ``delete()``."""

    def __init__(self, name: str | None = None, client: Client | None = None) -> None:
        self.name = name or calls.new_name("variable")
        self._client = client

    @property
    def client(self) -> Client:
        return calls.resolve_client(self._client)

    def set(self, value: Any, **_dask_only: Any) -> Any:
        client = self.client
        packed, keys = calls.pack_value(value)
        return calls.run(
            client,
            calls.call_keeping(
                client, SchedulerVariableSet(name=self.name, value=packed, keys=keys), value
            ),
        )

    def get(self, timeout: float | None = None, **_dask_only: Any) -> Any:
        client = self.client
        return calls.run(client, self._get(client, timeout))

    async def _get(self, client: Client, timeout: float | None) -> Any:
        async def attempt(wait: float) -> list[Any] | None:
            get = SchedulerVariableGet(name=self.name, requester=client.id, timeout=wait)
            return await calls.call(client, get, wait)

        item = await calls.until(attempt, timeout)
        if item is None:
            raise ShoalTimeoutError(f"variable {self.name!r} was not set within {timeout} s")
        return calls.unpack_claimed(client, [item])[0]

    def delete(self) -> Any:
        client = self.client
        return calls.run(client, calls.call(client, SchedulerVariableDelete(name=self.name)))

    def __reduce__(self) -> tuple[Any, ...]:
        return (Variable, (self.name,))

    def __repr__(self) -> str:
        return f"<Variable: {self.name!r}>"
