"""The ``shoal`` command: scheduler, worker, demo.

The only place in shoal that reads environment variables.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn

import click

from shoal import discovery
from shoal.cli_options import (
    NetOptions,
    StartupOptions,
    TlsOptions,
    net_options,
    pid_file,
    startup_options,
    tls_options,
)
from shoal.comm import Security
from shoal.sizes import parse_bytes, parse_timedelta

logger = logging.getLogger("shoal.cli")


def _setup_logging(level: str) -> None:
    from shoal.logs import setup_logging

    setup_logging(level, sys.stderr)


@click.group()
@click.version_option(package_name="shoal")
@click.option(
    "--environ-from-stdin",
    is_flag=True,
    hidden=True,
    help="Read SHOAL_* variables (token, TLS material) as one JSON line from stdin, so "
    "that secrets never appear on a command line (SSHCluster starts processes so).",
)
def main(environ_from_stdin: bool) -> None:
    """shoal: a fast, safe-by-default distributed task-execution system."""
    if environ_from_stdin:  # before the subcommand parses: its envvar options see these
        os.environ.update(read_secret_environ(sys.stdin.readline()))


def read_secret_environ(line: str) -> dict[str, str]:
    """The ``SHOAL_*`` string variables in one JSON object; anything else is refused."""
    try:
        values = json.loads(line) if line.strip() else {}
    except json.JSONDecodeError as exc:
        raise click.UsageError(f"--environ-from-stdin: not a JSON line: {exc}") from None
    if not isinstance(values, dict) or not all(
        isinstance(k, str) and k.startswith("SHOAL_") and isinstance(v, str)
        for k, v in values.items()
    ):
        raise click.UsageError("--environ-from-stdin takes an object of SHOAL_* strings")
    return values


# -- scheduler ---------------------------------------------------------------------------------
@main.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (0.0.0.0: every interface, to serve other machines).",
)
@click.option(
    "--port", default="8786", show_default=True, help='Port to listen on (or a range "a:b").'
)
@click.option(
    "--scheduler-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the address and where the token lives to this JSON file (mode 0600).",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Read the cluster token from this file (default: $SHOAL_TOKEN, else "
    "~/.config/shoal/token, created if missing).",
)
@click.option("--no-auth", is_flag=True, help="Accept unauthenticated peers. Unsafe.")
@click.option(
    "--worker-ttl",
    default=None,
    help="Remove a worker silent for this long (default: shoal.scheduler.worker-ttl, 60s).",
)
@click.option(
    "--dashboard-address",
    default=":8787",
    show_default=True,
    help="Dashboard, JSON API and /metrics: [host]:port (no host: --host; port 0: any).",
)
@click.option("--dashboard/--no-dashboard", default=True, help="Serve the dashboard (HTTP).")
@click.option(
    "--allow-client-code",
    is_flag=True,
    help="Let clients run code in the scheduler (run_on_scheduler, SchedulerPlugin). Unsafe.",
)
@click.option("--log-level", default="info", show_default=True)
@tls_options
@net_options
@startup_options
def scheduler(
    host: str,
    port: str,
    scheduler_file: str | None,
    token_file: str | None,
    no_auth: bool,
    worker_ttl: str | None,
    dashboard_address: str,
    dashboard: bool,
    allow_client_code: bool,
    log_level: str,
    tls: TlsOptions,
    net: NetOptions,
    startup: StartupOptions,
) -> None:
    """Start a scheduler."""
    _setup_logging(log_level)
    security, token_path = _scheduler_security(token_file, no_auth)
    security = tls.apply(security)
    from shoal.scheduler.server import Scheduler

    server = Scheduler(
        host=host,
        port=port,
        **net.bind(),
        security=security,
        scheduler_file=scheduler_file,
        token_file=token_path,
        worker_ttl=parse_timedelta(worker_ttl) if worker_ttl else None,
        dashboard_address=dashboard_address if dashboard else None,
        allow_client_code=allow_client_code,
    )
    _run([server], "scheduler at %s", startup)


def _scheduler_security(token_file: str | None, no_auth: bool) -> tuple[Security, Path | None]:
    if no_auth:
        logger.warning("AUTHENTICATION IS OFF: anyone who can reach this port can run code")
        return Security(token=None), None
    if token_file:
        return Security(token=discovery.read_token_file(token_file)), Path(token_file)
    if os.environ.get("SHOAL_TOKEN"):
        return Security(token=os.environ["SHOAL_TOKEN"]), None
    token, path = discovery.create_token_file()
    return Security(token=token), path


# -- worker ----------------------------------------------------------------------------------
@main.command()
@click.argument("scheduler_address", required=False)
@click.option("--scheduler-file", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option("--nthreads", default=1, show_default=True, type=int, help="Threads per worker.")
@click.option(
    "--nworkers",
    default=1,
    show_default=True,
    type=int,
    help="Workers to start (with a nanny: one process each).",
)
@click.option("--name", default=None, help="Worker name (with --nworkers, a prefix).")
@click.option(
    "--memory-limit",
    default="auto",
    show_default=True,
    help="Bytes per worker: auto, 5GB, 4GiB, a fraction like 0.5, or 0 for none.",
)
@click.option("--resources", default="", help='Abstract resources, e.g. "GPU=2 MEM=10e9".')
@click.option("--local-directory", default=None, type=click.Path(file_okay=False))
@click.option("--lifetime", default=None, help='Retire after this long, e.g. "1 hour".')
@click.option("--lifetime-stagger", default="0s", help="Spread lifetimes by +/- this much.")
@click.option(
    "--lifetime-restart", is_flag=True, help="After the lifetime, the nanny starts a fresh worker."
)
@click.option(
    "--host",
    default=None,
    help="Address to listen on (default: this host's address facing the scheduler).",
)
@click.option("--worker-port", default="0", help='Worker port, or a range "a:b" (0: any).')
@click.option("--nanny-port", default="0", help='Nanny port, or a range "a:b" (0: any).')
@click.option("--token-file", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option("--no-auth", is_flag=True, help="Connect without authentication. Unsafe.")
@click.option(
    "--nanny/--no-nanny",
    default=True,
    show_default=True,
    help="Supervise each worker with a nanny process that restarts it when it dies.",
)
@click.option("--nanny-address", default=None, hidden=True, help="Set by the nanny itself.")
@click.option(
    "--nanny-pid",
    default=None,
    type=int,
    hidden=True,
    help="Set by the nanny itself: exit when the process with this pid (our parent) dies.",
)
@click.option(
    "--death-timeout",
    default=None,
    help='Keep trying to reach a lost scheduler this long (e.g. "60s"), then exit non-zero. '
    "Default: for ever.",
)
@click.option("--log-level", default="info", show_default=True)
@tls_options
@net_options
@startup_options
def worker(
    scheduler_address: str | None,
    scheduler_file: str | None,
    nthreads: int,
    nworkers: int,
    name: str | None,
    memory_limit: str,
    resources: str,
    local_directory: str | None,
    lifetime: str | None,
    lifetime_stagger: str,
    lifetime_restart: bool,
    host: str | None,
    worker_port: str,
    nanny_port: str,
    token_file: str | None,
    no_auth: bool,
    nanny: bool,
    nanny_address: str | None,
    nanny_pid: int | None,
    death_timeout: str | None,
    log_level: str,
    tls: TlsOptions,
    net: NetOptions,
    startup: StartupOptions,
) -> None:
    """Start workers connected to the scheduler at SCHEDULER_ADDRESS."""
    if nanny_pid is not None:
        _die_with_nanny(nanny_pid)
    _setup_logging(log_level)
    address, security = _worker_target(scheduler_address, scheduler_file, token_file, no_auth)
    security = tls.apply(security)
    if host is None:
        from shoal.comm.hostaddr import host_facing

        host = host_facing(address)
    names = [(f"{name}-{i}" if nworkers > 1 else name) if name else None for i in range(nworkers)]
    servers: list[Any]
    if nanny:
        from shoal.nanny import Nanny

        servers = [
            Nanny(
                address,
                security=security,
                host=host,
                port=nanny_port,
                interface=net.interface,
                worker_port=worker_port,
                listen_address=net.listen_address,
                contact_address=net.contact_address,
                preload=startup.preload,
                nthreads=nthreads,
                name=worker_name,
                memory_limit=memory_limit,
                resources=resources,
                local_directory=local_directory,
                lifetime=lifetime,
                lifetime_stagger=lifetime_stagger,
                lifetime_restart=lifetime_restart,
                log_level=log_level,
                death_timeout=parse_timedelta(death_timeout) if death_timeout else None,
                scheduler_file=scheduler_file,
            )
            for worker_name in names
        ]
        _run(servers, "nanny at %s", StartupOptions(startup.pid_file, ()))
        if any(server.exit_code for server in servers):
            sys.exit(1)  # a worker lost its scheduler for good
        return
    from shoal.worker.server import Worker

    # worker options a LocalCluster (through the nanny) passes on: flags win over them
    extra = _worker_options_from_environ()
    for key in ("local_directory", "lifetime", "lifetime_stagger", "lifetime_restart"):
        extra.pop(key, None)
    servers = [
        Worker(
            address,
            security=security,
            host=host,
            port=worker_port,
            **net.bind(),
            nthreads=nthreads,
            name=worker_name,
            memory_limit=memory_limit,
            resources=parse_resources(resources),
            local_directory=local_directory,
            lifetime=parse_timedelta(lifetime) if lifetime else None,
            lifetime_stagger=parse_timedelta(lifetime_stagger),
            lifetime_restart=lifetime_restart,
            nanny=nanny_address,
            death_timeout=parse_timedelta(death_timeout) if death_timeout else None,
            scheduler_file=scheduler_file,
            **extra,
        )
        for worker_name in names
    ]
    _run(servers, "worker at %s", startup)
    # e.g. RESTART_EXIT_CODE: the nanny starts a successor
    _exit_past_task_threads(max(server.exit_code for server in servers))


def _die_with_nanny(nanny_pid: int) -> None:
    """Get SIGTERM when our nanny dies; exit now if it died while we started."""
    from shoal.worker.parent_death import die_with_parent

    if not die_with_parent(nanny_pid):
        click.echo(f"Error: the nanny (pid {nanny_pid}) is gone; not starting", err=True)
        sys.exit(1)


def _exit_past_task_threads(code: int) -> NoReturn:
    """Exit with ``code`` once the workers closed. A task thread still running (a task in
    ``time.sleep(1e6)``, say) would make the interpreter wait for it at exit for ever, and
    the process would outlive a SIGTERM: name such threads and exit without them."""
    running = [
        t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon
    ]
    if running:
        names = ", ".join(sorted(t.name for t in running))
        logger.warning("exiting while %d thread(s) still run tasks: %s", len(running), names)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _worker_options_from_environ() -> dict[str, Any]:
    from shoal.cluster_options import WORKER_OPTIONS_ENV
    from shoal.worker.options import from_process_options

    text = os.environ.get(WORKER_OPTIONS_ENV)
    if not text:
        return {}
    try:
        options = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.UsageError(f"${WORKER_OPTIONS_ENV} is not JSON: {exc}") from None
    if not isinstance(options, dict):
        raise click.UsageError(f"${WORKER_OPTIONS_ENV} must be a JSON object")
    try:
        return from_process_options(options)  # data= and services= factories imported
    except (ImportError, AttributeError) as exc:
        raise click.UsageError(f"${WORKER_OPTIONS_ENV}: {exc}") from None


def _worker_target(
    address: str | None, scheduler_file: str | None, token_file: str | None, no_auth: bool
) -> tuple[str, Security]:
    if scheduler_file:
        address, security = discovery.read_scheduler_file(scheduler_file)
    elif address is None:
        raise click.UsageError("give the scheduler's address or --scheduler-file")
    else:
        security = Security(token=None)
    if no_auth:
        return address, Security(token=None)
    if token_file:
        return address, Security(token=discovery.read_token_file(token_file))
    if os.environ.get("SHOAL_TOKEN"):
        return address, Security(token=os.environ["SHOAL_TOKEN"])
    if security.token is not None:
        return address, security
    try:
        return address, discovery.security_for(address)
    except FileNotFoundError as exc:
        raise click.UsageError(str(exc)) from None


def parse_resources(text: str) -> dict[str, float]:
    """``"GPU=2 MEM=10e9"`` -> ``{"GPU": 2.0, "MEM": 1e10}``."""
    out: dict[str, float] = {}
    for item in text.replace(",", " ").split():
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"resource {item!r} is not NAME=AMOUNT")
        try:
            out[name] = float(value)
        except ValueError:
            out[name] = float(parse_bytes(value))
    return out


def _run(servers: list[Any], announce: str, startup: StartupOptions) -> None:
    """Serve until stopped, with the pid file and preloads of ``startup``."""
    from shoal.preload import PreloadError, import_preloads

    try:
        modules = import_preloads(startup.preload)
    except PreloadError as exc:
        raise click.UsageError(str(exc)) from None
    from shoal.loop import run

    with pid_file(startup.pid_file):
        try:
            run(_serve(servers, announce, modules))
        except _ExitWith as exc:
            raise SystemExit(exc.code) from None


async def _serve(servers: list[Any], announce: str, preloads: list[Any]) -> None:
    """Start servers, run until SIGINT/SIGTERM or until all of them closed, then close them.
    (One closing, e.g. a retired worker's nanny, leaves the others running.) A signal
    while they start (a worker still trying to reach its scheduler) stops them too."""
    from shoal.preload import run_teardowns

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    waiter = asyncio.ensure_future(stop.wait())
    starting = asyncio.ensure_future(_start_all(servers, announce, preloads))
    await asyncio.wait([waiter, starting], return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():
        logger.info("stopped while starting; closing")
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
    elif starting.exception() is not None:
        waiter.cancel()
        for server in servers:
            await server.close()
        raise starting.exception()  # type: ignore[misc]
    else:
        closed = asyncio.ensure_future(asyncio.gather(*(s.wait_closed() for s in servers)))
        await asyncio.wait([waiter, closed], return_when=asyncio.FIRST_COMPLETED)
        closed.cancel()
        await asyncio.gather(closed, return_exceptions=True)  # retrieved: no log noise
    for sig in (signal.SIGINT, signal.SIGTERM):  # a second signal: do not wait for closing
        loop.add_signal_handler(sig, _exit_at_second_signal, sig)
    for server in servers:
        if starting.done() and not starting.cancelled():
            await run_teardowns(preloads, server)
        await server.close()
    waiter.cancel()


async def _start_all(servers: list[Any], announce: str, preloads: list[Any]) -> None:
    """Start ``servers`` one by one with their preloads; a failure raises what the CLI
    exits with (the caller closes the servers)."""
    from shoal.errors import HandshakeError
    from shoal.preload import run_setups

    for server in servers:
        try:
            await server.start()
        except HandshakeError as exc:  # refused credentials: trying again cannot help
            from shoal.nanny import REFUSED_EXIT_CODE

            click.echo(f"Error: {exc}", err=True)
            raise _ExitWith(REFUSED_EXIT_CODE) from None
        try:
            await run_setups(preloads, server)
        except Exception as exc:
            raise click.ClickException(str(exc)) from None
        logger.info(announce, server.address)
        login = getattr(server, "dashboard_login_link", None)
        if login:  # like a notebook server: the one place the token is shown
            click.echo(f"Dashboard at {server.dashboard_link}\n  log in: {login}", err=True)


class _ExitWith(Exception):
    """Exit the CLI with this code (SystemExit itself must not cross an asyncio task)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _exit_at_second_signal(sig: int) -> None:
    logger.warning("signal %d while closing: exiting now", sig)
    logging.shutdown()
    os._exit(128 + sig)


# -- demo ------------------------------------------------------------------------------------
@main.command()
@click.option("--n-workers", default=2, show_default=True, type=int)
@click.option(
    "--leaves",
    default=2048,
    show_default=True,
    type=int,
    help="Monte Carlo tasks; a pairwise tree adds as many again.",
)
@click.option(
    "--samples", default=200_000, show_default=True, type=int, help="Random points per leaf task."
)
def demo(n_workers: int, leaves: int, samples: int) -> None:
    """Estimate pi on a local cluster: a map, a tree reduction, a progress bar."""
    from shoal.demo import run_demo

    run_demo(n_workers=n_workers, leaves=leaves, samples=samples)


if __name__ == "__main__":  # pragma: no cover
    main()
