"""``Semaphore``, ``Lock`` and ``MultiLock``: leases held on the scheduler.

Rules of this file:

* Every acquire takes a fresh lease id; the holder's client refreshes its leases every
  third of the lease timeout, so a holder that dies (or whose client goes away) loses
  them: at once when its client's connection closes, else after ``lease_timeout``.
* ``Lock(name)`` is ``Semaphore(max_leases=1)`` under that name, as in dask.
* Sync and async use as dask's: blocking calls return values on a synchronous client,
  awaitables on an asynchronous one; ``with`` and ``async with`` both work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from shoal.client.primitives import calls
from shoal.protocol.rpc_scheduler import (
    SchedulerSemaphoreAcquire,
    SchedulerSemaphoreCount,
    SchedulerSemaphoreRefresh,
    SchedulerSemaphoreRelease,
)

if TYPE_CHECKING:
    from shoal.client.client import Client

logger = logging.getLogger("shoal.client")

#: seconds a lease lives without a refresh (dask: distributed.scheduler.locks.lease-timeout)
DEFAULT_LEASE_TIMEOUT = 30.0


class _Refresher:
    """Refreshes the leases held through one client, on that client's loop."""

    _by_client: dict[str, _Refresher] = {}
    _lock = threading.Lock()

    def __init__(self, client: Client) -> None:
        self.client = client
        #: (name, lease id) -> lease timeout
        self.leases: dict[tuple[str, str], float] = {}
        self.task: asyncio.Task[None] | None = None

    @classmethod
    def of(cls, client: Client) -> _Refresher:
        with cls._lock:
            refresher = cls._by_client.get(client.id)
            if refresher is None:
                refresher = cls._by_client[client.id] = _Refresher(client)
            return refresher

    def add(self, name: str, lease_id: str, lease_timeout: float) -> None:
        """On the client's loop: keep this lease fresh."""
        self.leases[(name, lease_id)] = lease_timeout
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())

    def discard(self, name: str, lease_id: str) -> None:
        self.leases.pop((name, lease_id), None)

    async def _run(self) -> None:
        while self.leases and self.client.status == "running":
            await asyncio.sleep(min(self.leases.values()) / 3)
            held = [list(pair) for pair in self.leases]
            if not held:
                break
            try:
                lost = await calls.call(self.client, SchedulerSemaphoreRefresh(leases=held))
            except Exception as exc:  # the client is closing, or the scheduler is away
                logger.info("could not refresh leases of %s: %s", self.client.id, exc)
                continue
            for name, lease_id in lost:
                logger.warning("lease %s of %r had expired; it is no longer held", lease_id, name)
                self.discard(name, lease_id)


class Semaphore:
    """At most ``max_leases`` holders at once of ``name``, across the cluster.

    ``acquire(timeout=None)`` waits for a lease (True) or until ``timeout`` (False);
    ``release()`` gives one back. A holder that dies releases its leases: when its client
    goes away, or ``lease_timeout`` seconds after it stopped refreshing them.
    """

    def __init__(
        self,
        max_leases: int = 1,
        name: str | None = None,
        client: Client | None = None,
        lease_timeout: float = DEFAULT_LEASE_TIMEOUT,
        register: bool = True,
        **_dask_only: Any,
    ) -> None:
        if int(max_leases) < 1:
            raise ValueError(f"max_leases must be >= 1, not {max_leases}")
        self.max_leases = int(max_leases)
        self.name = name or calls.new_name("semaphore")
        self.lease_timeout = float(lease_timeout)
        self._client = client
        #: lease ids this object holds, most recent last
        self._leases: list[str] = []

    @property
    def client(self) -> Client:
        return calls.resolve_client(self._client)

    def acquire(self, timeout: float | None = None) -> Any:
        """Wait for a lease; True once held, False if ``timeout`` passed first."""
        client = self.client
        return calls.run(client, self._acquire(client, timeout))

    async def _acquire(self, client: Client, timeout: float | None) -> bool:
        lease_id = calls.new_name("lease")

        async def attempt(wait: float) -> bool | None:
            acquire = SchedulerSemaphoreAcquire(
                name=self.name,
                lease_id=lease_id,
                owner=client.id,
                max_leases=self.max_leases,
                lease_timeout=self.lease_timeout,
                timeout=wait,
            )
            granted = await calls.call(client, acquire, wait)
            return True if granted else None

        if await calls.until(attempt, timeout) is None:
            return False
        self._leases.append(lease_id)
        _Refresher.of(client).add(self.name, lease_id, self.lease_timeout)
        return True

    def release(self) -> Any:
        """Give back the newest lease this object holds; ``RuntimeError`` if none."""
        if not self._leases:
            raise RuntimeError(f"semaphore {self.name!r} released too often (no lease held)")
        client = self.client
        return calls.run(client, self._release(client, self._leases.pop()))

    async def _release(self, client: Client, lease_id: str) -> bool:
        _Refresher.of(client).discard(self.name, lease_id)
        released = await calls.call(
            client, SchedulerSemaphoreRelease(name=self.name, lease_id=lease_id)
        )
        if not released:
            logger.warning("lease %s of %r had expired before its release", lease_id, self.name)
        return bool(released)

    def get_value(self) -> Any:
        """How many leases of ``name`` are held now (by anyone)."""
        client = self.client
        return calls.run(client, calls.call(client, SchedulerSemaphoreCount(name=self.name)))

    def __enter__(self) -> Semaphore:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    async def __aenter__(self) -> Semaphore:
        await self.acquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.release()

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self)._rebuild, (self.max_leases, self.name, self.lease_timeout))

    @classmethod
    def _rebuild(cls, max_leases: int, name: str, lease_timeout: float) -> Semaphore:
        return cls(max_leases, name, lease_timeout=lease_timeout)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.name!r}, max_leases={self.max_leases}>"


