"""The original os-lively's `os_lively.service` module, drop-in.

Same names and arguments as the original; the work is done by the
os-lively library through its C API. Differences a caller may notice:

- `update()` with status UP means "UP while I keep calling update()": the
  service gets a heartbeat deadline of `conf.status_ttl` seconds, so one
  that stops calling goes DOWN after `status_ttl` and one that keeps
  calling stays UP forever (the original lost it after one TTL). A process
  that dies goes DOWN after the TTL too, and one that exits cleanly at once.
- Records read back (`get_one`, `get_many`, `notify`) carry the effective
  status: a service whose process died or stopped calling reads DOWN.
- `update()` returns `(succeeded, responses)` as the original (python-etcd3's
  transaction result): `succeeded` is False when the write lost to a
  concurrent one (the library's ConflictError); `responses` is always an
  empty list (the library's transaction responses are not etcd3 objects).
  The uuid, generated when empty, is set on the message (`service.uuid`).
- `notify()` returns None for a `uuid`, or a `type` and `host`, that names
  no registered service, as the original did; it also takes `region`, a
  `type` alone, or no filter (everything), and yields a DOWN record when a
  service's liveness lapses or it is deleted. Its events carry `.key` (the
  record's etcd key, bytes) and `.value` as python-etcd3's did.
"""

import datetime
import time
from typing import Any, Callable, Iterator, List, NamedTuple, Optional, Union

from . import _check, _dropin
from . import conf as _conf
from ._ffi import HAS_HEARTBEAT
from .errors import ConflictError, NotFoundError

from . import service_pb2  # generated from proto/os_lively/service.proto at build time

Service = service_pb2.Service
_SERVICE_DOC = """A service record (the protobuf message `oslively.Service`, as the
original library's): `uuid`, `type`, `host`, `status` (`Status.UP` /
`Status.DOWN`), `region`, `maintenance_start`, `maintenance_end` (Unix
seconds), `maintenance_note`. `SerializeToString()` / `ParseFromString()`
give the bytes stored in etcd."""
try:
    Service.__doc__ = _SERVICE_DOC
except (AttributeError, TypeError):  # some protobuf implementations refuse
    pass

__all__ = [
    "Service", "Status", "NotifyEvent", "NotifyResult", "UpdateResult", "update", "is_up", "get_one", "get_many",
    "delete", "down", "notify", "status_itoa", "status_atoi",
]

#: A `conf.Conf`, or None for the OSLIVELY_* environment.
ConfLike = Optional[_conf.Conf]
Timestamp = Union[int, float, datetime.datetime, None]


# As the original: the generated enum wrapper (Name, Value, keys, items...)
# with the values and ALL_STATUSES as attributes.
Status = service_pb2.Status
Status.UP = service_pb2.UP
Status.DOWN = service_pb2.DOWN
Status.ALL_STATUSES = (service_pb2.UP, service_pb2.DOWN)


def status_itoa(status_code: int) -> Optional[str]:
    """'UP' / 'DOWN' for a status code (None if unknown)."""
    try:
        return service_pb2.Status.Name(status_code)
    except ValueError:
        return None


def status_atoi(status_string: str) -> Optional[int]:
    """The status code for 'UP' / 'DOWN' (None if unknown)."""
    try:
        return service_pb2.Status.Value(status_string)
    except ValueError:
        return None


def _record_status(value, name):
    """A status as the drop-in has it (the protobuf record's int: 0 UP, 1
    DOWN, as in the original) as the library API's `Status`, which refuses
    bare ints. Anything else is refused here, naming `name`."""
    from .model import Status as _S

    if isinstance(value, str):
        return value  # "UP" / "DOWN": checked by the library API
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return _S(value)
        except ValueError:
            raise ValueError("%s must be Status.UP (0) or Status.DOWN (1), not %r" % (name, value)) from None
    raise TypeError("%s must be Status.UP (0) or Status.DOWN (1), not %s" % (name, _check.type_name(value)))


def _message(info):
    """A `Service` message from a record read through the library, with the
    effective status."""
    return Service(
        uuid=info.uuid, type=info.service_type, host=info.host,
        status=service_pb2.UP if info.up else service_pb2.DOWN,
        region=info.region, maintenance_start=info.maintenance_start,
        maintenance_end=info.maintenance_end, maintenance_note=info.maintenance_note,
    )


def _type_key(filters):
    return "type" if "type" in filters or "service_type" not in filters else "service_type"


