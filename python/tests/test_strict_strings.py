"""Strings the C library cannot receive intact (NUL, lone surrogates) are
refused before any call, naming the argument; nothing is written, and no
call ever acts on another service than the one named (issue 24, item 1)."""

import random

import pytest

import os_lively
from os_lively import Client
from os_lively import conf as conf_mod
from os_lively import service

try:
    import hypothesis
    from hypothesis import strategies as st
except ImportError:  # the seeded random driver below runs instead
    hypothesis = None


@pytest.fixture
def client(etcd, ns):
    with Client(etcd.url, namespace=ns, status_ttl=5) as c:
        yield c


def keys(etcd, ns):
    return etcd.keys("/%s/" % ns)


def refused(fn, name):
    with pytest.raises(os_lively.InvalidArgumentError) as e:
        fn()
    assert isinstance(e.value, ValueError) and e.value.code == 1
    assert name in str(e.value), "%r should name %r" % (str(e.value), name)
    return e.value


def test_nul_in_every_pythonic_argument_is_refused_naming_it(client, etcd, ns):
    u = client.update("a", "h", region="r")
    view = client.view()
    view.sync()
    before = keys(etcd, ns)
    calls = [
        (lambda: client.update("a\0b", "h"), "service_type"),
        (lambda: client.update("a", "h\0zzz"), "host"),
        (lambda: client.update("a", "h", region="r\0x"), "region"),
        (lambda: client.update("a", "h", uuid=u + "\0x"), "uuid"),
        (lambda: client.update("a", "h", maintenance_note="disk\0swap"), "maintenance_note"),
        (lambda: client.is_up(u + "\0x"), "uuid"),
        (lambda: client.is_up(service_type="a\0b", host="h"), "service_type"),
        (lambda: client.is_up(service_type="a", host="h\0zzz"), "host"),
        (lambda: client.get(u + "\0x"), "uuid"),
        (lambda: client.get(service_type="a", host="h\0"), "host"),
        (lambda: client.delete(u + "\0x"), "uuid"),
        (lambda: client.down(u + "\0x", "note"), "uuid"),
        (lambda: client.down(u, "disk\0swap"), "note"),
        (lambda: client.up(u + "\0x"), "uuid"),
        (lambda: client.list(region="r\0x"), "region"),
        (lambda: client.list(service_type="a\0"), "service_type"),
        (lambda: client.list(uuid=u + "\0"), "uuid"),
        (lambda: client.subscribe(service_type="a\0b"), "service_type"),
        (lambda: client.subscribe(lambda e: None, host="h\0"), "host"),
        (lambda: view.is_up(u + "\0x"), "uuid"),
        (lambda: view.is_up(service_type="a\0b", host="h"), "service_type"),
        (lambda: view.get(u + "\0x"), "uuid"),
        (lambda: view.list(host="h\0zzz"), "host"),
        (lambda: Client(etcd.url, namespace=ns + "\0x"), "namespace"),
        (lambda: Client(etcd.url + "\0x"), "endpoints"),
        (lambda: Client([etcd.url, "127.0.0.1:1\0"]), "endpoints[1]"),
        (lambda: Client(etcd.url, user="root\0x", password="pw"), "user"),
        (lambda: Client(etcd.url, user="root", password="p\0w"), "password"),
        (lambda: client.update("a\ud800", "h"), "service_type"),
        (lambda: client.is_up("\udfff"), "uuid"),
        (lambda: view.is_up("\udfff" + u), "uuid"),
    ]
    if os_lively.features()["heartbeat"]:
        calls.append((lambda: client.heartbeat(u + "\0x"), "uuid"))
    for fn, name in calls:
        refused(fn, name)
    assert keys(etcd, ns) == before, "a refused call wrote"
    info = client.get(u)
    assert (info.service_type, info.host, info.region, info.up) == ("a", "h", "r", True)


