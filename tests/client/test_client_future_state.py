"""FutureState: transitions, waiting from threads and coroutines, listeners, errors."""

from __future__ import annotations

import asyncio
import threading
import traceback

import tblib

from shoal.client.future_state import ErrorInfo, FutureState
from shoal.errors import CancelledError, FutureLostError, RemoteError
from shoal.protocol.serialize import serialize


def failing_user_function() -> None:
    raise ZeroDivisionError("the user's own error")


def remote_error() -> ErrorInfo:
    try:
        failing_user_function()
    except ZeroDivisionError as exc:
        tb = exc.__traceback__
        assert tb is not None
        return ErrorInfo(
            serialize(exc),
            serialize(tblib.Traceback(tb)),
            f"ZeroDivisionError: {exc}",
            "".join(traceback.format_exception(type(exc), exc, tb)),
        )
    raise AssertionError("unreachable")


def test_a_new_state_is_pending_and_allocates_nothing_for_waiting() -> None:
    state = FutureState("x")
    state.finish("int")
    assert state.status == "finished" and state.done() and state.type_name == "int"
    assert state._thread_event is None
    assert state._async_event is None
    assert state._listeners is None


def test_wait_times_out_on_a_pending_state() -> None:
    assert FutureState("x").wait(timeout=0.01) is False


def test_a_thread_waiting_is_woken_by_finish() -> None:
    state = FutureState("x")
    results: list[bool] = []
    waiter = threading.Thread(target=lambda: results.append(state.wait(timeout=30)))
    waiter.start()
    state.finish("int")
    waiter.join(30)
    assert results == [True]


def test_a_coroutine_waiting_is_woken_by_finish() -> None:
    async def main() -> str:
        state = FutureState("x")
        task = asyncio.create_task(state.wait_async())
        await asyncio.sleep(0)  # let the task start waiting
        assert not task.done()
        state.finish("int")
        await asyncio.wait_for(task, 30)
        return state.status

    assert asyncio.run(main()) == "finished"


def test_listeners_are_called_once_when_done() -> None:
    state = FutureState("x")
    calls: list[str] = []
    state.add_listener(lambda s: calls.append(s.status))
    assert calls == []
    state.finish("int")
    assert calls == ["finished"]
    state.reset()
    state.finish("int")
    assert calls == ["finished"]


def test_a_listener_added_after_done_is_called_at_once() -> None:
    state = FutureState("x")
    state.cancel("because")
    calls: list[str] = []
    state.add_listener(lambda s: calls.append(s.status))
    assert calls == ["cancelled"]


def test_a_removed_listener_is_not_called() -> None:
    state = FutureState("x")
    calls: list[str] = []

    def listener(s: FutureState) -> None:
        calls.append(s.status)

    state.add_listener(listener)
    state.remove_listener(listener)
    state.finish(None)
    assert calls == []


def test_reset_makes_waiters_wait_again() -> None:
    state = FutureState("x")
    state.fail(remote_error())
    assert state.wait(timeout=0) is True
    state.reset()
    assert state.status == "pending" and state.error is None
    assert state.wait(timeout=0.01) is False


def test_cancel_and_lose_carry_errors_of_their_kind() -> None:
    cancelled = FutureState("a")
    cancelled.cancel("stop")
    assert isinstance(cancelled.error and cancelled.error.rebuild(), CancelledError)
    assert "stop" in str(cancelled.error and cancelled.error.rebuild())
    lost = FutureState("b")
    lost.lose("worker died")
    assert isinstance(lost.error and lost.error.rebuild(), FutureLostError)


def test_a_remote_error_is_rebuilt_with_its_type_and_traceback() -> None:
    exc = remote_error().rebuild()
    assert type(exc) is ZeroDivisionError
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    assert "failing_user_function" in text


def test_raising_a_rebuilt_error_twice_does_not_grow_its_traceback() -> None:
    info = remote_error()

    def depth() -> int:
        try:
            raise info.rebuild()
        except ZeroDivisionError as exc:
            return len(traceback.extract_tb(exc.__traceback__))

    assert depth() == depth()


def test_an_unreadable_remote_error_becomes_a_remote_error() -> None:
    info = ErrorInfo(None, None, "WeirdError: something odd", "Traceback: ...")
    exc = info.rebuild()
    assert isinstance(exc, RemoteError)
    assert exc.type_name == "WeirdError" and "something odd" in str(exc)