def _lookup(filters, what):
    """The (uuid, type, host) a call names: a uuid, or both type and host
    (each a str without NUL: checked here, naming the keyword)."""
    uuid = filters.get("uuid")
    if uuid is not None:
        _check.text(uuid, "uuid")
        return uuid, None, None
    key = _type_key(filters)
    stype = filters.get(key)
    host = filters.get("host")
    if stype is None or host is None:
        raise ValueError("%s: 'host' and 'type' required when not specifying 'uuid'" % what)
    _check.text(stype, key)
    _check.text(host, "host")
    return None, stype, host


#: How the drop-in names a `Service` message's fields in errors.
_FIELD_NAMES = ("Service.uuid", "Service.type", "Service.host", "Service.region", "Service.maintenance_note")


class UpdateResult(NamedTuple):
    """What `update()` returns, as the original's (python-etcd3's
    transaction result): `ok, _ = service.update(cfg, s)` works."""

    succeeded: bool
    responses: List[Any]


def update(conf: ConfLike, service: Service) -> UpdateResult:
    """Creates or updates the service record (one etcd transaction). With
    status UP the service stays UP while this process keeps calling
    update() at least every `conf.status_ttl` seconds (at least 5: see
    `conf.Conf`). Sets `service.uuid` when it is empty. Returns
    `(succeeded, responses)`: `succeeded` False when the write lost to
    concurrent writers (after the library's retries), `responses` an empty
    list; other failures raise."""
    if not isinstance(service, Service):
        raise TypeError("service must be an os_lively.service.Service, not %s" % _check.type_name(service))
    client = _dropin.client_for(conf)
    heartbeat_ms = 0
    if service.status == service_pb2.UP and HAS_HEARTBEAT:
        heartbeat_ms = _conf.status_ttl(conf) * 1000
    from .client import _status_code

    try:
        uuid = client._update(
            service.uuid or None, service.type, service.host,
            _status_code(_record_status(service.status, "Service.status"), "Service.status"),
            service.region, service.maintenance_start, service.maintenance_end, service.maintenance_note,
            heartbeat_ms, names=_FIELD_NAMES,
        )
    except ConflictError:
        return UpdateResult(False, [])
    if not service.uuid:
        service.uuid = uuid
    return UpdateResult(True, [])


def is_up(conf: ConfLike, **filters: Any) -> bool:
    """True if the service (`uuid=`, or `type=` and `host=`) is UP now;
    False for unknown services. ValueError when neither is given."""
    uuid, stype, host = _lookup(filters, "is_up")
    client = _dropin.client_for(conf)
    if uuid is not None:
        return client.is_up(uuid)
    return client.is_up(service_type=stype, host=host)


def get_one(conf: ConfLike, **filters: Any) -> Optional[Service]:
    """The `Service` named by `uuid=`, or `type=` and `host=`; None if none."""
    uuid, stype, host = _lookup(filters, "get_one")
    client = _dropin.client_for(conf)
    try:
        info = client.get(uuid) if uuid is not None else client.get(service_type=stype, host=host)
    except NotFoundError:
        return None
    return _message(info)


def _values(v):
    if v is None:
        return []
    if isinstance(v, (list, tuple, set, frozenset)):
        return list(v)
    return [v]


def get_many(conf: ConfLike, **filters: Any) -> List[Service]:
    """Services matching every filter given (`status`, `type`, `host`,
    `region`, `uuid`; each a value or a list of values, all optional;
    `status` is the effective status)."""
    wanted = {name: _values(filters.get(name)) for name in ("status", "type", "host", "region", "uuid")}
    for name in ("type", "host", "region", "uuid"):
        for i, v in enumerate(wanted[name]):
            _check.text(v, name if len(wanted[name]) == 1 else "%s[%d]" % (name, i))
    client = _dropin.client_for(conf)
    # One value of a filter narrows the library's query; lists are checked here.
    single = {name: vals[0] for name, vals in wanted.items() if len(vals) == 1}
    infos = client.list(
        uuid=single.get("uuid"), service_type=single.get("type"), host=single.get("host"),
        region=single.get("region"),
        status=None if "status" not in single else _record_status(single["status"], "status"),
    )
    out = []
    for info in infos:
        msg = _message(info)
        if all(not vals or getattr(msg, name) in vals for name, vals in wanted.items()):
            out.append(msg)
    return out


def delete(conf: ConfLike, **filters: Any) -> Optional[bool]:
    """Deletes the service named by `uuid=`, or `type=` and `host=`, with
    all its index keys. Returns True if it existed, None if not."""
    uuid, stype, host = _lookup(filters, "delete")
    client = _dropin.client_for(conf)
    if uuid is None:
        try:
            uuid = client.get(service_type=stype, host=host).uuid
        except NotFoundError:
            return None
    return True if client.delete(uuid) else None


def _epoch(value):
    if isinstance(value, datetime.datetime):
        return int(value.timestamp())
    return int(value)


