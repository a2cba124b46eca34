"""What this machine can do at best for each compare.py row, measured in the same run.

Rules of this file: plain Python and the standard library (plus numpy for buffers); each
floor does the same work as its row with nothing distributed in the way: a
``ProcessPoolExecutor`` of 2 processes for tasks, a raw loopback socket for bytes.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any


def noop(x: Any) -> Any:
    return x


def inc(x: int) -> int:
    return x + 1


def socket_seconds(nbytes: int) -> float:
    """Seconds to push ``nbytes`` through a loopback TCP socket into a ready buffer."""
    import numpy as np

    payload = np.ones(nbytes, dtype=np.uint8)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    received = bytearray(nbytes)  # allocated (and touched) before the clock starts
    done = threading.Event()

    def receive() -> None:
        conn, _ = listener.accept()
        view = memoryview(received)
        got = 0
        while got < nbytes:
            n = conn.recv_into(view[got:], min(nbytes - got, 4 * 2**20))
            if n == 0:
                break
            got += n
        conn.close()
        done.set()

    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(memoryview(payload))
        if not done.wait(60):
            raise TimeoutError("raw socket transfer did not finish in 60 s")
    elapsed = time.perf_counter() - start
    thread.join(5)
    listener.close()
    return elapsed


def _pool_map(pool: ProcessPoolExecutor, n: int) -> None:
    list(pool.map(noop, range(n)))


def _pool_chain(pool: ProcessPoolExecutor, n: int) -> None:
    value = 0
    for _ in range(n):
        value = pool.submit(inc, value).result()


def _best(work: Callable[[], Any], repeat: int) -> float:
    work()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def measure_floors(names: list[str], repeat: int) -> dict[str, float]:
    """Floor seconds for each row name compare.py knows (rows without one are left out)."""
    floors: dict[str, float] = {}
    with ProcessPoolExecutor(2) as pool:
        table: dict[str, Callable[[], Any]] = {
            "map 10,000 no-op": lambda: _pool_map(pool, 10_000),
            "chain 1,000": lambda: _pool_chain(pool, 1_000),
            "tree 8,192 leaves": lambda: _pool_map(pool, 16_383),
            "200 MB peer transfer": lambda: socket_seconds(200 * 2**20),
            "reuse 40 MB x 20": lambda: (socket_seconds(40 * 2**20), _pool_chain(pool, 20)),
            "submit().result()": lambda: _pool_chain(pool, 1),
        }
        for name in names:
            if name in table:
                floors[name] = _best(table[name], repeat)
        if "200 MB peer transfer" in floors:  # time the socket alone, not the set-up
            floors["200 MB peer transfer"] = min(socket_seconds(200 * 2**20) for _ in range(repeat))
    if "13-task dask.array" in names:
        import dask

        floors["13-task dask.array"] = _best(
            lambda: dask.compute(small_array(), scheduler="sync"), repeat
        )
    return floors


def small_array() -> Any:
    """A dask.array expression of 13 tasks: 4 chunks, 4 adds, 4 partial sums, 1 total."""
    import dask.array as da

    return (da.ones(16, chunks=4) + 1).sum()
