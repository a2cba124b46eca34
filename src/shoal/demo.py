"""``shoal demo``: estimate pi with a map and a pairwise tree reduction on a local cluster."""

from __future__ import annotations

import time
from typing import Any

import click


def count_inside(seed: int, samples: int) -> tuple[int, int]:
    """Throw ``samples`` random points at the unit square; count those inside the circle."""
    import numpy as np

    rng = np.random.default_rng(seed)
    points = rng.random((samples, 2))
    inside = int(np.count_nonzero((points**2).sum(axis=1) <= 1.0))
    return inside, samples


def add_counts(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    return a[0] + b[0], a[1] + b[1]


def run_demo(n_workers: int = 2, leaves: int = 2048, samples: int = 200_000) -> float:
    from shoal.client import Client
    from shoal.progressbar import progress

    start = time.perf_counter()
    with Client(n_workers=n_workers, threads_per_worker=1) as client:
        click.echo(f"{client}")
        login = getattr(client.cluster, "dashboard_login_link", None)
        if login:
            click.echo(f"Dashboard (this link logs you in): {login}")
        layer: list[Any] = client.map(count_inside, range(leaves), samples=samples)
        futures = list(layer)
        while len(layer) > 1:  # pairwise tree: partial sums travel between workers
            paired = [
                client.submit(add_counts, a, b)
                for a, b in zip(layer[::2], layer[1::2], strict=False)
            ]
            layer = paired + (layer[-1:] if len(layer) % 2 else [])
            futures += paired
        progress(futures)
        inside, total = layer[0].result()
    elapsed = time.perf_counter() - start
    estimate = 4.0 * int(inside) / int(total)
    click.echo(
        f"pi ~= {estimate:.6f} from {total:,} points in {len(futures):,} tasks "
        f"on {n_workers} workers, {elapsed:.2f}s"
    )
    return estimate
