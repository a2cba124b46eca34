"""Fetch failures are classified: the network, or the values themselves."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from shoal._types import Key
from shoal.errors import (
    CommBrokenError,
    CommClosedError,
    RemoteError,
    SerializationError,
    ShoalTimeoutError,
)
from shoal.protocol.messages import dumps, loads
from shoal.protocol.serialize import Serialized, deserialize
from shoal.worker.transfer import is_network_failure, unsendable_of, values_for_peer
from tests.conftest import received


def test_network_failures_are_told_from_value_failures() -> None:
    for exc in (CommBrokenError("reset"), CommClosedError("closed"), ShoalTimeoutError("late")):
        assert is_network_failure(exc), exc
    assert is_network_failure(ConnectionResetError()) and is_network_failure(TimeoutError())
    for other in (SerializationError("no"), RemoteError("X", "y", ""), ValueError("v")):
        assert not is_network_failure(other), other


def test_one_value_that_cannot_be_pickled_does_not_stop_the_others() -> None:
    data: dict[Key, Any] = {"good": [1, 2, 3], "bad": threading.Lock(), "other": "x"}
    sendable, unsendable = asyncio.run(values_for_peer(data, ["good", "bad", "other", "absent"]))
    assert sorted(sendable) == ["good", "other"]
    assert deserialize(sendable["good"]) == [1, 2, 3]
    assert list(unsendable) == ["bad"]
    # the error crosses the wire and comes back as the receiver's ErrorInfo
    (frames_back,) = [loads(received(dumps({"unsendable": unsendable})))]
    info = unsendable_of(frames_back)["bad"]
    assert "cannot send the value of 'bad'" in info.exception_text
    assert "Traceback" in info.traceback_text
    assert isinstance(info.exception, Serialized)
    rebuilt = deserialize(info.exception)
    assert isinstance(rebuilt, SerializationError)


def test_a_reply_without_errors_has_none() -> None:
    assert unsendable_of({"status": "OK", "data": {}}) == {}
