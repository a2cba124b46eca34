#!/usr/bin/env python
"""Which public names of dask.distributed shoal has: ``distributed.Client`` methods,
``distributed.__all__``, ``Future``, ``as_completed`` and ``LocalCluster``, with counts.

    python scripts/api_coverage.py            # a report, missing names listed
    python scripts/api_coverage.py --json     # the same as JSON (the test reads it)

Needs ``distributed`` installed (a test dependency). Exits 0; the counts are the result.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def public(obj: Any) -> list[str]:
    return sorted(n for n in dir(obj) if not n.startswith("_"))


def compare(theirs: list[str], ours: Any) -> dict[str, Any]:
    have = [n for n in theirs if hasattr(ours, n)]
    missing = [n for n in theirs if not hasattr(ours, n)]
    return {"total": len(theirs), "have": have, "missing": missing}


def coverage() -> dict[str, dict[str, Any]]:
    import distributed

    import shoal

    return {
        "distributed.Client": compare(public(distributed.Client), shoal.Client),
        "distributed.__all__": compare(sorted(distributed.__all__), shoal),
        "distributed.Future": compare(public(distributed.Future), shoal.Future),
        "distributed.as_completed": compare(public(distributed.as_completed), shoal.as_completed),
        "distributed.LocalCluster": compare(public(distributed.LocalCluster), shoal.LocalCluster),
    }


def main(argv: list[str]) -> int:
    report = coverage()
    if "--json" in argv:
        print(json.dumps(report, indent=1))
        return 0
    for name, entry in report.items():
        print(f"{name}: {len(entry['have'])} of {entry['total']}")
        if entry["missing"]:
            print("  missing: " + ", ".join(entry["missing"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
