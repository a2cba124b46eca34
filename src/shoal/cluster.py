"""``shoal.cluster``: where ``LocalCluster`` lived first; it now lives in ``shoal.deploy``.

Kept so ``from shoal.cluster import LocalCluster`` goes on working.
"""

from __future__ import annotations

from shoal.deploy.local import LocalCluster, default_layout

__all__ = ["LocalCluster", "default_layout"]
