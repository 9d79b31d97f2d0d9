"""Closing a handle while another thread uses it (issue 20, item 6):
the concurrent call returns (ClosedError, or the iteration ends) and the
C handle is freed only after it did, never under a running call."""

import gc
import threading
import time

import pytest

import os_lively
from os_lively import client as client_mod


@pytest.fixture
def frees(monkeypatch):
    """Records each C handle freed, with what the test says at that moment
    (`state["inside"]`: a thread is still inside a call)."""
    seen = []
    state = {"inside": False}
    real = client_mod._free

    def record(free, handle):
        seen.append((free, state["inside"]))
        real(free, handle)

    monkeypatch.setattr(client_mod, "_free", record)
    return seen, state


def test_leaving_with_subscribe_ends_a_concurrent_iteration(etcd, ns, frees):
    seen, state = frees
    got = []
    with os_lively.Client(etcd.url, namespace=ns) as c:
        with c.subscribe() as sub:
            ready = threading.Event()

            def consume():
                state["inside"] = True
                ready.set()
                try:
                    for ev in sub:
                        got.append(ev)
                finally:
                    state["inside"] = False

            t = threading.Thread(target=consume)
            t.start()
            ready.wait()
            c.update("closing", "h")
            deadline = time.monotonic() + 10
            while not got and time.monotonic() < deadline:
                time.sleep(0.01)
            assert got, "no event reached the consumer"
            time.sleep(0.1)  # the consumer is blocked in next() again
        left = time.monotonic()
        t.join(5)
        assert not t.is_alive(), "the iteration did not end when the with block was left"
        assert time.monotonic() - left < 2
        assert sub.cancelled and sub.next(0.01) is None
        del sub
        gc.collect()
        assert (client_mod.lib.lively_subscription_free, False) in seen
    assert all(not inside for _, inside in seen), seen


def test_close_from_another_thread_while_next_waits(etcd, ns, frees):
    seen, state = frees
    c = os_lively.Client(etcd.url, namespace=ns)
    sub = c.subscribe()
    result = []

    def consume():
        state["inside"] = True
        try:
            result.append(sub.next(30))
        finally:
            state["inside"] = False

    t = threading.Thread(target=consume)
    t.start()
    time.sleep(0.3)
    sub.close()
    t.join(5)
    assert not t.is_alive() and result == [None]
    del sub
    gc.collect()
    assert seen and all(not inside for _, inside in seen)
    c.close()


def test_view_close_ends_concurrent_reads_and_sync(etcd, ns, frees):
    seen, state = frees
    c = os_lively.Client(etcd.url, namespace=ns)
    uuid = c.update("viewed", "h")
    view = c.view()
    view.sync()
    errors = []
    started = threading.Barrier(3)

    def reader(call):
        started.wait()
        state["inside"] = True
        try:
            while True:
                call()
        except os_lively.ClosedError as e:
            errors.append(str(e))  # not the exception: its traceback holds the view
        finally:
            state["inside"] = False

    threads = [threading.Thread(target=reader, args=(lambda: view.is_up(uuid),)),
               threading.Thread(target=reader, args=(lambda: view.sync(30),))]
    for t in threads:
        t.start()
    started.wait()
    time.sleep(0.2)
    view.close()
    for t in threads:
        t.join(5)
        assert not t.is_alive(), "a call on the view did not end after close()"
    assert len(errors) == 2 and all("closed" in e for e in errors)
    with pytest.raises(os_lively.ClosedError):
        view.is_up(uuid)
    del view, threads
    gc.collect()
    assert (client_mod.lib.lively_view_free, False) in seen
    c.close()


def test_client_close_ends_concurrent_calls_and_iterations(etcd, ns, frees):
    seen, state = frees
    c = os_lively.Client(etcd.url, namespace=ns)
    uuid = c.update("client", "h")
    sub = c.subscribe()
    ended = []

    def caller():
        try:
            while True:
                c.is_up(uuid)
        except os_lively.ClosedError:
            ended.append("is_up")

    def consumer():
        for _ in sub:
            pass
        ended.append("iteration")

    threads = [threading.Thread(target=caller), threading.Thread(target=consumer)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    c.close()
    for t in threads:
        t.join(5)
        assert not t.is_alive(), "a call did not end after Client.close()"
    assert sorted(ended) == ["is_up", "iteration"]
    with pytest.raises(os_lively.ClosedError):
        c.is_up(uuid)
    del c, sub, threads
    gc.collect()
    assert seen and all(not inside for _, inside in seen)


def test_view_close_ends_a_sync_that_is_waiting():
    """A sync that cannot finish (etcd paused) returns ClosedError soon
    after close(), not at its 30 s timeout: within one slice, plus the
    request timeout of the round trip each slice starts (1 s here; the
    library's sync does not bound that read by its own timeout)."""
    import os
    import signal

    from conftest import Etcd

    etcd = Etcd()  # of its own: this test pauses it
    try:
        c = os_lively.Client(etcd.url, namespace="waiting", request_timeout=1)
        view = c.view()
        view.sync()
        os.kill(etcd.proc.pid, signal.SIGSTOP)
        outcome = []

        def wait():
            start = time.monotonic()
            try:
                view.sync(30)
                outcome.append("synced")
            except os_lively.ClosedError:
                outcome.append("closed")
            except os_lively.LivelyError as e:
                outcome.append(str(e))
            outcome.append(time.monotonic() - start)

        t = threading.Thread(target=wait)
        t.start()
        time.sleep(0.5)
        view.close()
        t.join(5)
        assert not t.is_alive(), "sync did not return after close()"
        assert outcome[0] == "closed" and outcome[1] < 0.5 + 1.5, outcome
    finally:
        os.kill(etcd.proc.pid, signal.SIGCONT)
        etcd.stop()
