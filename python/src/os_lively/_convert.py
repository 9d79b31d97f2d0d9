"""C structs -> the values of `os_lively.model`."""

from ._ffi import NULL, ffi, lib, text
from .model import DownReason, Event, EventKind, ServiceInfo, Status

_STATUS_NONE = lib.LIVELY_STATUS_NONE


def _enum(cls, value):
    try:
        return cls(value)
    except ValueError:  # a newer library's value: keep the number
        return value


_FIELDS = {name for name, _ in ffi.typeof("struct lively_service_record").fields}
_HAS_HEARTBEAT_FIELDS = {"heartbeat_ms", "heartbeat_missed"} <= _FIELDS
_HAS_FORCED_DOWN = "forced_down" in _FIELDS


def _down_reason(up: bool, record_status, forced: bool, missed: bool):
    """Why a DOWN service is down, from what its record says (None: UP)."""
    if up:
        return None
    if forced:
        return DownReason.FORCED
    if missed:
        return DownReason.MISSED
    if record_status == Status.UP:
        return DownReason.EXPIRED  # the record says UP: nobody keeps it alive
    return DownReason.DECLARED  # its owner set it DOWN itself


def service_info(svc, up: bool) -> ServiceInfo:
    """From a `lively_service` (strings copied)."""
    up = bool(up)
    record_status = _enum(Status, svc.status)
    forced = bool(svc.forced_down) if _HAS_FORCED_DOWN else False
    heartbeat_ms = svc.heartbeat_ms if _HAS_HEARTBEAT_FIELDS else 0
    missed = bool(svc.heartbeat_missed) if _HAS_HEARTBEAT_FIELDS else False
    return ServiceInfo(
        uuid=text(svc.uuid),
        service_type=text(svc.service_type),
        host=text(svc.host),
        status=Status.UP if up else Status.DOWN,
        region=text(svc.region),
        maintenance_start=svc.maintenance_start,
        maintenance_end=svc.maintenance_end,
        maintenance_note=text(svc.maintenance_note),
        up=up,
        record_status=record_status,
        forced_down=forced,
        heartbeat_ms=heartbeat_ms,
        heartbeat_missed=missed,
        down_reason=_down_reason(up, record_status, forced, missed),
    )


def _status(v):
    return None if v == _STATUS_NONE else _enum(Status, v)


def event(ev) -> Event:
    """From a `lively_event *` (everything copied: valid after the callback)."""
    new_status = _status(ev.new_status)
    service = None
    if ev.service != NULL:
        service = service_info(ev.service[0], new_status == Status.UP)
    return Event(
        kind=_enum(EventKind, ev.kind),
        reason=_enum(DownReason, ev.reason),
        uuid=text(ev.uuid),
        service_type=text(ev.service_type),
        host=text(ev.host),
        region=text(ev.region),
        old_status=_status(ev.old_status),
        new_status=new_status,
        service=service,
        revision=ev.revision,
    )


def service_list(lst):
    """From a `lively_service_list *` (the caller frees it)."""
    items = lst.items
    return [service_info(items[i].service, items[i].up) for i in range(lst.len)]


def stats(s) -> dict:
    return {name: getattr(s, name) for name, _ in ffi.typeof("struct lively_stats").fields if name != "struct_size"}
