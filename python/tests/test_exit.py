"""A process's services go DOWN when it exits, a multiprocessing child's
included; a thread blocked in a subscription does not keep the process
alive at exit (issue 24, item 2)."""

import multiprocessing
import subprocess
import sys
import time

from os_lively import Client
from conftest import wait_for

_shared = {}


def _register_in_child(service_type):
    # The client was made by the parent: the child's call connects its own
    # (with its own lease), and the child then exits through os._exit().
    return _shared["client"].update(service_type, "child-host")


def test_multiprocessing_child_services_go_down_at_its_exit(etcd, ns):
    c = Client(etcd.url, namespace=ns, status_ttl=60)
    _shared["client"] = c
    try:
        ctx = multiprocessing.get_context("fork")
        pool = ctx.Pool(1)
        uuid = pool.apply(_register_in_child, ("mp-child",))
        assert c.is_up(uuid), "registered UP by the child, which still runs"
        pool.close()  # the worker exits normally (Pool.terminate() would kill it)
        pool.join()
        # The worker exited (not after the 60 s TTL: at once, by its close).
        started = time.monotonic()
        wait_for(lambda: not c.is_up(uuid), 15, "the child's service to go DOWN at its exit")
        assert time.monotonic() - started < 15

        p = ctx.Process(target=_register_in_child, args=("mp-process",))
        p.start()
        p.join(30)
        assert p.exitcode == 0
        infos = c.list(service_type="mp-process")
        assert len(infos) == 1
        wait_for(lambda: not c.is_up(infos[0].uuid), 15, "the Process's service to go DOWN at its exit")
    finally:
        _shared.clear()
        c.close()


def test_a_thread_iterating_a_subscription_does_not_block_exit(etcd, ns):
    script = """
import threading
import os_lively
c = os_lively.Client(%r, namespace=%r)
sub = c.subscribe()
started = threading.Event()

def consume():
    started.set()
    for _ in sub:
        pass

t = threading.Thread(target=consume)  # not a daemon thread
t.start()
started.wait(10)
c.update("exit-test", "h")
print("main done", flush=True)
""" % (etcd.url, ns)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "main done" in out.stdout, out
    with Client(etcd.url, namespace=ns) as c:
        assert [s.up for s in c.list(service_type="exit-test")] == [False], "closed at exit: DOWN at once"


def test_every_handle_works_again_in_a_forked_child(etcd, ns):
    """Item 7: client, view and iterated subscription behave alike after
    os.fork(): on their next use in the child they connect anew. A
    callback subscription stays the parent's (cancelled in the child)."""
    import os
    import select

    c = Client(etcd.url, namespace=ns)
    view = c.view()
    sub = c.subscribe(service_type="forked")
    cb = c.subscribe(lambda e: None, service_type="forked")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            assert sub.next(timeout=0) is None  # its first use: subscribes anew, from now on
            uuid = c.update("forked", "child")
            view.sync()
            seen = view.is_up(uuid)
            ev = sub.next(timeout=10)
            report = "%s %s %s %s" % (seen, ev is not None and ev.uuid == uuid, cb.cancelled, sub.cancelled)
            os.write(w, report.encode())
            os._exit(0)
        except BaseException as e:  # pragma: no cover - reported to the parent
            os.write(w, ("error %r" % e).encode())
            os._exit(1)
    os.close(w)
    ready, _, _ = select.select([r], [], [], 30)
    assert ready, "the child hung"
    report = os.read(r, 1000).decode()
    os.close(r)
    os.waitpid(pid, 0)
    assert report == "True True True False", report
    # The parent's handles go on.
    assert not cb.cancelled
    uuid = c.update("forked", "parent")
    ev = sub.next(timeout=10)
    while ev is not None and ev.uuid != uuid:
        ev = sub.next(timeout=10)
    assert ev is not None
    cb.cancel()
    sub.close()
    view.close()
    c.close()
