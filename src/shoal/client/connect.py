"""Where the client connects, and with which token, from what the user gave ``Client``.

* a ``LocalCluster`` (anything with ``.scheduler_address`` and ``.security``): its address
  and its security, and its scheduler's ``inproc://`` address when the client runs on the
  scheduler's loop (``in_process_address``);
* a string address: ``security=`` if given, else what ``discovery`` knows (a scheduler
  in this process, or the token file ``shoal scheduler`` created);
* ``scheduler_file=``: the address and token it names;
* nothing at all: a new ``LocalCluster`` on 127.0.0.1 with a random token, owned (and
  closed) by the client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shoal import discovery
from shoal.comm import Security


@dataclass(slots=True)
class Target:
    """A resolved connection target."""

    address: str
    security: Security
    #: the cluster object the user passed or the client started, if any
    cluster: Any = None
    #: whether the client started the cluster (and so closes it)
    owns_cluster: bool = False
    #: the same scheduler's ``inproc://`` address, usable from this loop (None: none)
    local_address: str | None = None


async def resolve(
    address: Any,
    scheduler_file: str | None,
    security: Security | None,
    cluster_kwargs: dict[str, Any],
) -> Target:
    """The address and security to connect with; starts a ``LocalCluster`` if needed."""
    if address is not None and not isinstance(address, str):
        if not hasattr(address, "scheduler_address"):
            raise TypeError(
                f"Client needs an address, a cluster or nothing, not {type(address).__name__}"
            )
        found = security or getattr(address, "security", None)
        if found is None:
            found = discovery.security_for(address.scheduler_address)
        return Target(address.scheduler_address, found, address, local_address=_local(address))
    if cluster_kwargs and (address is not None or scheduler_file is not None):
        raise TypeError(
            f"unexpected arguments {sorted(cluster_kwargs)}: they configure a LocalCluster, "
            "which is only started when Client() gets no address"
        )
    if isinstance(address, str):
        return Target(address, security or discovery.security_for(address))
    if scheduler_file is not None:
        found_address, found_security = discovery.read_scheduler_file(scheduler_file)
        return Target(found_address, security or found_security)
    return await _start_local_cluster(security, cluster_kwargs)


async def _start_local_cluster(security: Security | None, kwargs: dict[str, Any]) -> Target:
    from shoal.cluster import LocalCluster  # the embedded default; imported only when used

    if security is not None:
        kwargs = {**kwargs, "security": security}
    cluster = await LocalCluster(**kwargs, asynchronous=True)
    return Target(
        cluster.scheduler_address,
        cluster.security,
        cluster,
        owns_cluster=True,
        local_address=_local(cluster),
    )


def _local(cluster: Any) -> str | None:
    """The cluster's in-process scheduler address usable from the running loop, if any."""
    found = getattr(cluster, "in_process_address", None)
    address = found() if callable(found) else None
    return address if isinstance(address, str) else None


async def close_cluster(cluster: Any) -> None:
    """Close a cluster the client started (an asynchronous ``LocalCluster``)."""
    result = cluster.close()
    if hasattr(result, "__await__"):
        await result
