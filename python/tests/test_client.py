"""The Pythonic API, callbacks, fork and the GIL, against a real etcd."""

import logging
import os
import select
import threading
import time

import pytest

import os_lively
from os_lively import Client, DownReason, EventKind, Status
from conftest import requires_heartbeat, wait_for


@pytest.fixture
def client(etcd, ns):
    with Client(etcd.url, namespace=ns, status_ttl=5) as c:
        yield c


def test_register_query_list_down_delete(client, etcd, ns):
    uuid = client.update("nova-compute", "host-7", region="east")
    assert client.is_up(uuid)
    assert client.is_up(service_type="nova-compute", host="host-7")
    info = client.get(uuid)
    assert (info.uuid, info.service_type, info.host, info.region, info.status, info.up) == (
        uuid, "nova-compute", "host-7", "east", Status.UP, True)
    assert client.get(service_type="nova-compute", host="host-7") == info
    with pytest.raises(os_lively.NotFoundError) as e:
        client.get("0" * 32)
    assert isinstance(e.value, LookupError) and e.value.code == 2
    assert [s.uuid for s in client.list(region="east")] == [uuid]
    assert client.list(region="west") == []
    assert [s.uuid for s in client.list(status="UP")] == [uuid]
    client.down(uuid, "disk swap", start=1700000000)
    got = client.get(uuid)
    assert (got.up, got.status, got.maintenance_note, got.maintenance_start) == (False, Status.DOWN, "disk swap", 1700000000)
    assert client.delete(uuid) is True
    assert client.delete(uuid) is False
    with pytest.raises(os_lively.InvalidArgumentError):
        client.update("bad/type", "h")
    with pytest.raises(ValueError):
        client.is_up()


def test_from_env_and_close_revokes(env, etcd, ns):
    with Client.from_env() as owner, Client.from_env() as watcher:
        uuid = owner.update("svc", "h1")
        assert watcher.is_up(uuid)
    with Client.from_env() as c:
        assert not c.is_up(uuid)  # close revoked the lease: DOWN at once
    with pytest.raises(os_lively.ClosedError):
        owner.is_up(uuid)


def test_call_polling_is_a_setting_and_bad_values_are_refused(etcd, ns):
    with Client(etcd.url, namespace=ns, status_ttl=5, call_polling=0) as c:
        uuid = c.update("svc", "polling-off")
        assert c.is_up(uuid)
    with pytest.raises(ValueError, match="call_polling"):  # checked in Python, before any call
        Client(etcd.url, namespace=ns, call_polling=0.2)
    with pytest.raises(ValueError):
        Client(etcd.url, namespace=ns, call_polling=-1)


def test_view(client):
    uuid = client.update("svc", "h1")
    view = client.view()
    view.sync()
    assert view.is_up(uuid) is True
    assert view.is_up(service_type="svc", host="h1") is True
    assert view.is_up("0" * 32) is False
    assert view.get(uuid).uuid == uuid
    assert [s.uuid for s in view.list(service_type="svc")] == [uuid]
    assert view.revision() > 0 and view.is_connected()
    client.down(uuid)
    view.sync()
    assert view.is_up(uuid) is False


def test_pull_subscription_events_in_order(client):
    uuid = client.update("svc", "h1")
    sub = client.subscribe(uuid=uuid)
    guard = threading.Timer(20, sub.cancel)  # a missing event fails instead of hanging
    guard.daemon = True
    guard.start()
    client.down(uuid, "x")
    client.delete(uuid)
    kinds = []
    for ev in sub:
        kinds.append((ev.kind, ev.reason))
        if ev.kind == EventKind.REMOVED:
            sub.cancel()
    assert kinds[0] == (EventKind.DOWN, DownReason.FORCED)
    assert kinds[-1][0] == EventKind.REMOVED
    assert sub.next(timeout=5) is None and sub.cancelled  # cancelled: at once, no wait
    sub.close()


