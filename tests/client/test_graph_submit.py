"""Preparing a dask graph pauses the process's automatic garbage collection, and only then."""

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


def test_prepare_pickles_with_collection_paused_and_switches_it_back_on() -> None:
    graph = materialize({"a": (id, Probe()), "b": (id, "a")})
    seen.clear()
    was = gc.isenabled()
    gc.enable()
    try:
        prepared = graph_submit.prepare(graph, ["b"], {})
        assert seen == [False]  # no full pass over the graph while it is pickled
        assert gc.isenabled()
    finally:
        if not was:
            gc.disable()
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


def test_a_graph_in_many_messages_is_made_and_packed_one_message_per_loop_turn() -> None:
    import asyncio
    from collections.abc import Iterator

    made: list[int] = []
    sent: list[tuple[str, bool, int]] = []
    turns = [0]

    class Core:
        def send(self, msg: Any, apart: bool = False) -> None:
            sent.append((msg, apart, turns[0]))

    def messages() -> Iterator[str]:
        for name in ("m1", "m2", "m3"):
            made.append(turns[0])
            yield name

    async def count_turns() -> None:
        for _ in range(100):
            turns[0] += 1
            await asyncio.sleep(0)

    async def main() -> None:
        counter = asyncio.create_task(count_turns())
        await asyncio.sleep(0)
        await graph_submit._send_paced(Core(), messages(), 3)  # type: ignore[arg-type]
        counter.cancel()

    asyncio.run(main())
    assert [msg for msg, _, _ in sent] == ["m1", "m2", "m3"]
    assert all(apart for _, apart, _ in sent)
    ticks = [tick for _, _, tick in sent]
    assert ticks[0] < ticks[1] < ticks[2]  # the loop ran other work between messages
    assert made == ticks  # each message is made in the turn it is sent, not all up front
