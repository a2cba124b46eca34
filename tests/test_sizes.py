"""shoal.sizes: human sizes and durations, both ways."""

from __future__ import annotations

import datetime
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.sizes import format_bytes, format_time, parse_bytes, parse_timedelta

# -- parse_bytes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5GB", 5 * 10**9),
        ("5GiB", 5 * 2**30),
        ("10e9", 10 * 10**9),
        ("5000M", 5 * 10**9),
        ("100 kB", 100_000),
        ("100 KB", 100_000),
        ("1.5 MB", 1_500_000),
        ("1.5 mb", 1_500_000),
        ("2 KiB", 2048),
        ("2kib", 2048),
        ("3 MiB", 3 * 2**20),
        ("1 TiB", 2**40),
        ("1 PiB", 2**50),
        ("2 TB", 2 * 10**12),
        ("2 PB", 2 * 10**15),
        ("7 k", 7000),
        ("7G", 7 * 10**9),
        ("1T", 10**12),
        ("12", 12),
        ("12 B", 12),
        ("12b", 12),
        ("  12 B  ", 12),
        ("0", 0),
        (".5 kB", 500),
        ("1.5e3 kB", 1_500_000),
        ("+4 MB", 4_000_000),
        ("1e-3 MB", 1000),
    ],
)
def test_parse_bytes_strings(text: str, expected: int) -> None:
    assert parse_bytes(text) == expected
    assert type(parse_bytes(text)) is int


@pytest.mark.parametrize(("value", "expected"), [(0, 0), (123, 123), (2**40, 2**40), (1e9, 10**9)])
def test_parse_bytes_numbers_pass_through_as_int(value: float, expected: int) -> None:
    result = parse_bytes(value)
    assert result == expected
    assert type(result) is int


def test_parse_bytes_float_rounds_to_whole_bytes() -> None:
    assert parse_bytes(7.9) == 8
    assert parse_bytes("0.4 B") == 0


@pytest.mark.parametrize(
    "junk",
    [
        "",
        "   ",
        "GB",
        "5 XB",
        "5 GBs",
        "5 G B",
        "5 5",
        "-5GB",
        "nan",
        "inf",
        "1e999999999 B",
        "five GB",
        "5,000 B",
        "\u0665 GB",  # an Arabic-Indic digit five: not a number here
        "5 \u212ab",  # a Kelvin sign, which folds to "k" without re.ASCII
    ],
)
def test_parse_bytes_junk_names_the_input(junk: str) -> None:
    with pytest.raises(ValueError, match="cannot parse") as info:
        parse_bytes(junk)
    assert repr(junk) in str(info.value)


@pytest.mark.parametrize("junk", [-1, -0.5, math.nan, math.inf, True, None, [1], 2**100])
def test_parse_bytes_junk_values(junk: object) -> None:
    with pytest.raises(ValueError, match="cannot parse") as info:
        parse_bytes(junk)  # type: ignore[arg-type]
    assert repr(junk) in str(info.value)


# -- format_bytes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, "0 B"),
        (1, "1 B"),
        (921, "921 B"),
        (1024, "1.00 KiB"),
        (1536, "1.50 KiB"),
        (1536 * 2**20, "1.50 GiB"),
        (5 * 2**40, "5.00 TiB"),
        (3 * 2**50, "3.00 PiB"),
        (2**60, "1024.00 PiB"),
        (-2048, "-2.00 KiB"),
        (100.4, "100 B"),
    ],
)
def test_format_bytes(n: int, expected: str) -> None:
    assert format_bytes(n) == expected


def test_format_bytes_not_finite() -> None:
    assert format_bytes(math.inf) == "inf B"
    assert format_bytes(math.nan) == "nan B"


@given(st.integers(min_value=0, max_value=2**70))
def test_format_bytes_round_trips(n: int) -> None:
    back = parse_bytes(format_bytes(n))
    assert math.isclose(back, n, rel_tol=0.006, abs_tol=1)


# -- parse_timedelta -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 hour", 3600),
        ("1 Hour", 3600),
        ("2 hours", 7200),
        ("5 minutes", 300),
        ("1 minute", 60),
        ("500ms", 0.5),
        ("500 milliseconds", 0.5),
        ("2s", 2),
        ("2 sec", 2),
        ("2 seconds", 2),
        ("1.5h", 5400),
        ("1.5 hr", 5400),
        ("10us", 10e-6),
        ("10µs", 10e-6),
        ("10 microseconds", 10e-6),
        ("250 ns", 250e-9),
        ("3 days", 3 * 86400),
        ("1d", 86400),
        ("1 week", 604800),
        ("2w", 2 * 604800),
        ("3m 20s", 200),
        ("2h30m", 9000),
        ("1d 2h", 93600),
        ("12", 12),
        (" 12 ", 12),
        ("1e3 ms", 1),
        ("0", 0),
    ],
)
def test_parse_timedelta_strings(text: str, expected: float) -> None:
    result = parse_timedelta(text)
    assert math.isclose(result, expected, rel_tol=1e-12)
    assert type(result) is float


