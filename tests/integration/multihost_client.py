"""The client of tests/integration/test_multihost.py, run as a script inside its own
network namespace (functions defined here travel by value: they live in ``__main__``).

Phase 1: a task on worker B needs data made on worker A (a peer-to-peer transfer).
Phase 2: many tasks spread over both; once ``READY`` is written, the test cuts worker A's
link; we then wait for the scheduler to drop A and check that every result is still right.
Prints one JSON object with what it saw.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from shoal import Client, get_worker
from shoal.comm import Security


def make(i: int) -> list[int]:
    return [i] * 200_000


def combine(a: list[int], b: list[int]) -> int:
    return sum(a) + sum(b)


def slow_square(i: int) -> int:
    time.sleep(0.05)
    return i * i


def received_from_peers() -> list[Any]:
    worker = get_worker()
    return [worker.transfer_log.incoming_count, worker.transfer_log.incoming_bytes]


def until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {timeout}s")
        time.sleep(0.1)


def main(address: str, ca: str, cert: str, key: str, token_file: str, a_host: str,
         folder: str) -> None:  # fmt: skip
    out: dict[str, Any] = {}
    security = Security(
        token=Path(token_file).read_text().strip(),
        tls_ca_file=ca, tls_cert=cert, tls_key=key, require_encryption=True,
    )  # fmt: skip
    with Client(address, security=security, timeout=30, set_as_default=False) as client:
        until(lambda: len(client.scheduler_info()["workers"]) == 2, 90, "two workers")
        workers = sorted(client.scheduler_info()["workers"])
        out["workers"] = workers
        (wa,) = [w for w in workers if f"//{a_host}:" in w]
        (wb,) = [w for w in workers if w != wa]
        # phase 1: peer to peer
        x = client.submit(make, 1, workers=[wa])
        y = client.submit(make, 2, workers=[wb])
        z = client.submit(combine, x, y, workers=[wb])
        out["p2p_result"] = z.result(timeout=60)
        out["b_received"] = client.run(received_from_peers, workers=[wb])[wb]
        out["x_story_on_b"] = [list(map(str, e)) for e in client.story(x.key) if e[-1] == wb]
        del x, y, z
        # phase 2: spread work, then lose A
        futures = client.map(slow_square, range(60))
        client.gather(futures)
        who_has = client.who_has(futures)
        out["keys_on_a_before"] = sum(wa in holders for holders in who_has.values())
        Path(folder, "READY").write_text("ready")
        until(lambda: Path(folder, "GO").exists(), 60, "the partition")
        cut = time.monotonic()
        until(lambda: list(client.scheduler_info()["workers"]) == [wb], 60, "A removed")
        out["seconds_to_remove_a"] = round(time.monotonic() - cut, 2)
        out["results"] = client.gather(futures)
        out["total"] = client.submit(sum, futures).result(timeout=60)
        who_has = client.who_has(futures)
        out["keys_on_a_after"] = sum(wa in holders for holders in who_has.values())
    print(json.dumps(out))


if __name__ == "__main__":
    main(*sys.argv[1:])
