"""The original os-lively's API, drop-in, against a real etcd."""

import threading
import time

import pytest

import os_lively
from os_lively import conf as conf_mod
from os_lively import service
from conftest import requires_heartbeat, wait_for


def guard(n, seconds=20):
    """Cancels the notify after `seconds`, so a missing event fails the
    test instead of hanging it."""
    t = threading.Timer(seconds, n.cancel)
    t.daemon = True
    t.start()
    return t


def new_service(stype="nova-compute", host="host-7", region="east", status=None):
    s = service.Service()
    s.type = stype
    s.host = host
    s.region = region
    s.status = service.Status.UP if status is None else status
    return s


def test_readme_usage(env, etcd, ns):
    """The original README's three snippets, as written (print as a call)."""
    cfg = conf_mod.Conf(etcd_host="127.0.0.1", etcd_port=etcd.port, status_ttl=60)
    s = service.Service()
    s.type = "nova-compute"
    s.status = service.Status.UP
    s.host = "localhost"
    s.region = "myregion"
    os_lively.service_update(cfg, s)
    assert s.uuid  # generated and set

    # service_is_up without a conf reads the environment (namespace included).
    assert os_lively.service_is_up(service_type="nova-compute", host="localhost")
    assert os_lively.service_is_up(uuid=s.uuid)
    assert not os_lively.service_is_up(service_type="nova-compute", host="elsewhere")

    n = os_lively.service_notify(service_type="nova-compute", host="localhost")

    def flap():
        for st in (service.Status.DOWN, service.Status.UP, service.Status.DOWN, service.Status.UP):
            s.status = st
            os_lively.service_update(cfg, s)

    # Changes after service_notify returned are seen (started after it).
    guard(n)
    t = threading.Thread(target=flap)
    t.start()
    count = 0
    seen = []
    for change_event in n.events:
        t2 = service.Service()
        t2.ParseFromString(change_event.value)
        seen.append(service.status_itoa(t2.status))
        count += 1
        if count > 3:
            n.cancel()
    t.join()
    assert seen == ["DOWN", "UP", "DOWN", "UP"]


def test_conf_defaults_env_and_overrides(monkeypatch):
    for name in ("DEBUG", "ETCD_HOST", "ETCD_PORT", "ETCD_CONNECT_TIMEOUT", "ETCD_KEY_NAMESPACE", "STATUS_TTL"):
        monkeypatch.delenv("OSLIVELY_" + name, raising=False)
    c = conf_mod.Conf()
    assert (c.debug, c.etcd_host, c.etcd_port, c.etcd_connect_timeout, c.etcd_key_namespace, c.status_ttl) == (
        False, "localhost", 2379, 5, "", 60)
    monkeypatch.setenv("OSLIVELY_ETCD_HOST", "etcd.example")
    monkeypatch.setenv("OSLIVELY_ETCD_PORT", "2400")
    monkeypatch.setenv("OSLIVELY_STATUS_TTL", "2")
    c = conf_mod.Conf(etcd_host="override", some_unknown_option=1)
    assert c.etcd_host == "override"
    assert c.etcd_port == "2400"  # strings from the environment, as the original
    assert c.status_ttl == 5  # at least 5
    assert c.some_unknown_option == 1
    assert conf_mod.connection_key(c) == ("override", 2400, 5.0, "", 5)


