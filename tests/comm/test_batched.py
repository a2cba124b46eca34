"""BatchedStream: many sends become one frame set; order kept; close flushes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import pytest

from shoal.comm import BatchedStream, Comm, Security
from shoal.errors import CommClosedError, CommError
from tests.comm import helpers
from tests.conftest import run

SECURITY = Security.local()


def comm_pair(address: str) -> contextlib.AbstractAsyncContextManager[tuple[Comm, Comm, Any]]:
    return helpers.comm_pair(address, server_security=SECURITY)


def test_sends_in_one_loop_turn_arrive_as_one_batch(address: str) -> None:
    async def main() -> None:
        async with comm_pair(address) as (client, server, _):
            stream = BatchedStream(client)
            for i in range(100):
                stream.send({"op": "x", "i": i})
            stream.send({"op": "y"}, {"op": "z"})
            batch = await server.read()
            assert isinstance(batch, tuple)
            assert [m.get("i") for m in batch[:100]] == list(range(100))
            assert batch[100:] == ({"op": "y"}, {"op": "z"})
            await stream.close()

    run(main())


def test_an_idle_stream_sends_at_once_even_within_the_interval(address: str) -> None:
    async def main() -> None:
        async with comm_pair(address) as (client, server, _):
            stream = BatchedStream(client, interval=60)
            for msg in ("a", "b", "c"):  # each a round trip's hop: nothing waits a minute
                stream.send(msg)
                assert await asyncio.wait_for(server.read(), 5) == (msg,)
            await stream.close()

    run(main())


def test_a_send_on_an_idle_stream_is_with_the_connection_when_it_returns(address: str) -> None:
    async def main() -> None:
        async with comm_pair(address) as (client, server, _):
            stream = BatchedStream(client, interval=0.001)
            await asyncio.sleep(0.01)  # the flusher waits for a send; the interval passed
            stream.send("a")
            stream.abort()  # no loop turn since send: only what send wrote itself arrives
            assert await asyncio.wait_for(server.read(), 5) == ("a",)
            with pytest.raises(CommError):
                await server.read()

    run(main())


def test_after_an_idle_send_the_rest_of_the_turn_arrives_as_one_batch(address: str) -> None:
    async def main() -> None:
        async with comm_pair(address) as (client, server, _):
            stream = BatchedStream(client, interval=0.001)
            await asyncio.sleep(0.01)
            for i in range(100):
                stream.send(i)
            assert await server.read() == (0,)
            assert await server.read() == tuple(range(1, 100))
            await stream.close()

    run(main())


async def keep_loop_busy(turns: int) -> None:
    for _ in range(turns):
        await asyncio.sleep(0)


def test_messages_within_the_interval_are_coalesced_while_the_loop_is_busy(
    address: str,
) -> None:
    async def main() -> None:
        async with comm_pair(address) as (client, server, _):
            stream = BatchedStream(client, interval=60)
            stream.send("a")  # after an idle spell: goes out on the next loop turn
            assert await server.read() == ("a",)
            busy = asyncio.ensure_future(keep_loop_busy(1000))
            stream.send("b")
            await asyncio.sleep(0)
            stream.send("c")
            await asyncio.sleep(0)
            stream.send("d")
            await busy
            # the loop was busy when the flusher woke: it waits out the interval, so only
            # close() can flush them, as one batch
            await stream.close()
            assert await server.read() == ("b", "c", "d")
            with pytest.raises(CommClosedError):
                await server.read()

    run(main())


def test_order_is_kept_across_many_batches(address: str) -> None:
    async def main() -> None:
        async with comm_pair(address) as (client, server, _):
            stream = BatchedStream(client, interval=0.001)

            async def produce() -> None:
                for i in range(2000):
                    stream.send(i)
                    if i % 7 == 0:
                        await asyncio.sleep(0)

            producer = asyncio.ensure_future(produce())
            got: list[int] = []
            batches = 0
            while len(got) < 2000:
                got.extend(await server.read())
                batches += 1
            await producer
            assert got == list(range(2000))
            assert 1 < batches < 2000
            await stream.close()

    run(main())


def test_close_flushes_then_closes_and_send_refuses(address: str) -> None:
    async def main() -> None:
        async with comm_pair(address) as (client, server, _):
            stream = BatchedStream(client)
            stream.send(1, 2, 3)
            await stream.close()
            assert stream.closed and client.closed
            assert await server.read() == (1, 2, 3)
            with pytest.raises(CommClosedError):
                await server.read()
            with pytest.raises(CommClosedError):
                stream.send(4)
            await stream.close()  # idempotent

    run(main())


def test_a_message_that_cannot_be_encoded_is_dropped_alone(
    address: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        async with comm_pair(address) as (client, server, _):
            stream = BatchedStream(client)
            stream.send({"op": "ok", "i": 1}, {"op": "bad", "x": object()}, {"op": "ok", "i": 2})
            assert await server.read() == ({"op": "ok", "i": 1}, {"op": "ok", "i": 2})
            stream.send("still open")
            assert await server.read() == ("still open",)
            await stream.close()

    with caplog.at_level(logging.ERROR, logger="shoal.comm"):
        run(main())
    assert any("cannot be sent" in r.getMessage() for r in caplog.records)


def test_a_message_that_cannot_be_encoded_goes_to_its_handler(address: str) -> None:
    unsendable: list[tuple[object, Exception]] = []

    async def main() -> None:
        async with comm_pair(address) as (client, server, _):
            stream = BatchedStream(
                client, on_unencodable=lambda msg, exc: unsendable.append((msg, exc))
            )
            bad = {"op": "bad", "key": ("x", object())}
            stream.send({"op": "ok"}, bad)
            assert await server.read() == ({"op": "ok"},)
            stream.send(bad)
            stream.flush_now()  # the synchronous path reports it too
            stream.send("after")
            assert await server.read() == ("after",)
            await stream.close()

    run(main())
    assert [msg for msg, _ in unsendable] == [
        {"op": "bad", "key": unsendable[0][0]["key"]},  # type: ignore[index]
    ] * 2
    assert all(isinstance(exc, TypeError) for _, exc in unsendable)


def test_peer_going_away_ends_the_stream(address: str) -> None:
    async def main() -> None:
        async with comm_pair(address) as (client, server, _):
            stream = BatchedStream(client)
            await server.close()
            with pytest.raises(CommError):
                await client.read()
            assert stream.closed
            with pytest.raises(CommClosedError):
                stream.send("x")
            await stream.close()

    run(main())


def test_abort_drops_the_buffer(address: str) -> None:
    async def main() -> None:
        async with comm_pair(address) as (client, server, _):
            stream = BatchedStream(client, interval=60)
            stream.send("first")
            assert await server.read() == ("first",)
            stream.send("never sent")
            stream.abort()
            assert stream.closed and client.closed
            with pytest.raises(CommError):
                await server.read()

    run(main())


def test_flush_now_hands_everything_over_at_once_and_in_order(address: str) -> None:
    async def main() -> None:
        async with comm_pair(address) as (a, b, _):
            stream = BatchedStream(a, interval=60)  # the flusher would wait a minute
            stream.send({"op": "first"})
            await asyncio.sleep(0)  # the flusher takes "first" and starts its wait
            stream.send({"op": "second"}, {"op": "third"})
            stream.flush_now()
            got: list[str] = []
            while len(got) < 3:
                batch = await asyncio.wait_for(b.read(), 5)
                got += [msg["op"] for msg in batch]
            assert got == ["first", "second", "third"]
            stream.abort()

    asyncio.run(main())


def test_messages_sent_apart_each_arrive_in_a_frame_set_of_their_own(address: str) -> None:
    async def main() -> None:
        async with comm_pair(address) as (a, b, _):
            stream = BatchedStream(a, interval=0.001)
            stream.send({"op": "before-1"}, {"op": "before-2"})
            stream.send({"op": "part-1"}, {"op": "part-2"}, {"op": "part-3"}, apart=True)
            stream.send({"op": "after-1"}, {"op": "after-2"})
            batches: list[list[str]] = []
            while sum(map(len, batches)) < 7:
                batch = await asyncio.wait_for(b.read(), 5)
                batches.append([msg["op"] for msg in batch])
            assert batches == [
                ["before-1", "before-2"],
                ["part-1"],
                ["part-2"],
                ["part-3"],
                ["after-1", "after-2"],
            ]
            stream.abort()

    asyncio.run(main())


def test_flush_now_keeps_messages_sent_apart_in_their_own_frame_sets(address: str) -> None:
    async def main() -> None:
        async with comm_pair(address) as (a, b, _):
            stream = BatchedStream(a, interval=60)
            stream.send({"op": "first"})
            stream.send({"op": "part-1"}, {"op": "part-2"}, apart=True)
            stream.flush_now()
            batches: list[list[str]] = []
            while sum(map(len, batches)) < 3:
                batch = await asyncio.wait_for(b.read(), 5)
                batches.append([msg["op"] for msg in batch])
            assert batches == [["first"], ["part-1"], ["part-2"]]
            stream.abort()

    asyncio.run(main())
