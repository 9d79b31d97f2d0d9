"""Python mistakes get Python's exceptions (TypeError for a wrong type,
ValueError for a value out of range), naming the argument as the caller
spelled it, before anything is sent (issue 24, item 5)."""

import datetime

import pytest

import os_lively
from os_lively import Client, Status
from os_lively import conf as conf_mod
from os_lively import service


@pytest.fixture
def client(etcd, ns):
    with Client(etcd.url, namespace=ns, status_ttl=5) as c:
        yield c


def raises(exc, name, fn):
    with pytest.raises(exc) as e:
        fn()
    assert type(e.value) is exc, "%r is not a plain %s" % (e.value, exc.__name__)
    assert name in str(e.value), "%r should name %r" % (str(e.value), name)
    return e.value


def test_client_settings(etcd, ns):
    url = etcd.url
    raises(TypeError, "endpoints", lambda: Client(2379))
    raises(TypeError, "endpoints[1]", lambda: Client([url, 2379]))
    raises(TypeError, "endpoints", lambda: Client(url.encode()))
    raises(ValueError, "endpoints", lambda: Client([]))
    raises(TypeError, "namespace", lambda: Client(url, namespace=b"ns"))
    raises(ValueError, "status_ttl", lambda: Client(url, status_ttl=0))
    raises(ValueError, "status_ttl", lambda: Client(url, status_ttl=0.5))
    raises(ValueError, "status_ttl", lambda: Client(url, status_ttl=1.5))
    raises(ValueError, "status_ttl", lambda: Client(url, status_ttl=366 * 86400))
    raises(ValueError, "status_ttl", lambda: Client(url, status_ttl=float("nan")))
    raises(TypeError, "status_ttl", lambda: Client(url, status_ttl="60"))
    raises(TypeError, "status_ttl", lambda: Client(url, status_ttl=True))
    raises(ValueError, "connect_timeout", lambda: Client(url, connect_timeout=0))
    raises(ValueError, "connect_timeout", lambda: Client(url, connect_timeout=-1))
    raises(ValueError, "request_timeout", lambda: Client(url, request_timeout=86401))
    raises(TypeError, "request_timeout", lambda: Client(url, request_timeout="5s"))
    raises(ValueError, "call_polling", lambda: Client(url, call_polling=0.2))
    raises(ValueError, "password", lambda: Client(url, password="pw"))
    # Accepted forms: a timedelta, an integral float, a list of endpoints.
    with Client([url], namespace=ns, status_ttl=datetime.timedelta(seconds=5), connect_timeout=2.5,
                request_timeout=datetime.timedelta(seconds=3)) as c:
        assert c.list() == []


