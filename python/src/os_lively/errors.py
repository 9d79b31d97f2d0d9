"""Exceptions: one subclass of `LivelyError` per `lively_result` code.

Each carries the library's code (`.code`) and message (`.message`, from
`lively_last_error()`). Where a built-in exception means the same thing, the
class also derives from it, so `except ValueError` / `except LookupError` /
`except TimeoutError` work as a Python programmer expects.
"""

from typing import Dict, Type


class LivelyError(Exception):
    """An os-lively call failed. `code` is the C library's `lively_result`."""

    code = 103

    def __init__(self, message: str, code: "int | None" = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidArgumentError(LivelyError, ValueError):
    """An argument (uuid, type, host, region, status, ...) is invalid."""

    code = 1


class NotFoundError(LivelyError, LookupError):
    """The named service does not exist."""

    code = 2


class ConflictError(LivelyError):
    """A write lost against concurrent writers, or the type+host pair
    belongs to another uuid."""

    code = 3


class CorruptRecordError(LivelyError):
    """A record stored in etcd could not be decoded."""

    code = 4


class UnavailableError(LivelyError, ConnectionError):
    """etcd could not be reached or refused the request; retry later."""

    code = 5


class TimeoutError(LivelyError, TimeoutError):  # noqa: A001 (shadows on purpose)
    """The call did not finish within its deadline; retry later."""

    code = 6


class AuthError(LivelyError):
    """etcd rejected the credentials."""

    code = 7


class ClosedError(LivelyError):
    """The client was closed."""

    code = 8


class WouldDeadlockError(LivelyError):
    """The call would block the thread that drives the client."""

    code = 9


class ForkedError(LivelyError):
    """A C handle was used in a child forked after it was made. The
    Python package never raises it for its own handles: in a forked child,
    clients, views and iterated subscriptions connect anew on their next
    use."""

    code = 10


class ConfigError(LivelyError, ValueError):
    """A configuration value is invalid."""

    code = 11


class InternalError(LivelyError):
    """An unexpected internal failure."""

    code = 12


class StaleError(LivelyError):
    """A view's watch has been disconnected longer than its staleness bound."""

    code = 13


class TooManyRequestsError(LivelyError):
    """etcd is overloaded (too many requests)."""

    code = 14


class NoSpaceError(LivelyError):
    """etcd is out of space (its quota is exceeded)."""

    code = 15


class PanicError(LivelyError):
    """The library panicked (a bug); the handle involved should be closed."""

    code = 100


class NullParameterError(LivelyError, ValueError):
    """A required argument was missing."""

    code = 101


class InvalidUtf8Error(LivelyError, ValueError):
    """A string argument was not valid UTF-8."""

    code = 102


class UnknownError(LivelyError):
    """A code this version of the package has no class for."""

    code = 103


class NotSupportedError(LivelyError, NotImplementedError):
    """The loaded library lacks the C function this call needs (an older
    build); see `os_lively.features()`."""

    code = 103


_BY_CODE: Dict[int, Type[LivelyError]] = {
    cls.code: cls
    for cls in (
        InvalidArgumentError, NotFoundError, ConflictError, CorruptRecordError,
        UnavailableError, TimeoutError, AuthError, ClosedError, WouldDeadlockError,
        ForkedError, ConfigError, InternalError, StaleError, TooManyRequestsError,
        NoSpaceError, PanicError, NullParameterError, InvalidUtf8Error, UnknownError,
    )
}


def error_for(code: int, message: str) -> LivelyError:
    """The exception for a `lively_result` code."""
    return _BY_CODE.get(code, UnknownError)(message, code)

__all__ = [name for name, value in list(globals().items())
           if isinstance(value, type) and issubclass(value, LivelyError)]
