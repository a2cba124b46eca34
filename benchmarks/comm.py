"""shoal.comm beside plain sockets, same machine, one run, two processes.

Usage: python benchmarks/comm.py [--repeat 5] [--rpc-calls 5000] [--messages 200000] [--mbytes 100]

A child process serves both a shoal ``Server`` and plain equivalents (asyncio streams with
a 4-byte length prefix and msgpack, and a blocking raw socket for bulk data); this process
is the client. Each figure is the best of ``repeat`` runs (shoal and plain taking turns);
the ratio is shoal / plain, so above 1 means shoal is faster.

* rpc: sequential small request/reply round trips (``ConnectionPool.call`` vs one
  ``write``+``readexactly`` pair per call on a plain stream).
* stream: small one-way messages, through a ``BatchedStream`` vs one length-prefixed
  write per message on a plain stream; the receiver counts them, then answers.
* bulk: a numpy array (``--mbytes``) in a ``Serialized``, sent and acknowledged, vs the
  same bytes with ``sendall``/``recv_into`` on blocking raw sockets (fresh buffer each).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import struct
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, ClassVar

import msgpack
import numpy as np

from shoal.comm import BatchedStream, Comm, ConnectionPool, Security, connect
from shoal.protocol import Serialized, serialize
from shoal.protocol.rpc_base import Rpc
from shoal.server import Server


@dataclass(frozen=True, slots=True, kw_only=True)
class Echo(Rpc[Any]):
    """The bench server's ``echo``: answered with ``x``."""

    rpc: ClassVar[str] = "echo"
    role: ClassVar[str] = "bench"
    x: Any


@dataclass(frozen=True, slots=True, kw_only=True)
class Put(Rpc[int]):
    """The bench server's ``put``: stores ``data``, answers its size in bytes."""

    rpc: ClassVar[str] = "put"
    role: ClassVar[str] = "bench"
    data: Serialized


_LEN = struct.Struct("<I")
_U64 = struct.Struct("<Q")


# -- the child: servers -------------------------------------------------------------------
def child_main(token: str, pipe: Connection) -> None:
    asyncio.run(_serve(token, pipe))


async def _serve(token: str, pipe: Connection) -> None:
    async def sink(comm: Comm, n: int) -> object:
        await comm.write("ready")
        seen = 0
        while seen < n:
            seen += len(await comm.read())
        await comm.write(seen)
        return Server.TOOK_COMM

    def put(comm: Comm, data: Serialized) -> int:
        return data.nbytes

    handlers: dict[str, Callable[..., Any]] = {"echo": lambda comm, x: x, "sink": sink, "put": put}
    server = Server(handlers=handlers, security=Security(token=token), role="bench")
    async with server:
        await server.listen("tcp://127.0.0.1:0")
        plain = await asyncio.start_server(_plain_stream, "127.0.0.1", 0)
        raw = socket.create_server(("127.0.0.1", 0))
        threading.Thread(target=_raw_bulk, args=(raw,), daemon=True).start()
        plain_port = plain.sockets[0].getsockname()[1]
        pipe.send((server.address, plain_port, raw.getsockname()[1]))
        await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # until told to stop
        plain.close()


async def _plain_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            msg = msgpack.unpackb(
                await reader.readexactly(_LEN.unpack(await reader.readexactly(4))[0])
            )
            if msg["op"] == "echo":
                writer.write(_frame({"result": msg["x"]}))
            elif msg["op"] == "sink":  # count n one-message frames, then answer
                for _ in range(msg["n"]):
                    msgpack.unpackb(
                        await reader.readexactly(_LEN.unpack(await reader.readexactly(4))[0])
                    )
                writer.write(_frame(msg["n"]))
    except asyncio.IncompleteReadError:
        writer.close()


def _raw_bulk(listener: socket.socket) -> None:
    while True:
        conn, _ = listener.accept()
        with conn:
            header = bytearray(8)
            while _recv_exactly(conn, memoryview(header)):
                (size,) = _U64.unpack(header)
                buffer = bytearray(size)  # a fresh buffer, as a real receiver needs
                _recv_exactly(conn, memoryview(buffer))
                conn.sendall(_U64.pack(len(buffer)))


def _recv_exactly(conn: socket.socket, view: memoryview) -> bool:
    while view.nbytes:
        n = conn.recv_into(view)
        if n == 0:
            return False
        view = view[n:]
    return True


def _frame(msg: Any) -> bytes:
    body: bytes = msgpack.packb(msg)
    return _LEN.pack(len(body)) + body


