"""How users start shoal: a scheduler file, the default token file, a script with no guard."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from shoal import Client
from tests.integration.conftest import free_port, stop_process, wait_for, wait_for_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def double(x: int) -> int:
    return 2 * x


def shoal_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "shoal", *args, "--log-level", "warning"]


def test_scheduler_file_connects_workers_and_clients(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("scheduler-file-token\n")
    token_file.chmod(0o600)
    sched_file = tmp_path / "scheduler.json"
    procs = [
        subprocess.Popen(
            shoal_cmd("scheduler", "--port", str(free_port()), "--token-file", str(token_file),
                      "--scheduler-file", str(sched_file))
        )
    ]  # fmt: skip
    try:
        wait_for(sched_file.exists)
        assert sched_file.stat().st_mode & 0o777 == 0o600
        info = json.loads(sched_file.read_text())
        assert info["token_file"] == str(token_file)
        assert "scheduler-file-token" not in sched_file.read_text()
        procs.append(
            subprocess.Popen(shoal_cmd("worker", "--scheduler-file", str(sched_file), "--no-nanny"))
        )
        with Client(scheduler_file=str(sched_file), set_as_default=False) as client:
            wait_for(lambda: len(client.scheduler_info()["workers"]) == 1)
            assert client.submit(double, 21).result() == 42
    finally:
        for proc in reversed(procs):
            stop_process(proc)


def test_default_token_file_is_created_once_and_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("SHOAL_TOKEN", raising=False)
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen(shoal_cmd("scheduler", "--port", str(port)))]
    try:
        wait_for_port(port, procs[0])
        token_file = tmp_path / ".config" / "shoal" / "token"
        assert token_file.stat().st_mode & 0o777 == 0o600
        procs.append(subprocess.Popen(shoal_cmd("worker", address, "--no-nanny")))
        with Client(address, set_as_default=False) as client:  # finds the token by itself
            wait_for(lambda: len(client.scheduler_info()["workers"]) == 1)
            assert client.submit(double, 4).result() == 8
    finally:
        for proc in reversed(procs):
            stop_process(proc)


def test_script_without_main_guard_runs(tmp_path: Path) -> None:
    script = tmp_path / "user_script.py"
    script.write_text(
        textwrap.dedent(
            """
            from shoal import Client

            def square(x):
                return x * x

            client = Client(n_workers=2, threads_per_worker=1)
            print("total", sum(client.gather(client.map(square, range(100)))))
            client.close()
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env,
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "total 328350" in done.stdout