def test_lifecycle(conf, etcd, ns):
    """register -> is_up by uuid and type+host -> get_one -> DOWN via update
    -> get_many by each filter -> move region -> delete -> gone; keys as the
    original wrote them."""
    s = new_service()
    assert service.update(conf, s) == (True, [])
    uuid = s.uuid
    assert s.uuid == uuid and len(uuid) == 32
    assert service.is_up(conf, uuid=uuid)
    assert service.is_up(conf, type="nova-compute", host="host-7")
    assert not service.is_up(conf, uuid="0" * 32)
    assert not service.is_up(conf, type="nova-compute", host="nowhere")
    with pytest.raises(ValueError):
        service.is_up(conf, type="nova-compute")
    with pytest.raises(ValueError):
        service.is_up(conf)

    got = service.get_one(conf, uuid=uuid)
    assert (got.uuid, got.type, got.host, got.region, got.status) == (uuid, "nova-compute", "host-7", "east", 0)
    assert service.get_one(conf, type="nova-compute", host="host-7") == got
    assert service.get_one(conf, uuid="0" * 32) is None

    # Wire compatibility: the original's keys, the same protobuf bytes.
    base = "/%s/services" % ns
    raw = service.Service()
    raw.ParseFromString(etcd.get(base + "/by-uuid/" + uuid))
    # Plus the heartbeat deadline (status_ttl), a field >= 30 the original
    # ignores when it reads; the original's own fields are the same bytes.
    assert raw.heartbeat_ms in (0, conf.status_ttl * 1000)
    raw.ClearField("heartbeat_ms")
    assert raw == s
    assert etcd.get(base + "/by-type-host/nova-compute/host-7") == uuid.encode()
    assert etcd.get(base + "/by-region/east/" + uuid) == b""
    assert etcd.get(base + "/by-status/UP/" + uuid) == b""

    other_s = new_service("glance", "host-9", region="west")
    service.update(conf, other_s)
    other = other_s.uuid

    s.status = service.Status.DOWN
    service.update(conf, s)
    assert not service.is_up(conf, uuid=uuid)
    assert service.get_one(conf, uuid=uuid).status == service.Status.DOWN

    def uuids(**filters):
        return sorted(x.uuid for x in service.get_many(conf, **filters))

    assert uuids() == sorted([uuid, other])
    assert uuids(status=service.Status.DOWN) == [uuid]
    assert uuids(status=service.Status.UP) == [other]
    assert uuids(status=[service.Status.UP, service.Status.DOWN]) == sorted([uuid, other])
    assert uuids(type="nova-compute") == [uuid]
    assert uuids(type="cinder") == []
    assert uuids(type=["nova-compute", "glance"]) == sorted([uuid, other])
    assert uuids(host="host-7") == [uuid]
    assert uuids(host="host-8") == []
    assert uuids(region="east") == [uuid]
    assert uuids(region="north") == []
    assert uuids(uuid=uuid) == [uuid]
    assert uuids(uuid=["f" * 32]) == []
    assert uuids(type="nova-compute", region="west") == []

    s.region = "west"
    service.update(conf, s)
    assert uuids(region="west") == sorted([uuid, other])
    assert uuids(region="east") == []
    assert etcd.get(base + "/by-region/west/" + uuid) == b""
    assert etcd.get(base + "/by-region/east/" + uuid) is None

    s.status = service.Status.UP
    service.update(conf, s)
    assert service.is_up(conf, uuid=uuid)

    assert service.delete(conf, uuid=uuid) is True
    assert service.get_one(conf, uuid=uuid) is None
    assert not service.is_up(conf, uuid=uuid)
    assert [k for k in etcd.keys(base + "/") if uuid in k] == []
    assert service.delete(conf, uuid=uuid) is None
    assert service.delete(conf, type="glance", host="host-9") is True
    assert etcd.keys(base + "/") == []


