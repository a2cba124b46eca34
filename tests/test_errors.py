"""shoal.errors: the tree in the docstring is the tree in the code."""

from __future__ import annotations

import builtins
import inspect
import pickle
import re

import pytest

from shoal import errors
from shoal.errors import (
    InvalidTransition,
    KilledWorker,
    RemoteError,
    ShoalError,
    ShoalTimeoutError,
    TaskError,
)

#: a node of the drawing: tree guides, then a class name, then optional "(+ OtherBase)"
_NODE = re.compile(r"^(?P<guides>[ │├└─]*?)(?P<name>[A-Z]\w*)(?:\s+\(\+\s*(?P<extra>\w+)\))?")


def parse_tree(doc: str) -> list[tuple[str, str]]:
    """(child, parent) edges of the ``::`` drawing in ``doc``; extra bases count as parents."""
    block = doc.split("::", 1)[1]
    edges: list[tuple[str, str]] = []
    stack: list[tuple[int, str]] = []  # (column of the name, name), root first
    for line in block.splitlines():
        match = _NODE.match(line)
        is_node = match is not None and ("──" in match["guides"] or not stack)
        if not line.strip():
            if stack:
                break  # the drawing ends at the first blank line after it starts
            continue
        if not is_node:
            continue  # a wrapped description
        assert match is not None
        column = match.start("name")
        while stack and stack[-1][0] >= column:
            stack.pop()
        if stack:
            edges.append((match["name"], stack[-1][1]))
        if match["extra"]:
            edges.append((match["name"], match["extra"]))
        stack.append((column, match["name"]))
    return edges


#: classes from outside shoal drawn as extra bases (dask's except clauses catch these)
FOREIGN_BASES = {"TimeoutError", "FuturesCancelledError"}


def test_cancelled_error_is_caught_as_dask_users_catch_it() -> None:
    import concurrent.futures

    with pytest.raises(concurrent.futures.CancelledError):
        raise errors.CancelledError("cancelled")


def _resolve(name: str) -> type:
    found = getattr(errors, name, None) or getattr(builtins, name)
    assert isinstance(found, type), name
    return found


def test_parse_tree_reads_nesting() -> None:
    drawing = """Doc.

    ::

        Root
        ├── A                  about a
        │   ├── A1             about a1
        │   │                  wrapped Description
        │   └── A2 (+ ValueError)
        └── B

    After."""
    assert parse_tree(drawing) == [
        ("A", "Root"),
        ("A1", "A"),
        ("A2", "A"),
        ("A2", "ValueError"),
        ("B", "Root"),
    ]


def test_every_edge_of_the_drawing_holds() -> None:
    edges = parse_tree(errors.__doc__ or "")
    assert len(edges) >= 14
    for child, parent in edges:
        assert _resolve(parent) in _resolve(child).__bases__, f"{child} should subclass {parent}"


def test_drawing_and_module_name_the_same_classes() -> None:
    drawn = {name for edge in parse_tree(errors.__doc__ or "") for name in edge}
    drawn -= FOREIGN_BASES
    defined = {
        name
        for name, obj in vars(errors).items()
        if inspect.isclass(obj)
        and issubclass(obj, BaseException)
        and obj.__module__ == errors.__name__
    }
    assert drawn == defined


def test_every_class_has_one_shoal_parent_in_the_drawing() -> None:
    edges = parse_tree(errors.__doc__ or "")
    shoal_parents: dict[str, list[str]] = {}
    for child, parent in edges:
        if parent not in FOREIGN_BASES:
            shoal_parents.setdefault(child, []).append(parent)
    assert all(len(parents) == 1 for parents in shoal_parents.values())


def test_timeout_is_a_builtin_timeout() -> None:
    assert issubclass(ShoalTimeoutError, TimeoutError)
    assert issubclass(ShoalTimeoutError, ShoalError)
    with pytest.raises(TimeoutError):
        raise ShoalTimeoutError("deadline passed")


def test_killed_worker_pickles() -> None:
    exc = KilledWorker(("x", 1), 3, "tcp://10.0.0.1:1234", "worker-memory-exceeded")
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is KilledWorker
    assert isinstance(back, TaskError)
    assert (back.key, back.deaths, back.last_worker, back.reason) == (
        ("x", 1),
        3,
        "tcp://10.0.0.1:1234",
        "worker-memory-exceeded",
    )
    assert str(back) == str(exc)
    assert "('x', 1)" in str(back)
    assert "3 workers" in str(back)


def test_remote_error_pickles() -> None:
    exc = RemoteError("weird.ModuleError", "it broke", "Traceback (most recent call last): ...")
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is RemoteError
    assert (back.type_name, back.message, back.traceback_text) == (
        "weird.ModuleError",
        "it broke",
        "Traceback (most recent call last): ...",
    )
    assert str(back) == "weird.ModuleError: it broke"


def test_remote_error_traceback_defaults_empty() -> None:
    back = pickle.loads(pickle.dumps(RemoteError("X", "y")))
    assert back.traceback_text == ""


def test_invalid_transition_names_key_and_states() -> None:
    story: list[object] = [("x-1", "released", "waiting", "stim-1")]
    exc = InvalidTransition("x-1", "memory", "executing", story)
    text = str(exc)
    assert "'x-1'" in text
    assert "memory -> executing" in text
    assert "stim-1" in text
    assert (exc.key, exc.start, exc.finish, exc.story) == ("x-1", "memory", "executing", story)


def test_invalid_transition_story_is_bounded() -> None:
    story: list[object] = [f"entry-{i}" for i in range(100)]
    text = str(InvalidTransition("k", "a", "b", story))
    assert "entry-99" in text
    assert "entry-79" not in text
    assert "entry-80" in text