def test_nul_in_every_dropin_argument_is_refused_naming_it(conf, etcd, ns):
    s = service.Service(type="nova-compute", host="host-7", region="east", status=service.Status.UP)
    service.update(conf, s)
    u = s.uuid
    before = keys(etcd, ns)
    calls = [
        (lambda: service.update(conf, service.Service(type="nova\0-compute", host="host-7")), "Service.type"),
        (lambda: service.update(conf, service.Service(type="nova-compute", host="host-7\0x")), "Service.host"),
        (lambda: service.update(conf, service.Service(type="t", host="h", region="e\0")), "Service.region"),
        (lambda: service.update(conf, service.Service(uuid=u + "\0x", type="t", host="h")), "Service.uuid"),
        (lambda: service.update(conf, service.Service(type="t", host="h", maintenance_note="x\0")),
         "Service.maintenance_note"),
        (lambda: service.is_up(conf, uuid=u + "\0x"), "uuid"),
        (lambda: service.is_up(conf, type="nova-compute\0", host="host-7"), "type"),
        (lambda: service.is_up(conf, service_type="nova-compute\0", host="host-7"), "service_type"),
        (lambda: os_lively.service_is_up(conf, service_type="nova-compute", host="host-7\0"), "host"),
        (lambda: service.get_one(conf, uuid=u + "\0x"), "uuid"),
        (lambda: service.get_many(conf, type="nova-compute\0x"), "type"),
        (lambda: service.get_many(conf, region=["east", "we\0st"]), "region[1]"),
        (lambda: service.delete(conf, uuid=u + "\0x"), "uuid"),
        (lambda: service.delete(conf, type="nova-compute", host="host-7\0x"), "host"),
        (lambda: service.down(conf, maint_note="disk swap", uuid=u + "\0x"), "uuid"),
        (lambda: service.down(conf, maint_note="disk\0swap", uuid=u), "Service.maintenance_note"),
        (lambda: service.notify(conf, type="nova\0"), "type"),
        (lambda: service.is_up(conf_mod.Conf(etcd_host="127.0.0.1", etcd_port=etcd.port,
                                             etcd_key_namespace=ns + "\0x"), uuid=u),
         "conf.etcd_key_namespace"),
        (lambda: service.is_up(conf_mod.Conf(etcd_host="127.0.0.1\0x", etcd_port=etcd.port), uuid=u),
         "conf.etcd_host"),
    ]
    for fn, name in calls:
        refused(fn, name)
    assert keys(etcd, ns) == before, "a refused call wrote"
    assert service.is_up(conf, uuid=u)
    assert service.get_one(conf, uuid=u).type == "nova-compute"


# -- property: never a write to another service than named -------------------

SPECIAL = ["\0", "\x01", "\x1f", "\x7f", "\n", "\u2028", "\ud800", "\udfff", "/", " ", "é", "\U0001f600"]


def _check_one(client, etcd, ns, victim, stype, host, region, junk):
    """One random round: every call either refuses cleanly (nothing
    written) or acts on exactly the service it names."""
    vu, vtype, vhost = victim
    before = keys(etcd, ns)

    # update: refused with nothing written, or exactly the keys named.
    if (stype, host) == (vtype, vhost):
        stype = stype + "-other"
    try:
        u = client.update(stype, host, region=region or None)
    except os_lively.InvalidArgumentError:
        assert keys(etcd, ns) == before, "a refused update wrote (%r, %r, %r)" % (stype, host, region)
    else:
        base = "/%s/services/" % ns
        expected = {base + "by-uuid/" + u, base + "by-type-host/%s/%s" % (stype, host),
                    base + "by-status/UP/" + u}
        if region:
            expected.add(base + "by-region/%s/%s" % (region, u))
        assert u != vu
        assert set(keys(etcd, ns)) - set(before) == expected, (stype, host, region)
        info = client.get(u)
        assert (info.service_type, info.host, info.region) == (stype, host, region)
        assert client.delete(u) is True
        assert keys(etcd, ns) == before

    # Calls naming the victim plus junk never reach the victim.
    if junk:
        for call in (lambda: client.delete(vu + junk), lambda: client.down(vu + junk, "x"),
                     lambda: client.is_up(service_type=vtype + junk, host=vhost),
                     lambda: client.is_up(service_type=vtype, host=vhost + junk)):
            try:
                result = call()
            except os_lively.LivelyError as e:
                assert isinstance(e, (os_lively.InvalidArgumentError, os_lively.NotFoundError)), e
            else:
                assert result in (False, None), "a call with %r reached the victim" % junk
        assert keys(etcd, ns) == before
    info = client.get(vu)
    assert (info.service_type, info.host, info.up, info.status) == (vtype, vhost, True, os_lively.Status.UP)


@pytest.fixture
def victim(client):
    return client.update("victim", "host-1"), "victim", "host-1"


if hypothesis is not None:
    pieces = st.one_of(st.sampled_from(SPECIAL), st.characters(), st.text(max_size=4))
    names = st.one_of(
        st.lists(pieces, max_size=8).map("".join),
        st.builds(lambda c, n: c * n, st.sampled_from(["a", "é", "\0", "x/"]), st.integers(200, 3000)),
        st.sampled_from(["victim", "host-1"]),
    )

    @hypothesis.settings(max_examples=120, deadline=None, database=None,
                         suppress_health_check=list(hypothesis.HealthCheck))
    @hypothesis.given(stype=names, host=names, region=names, junk=names)
    def _property(client, etcd, ns, victim, stype, host, region, junk):
        _check_one(client, etcd, ns, victim, stype, host, region, junk)

    def test_random_strings_never_reach_another_service(client, etcd, ns, victim):
        _property(client, etcd, ns, victim)

else:

    def test_random_strings_never_reach_another_service(client, etcd, ns, victim):
        rnd = random.Random(24)
        alphabet = SPECIAL + ["a", "b", "-", "."]

        def name():
            if rnd.random() < 0.1:
                return rnd.choice(["a", "é", "\0"]) * rnd.randint(200, 3000)
            return "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 8)))

        for _ in range(120):
            _check_one(client, etcd, ns, victim, name(), name(), name(), name())
