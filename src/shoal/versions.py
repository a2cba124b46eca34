"""Versions of Python and of the packages that must match across a cluster.

Rules of this file:

* Reading versions does no import of the packages themselves (package metadata only).
"""

from __future__ import annotations

import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Any

#: packages whose versions must agree between client, scheduler and workers
REQUIRED = ("shoal", "dask", "cloudpickle", "msgpack", "tblib")
#: packages whose mismatch is worth a warning
OPTIONAL = ("numpy", "pandas", "distributed", "toolz", "lz4")


def get_versions(packages: list[str] | None = None) -> dict[str, Any]:
    """``{"host": {...}, "packages": {name: version or None}}`` for this process."""
    names = [*REQUIRED, *OPTIONAL, *(packages or [])]
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    found["python"] = ".".join(map(str, sys.version_info[:3]))
    host = {"python": sys.version, "OS": platform.system(), "machine": platform.machine()}
    return {"host": host, "packages": found}


def mismatches(versions: dict[str, Any]) -> list[str]:
    """Lines naming each package whose version differs between the client and any of
    the scheduler or workers (``versions`` as ``Client.get_versions`` returns it)."""
    client = versions["client"]["packages"]
    others = {"scheduler": versions.get("scheduler")} | dict(versions.get("workers") or {})
    lines = []
    for name in sorted(client):
        seen = {
            where: info["packages"].get(name)
            for where, info in others.items()
            if info is not None and name in info.get("packages", {})
        }
        differing = {w: v for w, v in seen.items() if v != client[name]}
        if differing:
            detail = ", ".join(f"{w}: {v}" for w, v in sorted(differing.items()))
            lines.append(f"{name}: client {client[name]}, {detail}")
    return lines