class Lock(Semaphore):
    """A cluster-wide lock named ``name``: ``acquire(blocking=True, timeout=None)``,
    ``release()``, ``locked()``, ``with lock:``. A dead holder's lease runs out."""

    def __init__(
        self,
        name: str | None = None,
        client: Client | None = None,
        lease_timeout: float = DEFAULT_LEASE_TIMEOUT,
        **_dask_only: Any,
    ) -> None:
        super().__init__(1, name or calls.new_name("lock"), client, lease_timeout)

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> Any:  # type: ignore[override]
        """True once held; False if ``timeout`` passed (or not free, with ``blocking=False``)."""
        if not blocking:
            if timeout is not None:
                raise ValueError("can't specify a timeout for a non-blocking call")
            timeout = 0
        return super().acquire(timeout)

    def release(self) -> Any:
        if not self._leases:
            raise RuntimeError(f"lock {self.name!r} released without being acquired")
        return super().release()

    def locked(self) -> Any:
        """Whether anyone holds the lock now."""
        client = self.client

        async def count() -> bool:
            return bool(await calls.call(client, SchedulerSemaphoreCount(name=self.name)))

        return calls.run(client, count())

    @classmethod
    def _rebuild(cls, max_leases: int, name: str, lease_timeout: float) -> Lock:
        return cls(name, lease_timeout=lease_timeout)


class MultiLock:
    """Several locks taken together: ``acquire`` gets all of ``names`` or none. They are
    taken in one sorted order (two MultiLocks never deadlock); if ``timeout`` passes,
    those taken are given back."""

    def __init__(
        self, names: Iterable[str] = (), client: Client | None = None, **kwargs: Any
    ) -> None:
        self.names = sorted(set(names))  # one order everywhere: no deadlock between two
        self.locks = [Lock(name, client, **kwargs) for name in self.names]

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> Any:
        """True once every lock is held; False if ``timeout`` passed first."""
        client = calls.resolve_client(self.locks[0]._client if self.locks else None)
        if not blocking:
            timeout = 0
        return calls.run(client, self._acquire(client, timeout))

    async def _acquire(self, client: Client, timeout: float | None) -> bool:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        taken: list[Lock] = []
        try:
            for lock in self.locks:
                remaining = None if deadline is None else max(0.0, deadline - loop.time())
                if not await lock._acquire(client, remaining):
                    return False
                taken.append(lock)
            taken = []  # all held: keep them
            return True
        finally:
            for lock in reversed(taken):
                with contextlib.suppress(Exception):
                    await lock._release(client, lock._leases.pop())

    def release(self) -> Any:
        """Release every lock."""
        client = calls.resolve_client(self.locks[0]._client if self.locks else None)

        async def release_all() -> None:
            for lock in reversed(self.locks):
                if lock._leases:
                    await lock._release(client, lock._leases.pop())

        return calls.run(client, release_all())

    def __enter__(self) -> MultiLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    async def __aenter__(self) -> MultiLock:
        await self.acquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.release()
