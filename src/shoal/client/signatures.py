"""dask's ``Client`` keywords that shoal accepts: what each means here, in one place.

Every keyword of dask's ``submit``, ``map``, ``compute``, ``persist``, ``gather``,
``scatter``, ``cancel``, ``restart``, ``retire_workers`` and ``run`` is a named parameter
of shoal's method, so none can fall into ``**kwargs`` and reach the user's function.
Each is honoured, or documented here as a no-op with its reason, or refused clearly:

* ``fifo_timeout`` (submit, map, compute, persist): no effect. dask uses it to let tasks
  submitted close together share a priority generation; shoal orders tasks by
  ``priority``, then submission order, with no time window.
* ``batch_size`` (map): no effect; shoal sends every task of a ``map`` in one message.
* ``direct`` (gather, scatter): no effect; data always goes straight between client and
  workers.
* ``reason``/``msg`` (cancel): accepted; the futures say "cancelled by the client".
* ``traverse`` (compute): collections are found at the top level and in lists/tuples.
* ``actor``/``actors``: actors are another module's work; here they are refused.
* ``close_workers=False`` and the other options of dask's ``retire_workers`` (``names``,
  ``n``, ...): refused, naming what shoal retires by (addresses).

Rules of this file:

* No IO. Refusals raise ``TypeError``/``NotImplementedError`` naming the keyword.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from shoal.sizes import parse_timedelta

if TYPE_CHECKING:
    from shoal.client.client import Client

#: dask's default, kept so that ``inspect.signature`` shows the same default
FIFO_TIMEOUT = "100 ms"


def refuse_retire_options(workers: Any, close_workers: bool, extra: Mapping[str, Any]) -> None:
    if workers is None:
        raise TypeError("retire_workers needs workers=[addresses]: shoal retires by address")
    if not close_workers:
        raise NotImplementedError(
            "retire_workers(close_workers=False): a retired shoal worker always closes"
        )
    raise TypeError(
        f"retire_workers got options shoal does not offer: {sorted(extra)}; "
        "pass workers=[addresses] (and timeout=)"
    )


def seconds(value: Any, default: float) -> float:
    """A timeout given as seconds or a dask time string ("30s"); ``default`` if unset."""
    parsed = seconds_or_none(value)
    return default if parsed is None else parsed


def seconds_or_none(value: Any) -> float | None:
    if value is None or type(value).__name__ == "NoDefault":
        return None
    if isinstance(value, int | float):
        return float(value)
    return float(parse_timedelta(value))


def compute_result(client: Client, result: Any, sync: bool) -> Any:
    """What ``compute`` returns: the futures, or (``sync=True``) their values. On an
    asynchronous client an awaitable that gives the values, as dask's futures do."""
    if not client.asynchronous:
        return client.gather(result) if sync else result

    async def values() -> Any:
        futures = await result
        return await client.gather(futures)

    return values()


def collection_options(
    workers: str | Iterable[str] | None,
    allow_other_workers: bool | None,
    resources: Mapping[str, float] | None,
    retries: int | None,
    priority: float,
    actors: object,
) -> dict[str, Any]:
    """The task options ``compute`` and ``persist`` pass on (``actors`` is refused)."""
    refuse_collection_actors(actors)
    return {
        "workers": workers,
        "allow_other_workers": allow_other_workers,
        "resources": resources,
        "retries": retries,
        "priority": priority,
    }


def refuse_collection_actors(actors: object) -> None:
    """``compute``/``persist(actors=...)``: shoal makes actors with ``submit``/``map`` only."""
    if actors:
        raise NotImplementedError(
            "compute(actors=...)/persist(actors=...): tasks of a dask collection cannot be "
            "actors in shoal; create actors with client.submit(Cls, actor=True)"
        )
