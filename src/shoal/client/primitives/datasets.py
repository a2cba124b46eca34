"""Published datasets (named values the scheduler keeps for any client) and
``fire_and_forget``.

Rules of this file:

* A dataset is pickled here and kept as bytes with the keys of its futures, which stay
  alive until it is unpublished; ``get_dataset`` binds them to the reading client.
* ``fire_and_forget`` hands keys to a pseudo-client on the scheduler that wants them
  until they finish, whatever the submitting client does.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

from shoal.client.modes import M, Maybe, Moded, by_mode
from shoal.client.primitives import calls
from shoal.protocol.rpc_scheduler import (
    SchedulerFireAndForget,
    SchedulerGetDataset,
    SchedulerListDatasets,
    SchedulerPublishDataset,
    SchedulerUnpublishDataset,
)

if TYPE_CHECKING:
    from shoal.client.client import Client

_NO_DEFAULT = object()
#: fire_and_forget calls of asynchronous clients still in flight (kept from the collector)
_pending: set[Any] = set()


class DatasetsMixin(Moded[M]):
    """``Client`` methods for published datasets."""

    @by_mode
    def publish_dataset(
        self, /, *args: Any, name: str | None = None, override: bool = False, **kwargs: Any
    ) -> Maybe[None]:
        """Publish values (often persisted collections) under names, for any client:
        ``publish_dataset(x=df)`` or ``publish_dataset(df, name="x")``. A name already
        published raises ``KeyError`` unless ``override=True``."""
        client: Client = self  # type: ignore[assignment]
        named = dict(kwargs)
        if args:
            if name is None or len(args) != 1:
                raise ValueError("publish_dataset(value, name=...) takes one value and a name")
            named[name] = args[0]
        packed = {n: list(calls.pack_value(value)) for n, value in named.items()}
        return calls.run(
            client,
            calls.call_keeping(
                client, SchedulerPublishDataset(datasets=packed, override=override), named
            ),
        )

    @by_mode
    def get_dataset(
        self, /, name: str, default: Any = _NO_DEFAULT, **_dask_only: Any
    ) -> Maybe[Any]:
        """The dataset published as ``name``; ``default`` (or ``KeyError``) if there is none."""
        client: Client = self  # type: ignore[assignment]
        return calls.run(client, _get_dataset(client, name, default))

    @by_mode
    def list_datasets(self, /, **_dask_only: Any) -> Maybe[list[str]]:
        """The names of the published datasets."""
        client: Client = self  # type: ignore[assignment]

        async def names() -> list[str]:
            return list(await calls.call(client, SchedulerListDatasets()))

        return calls.run(client, names())

    @by_mode
    def unpublish_dataset(self, /, name: str, **_dask_only: Any) -> Maybe[None]:
        """Remove the dataset ``name`` (its futures may then be released); ``KeyError`` if
        there is none."""
        client: Client = self  # type: ignore[assignment]
        return calls.run(client, calls.call(client, SchedulerUnpublishDataset(name=name)))

    @property
    def datasets(self) -> Datasets:
        """The published datasets as a mapping: ``client.datasets["x"] = value``."""
        return Datasets(self)  # type: ignore[arg-type]


async def _get_dataset(client: Client, name: str, default: Any) -> Any:
    item = await calls.call(client, SchedulerGetDataset(name=name, requester=client.id))
    if item is None:
        if default is _NO_DEFAULT:
            raise KeyError(f"no dataset named {name!r} is published")
        return default
    return calls.unpack_claimed(client, [item])[0]


class Datasets(MutableMapping[str, Any]):
    """``client.datasets``: the published datasets (synchronous clients only)."""

    def __init__(self, client: Client) -> None:
        if client.asynchronous:
            raise TypeError("client.datasets needs a synchronous client; await the methods")
        self._client = client

    def __getitem__(self, name: str) -> Any:
        return self._client.get_dataset(name)

    def __setitem__(self, name: str, value: Any) -> None:
        self._client.publish_dataset(value, name=name, override=True)

    def __delitem__(self, name: str) -> None:
        self._client.unpublish_dataset(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._client.list_datasets())

    def __len__(self) -> int:
        return len(self._client.list_datasets())

    def __contains__(self, name: object) -> bool:
        return name in self._client.list_datasets()


def fire_and_forget(obj: Any) -> None:
    """Run the futures in ``obj`` to completion even if every client releases them or
    disconnects (their side effects happen; their results are then dropped)."""
    futures = calls.dask_futures_of(obj)
    by_client: dict[int, tuple[Client, list[Any]]] = {}
    for future in futures:
        by_client.setdefault(id(future.client), (future.client, []))[1].append(future.key)
    for client, keys in by_client.values():
        coro = calls.call_keeping(client, SchedulerFireAndForget(keys=keys), futures)
        if client.asynchronous:
            import asyncio

            task = asyncio.ensure_future(coro)  # dask's fire_and_forget returns nothing
            _pending.add(task)
            task.add_done_callback(_pending.discard)
        else:
            client._run(coro)
