"""ServiceInfo tells a live status and why a service is down; enums print
as names (issue 24, item 3)."""

import pytest

from os_lively import Client, DownReason, EventKind, Status
from conftest import requires_heartbeat, wait_for


@pytest.fixture
def client(etcd, ns):
    with Client(etcd.url, namespace=ns, status_ttl=5) as c:
        yield c


def test_enums_print_as_names():
    assert str(Status.UP) == "UP" and "%s" % Status.DOWN == "DOWN" and f"{EventKind.DOWN}" == "DOWN"
    assert "{:>8}".format(DownReason.FORCED) == "  FORCED"
    assert Status.DOWN == 1 and repr(Status.UP) == "<Status.UP: 0>"


def test_status_is_live_and_down_reason_says_why(client, etcd, ns):
    up = client.update("svc", "up-host", region="r")
    info = client.get(up)
    assert (info.status, info.record_status, info.up, info.down_reason) == (Status.UP, Status.UP, True, None)
    assert (info.forced_down, info.heartbeat_ms, info.heartbeat_missed) == (False, 0, False)
    assert "status=<Status.UP: 0>" in repr(info)

    forced = client.update("svc", "forced-host")
    client.down(forced, "disk swap", start=1700000000, end=4000000000)
    info = client.get(forced)
    assert (info.status, info.record_status, info.forced_down, info.down_reason) == (
        Status.DOWN, Status.DOWN, True, DownReason.FORCED)
    assert (info.maintenance_note, info.maintenance_start, info.maintenance_end) == (
        "disk swap", 1700000000, 4000000000)

    declared = client.update("svc", "declared-host", status="DOWN")
    info = client.get(declared)
    assert (info.status, info.record_status, info.forced_down, info.down_reason) == (
        Status.DOWN, Status.DOWN, False, DownReason.DECLARED)

    # A service whose owner is gone: its record still says UP, but it is
    # DOWN, and list(status="DOWN") returns it with .status DOWN.
    with Client(etcd.url, namespace=ns, status_ttl=5) as other:
        gone = other.update("svc", "gone-host")
    info = client.get(gone)
    assert info.status == Status.DOWN and not info.up and info.down_reason is not None
    assert info.down_reason != DownReason.FORCED
    downs = client.list(status="DOWN")
    assert sorted(s.uuid for s in downs) == sorted([forced, declared, gone])
    assert all(s.status == Status.DOWN for s in downs)
    assert [s.status for s in client.list(status="UP")] == [Status.UP]


@requires_heartbeat
def test_missed_heartbeat_is_told_apart(client):
    uuid = client.update("svc", "hb-host", heartbeat=0.3)
    info = client.get(uuid)
    assert (info.status, info.heartbeat_ms, info.heartbeat_missed) == (Status.UP, 300, False)
    wait_for(lambda: client.get(uuid).heartbeat_missed, 10, "the heartbeat deadline to pass")
    info = client.get(uuid)
    assert (info.status, info.down_reason, info.forced_down) == (Status.DOWN, DownReason.MISSED, False)
    client.heartbeat(uuid)
    wait_for(lambda: client.get(uuid).up, 10, "the check-in to bring it back")
    assert client.get(uuid).down_reason is None