def test_callbacks_run_and_exceptions_are_logged(client, caplog):
    """A callback runs on a library thread for each event; one that raises
    is logged and the subscription goes on."""
    got = []
    main = threading.get_ident()

    def callback(ev):
        got.append((ev.kind, ev.service.host if ev.service else None, threading.get_ident() != main))
        if ev.service is not None and ev.service.host == "boom":
            raise RuntimeError("callback failure on purpose")

    with caplog.at_level(logging.ERROR, logger="os_lively"):
        sub = client.subscribe(callback, service_type="cb")
        client.update("cb", "boom")
        client.update("cb", "after")
        wait_for(lambda: len(got) >= 2, 10, "two callbacks")
    assert [(k, h) for k, h, _ in got[:2]] == [(EventKind.REGISTERED, "boom"), (EventKind.REGISTERED, "after")]
    assert all(other_thread for _, _, other_thread in got)
    assert any("callback failure on purpose" in r.getMessage() or (r.exc_info and "on purpose" in str(r.exc_info[1]))
               for r in caplog.records)
    sub.cancel()
    n = len(got)
    client.update("cb", "late")
    time.sleep(0.3)
    assert len(got) == n  # none after cancel returned


def test_cancel_from_inside_callback(client):
    got = []
    holder = {}

    def callback(ev):
        got.append(ev.kind)
        holder["sub"].cancel()

    holder["sub"] = client.subscribe(callback, service_type="c2")
    client.update("c2", "a")
    wait_for(lambda: got, 10, "first callback")
    client.update("c2", "b")
    time.sleep(0.3)
    assert got == [EventKind.REGISTERED]


def test_gil_released_during_blocking_calls(client):
    """Another Python thread makes progress while this one waits in the
    library (a pull subscription waiting for events, and round trips)."""
    sub = client.subscribe(service_type="nothing-here")
    counter = [0]
    stop = threading.Event()

    def count():
        while not stop.is_set():
            counter[0] += 1

    t = threading.Thread(target=count)
    t.start()
    try:
        time.sleep(0.05)
        # Reference: how far the counter gets while this thread sleeps
        # (time.sleep releases the GIL), on this machine under its load now.
        before = counter[0]
        time.sleep(0.6)
        reference = counter[0] - before
        before = counter[0]
        t0 = time.monotonic()
        assert sub.next(timeout=0.6) is None  # three 200 ms waits inside the library
        waited = time.monotonic() - t0
        progressed = counter[0] - before
    finally:
        stop.set()
        t.join()
        sub.close()
    assert waited >= 0.55
    # Holding the GIL through the waits would leave the counter nearly
    # still (it could only run between the 200 ms waits).
    assert progressed > 0.3 * reference, (progressed, reference)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_child_gets_its_own_client(etcd, ns):
    """After os.fork() the child's next call connects a client of its own
    (new lease), never hangs, and its exit leaves the parent's services UP."""
    from os_lively import conf as conf_mod
    from os_lively import service

    conf = conf_mod.Conf(etcd_host="127.0.0.1", etcd_port=etcd.port, etcd_key_namespace=ns)
    parent_svc = service.Service(type="parent", host="h", status=service.Status.UP)
    service.update(conf, parent_svc)
    parent_uuid = parent_svc.uuid
    parent_client = os_lively._dropin.client_for(conf)
    parent_lease = parent_client.stats()["lease_id"]
    pythonic = Client(etcd.url, namespace=ns)

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report, then leave without running atexit handlers
        try:
            os.close(r)
            up = service.is_up(conf, uuid=parent_uuid)
            child_svc = service.Service(type="child", host="h", status=service.Status.UP)
            service.update(conf, child_svc)
            child_uuid = child_svc.uuid
            lease = os_lively._dropin.client_for(conf).stats()["lease_id"]
            up2 = pythonic.is_up(parent_uuid)
            os.write(w, ("%s %s %d %s" % (up, child_uuid, lease, up2)).encode())
            os.close(w)
            os._exit(0)
        except BaseException as e:  # pragma: no cover - reported to the parent
            os.write(w, ("error %r" % e).encode())
            os._exit(1)
    os.close(w)
    ready, _, _ = select.select([r], [], [], 30)
    assert ready, "the child hung"
    report = os.read(r, 1000).decode()
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert status == 0, report
    up, child_uuid, lease, up2 = report.split()
    assert up == "True" and up2 == "True"
    assert int(lease) != parent_lease, "the child must not use the parent's lease"
    assert service.is_up(conf, uuid=parent_uuid)
    assert pythonic.is_up(parent_uuid)
    # The parent's clients still work after the fork.
    parent_svc.region = "after-fork"
    service.update(conf, parent_svc)
    assert service.get_one(conf, uuid=parent_uuid).region == "after-fork"
    pythonic.close()


