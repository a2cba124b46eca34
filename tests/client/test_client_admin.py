"""The rest of the Client API (shoal.client.admin) on an in-process cluster: plugins,
upload_file, run options, events, metadata, versions, questions, executor, files."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gzip
import json
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from shoal import LocalCluster
from shoal.client import Client
from shoal.client.admin import PluginSetupError
from shoal.plugins import UploadDirectory, WorkerPlugin
from shoal.versions import mismatches
from shoal.worker.server import Worker


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(n_workers=2, processes=False, dashboard_address=None) as c:
        yield c


@pytest.fixture
def client(cluster: LocalCluster) -> Iterator[Client]:
    with Client(cluster, set_as_default=False) as c:
        yield c


def inc(x: int) -> int:
    return x + 1


class Recorder(WorkerPlugin):
    """Records what happens on each worker, in a dict shared by the in-process workers."""

    seen: dict[str, list[Any]] = {}

    def __init__(self, name: str) -> None:
        self.name = name

    def setup(self, worker: Any) -> None:
        self.seen.setdefault(self.name, []).append(("setup", worker.address))

    def teardown(self, worker: Any) -> None:
        self.seen.setdefault(self.name, []).append(("teardown", worker.address))

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        self.seen.setdefault(self.name, []).append((key, start, finish))


class Broken(WorkerPlugin):
    name = "broken"

    def setup(self, worker: Any) -> None:
        raise RuntimeError("no setup for you")


def test_worker_plugin_hooks_run_on_every_worker_and_new_ones(
    client: Client, cluster: LocalCluster
) -> None:
    plugin = Recorder("rec-hooks")
    replies = client.register_plugin(plugin)
    workers = set(client.scheduler_info()["workers"])
    assert set(replies) == workers and all(r["status"] == "OK" for r in replies.values())
    assert {a for what, a in Recorder.seen["rec-hooks"][:2]} == workers
    future = client.submit(inc, 41, key="plugin-inc")
    assert future.result() == 42
    transitions = [t for t in Recorder.seen["rec-hooks"] if t[0] == "plugin-inc"]
    assert ("plugin-inc", "executing", "memory") in transitions
    late = asyncio.run_coroutine_threadsafe(_join_worker(cluster), _loop(client)).result(30)
    try:
        assert ("setup", late.address) in Recorder.seen["rec-hooks"]
    finally:
        asyncio.run_coroutine_threadsafe(late.close(), _loop(client)).result(30)
    assert ("teardown", late.address) in Recorder.seen["rec-hooks"]
    client.unregister_worker_plugin("rec-hooks")
    assert sum(1 for t in Recorder.seen["rec-hooks"] if t[0] == "teardown") == 3
    with pytest.raises(ValueError, match="no worker plugin named 'rec-hooks'"):
        client.unregister_worker_plugin("rec-hooks")


def _loop(client: Client) -> asyncio.AbstractEventLoop:
    loop = client.loop
    assert loop is not None
    return loop


async def _join_worker(cluster: LocalCluster) -> Worker:
    worker = Worker(cluster.scheduler_address, security=cluster.security, name="late")
    await worker.start()
    return worker


def test_a_plugin_failing_in_setup_names_the_workers_and_the_error(client: Client) -> None:
    with pytest.raises(PluginSetupError, match="no setup for you") as info:
        client.register_plugin(Broken())
    assert "broken" in str(info.value) and "2 worker(s)" in str(info.value)
    client.unregister_worker_plugin("broken")


def test_upload_file_py_and_zip_are_importable_at_once(client: Client, tmp_path: Path) -> None:
    module = tmp_path / "shoal_uploaded_mod.py"
    module.write_text("VALUE = 1\n")
    client.upload_file(module)
    assert set(client.run(_read_uploaded).values()) == {1}
    module.write_text("VALUE = 2\n")  # a new version replaces the old one
    client.upload_file(module)
    assert client.gather(client.map(_read_uploaded_task, range(4))) == [2] * 4
    archive = tmp_path / "shoal_zipped.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("shoal_zipped_pkg/__init__.py", "def answer():\n    return 42\n")
    client.upload_file(archive)
    assert set(client.run(_zipped_answer).values()) == {42}
    with pytest.raises(FileNotFoundError, match="no file"):
        client.upload_file(tmp_path / "missing.py")
    for name in ("upload-file-shoal_uploaded_mod.py", "upload-file-shoal_zipped.zip"):
        client.unregister_worker_plugin(name)
    sys.modules.pop("shoal_uploaded_mod", None)


def _read_uploaded() -> int:
    import shoal_uploaded_mod  # type: ignore[import-not-found]

    return int(shoal_uploaded_mod.VALUE)


def _read_uploaded_task(_: int) -> int:
    return _read_uploaded()


def _zipped_answer() -> int:
    import shoal_zipped_pkg  # type: ignore[import-not-found]

    return int(shoal_zipped_pkg.answer())


def test_upload_directory_puts_it_on_the_path(client: Client, tmp_path: Path) -> None:
    folder = tmp_path / "shoal_dir_upload"
    folder.mkdir()
    (folder / "shoal_dir_mod.py").write_text("X = 'from the directory'\n")
    client.register_plugin(UploadDirectory(folder, update_path=True))
    assert set(client.run(_dir_mod).values()) == {"from the directory"}
    client.unregister_worker_plugin("upload-directory-shoal_dir_upload")


def _dir_mod() -> str:
    import shoal_dir_mod  # type: ignore[import-not-found]

    return str(shoal_dir_mod.X)


#: addresses the worker callback saw (the workers run in this process)
CALLBACK_SEEN: list[str] = []


def _callback(dask_worker: Any) -> None:
    CALLBACK_SEEN.append(dask_worker.address)


def test_register_worker_callbacks_get_the_worker(client: Client) -> None:
    CALLBACK_SEEN.clear()
    client.register_worker_callbacks(_callback)
    assert sorted(CALLBACK_SEEN) == sorted(client.scheduler_info()["workers"])


def test_run_options(client: Client) -> None:
    workers = sorted(client.scheduler_info()["workers"])
    assert client.run(_whoami) == {w: w for w in workers}
    assert client.run(_async_double, 4) == {w: 8 for w in workers}
    assert client.run(_whoami, workers=[workers[0]]) == {workers[0]: workers[0]}
    returned = client.run(_fail, on_error="return")
    assert all(isinstance(v, ZeroDivisionError) for v in returned.values())
    assert client.run(_fail, on_error="ignore") == {}
    with pytest.raises(ZeroDivisionError):
        client.run(_fail)
    with pytest.raises(ValueError, match="on_error"):
        client.run(_whoami, on_error="loudly")  # type: ignore[arg-type]
    CALLBACK_SEEN.clear()
    assert client.run(_note, "done", wait=False) is None
    deadline = time.monotonic() + 10
    while len(CALLBACK_SEEN) < 2 and time.monotonic() < deadline:  # workers share the list
        time.sleep(0.01)
    assert CALLBACK_SEEN == ["done", "done"]
    with pytest.raises(ValueError, match="without a nanny"):
        client.run(_whoami, nanny=True)


def _note(text: str) -> None:
    CALLBACK_SEEN.append(text)


def _whoami(dask_worker: Any) -> str:
    return str(dask_worker.address)


async def _async_double(x: int, dask_worker: Any = None) -> int:
    await asyncio.sleep(0)
    assert dask_worker is not None
    return 2 * x


def _fail() -> None:
    1 / 0  # noqa: B018


def test_events_and_metadata(client: Client) -> None:
    client.log_event("shoal-topic", {"n": 1})
    client.log_event(["shoal-topic", "other-topic"], "two")
    events = client.get_events("shoal-topic")
    assert [msg for _, msg in events] == [{"n": 1}, "two"]
    assert all(isinstance(t, float) for t, _ in events)
    assert [msg for _, msg in client.get_events()["other-topic"]] == ["two"]
    got: list[Any] = []
    client.subscribe_topic("live-topic", got.append)
    client.log_event("live-topic", 3)
    deadline = time.monotonic() + 10
    while not got and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [msg for _, msg in got] == [3]
    client.unsubscribe_topic("live-topic")
    client.set_metadata("flat", 1)
    client.set_metadata(["a", "b", "c"], [1, 2])
    assert client.get_metadata("flat") == 1
    assert client.get_metadata(["a", "b"]) == {"c": [1, 2]}
    assert client.get_metadata(["a", "x"], default="none") == "none"
    with pytest.raises(KeyError):
        client.get_metadata("missing")


def test_questions_about_the_cluster(client: Client) -> None:
    info = client.scheduler_info()
    assert info["n_workers"] == 2 and info["total_threads"] == 2
    assert info["total_memory"] == sum(w["memory_limit"] for w in info["workers"].values())
    assert info["started"] <= time.time()
    for address, worker in info["workers"].items():
        assert worker["host"] == "127.0.0.1" and worker["type"] == "Worker"
        assert worker["id"] == worker["name"] and abs(worker["last_seen"] - time.time()) < 30
        assert address.startswith("tcp://127.0.0.1:")
    assert client.ncores() == client.nthreads()
    future = client.submit(inc, 1, key="nbytes-inc")
    future.result()
    assert client.nbytes(summary=False)["nbytes-inc"] > 0
    assert client.nbytes(summary=True)["nbytes"] > 0
    stream = client.get_task_stream()
    assert any(r["key"] == "nbytes-inc" for r in stream)
    assert all(r["startstops"][0]["action"] in ("compute", "transfer") for r in stream)
    client.wait_for_workers(2, timeout=5)
    with pytest.raises(TimeoutError, match="only 2 of 5 workers"):
        client.wait_for_workers(5, timeout=0.2)


#: what the held task waits for (the workers run in this process)
GATE = threading.Event()


def _held() -> bool:
    return GATE.wait(30)


def test_processing_and_call_stack_show_running_tasks(client: Client) -> None:
    GATE.clear()
    future = client.submit(_held, key="held-task")
    try:
        deadline = time.monotonic() + 10
        while not client.call_stack([future]) or not any(
            "held-task" in v for v in client.call_stack().values()
        ):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        processing = client.processing()
        assert any("held-task" in keys for keys in processing.values())
        stacks = [s for v in client.call_stack(keys=["held-task"]).values() for s in v.values()]
        assert any("wait" in "".join(stack) for stack in stacks)
        profile = client.profile()
        assert set(profile) >= {"count", "children", "description", "identifier"}
        deadline = time.monotonic() + 10
        while client.profile()["count"] == 0:  # the sampler started at the first ask
            assert time.monotonic() < deadline
            time.sleep(0.05)
        per_worker = client.profile(merge_workers=False)
        assert set(per_worker) == set(client.scheduler_info()["workers"])
        assert client.profile(key="held-task")["count"] > 0  # its prefix: "held"
        assert client.profile(key="other-task")["count"] == 0  # no task of that prefix ran
    finally:
        GATE.set()
    assert future.result() is True


def test_versions_check(client: Client) -> None:
    versions = client.get_versions(check=True)
    assert versions["client"]["packages"]["shoal"] == versions["scheduler"]["packages"]["shoal"]
    assert set(versions["workers"]) == set(client.scheduler_info()["workers"])
    bad = json.loads(json.dumps(versions))
    some_worker = next(iter(bad["workers"]))
    bad["workers"][some_worker]["packages"]["dask"] = "0.0.1"
    [line] = mismatches(bad)
    assert line.startswith("dask: client ") and f"{some_worker}: 0.0.1" in line


def test_replicate_copies_to_every_worker(client: Client) -> None:
    future = client.submit(inc, 10, key="to-replicate", workers=None)
    future.result()
    client.replicate([future])
    assert len(client.who_has([future])["to-replicate"]) == 2
    assert future.result() == 11


def test_executor_as_current_and_scheduler_file(client: Client, tmp_path: Path) -> None:
    executor = client.get_executor(pure=False)
    assert isinstance(executor, concurrent.futures.Executor)
    assert executor.submit(inc, 1).result(timeout=30) == 2
    assert list(executor.map(inc, [1, 2, 3], timeout=30)) == [2, 3, 4]
    failing = executor.submit(_fail)
    assert isinstance(failing.exception(timeout=30), ZeroDivisionError)
    executor.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        executor.submit(inc, 1)
    with client.as_current():
        assert Client.current() is client
    path = tmp_path / "scheduler.json"
    client.write_scheduler_file(path)
    assert (path.stat().st_mode & 0o777) == 0o600
    with Client(scheduler_file=str(path), set_as_default=False) as other:
        assert other.submit(inc, 5).result() == 6


def test_dump_cluster_state(client: Client, tmp_path: Path) -> None:
    written = client.dump_cluster_state(str(tmp_path / "dump"))
    with gzip.open(written) as f:
        state = msgpack.unpackb(f.read(), strict_map_key=False)
    assert set(state) == {"scheduler", "scheduler_logs", "workers", "versions"}
    assert set(state["scheduler"]["workers"]) == set(client.scheduler_info()["workers"])


def test_repr_does_no_network_io_and_shows_the_cached_workers(client: Client) -> None:
    client.scheduler_info()
    core = client._core
    assert core is not None
    calls: list[str] = []
    real_call = core.transport.call

    async def counting(address: str, rpc: Any, /, **options: Any) -> Any:
        calls.append(rpc.rpc)
        return await real_call(address, rpc, **options)

    core.transport.call = counting  # type: ignore[method-assign]
    try:
        text = repr(client)
    finally:
        core.transport.call = real_call  # type: ignore[method-assign]
    assert calls == [] and "processes=2 threads=2" in text


def test_repr_returns_at_once_with_the_cached_info_when_the_scheduler_is_gone() -> None:
    cluster = LocalCluster(n_workers=1, processes=False, dashboard_address=None)
    client = Client(cluster, set_as_default=False, reconnect_timeout=30)
    try:
        before = repr(client)
        cluster.close()
        core = client._core
        assert core is not None
        deadline = time.monotonic() + 10
        while core.status == "running" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert core.status == "reconnecting"  # the scheduler is gone, the client retries
        started = time.perf_counter()
        after = repr(client)
        took = time.perf_counter() - started
    finally:
        client.close()
    assert took < 0.5, f"repr took {took:.3f}s with the scheduler gone"
    assert after == before and "processes=1 " in after
