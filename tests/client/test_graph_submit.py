"""Preparing a dask graph leaves the process's garbage collection alone."""

from __future__ import annotations

import gc
from typing import Any

from shoal.client import graph_submit
from shoal.client.transport import CommTransport
from shoal.comm import Security
from shoal.config import CommConfig
from shoal.graph.dask import materialize

seen: list[bool] = []


class Probe:
    """Records, when pickled, whether garbage collection is on."""

    def __reduce__(self) -> tuple[Any, ...]:
        seen.append(gc.isenabled())
        return (Probe, ())


def test_prepare_keeps_garbage_collection_on() -> None:
    graph = materialize({"a": (id, Probe()), "b": (id, "a")})
    seen.clear()
    prepared = graph_submit.prepare(graph, ["b"], {})
    assert seen and all(seen)
    assert [row[0] for batch in prepared.batches for row in batch] == ["a", "b"]


def test_pacing_asks_the_transport_its_interval() -> None:
    transport = CommTransport(
        "tcp://127.0.0.1:9", Security(token=None), "c", CommConfig(batch_interval=0.25)
    )
    assert transport.coalescing_interval() == 0.25


def test_futures_pickled_are_spotted_by_the_reduce_hook_not_by_bytes() -> None:
    from shoal.client.future import futures_pickled
    from shoal.protocol.serialize import serialize

    with futures_pickled() as found:
        serialize(("_rebind", b"_rebind"))  # the old byte search took this for a future
    assert found == []
