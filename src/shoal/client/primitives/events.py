"""``Event``: a cluster-wide flag held by the scheduler; ``wait`` blocks there."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shoal.client.primitives import calls
from shoal.protocol.rpc_scheduler import SchedulerEventClear, SchedulerEventSet, SchedulerEventWait

if TYPE_CHECKING:
    from shoal.client.client import Client


class Event:
    """A flag named ``name``: ``set()``, ``clear()``, ``is_set()``, and ``wait(timeout)``
    (True once set, False if ``timeout`` passed first)."""

    def __init__(self, name: str | None = None, client: Client | None = None) -> None:
        self.name = name or calls.new_name("event")
        self._client = client

    @property
    def client(self) -> Client:
        return calls.resolve_client(self._client)

    def set(self) -> Any:
        client = self.client
        return calls.run(client, calls.call(client, SchedulerEventSet(name=self.name)))

    def clear(self) -> Any:
        client = self.client
        return calls.run(client, calls.call(client, SchedulerEventClear(name=self.name)))

    def is_set(self) -> Any:
        client = self.client
        return calls.run(client, self._wait(client, 0))

    def wait(self, timeout: float | None = None) -> Any:
        client = self.client
        return calls.run(client, self._wait(client, timeout))

    async def _wait(self, client: Client, timeout: float | None) -> bool:
        async def attempt(wait: float) -> bool | None:
            is_set = await calls.call(
                client, SchedulerEventWait(name=self.name, timeout=wait), wait
            )
            return True if is_set else None

        return await calls.until(attempt, timeout) is not None

    def __reduce__(self) -> tuple[Any, ...]:
        return (Event, (self.name,))

    def __repr__(self) -> str:
        return f"<Event: {self.name!r}>"
