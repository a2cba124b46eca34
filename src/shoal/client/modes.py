"""Typing of the two client modes: ``Client[Sync]`` blocks, ``Client[Async]`` awaits.

``Client()`` is a ``Client[Sync]`` and ``Client(asynchronous=True)`` a ``Client[Async]``
(overloads of ``Client.__init__``); ``Client(asynchronous=flag)`` with a plain ``bool``
is a ``Client[Mode]``. A method decorated with ``@by_mode`` and annotated
``-> Maybe[R]`` is then seen by a type checker as returning ``R`` on a synchronous
client and ``Awaitable[R]`` on an asynchronous one (``R | Awaitable[R]`` when the mode
is not known), through the overloaded ``__get__`` of ``ModeMethod``.

Rules of this file:

* Typing only: at run time ``by_mode`` returns the function itself, so behaviour,
  ``inspect.signature`` and ``help()`` are those of the plain method.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Generic,
    Literal,
    ParamSpec,
    Protocol,
    TypeVar,
    Union,
    overload,
)

__all__ = [
    "Async",
    "Maybe",
    "Mode",
    "ModeMethod",
    "Moded",
    "Sync",
    "by_mode",
    "by_mode_returning",
    "run_by_mode",
]

R = TypeVar("R")
P = ParamSpec("P")


class Mode:
    """The mode of a client, for type checkers only (never instantiated)."""


class Sync(Mode):
    """Methods block and return their results."""


class Async(Mode):
    """Methods return awaitables of their results."""


if TYPE_CHECKING:  # a default (PEP 696): a bare ``Client`` annotation is ``Client[Any]``
    from typing_extensions import TypeVar as TypeVarWithDefault

    M = TypeVarWithDefault("M", bound=Mode, covariant=True, default=Any)
else:
    M = TypeVar("M", bound=Mode, covariant=True)

#: what a mode-dependent method returns: the value, or an awaitable of it
Maybe = Union[R, Awaitable[R]]  # noqa: UP007 (a generic alias, subscripted at run time)


class Moded(Generic[M]):
    """Base of ``Client`` and its mixins: carries the mode type parameter."""

    #: set per client in ``Client.__init__``
    asynchronous: bool = False


class ModeMethod(Generic[P, R]):
    """What a type checker sees for a ``@by_mode`` method (see the module docstring)."""

    @overload
    def __get__(self, obj: None, owner: type) -> Callable[Concatenate[Any, P], Maybe[R]]: ...
    @overload
    def __get__(self, obj: Moded[Sync], owner: type) -> Callable[P, R]: ...
    @overload
    def __get__(self, obj: Moded[Async], owner: type) -> Callable[P, Awaitable[R]]: ...
    @overload
    def __get__(self, obj: Moded[Mode], owner: type) -> Callable[P, Maybe[R]]: ...
    def __get__(self, obj: object, owner: type) -> Any:
        raise NotImplementedError  # never called: by_mode returns the function itself


class by_mode_returning(Generic[R]):
    """``@by_mode_returning[A | B]()``: ``by_mode`` with the result type spelled out, for
    unions (inferring ``R`` from ``Maybe[A | B]`` would join ``A`` and ``B``)."""

    def __call__(self, fn: Callable[Concatenate[Any, P], Maybe[R]]) -> ModeMethod[P, R]:
        return fn  # type: ignore[return-value]  # typing only, as by_mode


if TYPE_CHECKING:

    def by_mode(fn: Callable[Concatenate[Any, P], Maybe[R]]) -> ModeMethod[P, R]:
        """Mark a method whose result depends on the client's mode."""

else:

    def by_mode(fn):
        """Mark a method whose result depends on the client's mode (typing only)."""
        return fn


# -- Client.run: its result also depends on wait= (False: None at once) ---------------------
OnError = Literal["raise", "return", "ignore"]
Workers = str | Iterable[str] | None


class _RunSync(Protocol):
    @overload
    def __call__(
        self,
        function: Callable[..., Any],
        *args: Any,
        workers: Workers = ...,
        wait: Literal[True] = ...,
        nanny: bool = ...,
        on_error: OnError = ...,
        **kwargs: Any,
    ) -> dict[str, Any]: ...
    @overload
    def __call__(
        self,
        function: Callable[..., Any],
        *args: Any,
        workers: Workers = ...,
        wait: Literal[False],
        nanny: bool = ...,
        on_error: OnError = ...,
        **kwargs: Any,
    ) -> None: ...


class _RunAsync(Protocol):
    @overload
    def __call__(
        self,
        function: Callable[..., Any],
        *args: Any,
        workers: Workers = ...,
        wait: Literal[True] = ...,
        nanny: bool = ...,
        on_error: OnError = ...,
        **kwargs: Any,
    ) -> Awaitable[dict[str, Any]]: ...
    @overload
    def __call__(
        self,
        function: Callable[..., Any],
        *args: Any,
        workers: Workers = ...,
        wait: Literal[False],
        nanny: bool = ...,
        on_error: OnError = ...,
        **kwargs: Any,
    ) -> Awaitable[None]: ...


class RunMethod:
    """What a type checker sees for ``Client.run`` (see ``run_by_mode``)."""

    @overload
    def __get__(self, obj: None, owner: type) -> Callable[..., Any]: ...
    @overload
    def __get__(self, obj: Moded[Sync], owner: type) -> _RunSync: ...
    @overload
    def __get__(self, obj: Moded[Async], owner: type) -> _RunAsync: ...
    @overload
    def __get__(self, obj: Moded[Mode], owner: type) -> _RunSync | _RunAsync: ...
    def __get__(self, obj: object, owner: type) -> Any:
        raise NotImplementedError  # never called: run_by_mode returns the function itself


if TYPE_CHECKING:

    def run_by_mode(fn: Callable[..., Maybe[dict[str, Any] | None]]) -> RunMethod:
        """``by_mode`` for ``run``: ``{worker: result}``, or None with ``wait=False``."""

else:

    def run_by_mode(fn):
        """``by_mode`` for ``run`` (typing only)."""
        return fn
