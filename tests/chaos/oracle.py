"""The in-process oracle: every digest of a DAG, computed without any cluster.

Rules of this file:

* It uses ``dag.digest``, the very function the tasks use, on the same inputs: a result
  that differs from the oracle is a wrong answer, never a different formula.
"""

from __future__ import annotations

import hashlib

from tests.chaos.dag import Dag, digest, key_of


def oracle_values(dag: Dag) -> dict[str, str]:
    """``{key: digest}`` for every task of ``dag``."""
    values: list[str] = []
    for i, deps in enumerate(dag.deps):
        values.append(digest(key_of(i), tuple(values[d] for d in deps)))
    return {key_of(i): v for i, v in enumerate(values)}


def combined(values: dict[str, str], keys: list[str]) -> str:
    """One digest over ``keys``' values, in order: the answer of a whole run."""
    h = hashlib.sha256()
    for key in keys:
        h.update(f"{key}={values[key]};".encode())
    return h.hexdigest()
