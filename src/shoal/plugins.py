"""Plugins as dask users write them: ``WorkerPlugin``, ``NannyPlugin``, ``SchedulerPlugin``
and the built-ins ``UploadFile``, ``UploadDirectory``, ``PipInstall``, ``Environ``.

A worker plugin travels pickled: the scheduler keeps it as opaque bytes and hands it to
every worker that registers (so workers that join later, and restarted workers, get
it too); the worker unpickles it and calls ``setup(worker)``. A scheduler plugin is never
unpickled on the scheduler unless it was started with ``--allow-client-code``: load it by
import path with ``shoal scheduler --preload module`` instead.

Rules of this file:

* Hooks may be plain or ``async def``; every hook is optional.
* The built-ins carry everything they need (file bytes, package names), so a worker on
  another host needs nothing else; nothing here reaches the network by itself.
"""

from __future__ import annotations

import asyncio
import importlib
import io
import logging
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

logger = logging.getLogger("shoal.plugins")


class WorkerPlugin:
    """Hooks run in every worker: ``setup(worker)``, ``teardown(worker)`` and
    ``transition(key, start, finish, **kwargs)`` for each task state change. Set ``name``
    to replace a plugin registered earlier under the same name."""

    name: str

    def setup(self, worker: Any) -> Any:
        """Run when the plugin is added to a worker (or the worker starts)."""

    def teardown(self, worker: Any) -> Any:
        """Run when the plugin is removed or the worker closes."""

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        """Run on the worker's loop after each state change of a task."""


class NannyPlugin:
    """Hooks run in every nanny: ``setup(nanny)`` and ``teardown(nanny)``. With
    ``restart = True`` each worker is restarted after setup (to apply an environment)."""

    name: str
    restart = False

    def setup(self, nanny: Any) -> Any:
        """Run when the plugin is added to a nanny."""

    def teardown(self, nanny: Any) -> Any:
        """Run when the plugin is removed or the nanny closes."""


class SchedulerPlugin:
    """Hooks run in the scheduler: ``start(scheduler)`` and ``close()``. Load one with
    ``shoal scheduler --preload module`` (its ``shoal_setup(scheduler)`` registers it with
    ``scheduler.add_plugin``); a client may send one only to a scheduler started with
    ``--allow-client-code``."""

    name: str

    def start(self, scheduler: Any) -> Any:
        """Run when the plugin is added to the scheduler."""

    def close(self) -> Any:
        """Run when the scheduler closes."""


def plugin_name(plugin: object) -> str:
    """The plugin's ``name``, or one made from its class (as dask does)."""
    name = getattr(plugin, "name", None)
    if isinstance(name, str) and name:
        return name
    cls = type(plugin)
    return f"{cls.__module__}.{cls.__qualname__}-{id(plugin):x}"


async def call_hook(plugin: object, hook: str, *args: Any) -> Any:
    """Call ``plugin.hook(*args)`` if it has one, awaiting it when it is a coroutine."""
    method = getattr(plugin, hook, None)
    if method is None:
        return None
    result = method(*args)
    if asyncio.iscoroutine(result):
        result = await result
    return result


# -- built-ins ---------------------------------------------------------------------------------


class UploadFile(WorkerPlugin):
    """Put a ``.py``, ``.zip``, ``.egg`` (or any) file in each worker's directory and make
    it importable there; ``Client.upload_file`` uses it. Python files already imported
    are reloaded, so a task sees the new code at once."""

    def __init__(self, filepath: str | os.PathLike[str], load: bool = True) -> None:
        path = Path(filepath)
        self.filename = path.name
        self.data = path.read_bytes()
        self.load = load
        self.name = f"upload-file-{self.filename}"

    def setup(self, worker: Any) -> None:
        directory = Path(worker.local_directory)
        target = directory / self.filename
        target.write_bytes(self.data)
        install_importable(target, directory, self.load)


