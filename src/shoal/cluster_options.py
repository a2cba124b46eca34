"""dask's ``LocalCluster`` keywords in shoal: which are honoured, which are refused.

Worker keywords (``local_directory=``, ``memory_limit=``, ``memory_target_fraction=``,
``resources=``, ``lifetime=``...) reach every worker, in-process or not: for worker
processes, those a ``Nanny`` takes (``shoal worker`` has flags for them) go to the
nanny, the rest travel as JSON in ``SHOAL_WORKER_OPTIONS`` (read by ``shoal.cli``).

Rules of this file:

* No IO. An unknown worker keyword is refused here, before anything starts, with the
  list of the ones shoal knows.
* No-ops are listed in ``NO_OPS`` with their reason (they show up in the docs).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
from typing import Any

from shoal.config import WorkerConfig

#: environment variable carrying worker options to worker processes (JSON object)
WORKER_OPTIONS_ENV = "SHOAL_WORKER_OPTIONS"

#: dask keywords accepted without effect, and why
NO_OPS = {
    "loop": "shoal clusters run on shoal's own event loop thread",
    "worker_dashboard_address": "workers serve /health and /metrics on a free port",
    "scheduler_sync_interval": "shoal's LocalCluster reads the scheduler's state directly",
    "interface": "give host= (an address); interfaces are not looked up",
    "dashboard": "use dashboard_address=None to start no dashboard",
}

#: dask keywords refused unless left at their default (None/empty)
REFUSED = {
    "services": "extra services are not offered",
    "worker_services": "extra worker services are not offered",
    "service_kwargs": "extra services are not offered",
    "blocked_handlers": "shoal's handlers are fixed; run with --allow-client-code off",
}

#: worker keywords a ``Nanny`` takes itself (the ``shoal worker`` command has flags for them)
_NANNY_KEYWORDS = frozenset({"local_directory", "lifetime", "lifetime_stagger", "lifetime_restart"})

_WORKER_FIELDS = {f.name for f in dataclasses.fields(WorkerConfig)}


def check_cluster_kwargs(kwargs: dict[str, Any]) -> None:
    """Refuse the dask keywords shoal does not offer (left at their default is fine)."""
    for name, reason in REFUSED.items():
        if kwargs.get(name):
            raise NotImplementedError(f"LocalCluster({name}=...): {reason}")


def check_worker_kwargs(kwargs: dict[str, Any], constructor: Any = None) -> None:
    """Refuse keywords neither ``WorkerConfig`` nor the worker's constructor takes."""
    known = set(_WORKER_FIELDS) | {"memory_limit"}
    if constructor is not None:
        known |= set(inspect.signature(constructor).parameters) - {"self", "config"}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise TypeError(
            f"LocalCluster got unknown worker options {unknown}; "
            f"worker options are {sorted(_WORKER_FIELDS)}"
        )


def nanny_arguments(kwargs: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The keywords a ``Nanny`` takes as flags for its worker (``local_directory``,
    ``lifetime``...), and the ``SHOAL_WORKER_OPTIONS`` JSON (or None) for the rest."""
    named: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    for name, value in kwargs.items():
        if value is None:
            continue
        if name in _NANNY_KEYWORDS:
            named[name] = value
        else:
            rest[name] = value
    rest = _crossing(rest)
    for name, value in rest.items():
        try:
            json.dumps(value)
        except TypeError:
            raise TypeError(
                f"LocalCluster({name}=...): a {type(value).__name__} cannot be sent to worker "
                "processes; use processes=False to give it to in-process workers"
            ) from None
    return named, json.dumps(rest) if rest else None


def _crossing(options: dict[str, Any]) -> dict[str, Any]:
    """``executor=``, ``data=`` and ``services=`` as they cross to a worker process
    (names and import paths; live objects refused with the reason)."""
    from shoal.worker.options import process_options

    crossing = {k: options.pop(k) for k in ("executor", "data", "services") if k in options}
    try:
        return {**options, **process_options(**crossing)}
    except TypeError as exc:
        raise TypeError(
            f"{str(exc).replace('Nanny(', 'LocalCluster(')}; or use processes=False"
        ) from None


def log_level_name(silence_logs: Any) -> str:
    """dask's ``silence_logs`` (a logging level, or False) as a ``--log-level`` name."""
    if silence_logs is False or silence_logs is None:
        return "info"
    if silence_logs is True:
        return "warning"
    if isinstance(silence_logs, int):
        return logging.getLevelName(silence_logs).lower()
    return str(silence_logs).lower()
