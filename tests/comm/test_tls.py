"""TLS refusals against a real scheduler: each bad peer is stopped at the handshake and
leaves the scheduler as it was. Certificates are made with trustme."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import trustme

from shoal.comm import Security, connect
from shoal.comm.security import cert_roles
from shoal.config import CommConfig
from shoal.errors import CommError, HandshakeError, ShoalTimeoutError
from shoal.protocol.rpc_scheduler import SchedulerRegisterWorker
from shoal.scheduler.server import Scheduler
from shoal.worker.server import Worker
from tests.conftest import run

TOKEN = "tls-test-token"
FAST = CommConfig(connect_timeout=3, handshake_timeout=3)
NOW = datetime.datetime.now(datetime.timezone.utc)
DAY = datetime.timedelta(days=1)


@dataclass
class Pems:
    cert: str
    key: str


def issue(ca: trustme.CA, role: str | None, **validity: Any) -> Pems:
    leaf = ca.issue_cert(
        "127.0.0.1", organization_unit_name=f"shoal-{role}" if role else None, **validity
    )
    chain = b"".join(p.bytes() for p in leaf.cert_chain_pems).decode()
    return Pems(chain, leaf.private_key_pem.bytes().decode())


def ca_pem(ca: trustme.CA) -> str:
    return ca.cert_pem.bytes().decode()


def security(ca: trustme.CA, pems: Pems | None, token: str | None = TOKEN) -> Security:
    return Security(
        token=token,
        tls_ca_file=ca_pem(ca),
        tls_cert=pems.cert if pems else None,
        tls_key=pems.key if pems else None,
    )


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def with_scheduler(ca: trustme.CA, body: Callable[[Scheduler], Awaitable[None]]) -> None:
    """Run ``body`` against a tls:// scheduler; afterwards it must have no worker and no
    client: nothing a refused peer did reached it."""

    async def main() -> None:
        scheduler = Scheduler(
            host="127.0.0.1",
            port=0,
            security=security(ca, issue(ca, "scheduler")),
            comm_config=FAST,
            dashboard_address=None,
        )
        await scheduler.start()
        try:
            assert scheduler.address.startswith("tls://127.0.0.1:")
            await body(scheduler)
            assert not scheduler.state.workers and not scheduler.worker_streams
            assert not scheduler.client_streams and not scheduler.state.tasks
        finally:
            await scheduler.close()

    run(main())


async def refused(address: str, sec: Security, role: str = "worker") -> BaseException:
    with pytest.raises((CommError, HandshakeError, ShoalTimeoutError)) as info:
        comm = await connect(address, security=sec, role=role, config=FAST)
        await comm.close()
    return info.value


def test_a_good_worker_certificate_joins(ca: trustme.CA) -> None:
    """The control case: the same set-up with a good certificate is let in."""

    async def body(scheduler: Scheduler) -> None:
        worker = Worker(
            scheduler.address, security=security(ca, issue(ca, "worker")), http_port=None
        )
        await worker.start()
        assert worker.address.startswith("tls://")
        assert list(scheduler.state.workers) == [worker.address]
        await worker.close()
        for _ in range(500):  # bounded: the scheduler sees the stream end
            if not scheduler.state.workers:
                break
            await asyncio.sleep(0.01)

    with_scheduler(ca, body)


def test_a_certificate_of_another_ca_is_refused(ca: trustme.CA) -> None:
    other = trustme.CA()

    async def body(scheduler: Scheduler) -> None:
        # trusts only its own CA: refuses the scheduler's certificate
        error = await refused(scheduler.address, security(other, issue(other, "worker")))
        assert "certificate verify failed" in str(error).lower()
        # trusts ours, but its own certificate is from another CA: the scheduler refuses it
        foreign = issue(other, "worker")
        mixed = Security(
            token=TOKEN, tls_ca_file=ca_pem(ca), tls_cert=foreign.cert, tls_key=foreign.key
        )
        await refused(scheduler.address, mixed)

    with_scheduler(ca, body)


def test_a_mismatched_key_is_refused_when_loading(ca: trustme.CA) -> None:
    sec = Security(
        token=TOKEN,
        tls_ca_file=ca_pem(ca),
        tls_cert=issue(ca, "worker").cert,
        tls_key=issue(ca, "worker").key,
    )

    async def main() -> None:
        with pytest.raises(ValueError, match="cannot load the TLS certificate of the worker"):
            await connect("tls://127.0.0.1:1", security=sec, role="worker", config=FAST)

    run(main())


def test_an_expired_certificate_is_refused(ca: trustme.CA) -> None:
    expired = issue(ca, "worker", not_before=NOW - 10 * DAY, not_after=NOW - DAY)

    async def body(scheduler: Scheduler) -> None:
        await refused(scheduler.address, security(ca, expired))

    with_scheduler(ca, body)


def test_a_not_yet_valid_certificate_is_refused(ca: trustme.CA) -> None:
    future = issue(ca, "worker", not_before=NOW + DAY, not_after=NOW + 10 * DAY)

    async def body(scheduler: Scheduler) -> None:
        await refused(scheduler.address, security(ca, future))

    with_scheduler(ca, body)


def test_no_client_certificate_is_refused(ca: trustme.CA) -> None:
    async def body(scheduler: Scheduler) -> None:
        await refused(scheduler.address, security(ca, None), role="client")

    with_scheduler(ca, body)


def test_plain_tcp_to_a_tls_port_is_refused(ca: trustme.CA) -> None:
    async def body(scheduler: Scheduler) -> None:
        plain = scheduler.address.replace("tls://", "tcp://")
        error = await refused(plain, Security(token=TOKEN))
        assert "use its tls:// address" in str(error)

    with_scheduler(ca, body)


def test_the_right_certificate_with_a_wrong_token_is_refused(ca: trustme.CA) -> None:
    """The token handshake still runs inside TLS."""

    async def body(scheduler: Scheduler) -> None:
        error = await refused(scheduler.address, security(ca, issue(ca, "worker"), "wrong"))
        assert "wrong cluster token" in str(error)

    with_scheduler(ca, body)


def test_a_client_certificate_cannot_register_as_a_worker(ca: trustme.CA) -> None:
    client_cert = issue(ca, "client")

    async def body(scheduler: Scheduler) -> None:
        # claiming the worker role with a client's certificate: refused in the handshake
        error = await refused(scheduler.address, security(ca, client_cert), role="worker")
        assert "certificate is for client" in str(error)
        # a real worker given that certificate does not start either
        worker = Worker(scheduler.address, security=security(ca, client_cert), http_port=None)
        with pytest.raises(HandshakeError, match="certificate is for client"):
            await worker.start()
        await worker.close()
        # connected honestly as a client, it still may not register a worker
        comm = await connect(
            scheduler.address, security=security(ca, client_cert), role="client", config=FAST
        )
        await comm.write(SchedulerRegisterWorker(address="tls://127.0.0.1:1", nthreads=1).to_msg())
        reply: Any = await comm.read()
        assert reply["status"] == "error" and "may not act as a worker" in reply["text"]
        await comm.close()

    with_scheduler(ca, body)


def test_certificate_roles_are_read_from_the_subject_units() -> None:
    peercert = {
        "subject": (
            (("organizationName", "x"),),
            (("organizationalUnitName", "shoal-worker"),),
            (("organizationalUnitName", "ops"),),
        )
    }
    assert cert_roles(peercert) == frozenset({"worker"})
    assert cert_roles({"subject": ((("commonName", "n"),),)}) == frozenset()
