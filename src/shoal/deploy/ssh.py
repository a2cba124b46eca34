"""``SSHCluster``: a scheduler on the first host, nanny-supervised workers on the others.

Rules of this file:

* Every remote process is started over asyncssh as ``exec python -m shoal ...`` after
  the shell printed its pid, so closing can signal exactly that process (TERM, then KILL
  after a deadline) whatever the sshd supports.
* The cluster is TLS by default: ``Security.temporary()`` makes a CA and a certificate per
  role in memory. The token and the role's TLS material travel on the process's stdin as
  one JSON line (``shoal --environ-from-stdin``), never on a command line another user
  could see in ``ps``, and never in a file on the hosts. TLS material given as file
  paths travels as those paths (the files must then exist on the hosts).
* Every wait (connect, start, address, stop) has a deadline and names the host.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from typing import Any

try:
    import asyncssh
except ImportError as exc:  # an optional extra
    raise ImportError("SSHCluster needs asyncssh: pip install 'shoal[ssh]'") from exc

from shoal.comm import Security
from shoal.comm.security import child_environ
from shoal.deploy.cluster import Cluster, Job
from shoal.deploy.commands import worker_argv

#: seconds to wait for a remote process to print its pid and address, and to stop
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
_ADDRESS = re.compile(r"\b((?:tcp|tls)://\S+)")
_PID = re.compile(r"^shoal-pid (\d+)$")


def cli_flags(options: Mapping[str, Any]) -> list[str]:
    """``{"nthreads": 2, "dashboard": False}`` -> ``["--nthreads", "2", "--no-dashboard"]``."""
    flags: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            flags.append(flag)
        elif value is False:
            flags.append("--no-" + key.replace("_", "-"))
        elif value is not None:
            flags += [flag, str(value)]
    return flags


class RemoteProcess:
    """One ``shoal`` command on a host over an ssh connection; its output kept."""

    def __init__(self, conn: asyncssh.SSHClientConnection, host: str, argv: list[str]) -> None:
        self.conn = conn
        self.host = host
        self.argv = argv
        self.output: collections.deque[str] = collections.deque(maxlen=1000)
        self.pid: int | None = None
        self.address: str | None = None
        self.process: asyncssh.SSHClientProcess[str] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._seen = asyncio.Event()

    async def start(self, environ: Mapping[str, str]) -> None:
        """Start it with ``environ`` (secrets: token, TLS material) handed over stdin."""
        command = 'echo "shoal-pid $$" >&2; exec '
        self.process = await self.conn.create_process(
            command + shlex.join(self.argv), stderr=asyncssh.STDOUT
        )
        self.process.stdin.write(json.dumps(dict(environ)) + "\n")
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.process is not None
        async for line in self.process.stdout:
            line = line.rstrip("\n")
            self.output.append(line)
            if self.pid is None and (match := _PID.match(line)):
                self.pid = int(match.group(1))
            elif self.address is None and (found := _ADDRESS.search(line)):
                self.address = found.group(1).rstrip(".,;")
            self._seen.set()
        self._seen.set()

    @property
    def exited(self) -> bool:
        return self._reader is not None and self._reader.done()

    def describe_exit(self) -> str:
        code = self.process.exit_status if self.process is not None else None
        tail = "\n".join(list(self.output)[-10:])
        return f"{shlex.join(self.argv[:4])} on {self.host} exited with {code}:\n{tail}"

    async def wait_for_address(self, timeout: float = START_TIMEOUT) -> str:
        """The first ``tcp://``/``tls://`` address it logs (a server announcing itself)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.address is None:
            if self.exited:
                raise RuntimeError(self.describe_exit())
            if loop.time() > deadline:
                raise TimeoutError(
                    f"{self.argv[2:4]} on {self.host} named no address in {timeout}s"
                )
            self._seen.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._seen.wait(), 0.5)
        return self.address

    async def stop(self) -> None:
        """TERM its pid, wait, then KILL; closes the channel."""
        if self.process is None:
            return
        for signal_name in ("TERM", "KILL"):
            if self.exited or self.pid is None:
                break
            with contextlib.suppress(asyncssh.Error, OSError):
                await self.conn.run(f"kill -{signal_name} {self.pid}", check=False)
            with contextlib.suppress(asyncio.TimeoutError):
                assert self._reader is not None
                await asyncio.wait_for(asyncio.shield(self._reader), STOP_TIMEOUT)
        self.process.close()
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()


class SSHWorkerJob(Job):
    """``shoal worker --nanny`` on one host."""

    def __init__(self, name: str, cluster: SSHCluster, host_index: int) -> None:
        super().__init__(name)
        self.cluster = cluster
        self.host_index = host_index
        self.remote: RemoteProcess | None = None

    async def start(self) -> None:
        cluster = self.cluster
        conn = await cluster.connection(self.host_index)
        host = cluster.hosts[self.host_index]
        argv = worker_argv(
            cluster.python_for(self.host_index), cluster.scheduler_address, name=self.name,
            no_auth=cluster.security.token is None, host=host,
            shoal_flags=["--environ-from-stdin"],
            extra=cli_flags(cluster.options_for_worker(self.host_index)),
        )  # fmt: skip
        self.remote = RemoteProcess(conn, host, argv)
        await self.remote.start(child_environ(cluster.security, "worker"))

    def failure(self) -> str | None:
        if self.remote is not None and self.remote.exited:
            return self.remote.describe_exit()
        return None

    async def close(self) -> None:
        if self.remote is not None:
            await self.remote.stop()

    def logs(self) -> str:
        return "\n".join(self.remote.output) if self.remote is not None else ""