# -- the parent: clients ------------------------------------------------------------------
async def best_rates(
    shoal_once: Callable[[], Awaitable[int]], plain_once: Callable[[], Awaitable[int]], repeat: int
) -> tuple[float, float]:
    """Best units per second of each over ``repeat`` runs, taken in turns (after a warm-up).

    Taking turns means a burst of load from elsewhere on the machine hits both alike.
    """
    best = {shoal_once: 0.0, plain_once: 0.0}
    await shoal_once()
    await plain_once()
    for _ in range(repeat):
        for run_once in best:
            start = time.perf_counter()
            units = await run_once()
            best[run_once] = max(best[run_once], units / (time.perf_counter() - start))
    return best[shoal_once], best[plain_once]


async def bench_rpc(
    address: str, plain_port: int, token: str, n: int, repeat: int
) -> tuple[float, float]:
    pool = ConnectionPool(security=Security(token=token), role="bench")

    async def shoal_rpc() -> int:
        for i in range(n):
            await pool.call(address, Echo(x=i))
        return n

    reader, writer = await asyncio.open_connection("127.0.0.1", plain_port)

    async def plain_rpc() -> int:
        for i in range(n):
            writer.write(_frame({"op": "echo", "x": i}))
            msgpack.unpackb(await reader.readexactly(_LEN.unpack(await reader.readexactly(4))[0]))
        return n

    result = await best_rates(shoal_rpc, plain_rpc, repeat)
    writer.close()
    await pool.close()
    return result


async def bench_stream(
    address: str, plain_port: int, token: str, n: int, repeat: int
) -> tuple[float, float]:
    security = Security(token=token)

    async def shoal_stream() -> int:
        comm = await connect(address, security=security, role="bench")
        await comm.write({"op": "sink", "n": n})
        assert await comm.read() == "ready"
        stream = BatchedStream(comm)
        for i in range(n):
            stream.send({"op": "task-finished", "key": "x", "i": i})
            if i % 1000 == 999:
                await asyncio.sleep(0)  # let the flusher and the socket run, as a shell would
        assert await comm.read() == n
        await stream.close()
        return n

    async def plain_stream() -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", plain_port)
        writer.write(_frame({"op": "sink", "n": n}))
        for i in range(n):
            writer.write(_frame({"op": "task-finished", "key": "x", "i": i}))
            if i % 1000 == 999:
                await writer.drain()
        assert (
            msgpack.unpackb(await reader.readexactly(_LEN.unpack(await reader.readexactly(4))[0]))
            == n
        )
        writer.close()
        return n

    return await best_rates(shoal_stream, plain_stream, repeat)


async def bench_bulk(
    address: str, raw_port: int, token: str, mbytes: int, repeat: int
) -> tuple[float, float]:
    array = np.random.default_rng(0).random(mbytes * 2**20 // 8)
    pool = ConnectionPool(security=Security(token=token), role="bench")

    async def shoal_bulk() -> int:
        assert await pool.call(address, Put(data=serialize(array))) >= array.nbytes
        return array.nbytes

    raw = socket.create_connection(("127.0.0.1", raw_port))
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def raw_once() -> int:
        raw.sendall(_U64.pack(array.nbytes))
        raw.sendall(array.data.cast("B"))
        ack = bytearray(8)
        _recv_exactly(raw, memoryview(ack))
        return array.nbytes

    async def raw_bulk() -> int:
        return raw_once()  # blocking on purpose: the plainest possible sender

    result = await best_rates(shoal_bulk, raw_bulk, repeat)
    raw.close()
    await pool.close()
    return result


def report(name: str, unit: str, shoal: float, plain: float, plain_name: str) -> None:
    print(
        f"{name:<34} shoal {shoal:>12,.0f} {unit:<6}  {plain_name} {plain:>12,.0f} {unit:<6}"
        f"  ratio {shoal / plain:5.2f}"
    )


async def main(args: argparse.Namespace) -> None:
    token = Security.local().token
    assert token is not None
    ctx = multiprocessing.get_context("spawn")
    parent_end, child_end = ctx.Pipe()
    child = ctx.Process(target=child_main, args=(token, child_end), daemon=True)
    child.start()
    try:
        address, plain_port, raw_port = parent_end.recv()
        n_rpc, n_msgs = args.rpc_calls, args.messages
        rpc = await bench_rpc(address, plain_port, token, n_rpc, args.repeat)
        report("rpc round trips", "/s", *rpc, "asyncio streams")
        stream = await bench_stream(address, plain_port, token, n_msgs, args.repeat)
        report("messages through a BatchedStream", "msg/s", *stream, "asyncio streams")
        bulk = await bench_bulk(address, raw_port, token, args.mbytes, args.repeat)
        mb = 2**20
        report(
            f"{args.mbytes} MiB numpy array", "MiB/s", bulk[0] / mb, bulk[1] / mb, "raw socket     "
        )
    finally:
        parent_end.send("stop")
        child.join(10)
        if child.is_alive():
            child.terminate()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rpc-calls", type=int, default=5000)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--mbytes", type=int, default=100)
    asyncio.run(main(parser.parse_args()))
