"""The CLI's TLS option group: incomplete material is a usage error, never ignored."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from shoal.cli import main
from shoal.cli_options import TlsOptions
from shoal.comm import Security


def test_no_tls_options_leave_security_alone() -> None:
    security = Security(token="t")
    assert TlsOptions(None, None, None, False).apply(security) is security


def test_tls_options_are_applied() -> None:
    applied = TlsOptions("ca.pem", "c.pem", "c.key", True).apply(Security(token="t"))
    assert (applied.tls_ca_file, applied.tls_cert, applied.tls_key) == ("ca.pem", "c.pem", "c.key")
    assert applied.require_encryption and applied.token == "t"


@pytest.mark.parametrize(
    "options",
    [
        TlsOptions(None, "c.pem", "c.key", False),
        TlsOptions("ca.pem", None, "c.key", False),
        TlsOptions(None, None, None, True),
    ],
)
def test_incomplete_tls_options_are_a_usage_error(options: TlsOptions) -> None:
    with pytest.raises(click.UsageError):
        options.apply(Security(token="t"))


def test_the_scheduler_refuses_require_encryption_without_certificates() -> None:
    result = CliRunner().invoke(main, ["scheduler", "--require-encryption", "--no-auth"])
    assert result.exit_code == 2
    assert "require_encryption needs TLS material" in result.output


def test_the_new_options_are_documented() -> None:
    for command in ("scheduler", "worker"):
        text = CliRunner().invoke(main, [command, "--help"]).output
        for option in ("--tls-ca-file", "--tls-cert", "--tls-key", "--require-encryption",
                       "--interface", "--listen-address", "--contact-address", "--pid-file",
                       "--preload"):  # fmt: skip
            assert option in text, (command, option)
    assert "--worker-port" in CliRunner().invoke(main, ["worker", "--help"]).output
    assert "8786" in CliRunner().invoke(main, ["scheduler", "--help"]).output
