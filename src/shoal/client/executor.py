"""``Client.get_executor()``: the cluster as a ``concurrent.futures.Executor``.

Rules of this file:

* Each call is one ``Client.submit``; its ``concurrent.futures.Future`` follows the
  shoal future (result, exception, cancellation) through ``add_done_callback``.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any

from shoal.client.future import Future


class ClientExecutor(concurrent.futures.Executor):
    """Submits to a client; ``shutdown(wait=True)`` waits for what it submitted."""

    def __init__(self, client: Any, **submit_kwargs: Any) -> None:
        self._client = client
        self._kwargs = submit_kwargs
        self._futures: set[Future] = set()
        self._lock = threading.Lock()
        self._shutdown = False

    def submit(
        self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[Any]:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot submit to an executor that was shut down")
            shoal_future = self._client.submit(fn, *args, **self._kwargs, **kwargs)
            self._futures.add(shoal_future)
        out: concurrent.futures.Future[Any] = concurrent.futures.Future()
        out.set_running_or_notify_cancel()

        def follow(done: Future) -> None:
            with self._lock:
                self._futures.discard(done)
            if done.status == "finished":
                try:
                    out.set_result(done.result())
                except BaseException as exc:  # fetching the value failed
                    out.set_exception(exc)
            else:
                try:
                    out.set_exception(done.exception() or RuntimeError(done.status))
                except BaseException as exc:  # cancelled futures raise here
                    out.set_exception(exc)

        shoal_future.add_done_callback(follow)
        return out

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            pending = list(self._futures)
        if cancel_futures and pending:
            self._client.cancel(pending)
        elif wait and pending:
            from shoal.client.as_completed import wait as wait_all

            wait_all(pending)
