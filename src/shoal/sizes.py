"""Human sizes and durations: ``"5GB"``, ``"5GiB"``, ``"10e9"`` <-> bytes; ``"1 hour"`` <-> seconds.

Rules of this file:

* Pure: no IO, no config, no clock. Only the CLI and constructors call these, at the edges.
* Units are case-insensitive. Byte prefixes without ``i`` are decimal (``kB`` = 1000, and a
  bare ``k``/``M``/``G`` too); with ``i`` they are binary (``KiB`` = 1024).
* Numbers are parsed exactly (``Decimal``), so ``"1.5 MB"`` is exactly 1,500,000 bytes.
* Sizes and durations are never negative, NaN or infinite. Junk raises ``ValueError``
  quoting the input; nothing else escapes.
* ``format_bytes`` and ``format_time`` print what the parsers read back, within rounding.
* Why not ``dask.utils``' functions of the same names: they break these rules (negative
  sizes, ``""`` and ``True`` read as 1 byte, ``KeyError``/``OverflowError`` escaping, no
  ``"3m 20s"``); ``tests/test_sizes.py`` shows each case and fails once dask fixes it.
"""

from __future__ import annotations

import datetime
import math
import re
from decimal import Decimal, InvalidOperation

__all__ = ["format_bytes", "format_time", "parse_bytes", "parse_timedelta"]

_BYTE_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "byte": 1,
    "bytes": 1,
    **{p: 1000**i for i, p in enumerate("kmgtp", start=1)},
    **{p + "b": 1000**i for i, p in enumerate("kmgtp", start=1)},
    **{p + "i": 1024**i for i, p in enumerate("kmgtp", start=1)},
    **{p + "ib": 1024**i for i, p in enumerate("kmgtp", start=1)},
}

_SECOND_UNITS: dict[str, Decimal] = {}
for _names, _seconds in (
    (("ns", "nanosecond", "nanoseconds"), Decimal("1e-9")),
    (("us", "µs", "μs", "microsecond", "microseconds"), Decimal("1e-6")),
    (("ms", "millisecond", "milliseconds"), Decimal("1e-3")),
    (("s", "sec", "secs", "second", "seconds"), Decimal(1)),
    (("m", "min", "mins", "minute", "minutes"), Decimal(60)),
    (("h", "hr", "hrs", "hour", "hours"), Decimal(3600)),
    (("d", "day", "days"), Decimal(86400)),
    (("w", "wk", "week", "weeks"), Decimal(604800)),
):
    for _name in _names:
        _SECOND_UNITS[_name] = _seconds

#: largest value either parser returns; keeps "1e999999999" from building a giant integer
_MAX_VALUE = Decimal(2**80)

_NUMBER = r"\+?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?"
_SIZE_RE = re.compile(rf"\s*({_NUMBER})\s*([a-z]*)\s*", re.IGNORECASE | re.ASCII)
#: one ``<number> <unit>`` part of a duration; a duration is one or more of these
_TIME_PART_RE = re.compile(rf"\s*({_NUMBER})\s*([a-zµμ]*)\s*", re.IGNORECASE | re.ASCII)

