"""SSHCluster's pure helpers: options to flags, per-host option lists."""

from __future__ import annotations

import pytest

pytest.importorskip("asyncssh")

from shoal.deploy.ssh import _per_host, cli_flags


def test_options_become_cli_flags() -> None:
    assert cli_flags({"nthreads": 2, "memory_limit": "1GB", "dashboard": False,
                      "lifetime_restart": True, "name": None}) == [
        "--nthreads", "2", "--memory-limit", "1GB", "--no-dashboard", "--lifetime-restart",
    ]  # fmt: skip


def test_one_dict_is_for_every_host_a_list_is_one_per_host() -> None:
    assert _per_host({"a": 1}, 3, "x") == [{"a": 1}] * 3
    assert _per_host(None, 2, "x") == [{}, {}]
    assert _per_host([{"a": 1}, {"a": 2}], 2, "x") == [{"a": 1}, {"a": 2}]
    with pytest.raises(ValueError, match="x has 1 entries for 2 hosts"):
        _per_host([{}], 2, "x")
