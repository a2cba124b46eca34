"""Settings through dask.config: shoal.yaml defaults, files, DASK_*/SHOAL_* variables,
distributed.* keys, and one precedence: argument > CLI flag > environment > file > default."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dask.config
import pytest

from shoal import settings
from shoal.config import SchedulerConfig
from shoal.scheduler.server import Scheduler
from shoal.worker.server import Worker

PRINT = (
    "import json; from shoal import settings; "
    "print(json.dumps({**settings.scheduler_settings(), **settings.worker_settings(), "
    "**settings.client_settings()}))"
)


def settings_in_fresh_process(tmp_path: Path, env: dict[str, str], yaml: str = "") -> dict:
    """The settings a new interpreter sees, with only ``env`` and a config folder."""
    folder = tmp_path / "dask-config"
    folder.mkdir(exist_ok=True)
    if yaml:
        (folder / "shoal-test.yaml").write_text(yaml)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DASK_", "SHOAL_"))}
    clean.update(DASK_CONFIG=str(folder), **env)
    out = subprocess.run(
        [sys.executable, "-c", PRINT], env=clean, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def test_defaults_come_from_the_shipped_yaml() -> None:
    text = (Path(settings.__file__).parent / "shoal.yaml").read_text()
    assert "worker-ttl: 60s" in text
    got = settings.scheduler_settings()
    assert got["worker_ttl"] == 60.0 and got["allowed_failures"] == 3
    assert got["allow_client_code"] is False
    assert settings.worker_settings()["memory_target_fraction"] == 0.6


def test_file_environment_and_distributed_keys_in_order(tmp_path: Path) -> None:
    yaml = "shoal:\n  scheduler:\n    worker-ttl: 30s\n    allowed-failures: 5\n"
    from_file = settings_in_fresh_process(tmp_path, {}, yaml)
    assert from_file["worker_ttl"] == 30.0 and from_file["allowed_failures"] == 5
    # environment beats the file (both spellings)
    env = {"SHOAL_SCHEDULER__WORKER_TTL": "12s", "DASK_SHOAL__SCHEDULER__ALLOWED_FAILURES": "9"}
    from_env = settings_in_fresh_process(tmp_path, env, yaml)
    assert from_env["worker_ttl"] == 12.0 and from_env["allowed_failures"] == 9
    # a distributed.* key counts when shoal's key is not set
    dist = {
        "DASK_DISTRIBUTED__WORKER__MEMORY__TARGET": "0.3",
        "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "4s",
    }
    from_dist = settings_in_fresh_process(tmp_path, dist)
    assert from_dist["memory_target_fraction"] == 0.3 and from_dist["timeout"] == 4.0
    both = {**dist, "SHOAL_WORKER__MEMORY__TARGET": "0.5"}
    assert settings_in_fresh_process(tmp_path, both)["memory_target_fraction"] == 0.5


def test_a_config_block_made_before_loading_keeps_the_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``with dask.config.set({"shoal...": ...}):`` around shoal's first use created the
    "shoal" section, loaded the defaults into it, and took the whole section away on exit."""
    monkeypatch.setattr(settings, "_loaded", False)
    monkeypatch.delitem(dask.config.config, "shoal", raising=False)
    with dask.config.set({"shoal.worker.heartbeat-interval": "250ms"}):
        assert settings.worker_settings()["heartbeat_interval"] == 0.25
    assert "shoal" not in dask.config.config
    assert settings.worker_settings()["heartbeat_interval"] == 0.5


def test_arguments_beat_configuration() -> None:
    with dask.config.set({"shoal.scheduler.worker-ttl": "7s", "shoal.worker.memory.spill": 0.5}):
        assert Scheduler().config.worker_ttl == 7.0
        assert Scheduler(worker_ttl=3).config.worker_ttl == 3
        # an unset CLI flag arrives as None: the configuration stays
        assert Scheduler(worker_ttl=None).config.worker_ttl == 7.0
        worker = Worker("tcp://127.0.0.1:1")
        assert worker.memory_spill_fraction == 0.5
        assert Worker("tcp://127.0.0.1:1", memory_spill_fraction=0.9).memory_spill_fraction == 0.9
        # None is an explicit "off" for a memory fraction, as dask's False is
        assert Worker("tcp://127.0.0.1:1", memory_spill_fraction=None).memory_spill_fraction is None
    with dask.config.set({"shoal.worker.memory.spill": False}):
        assert Worker("tcp://127.0.0.1:1").memory_spill_fraction is None
    assert Worker("tcp://127.0.0.1:1").config.spill_writes_wait == 10.0
    with dask.config.set({"shoal.worker.memory.spill-writes-wait": "250ms"}):
        assert Worker("tcp://127.0.0.1:1").config.spill_writes_wait == 0.25


def test_distributed_allowed_failures_is_honoured() -> None:
    with dask.config.set({"distributed.scheduler.allowed-failures": 11}):
        assert Scheduler().config.allowed_failures == 11
    assert SchedulerConfig().allowed_failures == 3


def test_every_key_is_in_the_readme() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for key, distributed_key in settings.documented_keys():
        assert key in readme, key
        if distributed_key:
            assert distributed_key in readme, distributed_key


@pytest.mark.parametrize("flag", ["--preload", "--allow-client-code", "--worker-ttl"])
def test_scheduler_cli_has_the_flags(flag: str) -> None:
    from click.testing import CliRunner

    from shoal.cli import main

    result = CliRunner().invoke(main, ["scheduler", "--help"])
    assert result.exit_code == 0 and flag in result.output
