"""Replies and remote exceptions: original type, remote traceback, text fallbacks."""

from __future__ import annotations

import traceback
from typing import Any

import pytest

from shoal.comm import error_reply, exception_from_reply, ok_reply, raise_remote
from shoal.comm.rpc import unwrap_reply
from shoal.errors import KilledWorker, ProtocolError, RemoteError
from shoal.protocol import Serialized, dumps, loads


def over_the_wire(msg: Any) -> Any:
    return loads([memoryview(bytes(f)) for f in dumps(msg)])


class CustomError(Exception):
    pass


class Unpicklable(Exception):
    def __reduce__(self) -> Any:
        raise TypeError("no pickling for me")


def remote_function_that_fails(exc: BaseException) -> None:
    raise exc


def reply_for(exc: BaseException) -> dict[str, Any]:
    try:
        remote_function_that_fails(exc)
    except BaseException as caught:
        return over_the_wire(error_reply(caught))  # type: ignore[no-any-return]
    raise AssertionError("unreachable")


def test_ok_reply() -> None:
    assert ok_reply(5) == {"status": "OK", "result": 5}
    assert unwrap_reply(over_the_wire(ok_reply([1, 2]))) == (1, 2)


@pytest.mark.parametrize(
    "exc",
    [ValueError("bad value"), CustomError("custom"), KilledWorker("k", 3, "w", "oom")],
    ids=["builtin", "custom", "shoal"],
)
def test_remote_exception_keeps_its_type_and_traceback(exc: BaseException) -> None:
    reply = reply_for(exc)
    assert isinstance(reply["exception"], Serialized)  # travels opaque until asked for
    with pytest.raises(type(exc)) as info:
        raise_remote(reply)
    assert str(info.value) == str(exc)
    frames = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert "remote_function_that_fails" in frames


def test_reply_carries_text_fallbacks() -> None:
    reply = reply_for(CustomError("custom"))
    assert reply["status"] == "error"
    assert reply["type"] == f"{__name__}.CustomError"
    assert reply["text"] == "custom"
    assert "remote_function_that_fails" in reply["traceback_text"]
    assert reply_for(ValueError("x"))["type"] == "ValueError"


def test_unpicklable_exception_falls_back_to_remote_error() -> None:
    reply = reply_for(Unpicklable("cannot travel"))
    assert reply["exception"] is None
    exc = exception_from_reply(reply)
    assert isinstance(exc, RemoteError)
    assert exc.type_name == f"{__name__}.Unpicklable"
    assert exc.message == "cannot travel"
    assert "remote_function_that_fails" in exc.traceback_text


def test_exception_whose_type_is_unknown_here_falls_back_to_remote_error() -> None:
    reply = reply_for(CustomError("from a library we do not have"))
    # what the sender pickled refers to a module this side cannot import
    reply["exception"] = Serialized(b"cno_such_module\nNoSuchError\n(S'x'\ntR.")
    with pytest.raises(RemoteError, match="CustomError: from a library we do not have") as info:
        raise_remote(reply)
    assert "remote_function_that_fails" in info.value.traceback_text


def test_without_deserializing_nothing_is_unpickled() -> None:
    reply = reply_for(CustomError("custom"))
    exc = exception_from_reply(reply, deserialize=False)
    assert isinstance(exc, RemoteError)
    assert exc.type_name.endswith("CustomError")
    with pytest.raises(RemoteError):
        unwrap_reply(reply, deserialize=False)


def test_exception_never_raised_has_no_traceback_but_travels() -> None:
    reply = over_the_wire(error_reply(KeyError("k")))
    assert reply["traceback"] is None
    with pytest.raises(KeyError):
        raise_remote(reply)


@pytest.mark.parametrize("reply", [None, 5, {"status": "weird"}, {"no": "status"}])
def test_malformed_replies_are_protocol_errors(reply: Any) -> None:
    with pytest.raises(ProtocolError):
        unwrap_reply(reply)


def test_exception_from_a_non_error_reply_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        exception_from_reply(ok_reply(1))