def test_parse_timedelta_numbers_are_seconds() -> None:
    assert parse_timedelta(3) == 3.0
    assert parse_timedelta(0.25) == 0.25
    assert type(parse_timedelta(3)) is float


def test_parse_timedelta_default_unit_applies_to_bare_numbers_only() -> None:
    assert parse_timedelta(250, default="ms") == 0.25
    assert parse_timedelta("250", default="ms") == 0.25
    assert parse_timedelta(2, default="minutes") == 120
    assert parse_timedelta("2 s", default="ms") == 2
    assert parse_timedelta("3m 20s", default="hours") == 200


def test_parse_timedelta_accepts_timedelta() -> None:
    assert parse_timedelta(datetime.timedelta(minutes=2, milliseconds=500)) == 120.5


def test_parse_timedelta_unknown_default_unit() -> None:
    with pytest.raises(ValueError, match="'fortnights'"):
        parse_timedelta(1, default="fortnights")


@pytest.mark.parametrize(
    "junk",
    [
        "",
        "hour",
        "5 parsecs",
        "-1s",
        "3m 20",
        "3m x",
        "20s 3",
        "nan s",
        "inf",
        "1e5000 s",
        "1 h h",
        "1,5 s",
    ],
)
def test_parse_timedelta_junk_names_the_input(junk: str) -> None:
    with pytest.raises(ValueError, match="cannot parse") as info:
        parse_timedelta(junk)
    assert repr(junk) in str(info.value)


@pytest.mark.parametrize(
    "junk", [-1, math.nan, math.inf, None, True, b"1s", datetime.timedelta(seconds=-1)]
)
def test_parse_timedelta_junk_values(junk: object) -> None:
    with pytest.raises(ValueError, match="cannot parse") as info:
        parse_timedelta(junk)  # type: ignore[arg-type]
    assert repr(junk) in str(info.value)


# -- format_time ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "0.00 s"),
        (1.5, "1.50 s"),
        (59.5, "59.50 s"),
        (0.23, "230.00 ms"),
        (12e-6, "12.00 us"),
        (5e-9, "5.00 ns"),
        (200, "3m 20s"),
        (60, "1m 0s"),
        (3599.7, "1h 0m"),
        (7300, "2h 2m"),
        (86400 * 3 + 3600, "3d 1h"),
        (-1.5, "-1.50 s"),
        (math.inf, "inf s"),
    ],
)
def test_format_time(seconds: float, expected: str) -> None:
    assert format_time(seconds) == expected


@given(st.floats(min_value=1e-9, max_value=1e9, allow_nan=False, allow_infinity=False))
def test_format_time_round_trips(seconds: float) -> None:
    back = parse_timedelta(format_time(seconds))
    # the coarsest format, "Xd Yh", is off by at most half an hour in a day
    assert math.isclose(back, seconds, rel_tol=0.021)


# -- parsing generated valid strings ---------------------------------------------------------

_DECIMAL_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6}
_DECIMAL_UNITS |= {"g": 10**9, "gb": 10**9, "t": 10**12, "tb": 10**12, "p": 10**15}
_DECIMAL_UNITS |= {"pb": 10**15}
_BINARY_UNITS = {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "pib": 2**50}
_BYTE_UNITS = _DECIMAL_UNITS | _BINARY_UNITS


def _any_case(text: str) -> st.SearchStrategy[str]:
    cases = [st.sampled_from(sorted({c.lower(), c.upper()})) for c in text]
    return st.tuples(*cases).map("".join)


_spaces = st.sampled_from(["", " ", "  "])


@given(
    whole=st.integers(min_value=0, max_value=10**6),
    hundredths=st.integers(min_value=0, max_value=99),
    unit=st.sampled_from(sorted(_BYTE_UNITS)).flatmap(
        lambda u: st.tuples(st.just(u), _any_case(u))
    ),
    space=_spaces,
)
def test_parse_bytes_generated(
    whole: int, hundredths: int, unit: tuple[str, str], space: str
) -> None:
    canonical, spelled = unit
    text = f"{whole}.{hundredths:02d}{space}{spelled}"
    exact = (whole * 100 + hundredths) * _BYTE_UNITS[canonical]
    # exact arithmetic: the result is the exact value rounded to a whole byte
    assert abs(parse_bytes(text) * 100 - exact) <= 50


