"""``shoal --environ-from-stdin``: secrets arrive as one JSON line, never in argv."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from shoal.cli import main, read_secret_environ


def test_shoal_variables_are_read() -> None:
    line = '{"SHOAL_TOKEN": "t", "SHOAL_TLS_CERT": "-----BEGIN CERTIFICATE-----\\nx"}\n'
    assert read_secret_environ(line) == {
        "SHOAL_TOKEN": "t",
        "SHOAL_TLS_CERT": "-----BEGIN CERTIFICATE-----\nx",
    }
    assert read_secret_environ("\n") == {}


@pytest.mark.parametrize(
    "line", ["not json", '["SHOAL_TOKEN"]', '{"PATH": "/evil"}', '{"SHOAL_TOKEN": 5}']
)
def test_anything_else_is_refused(line: str) -> None:
    with pytest.raises(click.UsageError):
        read_secret_environ(line)


def test_the_flag_reads_stdin_before_the_subcommand() -> None:
    result = CliRunner().invoke(main, ["--environ-from-stdin", "--help"], input="{}\n")
    assert result.exit_code == 0
    result = CliRunner().invoke(main, ["--environ-from-stdin", "demo", "--help"], input="x\n")
    assert result.exit_code != 0 and "not a JSON line" in result.output
