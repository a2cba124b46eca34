"""The one key_split: dask's semantics, so shoal groups keys as dask does."""

from __future__ import annotations

import dask.utils
import pytest

from shoal.graph.keys import funcname, key_split


@pytest.mark.parametrize(
    ("key", "prefix"),
    [
        ("inc-3", "inc"),
        ("inc-abc123", "inc"),
        ("inc-deadbeef", "inc"),
        ("sum-aggregate-1f2e", "sum-aggregate"),
        ("hello-world-1", "hello-world"),
        ("x", "x"),
        (("x", 0), "x"),
        (("x-1", 0, 1), "x"),
        ((("getitem-1a2b", 3), 1), "getitem"),
        ("('x-abc', 0, 1)", "x"),
        ("('rechunk-merge-f00d', 0)", "rechunk-merge"),
        (b"hello-world-1", "hello-world"),
        ("ae05086432ca935f6eba409a8ecd4896", "data"),
        ((), "tuple"),
    ],
)
def test_key_split(key: object, prefix: str) -> None:
    assert key_split(key) == prefix


@pytest.mark.parametrize("key", ["inc-3", ("x-1", 0), "('x-abc', 0, 1)", "a-b-c-1", 7, None])
def test_key_split_agrees_with_dask(key: object) -> None:
    assert key_split(key) == dask.utils.key_split(key)


def test_funcname_sees_through_partials_and_lambdas() -> None:
    import functools

    def inc(x: int) -> int:
        return x + 1

    assert funcname(functools.partial(inc, 1)) == "inc"
    assert funcname(lambda: None) == "lambda"