def down(conf: ConfLike, maint_note: Optional[str] = None, maint_start: Timestamp = None,
         maint_end: Timestamp = None, **filters: Any) -> Optional[Service]:
    """Sets the service DOWN, optionally for maintenance (note, start,
    end: datetime or Unix seconds; start defaults to now with a note).
    As in the original, it stays DOWN until an update() sets it UP.
    Returns the updated `Service`, or None if there is no such service."""
    if maint_note is not None and maint_start is None:
        maint_start = time.time()
    s = get_one(conf, **filters)
    if s is None:
        return None
    s.status = service_pb2.DOWN
    if maint_note is not None:
        s.maintenance_note = maint_note
    if maint_start is not None:
        s.maintenance_start = _epoch(maint_start)
    if maint_end is not None:
        s.maintenance_end = _epoch(maint_end)
    # A plain status write, not the library's sticky operator DOWN: the
    # owner's next update() with status UP brings it back.
    update(conf, s)
    return s


def record_key(namespace: str, uuid: str) -> bytes:
    """The etcd key of a service's record, as the original (and the
    library) write it: `<ns>/services/by-uuid/<uuid>`, the namespace with
    one leading slash, or none when empty."""
    ns = "/" + namespace.lstrip("/") if namespace else ""
    return ("%s/services/by-uuid/%s" % (ns, uuid)).encode()


class NotifyEvent(object):
    """One change, as the original's etcd watch events carried it: `.key`
    is the record's etcd key (bytes), `.value` the serialized `Service`
    after the change (with the effective status)."""

    __slots__ = ("key", "value", "kind", "reason", "uuid", "revision")

    def __init__(self, key, value, kind, reason, uuid, revision):
        self.key = key
        self.value = value
        self.kind = kind
        self.reason = reason
        self.uuid = uuid
        self.revision = revision

    def __repr__(self):
        return "NotifyEvent(kind=%s, reason=%s, uuid=%s, revision=%d)" % (
            self.kind.name, self.reason.name, self.uuid, self.revision)


class NotifyResult(NamedTuple):
    """What `notify()` returns: iterate `events`; `cancel()` ends them."""

    events: Iterator[NotifyEvent]
    cancel: Callable[[], None]


def _notify_events(sub, namespace):
    from .model import EventKind, Status as _S

    for ev in sub:
        if ev.service is None or ev.kind in (EventKind.EXISTING, EventKind.RESYNC):
            continue
        info = ev.service
        msg = Service(
            uuid=info.uuid, type=info.service_type, host=info.host,
            status=service_pb2.UP if ev.new_status == _S.UP else service_pb2.DOWN,
            region=info.region, maintenance_start=info.maintenance_start,
            maintenance_end=info.maintenance_end, maintenance_note=info.maintenance_note,
        )
        yield NotifyEvent(record_key(namespace, ev.uuid), msg.SerializeToString(), ev.kind, ev.reason, ev.uuid, ev.revision)


def notify(conf: ConfLike, **filters: Any) -> Optional[NotifyResult]:
    """Watches the matching services (`uuid`, `type`, `host`, `region`;
    none: all) from now on. Returns `(events, cancel)`: iterating `events`
    yields a `NotifyEvent` for each change, until `cancel()` is called
    (from any thread, or inside the loop). Returns None, as the original,
    when `uuid`, or `type` and `host`, name no registered service.

    No change is missed between the call and the watch: the watch is
    anchored first (at the revision the client's watcher has reached,
    which is at most etcd's), and only then does the existence check read
    etcd. Every change after the revision the check read is delivered; a
    change made just before the call may be delivered too."""
    key = _type_key(filters)
    for name in ("uuid", key, "host", "region"):
        _check.text(filters.get(name), name, optional=True)
    client = _dropin.client_for(conf)
    namespace = _conf.connection_key(conf if conf is not None else _conf.Conf())[3]
    # Subscribe before the existence check, not after: subscribe() returns
    # once the subscription is registered at the watcher's revision, so
    # the check (one round trip to etcd) reads a revision at or after it.
    # Checking first and then subscribing left a gap of that round trip in
    # which a change (another thread's down(), 2 ms later) went unseen.
    sub = client.subscribe(
        uuid=filters.get("uuid"), service_type=filters.get(key),
        host=filters.get("host"), region=filters.get("region"),
    )
    if filters.get("uuid") is not None or (filters.get(key) is not None and filters.get("host") is not None):
        try:
            if filters.get("uuid") is not None:
                client.get(filters["uuid"])
            else:
                client.get(service_type=filters[key], host=filters["host"])
        except NotFoundError:
            sub.cancel()
            return None
        except BaseException:
            sub.cancel()
            raise
    return NotifyResult(events=_notify_events(sub, namespace), cancel=sub.cancel)
