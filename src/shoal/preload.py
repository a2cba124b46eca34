"""``--preload``: modules a scheduler or worker imports at start, with hooks.

Rules of this file:

* A preload is a module name (``mypkg.setup``) or a path to a ``.py`` file. It is imported
  before the server starts; an import error stops the start with a message naming it.
* Once the server runs, each module's ``shoal_setup(server)`` is called (sync or async), in
  the order given; before the server closes, ``shoal_teardown(server)`` (optional), in
  reverse order. A failing setup stops the start; a failing teardown is logged.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

logger = logging.getLogger("shoal.preload")


class PreloadError(Exception):
    """A preload module could not be imported, or its ``shoal_setup`` failed."""


def import_preload(name: str) -> ModuleType:
    """Import ``name``: a dotted module name or a ``.py`` file."""
    try:
        if name.endswith(".py") or "/" in name:
            path = Path(name).resolve()
            spec = importlib.util.spec_from_file_location(f"shoal_preload_{path.stem}", path)
            if spec is None or spec.loader is None:
                raise PreloadError(f"cannot import preload file {name!r}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
            return module
        return importlib.import_module(name)
    except PreloadError:
        raise
    except Exception as exc:
        raise PreloadError(f"cannot import preload {name!r}: {type(exc).__name__}: {exc}") from exc


def import_preloads(names: tuple[str, ...] | list[str]) -> list[ModuleType]:
    return [import_preload(name) for name in names]


async def _call(hook: Any, server: Any) -> None:
    result = hook(server)
    if inspect.isawaitable(result):
        await result


async def run_setups(modules: list[ModuleType], server: Any) -> None:
    """Call each module's ``shoal_setup(server)``, in order."""
    for module in modules:
        # dask's preload modules name their hook dask_setup: they work unchanged
        hook = getattr(module, "shoal_setup", None) or getattr(module, "dask_setup", None)
        if hook is None:
            continue
        try:
            await _call(hook, server)
        except Exception as exc:
            raise PreloadError(
                f"shoal_setup of preload {module.__name__!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
        logger.info("preload %s set up %r", module.__name__, server)


async def run_teardowns(modules: list[ModuleType], server: Any) -> None:
    """Call each module's ``shoal_teardown(server)`` (if it has one), in reverse order."""
    for module in reversed(modules):
        hook = getattr(module, "shoal_teardown", None) or getattr(module, "dask_teardown", None)
        if hook is None:
            continue
        try:
            await _call(hook, server)
        except Exception:
            logger.exception("shoal_teardown of preload %s failed", module.__name__)
