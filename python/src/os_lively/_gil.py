"""The few calls that keep the GIL: those that take about 100 ns.

cffi releases the GIL around every foreign call, and taking it back after
a call costs up to the interpreter's switch interval (5 ms by default)
whenever another Python thread is busy: a 100 ns `view.is_up` would
then wait 5 ms. ctypes' `PyDLL` calls without releasing the GIL, so the
short calls that never block (no network, no waiting; a lock at most,
never held by a thread that needs the GIL) go through it instead. They
also cannot race a `close()` on another thread: holding the GIL, nothing
else runs Python code until they return.

The library loaded here is the very file cffi loaded (`dlopen` of the same
path gives the same handle), so the handles made through cffi are valid.
"""

import ctypes
import glob
import os

from . import _native
from ._native import ffi


def _library_path() -> str:
    here = os.path.dirname(os.path.abspath(_native.__file__))
    found = sorted(glob.glob(os.path.join(here, "lib*.so*")))
    if not found:
        raise ImportError("os_lively: no shared library next to %s" % here)
    return found[0]


_lib = ctypes.PyDLL(_library_path())

_P = ctypes.c_void_p
_S = ctypes.c_char_p
_BOOLP = ctypes.POINTER(ctypes.c_bool)


def _bind(name, restype, *argtypes):
    fn = getattr(_lib, name)
    fn.restype = restype
    fn.argtypes = argtypes
    return fn


#: `lively_result lively_view_is_up(const lively_view *, const char *, bool *)`
view_is_up = _bind("lively_view_is_up", ctypes.c_uint32, _P, _S, _BOOLP)
#: `lively_result lively_view_is_up_by_type_host(view, type, host, bool *)`
view_is_up_by_type_host = _bind("lively_view_is_up_by_type_host", ctypes.c_uint32, _P, _S, _S, _BOOLP)
#: `int64_t lively_view_revision(const lively_view *)`
view_revision = _bind("lively_view_revision", ctypes.c_int64, _P)
#: `bool lively_view_is_connected(const lively_view *)`
view_is_connected = _bind("lively_view_is_connected", ctypes.c_bool, _P)
#: `lively_result lively_client_heartbeat(const lively_client *, const char *)`
client_heartbeat = (
    _bind("lively_client_heartbeat", ctypes.c_uint32, _P, _S) if hasattr(_lib, "lively_client_heartbeat") else None
)

#: The functions bound here, by C name (tests check this list).
BOUND = tuple(
    name for name, fn in (
        ("lively_view_is_up", view_is_up),
        ("lively_view_is_up_by_type_host", view_is_up_by_type_host),
        ("lively_view_revision", view_revision),
        ("lively_view_is_connected", view_is_connected),
        ("lively_client_heartbeat", client_heartbeat),
    ) if fn is not None
)


def address(handle) -> int:
    """A cffi pointer as the integer ctypes passes for a `void *` (0 for
    NULL)."""
    return int(ffi.cast("uintptr_t", handle))
