"""The one validation layer between Python callers and the C library.

Python mistakes get Python's exceptions, with the argument named as the
caller spelled it: `TypeError` for a value of the wrong type (bytes where a
str is wanted, None for a required argument, a non-callable callback),
`ValueError` for a value out of range (a negative capacity, a TTL of 0).
What only the library can judge (a `/` in a host, a uuid that is not one,
a name too long for a key) is the library's `InvalidArgumentError`, which
is also a `ValueError`.

A str the C library cannot receive intact is refused here, before any
call: one with a NUL character (C would see it cut short, and could act on
another service than the one named) or one that is not valid Unicode (a
lone surrogate cannot be encoded as UTF-8). Both raise
`InvalidArgumentError` naming the argument; nothing is written.
"""

import datetime
import math
from ._native import ffi
from .errors import InvalidArgumentError

NULL = ffi.NULL
_INVALID_ARGUMENT = 1


def type_name(value) -> str:
    return "None" if value is None else type(value).__name__


def text(value, name: str, *, optional: bool = False) -> bytes:
    """A str argument as UTF-8 bytes for the C call; None -> NULL when
    `optional`. Refuses non-str values (bytes included) with `TypeError`,
    NUL characters and lone surrogates with `InvalidArgumentError`."""
    if not isinstance(value, str):
        if value is None and optional:
            return NULL
        raise TypeError("%s must be a str, not %s" % (name, type_name(value)))
    if "\0" in value:
        raise InvalidArgumentError(
            "%s contains a NUL character at index %d: %r" % (name, value.index("\0"), _clip(value)),
            _INVALID_ARGUMENT)
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidArgumentError(
            "%s is not valid Unicode (%s at index %d): %r" % (name, e.reason, e.start, _clip(value)),
            _INVALID_ARGUMENT) from None


def cstr(value, name: str, *, optional: bool = True):
    """A C string a struct field can point to (None -> NULL when
    `optional`); keep the result alive while the struct is used."""
    b = text(value, name, optional=optional)
    return b if b is NULL else ffi.new("char[]", b)


def _clip(s: str) -> str:
    return s if len(s) <= 80 else s[:77] + "..."


def number(value, name: str, *, what: str = "a number of seconds or a timedelta"):
    """A real number (int or float; bool refused), a timedelta as its
    seconds."""
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("%s must be %s, not %s" % (name, what, type_name(value)))
    if isinstance(value, float) and math.isnan(value):
        raise ValueError("%s must be %s, not NaN" % (name, what))
    return value


def seconds(value, name: str, *, minimum: float = 0.0, maximum: float = 86400.0,
            above_minimum: bool = False, unit: str = "") -> float:
    """Seconds (number or timedelta) within [minimum, maximum] (or above
    minimum with `above_minimum`)."""
    s = number(value, name)
    low_ok = s > minimum if above_minimum else s >= minimum
    if not low_ok or s > maximum:
        low = ("greater than %g" if above_minimum else "at least %g") % minimum
        raise ValueError("%s must be %s and at most %g seconds, not %r" % (name, low, maximum, value))
    return float(s)


def millis(value, name: str, **bounds) -> int:
    """`seconds()` as whole milliseconds (rounded up, so a positive value
    never becomes 0)."""
    return int(math.ceil(seconds(value, name, **bounds) * 1000))


def whole_seconds(value, name: str, *, minimum: int, maximum: int) -> int:
    """Whole seconds (an int, an integral float or timedelta) in range."""
    s = number(value, name)
    if math.isinf(s) or s != int(s) or not minimum <= s <= maximum:
        raise ValueError("%s must be whole seconds from %d to %d, not %r" % (name, minimum, maximum, value))
    return int(s)


def integer(value, name: str, *, minimum: int, maximum: int) -> int:
    """An int (bool refused) within [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("%s must be an int, not %s" % (name, type_name(value)))
    if not minimum <= value <= maximum:
        raise ValueError("%s must be from %d to %d, not %r" % (name, minimum, maximum, value))
    return int(value)


def flag(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError("%s must be a bool, not %s" % (name, type_name(value)))
    return value


def timestamp(value, name: str) -> int:
    """Unix seconds from a datetime (naive = local time, as
    `datetime.timestamp()` has it) or a non-negative number; None -> 0."""
    if value is None:
        return 0
    if isinstance(value, datetime.datetime):
        value = value.timestamp()
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("%s must be a datetime or Unix seconds, not %s" % (name, type_name(value)))
    if not 0 <= value < 2 ** 63 or (isinstance(value, float) and math.isnan(value)):
        raise ValueError("%s must be a datetime or Unix seconds from 0, not %r" % (name, value))
    return int(value)


def callback(value, name: str = "callback"):
    if value is not None and not callable(value):
        raise TypeError("%s must be callable (it receives each Event), not %s" % (name, type_name(value)))
    return value


def one_of(uuid, service_type, host, what: str, names=("uuid", "service_type", "host")) -> None:
    """A service is named by a uuid, or by both type and host; not both ways
    and not half of one."""
    u, t, h = names
    if uuid is not None:
        if service_type is not None or host is not None:
            raise ValueError("%s() takes %s, or %s and %s, not both" % (what, u, t, h))
        return
    if service_type is None or host is None:
        raise ValueError("%s() needs %s, or both %s and %s" % (what, u, t, h))


