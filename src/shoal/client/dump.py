"""Writing ``Client.dump_cluster_state`` files (msgpack, gzipped; or YAML).

Rules of this file:

* Values msgpack cannot carry are written as their ``repr``; writing never fails on them.
"""

from __future__ import annotations

import gzip
from typing import Any

import msgpack


def write_dump(state: dict[str, Any], filename: str, fmt: str) -> str:
    """Write ``state`` to ``filename`` + the format's suffix; the path written."""
    if fmt == "msgpack":
        path = filename if filename.endswith(".msgpack.gz") else filename + ".msgpack.gz"
        with gzip.open(path, "wb") as f:
            f.write(msgpack.packb(state, default=repr, strict_types=False))
        return path
    if fmt == "yaml":
        import yaml

        path = filename if filename.endswith(".yaml") else filename + ".yaml"
        with open(path, "w") as f:
            yaml.safe_dump(_plain(state), f)
        return path
    raise ValueError(f"dump_cluster_state: format must be 'msgpack' or 'yaml', not {fmt!r}")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)
