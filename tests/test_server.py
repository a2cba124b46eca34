"""Server: handlers, replies, streams, the background guard, and a graceful close."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from shoal.comm import BatchedStream, Comm, ConnectionPool, Security, connect
from shoal.errors import CommClosedError, CommError
from shoal.server import Server
from tests.conftest import run, wait_for_condition
from tests.fake_rpcs import Add, Echo, EchoWrongField, bare

SECURITY = Security.local()


def make(handlers: dict[str, Callable[..., Any]]) -> Server:
    return Server(handlers=handlers, security=SECURITY, role="scheduler", name="s")


async def client_of(server: Server) -> Comm:
    return await connect(server.address, security=SECURITY, role="client")


class Flaky(Exception):
    pass


def test_sync_and_async_handlers_answer(address: str) -> None:
    async def add(comm: Comm, a: int, b: int) -> int:
        await asyncio.sleep(0)
        return a + b

    def peer_role(comm: Comm) -> str:
        return str(comm.peer_info["role"])

    async def main() -> None:
        async with make({"add": add, "role": peer_role}) as server:
            await server.listen(address)
            pool = ConnectionPool(security=SECURITY, role="client")
            assert await pool.call(server.address, Add(a=1, b=2)) == 3
            assert await pool.call(server.address, bare("role")) == "client"
            await pool.close()

    run(main())


def test_handler_errors_reach_the_caller_and_the_server_goes_on(address: str) -> None:
    def fail(comm: Comm) -> None:
        raise Flaky("handler failed")

    async def main() -> None:
        async with make({"fail": fail, "echo": lambda comm, x: x}) as server:
            await server.listen(address)
            pool = ConnectionPool(security=SECURITY, role="client")
            with pytest.raises(Flaky, match="handler failed"):
                await pool.call(server.address, bare("fail"))
            with pytest.raises(TypeError):
                await pool.call(server.address, EchoWrongField(wrong_kwarg=1))
            assert await pool.call(server.address, Echo(x=5)) == 5
            await pool.close()

    run(main())


def test_unknown_op_is_an_error_reply_naming_it(address: str) -> None:
    async def main() -> None:
        async with make({}) as server:
            await server.listen(address)
            pool = ConnectionPool(security=SECURITY, role="client")
            with pytest.raises(ValueError, match="'no_such_op'"):
                await pool.call(server.address, bare("no_such_op"))
            await pool.close()

    run(main())


def test_unencodable_result_is_an_error_reply(address: str) -> None:
    async def main() -> None:
        async with make({"obj": lambda comm: object()}) as server:
            await server.listen(address)
            pool = ConnectionPool(security=SECURITY, role="client")
            with pytest.raises(TypeError, match="serialize"):
                await pool.call(server.address, bare("obj"))
            await pool.close()

    run(main())


def test_reply_false_sends_nothing(address: str) -> None:
    seen: list[int] = []

    async def main() -> None:
        async with make({"note": lambda comm, i: seen.append(i), "echo": lambda comm, x: x}) as s:
            await s.listen(address)
            comm = await client_of(s)
            await comm.write({"op": "note", "i": 1, "reply": False})
            await comm.write({"op": "note", "i": 2, "reply": False})
            await comm.write({"op": "echo", "x": "only reply"})
            assert await comm.read() == {"status": "OK", "result": "only reply"}
            assert seen == [1, 2]
            await comm.close()

    run(main())


@pytest.mark.parametrize("bad", [[1, 2], "text", {"no": "op"}, {"op": 5}])
def test_a_message_that_is_not_a_request_closes_that_comm_only(
    address: str, bad: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        async with make({"echo": lambda comm, x: x}) as server:
            await server.listen(address)
            rude, polite = await client_of(server), await client_of(server)
            await rude.write(bad)
            with pytest.raises(CommError):
                await rude.read()
            await polite.write({"op": "echo", "x": 1})
            assert (await polite.read())["result"] == 1
            await polite.close()

    with caplog.at_level(logging.WARNING, logger="shoal.server"):
        run(main())
    assert any("not a request" in r.getMessage() for r in caplog.records)


def test_took_comm_hands_the_comm_to_the_handler(address: str) -> None:
    taken: asyncio.Queue[Comm] = asyncio.Queue()

    async def take(comm: Comm) -> object:
        await taken.put(comm)
        return Server.TOOK_COMM

    async def main() -> None:
        async with make({"take": take}) as server:
            await server.listen(address)
            client = await client_of(server)
            await client.write({"op": "take"})
            server_end = await taken.get()
            # the server no longer reads it: what we send now reaches the new owner
            await client.write("for the owner")
            assert await server_end.read() == "for the owner"
            await server_end.write("from the owner")
            assert await client.read() == "from the owner"
            await server_end.close()

    run(main())


def test_handle_stream_dispatches_batches_and_calls_on_batch_end(address: str) -> None:
    events: list[Any] = []

    def fail() -> None:
        raise Flaky("stream handler bug")

    async def main() -> None:
        finished = asyncio.Event()
        server = make({})

        async def stream(comm: Comm) -> object:
            async def serve() -> None:
                await server.handle_stream(
                    comm,
                    {"add": lambda x: events.append(x), "fail": fail},
                    on_batch_end=lambda: events.append("end"),
                )
                finished.set()

            server.background(serve(), "stream")
            return Server.TOOK_COMM

        server.handlers["stream"] = stream
        async with server:
            await server.listen(address)
            client = await client_of(server)
            await client.write({"op": "stream"})
            batched = BatchedStream(client)
            batched.send(
                {"op": "add", "x": 1}, {"op": "nope"}, {"op": "fail"}, {"op": "add", "x": 2}
            )
            await wait_for_condition(lambda: "end" in events)
            batched.send({"op": "add", "x": 3})
            await batched.close()
            await finished.wait()
            assert server.status == "running"  # the stream handler's errors did not close it
        assert events == [1, 2, "end", 3, "end"]

    run(main())


def test_background_failure_is_logged_and_closes_the_server(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        server = make({})
        async with server:
            await server.listen("inproc://")

            async def broken() -> None:
                raise Flaky("background bug")

            server.background(broken(), "broken-task")
            await wait_for_condition(lambda: server.status == "closed")
            with pytest.raises(CommError):
                await client_of(server)

    with caplog.at_level(logging.ERROR, logger="shoal.server"):
        run(main())
    assert any("broken-task" in r.getMessage() for r in caplog.records)


def test_periodic_runs_until_close() -> None:
    ticks: list[int] = []

    async def main() -> None:
        server = make({})
        async with server:
            server.periodic(lambda: ticks.append(1), 0.001, "tick")

            async def async_tick() -> None:
                ticks.append(2)

            server.periodic(async_tick, 0.001, "async-tick")
            await wait_for_condition(lambda: ticks.count(1) >= 3 and ticks.count(2) >= 3)
        assert not server._background  # every periodic task has ended

    run(main())


def test_listen_twice_and_address_is_the_first(address: str) -> None:
    async def main() -> None:
        async with make({"echo": lambda comm, x: x}) as server:
            await server.listen(address)
            await server.listen("inproc://")
            assert server.address == server.listeners[0].address
            pool = ConnectionPool(security=SECURITY, role="client")
            for listener in server.listeners:
                assert await pool.call(listener.address, Echo(x=listener.address)) == (
                    listener.address
                )
            await pool.close()

    run(main())


def test_close_is_graceful_and_idempotent(address: str) -> None:
    async def main() -> None:
        in_handler = asyncio.Event()

        async def hang(comm: Comm) -> None:
            in_handler.set()
            await asyncio.Event().wait()

        server = make({"hang": hang, "echo": lambda comm, x: x})
        await server.start()
        await server.listen(address)
        idle = await client_of(server)
        busy = await client_of(server)
        await busy.write({"op": "hang"})
        await in_handler.wait()
        await asyncio.gather(server.close(), server.close())
        assert server.status == "closed"
        for comm in (idle, busy):
            with pytest.raises(CommClosedError):
                await comm.read()
        assert not server._handler_tasks and not server._comms
        with pytest.raises(CommError):
            await client_of(server)
        with pytest.raises(CommClosedError):
            await server.listen(address)
        await server.close()

    run(main())
