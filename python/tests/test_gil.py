"""The ~100 ns calls keep the GIL (issue 23): cffi releases it around
every call, and with a busy Python thread taking it back can cost a whole
switch interval. `view.is_up`, `revision`, `is_connected` and
`client.heartbeat` go through ctypes.PyDLL (os_lively._gil) instead."""

import ctypes
import sys
import threading
import time

import pytest

import os_lively
from os_lively import _gil
from os_lively import client as client_mod


def test_the_short_calls_are_bound_through_the_gil_holding_path():
    assert isinstance(_gil._lib, ctypes.PyDLL)
    for name in ("lively_view_is_up", "lively_view_is_up_by_type_host", "lively_view_revision",
                 "lively_view_is_connected"):
        assert name in _gil.BOUND
    assert client_mod._view_is_up is _gil.view_is_up
    if os_lively.features()["heartbeat"]:
        assert "lively_client_heartbeat" in _gil.BOUND


@pytest.fixture
def counting_thread():
    """A Python thread counting as fast as it can: its count moves only
    while it holds the GIL."""
    state = {"count": 0, "stop": False}

    def count():
        while not state["stop"]:
            state["count"] += 1

    t = threading.Thread(target=count, daemon=True)
    t.start()
    time.sleep(0.05)
    yield state
    state["stop"] = True
    t.join()


def test_the_gil_holding_path_holds_the_gil_for_the_whole_call(etcd, ns, counting_thread):
    """What the short calls rely on, shown with a call that lasts: a
    300 ms wait in the library through `_gil`'s PyDLL lets no Python
    thread run, the same wait through cffi lets the counting thread run
    all along."""
    next_held = _gil._lib.lively_subscription_next
    next_held.restype = ctypes.c_uint32
    next_held.argtypes = (ctypes.c_void_p, ctypes.c_uint64, ctypes.POINTER(ctypes.c_void_p))
    with os_lively.Client(etcd.url, namespace=ns) as c:
        sub = c.subscribe(uuid="0" * 32)  # no event will come: each next() waits its whole timeout
        event = ctypes.c_void_p()
        addr = _gil.address(sub._handle)
        # A 1 s switch interval, so the counting thread takes no turn of
        # its own between the two reads of its count: the sleep hands it
        # the GIL, and it gives it back 1 s later, leaving this thread a
        # whole interval for the 300 ms call.
        old = sys.getswitchinterval()
        sys.setswitchinterval(1.0)
        try:
            time.sleep(0.001)
            before = counting_thread["count"]
            rc = next_held(addr, 300, ctypes.byref(event))
            held = counting_thread["count"] - before
        finally:
            sys.setswitchinterval(old)
        assert rc == 0 and not event.value
        out = client_mod.ffi.new("lively_event **")
        before = counting_thread["count"]
        assert client_mod.lib.lively_subscription_next(sub._handle, 300, out) == 0
        released = counting_thread["count"] - before
        sub.close()
    assert released > 1000, "the counting thread did not run during a GIL-releasing call: %d" % released
    assert held < released / 100, "the GIL-holding call let the counting thread run: %d vs %d" % (held, released)
