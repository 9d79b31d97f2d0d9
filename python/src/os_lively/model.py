"""Plain Python values for what the library returns: statuses, records,
events. Built from the C structs by `_convert`; no liveness logic here."""

import enum
from dataclasses import dataclass
from typing import Optional


class Status(enum.IntEnum):
    """A service's status (numbers as in the protobuf record)."""

    UP = 0
    DOWN = 1


class EventKind(enum.IntEnum):
    """What happened to a service (`lively_event_kind`)."""

    EXISTING = 0
    REGISTERED = 1
    UP = 2
    DOWN = 3
    UPDATED = 4
    REMOVED = 5
    RESYNC = 6


class DownReason(enum.IntEnum):
    """Why a service went DOWN (`lively_down_reason`; NONE for other events)."""

    NONE = 0
    FORCED = 1
    EXPIRED = 2
    DELETED = 3
    MISSED = 4
    MOVED = 5
    LIFTED = 6
    CLOSED = 7
    DECLARED = 8


@dataclass(frozen=True)
class ServiceInfo:
    """A service record and whether the service is effectively UP now
    (record UP and its registering process alive)."""

    uuid: str
    service_type: str
    host: str
    status: Status
    region: str
    maintenance_start: int
    maintenance_end: int
    maintenance_note: str
    up: bool


@dataclass(frozen=True)
class Event:
    """One change of one service, in etcd revision order.

    `old_status`/`new_status` are the effective statuses before and after
    (None when the service did not exist / no longer exists); `service` is
    the record after the change (before it, for REMOVED), None for RESYNC.
    """

    kind: EventKind
    reason: DownReason
    uuid: str
    service_type: str
    host: str
    region: str
    old_status: Optional[Status]
    new_status: Optional[Status]
    service: Optional[ServiceInfo]
    revision: int
