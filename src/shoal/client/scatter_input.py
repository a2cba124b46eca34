"""What ``Client.scatter`` was given: keys, pickled values, and the shape to hand back.

Built in the caller's thread, so pickling large values never holds up the loop.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal

from shoal._types import Key
from shoal.client.future import Future
from shoal.client.tasks import spec_token
from shoal.protocol.serialize import Serialized, serialize

Shape = Literal["single", "list", "tuple", "dict"]


def _data_key(value: object, hash: bool) -> str:
    prefix = type(value).__name__
    if not hash:
        return f"{prefix}-{uuid.uuid4().hex}"
    from dask.base import tokenize

    return f"{prefix}-{tokenize(value)}"


@dataclass(slots=True)
class ScatterInput:
    """Scattered data, keyed and pickled."""

    #: one key per item, in the order given (repeats when a list holds equal values)
    keys: list[Key]
    blobs: dict[Key, Serialized]
    #: a digest of each pickled value, to refuse other data under a live key
    tokens: dict[Key, str]
    shape: Shape

    @classmethod
    def make(cls, data: Any, hash: bool = True) -> ScatterInput:
        """Key and pickle ``data``: a dict (its keys are the keys), a list, a tuple, or
        a single object."""
        if isinstance(data, Future):
            raise TypeError("scatter got a Future: it is in the cluster already")
        shape: Shape
        if isinstance(data, dict):
            items = list(data.items())
            for key, _ in items:
                if not isinstance(key, str | tuple):
                    raise TypeError(f"scatter: a key must be a str or tuple, not {key!r}")
            shape = "dict"
        elif isinstance(data, list | tuple):
            items = [(_data_key(v, hash), v) for v in data]
            shape = "list" if isinstance(data, list) else "tuple"
        else:
            items = [(_data_key(data, hash), data)]
            shape = "single"
        blobs: dict[Key, Serialized] = {}
        for key, value in items:
            if key not in blobs:
                blobs[key] = serialize(value)
        tokens = {key: spec_token(blob) for key, blob in blobs.items()}
        return cls([key for key, _ in items], blobs, tokens, shape)

    def rebuild(self, futures: list[Future]) -> Any:
        """The futures, in the shape the data came in."""
        if self.shape == "dict":
            return dict(zip(self.keys, futures, strict=True))
        if self.shape == "list":
            return futures
        if self.shape == "tuple":
            return tuple(futures)
        return futures[0]
