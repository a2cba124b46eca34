"""Run part of dask's own test-suite with shoal as the scheduler, and again without.

Usage:
    .venv/bin/python scripts/dask_suite.py [--tests array/tests/test_reductions.py ...]
                                           [--only shoal|dask] [-k EXPR] [--timeout 60]

Test paths are relative to the installed ``dask`` package (default: array reductions and
dataframe groupby). Each run is a separate ``pytest`` process over dask's installed tests:

* ``shoal``: this file is loaded as a pytest plugin (``-p dask_suite``). At session start
  it starts an in-process ``LocalCluster`` (2 workers x 1 thread) and a default
  ``Client``, and replaces ``dask.base.get_scheduler`` so that *every* computation, even
  one asking for ``scheduler="sync"`` (as dask's ``assert_eq`` does), runs on shoal
  through ``client.get`` (and ``dask.persist`` through ``client.persist``).
* ``dask``: the same tests, with dask's own schedulers as the tests choose them.

It prints passed / failed / skipped / xfailed / error counts for each run, the tests
that fail only with shoal, and the most common first lines of their errors.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

DEFAULT_TESTS = ["array/tests/test_reductions.py", "dataframe/tests/test_groupby.py"]
HERE = Path(__file__).resolve().parent

# -- the pytest plugin (loaded in the shoal run only) ------------------------------------------
_session: dict[str, Any] = {}


def pytest_configure(config: Any) -> None:
    """Start a cluster and a default client; route every dask computation to it."""
    if os.environ.get("SHOAL_DASK_SUITE") != "1":
        return
    import dask.base

    from shoal import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    )
    client = Client(cluster)
    _session.update(cluster=cluster, client=client, original=dask.base.get_scheduler)

    calls = _session["graphs"] = [0]

    def shoal_get(dsk: Any, keys: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return client.get(dsk, keys, **kwargs)

    shoal_get.__self__ = client  # type: ignore[attr-defined]  # dask.persist delegates to it

    def shoal_scheduler(*args: Any, **kwargs: Any) -> Any:
        return shoal_get

    dask.base.get_scheduler = shoal_scheduler  # type: ignore[assignment]


def pytest_unconfigure(config: Any) -> None:
    if not _session:
        return
    import dask.base

    dask.base.get_scheduler = _session["original"]
    print(f"\nSHOAL_GRAPHS {_session['graphs'][0]}")
    _session["client"].close()
    _session["cluster"].close()


# -- the driver ------------------------------------------------------------------------------------
SUMMARY = re.compile(r"(\d+) (passed|failed|skipped|xfailed|xpassed|errors?|deselected)")


def run_suite(
    paths: list[str], with_shoal: bool, keyword: str | None, timeout: int
) -> tuple[dict[str, int], dict[str, str]]:
    """Counts by outcome, and ``{test id: first error line}`` for failures and errors."""
    import dask

    root = Path(dask.__file__).resolve().parent
    env = dict(os.environ, SHOAL_DASK_SUITE="1" if with_shoal else "0")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as tmp:
        ini = Path(tmp) / "pytest.ini"
        ini.write_text("[pytest]\n")  # not shoal's settings (warnings as errors...)
        command = [
            sys.executable, "-m", "pytest", *(str(root / p) for p in paths),
            "-c", str(ini), "--rootdir", str(root), "-p", "no:cacheprovider",
            "-q", "-rfE", "--tb=line", f"--timeout={timeout}", "-W", "ignore",
        ]  # fmt: skip
        if with_shoal:
            command += ["-p", "dask_suite"]
        if keyword:
            command += ["-k", keyword]
        result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=tmp)
    counts = _counts(result.stdout)
    graphs = re.search(r"SHOAL_GRAPHS (\d+)", result.stdout)
    if graphs:
        counts["graphs run on shoal"] = int(graphs.group(1))
    return counts, _failures(result.stdout)


def _counts(output: str) -> dict[str, int]:
    lines = [line for line in output.splitlines() if SUMMARY.search(line)]
    if not lines:
        return {"collection failed": 1}
    counts: dict[str, int] = {}
    for number, outcome in SUMMARY.findall(lines[-1]):
        counts[outcome.rstrip("s") if outcome.startswith("error") else outcome] = int(number)
    return counts


def _failures(output: str) -> dict[str, str]:
    found = {}
    for line in output.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            test, _, reason = line.partition(" - ")
            found[test.split(" ", 1)[1]] = reason.strip()[:160]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--tests", nargs="+", default=DEFAULT_TESTS)
    parser.add_argument("--only", choices=["shoal", "dask"])
    parser.add_argument("-k", dest="keyword")
    parser.add_argument("--timeout", type=int, default=60, help="seconds per test")
    args = parser.parse_args()
    runs = {}
    for name in ("dask", "shoal"):
        if args.only in (None, name):
            runs[name] = run_suite(args.tests, name == "shoal", args.keyword, args.timeout)
            print(f"{name:>6}: " + ", ".join(f"{v} {k}" for k, v in runs[name][0].items()))
            for test, reason in sorted(runs[name][1].items())[:5]:
                print(f"        {test}: {reason}")
    if len(runs) == 2:
        only_shoal = {t: r for t, r in runs["shoal"][1].items() if t not in runs["dask"][1]}
        print(f"failing with shoal only: {len(only_shoal)}")
        reasons = collections.Counter(_reason(r) for r in only_shoal.values())
        for reason, count in reasons.most_common(10):
            print(f"  {count:>5}  {reason}")
        for test in sorted(only_shoal)[:20]:
            print(f"    {test}")


def _reason(line: str) -> str:
    """The error's type and the start of its message, without ids and numbers."""
    return re.sub(r"0x[0-9a-f]+|\d+", "N", line)[:110]


if __name__ == "__main__":
    main()