class SSHCluster(Cluster):
    """``hosts[0]`` runs the scheduler; workers go round-robin on ``hosts[1:]``.

    ``connect_options`` (asyncssh.connect keywords) and ``worker_options`` (``shoal
    worker`` flags, as ``{"nthreads": 2}``) are one dict for every host, or a list with
    one per host (``worker_options``: per worker host). ``n_workers`` defaults to one
    per worker host.
    """

    job_prefix = "ssh"

    def __init__(
        self,
        hosts: Sequence[str],
        connect_options: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        worker_options: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        scheduler_options: Mapping[str, Any] | None = None,
        remote_python: str | Sequence[str] | None = None,
        *,
        n_workers: int | None = None,
        security: Security | None = None,
        asynchronous: bool = False,
    ) -> None:
        super().__init__(
            security=security if security is not None else Security.temporary(),
            asynchronous=asynchronous,
        )
        if len(hosts) < 2:
            raise ValueError("SSHCluster needs a scheduler host and at least one worker host")
        self.hosts = list(hosts)
        self.connect_options = _per_host(connect_options, len(self.hosts), "connect_options")
        self.worker_options = _per_host(worker_options, len(self.hosts) - 1, "worker_options")
        self.scheduler_options = {"port": 0, "dashboard_address": ":0",
                                  **(scheduler_options or {})}  # fmt: skip
        if remote_python is None or isinstance(remote_python, str):
            self.remote_python = [remote_python or sys.executable] * len(self.hosts)
        elif len(remote_python) != len(self.hosts):
            raise ValueError(f"remote_python has {len(remote_python)} entries for "
                             f"{len(self.hosts)} hosts")  # fmt: skip
        else:
            self.remote_python = list(remote_python)
        nworkers = {int(o.get("nworkers", 1)) for o in self.worker_options}
        if len(nworkers) != 1:
            raise ValueError(f"worker_options give different nworkers {sorted(nworkers)}")
        self.processes = nworkers.pop()
        threads = {int(o["nthreads"]) for o in self.worker_options if "nthreads" in o}
        self.threads_per_worker = threads.pop() if len(threads) == 1 else None
        self._initial_workers = len(self.hosts) - 1 if n_workers is None else n_workers
        self._connections: dict[int, asyncssh.SSHClientConnection] = {}
        self.scheduler: RemoteProcess | None = None
        self._address: str | None = None
        if not asynchronous:
            self._sync(self._start())

    @property
    def scheduler_address(self) -> str:
        if self._address is None:
            raise RuntimeError("the SSHCluster's scheduler is not started")
        return self._address

    async def connection(self, index: int) -> asyncssh.SSHClientConnection:
        """The (cached) ssh connection to ``hosts[index]``."""
        if index not in self._connections:
            host = self.hosts[index]
            try:
                self._connections[index] = await asyncio.wait_for(
                    asyncssh.connect(host, **self.connect_options[index]), START_TIMEOUT
                )
            except (OSError, asyncssh.Error, asyncio.TimeoutError) as exc:
                raise RuntimeError(f"cannot connect to {host} over ssh: {exc}") from exc
        return self._connections[index]

    def python_for(self, index: int) -> list[str]:
        return shlex.split(self.remote_python[index])

    def options_for_worker(self, host_index: int) -> dict[str, Any]:
        return dict(self.worker_options[host_index - 1])

    def new_job(self, name: str) -> Job:
        number = int(name.rsplit("-", 1)[1])
        return SSHWorkerJob(name, self, 1 + number % (len(self.hosts) - 1))

    async def _start(self) -> None:
        if self.status != "created":
            return
        self.status = "starting"
        try:
            conn = await self.connection(0)
            argv = [*self.python_for(0), "-m", "shoal", "--environ-from-stdin", "scheduler",
                    "--host", self.hosts[0], *cli_flags(self.scheduler_options)]  # fmt: skip
            if self.security.token is None:
                argv.append("--no-auth")
            self.scheduler = RemoteProcess(conn, self.hosts[0], argv)
            await self.scheduler.start(child_environ(self.security, "scheduler"))
            self._address = await self.scheduler.wait_for_address()
            await self._learn_dashboard()
            await self._scale(self.jobs_for(self._initial_workers))
            await self._wait_for_workers(self._initial_workers, START_TIMEOUT)
        except BaseException:
            await self._close()
            raise
        self.status = "running"

    async def _close_scheduler(self) -> None:
        if self.scheduler is not None:
            await self.scheduler.stop()

    async def _close(self) -> None:
        try:
            await super()._close()
        finally:
            for conn in self._connections.values():
                conn.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.wait_closed(), STOP_TIMEOUT)
            self._connections.clear()

    def get_logs(self) -> Any:
        """The scheduler's output (as the remote process printed it) and each job's."""
        return self._sync(self._get_logs())

    async def _get_logs(self) -> dict[str, str]:
        logs = {"Scheduler": "\n".join(self.scheduler.output) if self.scheduler else ""}
        logs.update({name: job.logs() for name, job in self.jobs.items()})
        return logs


def _per_host(
    options: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None, n: int, what: str
) -> list[dict[str, Any]]:
    if options is None:
        return [{} for _ in range(n)]
    if isinstance(options, Mapping):
        return [dict(options) for _ in range(n)]
    if len(options) != n:
        raise ValueError(f"{what} has {len(options)} entries for {n} hosts")
    return [dict(o) for o in options]
