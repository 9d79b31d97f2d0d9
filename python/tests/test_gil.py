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
from conftest import requires_heartbeat


def test_the_short_calls_are_bound_through_the_gil_holding_path():
    assert isinstance(_gil._lib, ctypes.PyDLL)
    for name in ("lively_view_is_up", "lively_view_is_up_by_type_host", "lively_view_revision",
                 "lively_view_is_connected"):
        assert name in _gil.BOUND
    assert client_mod._view_is_up is _gil.view_is_up
    if os_lively.features()["heartbeat"]:
        assert "lively_client_heartbeat" in _gil.BOUND


def _timed(fn, n):
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return time.perf_counter() - start


@pytest.fixture
def busy_threads():
    """Threads that always want the GIL, with a 20 ms switch interval: a
    call that drops the GIL then often waits milliseconds to get it back."""
    old = sys.getswitchinterval()
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            pass

    threads = [threading.Thread(target=spin, daemon=True) for _ in range(3)]
    sys.setswitchinterval(0.02)
    for t in threads:
        t.start()
    time.sleep(0.1)
    yield
    stop.set()
    for t in threads:
        t.join()
    sys.setswitchinterval(old)


@requires_heartbeat
def test_short_calls_do_not_wait_for_busy_threads(etcd, ns, busy_threads):
    with os_lively.Client(etcd.url, namespace=ns) as c:
        uuid = c.update("gil", "h", heartbeat=60)
        view = c.view()
        view.sync()
        n = 200
        for what, call in (("view.is_up", lambda: view.is_up(uuid)), ("heartbeat", lambda: c.heartbeat(uuid)),
                           ("view.revision", view.revision)):
            per_call = _timed(call, n) / n
            # Holding the GIL, 200 calls lose it to the busy threads at most
            # a few times in all (each loss: a 20 ms switch interval).
            assert per_call < 0.001, "%s: %.6f s per call with busy threads" % (what, per_call)
        view.close()