def test_multiprocessing_pool(etcd, ns):
    """The gunicorn/multiprocessing pattern: a client made before the fork,
    used in worker processes."""
    import multiprocessing

    c = Client(etcd.url, namespace=ns)
    uuid = c.update("mp", "h")
    _shared["client"] = c
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        results = pool.map(_worker_is_up, [uuid] * 4)
    assert results == [True] * 4
    c.close()


_shared = {}


def _worker_is_up(uuid):
    return _shared["client"].is_up(uuid)


@requires_heartbeat
def test_heartbeat_deadline(client):
    uuid = client.update("hb", "h", heartbeat=2)
    assert client.is_up(uuid)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        client.heartbeat(uuid)
        time.sleep(0.2)
    assert client.is_up(uuid)
    wait_for(lambda: not client.is_up(uuid), 5, "DOWN after a missed heartbeat")
    client.heartbeat(uuid)
    wait_for(lambda: client.is_up(uuid), 5, "UP after the next check-in")


def test_features_and_version(monkeypatch):
    """The library built from this checkout has heartbeat deadlines and
    up(): features() says so (else every `requires_heartbeat` test would
    be skipped, passing without running), and a library without them
    gets NotSupportedError, not a crash."""
    f = os_lively.features()
    assert f == {"heartbeat": True, "up": True}
    assert os_lively.library_version() == os_lively.__version__
    import os_lively.client as client_mod

    monkeypatch.setattr(client_mod, "HAS_HEARTBEAT", False)
    monkeypatch.setattr(client_mod, "HAS_UP", False)
    c = object.__new__(Client)
    with pytest.raises(os_lively.NotSupportedError, match="heartbeat"):
        c.heartbeat("x")
    with pytest.raises(os_lively.NotSupportedError, match="heartbeat"):
        c._update(None, "t", "h", 0, None, 0, 0, None, 5000)
    with pytest.raises(os_lively.NotSupportedError, match="up"):
        c.up("x")


def test_callback_subscription_runs_without_a_reference(client):
    """Like a thread, a callback subscription runs until cancelled or its
    client is closed, whether or not the caller keeps the object."""
    import gc

    got = []
    client.subscribe(got.append, service_type="noref")
    gc.collect()
    client.update("noref", "a")
    wait_for(lambda: got, 10, "a callback of an unreferenced subscription")
    assert got[0].kind == EventKind.REGISTERED


def test_library_logs_reach_python_logging(etcd, ns, caplog):
    """After route_logs_to_python(), the library's messages (here: the
    warning for a key it cannot decode) go to the logger os_lively.lib."""
    etcd.put("/%s/services/by-uuid/not-a-uuid" % ns, b"garbage")
    os_lively.route_logs_to_python(logging.DEBUG)
    try:
        with caplog.at_level(logging.DEBUG, logger="os_lively.lib"):
            with Client(etcd.url, namespace=ns) as c:
                c.list()
            wait_for(lambda: any(r.name == "os_lively.lib" and r.levelno == logging.WARNING for r in caplog.records),
                     5, "the library's warning as a Python log record")
    finally:
        os_lively.route_logs_to_python(None)
