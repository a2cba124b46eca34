"""The ``shoal worker`` command line every deployment starts its workers with.

Rules of this file:

* One builder for LocalCluster's processes, SSHCluster's hosts and job-queue scripts, so
  a flag is spelled once; each caller adds only what is its own (TLS files, a token file).
* Pure: builds lists of strings, runs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence


def worker_argv(
    python: Sequence[str],
    scheduler_address: str,
    *,
    name: str,
    no_auth: bool,
    host: str | None = None,
    nthreads: int | None = None,
    memory_limit: int | str | None = None,
    shoal_flags: Sequence[str] = (),
    extra: Sequence[str] = (),
) -> list[str]:
    """``python -m shoal [shoal_flags] worker ADDRESS --nanny --name NAME ...`` + ``extra``."""
    argv = [*python, "-m", "shoal", *shoal_flags, "worker", scheduler_address, "--nanny"]
    argv += ["--name", name]
    if host is not None:
        argv += ["--host", host]
    if nthreads is not None:
        argv += ["--nthreads", str(nthreads)]
    if memory_limit is not None:
        argv += ["--memory-limit", str(memory_limit)]
    if no_auth:
        argv.append("--no-auth")
    return argv + list(extra)
