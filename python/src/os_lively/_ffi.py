"""The compiled cffi binding and the few helpers every module shares.

cffi releases the GIL around every call into the library, so a blocking
call (a round trip to etcd) lets other Python threads run; callbacks from
library threads take the GIL (cffi's `extern "Python"`).
"""

from typing import Optional

from . import _check
from ._native import ffi, lib
from .errors import error_for

NULL = ffi.NULL

#: The loaded library has the heartbeat-deadline API
#: (`lively_service.heartbeat_ms`, `lively_client_heartbeat`).
HAS_HEARTBEAT = hasattr(lib, "lively_client_heartbeat") and "heartbeat_ms" in dict(
    ffi.typeof("struct lively_service").fields
)
#: The loaded library can lift a forced DOWN (`lively_client_up`).
HAS_UP = hasattr(lib, "lively_client_up")

UINT64_MAX = (1 << 64) - 1


def last_error() -> str:
    return ffi.string(lib.lively_last_error()).decode("utf-8", "replace")


def fail(code: int, what: str):
    """Raises the exception for a failed call (on the thread that made it:
    the library's last error is per thread)."""
    message = last_error() or ffi.string(lib.lively_result_str(code)).decode()
    raise error_for(code, with_context(what, message))


def with_context(what: str, message: str) -> str:
    """The library's message with the call described once: where the
    library already names the operation (`etcd unavailable: is_up: ...`),
    that name is replaced by `what` (`is_up <uuid>`), else `what` goes in
    front."""
    verb = what.split(" ", 1)[0]
    if not verb:
        return message
    if message.startswith(verb + ":"):
        return what + message[len(verb):]
    inner = ": %s:" % verb
    if inner in message:
        return message.replace(inner, ": %s:" % what, 1)
    return "%s: %s" % (what, message)


def text(p) -> str:
    """A NUL-terminated UTF-8 string from the library (NULL -> "")."""
    return ffi.string(p).decode("utf-8", "replace") if p != NULL else ""


def cstr(s: Optional[str], name: str):
    """A C string that a struct field can point to (None -> NULL); keep the
    returned object alive for as long as the struct is used. Validated by
    `_check.text` (str only, no NUL, valid Unicode)."""
    return _check.cstr(s, name)


def arg(s: Optional[str], name: str):
    """An optional str argument as bytes for the C call (None -> NULL),
    validated by `_check.text`."""
    return _check.text(s, name, optional=True)