_BINARY_PREFIXES = (("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))


def parse_bytes(value: str | int | float) -> int:
    """Bytes in ``value``: ``"5GB"`` = 5e9, ``"5GiB"`` = 5 * 2**30, ``"10e9"``, ``100``.

    >>> parse_bytes("1.5 MB")
    1500000
    >>> parse_bytes("2 KiB")
    2048
    """
    if isinstance(value, bool):
        raise ValueError(f"cannot parse {value!r} as a size in bytes")
    if isinstance(value, int | float):
        return _to_int(_checked_decimal(value, value, "a size in bytes"))
    if not isinstance(value, str):
        raise ValueError(f"cannot parse {value!r} as a size in bytes")
    match = _SIZE_RE.fullmatch(value)
    multiplier = _BYTE_UNITS.get(match.group(2).lower()) if match else None
    if match is None or multiplier is None:
        raise ValueError(f"cannot parse {value!r} as a size in bytes")
    number = _checked_decimal(value, match.group(1), "a size in bytes")
    return _to_int(_checked_decimal(value, number * multiplier, "a size in bytes"))


def format_bytes(n: float) -> str:
    """``n`` bytes for humans, in binary units: ``"1.50 GiB"``, ``"512 B"``.

    >>> format_bytes(1536 * 2**20)
    '1.50 GiB'
    """
    if not math.isfinite(n):
        return f"{n} B"
    sign = "-" if n < 0 else ""
    n = abs(n)
    for prefix, size in _BINARY_PREFIXES:
        if n >= 0.9 * size:
            return f"{sign}{n / size:.2f} {prefix}"
    return f"{sign}{round(n)} B"


def parse_timedelta(value: str | float | datetime.timedelta, default: str = "seconds") -> float:
    """Seconds in ``value``: ``"1 hour"``, ``"500ms"``, ``"1.5h"``, ``"3m 20s"``, ``2``.

    A bare number (or a string without a unit) is in ``default`` units.

    >>> parse_timedelta("1.5h")
    5400.0
    >>> parse_timedelta(250, default="ms")
    0.25
    """
    unit = _SECOND_UNITS.get(default.strip().lower())
    if unit is None:
        raise ValueError(f"unknown time unit {default!r}")
    if isinstance(value, datetime.timedelta):
        seconds = _checked_decimal(value, value.total_seconds(), "a duration")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = _checked_decimal(value, value, "a duration") * unit
    elif isinstance(value, str):
        seconds = _parse_duration_text(value, unit)
    else:
        raise ValueError(f"cannot parse {value!r} as a duration")
    return float(_checked_decimal(value, seconds, "a duration"))


def _parse_duration_text(text: str, default_unit: Decimal) -> Decimal:
    number = _SIZE_RE.fullmatch(text)
    if number is not None and not number.group(2):
        return _checked_decimal(text, number.group(1), "a duration") * default_unit
    total = Decimal(0)
    position = 0
    while True:
        part = _TIME_PART_RE.match(text, position)
        unit = _SECOND_UNITS.get(part.group(2).lower()) if part else None
        if part is None or unit is None:
            raise ValueError(f"cannot parse {text!r} as a duration")
        total += _checked_decimal(text, part.group(1), "a duration") * unit
        position = part.end()
        if position == len(text):
            return total


def format_time(seconds: float) -> str:
    """A duration for humans: ``"230.00 ms"``, ``"1.50 s"``, ``"3m 20s"``, ``"2h 5m"``.

    >>> format_time(200)
    '3m 20s'
    """
    if not math.isfinite(seconds):
        return f"{seconds} s"
    if seconds < 0:
        return "-" + format_time(-seconds)
    if seconds == 0:
        return "0.00 s"
    if seconds < 60:
        for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
            if seconds >= scale:
                return f"{seconds / scale:.2f} {unit}"
        return f"{seconds / 1e-9:.2f} ns"
    whole_seconds = round(seconds)
    if whole_seconds < 3600:
        return "{}m {}s".format(*divmod(whole_seconds, 60))
    whole_minutes = round(seconds / 60)
    if whole_minutes < 24 * 60:
        return "{}h {}m".format(*divmod(whole_minutes, 60))
    return "{}d {}h".format(*divmod(round(seconds / 3600), 24))


def _checked_decimal(original: object, number: object, what: str) -> Decimal:
    """``number`` as a finite, non-negative, not absurdly large ``Decimal``."""
    try:
        value = number if isinstance(number, Decimal) else Decimal(str(number))
    except (InvalidOperation, ValueError):
        raise ValueError(f"cannot parse {original!r} as {what}") from None
    if not value.is_finite() or value < 0 or value > _MAX_VALUE:
        raise ValueError(f"cannot parse {original!r} as {what}: out of range")
    return value


def _to_int(value: Decimal) -> int:
    return int(value.to_integral_value())
