"""The library's own log messages, through Python's `logging`.

By default (from `import os_lively` on) the library's messages at INFO
and above (reconnects, lease re-grants, resyncs, skipped keys, ...) go to
the logger `os_lively.lib`, so a program's logging configuration
(`logging.basicConfig()`, oslo.log, handlers, levels) applies. As the
logging HOWTO advises for libraries, the package's logger `os_lively` has
a `NullHandler`: a program that configures no logging sees nothing.
Messages are handed over on a library thread of their own (never the one
keeping leases alive), which takes the GIL for each.

`route_logs_to_python(logging.DEBUG)` lets debug messages through too;
`route_logs_to_python(None)` sends warnings and errors to stderr instead
(the C library's default).
"""

import atexit
import logging

from ._ffi import NULL, fail, ffi, lib

_logger = logging.getLogger("os_lively.lib")
_TO_PYTHON = {1: logging.ERROR, 2: logging.WARNING, 3: logging.INFO, 4: logging.DEBUG, 5: 5}
_routed = False


# A libffi closure (the binding is cffi's ABI mode), alive for the process.
@ffi.callback("void(void *, lively_log_level, const char *)")
def _os_lively_log_cb(userdata, level, message) -> None:
    try:
        _logger.log(_TO_PYTHON.get(level, logging.WARNING), "%s", ffi.string(message).decode("utf-8", "replace"))
    except BaseException:  # never raise into a library thread
        pass


def _c_level(py_level: int) -> int:
    for threshold, c in ((logging.ERROR, 1), (logging.WARNING, 2), (logging.INFO, 3), (logging.DEBUG, 4)):
        if py_level >= threshold:
            return c
    return 5


def route_logs_to_python(level: "int | None" = logging.INFO) -> None:
    """Sends the library's messages at `level` and above to the logger
    `os_lively.lib` (the default, at INFO, from import on); `level=None`
    sends warnings and errors to stderr instead, as the C library does."""
    global _routed
    if level is None:
        rc = lib.lively_set_log_callback(NULL, NULL, 0)
        _routed = False
    else:
        rc = lib.lively_set_log_callback(_os_lively_log_cb, NULL, _c_level(level))
        _routed = True
    if rc:
        fail(rc, "lively_set_log_callback")


@atexit.register
def _unroute() -> None:
    # Library threads must not call into an interpreter that is going away.
    if _routed:
        lib.lively_set_log_callback(NULL, NULL, 0)


logging.getLogger("os_lively").addHandler(logging.NullHandler())
route_logs_to_python(logging.INFO)