@requires_heartbeat
def test_status_ttl_is_a_heartbeat_deadline(conf):
    """UP with status_ttl = 5 and no further calls: DOWN after 6 s (the
    process and its client live on). Calling update keeps it UP."""
    conf.status_ttl = 5
    s = new_service("heart", "beat")
    assert service.update(conf, s) == (True, [])
    uuid = s.uuid
    kept = new_service("kept", "alive")
    assert service.update(conf, kept) == (True, [])
    kept_uuid = kept.uuid
    n = service.notify(conf, uuid=uuid)
    guard(n, 30)
    start = time.monotonic()
    while time.monotonic() - start < 4:
        service.update(conf, kept)  # keeps calling: stays UP
        time.sleep(0.5)
    assert service.is_up(conf, uuid=uuid)
    while time.monotonic() - start < 6.3:
        service.update(conf, kept)
        time.sleep(0.5)
    assert not service.is_up(conf, uuid=uuid), "no update for 6 s with status_ttl 5: DOWN"
    assert service.is_up(conf, uuid=kept_uuid)
    # The lapse reaches notify as a DOWN record (the original never saw it).
    ev = next(iter(n.events), None)
    assert ev is not None, "no DOWN event for the lapse"
    rec = service.Service()
    rec.ParseFromString(ev.value)
    assert (rec.uuid, rec.status) == (uuid, service.Status.DOWN)
    n.cancel()
    # The next update brings it back (the check-in may be applied by the
    # library's thread just after update() returns).
    service.update(conf, s)
    wait_for(lambda: service.is_up(conf, uuid=uuid), 5, "UP again after the next update()")


def test_down_is_not_sticky(conf):
    s = new_service()
    assert service.update(conf, s) == (True, [])
    uuid = s.uuid
    before = int(time.time())
    downed = service.down(conf, maint_note="disk swap", uuid=uuid)
    assert downed.status == service.Status.DOWN
    got = service.get_one(conf, uuid=uuid)
    assert got.status == service.Status.DOWN and got.maintenance_note == "disk swap"
    assert before <= got.maintenance_start <= int(time.time()) + 1
    assert not service.is_up(conf, uuid=uuid)
    # The original's meaning: DOWN until an update() sets it UP again.
    s.status = service.Status.UP
    service.update(conf, s)
    assert service.is_up(conf, uuid=uuid)
    assert service.down(conf, uuid="0" * 32) is None
    import datetime

    end = datetime.datetime.now() + datetime.timedelta(hours=1)
    service.down(conf, maint_note="later", maint_start=1700000000, maint_end=end, type="nova-compute", host="host-7")
    got = service.get_one(conf, uuid=uuid)
    assert (got.maintenance_start, got.maintenance_end) == (1700000000, int(end.timestamp()))


def test_notify_flapping_in_order_then_cancel_inside_loop(conf):
    s = new_service()
    assert service.update(conf, s) == (True, [])
    uuid = s.uuid
    n = service.notify(conf, uuid=uuid)
    assert isinstance(n, tuple) and n._fields == ("events", "cancel")

    def flap():
        for st in (service.Status.DOWN, service.Status.UP, service.Status.DOWN):
            s.status = st
            service.update(conf, s)

    guard(n)
    t = threading.Thread(target=flap)
    t.start()
    seen = []
    for ev in n.events:
        rec = service.Service()
        rec.ParseFromString(ev.value)
        assert rec.uuid == uuid
        seen.append(service.status_itoa(rec.status))
        if len(seen) == 3:
            n.cancel()
    t.join()
    assert seen == ["DOWN", "UP", "DOWN"]
    # Cancelled: iterating again ends at once.
    assert list(n.events) == []


def test_status_names():
    assert service.status_itoa(service.Status.UP) == "UP"
    assert service.status_itoa(1) == "DOWN"
    assert service.status_atoi("DOWN") == service.Status.DOWN
    assert service.status_atoi("SIDEWAYS") is None
    assert service.Status.ALL_STATUSES == (0, 1)


def test_conf_changes_take_effect_next_call(conf, etcd):
    s = new_service()
    assert service.update(conf, s) == (True, [])
    uuid = s.uuid
    conf.etcd_key_namespace = conf.etcd_key_namespace + "-other"
    assert not service.is_up(conf, uuid=uuid)  # another namespace
    assert service.get_many(conf) == []


def test_invalid_input_is_an_error_with_the_message(conf):
    bad = new_service(stype="nova/compute")
    with pytest.raises(os_lively.InvalidArgumentError) as e:
        service.update(conf, bad)
    assert "nova/compute" in str(e.value) and isinstance(e.value, ValueError)
    assert e.value.code == 1


