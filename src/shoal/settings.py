"""shoal's settings through ``dask.config``: the shipped defaults (``shoal.yaml``), the
``distributed.*`` keys that mean something here, and ``SHOAL_*`` environment variables.

``scheduler_settings()``, ``worker_settings()`` and ``client_settings()`` give keyword
arguments for ``SchedulerConfig``, ``WorkerConfig`` and ``Client``; explicit arguments
(and CLI flags, which are arguments) are applied over them by the callers.

Rules of this file:

* With ``cli.py`` and ``inherited_settings.py``, the only module that reads the
  environment.
* One precedence for every setting: argument > CLI flag > environment > file > default.
  A ``distributed.*`` key counts when it was set (differs from distributed's default)
  and shoal's key was not.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask.config
import yaml

from shoal.inherited_settings import with_settings as with_settings  # where it lives: dask-free
from shoal.sizes import parse_bytes, parse_timedelta

logger = logging.getLogger("shoal.settings")

_DEFAULTS_FILE = Path(__file__).with_name("shoal.yaml")
#: the most bytes of dask.config (as JSON) a nanny passes its worker in the environment
MAX_SHIPPED_CONFIG = 64 * 1024
_lock = threading.Lock()
_loaded = False


def _fraction(value: Any) -> float | None:
    """A memory fraction; dask's ``False`` (off) is None."""
    return None if value is False or value is None else float(value)


#: shoal key -> (distributed key, parser, keyword of the config dataclass)
SCHEDULER_KEYS: dict[str, tuple[str | None, Callable[[Any], Any], str]] = {
    "scheduler.worker-ttl": ("distributed.scheduler.worker-ttl", parse_timedelta, "worker_ttl"),
    "scheduler.allowed-failures": (
        "distributed.scheduler.allowed-failures",
        int,
        "allowed_failures",
    ),
    "scheduler.allow-client-code": (None, bool, "allow_client_code"),
    "scheduler.preload": ("distributed.scheduler.preload", tuple, "preload"),
    "scheduler.spare-copy-bytes": (None, parse_bytes, "spare_copy_bytes"),
    "scheduler.speculation-depth": (None, int, "speculation_depth"),
}
WORKER_KEYS: dict[str, tuple[str | None, Callable[[Any], Any], str]] = {
    "worker.heartbeat-interval": (None, parse_timedelta, "heartbeat_interval"),
    "worker.memory.target": (
        "distributed.worker.memory.target",
        _fraction,
        "memory_target_fraction",
    ),
    "worker.memory.spill": ("distributed.worker.memory.spill", _fraction, "memory_spill_fraction"),
    "worker.memory.pause": ("distributed.worker.memory.pause", _fraction, "memory_pause_fraction"),
    "worker.memory.spill-writes-wait": (None, parse_timedelta, "spill_writes_wait"),
    "worker.connections.outgoing": (
        "distributed.worker.connections.outgoing",
        int,
        "total_out_connections",
    ),
    "worker.connections.incoming": (
        "distributed.worker.connections.incoming",
        int,
        "total_in_connections",
    ),
    "worker.transfer-bytes": (
        "distributed.worker.transfer.message-bytes-limit",
        parse_bytes,
        "total_comm_nbytes",
    ),
    "worker.shared-memory": (None, bool, "shared_memory"),
    "worker.lifetime.duration": (
        "distributed.worker.lifetime.duration",
        parse_timedelta,
        "lifetime",
    ),
    "worker.lifetime.stagger": (
        "distributed.worker.lifetime.stagger",
        parse_timedelta,
        "lifetime_stagger",
    ),
    "worker.lifetime.restart": ("distributed.worker.lifetime.restart", bool, "lifetime_restart"),
}
CLIENT_KEYS: dict[str, tuple[str | None, Callable[[Any], Any], str]] = {
    "client.connect-timeout": ("distributed.comm.timeouts.connect", parse_timedelta, "timeout"),
}


def load() -> None:
    """Put shoal's defaults and ``SHOAL_*`` variables into dask.config (once)."""
    global _loaded
    with _lock:
        if _loaded:
            return
        defaults = yaml.safe_load(_DEFAULTS_FILE.read_text())
        dask.config.update_defaults(defaults)
        from_env = dask.config.collect_env(_shoal_environ())
        if from_env:
            dask.config.update(dask.config.config, from_env, priority="new")
        _loaded = True


def _shoal_environ() -> dict[str, str]:
    """``SHOAL_A__B=v`` as dask would read ``DASK_SHOAL__A__B=v`` (names without ``__``,
    such as ``SHOAL_TOKEN``, are not settings)."""
    return {
        "DASK_SHOAL__" + name[len("SHOAL_") :]: value
        for name, value in os.environ.items()
        if name.startswith("SHOAL_") and "__" in name
    }


def _default_of(key: str) -> Any:
    """The value of ``key`` in dask.config's defaults (the packages' YAML), or None."""
    merged: dict[str, Any] = {}
    for defaults in dask.config.defaults:
        dask.config.update(merged, defaults)
    return dask.config.get(key, default=None, config=merged)


_MISSING = object()


def get(key: str, distributed_key: str | None = None) -> Any:
    """The value of ``shoal.<key>``, or of ``distributed_key`` when only that was set."""
    load()
    value = dask.config.get(f"shoal.{key}", default=_MISSING)
    if value is _MISSING:  # a dask.config.set block that made "shoal" removed it on exit
        value = _default_of(f"shoal.{key}")
    if distributed_key is None or value != _default_of(f"shoal.{key}"):
        return value
    other = dask.config.get(distributed_key, default=_MISSING)
    if other is _MISSING or other == _default_of(distributed_key):
        return value
    return other


def _settings(keys: dict[str, tuple[str | None, Callable[[Any], Any], str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, (distributed_key, parse, name) in keys.items():
        value = get(key, distributed_key)
        out[name] = None if value is None else parse(value)
    return out


def scheduler_settings() -> dict[str, Any]:
    """``SchedulerConfig`` keywords from dask.config."""
    return _settings(SCHEDULER_KEYS)


def worker_settings() -> dict[str, Any]:
    """``WorkerConfig`` keywords from dask.config."""
    return _settings(WORKER_KEYS)


def client_settings() -> dict[str, Any]:
    """``Client`` keywords from dask.config."""
    return _settings(CLIENT_KEYS)


def worker_start_settings() -> dict[str, Any]:
    """What a worker process reads before it registers, resolved here for a nanny to pass
    it (``shoal.inherited_settings``): JSON-ready."""
    from shoal import inherited_settings

    config = inherited_settings.json_ready(dask.config.config)
    if len(json.dumps(config)) > MAX_SHIPPED_CONFIG:  # one variable may hold 128 KiB at most
        logger.warning(
            "dask.config here is over %d bytes as JSON: worker processes read their own",
            MAX_SHIPPED_CONFIG,
        )
        config = {}
    return {
        inherited_settings.WORKER: worker_settings(),
        inherited_settings.UVLOOP: bool(get(inherited_settings.UVLOOP)),
        inherited_settings.DASK_CONFIG: config,
    }


def documented_keys() -> list[tuple[str, str | None]]:
    """Every shoal key with the distributed key it honours (for the README)."""
    table = {**SCHEDULER_KEYS, **WORKER_KEYS, **CLIENT_KEYS}
    return [(f"shoal.{k}", d) for k, (d, _, _) in table.items()]
