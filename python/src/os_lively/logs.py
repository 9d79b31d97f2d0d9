"""Routing the library's own log messages into Python's `logging`.

By default the library writes warnings and errors to stderr. After
`route_logs_to_python()`, its messages (reconnects, lease re-grants,
resyncs, skipped keys, ...) go to the logger `os_lively.lib` instead, so a
daemon's logging configuration (oslo.log, handlers, levels) applies.
"""

import atexit
import logging

from ._ffi import NULL, fail, ffi, lib

_logger = logging.getLogger("os_lively.lib")
_TO_PYTHON = {1: logging.ERROR, 2: logging.WARNING, 3: logging.INFO, 4: logging.DEBUG, 5: 5}
_routed = False


@ffi.def_extern()
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


def route_logs_to_python(level: int = logging.INFO) -> None:
    """Sends the library's messages at `level` and above to the logger
    `os_lively.lib` (call once, early; `level=None` restores stderr)."""
    global _routed
    if level is None:
        rc = lib.lively_set_log_callback(NULL, NULL, 0)
        _routed = False
    else:
        rc = lib.lively_set_log_callback(lib._os_lively_log_cb, NULL, _c_level(level))
        _routed = True
    if rc:
        fail(rc, "lively_set_log_callback")


@atexit.register
def _unroute() -> None:
    # Library threads must not call into an interpreter that is going away.
    if _routed:
        lib.lively_set_log_callback(NULL, NULL, 0)
