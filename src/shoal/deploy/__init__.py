"""Deploying shoal: one ``Cluster`` interface, on this machine, over SSH, on SLURM or PBS.

Names are imported lazily, so ``import shoal.deploy`` does not pull in asyncssh.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "Cluster": "shoal.deploy.cluster",
    "Job": "shoal.deploy.cluster",
    "Adaptive": "shoal.deploy.adaptive",
    "LocalCluster": "shoal.deploy.local",
    "SSHCluster": "shoal.deploy.ssh",
    "JobQueueCluster": "shoal.deploy.jobqueue",
    "SLURMCluster": "shoal.deploy.jobqueue",
    "PBSCluster": "shoal.deploy.jobqueue",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'shoal.deploy' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
