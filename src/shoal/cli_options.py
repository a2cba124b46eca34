"""Option groups shared by ``shoal scheduler`` and ``shoal worker``: TLS, addresses, start-up.

Rules of this file:

* Each group is one decorator that adds its click options and hands the command a single
  frozen value (``tls: TlsOptions``, ``net: NetOptions``, ``startup: StartupOptions``), so
  the commands' signatures stay short.
* TLS options can also come from the environment (``SHOAL_TLS_CA_FILE``, ``SHOAL_TLS_CERT``,
  ``SHOAL_TLS_KEY``, ``SHOAL_REQUIRE_ENCRYPTION``): that is how a nanny hands its worker the
  worker's certificate. Values are file paths (or PEM text, from a nanny).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from shoal.comm import Security

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class TlsOptions:
    ca_file: str | None
    cert: str | None
    key: str | None
    require_encryption: bool

    def apply(self, security: Security) -> Security:
        """``security`` with this TLS material; a clear usage error when it is incomplete."""
        if not (self.ca_file or self.cert or self.key or self.require_encryption):
            return security
        if (self.cert or self.key) and not (self.cert and self.ca_file):
            raise click.UsageError("TLS needs --tls-ca-file and --tls-cert (and --tls-key)")
        try:
            return dataclasses.replace(
                security,
                tls_ca_file=self.ca_file,
                tls_cert=self.cert,
                tls_key=self.key,
                require_encryption=self.require_encryption,
            )
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None


def tls_options(command: F) -> F:
    """--tls-ca-file, --tls-cert, --tls-key, --require-encryption."""

    @click.option(
        "--tls-ca-file",
        envvar="SHOAL_TLS_CA_FILE",
        default=None,
        help="CA certificate (PEM) that signed every certificate of the cluster.",
    )
    @click.option(
        "--tls-cert",
        envvar="SHOAL_TLS_CERT",
        default=None,
        help="This process's certificate (PEM; may hold the key too). Its role is its "
        "subject's OU: shoal-scheduler, shoal-worker or shoal-client.",
    )
    @click.option("--tls-key", envvar="SHOAL_TLS_KEY", default=None, help="Its private key.")
    @click.option(
        "--require-encryption",
        is_flag=True,
        envvar="SHOAL_REQUIRE_ENCRYPTION",
        help="Refuse plain tcp:// addresses (needs the --tls-* options).",
    )
    @functools.wraps(command)
    def wrapper(
        *args: Any,
        tls_ca_file: str | None,
        tls_cert: str | None,
        tls_key: str | None,
        require_encryption: bool,
        **kwargs: Any,
    ) -> Any:
        tls = TlsOptions(tls_ca_file, tls_cert, tls_key, require_encryption)
        return command(*args, tls=tls, **kwargs)

    return wrapper  # type: ignore[return-value]


@dataclass(frozen=True)
class NetOptions:
    interface: str | None
    listen_address: str | None
    contact_address: str | None

    def bind(self) -> dict[str, Any]:
        """The server keyword arguments these options stand for."""
        return {
            "interface": self.interface,
            "listen_address": self.listen_address,
            "contact_address": self.contact_address,
        }


def net_options(command: F) -> F:
    """--interface, --listen-address, --contact-address."""

    @click.option("--interface", default=None, help="Listen on this network interface (e.g. eth0).")
    @click.option(
        "--listen-address",
        default=None,
        help="Listen exactly here, e.g. tls://0.0.0.0:9000 (overrides --host and the port).",
    )
    @click.option(
        "--contact-address",
        default=None,
        help="The address others reach us at, if not where we listen (NAT, containers).",
    )
    @functools.wraps(command)
    def wrapper(
        *args: Any,
        interface: str | None,
        listen_address: str | None,
        contact_address: str | None,
        **kwargs: Any,
    ) -> Any:
        return command(*args, net=NetOptions(interface, listen_address, contact_address), **kwargs)

    return wrapper  # type: ignore[return-value]


@dataclass(frozen=True)
class StartupOptions:
    pid_file: str | None
    preload: tuple[str, ...]


def startup_options(command: F) -> F:
    """--pid-file, --preload (repeatable)."""

    @click.option(
        "--pid-file", default=None, type=click.Path(dir_okay=False), help="Write our pid here."
    )
    @click.option(
        "--preload",
        multiple=True,
        help="Module (or .py file) to import at start; its shoal_setup(server) is called "
        "once the server runs, shoal_teardown(server) before it closes. Repeatable.",
    )
    @functools.wraps(command)
    def wrapper(*args: Any, pid_file: str | None, preload: tuple[str, ...], **kwargs: Any) -> Any:
        return command(*args, startup=StartupOptions(pid_file, tuple(preload)), **kwargs)

    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def pid_file(path: str | None) -> Iterator[None]:
    """Write this process's pid to ``path`` while the block runs (removed after)."""
    if path is None:
        yield
        return
    target = Path(path)
    target.write_text(f"{os.getpid()}\n")
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
