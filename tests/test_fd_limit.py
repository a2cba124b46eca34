"""Servers raise their open-file limit and keep descriptors for comm."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from shoal.fd_limit import (
    COMM_RESERVE,
    MAX_HTTP_CONNECTIONS,
    MIN_HTTP_CONNECTIONS,
    connection_limit_for,
)

resource = pytest.importorskip("resource")


def test_http_gets_at_most_half_of_what_comm_leaves() -> None:
    assert connection_limit_for(1024) == (1024 - COMM_RESERVE) // 2
    assert connection_limit_for(1_000_000) == MAX_HTTP_CONNECTIONS
    assert connection_limit_for(256) == MIN_HTTP_CONNECTIONS
    assert connection_limit_for(None) == MAX_HTTP_CONNECTIONS


_PROBE = textwrap.dedent(
    """
    import resource
    from shoal.fd_limit import raise_open_file_limit
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft == 256, soft
    print(raise_open_file_limit(), hard)
    """
)


def test_the_soft_limit_is_raised_to_the_hard_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 256:
        pytest.skip(f"the hard limit ({hard}) leaves nothing to raise")

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

    done = subprocess.run(
        [sys.executable, "-c", _PROBE], preexec_fn=lower, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    raised, hard_seen = done.stdout.split()
    if hard == resource.RLIM_INFINITY:
        assert int(raised) > 256
    else:
        assert int(raised) == int(hard_seen) == hard