@given(
    mantissa=st.integers(min_value=0, max_value=999),
    exponent=st.integers(min_value=0, max_value=12),
    space=_spaces,
)
def test_parse_bytes_generated_exponent(mantissa: int, exponent: int, space: str) -> None:
    assert parse_bytes(f"{mantissa}e{exponent}{space}B") == mantissa * 10**exponent


_TIME_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "seconds": 1, "m": 60}
_TIME_UNITS |= {"minutes": 60, "h": 3600, "hours": 3600, "d": 86400, "days": 86400}


@given(
    parts=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=10**6),
            st.sampled_from(sorted(_TIME_UNITS)),
            _spaces,
        ),
        min_size=1,
        max_size=4,
    ),
    separator=_spaces,
)
def test_parse_timedelta_generated(parts: list[tuple[int, str, str]], separator: str) -> None:
    text = separator.join(f"{n}{space}{unit}" for n, unit, space in parts)
    expected = sum(n * _TIME_UNITS[unit] for n, unit, _ in parts)
    assert math.isclose(parse_timedelta(text), expected, rel_tol=1e-9, abs_tol=1e-15)


def test_why_shoal_keeps_its_own_parsers() -> None:
    """DESIGN asks for dask's utilities where they fit. For these inputs they do not, so
    shoal keeps its parsers; if dask ever handles them all, this test says so."""
    import dask.utils

    # a negative size: dask accepts it, shoal refuses it
    assert dask.utils.parse_bytes("-5GB") == -5_000_000_000
    with pytest.raises(ValueError, match="-5GB"):
        parse_bytes("-5GB")
    # an overflowing size: dask raises OverflowError, not the ValueError callers catch
    with pytest.raises(OverflowError):
        dask.utils.parse_bytes("1e999999999")
    with pytest.raises(ValueError, match="1e999999999"):
        parse_bytes("1e999999999")
    # what format_time prints: dask cannot read it back, shoal can
    assert dask.utils.format_time(3725) == "62m 5s"
    with pytest.raises(ValueError):
        dask.utils.parse_timedelta("62m 5s")
    assert parse_timedelta("62m 5s") == 3725.0
    # a bad unit: dask raises KeyError
    with pytest.raises(KeyError):
        dask.utils.parse_timedelta("5 fortnights")
    with pytest.raises(ValueError, match="fortnights"):
        parse_timedelta("5 fortnights")


# -- why shoal keeps its own parsers (issue 11.8: "use dask's unless a test shows dask's is
# wrong for us"): dask.utils' versions break the rules of shoal.sizes on these inputs. When
# one of these starts failing, dask got it right: switch that function to dask's.
DASK_SIZE_BREAKS = [
    ("-5GB", "a negative size"),
    ("", "an empty size read as 1 byte"),
    (True, "a bool read as 1 byte"),
    ("1e999999999", "an OverflowError, not ValueError"),
]
DASK_DURATION_BREAKS = [
    ("3m 20s", "no compound durations"),
    ("junk", "a KeyError, not ValueError"),
    ("", "an IndexError, not ValueError"),
]


@pytest.mark.parametrize(("value", "why"), DASK_SIZE_BREAKS)
def test_dask_parse_bytes_breaks_our_rules(value: object, why: str) -> None:
    import dask.utils

    with pytest.raises(ValueError, match="cannot parse"):
        parse_bytes(value)  # type: ignore[arg-type]
    try:
        result: object = dask.utils.parse_bytes(value)  # type: ignore[arg-type]
    except ValueError:
        pytest.fail(f"dask's parse_bytes now refuses {value!r} cleanly: consider using it")
    except Exception as exc:
        result = exc
    assert not isinstance(result, ValueError), why


@pytest.mark.parametrize(("value", "why"), DASK_DURATION_BREAKS)
def test_dask_parse_timedelta_breaks_our_rules(value: str, why: str) -> None:
    import dask.utils

    if value == "3m 20s":
        assert parse_timedelta(value) == 200.0
    else:
        with pytest.raises(ValueError, match="cannot parse"):
            parse_timedelta(value)
    with pytest.raises(Exception) as caught:
        dask.utils.parse_timedelta(value)
    assert type(caught.value) is not ValueError or value == "3m 20s", why


def test_dask_formatters_do_not_read_back_through_ours() -> None:
    import dask.utils

    infinite: Any = float("inf")
    assert dask.utils.format_bytes(infinite) == "inf PiB"  # not a size anyone can parse
    assert format_bytes(-1024) == "-1.00 KiB" and dask.utils.format_bytes(-1024) == "-1024 B"
    assert dask.utils.format_time(7500) == "2hr 5m"  # shoal writes "2h 5m" and reads it back
    assert parse_timedelta(format_time(7500)) == 7500.0