def test_calls(client):
    raises(TypeError, "service_type", lambda: client.update(None, "h"))
    raises(TypeError, "host", lambda: client.update("t", None))
    raises(TypeError, "service_type", lambda: client.update(b"t", b"h"))
    raises(TypeError, "region", lambda: client.update("t", "h", region=5))
    raises(ValueError, "status", lambda: client.update("t", "h", status="SIDEWAYS"))
    raises(TypeError, "status", lambda: client.update("t", "h", status=7))
    raises(TypeError, "status", lambda: client.update("t", "h", status=1.0))
    raises(ValueError, "heartbeat", lambda: client.update("t", "h", heartbeat=-1))
    raises(ValueError, "heartbeat", lambda: client.update("t", "h", heartbeat=8 * 86400))
    raises(TypeError, "maintenance_start", lambda: client.update("t", "h", maintenance_start="tomorrow"))
    raises(ValueError, "maintenance_end", lambda: client.update("t", "h", maintenance_end=-5))
    assert client.list() == [], "a refused update wrote"

    uuid = client.update("t", "h")
    raises(ValueError, "not both", lambda: client.is_up(uuid, service_type="t", host="h"))
    raises(ValueError, "not both", lambda: client.get(uuid, service_type="t", host="h"))
    raises(ValueError, "host", lambda: client.is_up(service_type="t"))
    raises(TypeError, "uuid", lambda: client.is_up(uuid.encode()))
    raises(TypeError, "uuid", lambda: client.delete(None))
    raises(TypeError, "uuid", lambda: client.down(5))
    raises(TypeError, "note", lambda: client.down(uuid, b"note"))
    raises(TypeError, "start", lambda: client.down(uuid, "note", start="now"))
    raises(TypeError, "region", lambda: client.list(region=b"east"))
    raises(ValueError, "status", lambda: client.list(status="SIDEWAYS"))
    assert client.is_up(uuid) and client.get(uuid).status == Status.UP

    raises(TypeError, "callback", lambda: client.subscribe(5))
    raises(TypeError, "callback", lambda: client.subscribe("print"))
    raises(ValueError, "queue_capacity", lambda: client.subscribe(queue_capacity=-1))
    raises(TypeError, "queue_capacity", lambda: client.subscribe(queue_capacity=1.5))
    raises(ValueError, "queue_capacity", lambda: client.subscribe(queue_capacity=1 << 40))
    with client.subscribe(service_type="t") as sub:
        raises(ValueError, "timeout", lambda: sub.next(timeout=-1))
        raises(TypeError, "timeout", lambda: sub.next(timeout="1"))

    raises(ValueError, "stale_after", lambda: client.view(stale_after=0))
    raises(TypeError, "stale_after", lambda: client.view(stale_after="1"))
    with client.view() as view:
        raises(TypeError, "timeout", lambda: view.sync(timeout="1"))
        raises(ValueError, "not both", lambda: view.is_up(uuid, service_type="t", host="h"))
        raises(TypeError, "uuid", lambda: view.is_up(uuid.encode()))
        raises(TypeError, "uuid", lambda: view.get(None))
        view.sync()
        assert view.is_up(uuid)


def test_status_is_never_an_accidental_int_or_bool(client):
    """Status.UP is 0 (the protobuf record's number): as an int it would be
    false and `status=0` would mean UP. A Status has no truth value and a
    bare int is refused where a status is expected (issue 33, item 5)."""
    for bad in (0, 1, False, True):
        e = raises(TypeError, "status", lambda: client.update("t", "h", status=bad))
        assert "Status.UP" in str(e)
        raises(TypeError, "status", lambda: client.list(status=bad))
    assert client.list() == [], "a refused update wrote"
    uuid = client.update("t", "h", status=Status.UP)
    info = client.get(uuid)
    assert info.up is True and info.status == Status.UP == 0
    with pytest.raises(TypeError, match="no truth value"):
        bool(info.status)
    with pytest.raises(TypeError, match="no truth value"):
        if info.record_status:
            pass
    with pytest.raises(TypeError, match="no truth value"):
        bool(Status.DOWN)
    # What the refusal asks for works: a Status, its name, Status(int).
    client.update("t", "h", status=Status(1))
    assert client.get(uuid).status == Status.DOWN and not client.is_up(uuid)
    client.update("t", "h", status="up")
    assert client.is_up(uuid)
    assert [i.uuid for i in client.list(status=Status.UP)] == [uuid]
    # Statuses still compare, sort, hash and print as before.
    assert sorted({Status.DOWN, Status.UP}) == [Status.UP, Status.DOWN]
    assert "%s/%s" % (Status.UP, Status.DOWN) == "UP/DOWN"


def test_dropin(conf, etcd, ns):
    raises(TypeError, "service", lambda: service.update(conf, "nova-compute"))
    raises(TypeError, "service", lambda: service.update(conf, None))
    raises(ValueError, "Service.status", lambda: service.update(
        conf, service.Service(type="t", host="h", status=7)))
    raises(TypeError, "uuid", lambda: service.is_up(conf, uuid=b"0" * 32))
    raises(TypeError, "type", lambda: service.is_up(conf, type=5, host="h"))
    raises(TypeError, "region", lambda: service.get_many(conf, region=[b"east"]))
    raises(ValueError, "etcd_port", lambda: service.is_up(
        conf_mod.Conf(etcd_host="127.0.0.1", etcd_port="not-a-port"), uuid="0" * 32))
    assert service.get_many(conf) == [], "a refused call wrote"
    # The original's own ValueError for a half-named service stays.
    with pytest.raises(ValueError, match="'host' and 'type' required"):
        service.is_up(conf, type="t")
    assert isinstance(os_lively.InvalidArgumentError("x"), ValueError)