def test_reads_records_the_original_wrote(conf, etcd, ns):
    """Keys and bytes as the original library writes them (its region key
    without a uuid, its DOWN key) read back through the drop-in."""
    base = "/%s/services" % ns
    rec = new_service("legacy", "old-host", region="r1", status=service.Status.DOWN)
    rec.uuid = "3b059e33bbc44bc8b0d37df6e8d70223"
    etcd.put(base + "/by-uuid/" + rec.uuid, rec.SerializeToString())
    etcd.put(base + "/by-type-host/legacy/old-host", rec.uuid.encode())
    etcd.put(base + "/by-region/r1")
    etcd.put(base + "/by-status/DOWN/" + rec.uuid)
    assert service.get_one(conf, type="legacy", host="old-host") == rec
    assert not service.is_up(conf, uuid=rec.uuid)
    assert [x.uuid for x in service.get_many(conf, type="legacy")] == [rec.uuid]


def test_exit_closes_the_cached_client_revoking_its_lease(conf, env):
    """A process that registered through the drop-in and exits normally
    leaves its services DOWN at once (the cached client is closed at exit),
    not after the 60 s TTL."""
    import subprocess
    import sys

    script = (
        "from os_lively import conf, service\n"
        "s = service.Service(type='exiting', host='h', status=service.Status.UP)\n"
        "service.update(conf.Conf(status_ttl=60), s)\n"
        "print(s.uuid)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True, timeout=60)
    uuid = out.stdout.strip()
    assert service.get_one(conf, uuid=uuid) is not None
    assert not service.is_up(conf, uuid=uuid)


# -- where the drop-in used to differ from the original (issue 23) ------


def test_update_returns_succeeded_and_responses_like_the_original(conf):
    """python-etcd3's transaction result: `ok, _ = service.update(cfg, s)`."""
    s = new_service("shape", "h1")
    ok, responses = service.update(conf, s)
    assert ok is True and responses == []
    result = service.update(conf, s)
    assert result.succeeded and result == (True, [])
    assert s.uuid and service.is_up(conf, uuid=s.uuid)
    # The original's spelling returns the same.
    ok, _ = os_lively.service_update(conf, s)
    assert ok


def test_notify_events_carry_the_records_key(conf, ns):
    s = new_service("keyed", "h2")
    service.update(conf, s)
    n = service.notify(conf, uuid=s.uuid)
    guard(n)
    s.status = service.Status.DOWN
    service.update(conf, s)
    ev = next(iter(n.events))
    n.cancel()
    assert ev.key == ("/%s/services/by-uuid/%s" % (ns, s.uuid)).encode()
    rec = service.Service()
    rec.ParseFromString(ev.value)
    assert rec.uuid == s.uuid and rec.status == service.Status.DOWN


def test_record_key_spells_the_namespace_as_the_library():
    assert service.record_key("", "ab") == b"/services/by-uuid/ab"
    assert service.record_key("prod", "ab") == b"/prod/services/by-uuid/ab"
    assert service.record_key("/prod", "ab") == b"/prod/services/by-uuid/ab"


def test_notify_for_an_unknown_service_returns_none_like_the_original(conf):
    assert service.notify(conf, uuid="0" * 32) is None
    assert service.notify(conf, type="nova-compute", host="nowhere") is None
    assert os_lively.service_notify(conf, service_type="nova-compute", host="nowhere") is None
    # A filter that names no single service still watches.
    n = service.notify(conf, type="nova-compute")
    assert n is not None
    n.cancel()


def test_a_conf_with_another_status_ttl_gets_its_own_lease(etcd, ns):
    """The cached client per connection is keyed on status_ttl too: the
    second Conf's services must not live on the first one's lease TTL."""
    from os_lively import _dropin

    long_conf = conf_mod.Conf(etcd_host="127.0.0.1", etcd_port=etcd.port, etcd_key_namespace=ns, status_ttl=60)
    short_conf = conf_mod.Conf(etcd_host="127.0.0.1", etcd_port=etcd.port, etcd_key_namespace=ns, status_ttl=7)
    service.update(long_conf, new_service("long", "h"))
    service.update(short_conf, new_service("short", "h"))
    long_stats = _dropin.client_for(long_conf).stats()
    short_stats = _dropin.client_for(short_conf).stats()
    assert long_stats["lease_id"] != short_stats["lease_id"]
    assert long_stats["lease_granted_ttl"] == 60
    assert short_stats["lease_granted_ttl"] == 7
    # The same settings still share one client.
    same = conf_mod.Conf(etcd_host="127.0.0.1", etcd_port=etcd.port, etcd_key_namespace=ns, status_ttl=7)
    assert _dropin.client_for(same) is _dropin.client_for(short_conf)


def test_notify_sees_every_change_made_after_it_was_called(conf, etcd, ns):
    """Issue 33: a thread does down(), update() with UP and down() on a
    service while the main thread calls notify(uuid=), in each of 50 runs.
    Every change that began after notify() returned must be delivered, in
    order, and nothing else but earlier changes of the same three: what it
    sees is a suffix of DOWN, UP, DOWN that ends with the last change and
    holds at least the changes begun after the call returned. A change the
    thread finished before the call reached etcd may be missed (the
    original library's notify watches from its existence check, too). The
    drop-in used to check that the service exists (a round trip) and only
    then watch, from the revision current after it, missing changes made
    after it returned about one run in four and then waiting for ever.
    Changes before the run (each run starts by setting the service UP
    again) may be delivered too: events at or below the record's revision
    read from etcd before the call are skipped."""
    s = new_service("race", "h")
    assert service.update(conf, s) == (True, [])
    uuid = s.uuid
    record_key = "/%s/services/by-uuid/%s" % (ns, uuid)
    up = service.Service()
    up.CopyFrom(s)
    flaps = ["DOWN", "UP", "DOWN"]
    for run in range(50):
        assert service.update(conf, up) == (True, [])  # each run starts UP
        before = etcd.mod_revision(record_key)
        assert before > 0
        go = threading.Event()
        done = []
        began = []

        def flap():
            go.wait()
            began.append(time.monotonic())
            done.append(service.down(conf, uuid=uuid) is not None)
            began.append(time.monotonic())
            done.append(service.update(conf, up) == (True, []))
            began.append(time.monotonic())
            done.append(service.down(conf, uuid=uuid) is not None)

        t = threading.Thread(target=flap)
        t.start()
        go.set()
        n = service.notify(conf, uuid=uuid)
        returned = time.monotonic()
        assert n is not None
        seen = []

        def stop_at_the_last_change():
            # The last change's revision, read from etcd once the thread is
            # done: the notify is cancelled once it has delivered it (or
            # after 10 s, failing the run).
            t.join(10)
            last = etcd.mod_revision(record_key)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not (seen and seen[-1][0] >= last):
                time.sleep(0.01)
            n.cancel()

        stopper = threading.Thread(target=stop_at_the_last_change)
        stopper.start()
        for ev in n.events:
            if ev.revision <= before:
                continue  # a change from before the call
            rec = service.Service()
            rec.ParseFromString(ev.value)
            seen.append((ev.revision, service.status_itoa(rec.status)))
        stopper.join(20)
        t.join(10)
        assert done == [True, True, True], "run %d: the other thread's calls failed: %r" % (run, done)
        statuses = [st for _, st in seen]
        after_return = sum(1 for b in began if b > returned)
        assert statuses == flaps[len(flaps) - len(statuses):] and len(statuses) >= max(after_return, 1), (
            "run %d of 50: notify saw %r; %d changes began after it returned" % (run, seen, after_return))
