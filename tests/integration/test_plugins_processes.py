"""Plugins and code shipping over real worker processes (each under a nanny): uploaded
files survive a restart, Environ restarts workers with its variables, PipInstall
installs a local wheel offline, and worker options reach worker processes."""

from __future__ import annotations

import base64
import hashlib
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal import LocalCluster
from shoal.client import Client
from shoal.plugins import Environ, NannyPlugin, PipInstall
from tests.conftest import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    local = tmp_path_factory.mktemp("workers")
    with LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        memory_limit="2GB",
        memory_target_fraction=0.45,
        local_directory=str(local),
        lifetime="2h",
        resources={"THING": 2},
    ) as c:
        yield c


@pytest.fixture
def client(cluster: LocalCluster) -> Iterator[Client]:
    with Client(cluster, set_as_default=False) as c:
        yield c


def describe(dask_worker: Any) -> dict[str, Any]:
    return {
        "target": dask_worker.memory_target_fraction,
        "directory": dask_worker.local_directory,
        "memory": dask_worker.memory_limit,
        "resources": dict(dask_worker.resources),
        "lifetime": dask_worker.config.lifetime,
        "pid": os.getpid(),
    }


def test_worker_options_reach_worker_processes(client: Client, cluster: LocalCluster) -> None:
    [seen] = client.run(describe).values()
    assert seen["target"] == 0.45 and seen["memory"] == 2_000_000_000
    assert seen["resources"] == {"THING": 2} and seen["lifetime"] == 7200
    assert seen["pid"] != os.getpid()
    assert seen["directory"].startswith(cluster.worker_kwargs["local_directory"])


def read_version() -> int:
    import shoal_restart_mod  # type: ignore[import-not-found]

    return int(shoal_restart_mod.VERSION)


def test_uploaded_file_reaches_a_restarted_worker(client: Client, tmp_path: Path) -> None:
    module = tmp_path / "shoal_restart_mod.py"
    module.write_text("VERSION = 7\n")
    client.upload_file(module)
    [before] = client.run(describe).values()
    assert client.submit(read_version, pure=False).result() == 7
    [worker] = client.scheduler_info()["workers"]
    assert client.restart_workers([worker]) == {worker: "OK"}
    client.wait_for_workers(1, timeout=60)
    [after] = client.run(describe).values()
    assert after["pid"] != before["pid"]  # a new process, and it still has the file
    assert client.submit(read_version, pure=False).result() == 7
    assert list(client.run(read_version, nanny=False).values()) == [7]
    client.unregister_worker_plugin("upload-file-shoal_restart_mod.py")


def nanny_pid() -> int:
    return os.getpid()


def environment(name: str) -> str | None:
    return os.environ.get(name)


def test_environ_restarts_workers_with_its_variables(client: Client) -> None:
    [nanny] = client.run(nanny_pid, nanny=True).values()
    [worker] = client.run(nanny_pid).values()
    assert nanny != worker
    client.register_plugin(Environ({"SHOAL_TEST_ENVIRON": "from-plugin"}))
    client.wait_for_workers(1, timeout=60)
    assert list(client.run(environment, "SHOAL_TEST_ENVIRON").values()) == ["from-plugin"]


class Stamp(NannyPlugin):
    """Marks the nanny it is set up on (and unmarks it at teardown)."""

    name = "stamp"

    def setup(self, nanny: Any) -> None:
        nanny.shoal_test_stamp = "stamped"

    def teardown(self, nanny: Any) -> None:
        nanny.shoal_test_stamp = "torn down"


def stamp_of(dask_worker: Any) -> str | None:
    return getattr(dask_worker, "shoal_test_stamp", None)


def test_a_nanny_plugin_reaches_nannies_that_join_later(
    client: Client, cluster: LocalCluster
) -> None:
    client.register_plugin(Stamp())
    assert list(client.run(stamp_of, nanny=True).values()) == ["stamped"]
    cluster.scale(2)
    try:
        client.wait_for_workers(2, timeout=60)
        # the new nanny gets the plugins just after its worker registered (asynchronously;
        # Environ, registered earlier, restarts that worker too)
        wait_until(
            lambda: list(client.run(stamp_of, nanny=True).values()) == ["stamped"] * 2,
            timeout=30,
            what="both nannies stamped",
            interval=0.1,
        )
        client.unregister_worker_plugin("stamp", nanny=True)
        assert set(client.run(stamp_of, nanny=True).values()) == {"torn down"}
        with pytest.raises(ValueError, match="no nanny plugin named 'stamp'"):
            client.unregister_worker_plugin("stamp", nanny=True)
    finally:
        cluster.scale(1)
        cluster.wait_for_workers(1, timeout=60)


def make_wheel(directory: Path, name: str) -> Path:
    """A minimal pure-Python wheel of a one-module package (no build tools needed)."""
    version = "0.1"
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": "ANSWER = 'installed offline'\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{dist}/RECORD,,")
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
        zf.writestr(f"{dist}/RECORD", "\n".join(record) + "\n")
    return wheel


def import_from(target: str, name: str) -> str:
    import importlib
    import sys

    if target not in sys.path:
        sys.path.insert(0, target)
    importlib.invalidate_caches()
    return str(importlib.import_module(name).ANSWER)


def test_pip_install_a_local_wheel_offline(client: Client, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "shoal_tiny_pkg")
    target = tmp_path / "site"
    options = ["--no-index", "--no-deps", "--target", str(target)]
    client.register_plugin(PipInstall([str(wheel)], pip_options=options))
    assert (target / "shoal_tiny_pkg" / "__init__.py").exists()
    answers = client.run(import_from, str(target), "shoal_tiny_pkg")
    assert list(answers.values()) == ["installed offline"]
    with pytest.raises(RuntimeError, match=r"pip install .*failed"):
        client.register_plugin(
            PipInstall([str(tmp_path / "missing.whl")], pip_options=["--no-index"])
        )
