"""Settings a nanny resolved for the worker process it starts, passed in its environment.

A worker reads its settings through dask.config, and importing dask.config imports all of
dask: about half of a worker process's start here. Its nanny has dask.config loaded
already, so it resolves what a worker reads before it registers
(``shoal.settings.worker_start_settings``) and passes that as JSON in ``ENV``; the worker
then imports dask once it is registered, before it runs anything
(``shoal.worker.warm_imports``), and puts the nanny's whole dask.config over its own
(``apply_dask_config``; the JSON values only, up to ``settings.MAX_SHIPPED_CONFIG``),
so that tasks see what ``dask.config.set`` said around the cluster, as in dask.
``with_settings``, which applies explicit arguments over settings, lives here for the
same reason.

Rules of this file:

* No import of dask, yaml or the rest of shoal at import: importing this must stay cheap.
  ``start_setting`` imports ``shoal.settings`` only when nothing was passed.
* With ``settings.py`` and ``cli.py``, the only module that reads the environment. The
  variable is read once and removed, so that processes the worker starts (a task's
  ``shoal worker``, say) resolve their own settings.
* A nanny leaves the variable out when it gives its worker configuration variables of
  its own (``SHOAL_*__*``, ``DASK_*``): the worker's settings would differ from the nanny's.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

ENV = "SHOAL_INHERITED_SETTINGS"
#: keys of the JSON object: the ``WorkerConfig`` keywords, and the shoal keys read as such
WORKER = "worker"
UVLOOP = "event-loop.uvloop"
#: ... and the nanny's whole dask.config (its JSON values), which the worker applies over
#: its own once it imports dask (``apply_dask_config``), as dask's nanny ships its config
DASK_CONFIG = "dask-config"

_read = False
_inherited: dict[str, Any] | None = None


def inherited() -> dict[str, Any] | None:
    """What the nanny resolved, or None (no nanny, or one that left it to us)."""
    global _read, _inherited
    if not _read:
        text = os.environ.pop(ENV, None)
        _read = True
        if text:
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise ValueError(f"{ENV} is not JSON: {exc}") from None
            if not isinstance(value, dict) or not isinstance(value.get(WORKER), dict):
                raise ValueError(f"{ENV} is not an object with a {WORKER!r} object")
            _inherited = value
    return _inherited


def start_setting(name: str) -> Any:
    """``name`` (``WORKER`` or ``UVLOOP``) of what a worker reads before it registers: the
    nanny's value, else resolved here through dask.config."""
    passed = inherited()
    if passed is not None:
        return passed.get(name)
    from shoal import settings  # imports dask.config, i.e. all of dask

    return settings.worker_start_settings()[name]


def apply_dask_config() -> bool:
    """Put the nanny's dask.config over ours (the nanny's values win, as in dask), so that
    tasks here see what ``dask.config.set`` said around the cluster; imports dask. True
    when there was one to apply."""
    passed = inherited()
    shipped = passed.get(DASK_CONFIG) if passed is not None else None
    if not isinstance(shipped, dict) or not shipped:
        return False
    import dask.config

    dask.config.update(dask.config.config, shipped, priority="new")
    return True


def json_ready(value: Any) -> Any:
    """``value`` with whatever JSON cannot carry left out (a config may hold objects, which
    then stay in the nanny's process only)."""
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            ready = json_ready(item)
            if isinstance(key, str) and ready is not _LEFT_OUT:
                out[key] = ready
        return out
    if isinstance(value, list | tuple):
        return [ready for item in value if (ready := json_ready(item)) is not _LEFT_OUT]
    if value is None or isinstance(value, str | bool | int | float):
        return value
    return _LEFT_OUT


_LEFT_OUT = object()


def configures(environ: Mapping[str, str]) -> bool:
    """Whether these variables (a nanny's extras for its worker) change dask.config."""
    return any(
        name.startswith("DASK_") or (name.startswith("SHOAL_") and "__" in name) for name in environ
    )


#: settings where an explicit None means "not given" (a CLI flag left out), not "off"
_NONE_IS_UNSET = frozenset({"worker_ttl", "lifetime", "lifetime_stagger", "allowed_failures"})


def with_settings(settings: dict[str, Any], explicit: dict[str, Any]) -> dict[str, Any]:
    """``settings`` overridden by the explicit arguments (argument > flag > config)."""
    merged = dict(settings)
    for name, value in explicit.items():
        if value is not None or name not in _NONE_IS_UNSET:
            merged[name] = value
    return merged