def install_importable(target: Path, directory: Path, load: bool) -> None:
    """Make ``target`` (in ``directory``) importable in this process, and import it."""
    importlib.invalidate_caches()
    suffix = target.suffix
    if suffix in (".zip", ".egg", ".whl"):
        entry = str(target)
        if entry not in sys.path:
            sys.path.insert(0, entry)
        names = _top_level_modules(target)
    else:
        if str(directory) not in sys.path:
            sys.path.insert(0, str(directory))
        names = [target.stem] if suffix == ".py" else []
    if not load:
        return
    for name in names:
        for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[loaded]  # a new version replaces the old one at once
        importlib.import_module(name)


def _top_level_modules(archive: Path) -> list[str]:
    names: set[str] = set()
    with zipfile.ZipFile(archive) as zf:
        for member in zf.namelist():
            first = member.split("/", 1)[0]
            if first.endswith(".py"):
                names.add(first[:-3])
            elif "/" in member and member.split("/", 1)[1] == "__init__.py":
                names.add(first)
    return sorted(n for n in names if n.isidentifier())


class UploadDirectory(WorkerPlugin):
    """Copy a local directory into each worker's directory; with ``update_path`` put it
    on ``sys.path`` (its modules become importable)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        restart: bool = False,
        update_path: bool = False,
        skip_words: tuple[str, ...] = (".git", ".github", ".pytest_cache", "__pycache__"),
        skip: tuple[Any, ...] = (),
    ) -> None:
        source = Path(path).resolve()
        self.dirname = source.name
        self.update_path = update_path
        self.restart = restart
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for file in sorted(source.rglob("*")):
                relative = file.relative_to(source)
                if any(word in relative.parts for word in skip_words) or not file.is_file():
                    continue
                if any(rule(str(file)) for rule in skip):
                    continue
                zf.write(file, str(Path(self.dirname) / relative))
        self.data = buffer.getvalue()
        self.name = f"upload-directory-{self.dirname}"

    def setup(self, worker: Any) -> None:
        directory = Path(worker.local_directory)
        with zipfile.ZipFile(io.BytesIO(self.data)) as zf:
            zf.extractall(directory)
        if self.update_path:
            entry = str(directory / self.dirname)
            if entry not in sys.path:
                sys.path.insert(0, entry)
            importlib.invalidate_caches()


class PipInstall(WorkerPlugin):
    """``pip install`` packages in each worker's environment (a package name, a wheel or a
    local directory: whatever pip accepts; pass ``pip_options=["--no-index", ...]`` to
    stay offline). A failed install raises, naming the packages and pip's output."""

    def __init__(
        self,
        packages: list[str],
        pip_options: list[str] | None = None,
        restart_workers: bool = False,
    ) -> None:
        self.packages = list(packages)
        self.pip_options = list(pip_options or [])
        self.restart_workers = restart_workers
        self.name = f"pip-install-{'-'.join(self.packages)}"

    async def setup(self, worker: Any) -> None:
        command = [sys.executable, "-m", "pip", "install", "-q", *self.pip_options]
        result = await asyncio.to_thread(
            subprocess.run, [*command, *self.packages], capture_output=True, text=True
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"pip install {' '.join(self.packages)} failed on {worker.address}: "
                f"{result.stderr.strip() or result.stdout.strip()}"
            )
        importlib.invalidate_caches()


class Environ(NannyPlugin):
    """Set environment variables for worker processes (they restart to apply them).
    Registered through a client, it also sets them in running workers right away."""

    restart = True

    def __init__(self, environ: dict[str, Any] | None = None) -> None:
        self.environ = {k: str(v) for k, v in (environ or {}).items()}
        self.name = f"environ-{'-'.join(sorted(self.environ))}"

    def setup(self, nanny: Any) -> None:
        extra = getattr(nanny, "extra_environ", None)
        if isinstance(extra, dict):
            extra.update(self.environ)
        os.environ.update(self.environ)


__all__ = [
    "Environ",
    "NannyPlugin",
    "PipInstall",
    "SchedulerPlugin",
    "UploadDirectory",
    "UploadFile",
    "WorkerPlugin",
]
